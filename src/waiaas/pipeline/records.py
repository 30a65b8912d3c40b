"""What a transaction row keeps, and for how long: the stored decision and the final form.

A row carries what the pipeline still needs and what people read later, no more:

* **The decision** (:func:`stored_decision`): an allowed INSTANT or NOTIFY request keeps its
  tier, and its fees only where they differ from the network fee quoted; no reasons (their
  sentences and figures are for requests that wait or are refused), no budget tables, no
  ``spend`` (the row's ``spend`` column). A request that was refused, queued (DELAY,
  APPROVAL) or fired AUTO_STOP keeps the whole decision, where the owner reads it to decide
  or to understand. :func:`public_decision` reads every form (:func:`decision_of` from a
  row's document).
* **The request** (:func:`stored_request`, :func:`compact_request`): without the fields it
  left unset, and without what the row's ``type``, ``to_address`` and ``amount`` columns and
  its ``asset`` hold (:func:`waiaas.pipeline.txmeta.request_of` puts them back); ``asset``
  itself is left out when it is ``native``.
* **The final form** (:func:`compact_final`): once a transaction is CONFIRMED, FAILED,
  CANCELLED or EXPIRED nothing signs, sends or re-checks it again, so the signed bytes and the
  plan's instruction list go; the plan digest and the decoded effects (what the owner reads
  and what the policies judged) stay, and so do the request, the decision, the fee and every
  note of what happened. A fee paid that is the amount quoted is kept once, as ``fee``
  (:func:`waiaas.pipeline.txmeta.network_fee_of` reads the quote whole).
  :func:`waiaas.pipeline.states.transition`, the one place that writes a move into a final
  status, applies it and reseals the row's MAC (see :func:`waiaas.integrity.tx_mac`).

* **At insert** signed bytes are stored without their hash, which is the row's ``tx_hash``
  (:func:`signed_json`), and presigned bytes without the plan when their adapter reads it
  back from them (:func:`waiaas.pipeline.plans.plan_in_bytes`): the row's MAC covers the
  plan digest, which the plan read back must match. Rows in the earlier, fuller forms read
  the same.

Internal to the pipeline. Pure functions of JSON documents.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, cast

from pydantic import BaseModel

from waiaas.chains.base import SignedTx
from waiaas.errors import StateError
from waiaas.pipeline.txmeta import (
    EXACT,
    NATIVE,
    SignedMeta,
    StoredDecision,
    TxMeta,
    decision_in,
    effects_of,
    network_fee_of,
    request_of,
)
from waiaas.policy import Decision
from waiaas.types import Tier

__all__ = [
    "compact_effects",
    "compact_final",
    "compact_request",
    "decision_of",
    "note_simulation",
    "public_decision",
    "signed_from_json",
    "signed_json",
    "stored_decision",
    "stored_request",
]

# The tiers whose transaction waits (for a cooldown, for the owner): the owner reads the
# whole decision while it waits, and afterwards to know why it waited.
_QUEUED_TIERS = frozenset({Tier.DELAY, Tier.APPROVAL})
# The request fields some column gives (txmeta.request_of), and the request's type.
_COLUMN_FIELDS = frozenset({"type", "to", "amount", "token", "spender", "value"})
# What an allowed INSTANT or NOTIFY request's decision does not store: the reasons (rule
# ids, sentences, figures: kept for requests that wait or are refused), the budget tables,
# the request's spend (the ``spend`` column records it exactly), and ``allowed`` (true).
_DROPPED_WHEN_ALLOWED = ("allowed", "reasons", "budget", "budget_usd", "spend")
# The waits of a decision that does not wait, left out of an allowed INSTANT or NOTIFY row
# when they are these values and put back by public_decision. A stored format: these stay
# as they are whatever WalletConfig's defaults become.
_OMITTED_WAITS: dict[str, int] = {"delay_seconds": 900, "approval_timeout": 3600}


def _in_full(decision: Decision) -> bool:
    """Whether a row keeps ``decision`` whole: refused, queued, or AUTO_STOP fired."""
    return not decision.allowed or decision.tier in _QUEUED_TIERS or decision.auto_stop is not None


def stored_decision(decision: Decision, quoted_fee: int | None = None) -> StoredDecision:
    """The decision as a transaction row stores it.

    In full (every reason with its sentence and figures, the budget tables) for a refused or
    queued request or one that fired AUTO_STOP. For an allowed INSTANT or NOTIFY request,
    compact: the tier; ``fees`` unless they are ``quoted_fee``, the network fee the row
    stores (``network_fee.amount``; ``None``: the row stores no quote, and the fees are
    written even when 0); ``delay_seconds`` / ``approval_timeout`` only when they differ
    from the stored defaults (900 and 3600). No ``allowed`` (true: it is what marks this
    form), reasons, budget tables or ``spend`` (the row's ``spend`` column holds it).
    :func:`public_decision` reads every form.
    """
    data = cast("StoredDecision", decision.model_dump(mode="json", exclude_defaults=True))
    if _in_full(decision):
        return data
    out = cast("dict[str, Any]", data)
    for key in _DROPPED_WHEN_ALLOWED:
        out.pop(key, None)
    if quoted_fee is not None and decision.fees == quoted_fee:
        out.pop("fees", None)
    else:
        out["fees"] = str(decision.fees)
    for key, value in _OMITTED_WAITS.items():
        if out.get(key) == value:
            del out[key]
    return data


def _worded(reason: Any) -> Any:
    """A compact reason with a sentence again (its own is not stored)."""
    if not isinstance(reason, dict) or "message" in reason:
        return reason
    kind = reason.get("type", "policy")
    tier = reason.get("tier")
    said = f"{kind} rule: tier {tier}" if tier is not None else f"{kind} rule"
    return {**reason, "message": f"{said} (details are kept for refused or queued requests)"}


def public_decision(
    stored: Any, spend: Mapping[str, int] | None, quoted_fee: str | int | None = None
) -> Any:
    """The stored decision document as :class:`~waiaas.policy.Decision` reads it: ``spend``
    restored from the row's ``spend`` column (the mapping ``TransactionInfo.spend`` shows)
    where :func:`stored_decision` left it out, and a compact decision's omitted waits, reason
    sentences (rows written with reasons), ``allowed`` and ``fees`` (``quoted_fee``: the
    row's network fee amount, :func:`waiaas.pipeline.txmeta.network_fee_of`) put back.
    Anything that is not a decision document is returned as it is."""
    if not isinstance(stored, dict):
        return stored
    out = dict(stored)
    if "allowed" not in out:  # the compact form of an allowed INSTANT or NOTIFY request
        out = {"allowed": True, **out}
        if "fees" not in out and quoted_fee is not None:
            out["fees"] = str(quoted_fee)
    if "spend" not in out and spend:
        out["spend"] = {asset: str(amount) for asset, amount in spend.items()}
    for key, value in _OMITTED_WAITS.items():
        out.setdefault(key, value)
    reasons = out.get("reasons")
    if isinstance(reasons, list):
        out["reasons"] = [_worded(r) for r in reasons]
    return out


def decision_of(meta: TxMeta, spend: Mapping[str, int] | None, row: Any) -> Any:
    """:func:`public_decision` of the document ``meta`` of transaction ``row`` (``spend``:
    its ``spend`` column; a final row's decision left out is read back from its ``tier``:
    :func:`waiaas.pipeline.txmeta.decision_in`)."""
    quote = network_fee_of(meta) or {}
    return public_decision(decision_in(meta, row), spend, quote.get("amount"))


def stored_request(req: BaseModel) -> dict[str, Any]:
    """The request document a row stores: ``req.model_dump(mode="json")`` without the
    fields that are ``None`` and whose default is ``None`` (a memo or token decimals not
    given), in a batch's items too. Parsing it again gives ``req`` back."""
    data: dict[str, Any] = req.model_dump(mode="json")
    return _without_unset(req, data)


def _without_unset(model: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        field = type(model).model_fields.get(name)
        attr = getattr(model, name, None)
        if value is None and field is not None and field.default is None:
            continue
        if isinstance(value, list) and isinstance(attr, tuple | list):
            value = [
                _without_unset(m, v) if isinstance(m, BaseModel) and isinstance(v, dict) else v
                for m, v in zip(attr, value, strict=False)
            ]
        out[name] = value
    return out


def compact_request(request: dict[str, Any], row: Any, asset: str) -> dict[str, Any]:
    """What a row stores of ``request`` (:func:`stored_request`'s document), given the row's
    columns (``type``, ``to_address``, ``amount``) and its ``asset``: the fields they do not
    give, without ``type`` (``{}``: store no ``request``), or ``request`` whole when the
    columns do not give it back exactly (a ``BATCH``). Checked by reading it back with
    :func:`waiaas.pipeline.txmeta.request_of`, key order included."""
    kind = str(getattr(row.type, "value", row.type))
    # the fields a column can give (which ones a type has: txmeta's table); the read back
    # below is what decides
    rest = {k: v for k, v in request.items() if k not in _COLUMN_FIELDS}
    meta = TxMeta(request=rest) if rest else TxMeta()
    if asset != NATIVE:
        meta["asset"] = asset
    back = request_of(meta, row)
    if kind != request.get("type") or back is None or list(back.items()) != list(request.items()):
        return request
    return rest


def compact_effects(effects: list[dict[str, Any]], row: Any) -> list[dict[str, Any]]:
    """What a row stores of its decoded effects (``effects_to_json``), given its columns
    (``to_address``, ``amount``): a ``native_transfer`` without a ``destination`` or an
    ``amount`` that is the column's value. Checked by reading it back with
    :func:`waiaas.pipeline.txmeta.effects_of` (key order included); ``effects`` as they are
    where that does not give them back exactly."""
    to = None if row.to_address is None else str(row.to_address)
    amount = None if row.amount is None else str(row.amount)
    out: list[dict[str, Any]] = []
    for item in effects:
        if item.get("effect") == "native_transfer":
            item = {
                k: v
                for k, v in item.items()
                if not ((k == "destination" and v == to) or (k == "amount" and v == amount))
            }
        out.append(item)
    back = effects_of(TxMeta(effects=out), row)
    if back is None or [list(e.items()) for e in back] != [list(e.items()) for e in effects]:
        return effects
    return out


def signed_json(signed: SignedTx) -> SignedMeta:
    """The stored form of signed bytes: base64, and the fields that are set. The hash is
    left out: it is the row's ``tx_hash``, written in the same update (pass it back to
    :func:`signed_from_json`)."""
    out = SignedMeta(raw_b64=base64.b64encode(signed.raw).decode("ascii"))
    if signed.nonce is not None:
        out["nonce"] = signed.nonce
    if signed.valid_until is not None:
        out["valid_until"] = signed.valid_until
    if signed.earliest_slot is not None:
        out["earliest_slot"] = signed.earliest_slot
    return out


def signed_from_json(chain: str, data: SignedMeta, tx_hash: str | None = None) -> SignedTx:
    """The :class:`SignedTx` stored by :func:`_signed_json`: its hash is the stored one (rows
    written before it was left out) or ``tx_hash``, the row's.

    Raises:
        StateError: neither holds the hash.
    """
    digest = data.get("hash", tx_hash)
    if digest is None:
        raise StateError("the stored signed bytes have no hash (the row's tx_hash is empty)")
    nonce, valid_until, slot = data.get("nonce"), data.get("valid_until"), data.get("earliest_slot")
    return SignedTx(
        chain=chain,
        raw=(
            base64.b64decode(data["raw_b64"])
            if "raw_b64" in data
            else bytes.fromhex(str(data.get("raw")))
        ),
        tx_hash=str(digest),
        nonce=None if nonce is None else int(nonce),
        valid_until=None if valid_until is None else int(valid_until),
        earliest_slot=None if slot is None else int(slot),
    )


def _slim_signed(data: Any) -> SignedMeta | None:
    """What a final row keeps of a signed transaction: its nonce (the EVM account nonce it
    used). Its hash is the row's ``tx_hash`` and its signing audit row's."""
    if not isinstance(data, Mapping) or data.get("nonce") is None:
        return None
    return {"nonce": data["nonce"]}


def compact_final(meta: TxMeta, *, keep_plan: bool = False, tier: str | None = None) -> TxMeta:
    """The metadata of a transaction moving into a final status, for good.

    Dropped: the signed bytes (``signed`` and, after a rebuild, ``replaced`` keep only the
    nonce), the plan's instruction list (``plan``; ``plan_digest`` and ``effects`` stay), a
    leftover signing claim, and the quote's ``amount`` when it is the ``fee`` paid, with its
    ``basis`` when that is ``exact`` (:func:`waiaas.pipeline.txmeta.network_fee_of` puts
    them back). ``tier``: the row's final ``tier`` when the row is resealed in its final
    form (:data:`waiaas.pipeline.txmeta.FINAL_SEAL`): a decision that is only that tier is
    left out (:func:`waiaas.pipeline.txmeta.decision_in` puts it back). ``keep_plan``: keep
    the plan too (the row's MAC covers it and cannot be resealed here). Returns a new dict;
    ``meta`` is not changed.
    """
    out = TxMeta(**meta)
    if not keep_plan:
        out.pop("plan", None)
    out.pop("claim", None)
    quote, fee = out.get("network_fee"), out.get("fee")
    if isinstance(quote, dict) and fee is not None and quote.get("amount") == fee:
        quote = quote.copy()
        del quote["amount"]
        if quote == {"basis": EXACT}:
            del quote["basis"]
        out["network_fee"] = quote
    if tier is not None and out.get("decision") == {"tier": tier}:
        del out["decision"]
    for key in ("signed", "replaced"):
        if key in out:
            slim = _slim_signed(out.get(key))
            if slim is None:
                del out[key]
            else:
                out[key] = slim
    return out


def note_simulation(meta: TxMeta, outcome: str) -> None:
    """Record the simulation's outcome before signing: only ``"unavailable"`` is written (a
    simulation that disagreed refused the signing, so one that ran agreed); a rebuild that
    simulated removes an earlier ``"unavailable"``."""
    if outcome == "ok":
        meta.pop("simulation", None)
    else:
        meta["simulation"] = outcome
