"""CORE-02 §5.4: the four hot queries, as the repositories emit them, use their indexes."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from waiaas.db import Database, UnitOfWork

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
        conn.executemany(
            "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, details, severity)"
            " VALUES (?, 'TX_REQUESTED', 'system', ?, '{}', 'info')",
            [(NOW - 8000 + i, rng.choice(agents)) for i in range(8000)],
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


def test_audit_query_with_cursor_uses_agent_timestamp_index(busy_db: Database) -> None:
    """The paged audit query (agent + range + cursor) walks the same index, no scan."""
    first = _assert_plan(
        busy_db,
        lambda uow: uow.audit.query(agent_id="agent-04", since=NOW - 6000, limit=50),
        index="idx_audit_log_agent_timestamp",
    )
    _assert_plan(
        busy_db,
        lambda uow: uow.audit.query(
            agent_id="agent-04", since=NOW - 6000, limit=50, before_id=first[-1].id
        ),
        index="idx_audit_log_agent_timestamp",
    )


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
