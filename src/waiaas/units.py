"""Whole units <-> base units, exactly: ``"0.05 SOL"`` <-> ``50_000_000`` lamports.

Amounts in waiaas are integers of base units (lamports, wei, a token's smallest unit).
People and language models think in whole units; these two functions convert between
the two without ever going through a float:

>>> parse_units("0.05 SOL", 9, symbol="SOL")
50000000
>>> format_units(50_000_000, 9, symbol="SOL")
'0.05 SOL'

Only decimal *strings* (or ``Decimal``) are accepted as input: ``0.1`` as a float is already
``0.1000000000000000055...``, so a float is refused rather than rounded. An amount with more
fractional digits than the asset has is refused too (``"0.0000000001 SOL"`` is not a whole
number of lamports), never truncated.

:class:`waiaas.AgentHandle` resolves ``decimals`` and ``symbol`` for an asset (the chain's
native coin, an ``ALLOWED_TOKENS`` entry, or the token contract/mint itself).
"""

from __future__ import annotations

import re
from decimal import Decimal

from waiaas.errors import InvalidInputError

__all__ = ["format_units", "parse_units"]

_NUMBER = re.compile(r"^(?P<int>[0-9]{1,120})(?:\.(?P<frac>[0-9]{1,255}))?$")
_MAX_TEXT = 400


def _check_decimals(decimals: object) -> int:
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 255:
        raise InvalidInputError("decimals must be an int from 0 to 255", field="decimals")
    return decimals


def parse_units(
    value: str | Decimal,
    decimals: int,
    *,
    symbol: str | None = None,
    field: str = "amount",
) -> int:
    """Convert a decimal amount of whole units into base units, exactly.

    Args:
        value: ``"0.05"``, ``"0.05 SOL"`` (the symbol, when present, must be ``symbol``;
            case-insensitive), ``"1_000.5"`` is refused, so are signs, exponents and floats.
            A :class:`~decimal.Decimal` is accepted when finite and non-negative.
        decimals: the asset's decimals (9 for SOL, 18 for ETH, 6 for USDC...).
        symbol: the asset's symbol, which ``value`` may carry as a suffix.
        field: the argument name reported in errors.

    Returns:
        The amount in base units (an ``int`` of any size).

    Raises:
        InvalidInputError: not a decimal string, a float, negative, another asset's symbol,
            or more fractional digits than ``decimals`` (``.field`` is ``field``).

    Example:

    >>> parse_units("0.05 SOL", 9, symbol="SOL")
    50000000
    >>> parse_units("1.5", 6)
    1500000
    """
    decimals = _check_decimals(decimals)
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0:
            raise InvalidInputError(f"{field} must be a finite amount >= 0", field=field)
        text = format(value, "f")
    elif isinstance(value, str):
        text = value
    else:
        kind = type(value).__name__
        raise InvalidInputError(
            f'{field} must be a decimal string such as "0.05" (got a {kind}; '
            "floats are refused because they cannot hold decimal amounts exactly)",
            field=field,
        )
    text = text.strip()
    if len(text) > _MAX_TEXT:
        raise InvalidInputError(f"{field} is too long", field=field)
    number, _, suffix = text.partition(" ")
    suffix = suffix.strip()
    if suffix and (symbol is None or suffix.upper() != symbol.upper()):
        expected = f'"{symbol}" or nothing' if symbol else "nothing"
        raise InvalidInputError(
            f"{field}: the unit {suffix!r} does not match the asset (expected {expected})",
            field=field,
        )
    match = _NUMBER.match(number)
    if match is None:
        raise InvalidInputError(
            f'{field} must be a non-negative decimal such as "0.05" or "12", got {text!r}',
            field=field,
        )
    frac = (match.group("frac") or "").rstrip("0")
    if len(frac) > decimals:
        raise InvalidInputError(
            f"{field} has {len(frac)} decimal places but the asset has only {decimals}",
            field=field,
        )
    whole: int = int(match.group("int")) * 10**decimals
    return whole + int(frac.ljust(decimals, "0") or "0")


def format_units(amount: int, decimals: int, *, symbol: str | None = None) -> str:
    """Render base units as an exact decimal string of whole units (no trailing zeros).

    Args:
        amount: base units (an ``int`` >= 0).
        decimals: the asset's decimals.
        symbol: appended after a space when given.

    Raises:
        InvalidInputError: ``amount`` is not an int >= 0, or bad ``decimals``.

    Example:

    >>> format_units(1_500_000, 6, symbol="USDC")
    '1.5 USDC'
    >>> format_units(10**18, 18)
    '1'
    """
    decimals = _check_decimals(decimals)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise InvalidInputError("amount must be an int of base units >= 0", field="amount")
    whole, frac = divmod(amount, 10**decimals)
    text = str(whole)
    if frac and decimals:
        text += "." + str(frac).rjust(decimals, "0").rstrip("0")
    return f"{text} {symbol}" if symbol else text
