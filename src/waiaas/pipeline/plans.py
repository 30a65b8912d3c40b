"""The plan of a request: built once at admission, judged, approved and signed.

At admission the adapter builds the exact transaction, :func:`prepare` reads its canonical
plan (``adapter.plan_of``), digests it and decodes its effects; the pipeline stores all three
on the row and the policies judge the effects. Before signing, :func:`check_built` refuses a
transaction whose plan is not the stored one (digest), and :func:`check_simulation` refuses
one whose simulated balance changes show an outflow the effects do not explain.

Internal to the pipeline.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from waiaas.chains.base import (
    BalanceChanges,
    ChainAdapter,
    FeeQuote,
    SignedTx,
    SupportsBalanceSimulation,
    SupportsExactBalanceChanges,
    SupportsFeeCap,
    SupportsFeeQuote,
    SupportsNonces,
    SupportsPlans,
    UnsignedTx,
)
from waiaas.errors import StateError, WaiaasError
from waiaas.pipeline.records import signed_from_json
from waiaas.pipeline.txmeta import FeeMeta, TxMeta, effects_of, network_fee_of

if TYPE_CHECKING:
    from typing_extensions import TypeIs

from waiaas.plan import (
    AccountFunding,
    Effect,
    EvmPlan,
    FeeEffect,
    NativeTransfer,
    Plan,
    TokenTransfer,
    decode_plan,
    effects_from_json,
    effects_to_json,
    plan_digest,
    plan_from_json,
    plan_to_json,
)

__all__ = [
    "PlanRefusedError",
    "Prepared",
    "capable",
    "check_built",
    "check_simulation",
    "fee_from_json",
    "fee_to_json",
    "has_exact_changes",
    "has_fee_cap",
    "has_fee_quote",
    "has_nonces",
    "has_plans",
    "has_simulation",
    "hold_fee",
    "prepare",
    "stored_effects",
    "unshown_fee",
]


# id(adapter) -> (weak reference to it, {capability: answer}); an entry leaves with its adapter
_capabilities: dict[int, tuple[weakref.ReferenceType[Any], dict[type, bool]]] = {}


def capable(adapter: object, capability: type) -> bool:
    """``isinstance(adapter, capability)`` for a runtime-checkable capability protocol of
    :mod:`waiaas.chains.base`, decided once per adapter object and remembered while it lives
    (a protocol check walks the protocol's members on every call). An adapter that cannot be
    weakly referenced is checked every time. The typed guards below narrow with it."""
    key = id(adapter)
    entry = _capabilities.get(key)
    if entry is None or entry[0]() is not adapter:
        try:
            ref = weakref.ref(adapter, _forget)
        except TypeError:
            return isinstance(adapter, capability)
        entry = (ref, {})
        _capabilities[key] = entry
    known = entry[1].get(capability)
    if known is None:
        known = entry[1][capability] = isinstance(adapter, capability)
    return known


def _forget(ref: weakref.ReferenceType[Any]) -> None:
    """An adapter died: drop what was remembered of it (by its reference, so an entry made
    for a newer object at the same id stays)."""
    for key, (held, _) in list(_capabilities.items()):
        if held is ref:
            _capabilities.pop(key, None)


def has_plans(adapter: object) -> TypeIs[SupportsPlans]:
    return capable(adapter, SupportsPlans)


def has_nonces(adapter: object) -> TypeIs[SupportsNonces]:
    return capable(adapter, SupportsNonces)


def has_fee_quote(adapter: object) -> TypeIs[SupportsFeeQuote]:
    return capable(adapter, SupportsFeeQuote)


def has_fee_cap(adapter: object) -> TypeIs[SupportsFeeCap]:
    return capable(adapter, SupportsFeeCap)


def has_exact_changes(adapter: object) -> TypeIs[SupportsExactBalanceChanges]:
    return capable(adapter, SupportsExactBalanceChanges)


def has_simulation(adapter: object) -> TypeIs[SupportsBalanceSimulation]:
    return capable(adapter, SupportsBalanceSimulation)


class PlanRefusedError(StateError):
    """The transaction about to be signed is not the one that was judged (``code`` says how:
    ``PLAN_MISMATCH``, ``SIMULATION_MISMATCH``, ``SIMULATION_UNAVAILABLE`` or
    ``FEE_ABOVE_JUDGED``)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Prepared:
    """What admission learnt from building the request: the plan, its digest, its effects
    (all ``None`` for an adapter that cannot show its plans) and the network fee of the
    transaction as built (for people: it is not part of the plan)."""

    plan: Plan | None
    digest: str | None
    effects: tuple[Effect, ...] | None
    deferred: str | None = None  # why the plan could not be built at admission
    fee: FeeQuote | None = None
    #: the transaction the plan was read from (never stored: admission may sign it as is)
    unsigned: UnsignedTx | None = field(default=None, compare=False, repr=False)

    @property
    def calldata(self) -> bytes:
        """The EVM calldata of the plan (addresses in it are parties too)."""
        return self.plan.data if isinstance(self.plan, EvmPlan) else b""

    def meta(self) -> TxMeta:
        """The row metadata that stores it (lossless: bytes as 0x-hex, ints as strings)."""
        if self.plan is None or self.effects is None:
            return {"plan_deferred": self.deferred} if self.deferred else {}
        out: TxMeta = {
            "plan": plan_to_json(self.plan),
            "plan_digest": self.digest,
            "effects": effects_to_json(self.effects),
        }
        if self.fee is not None:
            out["network_fee"] = fee_to_json(self.fee)
        return out


def fee_to_json(fee: FeeQuote) -> FeeMeta:
    """The stored form of a fee quote (``meta["network_fee"]``): integers as strings."""
    out = FeeMeta(amount=str(fee.amount), basis=fee.basis)
    if fee.gas_limit is not None:
        out["gas_limit"] = str(fee.gas_limit)
    if fee.max_fee_per_gas is not None:
        out["max_fee_per_gas"] = str(fee.max_fee_per_gas)
    return out


def fee_from_json(data: Any) -> FeeQuote | None:
    """The :class:`FeeQuote` stored by :func:`fee_to_json` (``None`` for rows without one)."""
    if not isinstance(data, Mapping):
        return None
    try:
        amount = int(data["amount"])
        gas = data.get("gas_limit")
        max_fee = data.get("max_fee_per_gas")
        return FeeQuote(
            amount,
            str(data.get("basis", "estimate")),
            gas_limit=None if gas is None else int(gas),
            max_fee_per_gas=None if max_fee is None else int(max_fee),
        )
    except (KeyError, TypeError, ValueError):
        return None


def unshown_fee(effects: Sequence[Effect] | None, fee: FeeQuote | None) -> int:
    """What the network fee ``fee`` costs beyond the fees ``effects`` already show.

    Budgets and session totals count every fee the agent pays. A Solana priority fee is
    decoded from the plan (a :class:`FeeEffect`, chosen by the request, judged like any
    spending); the rest of the adapter's quote (the Solana signature fee; on EVM gas limit
    times ``maxFeePerGas``, a maximum) is the chain's price, judged by the rolling windows
    only (``evaluate(..., network_fee=)``). ``0`` without a quote.
    """
    if fee is None:
        return 0
    shown = sum(e.amount for e in effects or () if isinstance(e, FeeEffect))
    return max(0, fee.amount - shown)


def quote_fee(adapter: ChainAdapter, unsigned: UnsignedTx) -> FeeQuote | None:
    """The network fee of ``unsigned`` as its adapter states it, else the adapter's own
    estimate recorded at build (basis ``"estimate"``), else ``None``. Never raises: the fee
    is shown to people, it decides nothing."""
    if has_fee_quote(adapter):
        try:
            return adapter.fee_quote(unsigned)
        except WaiaasError:
            return None
    if unsigned.fee_estimate is not None:
        return FeeQuote(unsigned.fee_estimate, "estimate")
    return None


def prepare(
    adapter: ChainAdapter, request: Any, sender: str, *, nonce: int | None = None
) -> Prepared:
    """Build ``request`` for ``sender`` (with ``nonce`` where the chain has nonces and the
    caller chose one) and read what it will do.

    Raises:
        InvalidInputError / ChainError: the request cannot be built on this chain now.
    """
    if not has_plans(adapter):
        return Prepared(None, None, None)
    unsigned = adapter.build(request, sender, nonce=nonce)
    plan = adapter.plan_of(unsigned)
    effects = decode_plan(plan, lookup=adapter.account_lookup())
    return Prepared(
        plan,
        plan_digest(plan),
        tuple(effects),
        fee=quote_fee(adapter, unsigned),
        unsigned=unsigned,
    )


def prepare_or_defer(
    adapter: ChainAdapter, request: Any, sender: str, *, nonce: int | None = None
) -> Prepared:
    """:func:`prepare`, or an empty :class:`Prepared` marked deferred when the request cannot
    be built now (insufficient funds, a node error): the request is then judged as written
    at admission, and its plan is built and judged on its effects before it is signed."""
    from waiaas.errors import ChainError, InvalidInputError

    try:
        return prepare(adapter, request, sender, nonce=nonce)
    except (ChainError, InvalidInputError) as exc:
        return Prepared(None, None, None, deferred=f"{exc.code}: {exc.message}")


def needs_plan(adapter: ChainAdapter, meta: TxMeta) -> bool:
    """Whether a row must still get its plan before signing (its adapter shows plans): it
    has none, nor the digest of one (a row whose plan is in its signed bytes has the
    digest: :func:`plan_in_bytes`)."""
    return has_plans(adapter) and not meta.get("plan") and not meta.get("plan_digest")


def plan_in_bytes(adapter: ChainAdapter, signed: SignedTx, digest: str | None) -> bool:
    """Whether ``adapter`` reads back from ``signed`` exactly the plan of digest ``digest``:
    then a row that stores these bytes need not store the plan too (:func:`stored_plan`
    reads it from them)."""
    if digest is None or not has_plans(adapter):
        return False
    try:
        return plan_digest(adapter.plan_of_signed(signed)) == digest
    except WaiaasError:
        return False


def stored_plan(
    meta: TxMeta,
    adapter: ChainAdapter | None = None,
    tx_hash: str | None = None,
    *,
    row: Any = None,
) -> Prepared:
    """The plan stored on a row with its effects (read with ``row``'s columns, see
    :func:`stored_effects`) and judged fee (``Prepared(None, ...)`` for rows written without
    one). A row admitted with signed bytes that hold its plan stores the plan's digest but
    not the plan (:func:`plan_in_bytes`): ``adapter`` reads it from the bytes (``tx_hash``:
    the row's) and it must have that digest.

    Raises:
        PlanRefusedError: ``PLAN_MISMATCH``: the stored bytes hold another plan.
    """
    effects, fee = stored_effects(meta, row), fee_from_json(network_fee_of(meta))
    data = meta.get("plan")
    if data:
        plan = plan_from_json(data)
        return Prepared(plan, plan_digest(plan), effects, fee=fee)
    expected, stored = meta.get("plan_digest"), meta.get("signed")
    if expected is None or stored is None or not has_plans(adapter):
        return Prepared(None, expected, effects, fee=fee)
    plan = adapter.plan_of_signed(signed_from_json(adapter.chain, stored, tx_hash))
    if plan_digest(plan) != expected:
        raise PlanRefusedError(
            f"the stored signed bytes hold plan {plan_digest(plan)}, not the one judged "
            f"(plan {expected}); they are not sent",
            code="PLAN_MISMATCH",
        )
    return Prepared(plan, expected, effects, fee=fee)


def stored_effects(meta: TxMeta, row: Any = None) -> tuple[Effect, ...] | None:
    """The effects stored on ``row`` (whose metadata is ``meta``), if any, whole
    (:func:`waiaas.pipeline.txmeta.effects_of`: an effect may leave out what the row's
    columns hold). Without ``row`` they are read as stored, and an effect stored without
    such a field is refused.

    Raises:
        InvalidInputError: the stored effects do not read as effects.
    """
    data = meta.get("effects") if row is None else effects_of(meta, row)
    return None if data is None else tuple(effects_from_json(data))


def hold_fee(adapter: ChainAdapter, unsigned: UnsignedTx, meta: TxMeta) -> UnsignedTx:
    """``unsigned`` with a network fee no higher than the one judged at admission (which
    the budgets counted and the owner saw): an adapter that prices fees at build lowers its
    price to that maximum (:class:`~waiaas.chains.base.SupportsFeeCap`).

    Raises:
        PlanRefusedError: ``FEE_ABOVE_JUDGED``: the network now asks for more than was
            judged; nothing is signed.
    """
    judged = fee_from_json(network_fee_of(meta))
    if judged is None:
        return unsigned
    held: UnsignedTx | None = unsigned
    if has_fee_cap(adapter):
        held = adapter.cap_fee(unsigned, judged)
    quote = quote_fee(adapter, held) if held is not None else None
    if held is None or (quote is not None and quote.amount > judged.amount):
        raise PlanRefusedError(
            f"the network fee now exceeds the {judged.amount} base units judged and shown "
            "when the transaction was requested; nothing was signed (send it again)",
            code="FEE_ABOVE_JUDGED",
        )
    return held


def check_built(adapter: ChainAdapter, unsigned: UnsignedTx, meta: TxMeta) -> None:
    """Refuse ``unsigned`` unless its plan is exactly the stored one (and the approved one).

    Raises:
        PlanRefusedError: ``PLAN_MISMATCH``.
    """
    expected = meta.get("plan_digest")
    if expected is None or not has_plans(adapter):
        return
    built = plan_digest(adapter.plan_of(unsigned))
    if built != expected:
        raise PlanRefusedError(
            f"the transaction built for signing (plan {built}) is not the one that was judged "
            f"(plan {expected}); nothing was signed",
            code="PLAN_MISMATCH",
        )
    approved = (meta.get("approval") or {}).get("plan_digest")
    if approved is not None and approved != expected:
        raise PlanRefusedError(
            f"the owner approved plan {approved}, not plan {expected}; nothing was signed",
            code="PLAN_MISMATCH",
        )


def check_simulation(
    adapter: ChainAdapter,
    unsigned: UnsignedTx,
    effects: Sequence[Effect] | None,
    *,
    required: bool,
) -> str:
    """The second lock: simulate ``unsigned`` and compare the sender's balance changes with
    the effects that were judged. Returns ``"ok"`` or ``"unavailable"``.

    Where the adapter knows the changes exactly without a simulation (an EVM plain value
    transfer with exactly 21,000 gas to an account without code: no code can run), those
    changes are compared instead, and the check is ``"ok"`` even when ``required`` and the
    backend cannot simulate. Everything else is simulated.

    Native: the sender's outflow (fees excluded) may not exceed its native transfers plus
    the account funding (rent) it pays. Tokens: per token, the outflow may not exceed its
    token transfers of that token. Inflows are never refused.

    Raises:
        PlanRefusedError: ``SIMULATION_MISMATCH`` (an unexplained outflow), or
            ``SIMULATION_UNAVAILABLE`` when ``required`` and the backend cannot simulate.
    """
    if effects is None:
        return "unavailable"
    changes = _balance_changes(adapter, unsigned)
    if changes is None:
        if required:
            raise PlanRefusedError(
                "this chain backend cannot simulate the transaction and "
                "WalletConfig.require_simulation is on; nothing was signed",
                code="SIMULATION_UNAVAILABLE",
            )
        return "unavailable"
    native = 0
    tokens: dict[str, int] = {}
    for e in effects:
        if isinstance(e, NativeTransfer | AccountFunding):
            native += e.amount
        elif isinstance(e, TokenTransfer) and e.token is not None:
            key = _key(e.token)
            tokens[key] = tokens.get(key, 0) + e.amount
    problems: list[str] = []
    if -changes.native > native:
        problems.append(f"native outflow {-changes.native} where the effects explain {native}")
    for token, delta in sorted(changes.tokens.items()):
        explained = tokens.get(_key(token), 0)
        if -delta > explained:
            problems.append(f"{token} outflow {-delta} where the effects explain {explained}")
    if problems:
        raise PlanRefusedError(
            "simulation shows what the decoded effects do not: "
            + "; ".join(problems)
            + "; nothing was signed",
            code="SIMULATION_MISMATCH",
        )
    return "ok"


def _balance_changes(adapter: ChainAdapter, unsigned: UnsignedTx) -> BalanceChanges | None:
    """The sender's balance changes of ``unsigned``: known exactly where the adapter knows
    them without running anything (an EVM plain transfer with 21,000 gas; they count as a
    simulation for ``required``), else simulated, else ``None``."""
    if has_exact_changes(adapter):
        changes = adapter.exact_balance_changes(unsigned)
        if changes is not None:
            return changes
    if has_simulation(adapter):
        return adapter.simulate_balance_changes(unsigned)
    return None


def _key(token: str) -> str:
    return token.lower() if token.startswith("0x") else token
