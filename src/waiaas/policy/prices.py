"""Shell-side helpers for USD prices: which assets need one, and asking a PriceOracle.

:func:`~waiaas.policy.evaluate` stays pure: it receives the prices as a mapping. These
helpers are what the shell uses to build that mapping (the oracle may do I/O).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from waiaas.policy.evaluate import (
    _items_from_effects,
    _normalize_items,
    _spend,
    applicable,
    coerce_request,
)
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

if TYPE_CHECKING:
    from waiaas.plan import Effect

__all__ = ["assets_to_price", "lookup_prices"]

log = logging.getLogger("waiaas.policy")


def assets_to_price(
    request: object,
    agent: AgentContext,
    policies: Iterable[PolicySpec],
    usage: Usage,
    *,
    effects: Sequence[Effect] | None = None,
) -> frozenset[str]:
    """The asset keys whose USD price the applicable ``*_usd`` rules need (may be empty).

    ``effects``: decoded from the plan (then they, not the request, say what is spent).

    Raises:
        InvalidInputError: a malformed request.
    """
    items, _ = _normalize_items(coerce_request(request), agent.chain)
    if effects is not None:
        items = _items_from_effects(effects, agent.chain)
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
    native_decimals: int | None = None,
) -> dict[str, AssetPrice]:
    """Ask ``oracle`` for each asset; unknown prices (or decimals) are simply left out.

    A price is unknown when the oracle returns ``None``, something that is not a
    ``Decimal`` (a float is never taken: prices must be exact), zero, a negative or a
    non-finite value, or raises: an unknown price is never valued as zero, and the rules
    put such a request at their ``unpriced_tier`` (default APPROVAL).

    Args:
        oracle: the price source.
        chain: chain family of the agent.
        assets: asset keys (``"native"`` or token addresses).
        decimals: decimals per token address, from the chain or ALLOWED_TOKENS (never from
            the request: the agent writes that).
        native_decimals: the native coin's decimals as the agent's adapter names them
            (``AgentContext.native_decimals``); default: the shipped families' (9, 18), and
            none for another chain (its native coin is then unpriced).
    """
    known = {normalize_asset_key(k): v for k, v in (decimals or {}).items()}
    out: dict[str, AssetPrice] = {}
    for asset in sorted(set(assets)):
        key = normalize_asset_key(asset)
        if key == NATIVE:
            places = native_decimals if native_decimals is not None else NATIVE_DECIMALS.get(chain)
        else:
            places = known.get(key)
        if places is None:
            continue
        try:
            price = oracle.price_usd(chain, asset)
        except Exception:  # an oracle that fails knows no price
            log.warning("price oracle failed for %s/%s; the price is unknown", chain, asset)
            continue
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            if price is not None:
                log.warning("price oracle gave %r for %s/%s: unknown", price, chain, asset)
            continue
        out[key] = AssetPrice(usd=price, decimals=places)
    return out
