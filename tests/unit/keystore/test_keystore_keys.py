"""Key pairs: known vectors, agreement with solders / eth-account, base58, input checks."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address as eth_checksum
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from waiaas.errors import InvalidInputError
from waiaas.keystore import generate_keypair, public_key_for
from waiaas.keystore.keys import (
    b58decode,
    b58encode,
    check_secret,
    normalize_public_key,
    to_checksum_address,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_evm_known_vector() -> None:
    """The eth-account documentation key maps to its documented address."""
    secret = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    assert public_key_for("evm", secret) == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def test_solana_known_vector() -> None:
    """RFC 8032 test 1: seed 9d61b1... has public key d75a98... (in base58 here)."""
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert public_key_for("solana", seed) == b58encode(public)
    assert b58decode(public_key_for("solana", seed)) == public


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_solana_agrees_with_solders(seed: bytes) -> None:
    """Any seed gives the same address as solders' Keypair.from_seed."""
    assert public_key_for("solana", seed) == str(Keypair.from_seed(seed).pubkey())


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=SECP256K1_N - 1))
def test_evm_agrees_with_eth_account(scalar: int) -> None:
    """Any valid private key gives the same checksummed address as eth-account."""
    secret = scalar.to_bytes(32, "big")
    assert public_key_for("evm", secret) == Account.from_key(secret).address


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_base58_round_trip(data: bytes) -> None:
    """Decoding an encoding gives the bytes back, leading zero bytes included."""
    assert b58decode(b58encode(data)) == data


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_base58_agrees_with_solders_pubkey(raw: bytes) -> None:
    """Our base58 of 32 bytes equals solders' Pubkey string, both directions."""
    text = b58encode(raw)
    assert text == str(Pubkey(raw))
    assert b58decode(str(Pubkey(raw))) == raw


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_checksum_agrees_with_eth_utils(raw: bytes) -> None:
    """EIP-55 checksumming matches eth_utils for lower- and upper-case input."""
    lower = "0x" + raw.hex()
    assert to_checksum_address(lower) == eth_checksum(lower)
    assert to_checksum_address("0x" + raw.hex().upper()) == eth_checksum(lower)


def test_checksum_rejects_bad_mixed_case() -> None:
    """A mixed-case address with a wrong checksum is refused."""
    bad = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # first letter flipped
    with pytest.raises(InvalidInputError) as err:
        to_checksum_address(bad)
    assert "checksum" in err.value.message


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_generate_keypair_is_consistent_and_random(chain: str) -> None:
    """A generated pair derives back to its public key; two pairs differ."""
    secret, public = generate_keypair(chain)
    assert len(secret) == 32
    assert public_key_for(chain, secret) == public
    assert normalize_public_key(chain, public) == public
    assert generate_keypair(chain)[0] != secret


@pytest.mark.parametrize("chain", ["bitcoin", "", "SOLANA", None, 1])
def test_unknown_chain(chain: object) -> None:
    """An unknown chain is an InvalidInputError on the 'chain' field."""
    with pytest.raises(InvalidInputError) as err:
        generate_keypair(chain)  # type: ignore[arg-type]
    assert err.value.field == "chain"
    with pytest.raises(InvalidInputError):
        public_key_for(chain, bytes(32))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chain", "secret"),
    [
        ("solana", bytes(31)),
        ("solana", bytes(33)),
        ("solana", bytes(64)),
        ("evm", bytes(32)),  # zero is not a private key
        ("evm", SECP256K1_N.to_bytes(32, "big")),  # the group order is not either
        ("evm", b"\xff" * 32),
        ("evm", bytes(20)),
        ("evm", "00" * 32),
    ],
)
def test_invalid_secret(chain: str, secret: object) -> None:
    """Wrong lengths, types and out-of-range EVM scalars are refused."""
    with pytest.raises(InvalidInputError) as err:
        check_secret(chain, secret)  # type: ignore[arg-type]
    assert err.value.field == "secret"


def test_64_byte_solana_keypair_hint() -> None:
    """A 64-byte Solana keypair gets a message that says to pass the 32-byte seed."""
    with pytest.raises(InvalidInputError, match="first 32 bytes"):
        check_secret("solana", bytes(Keypair()))


@pytest.mark.parametrize(
    ("chain", "public_key"),
    [
        ("solana", ""),
        ("solana", "0OIl"),  # characters outside the base58 alphabet
        ("solana", "1111"),  # too short
        ("solana", b58encode(bytes(33))),
        ("evm", "0x1234"),
        ("evm", "5aaeb6053f3e94c9b9a09f33669435e7ef1beaedff"),
        ("evm", "0xzzaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
    ],
)
def test_normalize_public_key_rejects(chain: str, public_key: str) -> None:
    """Malformed public keys are an InvalidInputError."""
    with pytest.raises(InvalidInputError):
        normalize_public_key(chain, public_key)


def test_base58_rejects_bad_input() -> None:
    """Non-alphabet characters and wrong types are refused."""
    with pytest.raises(InvalidInputError):
        b58decode("0")
    with pytest.raises(InvalidInputError):
        b58decode(b"abc")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        b58encode("abc")  # type: ignore[arg-type]
