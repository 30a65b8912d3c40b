"""Human renderings of amounts for reasons and explanations (never used for arithmetic)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from waiaas.policy.model import NATIVE, NATIVE_DECIMALS, NATIVE_SYMBOLS

__all__ = ["describe_amount", "format_units", "format_usd"]


def format_units(amount: int, decimals: int) -> str:
    """``amount`` base units as an exact decimal of whole units, without trailing zeros.

    >>> format_units(500_000_000, 9)
    '0.5'
    """
    whole, frac = divmod(amount, 10**decimals)
    if not frac or decimals == 0:
        return str(whole)
    digits = str(frac).rjust(decimals, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_usd(value: Decimal) -> str:
    """``$12.50``: dollars rounded to the cent for display (half-even)."""
    return "$" + format(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN), ",f")


def describe_amount(
    chain: str,
    asset: str,
    amount: int,
    *,
    decimals: int | None = None,
    symbol: str | None = None,
    native: tuple[int, str] | None = None,
) -> str:
    """``"0.5 SOL"``, ``"1.25 USDC"`` or ``"250000 base units of token 0xab..."``.

    The native coin uses ``native`` (``(decimals, symbol)``, as the agent's adapter names it,
    see ``AgentContext.native_units``), else the shipped families' 9 (SOL) / 18 (ETH)
    decimals; a token is shown in whole units only when its decimals are known.
    """
    if asset == NATIVE:
        if native is None and chain in NATIVE_DECIMALS:
            native = NATIVE_DECIMALS[chain], NATIVE_SYMBOLS[chain]
        if native is not None:
            return f"{format_units(amount, native[0])} {native[1]}"
        return f"{amount} base units of the native coin"
    if decimals is not None:
        return f"{format_units(amount, decimals)} {symbol or 'of token ' + asset}"
    return f"{amount} base units of token {asset}"
