"""Probing is no longer free (issue item 2): every refused request of an authenticated agent
is recorded and audited, and counts toward RATE_LIMIT and AUTO_STOP max_denials; agents'
dry runs count toward RATE_LIMIT and are audited; hints shown to an agent are redacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SOL, all_audit, new_agent, recipient
from waiaas.errors import (
    AuthError,
    ConstraintViolationError,
    InvalidInputError,
    PolicyDeniedError,
)
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import AuditEvent, ContractCall, Transfer
from waiaas.wallet import Wallet

SYSTEM_TRANSFER = bytes([2, 0, 0, 0]) + (10**9).to_bytes(8, "little")


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on fresh local chains, frozen clock."""
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RecordingNotifier()) as w:
        yield w


def _events(wallet: Wallet, agent_id: str, kind: str) -> list[object]:
    return [e for e in all_audit(wallet, agent_id=agent_id) if e.event_type == kind]


def test_session_constraint_probes_reach_auto_stop(wallet: Wallet) -> None:
    """A session limited to one recipient tries others: each refusal is a POLICY_VIOLATION
    row, and the third one crosses AUTO_STOP max_denials=3 and suspends the agent."""
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    friend = recipient("solana")
    wallet.add_policy(
        "AUTO_STOP",
        {"trigger": "max_denials", "threshold": 3, "window_seconds": 3600},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id, constraints={"allowed_addresses": [friend]}).token
    for _ in range(3):
        with pytest.raises(ConstraintViolationError):
            wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    assert wallet.get_agent(agent.id).status == "SUSPENDED"
    assert len(_events(wallet, agent.id, "POLICY_VIOLATION")) == 3
    assert len(_events(wallet, agent.id, "AUTO_STOP_TRIGGERED")) == 1
    with pytest.raises(AuthError):  # and the probing session is revoked
        wallet.send(token, Transfer(to=friend, amount=SOL // 100))


def test_guard_refusals_count_toward_rate_limit(wallet: Wallet) -> None:
    """Disguised transfers refused by the guard leave REQUEST_REFUSED rows that RATE_LIMIT
    counts: after five of them, a valid request in the same hour is denied."""
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    wallet.add_policy("RATE_LIMIT", {"max_requests": 5, "window_seconds": 3600}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token
    for _ in range(5):
        with pytest.raises(InvalidInputError):
            wallet.send(
                token,
                ContractCall(to="11111111111111111111111111111111", data=SYSTEM_TRANSFER),
            )
    refused = _events(wallet, agent.id, "REQUEST_REFUSED")
    assert len(refused) == 5
    assert {e.details["kind"] for e in refused} == {"guard"}  # type: ignore[attr-defined]
    with pytest.raises(PolicyDeniedError) as caught:
        wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    assert caught.value.rule == "RATE_LIMIT" and "too many requests" in caught.value.message


def test_malformed_requests_count_toward_max_denials(wallet: Wallet) -> None:
    """Malformed requests under a valid token are recorded (kind malformed) and count as
    denials: the second crosses max_denials=2."""
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    wallet.add_policy(
        "AUTO_STOP",
        {"trigger": "max_denials", "threshold": 2, "window_seconds": 3600},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    for bad in ({"type": "TRANSFER", "to": recipient("solana"), "amount": -1}, {"type": "NOPE"}):
        with pytest.raises(InvalidInputError):
            wallet.send(token, bad)
    refused = _events(wallet, agent.id, "REQUEST_REFUSED")
    assert [e.details["kind"] for e in refused] == ["malformed", "malformed"]  # type: ignore[attr-defined]
    assert wallet.get_agent(agent.id).status == "SUSPENDED"


def test_a_malformed_request_under_a_bad_token_records_nothing_against_an_agent(
    wallet: Wallet,
) -> None:
    """Without a valid token there is no agent to charge: nothing is counted."""
    agent = new_agent(wallet, "solana", funds=SOL)
    with pytest.raises(InvalidInputError):
        wallet.send("not-a-token", {"type": "NOPE"})
    assert _events(wallet, agent.id, "REQUEST_REFUSED") == []


def test_agent_dry_runs_are_audited_and_rate_limited(wallet: Wallet) -> None:
    """300 free dry runs are over: each writes a compact DRY_RUN row and counts toward
    RATE_LIMIT; the sixth within the hour is refused by it (and so is a real request)."""
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    wallet.add_policy("RATE_LIMIT", {"max_requests": 5, "window_seconds": 3600}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token
    request = Transfer(to=recipient("solana"), amount=SOL // 100)
    for _ in range(5):
        assert wallet.dry_run(request, token=token).decision.allowed
    sixth = wallet.dry_run(request, token=token)
    assert not sixth.decision.allowed
    assert sixth.fired[0].message == "too many requests"
    rows = _events(wallet, agent.id, "DRY_RUN")
    assert len(rows) == 6
    assert set(rows[0].details) == {"type", "allowed", "tier"}  # type: ignore[attr-defined]
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, request)
    # the owner's dry runs are not the agent's: nothing written, nothing counted
    before = len(all_audit(wallet))
    wallet.dry_run(request, agent_id=agent.id)
    assert len(all_audit(wallet)) == before


def test_agent_hints_reveal_no_threshold_and_no_list(wallet: Wallet) -> None:
    """The agent learns the outcome and the one deciding figure; the owner gets the full
    explanation. No instant_max, no blacklist contents, no policy ids reach the agent."""
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    banned = [recipient("solana") for _ in range(3)]
    policy = wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "instant_max": "123456789",
            "notify_max": "987654321",
            "delay_max": str(10 * SOL),
            "daily_total": str(2 * SOL),
        },
        agent_id=agent.id,
    )
    blacklist = wallet.add_policy(
        "ALLOWED_ADDRESSES", {"mode": "blacklist", "addresses": banned}, agent_id=agent.id
    )
    token = wallet.issue_session(agent.id).token
    allowed = wallet.dry_run(Transfer(to=recipient("solana"), amount=SOL // 2), token=token)
    owner_view = wallet.dry_run(
        Transfer(to=recipient("solana"), amount=SOL // 2), agent_id=agent.id
    )
    shown = repr(allowed)
    assert "123456789" in repr(owner_view) and "123456789" not in shown
    assert policy.id not in shown and allowed.amount_for_tier == {}
    assert allowed.decision.allowed and allowed.decision.tier == owner_view.decision.tier
    refused = wallet.dry_run(Transfer(to=banned[0], amount=1), token=token)
    text = repr(refused)
    assert not refused.decision.allowed
    assert refused.fired[0].message == "this recipient is not allowed"
    assert all(b not in text for b in banned[1:]) and blacklist.id not in text
    over = wallet.dry_run(Transfer(to=recipient("solana"), amount=3 * SOL), token=token)
    assert over.fired[0].type == "SPENDING_LIMIT"
    # the day's budget less the network fee the transfer would also pay
    assert over.hints == (f"at most {2 * SOL - 5_000} base units can be sent now",)
    assert AuditEvent.DRY_RUN in {e.event_type for e in all_audit(wallet, agent_id=agent.id)}
