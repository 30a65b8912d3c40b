"""SPENDING_LIMIT: tiers at the thresholds, caps, rolling budgets, USD, defaults, batches."""

from __future__ import annotations

from decimal import Decimal

import pytest
from policy_helpers import (
    ETH,
    EVM_A,
    EVM_B,
    EVM_TOKEN,
    NOW,
    SOL,
    SOL_A,
    SOL_B,
    SOL_TOKEN,
    Decide,
    spec,
)

from waiaas.config import TierThresholds, WalletConfig
from waiaas.errors import InvalidInputError
from waiaas.policy import AgentContext, AssetPrice, Decision, UsageRow
from waiaas.types import Batch, ContractCall, Tier, TokenTransfer, Transfer

LIMIT = {"instant_max": "100", "notify_max": "200", "delay_max": "300"}


@pytest.mark.parametrize(
    ("amount", "tier"),
    [
        (0, Tier.INSTANT),
        (100, Tier.INSTANT),
        (101, Tier.NOTIFY),
        (200, Tier.NOTIFY),
        (201, Tier.DELAY),
        (300, Tier.DELAY),
        (301, Tier.APPROVAL),
        (2**200, Tier.APPROVAL),
    ],
)
def test_tier_at_each_threshold(
    decide: Decide, sol_agent: AgentContext, amount: int, tier: Tier
) -> None:
    """Thresholds are inclusive upper bounds: <= instant_max is INSTANT, and so on."""
    d = decide(Transfer(to=SOL_A, amount=amount), sol_agent, [spec("SPENDING_LIMIT", LIMIT)])
    assert d.allowed
    assert d.tier is tier


@pytest.mark.parametrize(
    ("rules", "amount", "tier"),
    [
        ({"notify_max": 5}, 0, Tier.NOTIFY),
        ({"notify_max": 5}, 5, Tier.NOTIFY),
        ({"notify_max": 5}, 6, Tier.APPROVAL),
        ({"instant_max": 1, "delay_max": 10}, 1, Tier.INSTANT),
        ({"instant_max": 1, "delay_max": 10}, 2, Tier.DELAY),
        ({"instant_max": 1, "delay_max": 10}, 11, Tier.APPROVAL),
        ({"instant_max": 7}, 7, Tier.INSTANT),
        ({"instant_max": 7}, 8, Tier.APPROVAL),
        ({"instant_max": 0, "notify_max": 0, "delay_max": 0}, 1, Tier.APPROVAL),
    ],
)
def test_missing_bounds_skip_their_tier(
    decide: Decide, sol_agent: AgentContext, rules: dict[str, int], amount: int, tier: Tier
) -> None:
    """A bound left out skips its tier; above the highest bound given is APPROVAL."""
    d = decide(Transfer(to=SOL_A, amount=amount), sol_agent, [spec("SPENDING_LIMIT", rules)])
    assert d.tier is tier


@pytest.mark.parametrize(("amount", "allowed"), [(10 * SOL, True), (10 * SOL + 1, False)])
def test_per_transaction_cap_edge(
    decide: Decide, sol_agent: AgentContext, amount: int, allowed: bool
) -> None:
    """The cap itself is allowed; one lamport more is denied, with the figures."""
    p = spec("SPENDING_LIMIT", {"per_transaction": str(10 * SOL)})
    d = decide(Transfer(to=SOL_A, amount=amount), sol_agent, [p])
    assert d.allowed is allowed
    (figure,) = d.budget
    assert (figure.window, figure.limit, figure.requested, figure.remaining) == (
        "transaction",
        10 * SOL,
        amount,
        10 * SOL,
    )
    if not allowed:
        (reason,) = d.deny_reasons
        assert reason.rule_id == p.id
        assert reason.type == "SPENDING_LIMIT"
        assert "10.000000001 SOL exceeds the per-transaction limit of 10 SOL" in reason.message
        assert reason.figures["limit"] == str(10 * SOL)


def _rows(*items: tuple[int, str, int]) -> list[UsageRow]:
    return [UsageRow(NOW - age, status, "native", amount) for age, status, amount in items]


@pytest.mark.parametrize(
    ("history", "amount", "allowed"),
    [
        ([(60, "CONFIRMED", 4 * SOL)], SOL, True),  # 5 of 5
        ([(60, "CONFIRMED", 4 * SOL)], SOL + 1, False),
        ([(60, "PENDING", 2 * SOL), (70, "QUEUED", 2 * SOL)], SOL + 1, False),  # in flight counts
        ([(60, "EXECUTING", 2 * SOL), (70, "SUBMITTED", 3 * SOL)], 1, False),
        (
            [(60, "FAILED", 5 * SOL), (70, "CANCELLED", 5 * SOL), (80, "EXPIRED", 5 * SOL)],
            5 * SOL,
            True,
        ),
        ([(86_400, "CONFIRMED", 5 * SOL)], 5 * SOL, True),  # exactly 24 h old: out of the window
        ([(86_399, "CONFIRMED", 5 * SOL)], 1, False),  # one second younger: in
        ([(-30, "CONFIRMED", 5 * SOL)], 1, False),  # stamped slightly in the future: counts
    ],
)
def test_daily_budget_is_rolling_24h_over_in_flight_and_confirmed(
    decide: Decide,
    sol_agent: AgentContext,
    history: list[tuple[int, str, int]],
    amount: int,
    allowed: bool,
) -> None:
    """daily_total counts in-flight and confirmed rows of the last 24 h, plus this request."""
    p = spec("SPENDING_LIMIT", {"daily_total": str(5 * SOL)})
    d = decide(Transfer(to=SOL_A, amount=amount), sol_agent, [p], _rows(*history))
    assert d.allowed is allowed


def test_weekly_budget_counts_seven_days(decide: Decide, sol_agent: AgentContext) -> None:
    """weekly_total sees rows up to 7 days old that daily_total no longer sees."""
    p = spec("SPENDING_LIMIT", {"daily_total": str(5 * SOL), "weekly_total": str(8 * SOL)})
    rows = _rows((3 * 86_400, "CONFIRMED", 4 * SOL), (6 * 86_400, "CONFIRMED", 3 * SOL))
    ok = decide(Transfer(to=SOL_A, amount=SOL), sol_agent, [p], rows)
    assert ok.allowed
    by_window = {b.window: b for b in ok.budget}
    assert by_window["24h"].spent == 0
    assert by_window["7d"].spent == 7 * SOL
    assert by_window["7d"].remaining == SOL
    denied = decide(Transfer(to=SOL_A, amount=SOL + 1), sol_agent, [p], rows)
    assert [r.figures["window"] for r in denied.deny_reasons] == ["7d"]
    old = _rows((7 * 86_400, "CONFIRMED", 8 * SOL))
    assert decide(Transfer(to=SOL_A, amount=5 * SOL), sol_agent, [p], old).allowed


def test_sums_beyond_2_to_the_64_are_exact(decide: Decide, evm_agent: AgentContext) -> None:
    """Budgets of 2**200 wei are summed exactly (Python ints, strings in JSON)."""
    big = 2**200
    p = spec("SPENDING_LIMIT", {"daily_total": str(3 * big), "per_transaction": str(big)})
    rows = [
        UsageRow(NOW - 10, "CONFIRMED", "native", big),
        UsageRow(NOW - 20, "SUBMITTED", "native", big),
    ]
    ok = decide(Transfer(to=EVM_B, amount=big), evm_agent, [p], rows)
    assert ok.allowed
    daily = next(b for b in ok.budget if b.window == "24h")
    assert daily.spent == 2 * big
    assert daily.remaining == big
    assert f'"spent":"{2 * big}"' in ok.to_json()
    assert Decision.from_json(ok.to_json()) == ok
    assert not decide(Transfer(to=EVM_B, amount=big + 1), evm_agent, [p], rows).allowed
    rows.append(UsageRow(NOW - 30, "PENDING", "native", 1))
    assert not decide(Transfer(to=EVM_B, amount=big), evm_agent, [p], rows).allowed


def test_token_limits_apply_to_their_token_only(decide: Decide, evm_agent: AgentContext) -> None:
    """A token SPENDING_LIMIT governs that token (any case), not ETH, and vice versa."""
    token_limit = spec(
        "SPENDING_LIMIT",
        {"asset": EVM_TOKEN.upper().replace("0X", "0x"), "per_transaction": "1000"},
    )
    native_limit = spec("SPENDING_LIMIT", {"per_transaction": "5"})
    specs = [token_limit, native_limit]
    assert decide(TokenTransfer(token=EVM_TOKEN, to=EVM_B, amount=1000), evm_agent, specs).allowed
    d = decide(TokenTransfer(token=EVM_TOKEN.lower(), to=EVM_B, amount=1001), evm_agent, specs)
    assert [r.rule_id for r in d.deny_reasons] == [token_limit.id]
    assert decide(Transfer(to=EVM_B, amount=5), evm_agent, specs).allowed
    d = decide(Transfer(to=EVM_B, amount=6), evm_agent, specs)
    assert [r.rule_id for r in d.deny_reasons] == [native_limit.id]
    rows = [UsageRow(NOW - 5, "CONFIRMED", EVM_TOKEN.upper().replace("0X", "0x"), 900)]
    daily = spec("SPENDING_LIMIT", {"asset": EVM_TOKEN, "daily_total": "1000"})
    assert not decide(
        TokenTransfer(token=EVM_TOKEN, to=EVM_B, amount=101), evm_agent, [daily], rows
    ).allowed


def test_on_exceed_approval_sends_to_owner(decide: Decide, sol_agent: AgentContext) -> None:
    """on_exceed=approval turns an over-cap request into APPROVAL instead of a denial."""
    p = spec(
        "SPENDING_LIMIT",
        {
            "per_transaction": "10",
            "instant_max": "100",
            "on_exceed": "approval",
            "approval_timeout": 600,
        },
    )
    d = decide(Transfer(to=SOL_A, amount=11), sol_agent, [p])
    assert d.allowed
    assert d.tier is Tier.APPROVAL
    assert d.approval_timeout == 600
    assert any("owner must approve" in r.message for r in d.reasons)


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("amount", "tier"),
    [
        (SOL // 10, Tier.INSTANT),
        (SOL // 10 + 1, Tier.NOTIFY),
        (SOL, Tier.NOTIFY),
        (10 * SOL, Tier.DELAY),
        (10 * SOL + 1, Tier.APPROVAL),
    ],
)
def test_without_spending_limit_the_wallet_defaults_decide(
    decide: Decide, sol_agent: AgentContext, amount: int, tier: Tier
) -> None:
    """No SPENDING_LIMIT: WalletConfig.tier_defaults[chain] classifies native amounts."""
    d = decide(Transfer(to=SOL_A, amount=amount), sol_agent, [])
    assert d.allowed
    assert d.tier is tier
    (reason,) = d.reasons
    assert reason.type == "DEFAULTS"
    assert reason.rule_id is None


def test_defaults_are_configurable_and_per_chain(decide: Decide, evm_agent: AgentContext) -> None:
    """Custom thresholds are used; a chain without defaults uses default_tier."""
    cfg = WalletConfig(
        tier_defaults={
            "evm": TierThresholds(instant_max=ETH, notify_max=2 * ETH, delay_max=3 * ETH)
        },
        default_tier=Tier.DELAY,
    )
    assert decide(Transfer(to=EVM_B, amount=ETH), evm_agent, [], config=cfg).tier is Tier.INSTANT
    other = AgentContext(id="x", chain="aptos", network="testnet", owner_address="0x1")
    assert decide(Transfer(to="0x2", amount=1), other, [], config=cfg).tier is Tier.DELAY


def test_token_transfers_without_limit_use_default_tier(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """A token without a SPENDING_LIMIT threshold gets WalletConfig.default_tier (NOTIFY)."""
    d = decide(TokenTransfer(token=SOL_TOKEN, to=SOL_A, amount=1), sol_agent, [])
    assert d.tier is Tier.NOTIFY
    cfg = WalletConfig(default_tier=Tier.INSTANT)
    assert (
        decide(TokenTransfer(token=SOL_TOKEN, to=SOL_A, amount=1), sol_agent, [], config=cfg).tier
        is Tier.INSTANT
    )


def test_caps_only_limit_leaves_the_tier_to_defaults(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """A SPENDING_LIMIT without thresholds caps, and the defaults still set the tier."""
    d = decide(
        Transfer(to=SOL_A, amount=5 * SOL),
        sol_agent,
        [spec("SPENDING_LIMIT", {"per_transaction": str(100 * SOL)})],
    )
    assert d.tier is Tier.DELAY
    assert {r.type for r in d.reasons} == {"DEFAULTS"}


def test_contract_calls_have_a_floor_and_value_counts_as_native(
    decide: Decide, evm_agent: AgentContext
) -> None:
    """A contract call is at least default_tier; its value is native spending."""
    call = ContractCall(to=EVM_A, data="0xa9059cbb")
    assert (
        decide(call, evm_agent, [spec("SPENDING_LIMIT", {"instant_max": str(ETH)})]).tier
        is Tier.NOTIFY
    )
    cfg = WalletConfig(default_tier=Tier.INSTANT)
    assert decide(call, evm_agent, [], config=cfg).tier is Tier.INSTANT
    paying = ContractCall(to=EVM_A, data="0x", value=2 * ETH)
    d = decide(paying, evm_agent, [spec("SPENDING_LIMIT", {"per_transaction": str(ETH)})])
    assert not d.allowed


# --------------------------------------------------------------------------- batches


def test_batch_sums_per_asset_for_caps_and_tier(decide: Decide, sol_agent: AgentContext) -> None:
    """Splitting into small transfers does not get under a per-transaction cap or a tier."""
    p = spec(
        "SPENDING_LIMIT",
        {"per_transaction": str(SOL), "instant_max": str(SOL // 2), "notify_max": str(SOL)},
    )
    half = Transfer(to=SOL_A, amount=SOL // 2)
    d = decide(Batch(requests=(half, half)), sol_agent, [p])
    assert d.allowed and d.tier is Tier.NOTIFY
    d = decide(Batch(requests=(half, half, Transfer(to=SOL_B, amount=1))), sol_agent, [p])
    assert not d.allowed
    assert d.budget[0].requested == SOL + 1


def test_batch_tier_is_the_highest_of_its_parts(decide: Decide, sol_agent: AgentContext) -> None:
    """A batch with a token transfer and an approval takes the strictest tier."""
    p = spec("SPENDING_LIMIT", {"instant_max": str(SOL)})
    batch = Batch(
        requests=(Transfer(to=SOL_A, amount=1), TokenTransfer(token=SOL_TOKEN, to=SOL_B, amount=5))
    )
    assert decide(batch, sol_agent, [p]).tier is Tier.NOTIFY  # token: default_tier


# --------------------------------------------------------------------------- USD


SOL_PRICE = {"native": AssetPrice(usd=Decimal("150"), decimals=9)}


@pytest.mark.parametrize(
    ("amount", "tier"),
    [
        (SOL // 15, Tier.INSTANT),  # $10 exactly
        (SOL // 15 + 1, Tier.NOTIFY),
        (SOL, Tier.DELAY),  # $150
        (2 * SOL, Tier.APPROVAL),  # $300
    ],
)
def test_usd_thresholds(decide: Decide, sol_agent: AgentContext, amount: int, tier: Tier) -> None:
    """USD bounds classify the request's exact dollar value."""
    p = spec(
        "SPENDING_LIMIT", {"instant_max_usd": "10", "notify_max_usd": "100", "delay_max_usd": "200"}
    )
    assert decide(Transfer(to=SOL_A, amount=amount), sol_agent, [p], prices=SOL_PRICE).tier is tier


def test_unknown_price_is_never_zero(decide: Decide, sol_agent: AgentContext) -> None:
    """No price (or a zero one): USD thresholds and caps put the request at the rule's
    ``unpriced_tier`` (default APPROVAL, the owner decides)."""
    thresholds = spec("SPENDING_LIMIT", {"instant_max_usd": "1000000"})
    d = decide(Transfer(to=SOL_A, amount=1), sol_agent, [thresholds])
    assert d.tier is Tier.APPROVAL
    assert any("never treated as zero" in r.message for r in d.reasons)
    zero = {"native": AssetPrice(Decimal(0), 9)}
    d = decide(Transfer(to=SOL_A, amount=10 * SOL), sol_agent, [thresholds], prices=zero)
    assert d.tier is Tier.APPROVAL
    relaxed = spec("SPENDING_LIMIT", {"instant_max_usd": "1000000", "unpriced_tier": "NOTIFY"})
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [relaxed]).tier is Tier.NOTIFY
    cap = spec("SPENDING_LIMIT", {"per_transaction_usd": "1000000"})
    d = decide(Transfer(to=SOL_A, amount=1), sol_agent, [cap])
    assert d.allowed and d.tier is Tier.APPROVAL
    d = decide(Transfer(to=SOL_A, amount=1), sol_agent, [cap], prices=SOL_PRICE)
    assert d.tier is Tier.INSTANT


def test_usd_daily_budget_values_history_at_current_price(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """daily_total_usd = (24 h spending + this request) x price, exact to the cent."""
    p = spec("SPENDING_LIMIT", {"daily_total_usd": "300"})
    rows = [UsageRow(NOW - 100, "CONFIRMED", "native", SOL)]  # $150
    ok = decide(Transfer(to=SOL_A, amount=SOL), sol_agent, [p], rows, prices=SOL_PRICE)
    assert ok.allowed
    (figure,) = [b for b in ok.budget_usd if b.window == "24h"]
    assert (figure.spent, figure.requested, figure.remaining) == (
        Decimal(150),
        Decimal(150),
        Decimal(150),
    )
    d = decide(Transfer(to=SOL_A, amount=SOL + 1), sol_agent, [p], rows, prices=SOL_PRICE)
    assert not d.allowed
    assert Decision.from_json(d.to_json()) == d


def test_all_asset_usd_budget_sums_every_asset(decide: Decide, evm_agent: AgentContext) -> None:
    """asset "*" adds native and token spending in USD; one unpriced asset blocks the check."""
    p = spec("SPENDING_LIMIT", {"asset": "*", "daily_total_usd": "100"})
    prices = {
        "native": AssetPrice(usd=Decimal("2000"), decimals=18),
        EVM_TOKEN.upper().replace("0X", "0x"): AssetPrice(usd=Decimal("1"), decimals=6),
    }
    rows = [UsageRow(NOW - 5, "CONFIRMED", EVM_TOKEN, 60 * 10**6)]  # $60 of token
    eth_20_usd = ETH // 100
    assert decide(
        Transfer(to=EVM_B, amount=eth_20_usd), evm_agent, [p], rows, prices=prices
    ).allowed
    assert not decide(
        Transfer(to=EVM_B, amount=eth_20_usd * 2 + 1), evm_agent, [p], rows, prices=prices
    ).allowed
    d = decide(
        Transfer(to=EVM_B, amount=1), evm_agent, [p], rows, prices={"native": prices["native"]}
    )
    assert d.tier is Tier.APPROVAL
    assert EVM_TOKEN in next(r.figures["unpriced"] for r in d.reasons if "unpriced" in r.figures)


def test_usd_is_exact_for_huge_amounts(decide: Decide, evm_agent: AgentContext) -> None:
    """USD values of 2**200 wei do not lose precision (no float, no 28-digit context)."""
    price = {"native": AssetPrice(usd=Decimal("1"), decimals=18)}
    digits = str(2**200)
    cap = spec("SPENDING_LIMIT", {"per_transaction_usd": digits[:-18] + "." + digits[-18:]})
    assert decide(Transfer(to=EVM_B, amount=2**200), evm_agent, [cap], prices=price).allowed
    assert not decide(Transfer(to=EVM_B, amount=2**200 + 1), evm_agent, [cap], prices=price).allowed


# ------------------------------------------------------------------ delay / approval / owner


def test_delay_and_timeout_come_from_the_rule_that_set_the_tier(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """delay_seconds comes from the rule asking DELAY; otherwise from the config."""
    slow = spec(
        "SPENDING_LIMIT",
        {"instant_max": "0", "notify_max": "0", "delay_max": "100", "delay_seconds": 120},
    )
    slower = spec("SPENDING_LIMIT", {"delay_max": "100", "delay_seconds": 300})
    quiet = spec("SPENDING_LIMIT", {"instant_max": "100", "delay_seconds": 999})
    d = decide(Transfer(to=SOL_A, amount=50), sol_agent, [slow, slower, quiet])
    assert d.tier is Tier.DELAY
    assert d.delay_seconds == 300  # the longest of the rules that asked for DELAY
    d = decide(
        Transfer(to=SOL_A, amount=50), sol_agent, [quiet], config=WalletConfig(delay_seconds=42)
    )
    assert d.delay_seconds == 42
    approve = spec("SPENDING_LIMIT", {"instant_max": "1", "approval_timeout": 700})
    approve2 = spec("SPENDING_LIMIT", {"instant_max": "1", "approval_timeout": 500})
    assert (
        decide(Transfer(to=SOL_A, amount=2), sol_agent, [approve, approve2]).approval_timeout == 500
    )


def test_approval_without_owner(decide: Decide) -> None:
    """APPROVAL for an agent without owner is denied, or DELAY when configured so."""
    agent = AgentContext(id="lonely", chain="solana", network="devnet")
    p = spec("SPENDING_LIMIT", {"instant_max": "1"})
    d = decide(Transfer(to=SOL_A, amount=2), agent, [p])
    assert not d.allowed
    assert any(r.type == "OWNER" for r in d.deny_reasons)
    d = decide(
        Transfer(to=SOL_A, amount=2), agent, [p], config=WalletConfig(no_owner_approval="delay")
    )
    assert d.allowed and d.tier is Tier.DELAY
    assert decide(Transfer(to=SOL_A, amount=1), agent, [p]).allowed


# --------------------------------------------------------------------------- fees


def _with_fee_effects(fee: int) -> list[object]:
    from waiaas.plan.effects import FeeEffect, NativeTransfer

    return [NativeTransfer(SOL_OWNER_SENDER, SOL_B, 100), FeeEffect(SOL_OWNER_SENDER, fee)]


SOL_OWNER_SENDER = SOL_A
# velocity bounds far above these figures, so only the per-request tier is seen
ROOMY_DAY = {
    "daily_instant_max": "100000",
    "daily_notify_max": "200000",
    "daily_delay_max": "300000",
}


def test_a_fee_the_request_sets_is_spending_like_any_other(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """A priority fee decoded from the plan is chosen by the request: it counts against the
    per-transaction cap and the tier, so a huge fee cannot slip past them."""
    specs = [spec("SPENDING_LIMIT", {"per_transaction": "1000", **LIMIT, **ROOMY_DAY})]
    request = Transfer(to=SOL_B, amount=100)
    ok = decide(request, sol_agent, specs, effects=_with_fee_effects(0))
    assert ok.allowed and ok.tier == Tier.INSTANT
    burned = decide(request, sol_agent, specs, effects=_with_fee_effects(5_000))
    assert not burned.allowed
    assert burned.deny_reasons[0].figures["window"] == "transaction"
    tier = decide(request, sol_agent, specs, effects=_with_fee_effects(50))
    assert tier.tier == Tier.NOTIFY  # 100 + 50 is over instant_max


def test_the_chains_network_fee_counts_in_the_windows_only(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """``network_fee`` (the chain's price, not the request's choice) leaves one request's
    tier and per-transaction cap alone and counts in the rolling budget and the spend."""
    specs = [
        spec(
            "SPENDING_LIMIT",
            {"per_transaction": "100", "daily_total": "5099", **LIMIT, **ROOMY_DAY},
        )
    ]
    request = Transfer(to=SOL_B, amount=100)
    within = decide(request, sol_agent, specs, network_fee=4_999)
    assert within.allowed and within.tier == Tier.INSTANT
    assert within.spend == {"native": 5_099} and within.fees == 4_999
    over = decide(request, sol_agent, specs, network_fee=5_000)
    assert not over.allowed
    assert over.deny_reasons[0].figures["window"] == "24h"
    with pytest.raises(InvalidInputError):
        decide(request, sol_agent, specs, network_fee=-1)
