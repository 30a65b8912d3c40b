"""Small pure encoders shared by the plan model and the decoders (no chain library imported)."""

from __future__ import annotations

import re

from waiaas.addresses import SOLANA, eip55, is_valid_address
from waiaas.errors import InvalidInputError

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {ch: i for i, ch in enumerate(_B58_ALPHABET)}
_HEX_RE = re.compile(r"0x(?:[0-9a-f]{2})*")
_DECIMAL_RE = re.compile(r"0|[1-9][0-9]*")
_EVM_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 of ``data`` (leading zero bytes become ``1``)."""
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(_B58_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes | None:
    """The bytes of base58 ``text``; ``None`` when it is not base58."""
    number = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            return None
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def pubkey_to_str(raw: bytes) -> str:
    """The canonical base58 text of a 32-byte Solana public key."""
    return b58encode(raw)


def is_solana_address(text: object) -> bool:
    """True when ``text`` is the canonical base58 spelling of 32 bytes."""
    return is_valid_address(SOLANA, text)


def checksum_evm(raw20: bytes) -> str:
    """EIP-55 text of a 20-byte address."""
    return eip55(raw20.hex())


def is_canonical_evm_address(text: object) -> bool:
    """True when ``text`` is ``0x`` + 40 hex digits in its EIP-55 checksummed spelling."""
    if not isinstance(text, str) or _EVM_ADDRESS_RE.fullmatch(text) is None:
        return False
    return eip55(text[2:]) == text


def hex_of(data: bytes) -> str:
    """``0x`` + lowercase hex."""
    return "0x" + data.hex()


def parse_hex(value: object, field: str) -> bytes:
    """Strict ``0x``-prefixed, lowercase, even-length hex text to bytes."""
    if not isinstance(value, str) or _HEX_RE.fullmatch(value) is None:
        raise InvalidInputError(
            f"{field} must be 0x-prefixed lowercase hex with an even number of digits",
            field=field,
        )
    return bytes.fromhex(value[2:])


def parse_decimal(value: object, field: str) -> int:
    """Strict decimal text (no sign, no leading zeros, no spaces) to a non-negative int."""
    if not isinstance(value, str) or _DECIMAL_RE.fullmatch(value) is None:
        raise InvalidInputError(
            f"{field} must be a decimal string of a non-negative integer", field=field
        )
    if len(value) > 200:
        raise InvalidInputError(f"{field} is too large", field=field)
    return int(value)
