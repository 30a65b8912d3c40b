"""What an owner reads before deciding: a pending transaction as display rows.

One small adapter turns a stored transaction into :class:`EffectRow` values (every effect in
human units, full addresses) and a one-line summary. The approval page, the APPROVAL
notification and the CLI all use it, so the three never disagree.

Rows come from the effects decoded from the plan that will be signed, when the pipeline
stored them (``meta["effects"]``), else from the stored request. The network fee comes from
the transaction as built when it was requested (``meta["network_fee"]``): on EVM chains
the most it can cost (gas limit times max fee per gas), on Solana what it pays. Token
decimals come from the chain adapter (``token_decimals``) or else the request; an amount whose
decimals are unknown is shown in base units (never guessed).

Pure apart from the optional ``token_decimals`` look-up; no web framework is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from waiaas.chains.base import NativeAsset
from waiaas.chains.families import native_asset_for
from waiaas.errors import WaiaasError
from waiaas.notify._format import format_amount
from waiaas.pipeline.approvals import iso_time
from waiaas.types import Approve, Batch, ContractCall, TokenTransfer, Transfer

__all__ = [
    "EffectRow",
    "NetworkFee",
    "TxDisplay",
    "describe_fee",
    "describe_transaction",
    "native_unit",
]

TokenDecimals = Callable[[str], int | None]


def native_unit(chain: str, native: NativeAsset | None = None) -> tuple[str, int] | None:
    """``(symbol, decimals)`` of the chain's native asset: ``native`` when given (what the
    chain's adapter names, see :class:`~waiaas.chains.base.SupportsNativeAsset`), else the
    shipped family's (SOL, ETH), else ``None`` (amounts shown in base units)."""
    unit = native if native is not None else native_asset_for(chain)
    return None if unit is None else (unit.symbol, unit.decimals)


@dataclass(frozen=True)
class EffectRow:
    """One thing the transaction does, for people.

    Attributes:
        kind: ``send``, ``token transfer``, ``token approval``, ``contract call``, ``memo``.
        text: the whole line, e.g. ``send 1.5 SOL to 9xQe...`` (addresses never shortened).
        amount: the amount in human units with its symbol (``1.5 SOL``), if any.
        counterparty: the recipient, spender or contract, if any.
        token: the token (mint / contract) concerned, if any.
    """

    kind: str
    text: str
    amount: str | None = None
    counterparty: str | None = None
    token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {
            "kind": self.kind,
            "text": self.text,
            "amount": self.amount,
            "counterparty": self.counterparty,
            "token": self.token,
        }


@dataclass(frozen=True)
class NetworkFee:
    """What the transaction pays the network, for people.

    Attributes:
        text: the whole line, e.g. ``network fee: at most 0.000042 ETH (gas limit 21000
            times max fee per gas 2 gwei, priced when requested)``.
        amount: the fee in human units with the native symbol (``0.000042 ETH``).
        base_units: the same in base units (wei, lamports).
        maximum: ``True`` when ``amount`` is an upper bound (EVM: gas limit times max fee
            per gas; the fee paid is usually lower), ``False`` when it is what the transaction
            pays (Solana: signature fee plus priority fee) or an adapter's estimate.
    """

    text: str
    amount: str
    base_units: int
    maximum: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (``base_units`` as a decimal string)."""
        return {
            "text": self.text,
            "amount": self.amount,
            "base_units": str(self.base_units),
            "maximum": self.maximum,
        }


@dataclass(frozen=True)
class TxDisplay:
    """A transaction as the approval page, notifications and the CLI show it.

    Attributes:
        effects: every effect, in order.
        summary: one line naming the agent and every effect.
        reasons: why the tier was chosen (the policy's own words), for APPROVAL: why the
            owner must approve.
        expires_at / expires_iso: when the approval window closes (Unix seconds / ISO 8601).
        execute_after_iso: when a DELAY transaction executes, ISO 8601.
        network_fee: the network fee of the transaction as built when it was requested
            (``None`` when it is not known yet: a request built only at signing).
    """

    effects: tuple[EffectRow, ...]
    summary: str
    reasons: tuple[str, ...]
    expires_at: int | None
    expires_iso: str | None
    execute_after_iso: str | None
    network_fee: NetworkFee | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {
            "effects": [e.to_dict() for e in self.effects],
            "summary": self.summary,
            "reasons": list(self.reasons),
            "expires_at": self.expires_at,
            "expires_iso": self.expires_iso,
            "execute_after_iso": self.execute_after_iso,
            "network_fee": self.network_fee.to_dict() if self.network_fee is not None else None,
        }


def _native(unit: NativeAsset | None, amount: int) -> str:
    if unit is None:
        return format_amount(amount, None, "native")
    return format_amount(amount, unit.decimals, unit.symbol)


def _token(amount: int, token: str, decimals: int | None, lookup: TokenDecimals | None) -> str:
    # The chain's word first (the pipeline refuses requests whose decimals contradict it).
    if lookup is not None:
        try:
            found = lookup(token)
        except WaiaasError:
            found = None
        if found is not None:
            decimals = found
    if decimals is None:
        return f"{amount} base units of token {token}"
    return f"{format_amount(amount, decimals, None)} of token {token}"


def _rows(
    chain: str, unit: NativeAsset | None, request: Any, lookup: TokenDecimals | None
) -> list[EffectRow]:
    if isinstance(request, Batch):
        out: list[EffectRow] = []
        for item in request.requests:
            out.extend(_rows(chain, unit, item, lookup))
        return out
    if isinstance(request, Transfer):
        amount = _native(unit, request.amount)
        rows = [
            EffectRow("send", f"send {amount} to {request.to}", amount, request.to),
        ]
        if request.memo:
            rows.append(EffectRow("memo", f"memo: {request.memo}"))
        return rows
    if isinstance(request, TokenTransfer):
        amount = _token(request.amount, request.token, request.decimals, lookup)
        return [
            EffectRow(
                "token transfer",
                f"send {amount} to {request.to}",
                amount,
                request.to,
                request.token,
            )
        ]
    if isinstance(request, Approve):
        amount = _token(request.amount, request.token, request.decimals, lookup)
        unlimited = request.amount >= 2**255 or (chain == "solana" and request.amount >= 2**63)
        text = f"allow spender {request.spender} to move up to {amount}"
        if unlimited:
            text += " (practically unlimited)"
        return [EffectRow("token approval", text, amount, request.spender, request.token)]
    if isinstance(request, ContractCall):
        rows = []
        if request.value:
            amount = _native(unit, request.value)
            rows.append(
                EffectRow("send", f"send {amount} to contract {request.to}", amount, request.to)
            )
        if chain == "evm":
            what = f"method selector {request.selector}" if request.selector else "no calldata"
            text = f"call contract {request.to} ({what}, {len(request.data)} bytes of calldata)"
        else:
            writable = sum(1 for a in request.accounts if a.is_writable)
            text = (
                f"call program {request.to} with {len(request.accounts)} accounts "
                f"({writable} writable) and {len(request.data)} bytes of data"
            )
        rows.append(EffectRow("contract call", text, None, request.to))
        return rows
    return [EffectRow("unknown", f"a {type(request).__name__} request")]


def _plan_rows(
    chain: str, unit: NativeAsset | None, stored: Sequence[Any], lookup: TokenDecimals | None
) -> list[EffectRow]:
    """Rows from the effects decoded from the plan that will be signed (``meta["effects"]``)."""
    from waiaas import plan as p

    effects = p.effects_from_json(stored)

    def info(token: str) -> tuple[int, str] | None:
        if lookup is None:
            return None
        try:
            places = lookup(token)
        except WaiaasError:
            return None
        return None if places is None else (places, "tokens")

    units = (unit.decimals, unit.symbol) if unit is not None else (0, "base units of native")
    rows: list[EffectRow] = []
    for effect in effects:
        text = p.describe_effect(effect, chain=chain, token_info=info, native=units)
        amount: str | None = None
        if isinstance(effect, p.NativeTransfer | p.AccountFunding | p.FeeEffect):
            amount = _native(unit, effect.amount)
        elif isinstance(effect, p.TokenTransfer | p.TokenApproval) and effect.token is not None:
            amount = _token(effect.amount, effect.token, None, lookup)
        if isinstance(effect, p.NativeTransfer):
            row = EffectRow("send", text, amount, effect.destination)
        elif isinstance(effect, p.AccountFunding):
            row = EffectRow("account funding", text, amount, effect.account)
        elif isinstance(effect, p.FeeEffect):
            row = EffectRow("fee", text, amount)
        elif isinstance(effect, p.TokenTransfer):
            to = effect.destination_owner or effect.destination_account
            row = EffectRow("token transfer", text, amount, to, effect.token)
        elif isinstance(effect, p.TokenApproval):
            row = EffectRow("token approval", text, amount, effect.spender, effect.token)
        elif isinstance(effect, p.AuthorityChange):
            row = EffectRow("authority change", text, None, effect.new_authority)
        elif isinstance(effect, p.AccountClose):
            row = EffectRow("account close", text, None, effect.destination)
        elif isinstance(effect, p.ContractCall):
            row = EffectRow("contract call", text, None, effect.contract)
        elif isinstance(effect, p.ProgramCall):
            row = EffectRow("program call", text, None, effect.program)
        else:
            row = EffectRow("memo", text)
        rows.append(row)
    return rows


def _stored_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 80:
        return int(value)
    return None


def describe_fee(
    chain: str,
    stored: Mapping[str, Any] | None,
    effects: Sequence[Any] | None = None,
    *,
    native: NativeAsset | None = None,
) -> NetworkFee | None:
    """The network fee line of a transaction from its stored quote (``meta["network_fee"]``).

    Args:
        chain: ``solana`` / ``evm`` or a third party's chain (native unit and decimals).
        native: the chain's native coin as its adapter names it (default: the shipped
            family's; ``None`` for another chain: base units).
        stored: ``{"amount", "basis", "gas_limit"?, "max_fee_per_gas"?}`` as the pipeline
            stores it; ``None`` or a malformed value gives ``None``.
        effects: the stored effects (``effects_to_json`` form); on Solana their priority fee
            splits the fee into signature and priority parts.

    Example::

        fee = describe_fee("evm", {"amount": "42000000000000", "basis": "maximum",
                                   "gas_limit": "21000", "max_fee_per_gas": "2000000000"})
        fee.text  # "network fee: at most 0.000042 ETH (gas limit 21000 times max fee ..."
    """
    if not isinstance(stored, Mapping):
        return None
    amount = _stored_int(stored, "amount")
    basis = stored.get("basis")
    if amount is None or basis not in ("maximum", "exact", "estimate"):
        return None
    unit = native if native is not None else native_asset_for(chain)
    shown = _native(unit, amount)
    if basis == "maximum":
        gas = _stored_int(stored, "gas_limit")
        price = _stored_int(stored, "max_fee_per_gas")
        factors = ""
        if gas is not None and price is not None and gas * price == amount:
            factors = f"gas limit {gas} times max fee per gas {format_amount(price, 9, 'gwei')}, "
        text = f"network fee: at most {shown} ({factors}priced when requested)"
        return NetworkFee(text, shown, amount, True)
    if basis == "estimate":
        return NetworkFee(f"network fee: about {shown} (estimated)", shown, amount, False)
    priority = 0
    if effects is not None:
        from waiaas import plan as p

        try:
            decoded: Sequence[Any] = p.effects_from_json(effects)
        except WaiaasError:
            decoded = ()
        priority = sum(e.amount for e in decoded if isinstance(e, p.FeeEffect))
    text = f"network fee: {shown}"
    if 0 < priority <= amount:
        text += (
            f" (signature fee {_native(unit, amount - priority)} + priority fee "
            f"{_native(unit, priority)})"
        )
    return NetworkFee(text, shown, amount, False)


def describe_transaction(
    *,
    chain: str,
    request: Mapping[str, Any] | None,
    agent_name: str,
    agent_id: str,
    decision: Mapping[str, Any] | None = None,
    approval_expires_at: int | None = None,
    execute_after: int | None = None,
    token_decimals: TokenDecimals | None = None,
    effects: Sequence[Any] | None = None,
    network_fee: Mapping[str, Any] | None = None,
    native: NativeAsset | None = None,
) -> TxDisplay:
    """Display rows and a summary for a stored transaction.

    Args:
        chain: ``solana`` / ``evm`` or a third party's chain (native unit and decimals).
        request: the stored request (``TransactionInfo.request``).
        agent_name / agent_id: who asked.
        decision: the stored policy decision (its tier reasons explain the tier).
        approval_expires_at / execute_after: Unix seconds, when known.
        token_decimals: looks up a token's decimals on the chain (``None``: unknown).
        effects: the stored effects decoded from the plan that will be signed
            (``effects_to_json`` form); when given they are shown instead of the request,
            since they are what the signature moves.
        network_fee: the stored fee quote of the transaction as built (see
            :func:`describe_fee`).
        native: the chain's native coin as its adapter names it
            (:func:`waiaas.chains.base.native_asset_of`); default: the shipped family's
            (SOL, ETH), and base units for another chain.

    Raises:
        InvalidInputError: the stored request does not parse.

    Example::

        shown = describe_transaction(chain="solana", request=tx.request,
                                     agent_name="trader", agent_id=tx.agent_id)
        print(shown.summary)
    """
    from waiaas.pipeline.requests import parse_request

    unit = native if native is not None else native_asset_for(chain)
    rows: list[EffectRow] = []
    if effects is not None:
        try:
            rows = _plan_rows(chain, unit, effects, token_decimals)
        except WaiaasError:
            rows = [EffectRow("warning", "the stored effects of this transaction are unreadable")]
            if request is not None:
                rows += _rows(chain, unit, parse_request(request), token_decimals)
    elif request is not None:
        rows = _rows(chain, unit, parse_request(request), token_decimals)
    effects_shown = tuple(rows)
    if effects_shown:
        summary = f"Agent {agent_name} ({agent_id}) asks to " + "; ".join(
            e.text for e in effects_shown
        )
    else:
        summary = f"Agent {agent_name} ({agent_id}) asks for a transaction with no recorded effects"
    tier_reasons = [
        r
        for r in (decision or {}).get("reasons") or ()
        if isinstance(r, Mapping) and r.get("effect") == "tier" and r.get("message")
    ]
    final = (decision or {}).get("tier")
    deciding = [r for r in tier_reasons if r.get("tier") == final] or tier_reasons
    reasons = [str(r["message"]) for r in deciding]
    return TxDisplay(
        effects=effects_shown,
        summary=summary,
        reasons=tuple(reasons),
        expires_at=approval_expires_at,
        expires_iso=iso_time(approval_expires_at) if approval_expires_at is not None else None,
        execute_after_iso=iso_time(execute_after) if execute_after is not None else None,
        network_fee=describe_fee(chain, network_fee, effects, native=unit),
    )
