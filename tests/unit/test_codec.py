"""The shared encodings: base58 round trips and two Keccak-256 routes that agree."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from waiaas import _codec


def test_keccak_known_vectors() -> None:
    """Keccak-256 (Ethereum's, not SHA3-256) of known inputs."""
    assert _codec.keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert _codec.keccak256_pure(b"").hex() == _codec.keccak256(b"").hex()
    assert _codec.keccak256(b"").hex() != hashlib.sha3_256(b"").hexdigest()


@given(st.binary(max_size=400))
def test_pure_and_fast_keccak_agree(data: bytes) -> None:
    """The pure-Python Keccak and the eth_hash backend give the same digest."""
    assert _codec.keccak256_pure(data) == _codec.keccak256(data)


@given(st.binary(max_size=64))
def test_base58_round_trip(data: bytes) -> None:
    """Decoding an encoding gives the bytes back, leading zeros included."""
    assert _codec.b58decode(_codec.b58encode(data)) == data


def test_base58_matches_solders() -> None:
    """Our base58 of a public key is what solders prints."""
    from solders.keypair import Keypair

    pubkey = Keypair().pubkey()
    assert _codec.b58encode(bytes(pubkey)) == str(pubkey)
    assert _codec.b58decode(str(pubkey)) == bytes(pubkey)
