"""Admission's pure planning step: a policy decision, the agent's owner and the config in,
the tier, status, deny reasons and metadata admission records out. No database, no chain."""

from __future__ import annotations

from waiaas.config import WalletConfig
from waiaas.pipeline.admission import AdmissionPlan, plan_admission
from waiaas.policy.model import Decision, Reason
from waiaas.types import Tier, TxStatus

NOW = 1_700_000_000
CONFIG = WalletConfig(delay_seconds=900, approval_timeout=3600)


def _decision(tier: Tier, *reasons: Reason, allowed: bool = True) -> Decision:
    return Decision(
        allowed=allowed, tier=tier, reasons=reasons, delay_seconds=60, approval_timeout=120
    )


def _deny(kind: str, message: str) -> Reason:
    return Reason(type=kind, effect="deny", message=message)


def test_instant_and_notify_stay_pending_with_nothing_added() -> None:
    for tier in (Tier.INSTANT, Tier.NOTIFY):
        plan = plan_admission(_decision(tier), has_owner=True, config=CONFIG, now=NOW)
        assert plan == AdmissionPlan(tier, TxStatus.PENDING)


def test_delay_waits_for_the_decision_s_cooldown_not_the_default() -> None:
    plan = plan_admission(_decision(Tier.DELAY), has_owner=True, config=CONFIG, now=NOW)
    assert (plan.tier, plan.status) == (Tier.DELAY, TxStatus.QUEUED)
    assert plan.execute_after == NOW + 60
    assert plan.approval_expires_at is None and plan.meta == {} and plan.reasons == []


def test_approval_with_an_owner_waits_for_the_decision_s_timeout() -> None:
    plan = plan_admission(_decision(Tier.APPROVAL), has_owner=True, config=CONFIG, now=NOW)
    assert (plan.tier, plan.status) == (Tier.APPROVAL, TxStatus.QUEUED)
    assert plan.approval_expires_at == NOW + 120 and plan.execute_after is None


def test_approval_without_an_owner_is_refused_by_default() -> None:
    """No owner can approve: the request must not slip through as a lower tier."""
    plan = plan_admission(_decision(Tier.APPROVAL), has_owner=False, config=CONFIG, now=NOW)
    assert (plan.tier, plan.status) == (None, TxStatus.FAILED)
    assert [(r["type"], r["effect"]) for r in plan.reasons] == [("APPROVAL", "deny")]
    assert plan.meta["error"]["code"] == "POLICY_DENIED"
    assert "owner address" in plan.meta["error"]["message"]
    assert plan.execute_after is None and plan.approval_expires_at is None


def test_approval_without_an_owner_becomes_delay_when_configured() -> None:
    config = WalletConfig(no_owner_approval="delay")
    plan = plan_admission(_decision(Tier.APPROVAL), has_owner=False, config=config, now=NOW)
    assert (plan.tier, plan.status) == (Tier.DELAY, TxStatus.QUEUED)
    assert plan.execute_after == NOW + 60
    assert plan.meta == {"approval_downgraded": "agent has no owner; APPROVAL became DELAY"}


def test_a_denial_keeps_every_reason_hard_caps_first_none_twice() -> None:
    owner = _deny("APPROVAL", "needs the owner")
    cap = _deny("SPENDING_LIMIT", "over the daily limit")
    decision = _decision(Tier.APPROVAL, owner, cap, cap, allowed=False)
    plan = plan_admission(decision, has_owner=True, config=CONFIG, now=NOW)
    assert (plan.tier, plan.status) == (None, TxStatus.FAILED)
    assert [r["type"] for r in plan.reasons] == ["SPENDING_LIMIT", "APPROVAL"]
    assert plan.meta == {
        "error": {
            "code": "POLICY_DENIED",
            "message": "denied by policy: over the daily limit; needs the owner",
        }
    }


def test_a_denied_instant_request_is_not_admitted_as_instant() -> None:
    """``tier`` is the tier it would have had; a denial never runs under it."""
    decision = _decision(Tier.INSTANT, _deny("WHITELIST", "not listed"), allowed=False)
    plan = plan_admission(decision, has_owner=True, config=CONFIG, now=NOW)
    assert plan.tier is None and plan.status == TxStatus.FAILED


def test_tier_reasons_that_do_not_deny_are_not_refusals() -> None:
    asks = Reason(type="SPENDING_LIMIT", effect="tier", message="large", tier=Tier.NOTIFY)
    plan = plan_admission(_decision(Tier.NOTIFY, asks), has_owner=False, config=CONFIG, now=NOW)
    assert plan == AdmissionPlan(Tier.NOTIFY, TxStatus.PENDING)
