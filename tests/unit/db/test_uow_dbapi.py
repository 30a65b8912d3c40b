"""A unit of work runs its transaction on the pooled DB-API connection itself: BEGIN (with
its write lock), COMMIT and ROLLBACK go straight to the driver, and a SQLAlchemy
``Connection`` (and the ORM session on it) is built only when something needs them, joining
the transaction already begun. Every guard stays: nothing is written unless the commit
succeeds, and the connection goes back to the pool with no transaction open, whatever
failed."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

import waiaas.db.uow as uow_module
from tests.support.rawdb import raw_connect
from waiaas.db import Database
from waiaas.db.statements import built
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.errors import StorageError

NOW = 1_750_000_000


@pytest.fixture
def built_objects(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[object]]:
    """Every SQLAlchemy ``Connection`` and ORM session a unit of work builds from now on."""
    seen: dict[str, list[object]] = {"Connection": [], "Session": []}
    for name in seen:
        real = getattr(uow_module, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            made = _real(*args, **kwargs)
            seen[_name].append(made)
            return made

        monkeypatch.setattr(uow_module, name, counting)
    return seen


def _agent(db: Database, rows: Any) -> AgentRow:
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        uow.commit()
    return agent


def _idle(raw: Any) -> bool:
    """Whether a DB-API connection (sqlite3 or psycopg) has no transaction open."""
    if isinstance(raw, sqlite3.Connection):
        return not raw.in_transaction
    from psycopg.pq import TransactionStatus

    return bool(raw.info.transaction_status == TransactionStatus.IDLE)


def _statuses(db: Database, agent_id: str) -> list[str]:
    with raw_connect(db) as conn:
        found = conn.all("SELECT status FROM transactions WHERE agent_id = ?", (agent_id,))
    return sorted(str(s) for (s,) in found)


def test_a_dbapi_only_unit_of_work_builds_no_connection_nor_session(
    db: Database, rows: Any, built_objects: dict[str, list[object]]
) -> None:
    """The hot paths' statements, the DB-API connection taken through the session (what
    the usage buckets and the policy reads do), flushes and identity checks: none of them
    builds a SQLAlchemy ``Connection`` or an ORM session, and the commit writes it all."""
    agent = _agent(db, rows)
    built_objects["Connection"].clear()
    built_objects["Session"].clear()
    with db.write() as uow:
        tx = uow.transactions.add(rows.transaction(agent.id))
        uow.audit.append("TX_REQUESTED", actor="system", now=NOW, agent_id=agent.id, tx_id=tx.id)
        assert uow.fetch_one("SELECT status FROM transactions WHERE id = ?", (tx.id,)) == (
            "PENDING",
        )
        driver = uow.session.connection().connection.driver_connection
        assert driver is uow._raw
        uow.session.flush()
        key = uow.session.identity_key(TransactionRow, tx.id)
        assert key not in uow.session.identity_map
        assert uow.transactions.cas_held(tx, "QUEUED", queued_at=NOW) is not None
        uow.commit()
    assert built_objects == {"Connection": [], "Session": []}
    assert _statuses(db, agent.id) == ["QUEUED"]


@pytest.mark.parametrize("orm", [False, True], ids=["dbapi", "orm"])
def test_an_exception_between_begin_and_commit_writes_nothing(
    db: Database, rows: Any, orm: bool
) -> None:
    """An error raised after statements ran (plain ones only, or with the ORM session and
    its connection built late) rolls everything back and hands the connection back to
    the pool with no transaction open; the next unit of work commits normally."""
    agent = _agent(db, rows)
    with pytest.raises(RuntimeError, match="boom"), db.write() as uow:
        uow.transactions.add(rows.transaction(agent.id))
        if orm:
            uow.session.add(rows.transaction(agent.id))
            uow.session.flush()
            assert uow._conn is not None
        raw = uow._raw
        raise RuntimeError("boom")
    assert _idle(raw)
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert _statuses(db, agent.id) == []
    with db.write() as uow:
        uow.transactions.add(rows.transaction(agent.id))
        uow.commit()
    assert _statuses(db, agent.id) == ["PENDING"]


@pytest.mark.sqlite_only  # a COMMIT refused by a deferred foreign key check
def test_a_commit_refused_by_the_database_rolls_back_and_the_connection_stays_usable(
    db: Database, rows: Any
) -> None:
    """A COMMIT the database refuses raises a StorageError; the transaction is rolled back
    (nothing of it is written), and the connection is usable at once."""
    agent = _agent(db, rows)
    with pytest.raises(StorageError), db.write() as uow:
        uow.execute("PRAGMA defer_foreign_keys = ON")
        uow.transactions.add(rows.transaction(agent.id))
        uow.transactions.add(rows.transaction("no-such-agent"))  # checked at COMMIT
        raw = uow._raw
        uow.commit()
    assert not uow.committed
    assert _idle(raw)
    assert _statuses(db, agent.id) == []
    with db.write() as uow:
        uow.transactions.add(rows.transaction(agent.id))
        uow.commit()
    assert _statuses(db, agent.id) == ["PENDING"]


@pytest.mark.sqlite_only  # SQLite's file lock; PostgreSQL's advisory locks: test_postgres_*
def test_a_write_unit_of_work_holds_the_write_lock_from_its_first_statement(
    db: Database,
) -> None:
    """``BEGIN IMMEDIATE`` is issued on entry: before the unit of work ran anything, another
    connection can take no write lock; a read unit of work takes none."""
    traced: list[str] = []
    with db.write() as uow:
        uow._raw.set_trace_callback(traced.append)
        other = sqlite3.connect(str(db.path), timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            with db.read() as reader:  # readers are never blocked (WAL)
                assert reader.fetch_one("SELECT 1") == (1,)
        finally:
            other.close()
        uow.commit()
        uow._raw.set_trace_callback(None)
    assert traced == ["COMMIT"]
    with db.read():
        other = sqlite3.connect(str(db.path), timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()


def test_core_statements_and_a_savepoint_join_the_transaction(db: Database, rows: Any) -> None:
    """The SQLAlchemy connection built late (a Core statement, a savepoint as the database
    keystore takes one) runs in the unit of work's transaction: a savepoint rolled back
    drops only its own statement, and a rollback drops everything."""
    agent = _agent(db, rows)
    kept, dropped = rows.transaction(agent.id), rows.transaction(agent.id)
    insert = "INSERT INTO transactions (id, agent_id, chain, type, status, created_at) "
    for commit in (False, True):
        with db.write() as uow:
            uow.transactions.add(kept)
            conn = uow.session.connection()
            savepoint = conn.begin_nested()
            uow.execute(
                insert + "VALUES (?, ?, 'solana', 'TRANSFER', 'QUEUED', ?)",
                (
                    dropped.id,
                    agent.id,
                    NOW,
                ),
            )
            savepoint.rollback()
            conn.exec_driver_sql(
                db.sql("UPDATE transactions SET error = 'core' WHERE id = ?"), (kept.id,)
            )
            if commit:
                uow.commit()
        expected = [("PENDING", "core")] if commit else []
        with raw_connect(db) as raw:
            found = raw.all(
                "SELECT status, error FROM transactions WHERE agent_id = ?", (agent.id,)
            )
        assert [tuple(r) for r in found] == expected


def test_a_held_agent_row_is_what_get_returns_and_follows_the_units_updates(
    db: Database, rows: Any
) -> None:
    """An agent row held from a plain read is returned by ``uow.agents.get`` without the
    ORM; an update of the agent in the same unit of work shows in it; a rollback leaves the
    stored row as it was."""
    agent = _agent(db, rows)
    copy = built(AgentRow, agent.model_dump())
    with db.write() as uow:
        uow.agents.hold(copy)
        assert uow.agents.get(agent.id) is copy
        assert uow.agents.cas_status(agent.id, ["ACTIVE"], "SUSPENDED", suspension_reason="x")
        assert (copy.status, copy.suspension_reason) == ("SUSPENDED", "x")
        uow.agents.update_fields(agent.id, name="renamed")
        assert copy.name == "renamed"
    with db.read() as uow:
        stored = uow.agents.get(agent.id)
        assert stored is not None and (stored.status, stored.name) == ("ACTIVE", agent.name)


def test_a_row_the_session_loaded_stands_over_a_held_copy(db: Database, rows: Any) -> None:
    """A row the unit of work's session has loaded (and may have changed) is not replaced
    by a copy held afterwards."""
    agent = _agent(db, rows)
    with db.write() as uow:
        loaded = uow.session.get(AgentRow, agent.id)
        assert loaded is not None
        uow.agents.hold(built(AgentRow, agent.model_dump()))
        assert uow.agents.get(agent.id) is loaded
