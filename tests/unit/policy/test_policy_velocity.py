"""Velocity tiers: a request's tier is at least the tier of the agent's rolling 24 h total
including it, so splitting an amount into small requests does not lower its tier."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_helpers import NOW, SOL, SOL_A, spec, usage_for

from waiaas.config import WalletConfig
from waiaas.errors import InvalidInputError
from waiaas.policy import AgentContext, PolicySpec, UsageRow, evaluate
from waiaas.types import Tier, Transfer

AGENT = AgentContext(id="agent", chain="solana", network="devnet", owner_address=SOL_A)
CONFIG = WalletConfig()
DEFAULTS = CONFIG.tier_thresholds("solana")
assert DEFAULTS is not None
INSTANT_MAX, DELAY_MAX = DEFAULTS.instant_max, DEFAULTS.delay_max
LIMIT = {"instant_max": str(SOL // 10), "notify_max": str(SOL), "delay_max": str(10 * SOL)}


def _run(pieces: list[int], gaps: list[int], specs: list[PolicySpec]) -> list[Tier]:
    """Admit ``pieces`` one after the other (``gaps`` seconds apart); each admitted one is
    recorded as in flight, as the pipeline does. Returns the tiers."""
    rows: list[UsageRow] = []
    tiers: list[Tier] = []
    now = NOW
    for amount, gap in zip(pieces, gaps, strict=True):
        now += gap
        decision = evaluate(
            Transfer(to=SOL_A, amount=amount),
            AGENT,
            specs,
            usage_for(specs, rows, now),
            now,
            config=CONFIG,
        )
        assert decision.allowed
        tiers.append(Tier(decision.tier))
        rows.append(UsageRow(created_at=now, status="PENDING", asset="native", amount=amount))
    return tiers


@st.composite
def splits(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """An APPROVAL-sized total cut into INSTANT-sized pieces, sent within 24 h."""
    total = draw(st.integers(DELAY_MAX + 1, 3 * DELAY_MAX))
    pieces: list[int] = []
    left = total
    while left > 0:
        piece = min(left, draw(st.integers(1, INSTANT_MAX) | st.just(INSTANT_MAX)))
        pieces.append(piece)
        left -= piece
        if len(pieces) > 150:  # keep examples small: finish with maximal pieces
            while left > 0:
                pieces.append(min(left, INSTANT_MAX))
                left -= pieces[-1]
    budget = 86_399
    gaps = [draw(st.integers(0, budget // len(pieces))) for _ in pieces]
    return pieces, gaps


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(splits())
def test_no_split_of_an_approval_sized_total_stays_all_instant_under_the_defaults(
    split: tuple[list[int], list[int]],
) -> None:
    """With no SPENDING_LIMIT (the wallet's default thresholds), splitting a total that would
    need APPROVAL into INSTANT-sized pieces within 24 h: not all INSTANT, and the piece that
    takes the total over delay_max needs APPROVAL."""
    pieces, gaps = split
    tiers = _run(pieces, gaps, [])
    assert set(tiers) != {Tier.INSTANT}
    running = 0
    for amount, tier in zip(pieces, tiers, strict=True):
        running += amount
        if running > DELAY_MAX:
            assert tier == Tier.APPROVAL
            break


@SETTINGS
@given(splits())
def test_no_split_stays_all_instant_under_a_spending_limit_without_daily_bounds(
    split: tuple[list[int], list[int]],
) -> None:
    """The same with a SPENDING_LIMIT that sets only per-request thresholds."""
    pieces, gaps = split
    tiers = _run(pieces, gaps, [spec("SPENDING_LIMIT", dict(LIMIT))])
    assert Tier.APPROVAL in tiers


def test_forty_small_transfers_within_an_hour_climb_the_tiers() -> None:
    """Issue item 1: 4 SOL in one request is DELAY-or-above; 40 x 0.1 SOL within an hour
    were all INSTANT. Now the day's total sets a floor: INSTANT up to 1 SOL, NOTIFY above."""
    tiers = _run([SOL // 10] * 40, [90] * 40, [spec("SPENDING_LIMIT", dict(LIMIT))])
    assert tiers[:10] == [Tier.INSTANT] * 10
    assert set(tiers[10:]) == {Tier.NOTIFY}


def test_explicit_daily_bounds_apply_and_the_decision_names_the_total() -> None:
    """daily_instant_max / daily_delay_max set explicitly: the reason names the 24 h total."""
    rules: dict[str, Any] = {
        **LIMIT,
        "daily_instant_max": str(SOL // 2),
        "daily_notify_max": str(SOL // 2),
        "daily_delay_max": str(2 * SOL),
    }
    specs = [spec("SPENDING_LIMIT", rules)]
    tiers = _run([SOL // 10] * 25, [60] * 25, specs)
    assert tiers[:5] == [Tier.INSTANT] * 5
    assert set(tiers[5:20]) == {Tier.DELAY}
    assert set(tiers[20:]) == {Tier.APPROVAL}
    rows = [UsageRow(created_at=NOW, status="CONFIRMED", asset="native", amount=SOL)]
    decision = evaluate(
        Transfer(to=SOL_A, amount=SOL // 10),
        AGENT,
        specs,
        usage_for(specs, rows, NOW + 10),
        NOW + 10,
        config=CONFIG,
    )
    assert decision.tier == Tier.DELAY
    assert any("in 24 h including this request" in r.message for r in decision.reasons)


def test_spending_older_than_24_hours_does_not_count() -> None:
    """The window rolls: yesterday's total does not raise today's tier."""
    specs = [spec("SPENDING_LIMIT", dict(LIMIT))]
    rows = [UsageRow(created_at=NOW - 86_400, status="CONFIRMED", asset="native", amount=9 * SOL)]
    decision = evaluate(
        Transfer(to=SOL_A, amount=SOL // 10),
        AGENT,
        specs,
        usage_for(specs, rows, NOW),
        NOW,
        config=CONFIG,
    )
    assert decision.tier == Tier.INSTANT


def test_failed_and_cancelled_spending_does_not_count() -> None:
    """Only in-flight and confirmed spending counts, as for the daily budget."""
    specs = [spec("SPENDING_LIMIT", dict(LIMIT))]
    rows = [
        UsageRow(created_at=NOW - 10, status=status, asset="native", amount=9 * SOL)
        for status in ("FAILED", "CANCELLED", "EXPIRED")
    ]
    decision = evaluate(
        Transfer(to=SOL_A, amount=SOL // 10),
        AGENT,
        specs,
        usage_for(specs, rows, NOW),
        NOW,
        config=CONFIG,
    )
    assert decision.tier == Tier.INSTANT


def test_daily_bounds_must_be_ordered() -> None:
    """daily_notify_max below daily_instant_max is refused when the policy is written."""
    with pytest.raises(InvalidInputError):
        spec("SPENDING_LIMIT", {"daily_instant_max": "10", "daily_notify_max": "5"})
