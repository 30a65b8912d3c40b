"""Every public entry point that takes an address applies the same rules (waiaas.addresses).

A checksummed and an all-lower-case EVM address are accepted everywhere (and normalised to
the same EIP-55 spelling); a mistyped checksum, a ``0X`` prefix and 39 or 41 hex digits are
refused everywhere with an :class:`InvalidInputError` naming the field, and nothing is
written to the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import ETH, new_agent, row_counts
from waiaas import addresses, policy
from waiaas.chains.evm import addresses as evm_addresses
from waiaas.errors import InvalidAddressError, InvalidInputError
from waiaas.keystore import keys
from waiaas.pipeline import approvals
from waiaas.types import Transfer
from waiaas.wallet import Wallet

GOOD = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
LOWER = GOOD.lower()
UPPER = "0x" + GOOD[2:].upper()
# one letter's case flipped: a mistyped checksum
BAD_CHECKSUM = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BIG_X = "0X" + GOOD[2:]
SHORT = GOOD[:-1]
LONG = GOOD + "7"

ACCEPTED = (GOOD, LOWER, UPPER)
REFUSED = (BAD_CHECKSUM, BIG_X, SHORT, LONG)

PURE: dict[str, Callable[[str], Any]] = {
    "addresses.normalize_address": lambda a: addresses.normalize_address("evm", a),
    "addresses.normalize_evm_address": addresses.normalize_evm_address,
    "policy.to_checksum_address": policy.to_checksum_address,
    "policy.normalize_address": lambda a: policy.normalize_address("evm", a),
    "keys.to_checksum_address": keys.to_checksum_address,
    "keys.normalize_public_key": lambda a: keys.normalize_public_key("evm", a),
    "chains.evm.normalize_address": evm_addresses.normalize_address,
    "approvals.validate_owner_address": approvals.validate_owner_address,
}


def test_bad_checksum_fixture_is_mixed_case_and_wrong() -> None:
    assert BAD_CHECKSUM != GOOD and BAD_CHECKSUM.lower() == LOWER
    assert BAD_CHECKSUM[2:] not in (LOWER[2:], UPPER[2:])


@pytest.mark.parametrize("name", sorted(PURE))
@pytest.mark.parametrize("address", ACCEPTED)
def test_pure_entry_points_accept(name: str, address: str) -> None:
    assert PURE[name](address).lower() == LOWER
    assert addresses.is_valid_address("evm", address)


@pytest.mark.parametrize("name", sorted(PURE))
@pytest.mark.parametrize("address", REFUSED)
def test_pure_entry_points_refuse(name: str, address: str) -> None:
    with pytest.raises(InvalidAddressError) as info:
        PURE[name](address)
    assert info.value.field in ("address", "public_key", "owner_address")
    assert not addresses.is_valid_address("evm", address)


def test_checksum_mismatch_is_named_and_never_fixed() -> None:
    with pytest.raises(InvalidAddressError, match="checksum mismatch: did you mistype it"):
        policy.to_checksum_address(BAD_CHECKSUM)
    with pytest.raises(InvalidAddressError, match="lower-case 0x"):
        addresses.normalize_address("evm", BIG_X)


def test_solana_non_canonical_base58_refused() -> None:
    canonical = "11111111111111111111111111111111"  # 32 zero bytes
    assert addresses.normalize_address("solana", canonical) == canonical
    # a leading '1' adds a zero byte: 33 bytes, refused by every entry point
    for name, call in {
        "shared": lambda a: addresses.normalize_address("solana", a),
        "policy": lambda a: policy.normalize_address("solana", a),
        "keys": lambda a: keys.normalize_public_key("solana", a),
        "owner": approvals.validate_owner_address,
    }.items():
        with pytest.raises(InvalidInputError):
            call(canonical + "1")
        assert call(canonical) == canonical, name


# --------------------------------------------------------------------------- through the wallet


def _refused_without_writes(wallet: Wallet, call: Callable[[], Any], field: str) -> None:
    before = row_counts(wallet)
    with pytest.raises(InvalidInputError) as info:
        call()
    assert info.value.field == field
    if field == "rules":  # the rule's problem names the list item
        assert "addresses.0" in str(info.value)
    after = row_counts(wallet)
    assert {k: v for k, v in after.items() if k != "audit_log"} == {
        k: v for k, v in before.items() if k != "audit_log"
    }


def _entry_points(wallet: Wallet) -> dict[str, tuple[Callable[[str], Any], str]]:
    agent = new_agent(wallet, "evm", funds=ETH)
    token = wallet.issue_session(agent.id).token
    return {
        "send Transfer.to": (lambda a: wallet.send(token, Transfer(to=a, amount=1)), "address"),
        "create_agent": (
            lambda a: wallet.create_agent("owned", "evm", owner_address=a),
            "owner_address",
        ),
        "set_owner": (lambda a: wallet.set_owner(agent.id, a), "owner_address"),
        "policy whitelist": (
            lambda a: wallet.add_policy("ALLOWED_ADDRESSES", {"addresses": [a]}, agent_id=agent.id),
            "rules",
        ),
        "policy blacklist": (
            lambda a: wallet.add_policy(
                "ALLOWED_ADDRESSES", {"addresses": [a], "mode": "blacklist"}, agent_id=agent.id
            ),
            "rules",
        ),
        "session allowed_addresses": (
            lambda a: wallet.issue_session(agent.id, constraints={"allowed_addresses": [a]}),
            "constraints.allowed_addresses",
        ),
    }


@pytest.mark.parametrize("address", REFUSED)
def test_wallet_entry_points_refuse_without_writes(wallet: Wallet, address: str) -> None:
    for name, (call, field) in _entry_points(wallet).items():
        try:
            _refused_without_writes(wallet, lambda c=call: c(address), field)  # type: ignore[misc]
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


@pytest.mark.parametrize("address", ACCEPTED)
def test_wallet_entry_points_accept(wallet: Wallet, address: str) -> None:
    for name, (call, _) in _entry_points(wallet).items():
        call(address)  # none raises
        assert name
    assert wallet.create_agent("o2", "evm", owner_address=address).owner_address == GOOD


def test_solana_wallet_entry_points_refuse_non_canonical(wallet: Wallet) -> None:
    agent = new_agent(wallet, "solana", funds=10**9)
    token = wallet.issue_session(agent.id).token
    bad = "1" * 33  # 33 zero bytes: base58, but not 32 bytes
    calls: dict[str, tuple[Callable[[], Any], str]] = {
        "send": (lambda: wallet.send(token, Transfer(to=bad, amount=1)), "address"),
        "owner": (lambda: wallet.set_owner(agent.id, bad), "owner_address"),
        "session": (
            lambda: wallet.issue_session(agent.id, constraints={"allowed_addresses": [bad]}),
            "constraints.allowed_addresses",
        ),
    }
    for name, (call, field) in calls.items():
        try:
            _refused_without_writes(wallet, call, field)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
