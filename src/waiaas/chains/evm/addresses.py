"""EVM address validation and EIP-55 normalisation.

An address is ``0x`` followed by exactly 40 hex digits. All-lowercase and all-uppercase
hex carries no checksum and is accepted; mixed case is an EIP-55 checksum and must be right,
because a wrong one means the address was mistyped or altered.

>>> normalize_address("0x52908400098527886e0f7030069857d2e4169ee7")
'0x52908400098527886E0F7030069857D2E4169EE7'
"""

from __future__ import annotations

import re

from waiaas.errors import InvalidAddressError

__all__ = ["ZERO_ADDRESS", "normalize_address", "to_checksum"]

ZERO_ADDRESS = "0x" + "0" * 40

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")


def to_checksum(hex40: str) -> str:
    """EIP-55 checksum of 40 hex digits (any case), returned with the ``0x`` prefix."""
    from eth_hash.auto import keccak

    lower = hex40.lower()
    digest = keccak(lower.encode("ascii")).hex()
    out = [
        ch.upper() if ch.isalpha() and int(digest[i], 16) >= 8 else ch for i, ch in enumerate(lower)
    ]
    return "0x" + "".join(out)


def normalize_address(address: object, *, field: str = "address") -> str:
    """Validate an EVM address and return its EIP-55 form.

    Args:
        address: the address text.
        field: the argument name reported in the error.

    Raises:
        InvalidAddressError: not a string, not ``0x`` + 40 hex digits, or mixed case with a
            wrong EIP-55 checksum.

    >>> normalize_address("0X52908400098527886E0F7030069857D2E4169EE7")
    Traceback (most recent call last):
    ...
    waiaas.errors.InvalidAddressError: ...
    """
    if not isinstance(address, str):
        raise InvalidAddressError(
            f"{field} must be a string, not {type(address).__name__}",
            chain="evm",
            address=repr(address)[:80],
            field=field,
        )
    if _ADDRESS_RE.fullmatch(address) is None:
        raise InvalidAddressError(
            f"{field} is not an EVM address (expected 0x followed by 40 hex digits)",
            chain="evm",
            address=address[:80],
            field=field,
        )
    body = address[2:]
    checksummed = to_checksum(body)
    if body != body.lower() and body != body.upper() and address != checksummed:
        raise InvalidAddressError(
            f"{field} has a wrong EIP-55 checksum (mistyped or altered address)",
            chain="evm",
            address=address,
            field=field,
        )
    return checksummed
