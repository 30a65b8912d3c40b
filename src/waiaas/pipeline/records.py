"""What a transaction row keeps, and for how long: the stored decision and the final form.

A row carries what the pipeline still needs and what people read later, no more:

* **The decision** (:func:`stored_decision`): an allowed INSTANT or NOTIFY request keeps its
  outcome and the reasons that set its tier (rule ids, figures); the budget tables are kept
  only where the request was refused, queued (DELAY, APPROVAL) or fired AUTO_STOP, where the
  owner reads them to decide or to understand. ``Decision.spend`` is not repeated in the
  document: it is the row's ``spend`` column (:func:`public_decision` puts it back).
* **The final form** (:func:`compact_final`): once a transaction is CONFIRMED, FAILED,
  CANCELLED or EXPIRED nothing signs, sends or re-checks it again, so the signed bytes and the
  plan's instruction list go; the plan digest and the decoded effects (what the owner reads
  and what the policies judged) stay, and so do the request, the decision, the fee and every
  note of what happened. :func:`waiaas.pipeline.states.transition`, the one place that
  writes a move into a final status, applies it and reseals the row's MAC (see
  :func:`waiaas.integrity.tx_mac`).

Internal to the pipeline. Pure functions of JSON documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waiaas.policy import Decision
from waiaas.types import Tier

__all__ = ["compact_final", "public_decision", "stored_decision"]

# The tiers whose transaction waits (for a cooldown, for the owner): the owner reads the
# whole decision while it waits, and afterwards to know why it waited.
_QUEUED_TIERS = frozenset({Tier.DELAY, Tier.APPROVAL})
# Figures that only a waiting or refused request needs (the budgets checked, the request's
# spend, which the ``spend`` column records exactly).
_DROPPED_WHEN_ALLOWED = ("budget", "budget_usd", "spend")


def stored_decision(decision: Decision) -> dict[str, Any]:
    """The decision as a transaction row stores it.

    In full (every reason, the budget tables) for a refused or queued request or one that
    fired AUTO_STOP; for an allowed INSTANT or NOTIFY request without the budget tables and
    without ``spend`` (the row's ``spend`` column holds it: :func:`public_decision`).
    """
    data = decision.model_dump(mode="json", exclude_defaults=True)
    if not decision.allowed or decision.tier in _QUEUED_TIERS or decision.auto_stop is not None:
        return data
    for key in _DROPPED_WHEN_ALLOWED:
        data.pop(key, None)
    return data


def public_decision(stored: Any, spend: Mapping[str, int] | None) -> Any:
    """The stored decision document with ``spend`` restored from the row's ``spend``
    column (the mapping ``TransactionInfo.spend`` shows) where :func:`stored_decision` left
    it out. Anything that is not a decision document is returned as it is."""
    if not isinstance(stored, dict) or "spend" in stored or not spend:
        return stored
    return {**stored, "spend": {asset: str(amount) for asset, amount in spend.items()}}


def _slim_signed(data: Any) -> dict[str, Any] | None:
    """What a final row keeps of a signed transaction: its nonce (the EVM account nonce it
    used). Its hash is the row's ``tx_hash`` and the TX_SIGNED audit row's."""
    if not isinstance(data, Mapping) or data.get("nonce") is None:
        return None
    return {"nonce": data["nonce"]}


def compact_final(meta: Mapping[str, Any], *, keep_plan: bool = False) -> dict[str, Any]:
    """The metadata of a transaction moving into a final status, for good.

    Dropped: the signed bytes (``signed`` and, after a rebuild, ``replaced`` keep only the
    nonce), the plan's instruction list (``plan``; ``plan_digest`` and ``effects`` stay) and
    a leftover signing claim. ``keep_plan``: keep the plan too (the row's MAC covers it and
    cannot be resealed here). Returns a new dict; ``meta`` is not changed.
    """
    out = dict(meta)
    if not keep_plan:
        out.pop("plan", None)
    out.pop("claim", None)
    for key in ("signed", "replaced"):
        if key in out:
            slim = _slim_signed(out[key])
            if slim is None:
                del out[key]
            else:
                out[key] = slim
    return out
