"""EVM address validation and EIP-55 normalisation (delegates to :mod:`waiaas.addresses`).

An address is ``0x`` followed by exactly 40 hex digits. All-lowercase and all-uppercase
hex carries no checksum and is accepted; mixed case is an EIP-55 checksum and must be right,
because a wrong one means the address was mistyped or altered.

>>> normalize_address("0x52908400098527886e0f7030069857d2e4169ee7")
'0x52908400098527886E0F7030069857D2E4169EE7'
"""

from __future__ import annotations

from waiaas.addresses import eip55, normalize_evm_address

__all__ = ["ZERO_ADDRESS", "normalize_address", "to_checksum"]

ZERO_ADDRESS = "0x" + "0" * 40


def to_checksum(hex40: str) -> str:
    """EIP-55 checksum of 40 hex digits (any case), returned with the ``0x`` prefix."""
    return eip55(hex40)


def normalize_address(address: object, *, field: str = "address") -> str:
    """Validate an EVM address and return its EIP-55 form (rules of :mod:`waiaas.addresses`).

    Args:
        address: the address text.
        field: the argument name reported in the error.

    Raises:
        InvalidAddressError: not a string, not ``0x`` + 40 hex digits (``0X`` is refused), or
            mixed case with a wrong EIP-55 checksum.

    >>> normalize_address("0X52908400098527886E0F7030069857D2E4169EE7")
    Traceback (most recent call last):
    ...
    waiaas.errors.InvalidAddressError: ...
    """
    return normalize_evm_address(address, field=field)
