"""The policy engine: rule models, a pure evaluator, explanations and replay.

Functional core: nothing here does I/O or reads a clock. The shell (``waiaas.services``)
loads policies and usage from the database, calls :func:`evaluate`, and records the
:class:`Decision`.

Example::

    from waiaas.policy import AgentContext, PolicySpec, compute_usage, evaluate
    from waiaas.types import Transfer

    agent = AgentContext(id="a1", chain="solana", network="devnet", owner_address=None)
    limit = PolicySpec(id="p1", agent_id=None, type="SPENDING_LIMIT",
                       rules={"per_transaction": "1000000000", "instant_max": "100000000"})
    usage = compute_usage([], now=1_700_000_000, windows={86_400})
    decision = evaluate(Transfer(to="11111111111111111111111111111111", amount=50_000_000),
                        agent, [limit], usage, now=1_700_000_000)
    decision.allowed, decision.tier      # (True, Tier.INSTANT)
"""

from waiaas.policy.addresses import normalize_address, normalize_selector, to_checksum_address
from waiaas.policy.evaluate import (
    RequestModel,
    applicable,
    evaluate,
    spend_of,
)
from waiaas.policy.explain import Explanation, explain, next_allowed_time
from waiaas.policy.model import (
    NATIVE,
    AgentContext,
    AssetPrice,
    AssetUsage,
    BudgetFigure,
    Decision,
    PolicySpec,
    PriceOracle,
    Reason,
    Usage,
    UsageRow,
    UsdBudgetFigure,
    compute_usage,
    normalize_asset_key,
    required_windows,
)
from waiaas.policy.prices import assets_to_price, lookup_prices
from waiaas.policy.replay import ReplayDiff, ReplayRecord, ReplayResult, replay
from waiaas.policy.rules import (
    AllowedAddressesRules,
    AllowedNetworksRules,
    AllowedTokensRules,
    ApproveAmountLimitRules,
    ApprovedSpendersRules,
    AutoStopRules,
    ContractWhitelistRules,
    MethodWhitelistRules,
    PolicyType,
    RateLimitRules,
    Rules,
    SpendingLimitRules,
    TimeRestrictionRules,
    validate_rules,
)

__all__ = [
    "NATIVE",
    "AgentContext",
    "AllowedAddressesRules",
    "AllowedNetworksRules",
    "AllowedTokensRules",
    "ApproveAmountLimitRules",
    "ApprovedSpendersRules",
    "AssetPrice",
    "AssetUsage",
    "AutoStopRules",
    "BudgetFigure",
    "ContractWhitelistRules",
    "Decision",
    "Explanation",
    "MethodWhitelistRules",
    "PolicySpec",
    "PolicyType",
    "PriceOracle",
    "RateLimitRules",
    "Reason",
    "ReplayDiff",
    "ReplayRecord",
    "ReplayResult",
    "RequestModel",
    "Rules",
    "SpendingLimitRules",
    "TimeRestrictionRules",
    "Usage",
    "UsageRow",
    "UsdBudgetFigure",
    "applicable",
    "assets_to_price",
    "compute_usage",
    "evaluate",
    "explain",
    "lookup_prices",
    "next_allowed_time",
    "normalize_address",
    "normalize_asset_key",
    "normalize_selector",
    "replay",
    "required_windows",
    "spend_of",
    "to_checksum_address",
    "validate_rules",
]
