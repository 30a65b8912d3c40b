"""PolicyService and load_usage on a real SQLite file."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from waiaas.db import Database
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.errors import InvalidInputError, NotFoundError
from waiaas.ids import new_id
from waiaas.policy import (
    AgentContext,
    PolicySpec,
    PolicyType,
    UsageRow,
    compute_usage,
    evaluate,
    required_windows,
    spend_of,
)
from waiaas.services.policies import (
    _FAILURES_SQL,
    _LEGACY_SPEND_SQL,
    _SPEND_SQL,
    PolicyService,
    _counts_sql,
    load_usage,
)
from waiaas.testing import FrozenClock
from waiaas.types import Transfer

NOW = 1_780_000_000
SOL = 10**9
DEST = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
EVM_DEST = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated database file."""
    database = Database.open(tmp_path / "wallet.db")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def clock() -> FrozenClock:
    """A clock that stands still at NOW."""
    return FrozenClock(NOW)


@pytest.fixture
def service(db: Database, clock: FrozenClock) -> PolicyService:
    """The service under test."""
    return PolicyService(db, clock)


def add_agent(db: Database, chain: str = "solana", owner: str | None = DEST) -> str:
    agent_id = new_id()
    with db.write() as uow:
        uow.agents.add(
            AgentRow(
                id=agent_id,
                name=f"agent-{agent_id[-6:]}",
                chain=chain,
                network="devnet",
                public_key=f"pk-{agent_id}",
                status="ACTIVE",
                owner_address=owner,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        uow.commit()
    return agent_id


def tx_row(
    agent_id: str,
    created_at: int,
    status: str,
    request: Transfer | None = None,
    *,
    error: str | None = None,
    spend: dict[str, int] | None = None,
    decision: Any = None,
) -> TransactionRow:
    req = request or Transfer(to=DEST, amount=1)
    meta: dict[str, Any] = {"request": req.model_dump(mode="json"), "asset": "native"}
    spent = {
        k: str(v) for k, v in (spend if spend is not None else spend_of(req, "solana")).items()
    }
    if decision is not None:
        meta["decision"] = decision.model_dump(mode="json")
    return TransactionRow(
        id=new_id(),
        agent_id=agent_id,
        chain="solana",
        type=req.type,
        amount=str(req.amount),
        to_address=req.to,
        status=status,
        created_at=created_at,
        error=error,
        metadata_json=json.dumps(meta),
        spend=json.dumps(spent),  # as the pipeline writes it (migration 0006)
    )


def insert(db: Database, rows: list[TransactionRow]) -> None:
    with db.write() as uow:
        for row in rows:
            uow.transactions.add(row)
        uow.commit()


def policy_audit(db: Database) -> list[dict[str, Any]]:
    with db.read() as uow:
        rows = uow.audit.query(event_types=["POLICY_UPDATED"], limit=1000)
    return [
        json.loads(r.details) | {"_actor": r.actor, "_agent": r.agent_id} for r in reversed(rows)
    ]


# --------------------------------------------------------------------------- management


def test_add_update_enable_disable_remove_each_write_an_audit_row(
    db: Database, service: PolicyService, clock: FrozenClock
) -> None:
    """Every change is stored and audited with the policy before and after."""
    agent = add_agent(db)
    info = service.add(
        "SPENDING_LIMIT", {"per_transaction": "1000"}, agent_id=agent, priority=3, actor="owner"
    )
    assert info.type is PolicyType.SPENDING_LIMIT
    assert info.rules == {
        "asset": "native",
        "on_exceed": "deny",
        "per_transaction": "1000",
        "unpriced_tier": "APPROVAL",
    }
    assert service.get(info.id) == info
    clock.advance(10)
    changed = service.update(info.id, rules={"per_transaction": "2000"}, priority=5)
    assert changed.rules["per_transaction"] == "2000"
    assert (changed.priority, changed.updated_at) == (5, NOW + 10)
    assert service.disable(info.id).enabled is False
    assert service.enable(info.id).enabled is True
    assert service.update(info.id, priority=5) == service.get(info.id)  # no change, no audit
    removed = service.remove(info.id)
    assert removed.id == info.id
    with pytest.raises(NotFoundError):
        service.get(info.id)
    audit = policy_audit(db)
    assert [a["action"] for a in audit] == ["added", "updated", "updated", "updated", "removed"]
    # an added policy has no "before" (audit details carry no nulls)
    assert "before" not in audit[0] and audit[0]["after"]["priority"] == 3
    assert audit[0]["_actor"] == "owner" and audit[0]["_agent"] == agent
    assert audit[1]["before"]["rules"]["per_transaction"] == "1000"
    assert audit[1]["after"]["rules"]["per_transaction"] == "2000"
    assert (audit[2]["before"]["enabled"], audit[2]["after"]["enabled"]) == (True, False)
    assert "after" not in audit[4] and audit[4]["before"]["id"] == info.id


def test_invalid_rules_are_rejected_with_every_problem_and_nothing_written(
    db: Database, service: PolicyService
) -> None:
    """A bad policy leaves neither a row nor an audit entry."""
    with pytest.raises(InvalidInputError) as caught:
        service.add(
            "ALLOWED_ADDRESSES", {"addresses": ["bad", DEST, 7], "mode": "greylist", "x": 1}
        )
    assert len(vars(caught.value)["problems"]) == 4
    with pytest.raises(InvalidInputError):
        service.add("NOT_A_TYPE", {})
    with pytest.raises(NotFoundError):
        service.add("RATE_LIMIT", {"max_requests": 1, "window_seconds": 1}, agent_id=new_id())
    for bad in ({"priority": 1.5}, {"priority": 10**9}, {"enabled": "yes"}, {"actor": ""}):
        with pytest.raises(InvalidInputError):
            service.add("RATE_LIMIT", {"max_requests": 1, "window_seconds": 1}, **bad)
    assert service.list() == []
    assert policy_audit(db) == []
    ok = service.add("RATE_LIMIT", {"max_requests": 1, "window_seconds": 1})
    with pytest.raises(InvalidInputError):
        service.update(ok.id, rules={"max_requests": 0, "window_seconds": 1})
    assert service.get(ok.id).rules["max_requests"] == 1
    assert len(policy_audit(db)) == 1


def test_policies_persist_normalised_across_reopen(tmp_path: Path, clock: FrozenClock) -> None:
    """Rules are stored validated and normalised; reopening the file gives them back."""
    path = tmp_path / "w.db"
    first = Database.open(path)
    try:
        info = PolicyService(first, clock).add(
            "ALLOWED_ADDRESSES", {"addresses": [EVM_DEST, EVM_DEST.lower()]}
        )
    finally:
        first.close()
    second = Database.open(path)
    try:
        again = PolicyService(second, clock).get(info.id)
    finally:
        second.close()
    assert again.rules["addresses"] == [EVM_DEST.lower()]
    assert again == info


def test_list_and_specs_scope_global_and_agent_policies(
    db: Database, service: PolicyService
) -> None:
    """An agent sees its own and the global enabled policies, highest priority first."""
    a, b = add_agent(db), add_agent(db)
    glob = service.add("RATE_LIMIT", {"max_requests": 5, "window_seconds": 60}, priority=1)
    own = service.add(
        "RATE_LIMIT", {"max_requests": 9, "window_seconds": 60}, agent_id=a, priority=7
    )
    other = service.add("RATE_LIMIT", {"max_requests": 9, "window_seconds": 60}, agent_id=b)
    off = service.add(
        "RATE_LIMIT", {"max_requests": 1, "window_seconds": 60}, agent_id=a, enabled=False
    )
    assert [p.id for p in service.list(agent_id=a)] == [own.id, glob.id, off.id]
    assert {p.id for p in service.list()} == {glob.id, own.id, other.id, off.id}
    with db.read() as uow:
        specs = service.specs(uow, a)
    assert [s.id for s in specs] == [own.id, glob.id]


# --------------------------------------------------------------------------- usage


def test_load_usage_agrees_with_compute_usage(db: Database) -> None:
    """The SQL route and the pure route give the same Usage for the same history."""
    agent, other = add_agent(db), add_agent(db)
    rng = random.Random(7)
    statuses = [
        "PENDING",
        "QUEUED",
        "EXECUTING",
        "SUBMITTED",
        "CONFIRMED",
        "FAILED",
        "CANCELLED",
        "EXPIRED",
    ]
    rows: list[TransactionRow] = []
    pure: list[UsageRow] = []
    for _ in range(300):
        created = NOW - rng.randrange(0, 9 * 86_400)
        status = rng.choice(statuses)
        error = rng.choice([None, "POLICY_DENIED", "reverted"]) if status == "FAILED" else None
        amount = rng.choice([1, SOL, 2**200, rng.randrange(10**30)])
        spend = (
            {"native": amount} if rng.random() < 0.7 else {"native": amount, TOKEN: amount // 3 + 1}
        )
        rows.append(
            tx_row(
                agent, created, status, Transfer(to=DEST, amount=amount), error=error, spend=spend
            )
        )
        items = sorted(spend.items())
        pure.append(UsageRow(created, status, items[0][0], items[0][1], error, tuple(items[1:])))
    rows.append(tx_row(other, NOW - 5, "CONFIRMED", Transfer(to=DEST, amount=10**20)))
    insert(db, rows)
    windows = {60, 3600, 86_400}
    with db.read() as uow:
        loaded = load_usage(uow, agent, NOW, windows)
    expected = compute_usage(pure, NOW, windows)
    assert loaded.spent == expected.spent
    assert loaded.requests == expected.requests
    assert loaded.transactions == expected.transactions
    assert loaded.denials == expected.denials
    assert loaded.spent["native"].week > 2**64


def test_load_usage_excludes_one_transaction(db: Database) -> None:
    """A queued transaction re-checked before it executes does not count against itself."""
    agent = add_agent(db)
    queued = tx_row(agent, NOW - 10, "QUEUED", Transfer(to=DEST, amount=5 * SOL))
    insert(db, [queued, tx_row(agent, NOW - 20, "CONFIRMED", Transfer(to=DEST, amount=SOL))])
    with db.read() as uow:
        assert load_usage(uow, agent, NOW, []).spent["native"].day == 6 * SOL
        assert load_usage(uow, agent, NOW, [], exclude_tx_id=queued.id).spent["native"].day == SOL
        assert load_usage(uow, agent, NOW, [], exclude_tx_id=queued.id).requests[86_400] == 1


def test_load_usage_falls_back_to_the_request_or_asset(db: Database) -> None:
    """Rows without a spend column are read from the stored request, then asset + amount."""
    agent = add_agent(db)
    no_spend = tx_row(agent, NOW - 10, "CONFIRMED", Transfer(to=DEST, amount=7))
    no_spend.spend = None
    bare = tx_row(agent, NOW - 20, "CONFIRMED", Transfer(to=DEST, amount=11))
    bare.spend = None
    bare.metadata_json = json.dumps({"asset": TOKEN})
    insert(db, [no_spend, bare])
    with db.read() as uow:
        usage = load_usage(uow, agent, NOW, [])
    assert usage.spent["native"].day == 7
    assert usage.spent[TOKEN].day == 11


def test_consecutive_failures_from_the_database(db: Database) -> None:
    """Failures after the last confirmed row, denials and cancels ignored, ties by id."""
    agent = add_agent(db)
    insert(db, [tx_row(agent, NOW - 500, "FAILED", error="x")])
    insert(db, [tx_row(agent, NOW - 400, "CONFIRMED")])
    insert(db, [tx_row(agent, NOW - 400, "FAILED", error="x")])  # same second, later id
    insert(db, [tx_row(agent, NOW - 300, "FAILED", error="POLICY_DENIED")])
    insert(db, [tx_row(agent, NOW - 200, "CANCELLED")])
    insert(db, [tx_row(agent, NOW - 100, "FAILED", error="reverted")])
    with db.read() as uow:
        usage = load_usage(uow, agent, NOW, [])
    assert usage.consecutive_failures == 2
    fresh = add_agent(db)
    insert(
        db,
        [
            tx_row(fresh, NOW - 10 * 86_400, "FAILED", error="x"),
            tx_row(fresh, NOW - 1, "FAILED", error="y"),
        ],
    )
    with db.read() as uow:
        assert load_usage(uow, fresh, NOW, []).consecutive_failures == 2
    # two confirmed rows in one second: the failure between them (by id) does not count
    tied = add_agent(db)
    for status in ("CONFIRMED", "FAILED", "CONFIRMED"):
        insert(db, [tx_row(tied, NOW - 50, status, error="x" if status == "FAILED" else None)])
    insert(db, [tx_row(tied, NOW - 10, "FAILED", error="z")])
    with db.read() as uow:
        assert load_usage(uow, tied, NOW, []).consecutive_failures == 1


@pytest.mark.sqlite_only  # SQLite's EXPLAIN QUERY PLAN; PostgreSQL runs them unhinted
def test_usage_queries_use_the_agent_created_index(db: Database) -> None:
    """Every usage query walks idx_transactions_agent_created (cost follows the window)."""
    params = {
        "agent": "a",
        "since": 0,
        "exclude": "",
        "denied": "POLICY_DENIED",
        "since0": 0,
        "since1": 0,
    }
    with db.read() as uow:
        for sql in (_counts_sql(2), _SPEND_SQL, _LEGACY_SPEND_SQL, _FAILURES_SQL):
            plan = uow.session.execute(text("EXPLAIN QUERY PLAN " + str(sql)), params).all()
            details = " ".join(str(row[-1]) for row in plan)
            assert "idx_transactions_agent_created" in details, details
            assert "SCAN t" not in details.replace("SCAN t USING", "")
            assert "SCAN c" not in details.replace("SCAN c USING", "")


def test_budget_holds_against_history_in_the_database(db: Database) -> None:
    """evaluate() with load_usage denies the request that would overshoot the daily budget."""
    agent = add_agent(db)
    insert(db, [tx_row(agent, NOW - 100, "CONFIRMED", Transfer(to=DEST, amount=4 * SOL))])
    spec = PolicySpec(
        id="p", agent_id=None, type="SPENDING_LIMIT", rules={"daily_total": str(5 * SOL)}
    )
    ctx = AgentContext(id=agent, chain="solana", network="devnet", owner_address=DEST)
    with db.read() as uow:
        usage = load_usage(uow, agent, NOW, required_windows([spec]))
    assert evaluate(Transfer(to=DEST, amount=SOL), ctx, [spec], usage, NOW).allowed
    assert not evaluate(Transfer(to=DEST, amount=SOL + 1), ctx, [spec], usage, NOW).allowed


# --------------------------------------------------------------------------- dry run / replay


def test_dry_run_uses_stored_policies_and_usage(db: Database, service: PolicyService) -> None:
    """dry_run explains against what is stored, and writes nothing."""
    agent = add_agent(db)
    service.add(
        "SPENDING_LIMIT", {"daily_total": str(5 * SOL), "instant_max": str(SOL)}, agent_id=agent
    )
    insert(db, [tx_row(agent, NOW - 100, "CONFIRMED", Transfer(to=DEST, amount=4 * SOL))])
    result = service.dry_run(agent, {"type": "TRANSFER", "to": DEST, "amount": str(2 * SOL)})
    assert not result.decision.allowed
    # 4 SOL already spent today: with only instant_max set, the day's total above it needs
    # the owner (velocity tier), whatever the size of this request
    assert "<= 1 SOL would be allowed as APPROVAL" in result.hints
    with db.read() as uow:
        count = uow.session.execute(text("SELECT COUNT(*) FROM transactions")).scalar_one()
    assert count == 1
    with pytest.raises(NotFoundError):
        service.dry_run(new_id(), Transfer(to=DEST, amount=1))


def test_replay_against_recorded_transactions(db: Database, service: PolicyService) -> None:
    """Recorded requests replayed against a stricter set report the decisions that change."""
    agent = add_agent(db)
    ctx = AgentContext(id=agent, chain="solana", network="devnet", owner_address=DEST)
    rows = []
    history: list[UsageRow] = []
    for i in range(4):
        at = NOW - 3600 + i * 60
        req = Transfer(to=DEST, amount=2 * SOL)
        decision = evaluate(req, ctx, [], compute_usage(history, at, []), at)
        rows.append(tx_row(agent, at, "CONFIRMED", req, decision=decision))
        history.append(UsageRow(at, "CONFIRMED", "native", 2 * SOL))
    unrelated = tx_row(agent, NOW - 30, "CONFIRMED")
    unrelated.metadata_json = None
    insert(db, [*rows, unrelated])
    stricter = [
        PolicySpec(
            id="s", agent_id=None, type="SPENDING_LIMIT", rules={"daily_total": str(5 * SOL)}
        )
    ]
    diffs = service.replay(agent, stricter)
    assert [d.tx_id for d in diffs] == [rows[2].id, rows[3].id]
    assert all(d.changes == ("allowed: True -> False",) for d in diffs)
    assert service.replay(agent, stricter, since=NOW - 3600 + 150) == []  # only the last row left
    with pytest.raises(InvalidInputError):
        service.replay(agent, [{"type": "RATE_LIMIT"}])  # type: ignore[list-item]
