"""``wallet_state`` keys read together (``uow.state.prefetch``): one statement, then the
values this unit of work read and wrote; a later unit of work reads the file again."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from waiaas.db import Database

NOW = 1_750_000_000


def _traced(db: Database) -> list[str]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", before)
    return seen


def test_prefetched_keys_are_read_once_and_writes_are_kept(db: Database) -> None:
    with db.write() as uow:
        uow.state.put("a", {"v": 1}, now=NOW)
        uow.commit()
    seen = _traced(db)
    with db.write() as uow:
        uow.state.prefetch(["a", "b", "a"])
        reads = [s for s in seen if "wallet_state" in s]
        assert len(reads) == 1 and " IN " in reads[0]
        assert uow.state.get("a") == {"v": 1}
        assert uow.state.get("b") is None
        uow.state.put("b", {"v": 2}, now=NOW)  # a key with no row yet
        uow.state.put("a", {"v": 3}, now=NOW)
        assert uow.state.get("b") == {"v": 2}
        assert uow.state.get("a") == {"v": 3}
        assert len([s for s in seen if "wallet_state" in s and s.startswith("SELECT")]) == 1
        uow.commit()
    with db.read() as uow:
        assert (uow.state.get("a"), uow.state.get("b")) == ({"v": 3}, {"v": 2})


@pytest.mark.sqlite_only  # a plain sqlite3 client on the file
def test_a_change_made_elsewhere_is_seen_by_the_next_unit_of_work(
    db: Database, tmp_path: Any
) -> None:
    """What one unit of work prefetched is not kept beyond it: another connection's (another
    process's) change is read by the next one."""
    other = Database.open(db.path)
    try:
        with db.write() as uow:
            uow.state.prefetch(["kill_switch"])
            assert uow.state.get("kill_switch") is None
        with other.write() as uow:
            uow.state.put("kill_switch", {"active": True}, now=NOW)
            uow.commit()
        with db.write() as uow:
            uow.state.prefetch(["kill_switch"])
            assert uow.state.get("kill_switch") == {"active": True}
    finally:
        other.close()


_ONE_ROW = "SELECT id, status FROM agents WHERE id = ?"


def _counted(uow: Any) -> list[str]:
    """The statements ``uow.fetch_one`` runs (they bypass the engine's events)."""
    ran: list[str] = []
    fetch = uow.fetch_one

    def fetch_one(sql: str, params: Any = ()) -> Any:
        ran.append(sql)
        return fetch(sql, params)

    uow.fetch_one = fetch_one
    return ran


def test_prefetch_along_reads_the_keys_and_another_row_in_one_statement(db: Database) -> None:
    """The keys ride along another one-row read: one statement, its row returned as it
    would be alone, the keys held as ``prefetch`` holds them (found or not, and written
    back through ``put``); the values round-trip exactly."""
    value = {"v": "x\u00e9\n\"'", "n": 10**30}
    with db.write() as uow:
        uow.state.put("a", value, now=NOW)
        uow.state.put("c", [], now=NOW + 1)
        uow.commit()
    with db.read() as uow:
        uow.state.prefetch(["a", "c"])
        stored = (uow.state.held("a"), uow.state.held("c"))
    seen = _traced(db)
    with db.write() as uow:
        ran = _counted(uow)
        alone = uow.fetch_one(_ONE_ROW, ("nobody",))
        ran.clear()
        row = uow.state.prefetch_along(uow.fetch_one, ["a", "b", "c", "a"], _ONE_ROW, ("nobody",))
        assert row is None and alone is None
        assert len(ran) == 1 and not [s for s in seen if "wallet_state" in s]
        assert (uow.state.held("a"), uow.state.held("c")) == stored
        assert (uow.state.get("a"), uow.state.get("b"), uow.state.get("c")) == (value, None, [])
        assert uow.state.held("b") == (True, None)
        uow.state.put("a", {"v": 3}, now=NOW)
        uow.state.put("b", {"v": 4}, now=NOW)
        assert not [s for s in seen if "wallet_state" in s and s.startswith("SELECT")]
        # keys already held: the other read alone
        ran.clear()
        assert uow.state.prefetch_along(uow.fetch_one, ["a"], _ONE_ROW, ("x",)) is None
        assert ran == [_ONE_ROW]
        uow.commit()
    with db.read() as uow:
        assert (uow.state.get("a"), uow.state.get("b")) == ({"v": 3}, {"v": 4})


def test_prefetch_along_returns_the_other_row_and_keeps_a_loaded_row(db: Database) -> None:
    """The other read's row comes back whole; a key whose row this unit of work already
    loaded (and changed) keeps that row, not the one read from the file."""
    from waiaas.db.tables import AgentRow

    with db.write() as uow:
        uow.agents.add(
            AgentRow(
                id="ag",
                name="n",
                chain="solana",
                network="devnet",
                public_key="pk",
                status="ACTIVE",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        uow.state.put("k", {"v": 1}, now=NOW)
        uow.commit()
    with db.write() as uow:
        uow.state.put("k", {"v": 2}, now=NOW)  # loaded and changed here, not prefetched
        row = uow.state.prefetch_along(uow.fetch_one, ["k", "z"], _ONE_ROW, ("ag",))
        assert row == ("ag", "ACTIVE")
        assert uow.state.get("k") == {"v": 2} and uow.state.get("z") is None
