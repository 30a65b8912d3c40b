"""Listings and scans of transactions by status read only what they return (migration 0015).

``TransactionRepository.list`` pages newest first by ``(created_at, id)``: every filter shape
reads an index in that order and stops after a page, where ordering by id alone read and
sorted every row of the agent (or scanned the table). ``with_status`` (``process_due`` on
every tick, crash recovery, the kill switch) reads the partial index of the rows not
CONFIRMED instead of the whole table. The pages are exactly what a brute-force filter and
sort of every row gives, for every agent, status and cursor.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.test_partial_tx_indexes import _captured
from tests.support.pg_schema import libpq
from waiaas.db import Database
from waiaas.db.tables import NOT_CONFIRMED, TX_STATUSES

STATUSES = TX_STATUSES
AGENTS = ("agent-a", "agent-b", "agent-c")


def _rows(seed: int = 7, n: int = 600) -> list[dict[str, Any]]:
    """``n`` rows: most CONFIRMED, every other status present; many share a ``created_at``
    and ids are not in ``created_at`` order (a wallet clock apart from the ids' clock)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        status = "CONFIRMED" if rng.random() < 0.7 else rng.choice(STATUSES)
        rows.append(
            {
                "id": f"01900000-0000-7000-8000-{rng.getrandbits(40):012x}",
                "agent": rng.choice(AGENTS),
                "status": status,
                "at": 1_000 + rng.randrange(120),  # ~5 rows a second: ties everywhere
            }
        )
    return rows


def _expected(rows: list[dict[str, Any]], agent: str | None, status: str | None) -> list[str]:
    kept = [
        r
        for r in rows
        if (agent is None or r["agent"] == agent) and (status is None or r["status"] == status)
    ]
    kept.sort(key=lambda r: (r["at"], r["id"]), reverse=True)
    return [r["id"] for r in kept]


def _fill(db: Database, rows: list[dict[str, Any]]) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO agents (id, name, chain, network, public_key, status, created_at, "
            "updated_at) VALUES "
            + ", ".join(
                f"('{a}', '{a}', 'solana', 'devnet', 'pk-{a}', 'ACTIVE', 1, 1)" for a in AGENTS
            )
        )
        values = (
            "(%(id)s, %(agent)s, 'solana', 'TRANSFER', '1', %(status)s, %(at)s)"
            if db.engine.dialect.name == "postgresql"
            else "(:id, :agent, 'solana', 'TRANSFER', '1', :status, :at)"
        )
        conn.exec_driver_sql(
            "INSERT INTO transactions (id, agent_id, chain, type, amount, status, created_at) "
            f"VALUES {values}",
            rows,
        )


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Database, list[dict[str, Any]]]]:
    db = Database.open(tmp_path / "listing.db")  # a schema of its own on PostgreSQL
    rows = _rows()
    _fill(db, rows)
    yield db, rows
    db.close()


@pytest.mark.parametrize("agent", [None, *AGENTS, "agent-unknown"])
def test_every_page_of_every_filter_is_the_brute_force_answer(
    filled: tuple[Database, list[dict[str, Any]]], agent: str | None
) -> None:
    db, rows = filled
    for status in (None, *STATUSES):
        expected = _expected(rows, agent, status)
        for limit in (1, 7, 1000):
            pages: list[str] = []
            before = None
            with db.read() as uow:
                while True:
                    page = uow.transactions.list(
                        agent_id=agent, status=status, limit=limit, before_id=before
                    )
                    pages += [t.id for t in page]
                    if len(page) < limit:
                        break
                    before = page[-1].id
            assert pages == expected, (agent, status, limit)


def test_a_cursor_no_row_has_gives_an_empty_page(
    filled: tuple[Database, list[dict[str, Any]]],
) -> None:
    db, _ = filled
    with db.read() as uow:
        assert uow.transactions.list(before_id="01900000-0000-7000-8000-ffffffffffff") == []


def test_with_status_returns_every_row_of_those_statuses(
    filled: tuple[Database, list[dict[str, Any]]],
) -> None:
    db, rows = filled
    for statuses in (["QUEUED"], ["PENDING"], ["EXECUTING", "SUBMITTED"], ["FAILED"]):
        with db.read() as uow:
            found = [t.id for t in uow.transactions.with_status(statuses, limit=10_000)]
        assert found == sorted(r["id"] for r in rows if r["status"] in statuses)
    with db.read() as uow:  # CONFIRMED is not in the partial index: read as before
        confirmed = uow.transactions.with_status(["CONFIRMED", "FAILED"], limit=10_000)
    assert len(confirmed) == sum(r["status"] in ("CONFIRMED", "FAILED") for r in rows)


SHAPES = {
    "agent": lambda u: u.transactions.list(agent_id="agent-a"),
    "agent_page": lambda u: u.transactions.list(agent_id="agent-a", before_id="x"),
    "agent_failed": lambda u: u.transactions.list(agent_id="agent-a", status="FAILED"),
    "agent_confirmed": lambda u: u.transactions.list(agent_id="agent-a", status="CONFIRMED"),
    "all": lambda u: u.transactions.list(),
    "all_page": lambda u: u.transactions.list(before_id="x"),
    "all_expired": lambda u: u.transactions.list(status="EXPIRED"),
    "due_queued": lambda u: u.transactions.with_status(["QUEUED"]),
    "recovery": lambda u: u.transactions.with_status(["EXECUTING", "SUBMITTED"]),
}
INDEX = {
    "agent": "idx_transactions_agent_created",
    "agent_page": "idx_transactions_agent_created",
    "agent_failed": "idx_transactions_agent_unconfirmed",
    "agent_confirmed": "idx_transactions_agent_created",
    "all": "idx_transactions_created_at",
    "all_page": "idx_transactions_created_at",
    "all_expired": "idx_transactions_status_unconfirmed",
    "due_queued": "idx_transactions_status_unconfirmed",
    "recovery": "idx_transactions_status_unconfirmed",
}


@pytest.mark.sqlite_only  # SQLite's EXPLAIN QUERY PLAN (PostgreSQL: the test below)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_sqlite_reads_an_index_in_page_order(
    filled: tuple[Database, list[dict[str, Any]]], shape: str
) -> None:
    db, _ = filled
    sql, params = _captured(db, SHAPES[shape])
    conn = sqlite3.connect(db.path)
    try:
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        conn.close()
    assert f"INDEX {INDEX[shape]}" in plan, plan
    assert "SCAN transactions" not in plan.split(" | "), plan  # no step reads the table whole
    if shape.startswith(("agent", "all")):  # sorted at most within one created_at
        assert "TEMP B-TREE FOR ORDER BY" not in plan, plan


@pytest.mark.sqlite_only  # the SQLite file
def test_the_partial_indexes_hold_only_the_rows_not_confirmed(
    filled: tuple[Database, list[dict[str, Any]]],
) -> None:
    db, rows = filled
    conn = sqlite3.connect(db.path)
    try:
        for index in ("idx_transactions_status_unconfirmed", "idx_transactions_agent_unconfirmed"):
            (held,) = conn.execute(
                f"SELECT count(*) FROM transactions INDEXED BY {index} "
                f"WHERE status IN {STATUSES!r} AND {NOT_CONFIRMED}"
                if "status_" in index
                else f"SELECT count(*) FROM transactions INDEXED BY {index} "
                f"WHERE agent_id IN {AGENTS!r} AND {NOT_CONFIRMED}"
            ).fetchone()
            assert held == sum(r["status"] != "CONFIRMED" for r in rows)
    finally:
        conn.close()


@pytest.mark.postgresql_only
def test_postgresql_reads_the_unconfirmed_indexes_under_a_generic_plan(
    filled: tuple[Database, list[dict[str, Any]]],
) -> None:
    db, _ = filled
    url = db.engine.url.render_as_string(hide_password=False)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("ANALYZE transactions")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET plan_cache_mode = force_generic_plan")

        def plan(sql: str, args: str) -> str:
            conn.execute("DEALLOCATE ALL")
            conn.execute(f"PREPARE q AS {sql}")
            rows = conn.execute(f"EXPLAIN EXECUTE q({args})").fetchall()
            return " | ".join(r[0] for r in rows)

        by_status = (
            f"SELECT id FROM transactions WHERE status = $1 AND {NOT_CONFIRMED} "
            "ORDER BY created_at DESC, id DESC LIMIT 100"
        )
        assert "idx_transactions_status_unconfirmed" in plan(by_status, "'FAILED'")
        by_agent = (
            f"SELECT id FROM transactions WHERE agent_id = $1 AND status = $2 AND {NOT_CONFIRMED} "
            "ORDER BY created_at DESC, id DESC LIMIT 100"
        )
        assert "idx_transactions_agent_unconfirmed" in plan(by_agent, "'agent-a', 'FAILED'")
