"""Pure, per-chain address normalisation for policy matching.

Policies compare addresses after normalising both sides with the rules of the agent's chain.
Which addresses are valid is decided by :mod:`waiaas.addresses` (the one set of rules
waiaas uses everywhere); this module adds only the comparison key:

* **evm**: ``0x`` + 40 hex digits (a mixed-case address must carry its exact EIP-55
  checksum; ``0X`` is refused), compared case-insensitively (comparison key: lower case).
* **solana**: the canonical base58 spelling of exactly 32 bytes, compared exactly (base58
  is case-sensitive: changing the case changes the key).
* any other chain: a non-empty run of printable ASCII without spaces, compared exactly.

Surrounding whitespace is ignored.

Everything outside printable ASCII (look-alike letters, full-width digits, zero-width
characters) is refused: such an address can never match a rule by accident.

This module does not import any chain library.

Example::

    >>> normalize_address("evm", "0x52908400098527886E0F7030069857D2E4169EE7")
    '0x52908400098527886e0f7030069857d2e4169ee7'
"""

from __future__ import annotations

from functools import lru_cache

from waiaas import addresses as _shared
from waiaas._codec import keccak256
from waiaas.addresses import EVM, SOLANA, normalize_evm_address
from waiaas.errors import InvalidAddressError

__all__ = [
    "EVM",
    "SOLANA",
    "address_chains",
    "is_valid_address",
    "keccak256",
    "normalize_address",
    "normalize_selector",
    "to_checksum_address",
]

_HEX = frozenset("0123456789abcdefABCDEF")


# --------------------------------------------------------------------------- evm


def to_checksum_address(address: str) -> str:
    """The EIP-55 mixed-case form of a valid EVM address.

    The rules are those of :mod:`waiaas.addresses`: a mixed-case address with a wrong
    checksum is refused, never "fixed", and ``0X`` is refused.

    Raises:
        InvalidAddressError: ``address`` is not ``0x`` + 40 hex digits, or mixed case with
            a wrong EIP-55 checksum.
    """
    return normalize_evm_address(address)


def _evm_lower(address: str) -> str | None:
    """``address`` in lower case when it is ``0x`` + 40 hex digits (checksum not checked)."""
    if len(address) != 42 or not address.startswith("0x"):
        return None
    body = address[2:]
    if not all(ch in _HEX for ch in body):
        return None
    return "0x" + body.lower()


# --------------------------------------------------------------------------- generic


def _printable_ascii(text: str) -> bool:
    return bool(text) and all(33 <= ord(ch) <= 126 for ch in text)


def _safe(text: object) -> str:
    """A bounded ASCII rendering of an untrusted value, for error messages."""
    if isinstance(text, int) and not isinstance(text, bool) and text.bit_length() > 256:
        return f"an int of {text.bit_length()} bits"  # repr() of a huge int can raise
    if isinstance(text, list | tuple | dict | set) and len(text) > 16:
        return f"a {type(text).__name__} of {len(text)} items"
    try:
        shown = ascii(text)
    except (ValueError, RecursionError):
        return f"a {type(text).__name__}"
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _normalize_or_none(chain: str, address: object) -> str | None:
    if not isinstance(address, str) or len(address) > 256:
        return None
    return _normalize_str(chain, address)


@lru_cache(maxsize=4096)
def _normalize_str(chain: str, address: str) -> str | None:
    text = address.strip()
    if not _printable_ascii(text):
        return None
    if not _shared.is_valid_address(chain, text):
        return None
    return text.lower() if chain == EVM else text


def normalize_address(chain: str, address: str, *, field: str = "address") -> str:
    """Return ``address`` in the normal form used to compare it on ``chain``.

    Args:
        chain: the chain family (``"evm"``, ``"solana"`` or another adapter's name).
        address: the address as given (surrounding whitespace is ignored).
        field: the field name reported in the error.

    Raises:
        InvalidAddressError: ``address`` is not a valid address on ``chain``.

    Example::

        >>> normalize_address("solana", "11111111111111111111111111111111")
        '11111111111111111111111111111111'
    """
    normal = _normalize_or_none(chain, address)
    if normal is None:
        text = address.strip() if isinstance(address, str) else address
        problem = _shared.address_problem(chain, text) or "expected printable ASCII"
        raise InvalidAddressError(
            f"{_safe(address)} is not a valid {chain} address: {problem}",
            chain=chain,
            address=_safe(address),
            field=field,
        )
    return normal


def is_valid_address(chain: str, address: object) -> bool:
    """True when ``address`` is a valid address on ``chain`` (see :func:`normalize_address`)."""
    return _normalize_or_none(chain, address) is not None


def address_chains(address: object) -> frozenset[str]:
    """The known chain families (``evm``, ``solana``) on which ``address`` is valid."""
    return frozenset(c for c in (EVM, SOLANA) if _normalize_or_none(c, address) is not None)


def normalize_selector(selector: object) -> str | None:
    """An EVM 4-byte selector as lower-case ``0x`` + 8 hex digits, or ``None`` if invalid."""
    if not isinstance(selector, str):
        return None
    text = selector.strip()
    if len(text) != 10 or not text.startswith("0x") or not all(c in _HEX for c in text[2:]):
        return None
    return text.lower()
