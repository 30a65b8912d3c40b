"""The typed form of a transaction row's ``metadata`` document.

The pipeline writes one JSON object per transaction row (the ``metadata`` column). Its keys
and their value types are declared here, so the type checker sees a misspelt key or a value
of the wrong type wherever the pipeline reads or writes the document. The JSON on disk is the
same as before these types existed: nothing is migrated.

Every entry is optional (``total=False``): which keys a row has depends on how far it went
(a refused request has ``error`` and no ``signed``; a final row has lost ``plan`` and most of
``signed``: :func:`waiaas.pipeline.records.compact_final`).

Internal to the pipeline.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

__all__ = [
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
    in full, or compact for an allowed INSTANT or NOTIFY request."""

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
            that are ``None`` by default on rows written since they are left out).
        asset: the asset key the request moves (``native`` or a token).
        plan / plan_digest / effects: the plan that will be signed (``plan_to_json``), its
            digest, its decoded effects (``effects_to_json``). A row admitted with signed
            bytes its adapter reads the plan back from stores no ``plan``
            (:func:`waiaas.pipeline.plans.stored_plan` reads it from the bytes).
        plan_deferred: why the plan could not be built at admission.
        network_fee: the fee quote of the transaction as built.
        decision: the policy decision (:class:`StoredDecision`).
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
