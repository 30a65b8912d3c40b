"""Encodings shared by the keystore, the policy core and the pipeline: base58 and Keccak-256.

Pure Python with no chain library, so the policy core may use it. Keccak-256 uses the fast
``eth_hash`` backend when it is installed (it comes with eth-account) and this module's own
implementation otherwise; a test checks that both give the same digests.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["b58decode", "b58encode", "keccak256", "keccak256_pure"]

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {ch: i for i, ch in enumerate(_B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin/Solana alphabet); leading zero bytes become ``1``."""
    raw = bytes(data)
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    number = int.from_bytes(raw, "big")
    digits: list[str] = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """Decode base58 ``text``.

    Raises:
        ValueError: a character outside the base58 alphabet.
    """
    number = 0
    for ch in text:
        index = _B58_INDEX.get(ch)
        if index is None:
            raise ValueError(f"not a base58 character: {ch!r}")
        number = number * 58 + index
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


# --------------------------------------------------------------------------- keccak-256

_RC = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
_ROT = (
    (0, 36, 3, 41, 18), (1, 44, 10, 45, 2), (62, 6, 43, 15, 61),
    (28, 55, 25, 21, 56), (27, 20, 39, 8, 14),
)  # fmt: skip
_MASK = (1 << 64) - 1


def _rol(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK if shift else value


def _keccak_f(a: list[list[int]]) -> None:
    for rc in _RC:
        c = [a[x][0] ^ a[x][1] ^ a[x][2] ^ a[x][3] ^ a[x][4] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rol(c[(x + 1) % 5], 1) for x in range(5)]
        for x in range(5):
            for y in range(5):
                a[x][y] ^= d[x]
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                b[y][(2 * x + 3 * y) % 5] = _rol(a[x][y], _ROT[x][y])
        for x in range(5):
            for y in range(5):
                a[x][y] = b[x][y] ^ ((~b[(x + 1) % 5][y]) & b[(x + 2) % 5][y])
        a[0][0] ^= rc


def keccak256_pure(data: bytes) -> bytes:
    """Keccak-256 as Ethereum uses it (the pre-standard padding, not SHA3-256).

    >>> keccak256_pure(b"").hex()[:16]
    'c5d2460186f7233c'
    """
    rate = 136
    padded = bytearray(data)
    padded.append(0x01)
    while len(padded) % rate:
        padded.append(0)
    padded[-1] |= 0x80
    state = [[0] * 5 for _ in range(5)]
    for offset in range(0, len(padded), rate):
        block = padded[offset : offset + rate]
        for i in range(rate // 8):
            x, y = i % 5, i // 5
            state[x][y] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        _keccak_f(state)
    out = b"".join(state[i % 5][i // 5].to_bytes(8, "little") for i in range(4))
    return out


def _fast_keccak() -> Callable[[bytes], bytes]:
    try:
        from eth_hash.auto import keccak as fast
    except ImportError:  # pragma: no cover - eth-hash comes with eth-account
        return keccak256_pure

    def run(data: bytes) -> bytes:
        return bytes(fast(data))

    return run


_KECCAK: Callable[[bytes], bytes] | None = None


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as Ethereum uses it (the pre-standard padding, not SHA3-256).

    >>> keccak256(b"").hex()[:16]
    'c5d2460186f7233c'
    """
    global _KECCAK
    if _KECCAK is None:
        _KECCAK = _fast_keccak()
    return _KECCAK(bytes(data))
