"""The typed form of a transaction row's ``metadata`` document.

The pipeline writes one JSON object per transaction row (the ``metadata`` column). Its keys
and their value types are declared here, so the type checker sees a misspelt key or a value
of the wrong type wherever the pipeline reads or writes the document. Rows of every earlier
form read the same: nothing is migrated.

Every entry is optional (``total=False``): which keys a row has depends on how far it went
(a refused request has ``error`` and no ``signed``; a final row has lost ``plan`` and most of
``signed``: :func:`waiaas.pipeline.records.compact_final`). What the row's columns already
hold is not stored twice: :func:`request_of`, :func:`effects_of`, :func:`asset_of` and
:func:`network_fee_of` read a document of any form whole.

Internal to the pipeline.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

__all__ = [
    "EXACT",
    "FINAL_SEAL",
    "ApprovalMeta",
    "ClaimMeta",
    "ErrorMeta",
    "FeeMeta",
    "RejudgedMeta",
    "ResolvedMeta",
    "SignedMeta",
    "StoredDecision",
    "TxMeta",
    "UnresolvedMeta",
    "as_meta",
    "asset_of",
    "decision_in",
    "effects_of",
    "final_decision",
    "network_fee_of",
    "request_of",
]


class FeeMeta(TypedDict, total=False):
    """A fee quote (``network_fee``): integers as decimal strings
    (:func:`waiaas.pipeline.plans.fee_to_json`)."""

    amount: str
    basis: str
    gas_limit: str
    max_fee_per_gas: str


class StoredDecision(TypedDict, total=False):
    """A policy decision as a row keeps it (:func:`waiaas.pipeline.records.stored_decision`):
    in full, or compact for an allowed INSTANT or NOTIFY request. The compact form of rows
    written since has no ``allowed`` (it is ``true``), no ``reasons``, and ``fees`` only
    where they differ from the network fee quoted (``network_fee``)."""

    allowed: bool
    tier: str
    reasons: list[dict[str, Any]]
    budget: list[dict[str, Any]]
    budget_usd: list[dict[str, Any]]
    auto_stop: dict[str, Any]
    delay_seconds: int
    approval_timeout: int
    spend: dict[str, str]
    fees: str


class SignedMeta(TypedDict, total=False):
    """Signed bytes (``signed``; ``replaced`` after a rebuild). ``raw`` (hex) on rows written
    before ``raw_b64``; ``hash`` is the row's ``tx_hash`` where left out; a final row keeps
    only ``nonce``."""

    raw_b64: str
    raw: str
    hash: str
    nonce: int | None
    valid_until: int | None
    earliest_slot: int | None


# "from" is a keyword: the functional form.
ClaimMeta = TypedDict(
    "ClaimMeta",
    {"token": str, "from": str, "pid": int, "host": str, "at": int, "nonce": int | None},
    total=False,
)
ClaimMeta.__doc__ = """A signing claim (``claim``): who holds it, since when, the status it was
taken from and the nonce it reserved."""


class ErrorMeta(TypedDict):
    """Why a transaction ended (``error``)."""

    code: str
    message: str


class ApprovalMeta(TypedDict, total=False):
    """The owner's approval request (``approval``): what the owner signs, and the plan digest
    the owner approved once approved."""

    id: str
    owner: str | None
    expires_at: int
    domain: str
    uri: str
    chain_id: int | None
    effects_text: list[str]
    amount_text: str
    fee_text: str
    plan_digest: str


RejudgedMeta = TypedDict(
    "RejudgedMeta",
    {"at": int, "from": str, "to": str, "decision": StoredDecision},
    total=False,
)
RejudgedMeta.__doc__ = """An escalation on re-check (``rejudged``): when, from and to which tier,
and the decision that asked for it."""


class UnresolvedMeta(TypedDict):
    """A transaction whose fate the chain could not tell (``unresolved``)."""

    since: int
    reason: str


class ResolvedMeta(TypedDict):
    """The operator's settlement of an unresolved transaction (``resolved``)."""

    landed: bool
    evidence: str
    at: int


class TxMeta(TypedDict, total=False):
    """A transaction row's ``metadata`` document.

    Attributes:
        network: the agent's network.
        request: the request as sent (``Request.model_dump(mode="json")``, without keys
            that are ``None`` by default on rows written since they are left out). Rows
            written since the columns give them keep only what the row's ``type``,
            ``to_address`` and ``amount`` columns and ``asset`` do not: the request's other
            fields (a memo, token decimals, call data), without its ``type``, or no
            ``request`` at all. Read it with :func:`request_of`, which puts it back whole.
        asset: the asset key the request moves (a token); absent for ``native`` on rows
            written since (:func:`asset_of`).
        plan / plan_digest / effects: the plan that will be signed (``plan_to_json``), its
            digest, its decoded effects (``effects_to_json``; on rows written since, a
            ``native_transfer`` leaves out a ``destination`` or ``amount`` that is the row's
            ``to_address`` or ``amount``: read them with :func:`effects_of`). A row
            admitted with signed bytes its adapter reads the plan back from stores no
            ``plan`` (:func:`waiaas.pipeline.plans.stored_plan` reads it from the bytes).
        plan_deferred: why the plan could not be built at admission.
        network_fee: the fee quote of the transaction as built. A final row whose ``fee``
            paid is the quoted amount keeps the amount once, as ``fee`` (its ``network_fee``
            has no ``amount``; on rows written since, an ``exact`` quote so kept is ``{}``):
            read it with :func:`network_fee_of`.
        decision: the policy decision (:class:`StoredDecision`;
            :func:`waiaas.pipeline.records.public_decision` reads every form). A row sealed
            in its final form since leaves out a compact decision that is only its ``tier``:
            read it with :func:`decision_in`.
        approval_downgraded: an APPROVAL request of an agent without owner became DELAY.
        execute_after: when a DELAY transaction may run.
        approval: the owner's approval request.
        claim: the signing claim while one is held.
        simulation: ``"unavailable"`` when the bytes signed were not simulated (the
            backend cannot); absent when the simulation agreed with the effects (rows
            written before this rule store ``"ok"``).
        signed / replaced: the signed bytes, and those a rebuild replaced.
        rebuilt: how many times the bytes were rebuilt.
        held: why signed bytes were held back (kill switch, suspension).
        rejudged_held: when held bytes were judged again.
        rejudged: an escalation on re-check.
        unresolved / resolved: a fate the chain could not tell, and its settlement.
        released_hash: the hash this row gave up to identical bytes of a later request.
        fee: the network fee paid, in base units.
        error: why the transaction ended.
        spend: what the request took out of the wallet per asset (rows written before
            the ``spend`` column; read when a session's charge is given back).
    """

    network: str
    request: dict[str, Any]
    asset: str
    plan: dict[str, Any]
    plan_digest: str | None
    effects: list[dict[str, Any]]
    plan_deferred: str
    network_fee: FeeMeta
    decision: StoredDecision
    approval_downgraded: str
    execute_after: int
    approval: ApprovalMeta
    claim: ClaimMeta
    simulation: str
    signed: SignedMeta
    replaced: SignedMeta
    rebuilt: int
    held: str
    rejudged_held: int
    rejudged: RejudgedMeta
    unresolved: UnresolvedMeta
    resolved: ResolvedMeta
    released_hash: str
    fee: str
    error: ErrorMeta
    spend: dict[str, str]


def as_meta(data: Any) -> TxMeta:
    """A metadata document read back from a row, typed (a copy; anything that is not a JSON
    object reads as an empty document). Its content is the pipeline's own writing and is
    not checked again here: the row's MAC covers what decides."""
    return cast("TxMeta", dict(data)) if isinstance(data, dict) else TxMeta()


# The request fields a transaction row's columns give, per request type: the field and the
# column it is read from ("to": ``to_address``, "amount": ``amount``, "asset": the
# document's asset), in the order ``Request.model_dump`` writes the request's fields. A
# stored format: rows keep only the other fields (:func:`request_of` merges them back).
_FROM_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "TRANSFER": (("to", "to"), ("amount", "amount")),
    "TOKEN_TRANSFER": (("token", "asset"), ("to", "to"), ("amount", "amount")),
    "CONTRACT_CALL": (("to", "to"), ("value", "amount")),
    "APPROVE": (("token", "asset"), ("spender", "to"), ("amount", "amount")),
}
_FIELD_ORDER: dict[str, tuple[str, ...]] = {
    "TRANSFER": ("type", "to", "amount", "memo"),
    "TOKEN_TRANSFER": ("type", "token", "to", "amount", "decimals"),
    "CONTRACT_CALL": ("type", "to", "data", "value", "accounts"),
    "APPROVE": ("type", "token", "spender", "amount", "decimals"),
}
NATIVE = "native"
#: The prefix of the MAC of a row sealed in its final form (:func:`waiaas.integrity.tx_mac`)
#: by a wallet that leaves its compact decision out (:func:`decision_in`).
FINAL_SEAL = "vc:"
#: The basis of a fee quote that is the fee paid (left out of a final row's empty quote).
EXACT = "exact"


def _text(value: Any) -> str | None:
    """A column's value as text (an enum's value), ``None`` kept."""
    return None if value is None else str(getattr(value, "value", value))


def asset_of(meta: TxMeta) -> str:
    """The asset key the transaction moves: the stored ``asset``, else ``native`` (rows
    written since leave ``native`` out)."""
    asset = meta.get("asset")
    return asset if isinstance(asset, str) else NATIVE


def request_of(meta: TxMeta, row: Any) -> dict[str, Any] | None:
    """The request of the transaction ``row`` (its ``type``, ``to_address`` and ``amount``
    columns) whose metadata is ``meta``, whole.

    A stored request with a ``type`` is returned as stored (every row written before the
    columns gave it, a ``BATCH``, a request the columns do not give back exactly). Otherwise
    the columns (and :func:`asset_of`) give the fields they hold and the stored document,
    if any, the others; a stored field wins over a column's, so what is read is what the
    row's MAC covers (:func:`waiaas.integrity.tx_mac`). ``None`` when there is no request
    to read. Pure: ``meta`` is not changed.
    """
    stored = meta.get("request")
    if isinstance(stored, dict) and "type" in stored:
        return stored
    kind = _text(getattr(row, "type", None))
    fields = _FROM_COLUMNS.get(kind or "")
    if kind is None or fields is None:
        return stored if isinstance(stored, dict) else None
    source = {
        "to": _text(getattr(row, "to_address", None)),
        "amount": _text(getattr(row, "amount", None)),
        "asset": asset_of(meta),
    }
    merged: dict[str, Any] = {"type": kind}
    merged.update((name, source[column]) for name, column in fields if source[column] is not None)
    if isinstance(stored, dict):
        merged.update(stored)
    order = _FIELD_ORDER[kind]
    out = {k: merged[k] for k in order if k in merged}
    out.update((k, v) for k, v in merged.items() if k not in out)
    return out


# The effect fields a transaction row's columns give, per effect kind, like _FROM_COLUMNS,
# and the order ``effects_to_json`` writes that kind's fields in. A stored format.
_EFFECT_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "native_transfer": (("destination", "to"), ("amount", "amount")),
}
_EFFECT_ORDER: dict[str, tuple[str, ...]] = {
    "native_transfer": ("effect", "source", "destination", "amount"),
}


def effects_of(meta: TxMeta, row: Any) -> list[dict[str, Any]] | None:
    """The decoded effects stored on the transaction ``row`` (its ``to_address`` and
    ``amount`` columns) whose metadata is ``meta``, whole: an effect stored without a field
    the columns give (a ``native_transfer`` to the row's recipient, of its amount) has it
    put back; every other effect, and every effect of a row written before, is returned as
    stored. ``None`` when the row stores no effects. Pure."""
    stored = meta.get("effects")
    if not isinstance(stored, list):
        return None
    source = {
        "to": _text(getattr(row, "to_address", None)),
        "amount": _text(getattr(row, "amount", None)),
    }
    out: list[dict[str, Any]] = []
    for item in stored:
        kind = item.get("effect") if isinstance(item, dict) else None
        fields = _EFFECT_COLUMNS.get(kind) if isinstance(kind, str) else None
        if fields is None or all(name in item for name, _ in fields):
            out.append(item)
            continue
        merged = {n: source[c] for n, c in fields if n not in item and source[c] is not None}
        merged.update(item)
        order = _EFFECT_ORDER[str(kind)]
        whole = {k: merged[k] for k in order if k in merged}
        whole.update((k, v) for k, v in merged.items() if k not in whole)
        out.append(whole)
    return out


def network_fee_of(meta: TxMeta) -> FeeMeta | None:
    """The network fee quote of the transaction as built (``network_fee``), whole: a final
    row that stores its amount once, as the ``fee`` paid, has it put back, and an empty
    quote (an ``exact`` one so kept: every quote written stores its ``basis``) its basis."""
    quote = meta.get("network_fee")
    if not isinstance(quote, dict):
        return None
    if "amount" not in quote and isinstance(meta.get("fee"), str):
        out = FeeMeta(amount=meta["fee"])
        if not quote:
            out["basis"] = EXACT
        out.update(quote)
        return out
    return quote


def decision_in(meta: TxMeta, row: Any) -> Any:
    """The decision document of the transaction ``row`` (its ``tier`` and ``integrity``
    columns) whose metadata is ``meta``, whole: :func:`final_decision` for a row sealed in
    its final form since (its MAC starts with :data:`FINAL_SEAL`); every other row is read
    as stored (``None`` when it has no decision). Pure."""
    sealed = getattr(row, "integrity", None)
    if isinstance(sealed, str) and sealed.startswith(FINAL_SEAL):
        return final_decision(meta, getattr(row, "tier", None))
    return meta.get("decision")


def final_decision(meta: TxMeta, tier: Any) -> Any:
    """The decision document of a row sealed in its final form since (:data:`FINAL_SEAL`)
    whose ``tier`` column is ``tier``: as stored, or, where the row stores none, the compact
    decision that is only its tier, ``{"tier": <tier>}`` (left out by
    :func:`waiaas.pipeline.records.compact_final`). Only the wallet's key writes that seal,
    and its MAC covers the decision this returns (:func:`waiaas.integrity.tx_mac`): a
    decision left out or put back differently does not verify. Pure."""
    if "decision" in meta:
        return meta["decision"]
    text = _text(tier)
    return StoredDecision(tier=text) if text else None
