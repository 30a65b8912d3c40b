"""CORE-02 §5.4's four hot queries and every audit filter shape, as the repositories emit
them, use their indexes."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from waiaas.db import Database, UnitOfWork
from waiaas.db.repositories import audit_index

pytestmark = pytest.mark.sqlite_only  # SQLite's EXPLAIN QUERY PLAN on the file

NOW = 1_750_000_000
N_AGENTS = 20


@pytest.fixture(scope="module")
def busy_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A database with a few thousand rows in every table the four queries read."""
    path = tmp_path_factory.mktemp("plans") / "wallet.db"
    Database.open(path).close()
    rng = random.Random(5)
    agents = [f"agent-{i:02d}" for i in range(N_AGENTS)]
    statuses = ["PENDING", "QUEUED", "EXECUTING", "SUBMITTED", "CONFIRMED", "FAILED"]
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO agents (id, name, chain, network, public_key, status, created_at,"
            " updated_at) VALUES (?, ?, 'solana', 'devnet', ?, 'ACTIVE', ?, ?)",
            [(a, a, f"pk-{a}", NOW, NOW) for a in agents],
        )
        conn.executemany(
            "INSERT INTO sessions (id, agent_id, token_hash, expires_at, revoked_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    f"s{i}",
                    rng.choice(agents),
                    hashlib.sha256(f"tok{i}".encode()).hexdigest(),
                    NOW + rng.randrange(-3600, 3600),
                    None if i % 5 else NOW,
                    NOW - 10,
                )
                for i in range(3000)
            ],
        )
        conn.executemany(
            "INSERT INTO transactions (id, agent_id, chain, type, amount, status, created_at)"
            " VALUES (?, ?, 'solana', 'TRANSFER', ?, ?, ?)",
            [
                (
                    f"t{i:06d}",
                    rng.choice(agents),
                    str(rng.randrange(1, 10**20)),
                    # mostly finished, a few in flight, as in a live wallet
                    rng.choice(statuses[:4]) if i % 20 == 0 else rng.choice(statuses[4:]),
                    NOW - 5000 + i,
                )
                for i in range(5000)
            ],
        )
        events = ["TX_REQUESTED", "TX_SUBMITTED", "TX_CONFIRMED", "TX_FAILED", "AUTH_FAILED"]
        conn.executemany(
            "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, tx_id, details,"
            " severity) VALUES (?, ?, 'system', ?, ?, '{}', ?)",
            [
                (
                    NOW - 8000 + i,
                    event,
                    agents[(i // 3) % N_AGENTS],  # a transaction's rows share its agent
                    f"t{i // 3:06d}" if event.startswith("TX_") else None,
                    "warning" if event in ("TX_FAILED", "AUTH_FAILED") else "info",
                )
                for i in range(8000)
                for event in [rng.choices(events, weights=[30, 30, 30, 5, 5])[0]]
            ],
        )
        conn.executemany(
            "INSERT INTO policies (id, agent_id, type, rules, priority, enabled, created_at,"
            " updated_at) VALUES (?, ?, 'SPENDING_LIMIT', '{}', ?, ?, ?, ?)",
            [
                (
                    f"p{i:04d}",
                    None if i % 10 == 0 else rng.choice(agents),
                    rng.randrange(10),
                    0 if i % 7 == 0 else 1,
                    NOW,
                    NOW,
                )
                for i in range(2000)
            ],
        )
    conn.close()
    db = Database.open(path)
    yield db
    db.close()


def _emitted(db: Database, call: Callable[[UnitOfWork], Any]) -> tuple[list[tuple[str, Any]], Any]:
    """Run ``call`` in a read unit of work; return the SELECTs it emitted and its result."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.read() as uow:
            result = call(uow)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    return captured, result


def _plan(path: Path, statement: str, params: Any) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
    finally:
        conn.close()


def _assert_plan(db: Database, call: Callable[[UnitOfWork], Any], *, index: str) -> Any:
    statements, result = _emitted(db, call)
    assert len(statements) == 1, statements
    plan = _plan(db.path, *statements[0])
    assert any(f"INDEX {index} " in f"{step} " for step in plan), plan
    assert not [step for step in plan if step.startswith("SCAN ")], plan
    return result


def test_session_by_token_hash_uses_its_index(busy_db: Database) -> None:
    """§5.4 #1 session token check: SEARCH sessions USING INDEX idx_sessions_token_hash."""
    token_hash = hashlib.sha256(b"tok7").hexdigest()
    row = _assert_plan(
        busy_db,
        lambda uow: uow.sessions.by_token_hash(token_hash, NOW - 7200),
        index="idx_sessions_token_hash",
    )
    assert row is not None and row.id == "s7"


def test_active_transactions_for_agent_use_agent_status_index(busy_db: Database) -> None:
    """§5.4 #2 an agent's in-flight transactions: idx_transactions_agent_status."""
    found = _assert_plan(
        busy_db,
        lambda uow: uow.transactions.active_for_agent("agent-03"),
        index="idx_transactions_agent_status",
    )
    assert found
    assert {t.status for t in found} <= {"PENDING", "QUEUED", "EXECUTING", "SUBMITTED"}
    assert {t.agent_id for t in found} == {"agent-03"}


def test_agent_audit_range_uses_agent_timestamp_index(busy_db: Database) -> None:
    """§5.4 #3 an agent's audit rows in a time range: idx_audit_log_agent_timestamp."""
    rows = _assert_plan(
        busy_db,
        lambda uow: uow.audit.agent_range("agent-04", NOW - 6000, NOW - 1000),
        index="idx_audit_log_agent_timestamp",
    )
    assert len(rows) == 100
    assert [r.timestamp for r in rows] == sorted((r.timestamp for r in rows), reverse=True)


# Every filter shape of AuditRepository.query, with the index it must read.
AUDIT_SHAPES: list[tuple[dict[str, Any], str]] = [
    ({"agent_id": "agent-04"}, "idx_audit_log_agent_timestamp"),
    ({"agent_id": "agent-04", "since": NOW - 6000}, "idx_audit_log_agent_timestamp"),
    (
        {"agent_id": "agent-04", "since": NOW - 6000, "until": NOW - 1000},
        "idx_audit_log_agent_timestamp",
    ),
    ({"since": NOW - 6000, "until": NOW - 1000}, "idx_audit_log_timestamp"),
    ({"until": NOW - 1000}, "idx_audit_log_timestamp"),
    ({"event_types": ["TX_FAILED"]}, "idx_audit_log_event_timestamp"),
    ({"event_types": ["TX_FAILED", "AUTH_FAILED"]}, "idx_audit_log_event_timestamp"),
    ({"severities": ["warning"]}, "idx_audit_log_severity_timestamp"),
    ({"severities": ["warning", "critical"]}, "idx_audit_log_severity_timestamp"),
    ({"severities": ["info"]}, "idx_audit_log_timestamp"),
    ({"tx_id": "TX"}, "idx_audit_log_tx_id"),
    (
        {"agent_id": "agent-04", "event_types": ["AUTH_FAILED"]},
        "idx_audit_log_agent_event_timestamp",
    ),
    (
        {"agent_id": "agent-04", "severities": ["warning", "critical"]},
        "idx_audit_log_agent_severity_timestamp",
    ),
    ({"agent_id": "agent-04", "severities": ["info"]}, "idx_audit_log_agent_timestamp"),
    (
        {"agent_id": "agent-04", "since": NOW - 6000, "event_types": ["TX_FAILED"]},
        "idx_audit_log_agent_event_timestamp",
    ),
    (
        {"agent_id": "agent-04", "until": NOW - 100, "severities": ["warning"]},
        "idx_audit_log_agent_severity_timestamp",
    ),
    (
        {"since": NOW - 6000, "until": NOW - 10, "event_types": ["AUTH_FAILED"]},
        "idx_audit_log_event_timestamp",
    ),
    ({"since": NOW - 6000, "severities": ["warning"]}, "idx_audit_log_severity_timestamp"),
    (
        {"event_types": ["TX_FAILED"], "severities": ["warning"]},
        "idx_audit_log_event_timestamp",
    ),
    (
        {"agent_id": "agent-04", "event_types": ["TX_FAILED"], "severities": ["warning"]},
        "idx_audit_log_agent_event_timestamp",
    ),
    ({"tx_id": "TX", "agent_id": "agent-04"}, "idx_audit_log_tx_id"),
]


def _audit_steps(db: Database, filters: dict[str, Any], cursor: int | None) -> list[str]:
    statements, _ = _emitted(
        db, lambda uow: uow.audit.query(**filters, limit=101, before_id=cursor)
    )
    assert len(statements) == 1, statements
    return _plan(db.path, *statements[0])


@pytest.mark.parametrize(("filters", "index"), AUDIT_SHAPES, ids=[repr(f) for f, _ in AUDIT_SHAPES])
@pytest.mark.parametrize("paged", [False, True], ids=["first page", "with cursor"])
def test_every_audit_filter_shape_searches_its_index(
    busy_db: Database, filters: dict[str, Any], index: str, paged: bool
) -> None:
    """Each filter shape, first page and a deep page, is one SEARCH of its own index (no
    SCAN of anything), in (timestamp, id) order: a sort appears only to merge the streams
    of an IN list or the handful of rows of one transaction."""
    if filters.get("tx_id") == "TX":  # a transaction of agent-04 with three audit rows
        with busy_db.read() as uow:
            tx_id = uow.session.execute(
                text(
                    "SELECT tx_id FROM audit_log WHERE agent_id = 'agent-04' AND tx_id IS NOT NULL"
                    " GROUP BY tx_id HAVING count(*) = 3 LIMIT 1"
                )
            ).scalar_one()
        filters = {**filters, "tx_id": tx_id}
    cursor = None
    if paged:
        with busy_db.read() as uow:
            found = uow.audit.query(**filters, limit=1000)
        assert len(found) >= 2, filters
        cursor = found[len(found) // 2].id
    steps = _audit_steps(busy_db, filters, cursor)
    if filters == {"severities": ["info"]} and cursor is None:
        # most rows are "info": the newest entries of the time index, up to the limit
        assert steps == [f"SCAN a USING INDEX {index}"], steps
        return
    assert not [s for s in steps if s.startswith("SCAN ")], steps
    outer = [s for s in steps if s.startswith("SEARCH a ")]
    assert len(outer) == 1 and f"USING INDEX {index} (" in outer[0], steps
    if cursor is not None and index != "idx_audit_log_tx_id":  # the cursor bounds the range
        assert "timestamp<?" in outer[0], steps
    sorts = [s for s in steps if "TEMP B-TREE" in s]
    merges = any(len(v) > 1 for v in filters.values() if isinstance(v, list)) or "tx_id" in filters
    assert bool(sorts) == merges, steps


@pytest.mark.parametrize("paged", [False, True], ids=["first page", "with cursor"])
def test_unfiltered_audit_page_reads_only_the_newest_index_entries(
    busy_db: Database, paged: bool
) -> None:
    """No filter: the newest entries of idx_audit_log_timestamp, in order, up to the limit
    (SQLite calls that walk a SCAN; it stops at the LIMIT); with a cursor, a SEARCH."""
    cursor = 4000 if paged else None
    steps = _audit_steps(busy_db, {}, cursor)
    if paged:
        assert steps[0].startswith("SEARCH a USING INDEX idx_audit_log_timestamp (timestamp<?)")
    else:
        assert steps == ["SCAN a USING INDEX idx_audit_log_timestamp"], steps
    assert not [s for s in steps if "TEMP B-TREE" in s], steps


def test_audit_query_plans_name_existing_indexes(busy_db: Database) -> None:
    """Every index the query can name exists in the schema (INDEXED BY fails otherwise)."""
    with busy_db.read() as uow:
        raw = uow.session.connection().connection.driver_connection
        assert raw is not None
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    for agent in (False, True):
        for events in (False, True):
            for rare in (False, True):
                for tx in (False, True):
                    chosen = audit_index(agent=agent, events=events, rare_severities=rare, tx=tx)
                    assert chosen in names


def test_policies_for_agent_use_the_agent_id_index(busy_db: Database) -> None:
    """§5.4 #4 enabled policies of an agent plus global ones: idx_policies_agent_id, no SCAN."""
    found = _assert_plan(
        busy_db, lambda uow: uow.policies.for_agent("agent-05"), index="idx_policies_agent_id"
    )
    assert found
    assert all(p.enabled == 1 and p.agent_id in ("agent-05", None) for p in found)
    assert any(p.agent_id is None for p in found)
    keys = [(-p.priority, p.id) for p in found]
    assert keys == sorted(keys)
    with busy_db.read() as uow:
        everything = uow.policies.all(agent_id="agent-05")
    assert [p.id for p in found] == [p.id for p in everything if p.enabled == 1]


def test_window_refusal_reads_search_the_refusals_index(busy_db: Database) -> None:
    """What spending windows read from the audit log (refusals and dry runs of one agent in a
    time range) searches the partial index holding only those rows (migration 0011), not
    every audit row of the agent; the index holds exactly the rows the usage triggers count."""
    from waiaas.db import tables, usage
    from waiaas.services import policies

    assert tables._REFUSALS == usage.REFUSAL_SQL
    params = {"agent": "agent-04", "since": NOW - 6000, "until": NOW, "after": 0}
    for statement in (policies._EDGE_AUDIT_SQL, policies._audit_counts_sql(3)):
        for i in range(3):
            params[f"since{i}"] = NOW - 60 * 10**i
        plan = _plan(busy_db.path, statement, params)
        assert any(
            "INDEX idx_audit_log_agent_refusals (agent_id=? AND timestamp>?" in s for s in plan
        )
        assert not [step for step in plan if step.startswith("SCAN ")], plan


def _edge_params() -> dict[str, object]:
    params: dict[str, object] = {"agent": "agent-04", "exclude": "t000004"}
    params.update(denied="POLICY_DENIED", base=NOW - 3600 * 24 * 100)
    for i in range(3):
        params[f"since{i}"] = params[f"cut{i}"] = NOW - 3600 * 24 * 10**i
        params[f"until{i}"] = NOW - 3600 * 24 * 10**i + 1800
        params[f"lo{i}"], params[f"hi{i}"] = params[f"since{i}"], params[f"until{i}"]
    return params


# each interval counted per group (None) or by one segment of its own
GROUPED = (None, None, None)
SEGMENTS = (((">", "<"),),) * 3
AGENT_INDEX = "INDEX idx_transactions_agent_created (agent_id=?"


@pytest.mark.parametrize("layout", [GROUPED, SEGMENTS])
@pytest.mark.parametrize("exclude", [False, True])
def test_window_edge_reads_in_one_statement_search_the_indexes(
    busy_db: Database, layout: Any, exclude: bool
) -> None:
    """The rows of every window's first hour, transactions and refusals alike (counted per
    hour and position, plus the spending rows where the day or the week needs them), are read
    in one statement; each part of it searches its index (no table is scanned). Without a
    transaction to leave out, the transaction counts read the index alone (migration 0016:
    ``error`` is in it), and the segments' counts sort nothing."""
    from waiaas.services import policies

    params = _edge_params()
    for spending, parts in (((False, False, False), 3), ((True, False, True), 5)):
        sql = policies._edges_sql(layout, spending, 3, "sqlite", False, exclude)
        assert ("t.id != :exclude" in sql) is exclude
        plan = _plan(busy_db.path, sql, params)
        assert sum(AGENT_INDEX in s for s in plan) == parts
        assert sum("INDEX idx_audit_log_agent_refusals (agent_id=?" in s for s in plan) == 3
        assert not [step for step in plan if step.startswith("SCAN ")], plan
        covering = sum(f"COVERING {AGENT_INDEX}" in s for s in plan)
        assert covering == (0 if exclude else 3), plan
        if layout is SEGMENTS:
            assert not [s for s in plan if "TEMP B-TREE" in s], plan


@pytest.mark.parametrize("exclude", [False, True])
def test_window_edge_read_with_the_failures_rows_searches_the_indexes(
    busy_db: Database, exclude: bool
) -> None:
    """The rows counted for consecutive failures are read by the same statement as the
    windows' first hours, each part through an index: the FAILED rows through the partial
    index of rows not CONFIRMED, the last CONFIRMED row's second and that second's CONFIRMED
    rows through the agent's index (its subqueries too); no table is scanned (``l``, a
    constant row, is the one-row subquery of that second), and without any first-hour
    interval the statement is that part alone."""
    from waiaas.services import policies

    params = _edge_params()
    for layout, parts in ((SEGMENTS, 3), (GROUPED, 3), ((), 0)):
        spending = (False,) * len(layout)
        sql = policies._edges_sql(layout, spending, 3, "sqlite", True, exclude)
        plan = _plan(busy_db.path, sql, params)
        indexed = [s for s in plan if AGENT_INDEX in s]
        # each interval's part; the failures' parts: the last CONFIRMED second's subquery
        # five times, and that second's CONFIRMED rows by (agent_id, created_at)
        assert len(indexed) == parts + 6, plan
        assert sum("(agent_id=? AND created_at=?)" in s for s in indexed) == 1, plan
        unconfirmed = [s for s in plan if "INDEX idx_transactions_agent_unconfirmed" in s]
        assert len(unconfirmed) == 2, plan  # the FAILED rows, and those of that second
        assert all("(agent_id=? AND status=? AND created_at" in s for s in unconfirmed), plan
        assert sum("INDEX idx_audit_log_agent_refusals (agent_id=?" in s for s in plan) == parts
        one_row = ("SCAN l", "SCAN CONSTANT ROW")
        assert not [s for s in plan if s.startswith("SCAN ") and s not in one_row], plan


def test_sealing_reads_the_unsealed_buckets_rows_through_the_indexes(busy_db: Database) -> None:
    """At commit, the rows of the unsealed buckets are read in one statement: the partial
    index of unsealed rows, then each bucket's rows by its key (never the whole table)."""
    from waiaas.db import usage

    plan = _plan(busy_db.path, usage._UNSEALED_ROWS_SQL, {})
    assert any("USING INDEX idx_usage_buckets_unsealed" in s for s in plan), plan
    assert any("SEARCH usage_buckets USING PRIMARY KEY (agent_id=? AND start=?)" in s for s in plan)
    assert not [s for s in plan if s.startswith("SCAN ") and "idx_usage_buckets_unsealed" not in s]


def test_state_keys_with_the_live_session_read_search_the_keys(busy_db: Database) -> None:
    """Admission's first read (the wallet_state keys its checks read, with a remembered
    token's live session and agent row) is one statement: wallet_state by its key, the
    session and the agent by theirs; only the one-row parts it joins are scanned."""
    from waiaas import sessions
    from waiaas.db.repositories import _ALONG_SQL

    live = sessions._LIVE_SQL_WITH_AGENT.replace("SELECT ", "SELECT 1, ", 1)
    statement = _ALONG_SQL["sqlite"].format(keys="?, ?, ?", sql=live)
    params = ("kill_switch", "policy-set:*", "generation:policies")
    params += ("sid", "hash", "agent-04", NOW, "solana", "devnet")
    plan = _plan(busy_db.path, statement, params)
    assert any(
        "SEARCH wallet_state USING INDEX sqlite_autoindex_wallet_state_1 (key=?)" in s for s in plan
    ), plan
    assert any("SEARCH s USING INDEX sqlite_autoindex_sessions_1 (id=?)" in s for s in plan)
    assert any("SEARCH a USING INDEX sqlite_autoindex_agents_1 (id=?)" in s for s in plan)
    scans = [s for s in plan if s.startswith("SCAN ")]
    assert sorted(scans) == ["SCAN l LEFT-JOIN", "SCAN st"], plan
