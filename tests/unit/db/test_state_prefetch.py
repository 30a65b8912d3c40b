"""``wallet_state`` keys read together (``uow.state.prefetch``): one statement, then the
values this unit of work read and wrote; a later unit of work reads the file again."""

from __future__ import annotations

from typing import Any

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
