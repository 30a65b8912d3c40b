"""The partial transaction indexes of migration 0014 serve every query that reads them.

``idx_transactions_agent_status`` holds an agent's in-flight rows only: the queries of those
rows (``active_for_agent``, admission's busy and nonce checks, a listing of one in-flight
status) name its condition (:data:`waiaas.db.tables.IN_FLIGHT`), so SQLite uses it and so
does PostgreSQL, under a generic plan too (the parameters' values unknown). A range read of
``queued_at`` implies the condition of ``idx_transactions_queued_at``. Both indexes hold
only those rows, and the queries return the same rows they did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from tests.support.pg_schema import libpq
from waiaas.db import Database, UnitOfWork
from waiaas.db.tables import IN_FLIGHT
from waiaas.pipeline.admission import _BUSY_OR_TWIN

STATUSES = ("PENDING", "QUEUED", "EXECUTING", "SUBMITTED", "CONFIRMED", "FAILED")
AGENTS = ("agent-a", "agent-b")


def _rows() -> list[dict[str, Any]]:
    """1200 transactions of two agents: one in ten in flight, one in seven queued once."""
    return [
        {
            "id": f"t{i:05d}",
            "agent": AGENTS[i % 2],
            "status": STATUSES[(i // 20) % 4] if i % 20 < 2 else STATUSES[4 + (i // 2) % 2],
            "at": 1000 + i,
            "queued": 1000 + i if i % 7 == 0 else None,
        }
        for i in range(1200)
    ]


def _fill(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO agents (id, name, chain, network, public_key, status, created_at, "
            "updated_at) VALUES ('agent-a', 'a', 'solana', 'devnet', 'pk-a', 'ACTIVE', 1, 1), "
            "('agent-b', 'b', 'solana', 'devnet', 'pk-b', 'ACTIVE', 1, 1)"
        )
        values = (
            "(%(id)s, %(agent)s, 'solana', 'TRANSFER', '1', %(status)s, %(at)s, %(queued)s)"
            if db.engine.dialect.name == "postgresql"
            else "(:id, :agent, 'solana', 'TRANSFER', '1', :status, :at, :queued)"
        )
        conn.exec_driver_sql(
            "INSERT INTO transactions (id, agent_id, chain, type, amount, status, created_at, "
            f"queued_at) VALUES {values}",
            _rows(),
        )


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[Database]:
    db = Database.open(tmp_path / "plans.db")  # a schema of its own on PostgreSQL
    _fill(db)
    yield db
    db.close()


def test_the_in_flight_queries_return_the_same_rows(filled: Database) -> None:
    with filled.read() as uow:
        active = uow.transactions.active_for_agent("agent-a")
        listed = uow.transactions.list(agent_id="agent-a", status="SUBMITTED", limit=1000)
        final = uow.transactions.list(agent_id="agent-a", status="CONFIRMED", limit=1000)
    mine = [r for r in _rows() if r["agent"] == "agent-a"]
    in_flight = {r["id"] for r in mine if r["status"] in STATUSES[:4]}
    assert {t.id for t in active} == in_flight and len(in_flight) == 60
    assert {t.status for t in active} == set(STATUSES[:4])
    assert {t.id for t in listed} == {t.id for t in active if t.status == "SUBMITTED"}
    assert [t.id for t in listed] == sorted((t.id for t in listed), reverse=True)
    assert {t.id for t in final} == {r["id"] for r in mine if r["status"] == "CONFIRMED"}
    assert [t.id for t in final] == sorted((t.id for t in final), reverse=True)


def _captured(db: Database, call: Any) -> tuple[str, Any]:
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.read() as uow:
            call(uow)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert len(seen) == 1, seen
    return seen[0]


def _active(uow: UnitOfWork) -> Any:
    return uow.transactions.active_for_agent("agent-a")


def _listed(uow: UnitOfWork) -> Any:
    return uow.transactions.list(agent_id="agent-a", status="EXECUTING")


@pytest.mark.sqlite_only  # SQLite's EXPLAIN QUERY PLAN (PostgreSQL: the test below)
def test_sqlite_reads_the_partial_indexes(filled: Database) -> None:
    conn = sqlite3.connect(filled.path)
    try:

        def plan(sql: str, params: Any) -> str:
            return " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

        found = plan(*_captured(filled, _active))
        assert "INDEX idx_transactions_agent_status (agent_id=? AND status=?)" in found
        # a listing of one status reads migration 0015's index, in created_at order
        found = plan(*_captured(filled, _listed))
        assert "INDEX idx_transactions_agent_unconfirmed (agent_id=? AND status=?)" in found
        busy = plan(_BUSY_OR_TWIN["sqlite"], ("a", "EXECUTING", "h", "a", "EXECUTING", "SUBMITTED"))
        assert busy.count("idx_transactions_agent_status (agent_id=? AND status=?)") == 2
        queued = plan("SELECT id FROM transactions WHERE queued_at > ?", (5,))
        assert "INDEX idx_transactions_queued_at (queued_at>?)" in queued
        # the index holds the in-flight rows only
        (held,) = conn.execute(
            "SELECT count(*) FROM transactions INDEXED BY idx_transactions_agent_status "
            f"WHERE agent_id IN ('agent-a', 'agent-b') AND {IN_FLIGHT}"
        ).fetchone()
        assert held == 120
    finally:
        conn.close()


@pytest.mark.postgresql_only
def test_postgresql_reads_the_partial_indexes_under_a_generic_plan(filled: Database) -> None:
    url = filled.engine.url.render_as_string(hide_password=False)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("ANALYZE transactions")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET plan_cache_mode = force_generic_plan")

        def plan(sql: str, count: int) -> str:
            conn.execute("DEALLOCATE ALL")
            conn.execute(f"PREPARE q AS {sql}")
            args = ", ".join(["'agent-a'"] + ["'EXECUTING'"] * (count - 1))
            rows = conn.execute(f"EXPLAIN EXECUTE q({args})").fetchall()
            return " | ".join(r[0] for r in rows)

        numbered = (
            "SELECT 1 FROM transactions WHERE agent_id = $1 AND status = $2 AND "
            f"{IN_FLIGHT} LIMIT 1"
        )
        assert "idx_transactions_agent_status" in plan(numbered, 2)
        nonces = f"SELECT metadata FROM transactions WHERE agent_id = $1 AND {IN_FLIGHT}"
        assert "idx_transactions_agent_status" in plan(nonces, 1)
        pairs = (
            "SELECT metadata FROM transactions WHERE agent_id = $1 AND status IN ($2, $3) "
            f"AND {IN_FLIGHT}"
        )
        assert "idx_transactions_agent_status" in plan(pairs, 3)
        conn.execute("DEALLOCATE ALL")
        rows = conn.execute("EXPLAIN SELECT id FROM transactions WHERE queued_at > 5").fetchall()
        assert "idx_transactions_queued_at" in " | ".join(r[0] for r in rows)
