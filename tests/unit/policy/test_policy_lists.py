"""List policies: addresses, tokens, contracts, methods, spenders, approvals, networks."""

from __future__ import annotations

import pytest
from policy_helpers import (
    EVM_A,
    EVM_B,
    EVM_SPENDER,
    EVM_TOKEN,
    NOW,
    SOL_A,
    SOL_B,
    SOL_TOKEN,
    Decide,
    spec,
)

from waiaas.config import WalletConfig
from waiaas.policy import AgentContext, Usage, evaluate
from waiaas.types import AccountSpec, Approve, Batch, ContractCall, Tier, TokenTransfer, Transfer

TRANSFER_SEL = "0xa9059cbb"
APPROVE_SEL = "0x095ea7b3"


# --------------------------------------------------------------------------- ALLOWED_ADDRESSES


@pytest.mark.parametrize(
    ("listed", "to", "allowed"),
    [
        (EVM_A, EVM_A, True),
        (EVM_A, EVM_A.lower(), True),
        (EVM_A.lower(), EVM_A, True),
        (EVM_A, "0x" + EVM_A[2:].upper(), True),
        (EVM_A, EVM_B, False),
    ],
)
def test_evm_whitelist_is_case_insensitive(
    decide: Decide, evm_agent: AgentContext, listed: str, to: str, allowed: bool
) -> None:
    """EVM addresses match whatever their case (checksummed, lower, upper)."""
    p = spec("ALLOWED_ADDRESSES", {"addresses": [listed], "mode": "whitelist"})
    assert decide(Transfer(to=to, amount=1), evm_agent, [p]).allowed is allowed


def test_solana_whitelist_matching_is_exact(decide: Decide, sol_agent: AgentContext) -> None:
    """Solana base58 is case-sensitive: a case-swapped address is another key and is refused."""
    p = spec("ALLOWED_ADDRESSES", {"addresses": [SOL_A]})
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [p]).allowed
    swapped = SOL_A.swapcase()
    d = decide(Transfer(to=swapped, amount=1), sol_agent, [p])
    assert not d.allowed


def test_whitelist_covers_token_recipients_and_paid_contract_calls(
    decide: Decide, evm_agent: AgentContext
) -> None:
    """Whitelists check every value recipient: transfers, token transfers, calls with value."""
    p = spec("ALLOWED_ADDRESSES", {"addresses": [EVM_A]})
    code = spec("CONTRACT_WHITELIST", {"contracts": [EVM_B]})
    assert not decide(TokenTransfer(token=EVM_TOKEN, to=EVM_B, amount=1), evm_agent, [p]).allowed
    assert decide(TokenTransfer(token=EVM_TOKEN, to=EVM_A, amount=1), evm_agent, [p]).allowed
    assert not decide(ContractCall(to=EVM_B, data="0x", value=1), evm_agent, [p, code]).allowed
    assert decide(
        ContractCall(to=EVM_B, data=TRANSFER_SEL), evm_agent, [p, code]
    ).allowed  # no value moved


def test_blacklist_refuses_any_role(
    decide: Decide, evm_agent: AgentContext, sol_agent: AgentContext
) -> None:
    """A blacklisted address is refused as recipient, token, spender, contract or account."""
    bl = spec("ALLOWED_ADDRESSES", {"addresses": [EVM_B, SOL_B], "mode": "blacklist"})
    assert not decide(Transfer(to=EVM_B.lower(), amount=1), evm_agent, [bl]).allowed
    assert not decide(TokenTransfer(token=EVM_B, to=EVM_A, amount=1), evm_agent, [bl]).allowed
    assert not decide(Approve(token=EVM_TOKEN, spender=EVM_B, amount=1), evm_agent, [bl]).allowed
    assert not decide(ContractCall(to=EVM_B, data=TRANSFER_SEL), evm_agent, [bl]).allowed
    call = ContractCall(to=SOL_TOKEN, data=b"\x03", accounts=(AccountSpec(pubkey=SOL_B),))
    assert not decide(call, sol_agent, [bl]).allowed
    assert decide(Transfer(to=EVM_A, amount=1), evm_agent, [bl]).allowed


def test_two_whitelists_intersect(decide: Decide, sol_agent: AgentContext) -> None:
    """Deny-wins: with a global and an agent whitelist, a recipient must be in both."""
    glob = spec("ALLOWED_ADDRESSES", {"addresses": [SOL_A, SOL_B]})
    own = spec("ALLOWED_ADDRESSES", {"addresses": [SOL_A]}, agent_id=sol_agent.id)
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [glob, own]).allowed
    d = decide(Transfer(to=SOL_B, amount=1), sol_agent, [glob, own])
    assert [r.rule_id for r in d.deny_reasons] == [own.id]


def test_mixed_chain_lists_only_concern_their_chain(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """EVM entries in a list never match a Solana recipient (and do not break the rule)."""
    p = spec("ALLOWED_ADDRESSES", {"addresses": [EVM_A, SOL_A]})
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [p]).allowed
    assert not decide(Transfer(to=SOL_B, amount=1), sol_agent, [p]).allowed


# --------------------------------------------------------------------------- default-deny kinds


def test_token_transfers_are_default_deny_once_allowed_tokens_exists(
    decide: Decide, sol_agent: AgentContext
) -> None:
    """No ALLOWED_TOKENS: any token; one ALLOWED_TOKENS: only the listed tokens."""
    transfer = TokenTransfer(token=SOL_TOKEN, to=SOL_A, amount=5)
    assert decide(transfer, sol_agent, []).allowed
    other = spec("ALLOWED_TOKENS", {"tokens": [SOL_B]})
    d = decide(transfer, sol_agent, [other])
    assert not d.allowed
    assert "not in the allowed tokens" in d.deny_reasons[0].message
    listed = spec("ALLOWED_TOKENS", {"tokens": [SOL_TOKEN]})
    assert decide(transfer, sol_agent, [listed]).allowed
    assert not decide(transfer, sol_agent, [listed, other]).allowed  # every list must agree
    assert decide(Transfer(to=SOL_A, amount=5), sol_agent, [other]).allowed  # native untouched


def test_allowed_tokens_also_govern_approvals(decide: Decide, evm_agent: AgentContext) -> None:
    """An approval of an unlisted token is refused too."""
    listed = spec("ALLOWED_TOKENS", {"tokens": [EVM_TOKEN]})
    assert decide(
        Approve(token=EVM_TOKEN, spender=EVM_SPENDER, amount=1), evm_agent, [listed]
    ).allowed
    assert not decide(
        Approve(token=EVM_B, spender=EVM_SPENDER, amount=1), evm_agent, [listed]
    ).allowed


def test_contract_calls_are_default_deny_once_a_whitelist_exists(
    decide: Decide, evm_agent: AgentContext
) -> None:
    """No CONTRACT_WHITELIST: no contract (unknown code is denied by default, unless
    ``allow_unlisted_contracts``); one: only the listed ones (any case)."""
    call = ContractCall(to=EVM_A.lower(), data=TRANSFER_SEL)
    d = decide(call, evm_agent, [])
    assert not d.allowed and d.deny_reasons[0].type == "CODE"
    relaxed = WalletConfig(allow_unlisted_contracts=True)
    assert evaluate(call, evm_agent, [], Usage(), NOW, config=relaxed).allowed
    wl = spec("CONTRACT_WHITELIST", {"contracts": [{"address": EVM_A, "name": "router"}]})
    assert decide(call, evm_agent, [wl]).allowed
    d = decide(ContractCall(to=EVM_B, data=TRANSFER_SEL), evm_agent, [wl])
    assert not d.allowed
    assert d.deny_reasons[0].figures["contract"] == EVM_B.lower()
    assert decide(Transfer(to=EVM_B, amount=1), evm_agent, [wl]).allowed  # transfers untouched


def test_solana_program_whitelist(decide: Decide, sol_agent: AgentContext) -> None:
    """Program ids are matched exactly."""
    wl = spec("CONTRACT_WHITELIST", {"contracts": [SOL_TOKEN]})
    assert decide(ContractCall(to=SOL_TOKEN, data=b"\x01"), sol_agent, [wl]).allowed
    assert not decide(ContractCall(to=SOL_A, data=b"\x01"), sol_agent, [wl]).allowed


@pytest.mark.parametrize(
    ("data", "allowed"),
    [
        (TRANSFER_SEL + "00" * 64, True),
        (TRANSFER_SEL.upper().replace("0X", "0x"), True),
        (APPROVE_SEL + "00" * 64, False),
        ("0x", False),  # no selector: fallback/receive is refused
        ("0xa9059c", False),  # three bytes
    ],
)
def test_method_whitelist(
    decide: Decide, evm_agent: AgentContext, data: str, allowed: bool
) -> None:
    """A listed contract may only be called with a listed 4-byte selector; a contract no
    list names is unknown code (denied by default)."""
    mw = spec("METHOD_WHITELIST", {"methods": [{"contract": EVM_A, "selectors": [TRANSFER_SEL]}]})
    assert decide(ContractCall(to=EVM_A, data=data), evm_agent, [mw]).allowed is allowed
    unlisted = decide(ContractCall(to=EVM_B, data=data), evm_agent, [mw])
    assert [r.type for r in unlisted.deny_reasons] == ["CODE"]


def test_approvals_are_default_deny_once_approved_spenders_exists(
    decide: Decide, evm_agent: AgentContext
) -> None:
    """No APPROVED_SPENDERS: any spender; one: only listed spenders, up to their maximum."""
    approve = Approve(token=EVM_TOKEN, spender=EVM_SPENDER, amount=100)
    assert decide(approve, evm_agent, []).allowed
    sp = spec(
        "APPROVED_SPENDERS",
        {"spenders": [{"spender": EVM_SPENDER.upper().replace("0X", "0x"), "max_amount": "100"}]},
    )
    assert decide(approve, evm_agent, [sp]).allowed
    assert not decide(
        Approve(token=EVM_TOKEN, spender=EVM_SPENDER, amount=101), evm_agent, [sp]
    ).allowed
    assert not decide(Approve(token=EVM_TOKEN, spender=EVM_B, amount=1), evm_agent, [sp]).allowed
    revoke = Approve(token=EVM_TOKEN, spender=EVM_B, amount=0)
    assert decide(revoke, evm_agent, [sp]).allowed  # revoking is always possible


@pytest.mark.parametrize("chain", ["evm", "solana"])
def test_unlimited_means_above_the_remaining_daily_budget(decide: Decide, chain: str) -> None:
    """No magic numbers: without ``max_amount`` an approval is "unlimited" when it exceeds the
    token's remaining daily budget (2**255 - 1 and 2**64 - 2 are as unlimited as 2**256 - 1);
    with no bound at all the owner decides; ``block_unlimited: false`` lets it through."""
    agent = AgentContext(id="a", chain=chain, network="n", owner_address="owner")
    token, spender = (EVM_TOKEN, EVM_SPENDER) if chain == "evm" else (SOL_TOKEN, SOL_A)
    lim = spec("APPROVE_AMOUNT_LIMIT", {})
    budget = spec("SPENDING_LIMIT", {"asset": token, "daily_total": "100"})
    for amount in (101, 2**64 - 2, 2**255 - 1, 2**256 - 1):
        d = decide(Approve(token=token, spender=spender, amount=amount), agent, [lim, budget])
        assert not d.allowed
        assert any(r.type == "APPROVE_AMOUNT_LIMIT" and r.effect == "deny" for r in d.reasons)
    within = decide(Approve(token=token, spender=spender, amount=100), agent, [lim, budget])
    assert within.allowed
    assert within.spend == {token.lower() if chain == "evm" else token: 100}
    unbounded = decide(Approve(token=token, spender=spender, amount=5), agent, [lim])
    assert unbounded.allowed and unbounded.tier is Tier.APPROVAL
    off = spec("APPROVE_AMOUNT_LIMIT", {"block_unlimited": False})
    assert decide(Approve(token=token, spender=spender, amount=2**64 - 1), agent, [off]).allowed


def test_approve_amount_limit_edge(decide: Decide, evm_agent: AgentContext) -> None:
    """max_amount is inclusive."""
    lim = spec("APPROVE_AMOUNT_LIMIT", {"max_amount": "1000"})
    assert decide(
        Approve(token=EVM_TOKEN, spender=EVM_SPENDER, amount=1000), evm_agent, [lim]
    ).allowed
    assert not decide(
        Approve(token=EVM_TOKEN, spender=EVM_SPENDER, amount=1001), evm_agent, [lim]
    ).allowed


def test_allowed_networks(decide: Decide, sol_agent: AgentContext) -> None:
    """The agent's network must be listed (case-insensitively); lists intersect."""
    ok = spec("ALLOWED_NETWORKS", {"networks": ["DevNet", "testnet"]})
    assert decide(Transfer(to=SOL_A, amount=1), sol_agent, [ok]).allowed
    main = spec("ALLOWED_NETWORKS", {"networks": ["mainnet-beta"]})
    d = decide(Transfer(to=SOL_A, amount=1), sol_agent, [ok, main])
    assert [r.rule_id for r in d.deny_reasons] == [main.id]


def test_batch_items_are_each_checked(decide: Decide, sol_agent: AgentContext) -> None:
    """One bad item in a batch denies the whole batch, naming the item."""
    wl = spec("ALLOWED_ADDRESSES", {"addresses": [SOL_A]})
    batch = Batch(requests=(Transfer(to=SOL_A, amount=1), Transfer(to=SOL_B, amount=1)))
    d = decide(batch, sol_agent, [wl])
    assert not d.allowed
    assert d.deny_reasons[0].message.startswith("requests[1]: ")
