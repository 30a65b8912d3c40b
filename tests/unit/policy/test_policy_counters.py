"""RATE_LIMIT, AUTO_STOP and compute_usage."""

from __future__ import annotations

import pytest
from policy_helpers import NOW, SOL, SOL_A, SOL_TOKEN, Decide, spec

from waiaas.errors import InvalidInputError
from waiaas.policy import (
    AgentContext,
    AssetUsage,
    Usage,
    UsageRow,
    compute_usage,
    evaluate,
    required_windows,
)
from waiaas.types import Transfer

DENIED = "POLICY_DENIED"


def rows(
    n: int, *, status: str = "CONFIRMED", error: str | None = None, age: int = 10
) -> list[UsageRow]:
    return [UsageRow(NOW - age - i, status, "native", 1, error) for i in range(n)]


@pytest.mark.parametrize(("before", "allowed"), [(0, True), (4, True), (5, False), (9, False)])
def test_rate_limit_counts_every_request_in_the_window(
    decide: Decide, sol_agent: AgentContext, before: int, allowed: bool
) -> None:
    """max_requests=5: the 5th request in the window passes, the 6th is denied."""
    p = spec("RATE_LIMIT", {"max_requests": 5, "window_seconds": 60})
    d = decide(Transfer(to=SOL_A, amount=1), sol_agent, [p], rows(before))
    assert d.allowed is allowed
    if not allowed:
        assert d.deny_reasons[0].figures == {
            "requests": str(before),
            "limit": "5",
            "window_seconds": "60",
        }


def test_rate_limit_counts_denied_and_failed_requests(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """Denied and failed requests count too (an agent cannot probe for free); old ones not."""
    p = spec("RATE_LIMIT", {"max_requests": 3, "window_seconds": 60})
    history = rows(2, status="FAILED", error=DENIED) + rows(1, status="FAILED", error="boom")
    assert not decide(Transfer(to=SOL_A, amount=1), sol_agent, [p], history).allowed
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [p], rows(50, age=60)).allowed


@pytest.mark.parametrize(("failures", "fires"), [(2, False), (3, True), (7, True)])
def test_auto_stop_on_consecutive_failures(
    decide: Decide, sol_agent: AgentContext, failures: int, fires: bool
) -> None:
    """threshold=3 failed transactions in a row: the agent must be suspended, request denied."""
    p = spec("AUTO_STOP", {"trigger": "consecutive_failures", "threshold": 3})
    ok = UsageRow(NOW - 1000, "CONFIRMED", "native", 1)
    history = [ok, *rows(failures, status="FAILED", error="reverted")]
    d = decide(Transfer(to=SOL_A, amount=1), sol_agent, [p], history)
    assert (d.auto_stop is not None) is fires
    assert d.allowed is not fires
    if fires:
        assert d.auto_stop is not None
        assert d.auto_stop.rule_id == p.id
        assert d.auto_stop.figures["trigger"] == "consecutive_failures"


def test_consecutive_failures_reset_on_success_and_ignore_denials() -> None:
    """A confirmed transaction resets the count; policy denials and cancels are not failures."""
    history = [
        UsageRow(NOW - 50, "FAILED", "native", 1, "x"),
        UsageRow(NOW - 40, "CONFIRMED", "native", 1),
        UsageRow(NOW - 30, "FAILED", "native", 1, "x"),
        UsageRow(NOW - 20, "FAILED", "native", 0, DENIED),
        UsageRow(NOW - 15, "CANCELLED", "native", 1),
        UsageRow(NOW - 10, "FAILED", "native", 1, "x"),
        UsageRow(NOW - 5, "PENDING", "native", 1),
    ]
    assert compute_usage(history, NOW, []).consecutive_failures == 2


def test_auto_stop_on_max_transactions(decide: Decide, sol_agent: AgentContext) -> None:
    """20 transactions in 300 s already ran: the next request suspends the agent."""
    p = spec("AUTO_STOP", {"trigger": "max_transactions", "threshold": 20, "window_seconds": 300})
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [p], rows(19)).auto_stop is None
    d = decide(Transfer(to=SOL_A, amount=1), sol_agent, [p], rows(20))
    assert d.auto_stop is not None and not d.allowed
    denied_only = rows(30, status="FAILED", error=DENIED)
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [p], denied_only).auto_stop is None


def test_auto_stop_on_max_denials_counts_this_denial(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """max_denials=3: two earlier denials plus this denied request fire the trigger."""
    stop = spec("AUTO_STOP", {"trigger": "max_denials", "threshold": 3, "window_seconds": 600})
    wl = spec("ALLOWED_ADDRESSES", {"addresses": [SOL_TOKEN]})
    history = rows(2, status="FAILED", error=DENIED)
    allowed_request = decide(Transfer(to=SOL_TOKEN, amount=1), sol_agent, [stop, wl], history)
    assert allowed_request.allowed and allowed_request.auto_stop is None
    probe = decide(Transfer(to=SOL_A, amount=1), sol_agent, [stop, wl], history)
    assert not probe.allowed
    assert probe.auto_stop is not None
    assert probe.auto_stop.figures["observed"] == "3"


def test_max_denials_sees_denials_from_other_triggers(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """A denial by another AUTO_STOP trigger counts for max_denials, whatever the order."""
    fail = spec("AUTO_STOP", {"trigger": "consecutive_failures", "threshold": 1}, priority=-5)
    deny = spec(
        "AUTO_STOP", {"trigger": "max_denials", "threshold": 1, "window_seconds": 60}, priority=5
    )
    history = rows(1, status="FAILED", error="boom")
    for order in ([fail, deny], [deny, fail]):
        d = decide(Transfer(to=SOL_A, amount=1), sol_agent, order, history)
        assert {r.figures.get("trigger") for r in d.deny_reasons} == {
            "consecutive_failures",
            "max_denials",
        }
        assert d.auto_stop is not None and d.auto_stop.rule_id == deny.id  # highest priority


def test_compute_usage_windows_and_sums() -> None:
    """Counts per window, spending per asset over in-flight + confirmed rows only."""
    history = [
        UsageRow(NOW - 10, "CONFIRMED", "native", 2 * SOL),
        UsageRow(NOW - 100, "SUBMITTED", "native", SOL, None, ((SOL_TOKEN, 7),)),
        UsageRow(NOW - 200, "FAILED", "native", 50 * SOL, "reverted"),
        UsageRow(NOW - 300, "FAILED", "native", 0, DENIED),
        UsageRow(NOW - 2 * 86_400, "CONFIRMED", "native", 3 * SOL),
        UsageRow(NOW - 8 * 86_400, "CONFIRMED", "native", 100 * SOL),
    ]
    usage = compute_usage(history, NOW, [60, 250])
    assert usage.spent["native"] == AssetUsage(day=3 * SOL, week=6 * SOL)
    assert usage.spent[SOL_TOKEN] == AssetUsage(day=7, week=7)
    assert usage.requests == {60: 1, 250: 3, 86_400: 4, 604_800: 5}
    assert usage.denials[86_400] == 1
    assert usage.transactions[86_400] == 3


def test_required_windows_and_missing_windows_fail_loudly(sol_agent: AgentContext) -> None:
    """Policies name the windows they need; a Usage without one is a caller error."""
    p = spec("RATE_LIMIT", {"max_requests": 1, "window_seconds": 77})
    assert required_windows([p]) == {77, 86_400, 604_800}
    with pytest.raises(InvalidInputError, match="77 s window"):
        evaluate(Transfer(to=SOL_A, amount=1), sol_agent, [p], Usage(), NOW)


def test_compute_usage_validates() -> None:
    """Bad inputs raise InvalidInputError, not arithmetic errors."""
    with pytest.raises(InvalidInputError):
        compute_usage([], -1, [])
    with pytest.raises(InvalidInputError):
        compute_usage([], NOW, [0])
    with pytest.raises(InvalidInputError):
        compute_usage([UsageRow(1.5, "CONFIRMED", "native", 1)], NOW, [])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        compute_usage([UsageRow(NOW, "CONFIRMED", "native", -5)], NOW, [])
