"""Admission: the one unit of work that verifies the session, judges the request and records
it. What it decides (tier, denial, refusal) and what it writes, on the in-memory chain."""

from __future__ import annotations

import pytest
from fakechain import FEE
from pipeline_helpers import AMOUNT, FUNDS, Stage, audit, sent_events

from tests.support.rawdb import raw_connect
from waiaas.errors import (
    AgentNotActiveError,
    ConstraintViolationError,
    InvalidInputError,
    KillSwitchActiveError,
    PolicyDeniedError,
    TokenRevokedError,
)
from waiaas.types import Transfer


def _tx_count(stage: Stage) -> int:
    return len(stage.wallet.list_transactions(agent_id=stage.agent_id))


def test_the_spending_limit_sets_each_tier(stage: Stage) -> None:
    """INSTANT and NOTIFY run at once; DELAY and APPROVAL are queued, nothing sent."""
    results = {
        tier: stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=amount))
        for tier, amount in AMOUNT.items()
    }
    assert {t: (r.tier, r.status) for t, r in results.items()} == {
        "INSTANT": ("INSTANT", "CONFIRMED"),
        "NOTIFY": ("NOTIFY", "CONFIRMED"),
        "DELAY": ("DELAY", "QUEUED"),
        "APPROVAL": ("APPROVAL", "QUEUED"),
    }
    for tier in ("INSTANT", "NOTIFY"):
        events = stage.events(results[tier].id)
        assert events[0] == "TX_REQUESTED" and events[-1] == "TX_CONFIRMED"
    for tier in ("DELAY", "APPROVAL"):
        assert stage.events(results[tier].id) == ["TX_REQUESTED", "TX_QUEUED"]
        assert results[tier].tx_hash is None
    sent = AMOUNT["INSTANT"] + AMOUNT["NOTIFY"]
    assert stage.chain.get_balance(stage.dest) == sent
    assert stage.chain.get_balance(stage.address) == FUNDS - sent - 2 * FEE
    assert len(stage.chain.submissions) == 2
    # queued requests count against the budget while they wait (this chain quotes no fees
    # before signing, so amounts only)
    assert stage.budget_spent() == sum(AMOUNT.values())


def test_a_denial_is_recorded_and_nothing_is_sent(stage: Stage) -> None:
    stage.wallet.add_policy("SPENDING_LIMIT", {"per_transaction": "1000"}, agent_id=stage.agent_id)
    with pytest.raises(PolicyDeniedError) as denied:
        stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["DELAY"]))
    tx_id = denied.value.tx_id
    assert tx_id is not None
    row = stage.wallet.get_transaction(tx_id)
    assert row.status == "FAILED" and row.tx_hash is None
    assert row.error is not None and row.error.startswith("POLICY_DENIED")
    assert stage.events(tx_id) == ["TX_REQUESTED", "POLICY_VIOLATION"]
    assert not stage.chain.submissions
    assert stage.chain.get_balance(stage.address) == FUNDS
    assert stage.session_total() == 0 and stage.budget_spent() == 0
    # the next request that fits is not held back by the denied one
    ok = stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"]))
    assert ok.status == "CONFIRMED"


def test_a_session_constraint_refuses_before_anything_is_recorded(stage: Stage) -> None:
    limited = stage.wallet.issue_session(stage.agent_id, constraints={"max_amount_per_tx": 60})
    with pytest.raises(ConstraintViolationError):
        stage.wallet.send(limited.token, Transfer(to=stage.dest, amount=AMOUNT["NOTIFY"]))
    assert _tx_count(stage) == 0
    last = audit(stage.wallet, agent_id=stage.agent_id)[-1]
    assert last.event_type == "POLICY_VIOLATION" and last.tx_id is None
    assert stage.wallet.get_session(limited.session_id).usage.total() == 0
    assert not stage.chain.submissions
    # within the constraint the same session goes through
    ok = stage.wallet.send(limited.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"]))
    assert ok.status == "CONFIRMED"


def test_the_kill_switch_refuses_every_request(stage: Stage) -> None:
    stage.wallet.kill_switch("stop")
    with pytest.raises(KillSwitchActiveError):
        stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"]))
    assert _tx_count(stage) == 0
    assert not stage.chain.submissions
    assert stage.chain.get_balance(stage.address) == FUNDS


def test_a_suspended_agent_is_refused(stage: Stage) -> None:
    """Suspending revokes the agent's sessions: its token is refused (AUTH_FAILED), a new
    session cannot be issued while it is suspended, and resuming does not revive the old
    token."""
    stage.wallet.suspend_agent(stage.agent_id)
    with pytest.raises(TokenRevokedError):
        stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"]))
    with pytest.raises(AgentNotActiveError):
        stage.wallet.issue_session(stage.agent_id)
    assert _tx_count(stage) == 0
    assert audit(stage.wallet, agent_id=stage.agent_id)[-1].event_type == "AUTH_FAILED"
    stage.wallet.resume_agent(stage.agent_id)
    with pytest.raises(TokenRevokedError):
        stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"]))
    assert _tx_count(stage) == 0 and not stage.chain.submissions
    fresh = stage.wallet.issue_session(stage.agent_id)
    ok = stage.wallet.send(fresh.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"]))
    assert ok.status == "CONFIRMED"


@pytest.mark.parametrize(
    "request_",
    [
        {"type": "TRANSFER", "to": "0x" + "ab" * 20, "amount": -5},
        {"type": "TRANSFER", "to": "0x" + "ab" * 20, "amount": 1.5},
        {"type": "TRANSFER", "amount": 5},
        {"type": "NO_SUCH_TYPE", "to": "0x" + "ab" * 20, "amount": 5},
    ],
    ids=["negative", "float", "no-recipient", "unknown-type"],
)
def test_a_malformed_request_leaves_only_its_audit_row(
    stage: Stage, request_: dict[str, object]
) -> None:
    tables = ("transactions", "pending_approvals", "sessions", "audit_log")
    with raw_connect(stage.wallet) as con:
        before = {t: con.all(f"SELECT * FROM {t}") for t in tables}
    with pytest.raises(InvalidInputError):
        stage.wallet.send(stage.token, request_)
    with raw_connect(stage.wallet) as con:
        after = {t: con.all(f"SELECT * FROM {t}") for t in tables}
    assert {t: after[t] for t in tables[:3]} == {t: before[t] for t in tables[:3]}
    assert after["audit_log"][: len(before["audit_log"])] == before["audit_log"]
    assert len(after["audit_log"]) == len(before["audit_log"]) + 1
    refused = audit(stage.wallet, agent_id=stage.agent_id)[-1]
    assert refused.event_type == "REQUEST_REFUSED" and refused.tx_id is None
    assert not stage.chain.submissions


def test_sent_events_cover_both_execution_paths() -> None:
    assert sent_events(False) == ["TX_REQUESTED", "TX_EXECUTING", "TX_SIGNED", "TX_SUBMITTED"]
    assert sent_events(True) == ["TX_REQUESTED"]
