"""Usage buckets (migration 0009) against the row-by-row computation, on real SQLite files.

``load_usage`` reads the hourly buckets the triggers keep plus the rows of each window's first
hour; ``_scan_usage`` (the computation it replaced) reads every row of the windows. Random
histories of inserts, denials, failures, cancellations, confirmations, expiries, refusals and
dry runs, with the clock moving forward and backward, must give the same Usage, with and
without the wallet's integrity key, through read and write units of work.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waiaas.db import Database, UnitOfWork
from waiaas.db import usage as usage_db
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.ids import new_id
from waiaas.integrity import Integrity
from waiaas.policy.model import DAY, WEEK
from waiaas.services.policies import _scan_usage, load_usage
from waiaas.types import AuditEvent

NOW = 1_780_000_000
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
EVM_TOKEN = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
STATUSES = (
    "PENDING",
    "QUEUED",
    "EXECUTING",
    "SUBMITTED",
    "CONFIRMED",
    "FAILED",
    "CANCELLED",
    "EXPIRED",
)


def make_integrity() -> Integrity:
    return Integrity(
        mac_key=os.urandom(32),
        signing_seed=os.urandom(32),
        wallet_id="test-wallet",
        anchor=(0, "0" * 64),
        head_path=None,
        checkpoint_rows=10**9,
    )


def add_agent(db: Database) -> str:
    agent_id = new_id()
    with db.write() as uow:
        uow.agents.add(
            AgentRow(
                id=agent_id,
                name=f"agent-{agent_id[-6:]}",
                chain="solana",
                network="devnet",
                public_key=f"pk-{agent_id}",
                status="ACTIVE",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        uow.commit()
    return agent_id


def check(uow: UnitOfWork, agent: str, now: int, windows: set[int], exclude: str = "") -> None:
    ordered = sorted(windows | {DAY, WEEK})
    got = load_usage(uow, agent, now, windows, exclude_tx_id=exclude or None)
    want = _scan_usage(uow, agent, now, ordered, exclude)
    assert got == want


# --------------------------------------------------------------------------- strategies

amounts = st.one_of(
    st.integers(0, 10**12),
    st.integers(0, 2**256 - 1),
    st.sampled_from([0, 1, 10**9 - 1, 10**9, 10**18, 2**64, 2**256 - 1, 10**81 - 1]),
)
odd_values = st.sampled_from(
    ["", "12a", "-5", "٣", "1" * 82, "0" * 90 + "7", " 5", "5.0", 7, None, True, [1], {"a": "1"}]
)
spends = st.one_of(
    st.dictionaries(
        st.sampled_from(["native", TOKEN, EVM_TOKEN, EVM_TOKEN.lower(), f" {TOKEN}"]),
        amounts.map(str),
        max_size=3,
    ),
    st.dictionaries(st.sampled_from(["native", TOKEN]), odd_values, min_size=1, max_size=2),
    st.just(None),  # an older row without the spend column: read from its request/asset
    st.sampled_from(["not json", "[1, 2]", '"5"', "{}"]),
)
ops = st.one_of(
    st.tuples(st.just("insert"), st.sampled_from(STATUSES), spends, st.integers(-5000, 5000)),
    st.tuples(st.just("deny"), spends),
    st.tuples(
        st.just("status"),
        st.integers(0, 10**6),
        st.sampled_from(["CONFIRMED", "FAILED", "CANCELLED", "EXPIRED", "SUBMITTED"]),
        st.sampled_from([None, "reverted", "POLICY_DENIED", "TAMPER_DETECTED"]),
    ),
    st.tuples(st.just("spend"), st.integers(0, 10**6), spends),
    st.tuples(st.just("move"), st.integers(0, 10**6)),
    st.tuples(
        st.just("audit"),
        st.sampled_from(
            [AuditEvent.REQUEST_REFUSED, AuditEvent.DRY_RUN, AuditEvent.POLICY_VIOLATION]
        ),
        st.booleans(),
    ),
    st.tuples(
        st.just("clock"),
        st.one_of(
            st.integers(1, 4000),
            st.integers(3000, 3 * DAY),
            st.integers(-2 * DAY, -1),
            st.sampled_from([WEEK, -WEEK, 3600, -3600, DAY + 1]),
        ),
    ),
    st.tuples(st.just("check"), st.sets(st.sampled_from([1, 60, 3599, 3600, 7200, 86_401])))
)


def stored_spend(spend: Any) -> str | None:
    if spend is None or isinstance(spend, str):
        return spend
    return json.dumps(spend)


def tx_row(agent: str, created: int, status: str, spend: Any, error: str | None = None) -> Any:
    meta = {"request": {"type": "TRANSFER", "to": "x" * 32, "amount": "7"}, "asset": TOKEN}
    return TransactionRow(
        id=new_id(),
        agent_id=agent,
        chain="solana",
        type="TRANSFER",
        amount="7",
        status=status,
        created_at=created,
        error=error,
        metadata_json=json.dumps(meta),
        spend=stored_spend(spend),
    )


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def run(db: Database, agents: list[str], steps: list[Any], keyed: bool) -> None:
    now = NOW
    ids: list[tuple[str, str]] = []
    for i, step in enumerate(steps):
        agent = agents[i % len(agents)]
        kind = step[0]
        with db.write() as uow:
            if kind == "insert":
                _, status, spend, offset = step
                row = tx_row(agent, now + offset if offset < 0 else now, status, spend)
                uow.transactions.add(row)
                ids.append((row.id, agent))
            elif kind == "deny":
                row = tx_row(agent, now, "FAILED", step[1], error="POLICY_DENIED")
                uow.transactions.add(row)
                ids.append((row.id, agent))
            elif kind in ("status", "spend", "move") and ids:
                tx_id, _owner = ids[step[1] % len(ids)]
                if kind == "status":
                    fields = {} if step[3] is None else {"error": step[3]}
                    uow.transactions.cas_status(tx_id, STATUSES, step[2], **fields)
                elif kind == "spend":
                    uow.transactions.update_fields(tx_id, spend=stored_spend(step[2]))
                else:
                    uow.transactions.update_fields(tx_id, created_at=now - step[1] % WEEK)
            elif kind == "audit":
                tx_id = ids[-1][0] if step[2] and ids else None
                uow.audit.append(step[1], actor="agent", now=now, agent_id=agent, tx_id=tx_id)
            elif kind == "clock":
                now += step[1]
            elif kind == "check":
                exclude = ids[-1][0] if ids and i % 2 else ""
                for who in agents:
                    check(uow, who, now, set(step[1]), exclude)
            uow.commit()
        if kind == "check":
            with db.read() as uow:
                for who in agents:
                    check(uow, who, now, set(step[1]))
    for who in agents:
        with db.read() as uow:
            check(uow, who, now, {60, 3600})
        with db.write() as uow:
            check(uow, who, now, {1})
            uow.commit()
    if keyed:
        # every bucket the wallet wrote is sealed, and verifies
        conn = sqlite3.connect(db.path)
        try:
            unsealed = conn.execute("SELECT COUNT(*) FROM usage_buckets WHERE mac IS NULL")
            assert unsealed.fetchone() == (0,)
        finally:
            conn.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(ops, min_size=1, max_size=40), keyed=st.booleans())
def test_buckets_agree_with_the_rows(workdir: Path, steps: list[Any], keyed: bool) -> None:
    """Random histories: bucket-based usage equals the row-by-row computation, always."""
    path = workdir / f"{new_id()}.db"
    db = Database.open(path)
    try:
        if keyed:
            db.integrity = make_integrity()
        agents = [add_agent(db), add_agent(db)]
        run(db, agents, [*steps, ("check", {60})], keyed)
    finally:
        db.close()
