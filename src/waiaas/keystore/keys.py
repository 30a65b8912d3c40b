"""Key pairs for the chains waiaas ships: generate one, derive its public key, base58.

* ``solana``: an ed25519 key. The secret is the 32-byte seed; the public key is the 32-byte
  ed25519 verify key in base58 (what Solana calls the address).
* ``evm``: a secp256k1 key. The secret is the 32-byte private scalar; the public key is the
  EIP-55 checksummed address (``0x`` + 40 hex digits).

This module is imported by the chain adapters too, so it stays light: pynacl, coincurve and
the keccak implementation are imported only inside the functions that need them.

Example::

    from waiaas.keystore.keys import generate_keypair, public_key_for

    secret, address = generate_keypair("evm")
    assert public_key_for("evm", secret) == address
"""

from __future__ import annotations

import os

from waiaas import _codec
from waiaas._validate import shown
from waiaas.addresses import normalize_evm_address, normalize_solana_address
from waiaas.errors import InvalidInputError

__all__ = [
    "SECRET_LENGTHS",
    "b58decode",
    "b58encode",
    "check_secret",
    "generate_keypair",
    "normalize_public_key",
    "public_key_for",
    "to_checksum_address",
]

#: Length in bytes of the secret of each known chain family.
SECRET_LENGTHS: dict[str, int] = {"solana": 32, "evm": 32}

# Order of the secp256k1 group: a private key is an integer in [1, N - 1].
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# --------------------------------------------------------------------------- base58


def b58encode(data: bytes) -> str:
    """Encode ``data`` in base58 (Bitcoin/Solana alphabet); leading zero bytes become ``1``.

    Raises:
        InvalidInputError: ``data`` is not bytes.

    Example::

        >>> b58encode(bytes(32))
        '11111111111111111111111111111111'
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError("b58encode needs bytes", field="data")
    return _codec.b58encode(bytes(data))


def b58decode(text: str) -> bytes:
    """Decode base58 ``text``.

    Raises:
        InvalidInputError: ``text`` is not a string or holds a character outside the alphabet.

    Example::

        >>> b58decode("11")
        b'\\x00\\x00'
    """
    if not isinstance(text, str):
        raise InvalidInputError("b58decode needs a string", field="text")
    try:
        return _codec.b58decode(text)
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="text") from None


# --------------------------------------------------------------------------- EVM addresses


def _keccak256(data: bytes) -> bytes:
    return _codec.keccak256(data)


def to_checksum_address(address: str) -> str:
    """Return ``address`` (``0x`` + 40 hex digits) in EIP-55 checksummed form.

    The rules are those of :mod:`waiaas.addresses`: a mixed-case input must already carry
    a valid checksum; all-lower and all-upper inputs are accepted as they are unchecksummed
    by convention; ``0X`` is refused.

    Raises:
        InvalidAddressError: (an :class:`InvalidInputError`) not ``0x`` + 40 hex digits, or
            a mixed-case address whose checksum is wrong.

    Example::

        >>> to_checksum_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
        '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'
    """
    return normalize_evm_address(address)


# --------------------------------------------------------------------------- key pairs


def _known_chain(chain: object) -> str:
    if not isinstance(chain, str) or chain not in SECRET_LENGTHS:
        known = ", ".join(sorted(SECRET_LENGTHS))
        raise InvalidInputError(f"unknown chain {shown(chain)}; known: {known}", field="chain")
    return str(chain)


def check_secret(chain: str, secret: bytes) -> bytes:
    """Validate ``secret`` for ``chain`` and return it as ``bytes``.

    Args:
        chain: ``"solana"`` or ``"evm"``.
        secret: the raw secret (``bytes`` or ``bytearray``).

    Raises:
        InvalidInputError: unknown chain, not bytes, wrong length, or (EVM) not a valid
            secp256k1 scalar. The message never contains the secret.

    Example::

        check_secret("solana", bytes(range(32)))
    """
    name = _known_chain(chain)
    if not isinstance(secret, bytes | bytearray):
        raise InvalidInputError("the secret must be bytes", field="secret")
    raw = bytes(secret)
    want = SECRET_LENGTHS[name]
    if len(raw) != want:
        hint = (
            " (for a 64-byte Solana keypair pass its first 32 bytes, the seed)"
            if name == "solana" and len(raw) == 64
            else ""
        )
        raise InvalidInputError(
            f"a {name} secret is {want} bytes, got {len(raw)}{hint}", field="secret"
        )
    if name == "evm" and not 0 < int.from_bytes(raw, "big") < _SECP256K1_N:
        raise InvalidInputError("not a valid secp256k1 private key", field="secret")
    return raw


def public_key_for(chain: str, secret: bytes) -> str:
    """Derive the public key (Solana base58 address / EVM checksummed address) of ``secret``.

    Args:
        chain: ``"solana"`` or ``"evm"``.
        secret: the 32-byte secret (ed25519 seed or secp256k1 private key).

    Raises:
        InvalidInputError: unknown chain or invalid secret.

    Example::

        >>> public_key_for("evm", bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"))
        '0x2c7536E3605D9C16a7a3D7b1898e529396a65c23'
    """  # noqa: E501
    raw = check_secret(chain, secret)
    if chain == "solana":
        from nacl.signing import SigningKey

        return b58encode(bytes(SigningKey(raw).verify_key))
    from coincurve import PrivateKey

    point = PrivateKey(raw).public_key.format(compressed=False)[1:]
    return to_checksum_address("0x" + _keccak256(point)[-20:].hex())


def generate_keypair(chain: str) -> tuple[bytes, str]:
    """Generate a new key pair for ``chain`` from the OS random source.

    Returns:
        ``(secret, public_key)``: the 32-byte secret and its public key / address.

    Raises:
        InvalidInputError: unknown chain.

    Example::

        secret, pubkey = generate_keypair("solana")
    """
    name = _known_chain(chain)
    if name == "solana":
        secret = os.urandom(32)
    else:
        while True:  # rejection sampling; a retry happens with probability ~2**-128
            secret = os.urandom(32)
            if 0 < int.from_bytes(secret, "big") < _SECP256K1_N:
                break
    return secret, public_key_for(name, secret)


def normalize_public_key(chain: str, public_key: str) -> str:
    """Validate ``public_key`` for ``chain`` and return its canonical form.

    Solana: base58 of exactly 32 bytes, returned unchanged. EVM: returned EIP-55 checksummed.

    Raises:
        InvalidInputError: unknown chain, or not a well-formed public key for the chain.

    Example::

        normalize_public_key("evm", "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
    """
    name = _known_chain(chain)
    if not isinstance(public_key, str) or not public_key:
        raise InvalidInputError("the public key must be a non-empty string", field="public_key")
    if name == "evm":
        return normalize_evm_address(public_key, field="public_key")
    return normalize_solana_address(public_key, field="public_key")
