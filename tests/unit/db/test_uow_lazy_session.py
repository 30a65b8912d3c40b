"""A unit of work builds its ORM session on first use: one that runs only plain DB-API
statements builds none, and one that does use it still flushes it before every DB-API
statement and commits what it holds."""

from __future__ import annotations

from typing import Any

import pytest

import waiaas.db.uow as uow_module
from waiaas.db import Database
from waiaas.db.tables import TransactionRow
from waiaas.errors import StorageError

NOW = 1_750_000_000


@pytest.fixture
def built_sessions(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ORM session a unit of work builds from now on."""
    built: list[object] = []
    real = uow_module.Session

    def counting(*args: Any, **kwargs: Any) -> Any:
        session = real(*args, **kwargs)
        built.append(session)
        return session

    monkeypatch.setattr(uow_module, "Session", counting)
    return built


def test_a_dbapi_only_unit_of_work_builds_no_session(
    db: Database, rows: Any, built_sessions: list[object]
) -> None:
    """The hot paths' writes (a plain INSERT, an audit append, a compare-and-set of a held
    row) commit without an ORM session ever being built."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        uow.commit()
    built_sessions.clear()
    with db.write() as uow:
        tx = uow.transactions.add(rows.transaction(agent.id))
        uow.audit.append("TX_REQUESTED", actor="system", now=NOW, agent_id=agent.id, tx_id=tx.id)
        moved = uow.transactions.cas_held(tx, "QUEUED", queued_at=NOW)
        assert moved is not None
        uow.commit()
    assert built_sessions == []
    with db.read() as uow:
        got = uow.transactions.get(tx.id)
        assert got is not None and (got.status, got.queued_at) == ("QUEUED", NOW)
        assert uow.audit.count() == 1  # the TX_REQUESTED row


def test_pending_orm_changes_are_flushed_before_a_dbapi_statement(db: Database, rows: Any) -> None:
    """A change made through the session and not flushed is what the next DB-API read or
    write sees (the session is built by that use, and flushed first)."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        uow.commit()
    with db.write() as uow:
        tx = rows.transaction(agent.id)
        uow.session.add(tx)  # pending, not flushed
        found = uow.fetch_one("SELECT status FROM transactions WHERE id = ?", (tx.id,))
        assert found == ("PENDING",)
        count, _ = uow.execute("UPDATE transactions SET error = ? WHERE id = ?", ("E", tx.id))
        assert count == 1
        uow.commit()
    with db.read() as uow:
        got = uow.transactions.get(tx.id)
        assert got is not None and got.error == "E"


def test_a_session_built_late_still_commits_and_rolls_back(db: Database, rows: Any) -> None:
    """ORM writes made after DB-API statements commit with them, or roll back with them."""
    agent = rows.agent()
    with db.write() as uow:
        uow.execute("UPDATE wallet_state SET updated_at = updated_at WHERE key = ?", ("x",))
        uow.agents.add(agent)  # builds the session now
        uow.commit()
    other = rows.agent()
    with db.write() as uow:
        uow.execute("UPDATE wallet_state SET updated_at = updated_at WHERE key = ?", ("x",))
        uow.agents.add(other)  # never committed
    with db.read() as uow:
        assert uow.agents.get(agent.id) is not None
        assert uow.agents.get(other.id) is None


def test_a_loaded_row_still_sees_a_compare_and_set(db: Database, rows: Any) -> None:
    """A row the session loaded shows what a held compare-and-set wrote (the repositories
    ask the built session, not an empty stand-in)."""
    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        tx = uow.transactions.add(rows.transaction(agent.id))
        uow.commit()
    with db.write() as uow:
        loaded = uow.transactions.get(tx.id)
        assert isinstance(loaded, TransactionRow)
        assert uow.transactions.cas_held(tx, "QUEUED", queued_at=NOW) is not None
        assert (loaded.status, loaded.queued_at) == ("QUEUED", NOW)
        assert not uow.session.dirty
        uow.commit()


def test_a_unit_of_work_that_is_not_open_refuses_its_session(db: Database) -> None:
    """Before ``with`` and after it, the session and the repositories refuse to work."""
    uow = db.write()
    with pytest.raises(StorageError, match="not open"):
        _ = uow.session
    with pytest.raises(StorageError, match="not open"):
        uow.agents.get("nobody")
    with db.write() as done:
        done.commit()
    with pytest.raises(StorageError, match="not open"):
        done.execute("SELECT 1")
