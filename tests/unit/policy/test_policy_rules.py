"""Rule validation: every policy type, every problem reported at once, fail-closed parsing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from policy_helpers import EVM_A, EVM_TOKEN, SOL_A, SOL_B, SOL_TOKEN, field_of, problems

from waiaas.errors import InvalidInputError
from waiaas.policy import (
    AllowedAddressesRules,
    AllowedTokensRules,
    ApprovedSpendersRules,
    MethodWhitelistRules,
    PolicySpec,
    PolicyType,
    SpendingLimitRules,
    TimeRestrictionRules,
    normalize_address,
    normalize_selector,
    to_checksum_address,
    validate_rules,
)
from waiaas.policy.addresses import address_chains, is_valid_address, keccak256

VALID: list[tuple[str, dict[str, Any]]] = [
    ("SPENDING_LIMIT", {"per_transaction": "1000000000", "daily_total": "5000000000"}),
    ("SPENDING_LIMIT", {"instant_max": 1, "notify_max": "2", "delay_max": "3"}),
    ("SPENDING_LIMIT", {"asset": EVM_TOKEN, "weekly_total": str(2**200)}),
    ("SPENDING_LIMIT", {"asset": "*", "daily_total_usd": "100.25", "instant_max_usd": "5"}),
    ("SPENDING_LIMIT", {"per_transaction": 1, "on_exceed": "approval", "delay_seconds": 60}),
    ("ALLOWED_ADDRESSES", {"addresses": [SOL_A, EVM_A], "mode": "whitelist"}),
    ("ALLOWED_ADDRESSES", {"addresses": [SOL_A], "mode": "blacklist"}),
    ("TIME_RESTRICTION", {"allowed_hours": {"start": 9, "end": 17}, "timezone": "UTC"}),
    ("TIME_RESTRICTION", {"allowed_days": [1, 2, 3, 4, 5]}),
    ("TIME_RESTRICTION", {"allowed_hours": {"start": 22, "end": 6}, "timezone": "Asia/Kolkata"}),
    ("AUTO_STOP", {"trigger": "consecutive_failures", "threshold": 3, "action": "suspend"}),
    ("AUTO_STOP", {"trigger": "max_transactions", "threshold": 20, "window_seconds": 300}),
    ("AUTO_STOP", {"trigger": "max_denials", "threshold": 5, "window_seconds": 600}),
    ("RATE_LIMIT", {"max_requests": 10, "window_seconds": 60}),
    ("ALLOWED_TOKENS", {"tokens": [SOL_TOKEN, {"address": EVM_TOKEN, "decimals": 6}]}),
    ("CONTRACT_WHITELIST", {"contracts": [EVM_A, {"address": SOL_TOKEN, "name": "spl"}]}),
    ("METHOD_WHITELIST", {"methods": [{"contract": EVM_A, "selectors": ["0xa9059cbb"]}]}),
    ("APPROVED_SPENDERS", {"spenders": [EVM_A, {"spender": SOL_B, "max_amount": "10"}]}),
    ("APPROVE_AMOUNT_LIMIT", {"max_amount": "1000", "block_unlimited": False}),
    ("APPROVE_AMOUNT_LIMIT", {}),
    ("ALLOWED_NETWORKS", {"networks": ["devnet", "Mainnet-Beta"]}),
]


@pytest.mark.parametrize(
    ("kind", "rules"), VALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(VALID)]
)
def test_valid_rules_parse_from_dict_and_json_identically(kind: str, rules: dict[str, Any]) -> None:
    """Every valid example parses, and the JSON text form gives the same model."""
    from_dict = validate_rules(kind, rules)
    from_json = validate_rules(PolicyType(kind), json.dumps(rules))
    assert from_dict == from_json
    assert validate_rules(kind, from_dict) is from_dict
    again = validate_rules(kind, from_dict.model_dump(mode="json", exclude_none=True))
    assert again == from_dict


INVALID: list[tuple[str, Any, list[str]]] = [
    ("SPENDING_LIMIT", {}, ["at least one cap or tier threshold"]),
    ("SPENDING_LIMIT", {"per_transaction": 1.5}, ["per_transaction:"]),
    ("SPENDING_LIMIT", {"per_transaction": "-1"}, ["per_transaction:"]),
    ("SPENDING_LIMIT", {"per_transaction": "1e9"}, ["per_transaction:"]),
    ("SPENDING_LIMIT", {"per_transaction": True}, ["per_transaction:"]),
    (
        "SPENDING_LIMIT",
        {"instant_max": 5, "notify_max": 3, "delay_max": 4},
        ["notify_max: must be >="],
    ),
    (
        "SPENDING_LIMIT",
        {"instant_max_usd": "5", "delay_max_usd": "1"},
        ["delay_max_usd: must be >="],
    ),
    ("SPENDING_LIMIT", {"per_transaction_usd": 1.5}, ["per_transaction_usd:"]),
    ("SPENDING_LIMIT", {"per_transaction_usd": "-1"}, ["per_transaction_usd:"]),
    ("SPENDING_LIMIT", {"per_transaction_usd": "NaN"}, ["per_transaction_usd:"]),
    ("SPENDING_LIMIT", {"asset": "*", "per_transaction": 5}, ['asset "*"']),
    ("SPENDING_LIMIT", {"asset": "nope", "per_transaction": 5}, ["asset:"]),
    ("SPENDING_LIMIT", {"per_transaction": 1, "delay_seconds": "60"}, ["delay_seconds:"]),
    ("SPENDING_LIMIT", {"per_transaction": 1, "on_exceed": "warn"}, ["on_exceed:"]),
    ("ALLOWED_ADDRESSES", {"addresses": []}, ["at least one"]),
    ("ALLOWED_ADDRESSES", {"addresses": [SOL_A], "mode": "graylist"}, ["mode:"]),
    ("ALLOWED_ADDRESSES", {"addresses": [SOL_A], "chain": "evm"}, ["not a valid evm address"]),
    ("TIME_RESTRICTION", {}, ["needs allowed_hours"]),
    ("TIME_RESTRICTION", {"allowed_hours": {"start": 9, "end": 9}}, ["empty window"]),
    ("TIME_RESTRICTION", {"allowed_hours": {"start": 24, "end": 25}}, ["start:", "end:"]),
    ("TIME_RESTRICTION", {"allowed_days": [0, 8]}, ["allowed_days.0", "allowed_days.1"]),
    ("TIME_RESTRICTION", {"allowed_days": [1, 1]}, ["repeat"]),
    ("TIME_RESTRICTION", {"allowed_days": [1], "timezone": "Mars/Olympus"}, ["timezone:"]),
    ("TIME_RESTRICTION", {"allowed_days": [1], "timezone": "../../etc/passwd"}, ["timezone:"]),
    ("AUTO_STOP", {"trigger": "max_denials", "threshold": 3}, ["window_seconds: required"]),
    (
        "AUTO_STOP",
        {"trigger": "consecutive_failures", "threshold": 3, "window_seconds": 5},
        ["not used"],
    ),
    (
        "AUTO_STOP",
        {"trigger": "explode", "threshold": 0, "action": "delete"},
        ["trigger:", "threshold:", "action:"],
    ),
    ("RATE_LIMIT", {"max_requests": 0, "window_seconds": 0}, ["max_requests:", "window_seconds:"]),
    ("RATE_LIMIT", {"max_requests": 10.0, "window_seconds": 60}, ["max_requests:"]),
    ("ALLOWED_TOKENS", {"tokens": []}, ["at least one"]),
    ("ALLOWED_TOKENS", {"tokens": [{"address": SOL_TOKEN, "decimals": -1}]}, ["tokens.0.decimals"]),
    ("CONTRACT_WHITELIST", {"contracts": ["0x1234"]}, ["contracts.0"]),
    (
        "METHOD_WHITELIST",
        {"methods": [{"contract": SOL_A, "selectors": ["0xa9059cbb"]}]},
        ["contract"],
    ),
    (
        "METHOD_WHITELIST",
        {"methods": [{"contract": EVM_A, "selectors": ["a9059cbb", "0xzz"]}]},
        ["selectors.0", "selectors.1"],
    ),
    (
        "APPROVED_SPENDERS",
        {
            "spenders": [
                {"spender": EVM_A, "max_amount": 1},
                {"spender": EVM_A.lower(), "max_amount": 2},
            ]
        },
        ["listed twice"],
    ),
    ("APPROVE_AMOUNT_LIMIT", {"block_unlimited": "yes"}, ["block_unlimited:"]),
    ("ALLOWED_NETWORKS", {"networks": ["dev net"]}, ["networks.0"]),
]


@pytest.mark.parametrize(
    ("kind", "rules", "expected"), INVALID, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(INVALID)]
)
def test_invalid_rules_are_refused_naming_the_field(
    kind: str, rules: Any, expected: list[str]
) -> None:
    """Each invalid example raises InvalidInputError whose problems name what was wrong."""
    with pytest.raises(InvalidInputError) as caught:
        validate_rules(kind, rules)
    text = "\n".join(problems(caught.value))
    for fragment in expected:
        assert fragment in text, (fragment, text)
    assert field_of(caught.value) == "rules"


def test_every_problem_is_listed_at_once() -> None:
    """Field problems in one document are all reported together, each with its location."""
    rules = {
        "addresses": [
            SOL_A,
            "not-an-address",
            42,
            EVM_A.lower(),
            "0x52908400098527886E0F7030069857D2E4169Ee7",
        ],
        "mode": "graylist",
        "network": "dev net",
        "extra": True,
    }
    with pytest.raises(InvalidInputError) as caught:
        validate_rules("ALLOWED_ADDRESSES", rules)
    found = problems(caught.value)
    locations = sorted(p.split(":", 1)[0] for p in found)
    assert locations == ["addresses.1", "addresses.2", "addresses.4", "extra", "mode", "network"]
    assert any("EIP-55 checksum" in p for p in found)


def test_unknown_type_and_non_object_rules_are_refused() -> None:
    """An unknown policy type or a non-object document fails closed."""
    with pytest.raises(InvalidInputError, match="unknown policy type") as caught:
        validate_rules("WHITELIST", {"addresses": [SOL_A]})
    assert field_of(caught.value) == "type"
    for bad in ("[]", "3", '"x"', b"null"):
        with pytest.raises(InvalidInputError, match="must be a JSON object"):
            validate_rules("RATE_LIMIT", bad)
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        validate_rules("RATE_LIMIT", "{max_requests: 1}")


def test_json_tricks_are_refused() -> None:
    """Duplicate keys (last-wins smuggling), NaN/Infinity and float amounts fail closed."""
    dup = f'{{"addresses": ["{SOL_A}"], "mode": "blacklist", "mode": "whitelist"}}'
    with pytest.raises(InvalidInputError, match="duplicate key"):
        validate_rules("ALLOWED_ADDRESSES", dup)
    for text in (
        '{"max_requests": NaN, "window_seconds": 1}',
        '{"max_requests": Infinity, "window_seconds": 1}',
    ):
        with pytest.raises(InvalidInputError):
            validate_rules("RATE_LIMIT", text)
    with pytest.raises(InvalidInputError, match="not float"):
        validate_rules("SPENDING_LIMIT", '{"per_transaction": 1000000000.0}')
    with pytest.raises(InvalidInputError):
        validate_rules("SPENDING_LIMIT", '{"per_transaction_usd": 10.5}')


def test_rules_of_another_type_are_refused() -> None:
    """A model of one type cannot be passed off as another type's rules."""
    limit = validate_rules("RATE_LIMIT", {"max_requests": 1, "window_seconds": 1})
    with pytest.raises(InvalidInputError, match="are not SPENDING_LIMIT rules"):
        validate_rules("SPENDING_LIMIT", limit)


def test_addresses_are_stored_normalised_and_deduplicated() -> None:
    """EVM addresses are kept in lower case; the same address twice collapses to one."""
    rules = validate_rules("ALLOWED_ADDRESSES", {"addresses": [EVM_A, EVM_A.lower(), SOL_A, SOL_A]})
    assert isinstance(rules, AllowedAddressesRules)
    assert rules.addresses == (EVM_A.lower(), SOL_A)
    tokens = validate_rules("ALLOWED_TOKENS", {"tokens": [EVM_TOKEN.upper().replace("0X", "0x")]})
    assert isinstance(tokens, AllowedTokensRules)
    assert tokens.tokens[0].address == EVM_TOKEN


def test_method_whitelist_merges_entries_and_normalises_selectors() -> None:
    """Two entries for one contract merge; selectors are lower-cased."""
    rules = validate_rules(
        "METHOD_WHITELIST",
        {
            "methods": [
                {"contract": EVM_A, "selectors": ["0xA9059CBB"]},
                {"contract": EVM_A.lower(), "selectors": ["0x095ea7b3", "0xa9059cbb"]},
            ]
        },
    )
    assert isinstance(rules, MethodWhitelistRules)
    assert rules.by_contract == {EVM_A.lower(): frozenset({"0xa9059cbb", "0x095ea7b3"})}


def test_spending_limit_fields_and_usd_are_exact() -> None:
    """Amounts become ints of any size; USD figures become exact Decimals."""
    rules = validate_rules(
        "SPENDING_LIMIT",
        {"daily_total": str(2**200), "daily_total_usd": "0.1", "notify_max_usd": 3},
    )
    assert isinstance(rules, SpendingLimitRules)
    assert rules.daily_total == 2**200
    assert rules.daily_total_usd == Decimal("0.1")
    assert rules.notify_max_usd == Decimal(3)
    dumped = json.loads(rules.model_dump_json())
    assert dumped["daily_total"] == str(2**200)
    assert dumped["daily_total_usd"] == "0.1"


def test_time_restriction_days_are_sorted_and_zone_resolved() -> None:
    """Days are kept sorted; the zone is resolved once."""
    rules = validate_rules(
        "TIME_RESTRICTION", {"allowed_days": [5, 1, 3], "timezone": "Europe/Berlin"}
    )
    assert isinstance(rules, TimeRestrictionRules)
    assert rules.allowed_days == (1, 3, 5)
    assert rules.zone.key == "Europe/Berlin"


def test_spender_entries_accept_plain_addresses() -> None:
    """A spender may be given as a bare address or as an object."""
    rules = validate_rules("APPROVED_SPENDERS", {"spenders": [EVM_A, {"spender": SOL_B}]})
    assert isinstance(rules, ApprovedSpendersRules)
    assert set(rules.by_spender) == {EVM_A.lower(), SOL_B}


def test_rule_scope_is_normalised() -> None:
    """chain/network scopes are compared case-insensitively."""
    rules = validate_rules(
        "RATE_LIMIT",
        {"max_requests": 1, "window_seconds": 1, "chain": "EVM", "network": " Sepolia "},
    )
    assert rules.applies_to("evm", "sepolia")
    assert rules.applies_to("EVM", "SEPOLIA")
    assert not rules.applies_to("solana", "sepolia")
    assert not rules.applies_to("evm", "mainnet")


def test_policy_spec_validates_its_rules() -> None:
    """PolicySpec validates on construction and refuses bad fields."""
    good = PolicySpec(
        id="p", agent_id=None, type="RATE_LIMIT", rules={"max_requests": 1, "window_seconds": 9}
    )
    assert good.type is PolicyType.RATE_LIMIT
    with pytest.raises(InvalidInputError):
        PolicySpec(id="p", agent_id=None, type="RATE_LIMIT", rules={"max_requests": 0})
    with pytest.raises(InvalidInputError):
        PolicySpec(id="p", agent_id=None, type="NOPE", rules={})
    with pytest.raises(InvalidInputError, match="priority"):
        PolicySpec(id="p", agent_id=None, type="RATE_LIMIT", rules=good.rules, priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="enabled"):
        PolicySpec(id="p", agent_id=None, type="RATE_LIMIT", rules=good.rules, enabled=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="id"):
        PolicySpec(id="", agent_id=None, type="RATE_LIMIT", rules=good.rules)


# --------------------------------------------------------------------------- addresses


def test_keccak_and_eip55_vectors() -> None:
    """Keccak-256 and EIP-55 match the published test vectors."""
    assert (
        keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(b"abc").hex().startswith("4e03657aea45a94f")
    for vector in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ):
        assert to_checksum_address(vector.lower()) == vector
        assert normalize_address("evm", vector) == vector.lower()


def test_keccak_matches_a_reference_implementation() -> None:
    """Our Keccak-256 equals pycryptodome's on inputs around the block size."""
    keccak = pytest.importorskip("Crypto.Hash.keccak")
    for size in (0, 1, 55, 135, 136, 137, 271, 272, 1000):
        data = bytes(range(256)) * 4
        assert keccak256(data[:size]) == keccak.new(digest_bits=256, data=data[:size]).digest()


@pytest.mark.parametrize(
    ("chain", "address", "valid"),
    [
        ("evm", EVM_A, True),
        ("evm", EVM_A.lower(), True),
        ("evm", "0x" + EVM_A[2:].upper(), True),
        ("evm", EVM_A[:-1] + "e", False),  # mixed case, wrong checksum
        ("evm", "0X" + EVM_A[2:], False),
        ("evm", EVM_A[:-1], False),
        ("evm", EVM_A + "0", False),
        ("evm", SOL_A, False),
        ("solana", SOL_A, True),
        ("solana", SOL_A[:-1] + "l", False),  # "l" is not base58
        ("solana", SOL_A[:-1] + "I", False),  # nor is "I"
        ("solana", SOL_A + "1", False),
        ("solana", "0" + SOL_A[1:], False),
        ("solana", EVM_A, False),
        ("solana", "11111111111111111111111111111111", True),
        ("aptos", "0x1::coin", True),
        ("aptos", "has space", False),
        ("evm", "", False),
    ],
)
def test_address_validity_per_chain(chain: str, address: str, valid: bool) -> None:
    """EVM: hex + EIP-55 when mixed case; Solana: base58 of 32 bytes; others: printable ASCII."""
    assert is_valid_address(chain, address) is valid


def test_address_formats_do_not_overlap() -> None:
    """An address is valid on at most one built-in chain, so rules can mix chains safely."""
    assert address_chains(EVM_A) == {"evm"}
    assert address_chains(SOL_A) == {"solana"}
    assert address_chains("nope") == frozenset()


def test_selectors_normalise() -> None:
    """Selectors are 0x + 8 hex digits, lower-cased."""
    assert normalize_selector("0xA9059CBB") == "0xa9059cbb"
    assert normalize_selector("a9059cbb") is None
    assert normalize_selector("0xa9059cb") is None
    assert normalize_selector(123) is None
