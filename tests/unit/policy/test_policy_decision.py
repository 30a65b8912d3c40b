"""Precedence, scoping, the Decision value, explain() and replay()."""

from __future__ import annotations

from decimal import Decimal

import pytest
from policy_helpers import (
    EVM_B,
    EVM_TOKEN,
    NOW,
    SOL,
    SOL_A,
    SOL_B,
    SOL_TOKEN,
    Decide,
    problems,
    spec,
    usage_for,
)

from waiaas.errors import InvalidInputError
from waiaas.policy import (
    AgentContext,
    AssetPrice,
    Decision,
    PolicySpec,
    ReplayRecord,
    Usage,
    evaluate,
    explain,
    replay,
    spend_of,
)
from waiaas.types import AgentStatus, Approve, Batch, Tier, TokenTransfer, Transfer


def test_deny_wins_and_every_reason_is_listed(decide: Decide, sol_agent: AgentContext) -> None:
    """Three independent denials are all reported; the tier is still computed."""
    limit = spec("SPENDING_LIMIT", {"per_transaction": "10", "instant_max": "5"})
    wl = spec("ALLOWED_ADDRESSES", {"addresses": [SOL_B]})
    nets = spec("ALLOWED_NETWORKS", {"networks": ["mainnet-beta"]})
    d = decide(Transfer(to=SOL_A, amount=11), sol_agent, [limit, wl, nets])
    assert not d.allowed
    assert {r.rule_id for r in d.deny_reasons} == {limit.id, wl.id, nets.id}
    assert d.tier is Tier.APPROVAL
    assert d.summary().startswith("denied: ")


def test_priority_orders_reasons_but_never_the_outcome(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """Higher priority first in the list; flipping priorities changes only the order."""
    low = spec("SPENDING_LIMIT", {"instant_max": "100"}, id="low", priority=1)
    high = spec("SPENDING_LIMIT", {"instant_max": "1", "notify_max": "1000"}, id="high", priority=9)
    d = decide(Transfer(to=SOL_A, amount=50), sol_agent, [low, high])
    assert [r.rule_id for r in d.reasons] == ["high", "low"]
    assert d.tier is Tier.NOTIFY  # the highest tier asked, not the first rule's
    flipped = [
        spec("SPENDING_LIMIT", {"instant_max": "100"}, id="low", priority=9),
        spec("SPENDING_LIMIT", {"instant_max": "1", "notify_max": "1000"}, id="high", priority=1),
    ]
    again = decide(Transfer(to=SOL_A, amount=50), sol_agent, flipped)
    assert [r.rule_id for r in again.reasons] == ["low", "high"]
    assert (again.allowed, again.tier) == (d.allowed, d.tier)


def test_disabled_and_foreign_policies_are_skipped(decide: Decide, sol_agent: AgentContext) -> None:
    """Disabled rules and other agents' rules never apply; own and global both do."""
    deny_all = {"addresses": [SOL_B]}
    off = spec("ALLOWED_ADDRESSES", deny_all, enabled=False)
    foreign = spec("ALLOWED_ADDRESSES", deny_all, agent_id="someone-else")
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [off, foreign]).allowed
    own = spec("ALLOWED_ADDRESSES", deny_all, agent_id=sol_agent.id)
    glob = spec("ALLOWED_ADDRESSES", {"addresses": [SOL_B], "mode": "whitelist"})
    d = decide(Transfer(to=SOL_A, amount=1), sol_agent, [own, glob])
    assert {r.rule_id for r in d.deny_reasons} == {own.id, glob.id}


def test_chain_and_network_scopes(decide: Decide, sol_agent: AgentContext) -> None:
    """A rule scoped to another chain or network does not apply (and does not default-deny)."""
    evm_only = spec("SPENDING_LIMIT", {"per_transaction": "1", "chain": "evm"})
    mainnet_only = spec("ALLOWED_TOKENS", {"tokens": [SOL_B], "network": "mainnet-beta"})
    assert decide(Transfer(to=SOL_A, amount=5), sol_agent, [evm_only]).allowed
    assert decide(
        TokenTransfer(token=SOL_TOKEN, to=SOL_A, amount=5), sol_agent, [mainnet_only]
    ).allowed
    devnet = spec("ALLOWED_TOKENS", {"tokens": [SOL_B], "network": "DEVNET", "chain": "solana"})
    assert not decide(
        TokenTransfer(token=SOL_TOKEN, to=SOL_A, amount=5), sol_agent, [devnet]
    ).allowed


@pytest.mark.parametrize("status", [s for s in AgentStatus if s is not AgentStatus.ACTIVE])
def test_inactive_agents_are_denied(decide: Decide, status: AgentStatus) -> None:
    """Only an ACTIVE agent can transact."""
    agent = AgentContext(id="a", chain="solana", network="devnet", status=status)
    d = decide(Transfer(to=SOL_A, amount=1), agent, [])
    assert not d.allowed
    assert d.deny_reasons[0].type == "AGENT"


def test_invalid_request_addresses_deny_instead_of_raising(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """An address that is not valid on the agent's chain is a denial naming the field."""
    d = decide(Transfer(to=EVM_B, amount=1), sol_agent, [])
    assert not d.allowed
    assert d.deny_reasons[0].type == "REQUEST"
    assert d.deny_reasons[0].figures["field"] == "to"


def test_requests_given_as_mappings_are_validated(decide: Decide, sol_agent: AgentContext) -> None:
    """A dict is validated as a request; a bad one raises InvalidInputError with problems."""
    d = decide({"type": "TRANSFER", "to": SOL_A, "amount": "5"}, sol_agent, [])
    assert d.allowed
    with pytest.raises(InvalidInputError) as caught:
        decide({"type": "TRANSFER", "to": SOL_A, "amount": 1.5, "x": 1}, sol_agent, [])
    assert len(problems(caught.value)) == 2
    with pytest.raises(InvalidInputError):
        decide("send everything", sol_agent, [])


def test_evaluate_validates_its_other_arguments(sol_agent: AgentContext) -> None:
    """Wrong argument types raise InvalidInputError naming the field."""
    t = Transfer(to=SOL_A, amount=1)
    cases = [
        (t, "agent", [], Usage(), NOW, {}),
        (t, sol_agent, ["policy"], Usage(), NOW, {}),
        (t, sol_agent, "policies", Usage(), NOW, {}),
        (t, sol_agent, [], {}, NOW, {}),
        (t, sol_agent, [], Usage(), 1.5, {}),
        (t, sol_agent, [], Usage(), True, {}),
        (t, sol_agent, [], Usage(), NOW, {"config": {}}),
        (t, sol_agent, [], Usage(), NOW, {"prices": {"native": 150.0}}),
    ]
    for request, agent, policies, usage, now, kwargs in cases:
        with pytest.raises(InvalidInputError):
            evaluate(request, agent, policies, usage, now, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        AgentContext(id="a", chain="solana", network="devnet", status="ASLEEP")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        AssetPrice(usd=150.0, decimals=9)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        AssetPrice(usd=Decimal("NaN"), decimals=9)


def test_decision_json_round_trip(decide: Decide, evm_agent: AgentContext) -> None:
    """Every field survives to_json/from_json; amounts are strings; bad JSON is refused."""
    p = spec(
        "SPENDING_LIMIT", {"daily_total": str(2**130), "daily_total_usd": "5", "instant_max": "1"}
    )
    d = decide(
        Transfer(to=EVM_B, amount=2**129),
        evm_agent,
        [p],
        prices={"native": AssetPrice(usd=Decimal("0.01"), decimals=18)},
    )
    text = d.to_json()
    assert Decision.from_json(text) == d
    assert d.to_dict()["budget"][0]["requested"] == str(2**129)
    assert isinstance(d.to_dict()["budget_usd"][0]["limit"], str)
    for bad in ("{}", "[]", '{"allowed": "maybe"}', "not json"):
        with pytest.raises(InvalidInputError):
            Decision.from_json(bad)


def test_spend_of_matches_what_evaluate_counts(sol_agent: AgentContext) -> None:
    """spend_of sums per asset the way budgets do (an approval counts its full allowance)."""
    batch = Batch(
        requests=(
            Transfer(to=SOL_A, amount=5),
            Transfer(to=SOL_B, amount=7),
            TokenTransfer(token=SOL_TOKEN, to=SOL_A, amount=3),
            Approve(token=SOL_TOKEN, spender=SOL_A, amount=10**6),
        )
    )
    assert spend_of(batch, "solana") == {"native": 12, SOL_TOKEN: 3 + 10**6}
    assert spend_of(
        TokenTransfer(token=EVM_TOKEN.upper().replace("0X", "0x"), to=EVM_B, amount=1), "evm"
    ) == {EVM_TOKEN: 1}
    with pytest.raises(InvalidInputError):
        spend_of(Transfer(to="nope", amount=1), "solana")


# --------------------------------------------------------------------------- explain


def test_explain_gives_verified_amount_hints(sol_agent: AgentContext) -> None:
    """'<= 0.5 SOL would be INSTANT' is said only for amounts that really are INSTANT."""
    p = spec(
        "SPENDING_LIMIT",
        {"instant_max": str(SOL // 2), "notify_max": str(2 * SOL), "per_transaction": str(5 * SOL)},
    )
    usage = usage_for([p])
    result = explain(Transfer(to=SOL_A, amount=SOL), sol_agent, [p], usage, NOW)
    assert result.decision.tier is Tier.NOTIFY
    assert "<= 0.5 SOL would be INSTANT" in result.hints
    assert result.amount_for_tier == {"INSTANT": SOL // 2}
    over = explain(Transfer(to=SOL_A, amount=6 * SOL), sol_agent, [p], usage, NOW)
    assert not over.decision.allowed
    assert "<= 5 SOL would be allowed as APPROVAL" in over.hints
    assert "<= 2 SOL would be allowed as NOTIFY" in over.hints
    assert [r.type for r in over.fired] == ["SPENDING_LIMIT", "SPENDING_LIMIT"]
    assert "would be allowed" in over.to_text()


def test_explain_uses_usd_bounds_and_token_decimals(sol_agent: AgentContext) -> None:
    """USD thresholds become base-unit hints; token amounts use known decimals and symbol."""
    p = spec("SPENDING_LIMIT", {"instant_max_usd": "15"})
    prices = {"native": AssetPrice(usd=Decimal("150"), decimals=9)}
    result = explain(
        Transfer(to=SOL_A, amount=SOL), sol_agent, [p], usage_for([p]), NOW, prices=prices
    )
    assert "<= 0.1 SOL would be INSTANT" in result.hints
    tokens = spec(
        "ALLOWED_TOKENS", {"tokens": [{"address": SOL_TOKEN, "decimals": 6, "symbol": "USDC"}]}
    )
    cap = spec("SPENDING_LIMIT", {"asset": SOL_TOKEN, "per_transaction": "2500000"})
    result = explain(
        TokenTransfer(token=SOL_TOKEN, to=SOL_A, amount=3_000_000),
        sol_agent,
        [tokens, cap],
        usage_for([cap]),
        NOW,
    )
    assert "<= 2.5 USDC would be allowed as NOTIFY" in result.hints


def test_explain_points_at_the_list_to_edit(evm_agent: AgentContext) -> None:
    """List denials name the policy to extend."""
    wl = spec("CONTRACT_WHITELIST", {"contracts": [EVM_TOKEN]}, id="cw")
    result = explain(
        {"type": "CONTRACT_CALL", "to": EVM_B, "data": "0x"}, evm_agent, [wl], Usage(), NOW
    )
    assert f"add {EVM_B.lower()} to policy cw (CONTRACT_WHITELIST) to allow it" in result.hints


# --------------------------------------------------------------------------- replay


def _record(
    tx: str, at: int, amount: int, decision: Decision, status: str = "CONFIRMED"
) -> ReplayRecord:
    return ReplayRecord(
        tx_id=tx,
        created_at=at,
        request=Transfer(to=SOL_A, amount=amount),
        decision=decision,
        status=status,
    )


def test_replay_reports_only_changed_decisions(sol_agent: AgentContext) -> None:
    """A stricter daily budget would have denied the third transfer of the day."""
    current: list[PolicySpec] = []
    records = []
    for i, amount in enumerate((2 * SOL, 2 * SOL, 2 * SOL)):
        at = NOW + i * 600
        d = evaluate(
            Transfer(to=SOL_A, amount=amount), sol_agent, current, usage_for(current, now=at), at
        )
        records.append(_record(f"tx{i}", at, amount, d))
    assert replay(records, current, sol_agent) == []
    stricter = [spec("SPENDING_LIMIT", {"daily_total": str(5 * SOL)})]
    diffs = replay(list(reversed(records)), stricter, sol_agent)
    assert [d.tx_id for d in diffs] == ["tx2"]
    assert diffs[0].changes == ("allowed: True -> False",)
    assert not diffs[0].candidate.allowed


def test_replay_history_is_counterfactual(sol_agent: AgentContext) -> None:
    """A request the candidate denies spends nothing, so the next one fits the budget."""
    none: list[PolicySpec] = []
    records = [
        _record(
            "big",
            NOW,
            4 * SOL,
            evaluate(Transfer(to=SOL_A, amount=4 * SOL), sol_agent, none, usage_for(none), NOW),
        ),
        _record(
            "small",
            NOW + 60,
            2 * SOL,
            evaluate(
                Transfer(to=SOL_A, amount=2 * SOL), sol_agent, none, usage_for(none), NOW + 60
            ),
        ),
    ]
    candidate = [
        spec("SPENDING_LIMIT", {"per_transaction": str(3 * SOL), "daily_total": str(3 * SOL)})
    ]
    diffs = replay(records, candidate, sol_agent)
    assert [d.tx_id for d in diffs] == ["big"]  # small fits once big is gone


def test_replay_reports_tier_changes_and_ignores_current_status(sol_agent: AgentContext) -> None:
    """Tier changes are reported; a now-suspended agent is replayed as it was (ACTIVE)."""
    none: list[PolicySpec] = []
    d = evaluate(Transfer(to=SOL_A, amount=SOL), sol_agent, none, usage_for(none), NOW)
    records = [_record("t", NOW, SOL, d)]
    suspended = AgentContext(
        id=sol_agent.id,
        chain="solana",
        network="devnet",
        status=AgentStatus.SUSPENDED,
        owner_address=sol_agent.owner_address,
    )
    diffs = replay(
        records, [spec("SPENDING_LIMIT", {"instant_max": "0", "notify_max": "0"})], suspended
    )
    assert diffs[0].changes == ("tier: NOTIFY -> APPROVAL",)
    with pytest.raises(InvalidInputError):
        replay(["nope"], [], sol_agent)  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        ReplayRecord(
            tx_id="x",
            created_at=NOW,
            request=Transfer(to=SOL_A, amount=1),
            decision=None,
            status="LOST",
        )
