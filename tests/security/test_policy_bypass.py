"""Attempts to slip a request past the policy engine. Every one must be refused."""

from __future__ import annotations

from typing import Any

import pytest

from waiaas.errors import InvalidInputError
from waiaas.policy import (
    AgentContext,
    PolicySpec,
    compute_usage,
    evaluate,
    required_windows,
    validate_rules,
)
from waiaas.types import AccountSpec, Approve, Batch, ContractCall, TokenTransfer, Transfer

NOW = 1_780_000_000
EVM_BAD = "0x52908400098527886E0F7030069857D2E4169EE7"  # checksummed form
EVM_OK = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"
EVM_TOKEN = "0xde709f2102306220921060314715629080e2fb77"
SOL_OK = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
SOL_BAD = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SOL_TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"

EVM = AgentContext(id="e", chain="evm", network="mainnet", owner_address=EVM_OK)
SOL = AgentContext(id="s", chain="solana", network="mainnet-beta", owner_address=SOL_OK)


def policy(kind: str, rules: dict[str, Any], **kw: Any) -> PolicySpec:
    return PolicySpec(id=f"{kind}-{len(rules)}", agent_id=None, type=kind, rules=rules, **kw)


def decide(request: Any, agent: AgentContext, policies: list[PolicySpec]) -> Any:
    usage = compute_usage([], NOW, required_windows(policies))
    return evaluate(request, agent, policies, usage, NOW)


EVM_BLACKLIST = policy("ALLOWED_ADDRESSES", {"addresses": [EVM_BAD], "mode": "blacklist"})
SOL_WHITELIST = policy("ALLOWED_ADDRESSES", {"addresses": [SOL_OK]})


# --------------------------------------------------------------------------- case tricks


@pytest.mark.parametrize(
    "variant",
    [
        EVM_BAD,
        EVM_BAD.lower(),
        "0x" + EVM_BAD[2:].upper(),
        f"  {EVM_BAD}  ",
        f"\t{EVM_BAD.lower()}\n",
    ],
)
def test_evm_case_and_padding_do_not_dodge_a_blacklist(variant: str) -> None:
    """Any spelling of a blacklisted EVM address is still that address."""
    assert not decide(Transfer(to=variant, amount=1), EVM, [EVM_BLACKLIST]).allowed


@pytest.mark.parametrize(
    "variant",
    [
        "0X" + EVM_BAD[2:],  # upper-case prefix
        EVM_BAD[:-1] + "e",  # mixed case with a broken checksum
        EVM_BAD + "00",  # too long
    ],
)
def test_malformed_evm_spellings_are_denied_not_ignored(variant: str) -> None:
    """Spellings that are not a valid address never pass as 'not on the blacklist'."""
    d = decide(Transfer(to=variant, amount=1), EVM, [EVM_BLACKLIST])
    assert not d.allowed
    assert d.deny_reasons[0].type == "REQUEST"


def test_solana_case_swap_is_a_different_key() -> None:
    """Base58 is case-sensitive: a case-swapped whitelisted address is not whitelisted."""
    for variant in (SOL_OK.swapcase(), SOL_OK.upper(), SOL_OK.lower()):
        assert not decide(Transfer(to=variant, amount=1), SOL, [SOL_WHITELIST]).allowed
    assert decide(Transfer(to=SOL_OK, amount=1), SOL, [SOL_WHITELIST]).allowed


# --------------------------------------------------------------------------- unicode


LOOKALIKES = [
    "0x52908400098527886\u0415\u0030F7030069857D2E4169EE7",  # Cyrillic capital IE for E
    "0x\uff15\uff12908400098527886E0F7030069857D2E4169EE7",  # full-width digits
    EVM_BAD[:10] + "\u200b" + EVM_BAD[10:],  # zero-width space
    "\u202e" + EVM_BAD,  # right-to-left override
    EVM_BAD.replace("0x", "\u03bfx", 1),  # Greek omicron for 0
]


@pytest.mark.parametrize("variant", LOOKALIKES)
def test_unicode_lookalikes_are_refused_in_requests(variant: str) -> None:
    """A look-alike address is denied as invalid, never compared as a different address."""
    d = decide(Transfer(to=variant, amount=1), EVM, [EVM_BLACKLIST])
    assert not d.allowed
    assert d.deny_reasons[0].type == "REQUEST"
    assert all(ord(c) < 128 for c in d.deny_reasons[0].message)  # rendered escaped


@pytest.mark.parametrize("variant", LOOKALIKES)
def test_unicode_lookalikes_are_refused_in_rules(variant: str) -> None:
    """A rule cannot be written with a look-alike address either."""
    with pytest.raises(InvalidInputError):
        validate_rules("ALLOWED_ADDRESSES", {"addresses": [variant]})


def test_solana_lookalikes_are_refused() -> None:
    """Base58 look-alikes (0, O, I, l or non-ASCII) are invalid."""
    for bad in (
        SOL_OK.replace("9", "\uff19"),
        "0" + SOL_OK[1:],
        SOL_OK[:-1] + "O",
        SOL_OK[:-1] + "l",
    ):
        d = decide(Transfer(to=bad, amount=1), SOL, [SOL_WHITELIST])
        assert not d.allowed


def test_long_hostile_input_is_not_echoed_in_full() -> None:
    """A 10 000-character address yields a bounded message."""
    d = decide(Transfer(to="A" * 10_000, amount=1), SOL, [])
    assert not d.allowed
    assert len(d.deny_reasons[0].message) < 200


# --------------------------------------------------------------------------- extra fields / types


@pytest.mark.parametrize(
    "rules",
    [
        {"addresses": [EVM_BAD], "mode": "blacklist", "except": [EVM_BAD]},
        {"addresses": [EVM_BAD], "Mode": "whitelist"},
        {"addresses": [EVM_BAD], "mode ": "whitelist"},
        {"addresses": [EVM_BAD], "mode": "Whitelist"},
    ],
)
def test_extra_or_misspelt_fields_fail_closed(rules: dict[str, Any]) -> None:
    """Unknown keys and near-miss spellings are errors, never silently ignored."""
    with pytest.raises(InvalidInputError):
        validate_rules("ALLOWED_ADDRESSES", rules)


def test_duplicate_keys_cannot_smuggle_a_value() -> None:
    """JSON with a repeated key is refused instead of taking the last value."""
    text = f'{{"addresses": ["{EVM_BAD}"], "mode": "blacklist", "mode": "whitelist"}}'
    with pytest.raises(InvalidInputError, match="duplicate key"):
        validate_rules("ALLOWED_ADDRESSES", text)
    nested = '{"allowed_hours": {"start": 9, "end": 17, "end": 9}}'
    with pytest.raises(InvalidInputError, match="duplicate key"):
        validate_rules("TIME_RESTRICTION", nested)


def test_extra_request_fields_are_refused() -> None:
    """A request cannot carry fields the policy engine would not see."""
    with pytest.raises(InvalidInputError):
        decide({"type": "TRANSFER", "to": SOL_OK, "amount": "1", "bypass": True}, SOL, [])
    with pytest.raises(InvalidInputError) as caught:
        Transfer(to=SOL_OK, amount=1, policy_override=True)  # type: ignore[call-arg]
    assert caught.value.field == "policy_override"


# --------------------------------------------------------------------------- amounts


@pytest.mark.parametrize("amount", [1.5, 1e9, "1e9", "1.0", "-1", -1, "0x10", " 1 2", True, "١٢"])
def test_inexact_or_negative_request_amounts_are_refused(amount: Any) -> None:
    """Floats, exponents, signs, hex, bools and non-ASCII digits never become an amount."""
    with pytest.raises(InvalidInputError) as caught:
        Transfer(to=SOL_OK, amount=amount)
    assert caught.value.field == "amount"
    with pytest.raises(InvalidInputError):
        decide({"type": "TRANSFER", "to": SOL_OK, "amount": amount}, SOL, [])


@pytest.mark.parametrize("amount", [1.5, "1e9", "-5", -5, "1.0", True, "١٢"])
def test_inexact_or_negative_rule_amounts_are_refused(amount: Any) -> None:
    """The same holds for every amount in a rule."""
    with pytest.raises(InvalidInputError):
        validate_rules("SPENDING_LIMIT", {"per_transaction": amount})
    with pytest.raises(InvalidInputError):
        validate_rules("APPROVE_AMOUNT_LIMIT", {"max_amount": amount})


def test_huge_amounts_are_exact_and_capped() -> None:
    """Amounts up to 2**256 - 1 are compared exactly against caps (no overflow wraps them
    to a small number); beyond 2**256 - 1 (2**300, 2**256 + 5) they are refused outright,
    never taken mod 2**256."""
    cap = policy("SPENDING_LIMIT", {"per_transaction": str(2**64)})
    assert not decide(Transfer(to=EVM_OK, amount=2**256 - 1), EVM, [cap]).allowed
    assert not decide(Transfer(to=EVM_OK, amount=2**64 + 1), EVM, [cap]).allowed
    for beyond in (2**300, 2**256 + 5, 2**256):
        with pytest.raises(InvalidInputError):
            Transfer(to=EVM_OK, amount=beyond)
        with pytest.raises(InvalidInputError):
            decide({"type": "TRANSFER", "to": EVM_OK, "amount": str(beyond)}, EVM, [cap])
    assert decide(Transfer(to=EVM_OK, amount=2**64), EVM, [cap]).allowed


def test_unlimited_approval_variants_are_blocked() -> None:
    """Every 'infinite' allowance spelling is blocked by default."""
    lim = policy("APPROVE_AMOUNT_LIMIT", {"max_amount": "1000000"})
    for amount in (2**256 - 1, 2**255, 2**256 - 10**6):
        assert not decide(
            Approve(token=EVM_TOKEN, spender=EVM_OK, amount=amount), EVM, [lim]
        ).allowed
    assert not decide(
        Approve(token=SOL_TOKEN, spender=SOL_OK, amount=2**64 - 1), SOL, [lim]
    ).allowed


# --------------------------------------------------------------------------- batch smuggling


def test_splitting_a_transfer_in_a_batch_does_not_dodge_the_cap_or_tier() -> None:
    """Sixteen small transfers are summed for the per-transaction cap and for the tier."""
    lim = policy(
        "SPENDING_LIMIT", {"per_transaction": "1000", "instant_max": "100", "notify_max": "1000"}
    )
    pieces = tuple(Transfer(to=SOL_OK, amount=100) for _ in range(16))
    d = decide(Batch(requests=pieces), SOL, [lim])
    assert not d.allowed
    d = decide(Batch(requests=pieces[:10]), SOL, [lim])
    assert d.allowed and d.tier.value == "NOTIFY"


def test_a_bad_item_hidden_in_a_batch_denies_the_batch() -> None:
    """Blacklisted recipient, unlisted token, unlimited approval or unlisted contract in a batch."""
    rules = [
        policy("ALLOWED_ADDRESSES", {"addresses": [SOL_BAD], "mode": "blacklist"}),
        policy("ALLOWED_TOKENS", {"tokens": [SOL_TOKEN]}),
        policy("APPROVE_AMOUNT_LIMIT", {}),
        policy("SPENDING_LIMIT", {"asset": SOL_TOKEN, "daily_total": "1000"}),
        policy("CONTRACT_WHITELIST", {"contracts": [SOL_TOKEN]}),
    ]
    ok = Transfer(to=SOL_OK, amount=1)
    smuggled = [
        Transfer(to=SOL_BAD, amount=1),
        TokenTransfer(token=SOL_OK, to=SOL_OK, amount=1),
        Approve(token=SOL_TOKEN, spender=SOL_OK, amount=2**64 - 1),
        ContractCall(to=SOL_OK, data=b"\x00"),
        ContractCall(to=SOL_TOKEN, data=b"\x00", accounts=(AccountSpec(pubkey=SOL_BAD),)),
    ]
    assert decide(Batch(requests=(ok, ok)), SOL, rules).allowed
    for bad in smuggled:
        d = decide(Batch(requests=(ok, bad, ok)), SOL, rules)
        assert not d.allowed, bad
        assert d.deny_reasons[0].message.startswith("requests[1]")


def test_batches_cannot_nest() -> None:
    """A batch inside a batch is refused by the request model."""
    inner = Batch(requests=(Transfer(to=SOL_OK, amount=1),))
    with pytest.raises(InvalidInputError):
        Batch(requests=(inner,))


# --------------------------------------------------------------------------- types and switches


@pytest.mark.parametrize(
    "kind", ["WHITELIST", "spending_limit", "SPENDING_LIMIT ", "", "APPROVE_TIER_OVERRIDE"]
)
def test_unknown_policy_types_are_refused(kind: str) -> None:
    """Only the eleven enforced types are accepted; nothing stored goes unenforced."""
    with pytest.raises(InvalidInputError):
        validate_rules(kind, {"addresses": [SOL_OK]})
    with pytest.raises(InvalidInputError):
        policy(kind, {"addresses": [SOL_OK]})


def test_disabled_rules_are_skipped_and_cannot_be_switched_by_truthiness() -> None:
    """A disabled rule is not enforced (not even as default-deny); 'enabled' must be a bool."""
    tokens = {"tokens": [SOL_TOKEN]}
    off = policy("ALLOWED_TOKENS", tokens, enabled=False)
    unlisted = TokenTransfer(token=SOL_OK, to=SOL_OK, amount=1)
    assert decide(unlisted, SOL, [off]).allowed
    assert not decide(unlisted, SOL, [policy("ALLOWED_TOKENS", tokens)]).allowed
    for fake in ("false", 0, None, "0"):
        with pytest.raises(InvalidInputError):
            policy("ALLOWED_TOKENS", tokens, enabled=fake)


def test_policies_of_another_agent_cannot_be_borrowed() -> None:
    """An agent-specific permissive rule of agent B does not lift agent A's limits."""
    strict = policy("SPENDING_LIMIT", {"per_transaction": "10"})
    other = PolicySpec(
        id="b", agent_id="agent-b", type="SPENDING_LIMIT", rules={"per_transaction": "10000"}
    )
    assert not decide(Transfer(to=SOL_OK, amount=11), SOL, [strict, other]).allowed
