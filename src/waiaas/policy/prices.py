"""Shell-side helpers for USD prices: which assets need one, and asking a PriceOracle.

:func:`~waiaas.policy.evaluate` stays pure: it receives the prices as a mapping. These
helpers are what the shell uses to build that mapping (the oracle may do I/O).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from waiaas.errors import InvalidInputError
from waiaas.policy.evaluate import _normalize_items, _spend, applicable, coerce_request
from waiaas.policy.model import (
    NATIVE,
    NATIVE_DECIMALS,
    AgentContext,
    AssetPrice,
    PolicySpec,
    PriceOracle,
    Usage,
    normalize_asset_key,
)
from waiaas.policy.rules import SpendingLimitRules

__all__ = ["assets_to_price", "lookup_prices"]


def assets_to_price(
    request: object, agent: AgentContext, policies: Iterable[PolicySpec], usage: Usage
) -> frozenset[str]:
    """The asset keys whose USD price the applicable ``*_usd`` rules need (may be empty).

    Raises:
        InvalidInputError: a malformed request.
    """
    items, _ = _normalize_items(coerce_request(request), agent.chain)
    spend = _spend(items)
    needed: set[str] = set()
    for spec in applicable(policies, agent):
        r = spec.rules
        if not isinstance(r, SpendingLimitRules):
            continue
        usd = (r.per_transaction_usd, r.daily_total_usd, r.weekly_total_usd, *r.thresholds_usd)
        if all(v is None for v in usd):
            continue
        if r.asset == "*":
            needed |= set(spend) | set(usage.spent)
        elif normalize_asset_key(r.asset) in spend:
            needed.add(normalize_asset_key(r.asset))
    return frozenset(needed)


def lookup_prices(
    oracle: PriceOracle,
    chain: str,
    assets: Iterable[str],
    *,
    decimals: Mapping[str, int] | None = None,
) -> dict[str, AssetPrice]:
    """Ask ``oracle`` for each asset; unknown prices (or decimals) are simply left out.

    Args:
        oracle: the price source.
        chain: chain family of the agent.
        assets: asset keys (``"native"`` or token addresses).
        decimals: decimals per token address (native decimals are known per chain).

    Raises:
        InvalidInputError: ``oracle`` returned something other than a finite, non-negative
            ``Decimal`` or ``None`` (a float is refused: prices must be exact).
    """
    known = {normalize_asset_key(k): v for k, v in (decimals or {}).items()}
    out: dict[str, AssetPrice] = {}
    for asset in sorted(set(assets)):
        key = normalize_asset_key(asset)
        places = NATIVE_DECIMALS.get(chain) if key == NATIVE else known.get(key)
        if places is None:
            continue
        price = oracle.price_usd(chain, asset)
        if price is None:
            continue
        if not isinstance(price, Decimal):
            raise InvalidInputError(
                f"price oracle returned {type(price).__name__} for {asset}; prices must be "
                "Decimal or None",
                field="price",
            )
        out[key] = AssetPrice(usd=price, decimals=places)
    return out
