"""The hot path's statements built as text (``waiaas.db.statements``): the held
transaction's compare-and-set compares every column, NULL-aware; amounts stay exact text
whatever their size; another writer's change to any one column makes it miss; the session
usage compare-and-set writes once for one read. On SQLite and (``--backend=postgresql``)
PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from waiaas.db import Database
from waiaas.db.statements import built, cas_params, compare_and_set
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.sessions import SessionUsage, _store_usage

NOW = 1_750_000_000
WEI = 2**64 * 10**12 + 1  # beyond any 64-bit integer column


def test_compare_and_set_spells_null_columns_is_null() -> None:
    sql = compare_and_set("t", ("a", "b"), (("id", False), ("x", True), ("y", False)), ("1",))
    assert sql == (
        'UPDATE "t" SET "a" = ?, "b" = ? WHERE "id" = ? AND "x" IS NULL AND "y" = ? RETURNING 1'
    )
    assert cas_params(("A", None), ("I", None, "Y"), ("k",)) == ["A", None, "I", "Y", "k"]
    with pytest.raises(ValueError):
        compare_and_set("t", (), (("id", False),))


def test_built_equals_the_model_constructed() -> None:
    values: dict[str, Any] = {
        "id": "t1",
        "agent_id": "a",
        "chain": "solana",
        "type": "TRANSFER",
        "amount": str(WEI),
        "created_at": NOW,
    }
    fast, slow = built(TransactionRow, values), TransactionRow(**values)
    assert fast.model_dump() == slow.model_dump()
    assert fast.status == "PENDING" and fast.tx_hash is None  # the model's defaults
    fast.tier = "INSTANT"  # an ordinary model object afterwards
    assert fast.tier == "INSTANT"
    with pytest.raises(ValueError, match="nope"):
        built(TransactionRow, {**values, "nope": 1})
    with pytest.raises(ValueError, match="created_at"):
        built(TransactionRow, {k: v for k, v in values.items() if k != "created_at"})


@pytest.fixture
def stored(db: Database, rows: Any) -> Iterator[tuple[Database, TransactionRow]]:
    """A SUBMITTED row with NULL columns and a wei amount beyond 2**64, as written."""
    agent = rows.agent()
    row = rows.transaction(
        agent.id,
        amount=str(WEI),
        status="SUBMITTED",
        tier="INSTANT",
        tx_hash="h-" + agent.id,
        metadata_json='{"k":"v"}',
    )
    assert row.session_id is None and row.error is None and row.queued_at is None
    with db.write() as uow:
        uow.agents.add(agent)
        uow.transactions.add(row)
        uow.commit()
    yield db, row


def _as_stored(db: Database, tx_id: str) -> dict[str, Any]:
    with db.read() as uow:
        found = uow.transactions.get(tx_id)
        assert found is not None
        return found.model_dump()


def test_the_held_row_moves_with_null_columns_and_a_wei_amount(
    stored: tuple[Database, TransactionRow],
) -> None:
    db, row = stored
    with db.write(agent_id=row.agent_id) as uow:
        moved = uow.transactions.cas_held(row, "CONFIRMED", executed_at=NOW + 1)
        assert moved is not None
        uow.commit()
    after = _as_stored(db, row.id)
    assert after == moved[0].model_dump()
    assert after["amount"] == str(WEI) and after["status"] == "CONFIRMED"
    assert after["executed_at"] == NOW + 1 and after["error"] is None


def test_an_amount_one_unit_off_misses(stored: tuple[Database, TransactionRow]) -> None:
    db, row = stored
    off = built(TransactionRow, {**row.model_dump(), "amount": str(WEI - 1)})
    with db.write(agent_id=row.agent_id) as uow:
        assert uow.transactions.cas_held(off, "CONFIRMED") is None
        uow.commit()
    assert _as_stored(db, row.id)["status"] == "SUBMITTED"


_CHANGES = [
    ("status", "'FAILED'"),
    ("amount", f"'{WEI + 1}'"),
    ("error", "'X'"),  # NULL -> a value
    ("queued_at", "1"),  # NULL -> a value
    ("tx_hash", "NULL"),  # a value -> NULL
    ("metadata", "'{}'"),
]


@pytest.mark.parametrize(("column", "value"), _CHANGES, ids=[c for c, _ in _CHANGES])
def test_another_writers_change_to_one_column_makes_it_miss(
    stored: tuple[Database, TransactionRow], db_path: Path, column: str, value: str
) -> None:
    """Another handle on the database (another process) changes one column between the
    hold and the compare-and-set: nothing is written, the other writer's row stands."""
    db, row = stored
    other = Database.open(db_path)  # the same database (a schema on PostgreSQL)
    try:
        with other.write() as uow:
            uow.session.execute(
                text(f"UPDATE transactions SET {column} = {value} WHERE id = :id"), {"id": row.id}
            )
            uow.commit()
    finally:
        other.close()
    before = _as_stored(db, row.id)
    with db.write(agent_id=row.agent_id) as uow:
        heads = uow.audit.head_columns()
        assert uow.transactions.cas_held(row, "CONFIRMED", returning=heads) is None
        uow.commit()
    assert _as_stored(db, row.id) == before


def test_the_same_hold_moves_once(stored: tuple[Database, TransactionRow]) -> None:
    db, row = stored
    with db.write(agent_id=row.agent_id) as uow:
        values, keys = uow.state.value_columns(["missing-key"])
        moved = uow.transactions.cas_held(row, "CONFIRMED", returning=values, returning_params=keys)
        assert moved is not None
        if db.engine.dialect.update_returning:
            assert moved[1] == (None,)  # the key has no row
        uow.commit()
    with db.write(agent_id=row.agent_id) as uow:
        assert uow.transactions.cas_held(row, "FAILED", error="X") is None
        uow.commit()
    assert _as_stored(db, row.id)["status"] == "CONFIRMED"


@pytest.fixture
def session_row(db: Database, rows: Any) -> tuple[Database, str]:
    agent = rows.agent()
    session = rows.session(agent.id)
    with db.write() as uow:
        uow.agents.add(agent)
        uow.sessions.add(session)
        uow.commit()
    return db, session.id


def _usage(db: Database, session_id: str) -> str | None:
    with db.read() as uow:
        found = uow.sessions.get(session_id)
        assert found is not None
        return found.usage_stats


def test_session_usage_is_set_once_for_one_read(session_row: tuple[Database, str]) -> None:
    """Two writers that read the same (NULL) usage: the first writes, the second misses;
    a wei total beyond 2**64 is stored exactly."""
    db, sid = session_row
    first = SessionUsage(tx_count=1, totals={"native": WEI})
    with db.write() as uow:
        assert _store_usage(uow, sid, (None, None), first)
        uow.commit()
    with db.write() as uow:
        assert not _store_usage(uow, sid, (None, None), SessionUsage(tx_count=1))
        uow.commit()
    stored = _usage(db, sid)
    assert stored == first.model_dump_json()
    assert SessionUsage.model_validate_json(stored or "").totals["native"] == WEI
    with db.write() as uow:  # the usage as read now, constraints NULL: writes
        assert _store_usage(uow, sid, (None, stored), SessionUsage(tx_count=2))
        uow.commit()


def test_session_usage_misses_changed_constraints_or_a_revoked_session(
    session_row: tuple[Database, str],
) -> None:
    db, sid = session_row
    with db.write() as uow:
        uow.session.execute(
            text("UPDATE sessions SET constraints = :c WHERE id = :id"),
            {"c": '{"max_tx_count":1}', "id": sid},
        )
        uow.commit()
    with db.write() as uow:  # read before the constraints were set
        assert not _store_usage(uow, sid, (None, None), SessionUsage(tx_count=1))
        assert _store_usage(uow, sid, ('{"max_tx_count":1}', None), SessionUsage(tx_count=1))
        uow.commit()
    with db.write() as uow:
        assert uow.sessions.revoke(sid, NOW)
        uow.commit()
    with db.write() as uow:
        read = ('{"max_tx_count":1}', SessionUsage(tx_count=1).model_dump_json())
        assert not _store_usage(uow, sid, read, SessionUsage(tx_count=2))
        uow.commit()


def test_an_agent_row_built_is_held_clean(db: Database, rows: Any) -> None:
    """A row built from read values and put in a session as loaded writes nothing."""
    from sqlalchemy.orm import make_transient_to_detached

    agent = rows.agent()
    with db.write() as uow:
        uow.agents.add(agent)
        uow.commit()
    with db.write() as uow:
        copy = built(AgentRow, {**agent.model_dump(), "name": "not written"})
        make_transient_to_detached(copy)
        uow.session.add(copy)
        uow.session.flush()
        assert not uow.session.dirty
        uow.commit()
    with db.read() as uow:
        found = uow.agents.get(agent.id)
        assert found is not None and found.name == agent.name
