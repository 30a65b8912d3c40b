"""Properties of evaluate(): monotone in the amount, order-independent, deny-monotone."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from policy_helpers import EVM_A, EVM_B, EVM_SPENDER, EVM_TOKEN, NOW, spec, usage_for

from waiaas.policy import AgentContext, AssetPrice, Decision, PolicySpec, UsageRow, evaluate
from waiaas.types import Approve, Batch, ContractCall, TokenTransfer, Transfer

AGENT = AgentContext(id="agent", chain="evm", network="sepolia", owner_address=EVM_A)
ADDRS = [EVM_A, EVM_B, EVM_TOKEN, EVM_SPENDER]
SELECTORS = ["0xa9059cbb", "0x095ea7b3"]
PRICES = {"native": AssetPrice(usd=Decimal("2000"), decimals=18)}

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

amounts = st.one_of(st.integers(0, 10**6), st.integers(0, 2**210))
addr = st.sampled_from(ADDRS)


def _ordered(values: list[int | None]) -> list[int | None]:
    given_ = sorted(v for v in values if v is not None)
    it = iter(given_)
    return [None if v is None else next(it) for v in values]


@st.composite
def spending_limits(draw: st.DrawFn, *, thresholds: bool = True) -> dict[str, Any]:
    rules: dict[str, Any] = {"asset": draw(st.sampled_from(["native", EVM_TOKEN]))}
    for name in ("per_transaction", "daily_total", "weekly_total"):
        if draw(st.booleans()):
            rules[name] = str(draw(amounts))
    if thresholds:
        bounds = _ordered([draw(st.none() | amounts) for _ in range(3)])
        for name, value in zip(("instant_max", "notify_max", "delay_max"), bounds, strict=True):
            if value is not None:
                rules[name] = str(value)
        if draw(st.booleans()):
            rules["notify_max_usd"] = str(draw(st.integers(0, 10**6)))
    if draw(st.booleans()):
        rules["per_transaction_usd"] = str(draw(st.integers(0, 10**6)))
    rules["on_exceed"] = draw(st.sampled_from(["deny", "approval"]))
    if len(rules) == 2:
        rules["per_transaction"] = str(draw(amounts))
    return rules


@st.composite
def deny_capable(draw: st.DrawFn) -> PolicySpec:
    """A rule that can only deny or ask for a stricter tier (never sets a tier by itself)."""
    kind = draw(
        st.sampled_from(
            [
                "SPENDING_LIMIT",
                "ALLOWED_ADDRESSES",
                "TIME_RESTRICTION",
                "AUTO_STOP",
                "RATE_LIMIT",
                "ALLOWED_TOKENS",
                "CONTRACT_WHITELIST",
                "METHOD_WHITELIST",
                "APPROVED_SPENDERS",
                "APPROVE_AMOUNT_LIMIT",
                "ALLOWED_NETWORKS",
            ]
        )
    )
    some = st.lists(addr, min_size=1, max_size=3)
    rules: dict[str, Any]
    if kind == "SPENDING_LIMIT":
        rules = draw(spending_limits(thresholds=False))
    elif kind == "ALLOWED_ADDRESSES":
        rules = {"addresses": draw(some), "mode": draw(st.sampled_from(["whitelist", "blacklist"]))}
    elif kind == "TIME_RESTRICTION":
        rules = {
            "allowed_hours": {"start": draw(st.integers(0, 11)), "end": draw(st.integers(12, 24))},
            "timezone": draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])),
        }
    elif kind == "AUTO_STOP":
        trigger = draw(st.sampled_from(["consecutive_failures", "max_transactions", "max_denials"]))
        rules = {"trigger": trigger, "threshold": draw(st.integers(1, 4))}
        if trigger != "consecutive_failures":
            rules["window_seconds"] = draw(st.sampled_from([60, 3600]))
    elif kind == "RATE_LIMIT":
        rules = {
            "max_requests": draw(st.integers(1, 5)),
            "window_seconds": draw(st.sampled_from([60, 3600])),
        }
    elif kind == "ALLOWED_TOKENS":
        rules = {"tokens": draw(some)}
    elif kind == "CONTRACT_WHITELIST":
        rules = {"contracts": draw(some)}
    elif kind == "METHOD_WHITELIST":
        rules = {
            "methods": [
                {
                    "contract": draw(addr),
                    "selectors": draw(st.lists(st.sampled_from(SELECTORS), min_size=1)),
                }
            ]
        }
    elif kind == "APPROVED_SPENDERS":
        rules = {"spenders": [{"spender": a} for a in sorted(set(draw(some)))]}
    elif kind == "APPROVE_AMOUNT_LIMIT":
        rules = {"max_amount": str(draw(amounts)), "block_unlimited": draw(st.booleans())}
    else:
        rules = {"networks": draw(st.lists(st.sampled_from(["sepolia", "mainnet"]), min_size=1))}
    return spec(kind, rules, priority=draw(st.integers(-3, 3)))


any_policy = st.one_of(deny_capable(), spending_limits().map(lambda r: spec("SPENDING_LIMIT", r)))

single_requests = st.one_of(
    st.builds(Transfer, to=addr, amount=amounts),
    st.builds(TokenTransfer, token=addr, to=addr, amount=amounts),
    st.builds(ContractCall, to=addr, data=st.sampled_from(["0x", *SELECTORS]), value=amounts),
    st.builds(Approve, token=addr, spender=addr, amount=amounts),
)
requests = st.one_of(
    single_requests,
    st.lists(single_requests, min_size=1, max_size=4).map(lambda r: Batch(requests=tuple(r))),
)

history = st.lists(
    st.builds(
        UsageRow,
        created_at=st.integers(NOW - 8 * 86_400, NOW),
        status=st.sampled_from(["CONFIRMED", "PENDING", "FAILED", "CANCELLED"]),
        asset=st.sampled_from(["native", EVM_TOKEN]),
        amount=amounts,
        error=st.sampled_from([None, "POLICY_DENIED", "reverted"]),
        more=st.just(()),
    ),
    max_size=6,
)
moments = st.integers(NOW - 86_400, NOW + 86_400)
price_sets = st.sampled_from([None, PRICES])


def run(
    request: Any, policies: list[PolicySpec], rows: list[UsageRow], now: int, prices: Any
) -> Decision:
    return evaluate(request, AGENT, policies, usage_for(policies, rows, now), now, prices=prices)


@SETTINGS
@given(
    policies=st.lists(any_policy, max_size=5),
    kind=st.sampled_from(["transfer", "token", "call"]),
    a=amounts,
    b=amounts,
    rows=history,
    now=moments,
    prices=price_sets,
)
def test_raising_the_amount_never_lowers_the_tier(
    policies: list[PolicySpec],
    kind: str,
    a: int,
    b: int,
    rows: list[UsageRow],
    now: int,
    prices: Any,
) -> None:
    """tier(max(a, b)) >= tier(min(a, b)); a larger amount is never allowed if a smaller is not."""
    low, high = sorted((a, b))

    def make(amount: int) -> Any:
        if kind == "transfer":
            return Transfer(to=EVM_B, amount=amount)
        if kind == "token":
            return TokenTransfer(token=EVM_TOKEN, to=EVM_B, amount=amount)
        return ContractCall(to=EVM_B, data="0xa9059cbb", value=amount)

    small = run(make(low), policies, rows, now, prices)
    large = run(make(high), policies, rows, now, prices)
    assert large.tier.rank >= small.tier.rank
    assert not (large.allowed and not small.allowed)


@SETTINGS
@given(
    policies=st.lists(any_policy, max_size=6),
    request=requests,
    rows=history,
    now=moments,
    prices=price_sets,
    data=st.data(),
)
def test_outcome_does_not_depend_on_rule_order(
    policies: list[PolicySpec],
    request: Any,
    rows: list[UsageRow],
    now: int,
    prices: Any,
    data: st.DataObject,
) -> None:
    """Any permutation of the policies gives the very same decision."""
    shuffled = data.draw(st.permutations(policies))
    assert run(request, policies, rows, now, prices) == run(request, shuffled, rows, now, prices)


@SETTINGS
@given(
    policies=st.lists(any_policy, max_size=5),
    extra=deny_capable(),
    request=requests,
    rows=history,
    now=moments,
    prices=price_sets,
)
def test_adding_a_deny_capable_rule_is_never_more_permissive(
    policies: list[PolicySpec],
    extra: PolicySpec,
    request: Any,
    rows: list[UsageRow],
    now: int,
    prices: Any,
) -> None:
    """With one more deny-capable rule, a denied request stays denied and no tier drops.

    CONTRACT_WHITELIST and METHOD_WHITELIST are excluded: besides denying, they are the
    allow list of the default-deny for unknown code (naming a contract lets it be called)."""
    assume(extra.type not in ("CONTRACT_WHITELIST", "METHOD_WHITELIST"))
    before = run(request, policies, rows, now, prices)
    after = run(request, [*policies, extra], rows, now, prices)
    if not before.allowed:
        assert not after.allowed
    assert after.tier.rank >= before.tier.rank
    if before.auto_stop is not None:
        assert after.auto_stop is not None
