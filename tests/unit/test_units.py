"""parse_units / format_units: exact decimal strings only, never floats, never rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waiaas import InvalidInputError, format_units, parse_units


@pytest.mark.parametrize(
    ("text", "decimals", "symbol", "expected"),
    [
        ("0.05", 9, None, 50_000_000),
        ("0.05 SOL", 9, "SOL", 50_000_000),
        ("0.05 sol", 9, "SOL", 50_000_000),
        ("  1.5  ", 6, None, 1_500_000),
        ("12", 6, "USDC", 12_000_000),
        ("1.000000000000000000", 18, None, 10**18),
        ("0.000000000000000001", 18, "ETH", 1),
        ("0", 9, None, 0),
        ("7", 0, None, 7),
        (
            "115792089237316195423570985008687907853269984665640564039457",
            18,
            None,
            115792089237316195423570985008687907853269984665640564039457 * 10**18,
        ),
    ],
)
def test_parse_units_exact(text: str, decimals: int, symbol: str | None, expected: int) -> None:
    """Whole units become base units exactly, any size."""
    assert parse_units(text, decimals, symbol=symbol) == expected


@pytest.mark.parametrize(
    ("value", "symbol", "why"),
    [
        (0.05, "SOL", "float"),
        (1, "SOL", "int"),
        (True, "SOL", "bool"),
        ("0.0000000001", "SOL", "decimal places"),
        ("-1", "SOL", "non-negative"),
        ("1e3", "SOL", "non-negative decimal"),
        ("1_000", "SOL", "non-negative decimal"),
        (".5", "SOL", "non-negative decimal"),
        ("5.", "SOL", "non-negative decimal"),
        ("NaN", "SOL", "non-negative decimal"),
        ("0x10", "SOL", "non-negative decimal"),
        ("0.05 ETH", "SOL", "does not match"),
        ("0.05 SOL", None, "does not match"),
        ("", "SOL", "non-negative decimal"),
        ("1" * 500, "SOL", "too long"),
        (Decimal("-1"), "SOL", ">= 0"),
        (Decimal("NaN"), "SOL", ">= 0"),
    ],
)
def test_parse_units_refuses(value: object, symbol: str | None, why: str) -> None:
    """Floats, signs, exponents, other symbols and excess precision are refused, not rounded."""
    with pytest.raises(InvalidInputError) as info:
        parse_units(value, 9, symbol=symbol)  # type: ignore[arg-type]
    assert why in info.value.message
    assert info.value.field == "amount"


def test_decimal_input_and_bad_decimals() -> None:
    """A finite Decimal is accepted exactly; decimals outside 0..255 are refused."""
    assert parse_units(Decimal("0.10"), 2) == 10
    for bad in (-1, 256, True, "9"):
        with pytest.raises(InvalidInputError):
            parse_units("1", bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            format_units(1, bad)  # type: ignore[arg-type]


def test_format_units() -> None:
    """Base units render without trailing zeros, with the symbol when given."""
    assert format_units(50_000_000, 9, symbol="SOL") == "0.05 SOL"
    assert format_units(10**18, 18) == "1"
    assert format_units(1, 18) == "0.000000000000000001"
    assert format_units(0, 6, symbol="USDC") == "0 USDC"
    assert format_units(5, 0) == "5"
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(InvalidInputError):
            format_units(bad, 9)  # type: ignore[arg-type]


@given(amount=st.integers(min_value=0, max_value=10**80), decimals=st.integers(0, 40))
def test_round_trip(amount: int, decimals: int) -> None:
    """format then parse gives back the same base units (two routes agree)."""
    assert parse_units(format_units(amount, decimals), decimals) == amount
    assert parse_units(format_units(amount, decimals, symbol="TOK"), decimals, symbol="TOK") == (
        amount
    )
