"""Plans and effects: the policy engine judges the parsed transaction, not its description.

* :mod:`waiaas.plan.model`: the canonical, typed, versioned :data:`Plan` read from the exact
  message / transaction that will be signed, its strict JSON form and its SHA-256 digest.
* :mod:`waiaas.plan.effects`: :func:`decode_plan` turns a plan into effects (native and token
  transfers, approvals, rent, fees, authority changes, closes, unknown calls).
* :mod:`waiaas.plan.describe`: the owner's approval text for those effects.
* :mod:`waiaas.plan.explain`: :func:`unexplained_outflows` compares a simulation's balance
  changes with the effects (the second lock).

Importing this package does no I/O and imports no chain library.

Example::

    from waiaas.plan import decode_plan, describe_effects, plan_digest

    plan = adapter.plan_of(unsigned)
    effects = decode_plan(plan, lookup=adapter.account_lookup())
    lines = describe_effects(effects, chain=plan.chain, token_info=lambda t: None)
    digest = plan_digest(plan)
"""

from waiaas.plan.describe import NATIVE_UNITS, describe_effect, describe_effects, format_units
from waiaas.plan.effects import (
    CONTRACT_CREATION,
    AccountClose,
    AccountFunding,
    AccountLookup,
    AuthorityChange,
    ContractCall,
    ContractLookup,
    Effect,
    FeeEffect,
    Memo,
    NativeTransfer,
    ProgramCall,
    TokenAccountRentLookup,
    TokenApproval,
    TokenTransfer,
    decode_plan,
    effects_from_json,
    effects_to_json,
)
from waiaas.plan.explain import NATIVE, Unexplained, unexplained_outflows
from waiaas.plan.model import (
    MAX_EVM_DATA,
    MAX_SOLANA_DATA,
    PLAN_VERSION,
    EvmPlan,
    Plan,
    SolanaAccountMeta,
    SolanaInstruction,
    SolanaPlan,
    canonical_bytes,
    plan_digest,
    plan_from_json,
    plan_to_json,
)

__all__ = [
    "CONTRACT_CREATION",
    "MAX_EVM_DATA",
    "MAX_SOLANA_DATA",
    "NATIVE",
    "NATIVE_UNITS",
    "PLAN_VERSION",
    "AccountClose",
    "AccountFunding",
    "AccountLookup",
    "AuthorityChange",
    "ContractCall",
    "ContractLookup",
    "Effect",
    "EvmPlan",
    "FeeEffect",
    "Memo",
    "NativeTransfer",
    "Plan",
    "ProgramCall",
    "SolanaAccountMeta",
    "SolanaInstruction",
    "SolanaPlan",
    "TokenAccountRentLookup",
    "TokenApproval",
    "TokenTransfer",
    "Unexplained",
    "canonical_bytes",
    "decode_plan",
    "describe_effect",
    "describe_effects",
    "effects_from_json",
    "effects_to_json",
    "format_units",
    "plan_digest",
    "plan_from_json",
    "plan_to_json",
    "unexplained_outflows",
]
