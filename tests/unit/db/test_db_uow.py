"""Units of work: nothing persists without commit(); writes take the lock up front."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from waiaas.db import Database
from waiaas.db.tables import ChannelRow
from waiaas.errors import StorageError

NOW = 1_750_000_000
WEI_AMOUNT = 123_456_789 * 10**30  # far beyond SQLite's 64-bit integers


def test_commit_persists(db: Database, rows: Any) -> None:
    """Rows written and committed are visible to a later unit of work."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        uow.commit()
        assert uow.committed
    with db.read() as uow:
        got = uow.agents.get(agent.id)
        assert got is not None and got.name == agent.name


def test_rolls_back_unless_committed(db: Database, rows: Any) -> None:
    """Leaving a unit of work without commit() discards everything it wrote."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        uow.audit.append("AGENT_CREATED", actor="owner", now=NOW, agent_id=agent.id)
        assert uow.agents.get(agent.id) is not None
    with db.read() as uow:
        assert uow.agents.get(agent.id) is None
        assert uow.audit.count() == 0


def test_rolls_back_on_error(db: Database, rows: Any) -> None:
    """An exception inside the block rolls back and propagates unchanged."""
    agent = rows.agent()
    with pytest.raises(RuntimeError, match="boom"), db.write() as uow:
        uow.agents.add(agent)
        raise RuntimeError("boom")
    with db.read() as uow:
        assert uow.agents.get(agent.id) is None


def test_constraint_violation_rolls_back_the_whole_unit(db: Database, rows: Any) -> None:
    """A failing statement (FK violation) leaves no partial write behind."""
    agent = rows.agent()
    with pytest.raises(StorageError, match=r"(?i)foreign ?key"), db.write() as uow:
        uow.agents.add(agent)
        uow.transactions.add(rows.transaction("no-such-agent"))
    with db.read() as uow:
        assert uow.agents.get(agent.id) is None


def test_explicit_rollback_discards(db: Database, rows: Any) -> None:
    """rollback() inside the block discards what was written so far."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        uow.rollback()
    with db.read() as uow:
        assert uow.agents.list() == []


def test_commit_outside_the_block_is_refused(db: Database) -> None:
    """commit() on a unit of work that is not open raises StorageError."""
    uow = db.write()
    with pytest.raises(StorageError, match="not open"):
        uow.commit()


@pytest.mark.sqlite_only  # SQLite's BEGIN IMMEDIATE file lock
def test_write_takes_the_lock_up_front(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection]
) -> None:
    """While a write unit of work is open, another writer gets 'database is locked'."""
    other = raw_connect(db_path, timeout=0, isolation_level=None)
    # nothing is written inside: the lock is taken by BEGIN IMMEDIATE itself
    with db.write(), pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")


@pytest.mark.sqlite_only  # SQLite's BEGIN IMMEDIATE file lock
def test_read_does_not_take_the_write_lock(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection], rows: Any
) -> None:
    """A read unit of work lets another connection write, and keeps its own snapshot."""
    agent = rows.agent()
    other = raw_connect(db_path, timeout=0, isolation_level=None)
    with db.read() as uow:
        assert uow.agents.list() == []  # the snapshot starts here
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO agents (id, name, chain, network, public_key, status, created_at,"
            " updated_at) VALUES (?, 'x', 'solana', 'devnet', 'pk', 'ACTIVE', 1, 1)",
            (agent.id,),
        )
        other.execute("COMMIT")
        assert uow.agents.list() == []  # still the old snapshot (WAL)
    with db.read() as uow:
        assert [a.id for a in uow.agents.list()] == [agent.id]


def test_concurrent_threads_never_overshoot_a_limit(db: Database, rows: Any) -> None:
    """Four threads doing read-then-write decisions in db.write() stop exactly at the limit."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        uow.commit()
    limit, amount = 30 * WEI_AMOUNT, WEI_AMOUNT
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(15):
                with db.write() as uow:
                    spent = sum(int(t.amount or 0) for t in uow.transactions.since(agent.id, 0))
                    if spent + amount <= limit:
                        uow.transactions.add(rows.transaction(agent.id, amount=str(amount)))
                        uow.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as uow:
        total = sum(int(t.amount or 0) for t in uow.transactions.since(agent.id, 0))
    assert total == limit


@pytest.mark.sqlite_only  # SQLite's storage classes, read with sqlite3
def test_timestamps_are_stored_as_integers(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection], rows: Any
) -> None:
    """Every timestamp column written through the repositories has typeof() = 'integer'."""
    agent = rows.agent(suspended_at=NOW + 5)
    with db.write() as uow:
        uow.agents.add(agent)
        session = uow.sessions.add(rows.session(agent.id, revoked_at=NOW + 7))
        tx = uow.transactions.add(
            rows.transaction(agent.id, session_id=session.id, queued_at=NOW, executed_at=NOW + 1)
        )
        uow.policies.add(rows.policy(agent.id))
        uow.audit.append("TX_REQUESTED", actor="system", now=NOW, tx_id=tx.id)
        uow.channels.add(
            ChannelRow(id="c1", type="NTFY", config="{}", created_at=NOW, last_success_at=NOW + 2)
        )
        uow.state.put("kill_switch", {"active": False}, now=NOW)
        uow.commit()
    columns = {
        "agents": ("created_at", "updated_at", "suspended_at"),
        "sessions": ("expires_at", "revoked_at", "created_at"),
        "transactions": ("queued_at", "executed_at", "created_at"),
        "policies": ("created_at", "updated_at", "priority", "enabled"),
        "audit_log": ("timestamp", "id"),
        "notification_channels": ("created_at", "last_success_at", "priority", "enabled"),
        "wallet_state": ("updated_at",),
    }
    raw = raw_connect(db_path)
    for table, cols in columns.items():
        types = raw.execute(
            f"SELECT {', '.join(f'typeof({c})' for c in cols)} FROM {table}"
        ).fetchall()
        assert types and set(types) == {("integer",) * len(cols)}, table  # 0012's counters too
        for values in raw.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall():
            assert all(type(v) is int for v in values)


@pytest.mark.sqlite_only  # SQLite's storage classes, read with sqlite3
def test_amounts_are_exact_decimal_text(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection], rows: Any
) -> None:
    """An amount beyond 64 bits is stored as TEXT and comes back exactly."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        tx = uow.transactions.add(rows.transaction(agent.id, amount=str(WEI_AMOUNT)))
        uow.commit()
    with db.read() as uow:
        got = uow.transactions.get(tx.id)
        assert got is not None and int(got.amount or "") == WEI_AMOUNT
    raw = raw_connect(db_path)
    assert raw.execute("SELECT typeof(amount), amount FROM transactions").fetchone() == (
        "text",
        str(WEI_AMOUNT),
    )


def test_compare_and_swap_status(db: Database, rows: Any) -> None:
    """cas_status wins once from the expected status and loses from any other."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        tx = uow.transactions.add(rows.transaction(agent.id))
        uow.commit()
    with db.write() as uow:
        assert uow.transactions.cas_status(tx.id, "PENDING", "QUEUED", queued_at=NOW)
        assert not uow.transactions.cas_status(tx.id, "PENDING", "EXECUTING")
        assert uow.transactions.cas_status(tx.id, ["QUEUED", "PENDING"], "CANCELLED")
        uow.commit()
    with db.read() as uow:
        got = uow.transactions.get(tx.id)
        assert got is not None and (got.status, got.queued_at) == ("CANCELLED", NOW)


def test_compare_and_swap_updates_a_loaded_row_without_writing_it_again(
    db: Database, rows: Any
) -> None:
    """A row loaded in the unit of work shows what cas_status wrote (status, fields, the
    metadata document), is not left dirty (no second UPDATE at flush), and a pending change
    to it made before the swap is written first, then the swap's values win."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        tx = uow.transactions.add(rows.transaction(agent.id))
        uow.commit()
    with db.write() as uow:
        loaded = uow.transactions.get(tx.id)
        assert loaded is not None
        loaded.error = "PENDING_CHANGE"  # dirty: flushed before the swap
        assert uow.transactions.cas_status(
            tx.id, "PENDING", "QUEUED", queued_at=NOW, metadata={"note": "swapped"}
        )
        assert (loaded.status, loaded.queued_at) == ("QUEUED", NOW)
        assert loaded.metadata_json == '{"note":"swapped"}'
        assert not uow.session.dirty
        assert not uow.transactions.cas_status(tx.id, "PENDING", "EXECUTING")
        assert loaded.status == "QUEUED"  # a lost swap changes nothing
        uow.commit()
    with db.read() as uow:
        got = uow.transactions.get(tx.id)
        assert got is not None
        assert (got.status, got.queued_at, got.error) == ("QUEUED", NOW, "PENDING_CHANGE")
        assert got.metadata_json == '{"note":"swapped"}'
