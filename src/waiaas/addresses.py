"""One home for address rules: validation and normal forms for every chain family.

Every part of waiaas that takes an address (policy rules, session constraints, agent
owners, approvals, the keystore, the chain adapters) validates it here, so an address is
accepted or refused identically everywhere.

* **evm**: ``0x`` (lower-case ``x``; ``0X`` is refused) followed by exactly 40 hex digits.
  All-lower-case and all-upper-case hex carries no checksum and is accepted; a mixed-case
  address is an EIP-55 checksum and must match it exactly, because a wrong checksum means a
  mistyped or altered address. The normal form is the EIP-55 checksummed spelling.
* **solana**: base58 of exactly 32 bytes, in its canonical spelling (decoding then
  re-encoding gives the same text, so no leading-zero tricks). The normal form is the text
  as given (base58 is case-sensitive).
* any other chain name (third-party adapters): non-empty printable ASCII without spaces,
  taken as given.

Pure: no I/O and no chain library (Keccak-256 comes from :mod:`waiaas._codec`), so the
policy core may import it.

Example::

    >>> normalize_address("evm", "0x52908400098527886e0f7030069857d2e4169ee7")
    '0x52908400098527886E0F7030069857D2E4169EE7'
    >>> is_valid_address("evm", "0x52908400098527886e0F7030069857D2E4169EE7")
    False
"""

from __future__ import annotations

from functools import lru_cache
from typing import NewType

from waiaas import _codec
from waiaas.errors import InvalidAddressError

__all__ = [
    "EVM",
    "SOLANA",
    "EvmAddress",
    "SolanaAddress",
    "address_problem",
    "eip55",
    "is_valid_address",
    "normalize_address",
    "normalize_evm_address",
    "normalize_solana_address",
]

EVM = "evm"
SOLANA = "solana"

#: An EVM address in its EIP-55 checksummed spelling.
EvmAddress = NewType("EvmAddress", str)
#: A Solana address: the canonical base58 spelling of 32 bytes.
SolanaAddress = NewType("SolanaAddress", str)

_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_LEN = 256


def _shown(text: object) -> str:
    """A bounded ASCII rendering of an untrusted value, for error messages."""
    if not isinstance(text, str):
        return f"a {type(text).__name__}"
    shown = ascii(text[:100])
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _refuse(chain: str, address: object, field: str, problem: str) -> InvalidAddressError:
    return InvalidAddressError(
        f"{field} {_shown(address)} is not a valid {chain} address: {problem}",
        chain=chain,
        address=_shown(address),
        field=field,
    )


@lru_cache(maxsize=16384)
def eip55(hex40: str) -> str:
    """The EIP-55 spelling (with ``0x``) of 40 hex digits given in any case.

    The caller has checked that ``hex40`` is 40 hex digits.

    Example::

        >>> eip55("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
        '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'
    """
    lower = hex40.lower()
    digest = _codec.keccak256(lower.encode("ascii")).hex()
    body = "".join(
        ch.upper() if ch.isalpha() and int(digest[i], 16) >= 8 else ch for i, ch in enumerate(lower)
    )
    return "0x" + body


def _evm_problem(address: str) -> str | None:
    """What is wrong with an EVM address, or ``None`` when it is valid."""
    if address[:2] == "0X":
        return "the prefix must be a lower-case 0x"
    if not address.startswith("0x"):
        return "expected 0x followed by 40 hex digits"
    body = address[2:]
    if len(body) != 40:
        return f"expected 40 hex digits after 0x, got {len(body)}"
    if not all(ch in _HEX for ch in body):
        return "expected 40 hex digits after 0x"
    if body not in (body.lower(), body.upper()) and eip55(body) != address:
        return (
            "checksum mismatch: did you mistype it? "
            "(write it all lower case or with its EIP-55 checksum)"
        )
    return None


def _solana_problem(address: str) -> str | None:
    """What is wrong with a Solana address, or ``None`` when it is valid."""
    if not 32 <= len(address) <= 44:
        return "expected the base58 spelling of 32 bytes (32-44 characters)"
    try:
        raw = _codec.b58decode(address)
    except ValueError:
        return "not base58"
    if len(raw) != 32:
        return f"decodes to {len(raw)} bytes, not 32"
    if _codec.b58encode(raw) != address:
        return "not the canonical base58 spelling"
    return None


def _other_problem(address: str) -> str | None:
    if not address or not all(33 <= ord(ch) <= 126 for ch in address):
        return "expected printable ASCII without spaces"
    return None


def _problem(chain: str, address: object) -> str | None:
    if not isinstance(address, str):
        return "not a string"
    if len(address) > _MAX_LEN:
        return "too long"
    return _problem_str(chain, address)


@lru_cache(maxsize=16384)
def _problem_str(chain: str, address: str) -> str | None:
    if chain == EVM:
        return _evm_problem(address)
    if chain == SOLANA:
        return _solana_problem(address)
    return _other_problem(address)


def normalize_evm_address(address: object, *, field: str = "address") -> EvmAddress:
    """Validate an EVM address and return its EIP-55 spelling.

    Args:
        address: the address text.
        field: the field name reported in the error.

    Raises:
        InvalidAddressError: not ``0x`` + 40 hex digits (``0X`` is refused), or mixed case
            with a wrong EIP-55 checksum.

    Example::

        >>> normalize_evm_address("0X52908400098527886E0F7030069857D2E4169EE7")
        Traceback (most recent call last):
        ...
        waiaas.errors.InvalidAddressError: ...
    """
    problem = _problem(EVM, address)
    if problem is not None:
        raise _refuse(EVM, address, field, problem)
    assert isinstance(address, str)
    return EvmAddress(eip55(address[2:]))


def normalize_solana_address(address: object, *, field: str = "address") -> SolanaAddress:
    """Validate a Solana address (canonical base58 of 32 bytes) and return it unchanged.

    Raises:
        InvalidAddressError: not canonical base58 of exactly 32 bytes.

    Example::

        >>> normalize_solana_address("11111111111111111111111111111111")
        '11111111111111111111111111111111'
    """
    problem = _problem(SOLANA, address)
    if problem is not None:
        raise _refuse(SOLANA, address, field, problem)
    assert isinstance(address, str)
    return SolanaAddress(address)


def normalize_address(chain: str, address: object, *, field: str = "address") -> str:
    """Validate ``address`` for ``chain`` and return its normal form.

    EVM: the EIP-55 spelling; Solana and other chains: the text as given.

    Args:
        chain: ``"evm"``, ``"solana"`` or another adapter's chain name.
        address: the address text.
        field: the field name reported in the error.

    Raises:
        InvalidAddressError: ``address`` is not valid on ``chain`` (the message says why).

    Example::

        >>> normalize_address("solana", "11111111111111111111111111111111")
        '11111111111111111111111111111111'
    """
    if chain == EVM:
        return normalize_evm_address(address, field=field)
    problem = _problem(chain, address)
    if problem is not None:
        raise _refuse(chain, address, field, problem)
    assert isinstance(address, str)
    return address


def is_valid_address(chain: str, address: object) -> bool:
    """True when :func:`normalize_address` accepts ``address`` on ``chain``.

    Example::

        >>> is_valid_address("evm", "0X52908400098527886E0F7030069857D2E4169EE7")
        False
    """
    return _problem(chain, address) is None


def address_problem(chain: str, address: object) -> str | None:
    """Why ``address`` is refused on ``chain``, or ``None`` when it is valid."""
    return _problem(chain, address)
