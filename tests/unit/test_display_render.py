"""The renderings behind reprs and DataFrames: exact amounts whatever the decimal context,
escaped HTML, one-line reprs."""

from __future__ import annotations

import decimal
from decimal import Decimal

from waiaas._display import amount_cells, fields_html, human_amount, short_repr, table_html
from waiaas.types import Tier, TxStatus


def test_human_amounts_are_exact_for_any_size() -> None:
    """Wei far beyond 64 bits and float precision converts exactly; no exponent notation."""
    assert human_amount("evm", "native", 10**60 + 1) == (
        Decimal("1000000000000000000000000000000000000000000.000000000000000001"),
        "ETH",
    )
    assert str(human_amount("solana", "native", 100 * 10**9)[0]) == "100"
    assert str(human_amount("solana", "native", 0)[0]) == "0"
    assert human_amount("solana", "TokenMint", 1234, decimals=2) == (Decimal("12.34"), "TokenMint")
    assert human_amount("solana", "TokenMint", 1234) == (None, "TokenMint")


def test_human_amounts_ignore_a_hostile_decimal_context() -> None:
    """A caller's low-precision, trapping context cannot round or break the conversion."""
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.traps[decimal.Inexact] = True
        ctx.traps[decimal.Rounded] = True
        value, _ = human_amount("evm", "native", 123_456_789_123_456_789_123)
    assert value == Decimal("123.456789123456789123")
    assert amount_cells("solana", "native", 1_500_000_000) == "1.5 SOL (1500000000)"


def test_html_cells_are_escaped() -> None:
    """Text from the database never becomes markup."""
    html = table_html(("a",), [("<script>alert(1)</script>",)], caption="<b>x</b>")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;x" in html
    assert "&lt;img" in fields_html("t", [("k", "<img src=x onerror=1>")])


def test_short_repr_plain_enums_and_no_none() -> None:
    """Enums print as plain values, None fields are left out, sentences are kept whole."""
    text = short_repr(
        "T", [("status", TxStatus.CONFIRMED), ("tier", Tier.NOTIFY), ("x", None),
              ("message", "a readable sentence"), ("id", "0" * 40)],
    )  # fmt: skip
    assert text == (
        "T(status=CONFIRMED, tier=NOTIFY, message='a readable sentence', id='0000000000…000000')"
    )
