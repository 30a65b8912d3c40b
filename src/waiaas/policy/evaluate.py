"""``evaluate``: the pure policy decision for one request.

Precedence is **deny-wins**: every applicable rule is evaluated (disabled rules and rules
scoped to another agent, chain or network are skipped; the agent's own and the global
rules both apply), any deny denies with every reason listed, otherwise the tier is the
highest any rule asks for. Priority only orders the reasons. The function reads no clock,
no database and no network: ``now``, usage and prices are arguments.

See docs/policies.md for the exact semantics of every policy type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from waiaas.config import WalletConfig
from waiaas.errors import InvalidInputError
from waiaas.policy.addresses import _normalize_or_none, _safe
from waiaas.policy.model import (
    EXACT,
    NATIVE,
    AgentContext,
    AssetPrice,
    BudgetFigure,
    Decision,
    PolicySpec,
    Reason,
    Usage,
    UsdBudgetFigure,
    _check_int,
    normalize_asset_key,
)
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
    SpendingLimitRules,
    TimeRestrictionRules,
    daily_bounds,
)
from waiaas.policy.units import describe_amount, format_usd
from waiaas.types import (
    AgentStatus,
    Approve,
    Batch,
    ContractCall,
    Request,
    Tier,
    TokenTransfer,
    Transfer,
    TxType,
)

if TYPE_CHECKING:
    from waiaas.plan import Effect

__all__ = ["RequestModel", "evaluate", "spend_of"]

RequestModel = Transfer | TokenTransfer | ContractCall | Approve | Batch
_ITEM_TYPES = (Transfer, TokenTransfer, ContractCall, Approve)


@lru_cache(maxsize=1)
def _default_config() -> WalletConfig:
    return WalletConfig()


@lru_cache(maxsize=1)
def _request_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(Request)


def coerce_request(request: object) -> RequestModel:
    """Accept a request model, or a mapping validated as one.

    Raises:
        InvalidInputError: anything else, with every problem listed.
    """
    if isinstance(request, RequestModel):
        return request
    if isinstance(request, Mapping):
        try:
            result: RequestModel = _request_adapter().validate_python(dict(request))
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ]
            raise InvalidInputError(
                "invalid request: " + "; ".join(problems), field="request", problems=problems
            ) from None
        return result
    raise InvalidInputError(
        f"request must be a Transfer, TokenTransfer, ContractCall, Approve or Batch, "
        f"not {type(request).__name__}",
        field="request",
    )


# --------------------------------------------------------------------------- items


@dataclass(frozen=True, slots=True)
class _Item:
    index: int | None  # position in a batch, None for a single request
    kind: TxType
    to: str | None = None
    token: str | None = None
    spender: str | None = None
    amount: int = 0
    value: int = 0
    selector: str | None = None
    accounts: tuple[str, ...] = ()
    decimals: int | None = None
    # effect-only facts (see _items_from_effects)
    label: str | None = None  # "effects[3]" instead of "requests[3]"
    paid_to_self: bool = False  # rent / fee: value leaves the agent but pays no recipient
    malformed: bool = False  # a known call encoded non-canonically: refused
    unresolved: bool = False  # a token transfer / approval whose token could not be read
    authority: str | None = None  # AuthorityChange kind
    method: str | None = None

    @property
    def where(self) -> str:
        if self.label is not None:
            return f"{self.label}: "
        return "" if self.index is None else f"requests[{self.index}]: "

    def recipients(self) -> tuple[str, ...]:
        """Addresses that receive value or control (checked against whitelists)."""
        if self.kind in (TxType.TRANSFER, TxType.TOKEN_TRANSFER):
            return (self.to,) if self.to and not self.paid_to_self else ()
        if self.kind == TxType.CONTRACT_CALL and self.value > 0 and self.to:
            return (self.to,)
        if self.authority is not None and self.to:
            return (self.to,)
        return ()

    def counterparties(self) -> tuple[str, ...]:
        """Every address the request names (checked against blacklists)."""
        found = [a for a in (self.to, self.token, self.spender) if a]
        found.extend(self.accounts)
        return tuple(dict.fromkeys(found))


def _items(request: RequestModel) -> tuple[tuple[Any, int | None], ...]:
    if isinstance(request, Batch):
        return tuple((r, i) for i, r in enumerate(request.requests))
    return ((request, None),)


def _normalize_items(
    request: RequestModel, chain: str
) -> tuple[list[_Item], list[tuple[str, str]]]:
    """Items with addresses in normal form, plus every invalid address as (where, message)."""
    items: list[_Item] = []
    bad: list[tuple[str, str]] = []
    for raw, index in _items(request):
        where = "" if index is None else f"requests[{index}]."
        fields: dict[str, Any] = {}
        names = [n for n in ("to", "token", "spender") if n in type(raw).model_fields]
        for name in names:
            value = getattr(raw, name)
            normal = _normalize_or_none(chain, value)
            if normal is None:
                bad.append((f"{where}{name}", f"{_safe(value)} is not a valid {chain} address"))
            fields[name] = normal
        accounts: list[str] = []
        if isinstance(raw, ContractCall):
            for n, acc in enumerate(raw.accounts):
                normal = _normalize_or_none(chain, acc.pubkey)
                if normal is None:
                    bad.append(
                        (
                            f"{where}accounts[{n}]",
                            f"{_safe(acc.pubkey)} is not a valid {chain} address",
                        )
                    )
                else:
                    accounts.append(normal)
            fields["value"] = raw.value
            fields["selector"] = raw.selector
        if isinstance(raw, Transfer | TokenTransfer | Approve):
            fields["amount"] = raw.amount
        if isinstance(raw, TokenTransfer | Approve):
            fields["decimals"] = raw.decimals
        items.append(_Item(index=index, kind=raw.type, accounts=tuple(accounts), **fields))
    return items, bad


def _with_fee(spend: dict[str, int], fee: int) -> dict[str, int]:
    """``spend`` with ``fee`` more native (a fee given apart from the items)."""
    if fee > 0:
        spend[NATIVE] = spend.get(NATIVE, 0) + fee
    return spend


def _spend(items: Sequence[_Item]) -> dict[str, int]:
    """Per asset, what the items take out of the wallet. An approval counts its full
    allowance against its token when it is granted (the spender may take it all at once)."""
    spend: dict[str, int] = {}
    for item in items:
        if item.kind == TxType.TRANSFER:
            spend[NATIVE] = spend.get(NATIVE, 0) + item.amount
        elif item.kind in (TxType.TOKEN_TRANSFER, TxType.APPROVE) and item.token:
            spend[item.token] = spend.get(item.token, 0) + item.amount
        elif item.kind == TxType.CONTRACT_CALL and item.value > 0:
            spend[NATIVE] = spend.get(NATIVE, 0) + item.value
    return spend


def _norm(chain: str, address: str | None) -> str | None:
    if address is None:
        return None
    return _normalize_or_none(chain, address) or address


def _abi_addresses(chain: str, data: bytes) -> tuple[str, ...]:
    """Addresses an EVM calldata's ABI words carry (12 zero bytes + 20 bytes), so that a
    blacklist sees a recipient a contract would forward to."""
    if chain != "evm" or len(data) < 36:
        return ()
    out: list[str] = []
    body = data[4:]
    for start in range(0, len(body) - 31, 32):
        word = body[start : start + 32]
        if word[:12] == bytes(12) and word[12:] != bytes(20):
            normal = _normalize_or_none("evm", "0x" + word[12:].hex())
            if normal is not None:
                out.append(normal)
    return tuple(dict.fromkeys(out))


def _items_from_effects(
    effects: Sequence[Effect], chain: str, calldata: bytes = b""
) -> list[_Item]:
    """The evaluator's items for effects decoded from the plan that will be signed.

    Native transfers, account funding (rent) and fees spend native; token transfers and
    approvals spend their token; authority changes, closes and unknown code name their
    parties. Every address of every effect is a counterparty (blacklists).
    """
    items: list[_Item] = []
    for n, e in enumerate(effects):
        label = f"effects[{n}]"
        item = _spending_item(n, e, chain, label)
        if item is None:
            item = _party_item(n, e, chain, label, calldata)
        if item is not None:  # a memo moves nothing, names nobody
            items.append(item)
    return items


def _spending_item(n: int, e: Effect, chain: str, label: str) -> _Item | None:
    """The item of an effect that spends: native, rent, a fee, a token, an allowance."""
    from waiaas.plan import effects as fx

    if isinstance(e, fx.NativeTransfer):
        to = _norm(chain, e.destination)
        return _Item(
            n,
            TxType.TRANSFER,
            to=to,
            amount=e.amount,
            label=label,
            accounts=tuple(a for a in (_norm(chain, e.source),) if a),
        )
    if isinstance(e, fx.AccountFunding):
        return _Item(
            n,
            TxType.TRANSFER,
            to=_norm(chain, e.account),
            amount=e.amount,
            label=label,
            paid_to_self=e.purpose == "token_account_rent",
        )
    if isinstance(e, fx.FeeEffect):
        return _Item(n, TxType.TRANSFER, amount=e.amount, label=label, paid_to_self=True)
    if isinstance(e, fx.TokenTransfer):
        owner = _norm(chain, e.destination_owner)
        account = _norm(chain, e.destination_account)
        parties = tuple(a for a in (account, owner, _norm(chain, e.source_account)) if a)
        return _Item(
            n,
            TxType.TOKEN_TRANSFER,
            to=owner or account,
            token=_norm(chain, e.token),
            amount=e.amount,
            label=label,
            accounts=parties,
            unresolved=e.token is None,
        )
    if isinstance(e, fx.TokenApproval):
        return _Item(
            n,
            TxType.APPROVE,
            token=_norm(chain, e.token),
            spender=_norm(chain, e.spender),
            amount=e.amount,
            label=label,
            accounts=tuple(a for a in (_norm(chain, e.owner_account),) if a),
            unresolved=e.token is None,
            method=e.kind,
        )
    return None


def _party_item(n: int, e: Effect, chain: str, label: str, calldata: bytes) -> _Item | None:
    """The item of an effect that names parties: an authority change, a close, a call."""
    from waiaas.plan import effects as fx

    if isinstance(e, fx.AuthorityChange):
        return _Item(
            n,
            TxType.TRANSFER,
            to=_norm(chain, e.new_authority),
            label=label,
            accounts=tuple(a for a in (_norm(chain, e.account),) if a),
            authority=e.kind,
        )
    if isinstance(e, fx.AccountClose):
        return _Item(
            n,
            TxType.TRANSFER,
            to=_norm(chain, e.destination),
            amount=0,
            label=label,
            accounts=tuple(a for a in (_norm(chain, e.account),) if a),
        )
    if isinstance(e, fx.ContractCall):
        contract = _norm(chain, e.contract)
        return _Item(
            n,
            TxType.CONTRACT_CALL,
            to=contract,
            selector=e.selector,
            label=label,
            accounts=_abi_addresses(chain, calldata),
            malformed=e.malformed,
            method=e.method,
        )
    if isinstance(e, fx.ProgramCall):
        return _Item(
            n,
            TxType.CONTRACT_CALL,
            to=_norm(chain, e.program),
            label=label,
            accounts=tuple(a for a in (_norm(chain, x) for x in e.accounts) if a),
            malformed=e.malformed,
            method=e.method,
        )
    return None


def spend_of(request: object, chain: str) -> dict[str, int]:
    """What a request moves, per asset key, in base units (batches summed). Pure.

    Native transfers and contract-call ``value`` count as ``"native"``; token transfers and
    approvals (their full allowance) count under the normalised token address. This is the
    request as written; with decoded effects :func:`evaluate` also counts rent and fees
    (``Decision.spend``), which is what the pipeline records. The shell records
    these figures so that :func:`~waiaas.policy.compute_usage` counts exactly what
    :func:`evaluate` checks.

    Raises:
        InvalidInputError: not a request, or an address invalid on ``chain``.
    """
    items, bad = _normalize_items(coerce_request(request), chain.lower())
    if bad:
        raise InvalidInputError(
            "; ".join(f"{w}: {m}" for w, m in bad),
            field="request",
            problems=[f"{w}: {m}" for w, m in bad],
        )
    return _spend(items)


# --------------------------------------------------------------------------- the accumulator


@dataclass(frozen=True, slots=True)
class _Ask:
    tier: Tier
    delay: int | None
    timeout: int | None


class _Verdict:
    """Collects reasons, tier asks and budget figures while rules run."""

    def __init__(self) -> None:
        self.reasons: list[Reason] = []
        self.asks: list[_Ask] = []
        self.budget: list[BudgetFigure] = []
        self.budget_usd: list[UsdBudgetFigure] = []
        self.denied = False

    def add(
        self,
        spec: PolicySpec | None,
        kind: str,
        effect: str,
        message: str,
        *,
        tier: Tier | None = None,
        figures: Mapping[str, object] | None = None,
        delay: int | None = None,
        timeout: int | None = None,
    ) -> None:
        self.reasons.append(
            Reason(
                rule_id=spec.id if spec else None,
                type=kind,
                effect=effect,
                message=message,
                tier=tier,
                priority=spec.priority if spec else 0,
                figures={k: str(v) for k, v in (figures or {}).items()},
            )
        )
        if effect == "deny":
            self.denied = True
        if tier is not None:
            self.asks.append(_Ask(tier, delay, timeout))

    def deny(self, spec: PolicySpec | None, kind: str, message: str, **figures: object) -> None:
        self.add(spec, kind, "deny", message, figures=figures)

    def tier(
        self,
        spec: PolicySpec | None,
        kind: str,
        tier: Tier,
        message: str,
        *,
        delay: int | None = None,
        timeout: int | None = None,
        **figures: object,
    ) -> None:
        self.add(
            spec, kind, "tier", message, tier=tier, figures=figures, delay=delay, timeout=timeout
        )


@dataclass(frozen=True, slots=True)
class _Env:
    agent: AgentContext
    usage: Usage
    now: int
    config: WalletConfig
    prices: Mapping[str, AssetPrice]
    items: tuple[_Item, ...]
    spend: Mapping[str, int]
    token_decimals: Mapping[str, tuple[int, str | None]]
    rules: tuple[PolicySpec, ...] = ()
    fees: int = 0  # native network fees: in the rolling windows, not in ``spend``

    def fee_of(self, asset: str) -> int:
        """The network fees this request adds to ``asset``'s rolling windows."""
        return self.fees if asset == NATIVE else 0

    def with_fees(self, asset: str, amount: int) -> str:
        """``amount`` for people, with the fees the windows add to it named."""
        fee = self.fee_of(asset)
        if not fee:
            return self.show(asset, amount)
        return f"{self.show(asset, amount)} + {self.show(asset, fee)} network fee"

    def show(self, asset: str, amount: int) -> str:
        decimals, symbol = self.token_decimals.get(asset, (None, None))
        return describe_amount(
            self.agent.chain,
            asset,
            amount,
            decimals=decimals,
            symbol=symbol,
            native=self.agent.native_units(),
        )


def _tier_for(bounds: Sequence[Any], amount: Any) -> Tier:
    """The lowest tier whose (inclusive) bound holds; a missing bound skips its tier."""
    for tier, bound in zip((Tier.INSTANT, Tier.NOTIFY, Tier.DELAY), bounds, strict=True):
        if bound is not None and amount <= bound:
            return tier
    return Tier.APPROVAL


# --------------------------------------------------------------------------- SPENDING_LIMIT


def _spending_limit(env: _Env, out: _Verdict, spec: PolicySpec, r: SpendingLimitRules) -> set[str]:
    """Apply one SPENDING_LIMIT; return the assets whose tier it decided."""
    covered: set[str] = set()
    if r.asset == "*":
        assets = sorted(env.spend)
        if not assets:
            return covered
    else:
        key = normalize_asset_key(r.asset)
        # A request that sends none of the asset may still pay its network fee in it: the
        # rolling budgets count that fee; the request's own tier comes from other rules.
        fee_only = key not in env.spend
        if fee_only and not env.fee_of(key):
            return covered
        assets = [key]
        amount = env.spend.get(key, 0)
        _asset_caps(env, out, spec, r, key, amount, fee_only=fee_only)
        if fee_only:
            return covered
        if _asset_tier(env, out, spec, r, key, amount):
            covered.add(key)
    if _has_usd(r):
        with localcontext(EXACT):
            covered |= _spending_usd(env, out, spec, r, assets)
    return covered


def _asset_caps(
    env: _Env,
    out: _Verdict,
    spec: PolicySpec,
    r: SpendingLimitRules,
    key: str,
    amount: int,
    *,
    fee_only: bool,
) -> None:
    """One asset's per-transaction cap and rolling budgets: each a budget figure, and
    exceeded, a denial (or the owner's approval, per ``on_exceed``)."""
    used = env.usage.spent_of(key)
    for window, cap, spent in (
        ("transaction", r.per_transaction, 0),
        ("24h", r.daily_total, used.day),
        ("7d", r.weekly_total, used.week),
    ):
        if cap is None or (fee_only and window == "transaction"):
            continue
        # The rolling budgets count every fee the agent pays; one request is judged on
        # what it sends.
        counted = amount if window == "transaction" else amount + env.fee_of(key)
        out.budget.append(
            BudgetFigure(
                rule_id=spec.id,
                asset=key,
                window=window,
                spent=spent,
                requested=counted,
                limit=cap,
                remaining=max(cap - spent, 0),
            )
        )
        if spent + counted > cap:
            what = "per-transaction limit" if window == "transaction" else f"{window} budget"
            left = f" ({env.show(key, max(cap - spent, 0))} left)" if spent else ""
            shown = env.show(key, amount) if window == "transaction" else env.with_fees(key, amount)
            _exceed(
                out,
                spec,
                r,
                f"{shown} exceeds the {what} of {env.show(key, cap)}{left}",
                asset=key,
                window=window,
                amount=counted,
                spent=spent,
                limit=cap,
            )


def _asset_tier(
    env: _Env, out: _Verdict, spec: PolicySpec, r: SpendingLimitRules, key: str, amount: int
) -> bool:
    """One asset's tier under the limit's thresholds, and its velocity tier; whether the
    limit has thresholds (so decided the asset's tier)."""
    if all(b is None for b in r.thresholds):
        return False
    kind = PolicyType.SPENDING_LIMIT.value
    tier = _tier_for(r.thresholds, amount)
    out.tier(
        spec,
        kind,
        tier,
        f"{env.show(key, amount)} is {tier.value} under this limit",
        delay=r.delay_seconds,
        timeout=r.approval_timeout,
        asset=key,
        amount=amount,
        **_bounds_figures(r.thresholds),
    )
    _velocity(env, out, spec, kind, key, amount, r.daily_thresholds, tier, r=r)
    return True


def _velocity(
    env: _Env,
    out: _Verdict,
    spec: PolicySpec | None,
    kind: str,
    asset: str,
    amount: int,
    bounds: Sequence[Any],
    request_tier: Tier,
    *,
    r: SpendingLimitRules | None = None,
) -> None:
    """Velocity tier: at least the tier of the rolling 24 h total of ``asset`` including this
    request (in-flight and confirmed spending, the figures the daily budget uses), so that
    splitting an amount into small requests does not lower its tier."""
    if all(b is None for b in bounds):
        return
    day = env.usage.spent_of(asset).day
    total = day + amount + env.fee_of(asset)
    tier = _tier_for(bounds, total)
    if Tier.highest(tier, request_tier) == request_tier:
        return
    out.tier(
        spec,
        kind,
        tier,
        f"{env.show(asset, total)} in 24 h including this request is {tier.value} (velocity tier)",
        delay=r.delay_seconds if r is not None else None,
        timeout=r.approval_timeout if r is not None else None,
        asset=asset,
        amount=amount,
        day_total=total,
        **{f"daily_{k}": v for k, v in _bounds_figures(bounds).items()},
    )


def _velocity_usd(
    out: _Verdict,
    spec: PolicySpec,
    kind: str,
    value: Decimal,
    day: Decimal,
    bounds: Sequence[Any],
    request_tier: Tier,
    r: SpendingLimitRules,
) -> None:
    """The USD velocity tier (see :func:`_velocity`)."""
    if all(b is None for b in bounds):
        return
    total = day + value
    tier = _tier_for(bounds, total)
    if Tier.highest(tier, request_tier) == request_tier:
        return
    out.tier(
        spec,
        kind,
        tier,
        f"{format_usd(total)} in 24 h including this request is {tier.value} (velocity tier)",
        delay=r.delay_seconds,
        timeout=r.approval_timeout,
        amount_usd=value,
        day_total_usd=total,
        **{f"daily_{k}_usd": v for k, v in _bounds_figures(bounds).items()},
    )


def _bounds_figures(bounds: Sequence[Any]) -> dict[str, object]:
    names = ("instant_max", "notify_max", "delay_max")
    return {n: b for n, b in zip(names, bounds, strict=True) if b is not None}


def _has_usd(r: SpendingLimitRules) -> bool:
    return any(
        v is not None
        for v in (r.per_transaction_usd, r.daily_total_usd, r.weekly_total_usd, *r.thresholds_usd)
    )


def _exceed(
    out: _Verdict, spec: PolicySpec, r: SpendingLimitRules, message: str, **figures: object
) -> None:
    kind = PolicyType.SPENDING_LIMIT.value
    if r.on_exceed == "approval":
        out.tier(
            spec,
            kind,
            Tier.APPROVAL,
            message + "; the owner must approve",
            delay=r.delay_seconds,
            timeout=r.approval_timeout,
            **figures,
        )
    else:
        out.deny(spec, kind, message, **figures)


def _usd_value(env: _Env, amounts: Mapping[str, int]) -> tuple[Decimal | None, list[str]]:
    total = Decimal(0)
    missing: list[str] = []
    for asset, amount in sorted(amounts.items()):
        if amount == 0:
            continue
        price = env.prices.get(asset)
        if price is None or price.usd <= 0:  # a zero price is unknown, never "free"
            missing.append(asset)
        else:
            total += price.value_of(amount)
    return (None if missing else total), missing


def _spending_usd(
    env: _Env, out: _Verdict, spec: PolicySpec, r: SpendingLimitRules, assets: list[str]
) -> set[str]:
    request = {a: env.spend[a] for a in assets}
    history = assets if r.asset != "*" else sorted(set(env.usage.spent) | set(assets))
    value, missing = _usd_value(env, request)
    # the rolling windows count this request's network fees too
    with_fees, _ = _usd_value(env, {a: request[a] + env.fee_of(a) for a in assets})
    day, miss_day = _usd_value(env, {a: env.usage.spent_of(a).day for a in history})
    week, miss_week = _usd_value(env, {a: env.usage.spent_of(a).week for a in history})
    label = "every asset" if r.asset == "*" else assets[0]
    caps: tuple[tuple[str, Decimal | None, Decimal | None, list[str]], ...] = (
        ("transaction", r.per_transaction_usd, Decimal(0), []),
        ("24h", r.daily_total_usd, day, miss_day),
        ("7d", r.weekly_total_usd, week, miss_week),
    )
    _usd_caps(out, spec, r, caps, label, value, with_fees, missing)
    if all(b is None for b in r.thresholds_usd):
        return set()
    _usd_tier(out, spec, r, value, day, missing)
    return set(assets)


def _usd_caps(
    out: _Verdict,
    spec: PolicySpec,
    r: SpendingLimitRules,
    caps: tuple[tuple[str, Decimal | None, Decimal | None, list[str]], ...],
    label: str,
    value: Decimal | None,
    with_fees: Decimal | None,
    missing: list[str],
) -> None:
    """The USD cap and budgets: each a budget figure, and exceeded, a denial (or the
    owner's approval); one that cannot be priced, the rule's ``unpriced_tier``."""
    kind = PolicyType.SPENDING_LIMIT.value
    for window, cap, spent, miss in caps:
        if cap is None:
            continue
        unknown = sorted(set(missing) | set(miss))
        if value is None or spent is None:
            out.tier(
                spec,
                kind,
                Tier(r.unpriced_tier),
                f"the USD {window} cap of {format_usd(cap)} cannot be checked: no price for "
                + ", ".join(unknown)
                + "; an unknown price is never treated as zero",
                delay=r.delay_seconds,
                timeout=r.approval_timeout,
                window=window,
                limit_usd=cap,
                unpriced=",".join(unknown),
            )
            continue
        out.budget_usd.append(
            UsdBudgetFigure(
                rule_id=spec.id,
                asset=label,
                window=window,
                spent=spent,
                requested=value,
                limit=cap,
                remaining=max(cap - spent, Decimal(0)),
            )
        )
        counted = value if window == "transaction" or with_fees is None else with_fees
        if spent + counted > cap:
            what = (
                "per-transaction USD limit" if window == "transaction" else f"{window} USD budget"
            )
            _exceed(
                out,
                spec,
                r,
                f"{format_usd(value)} exceeds the {what} of {format_usd(cap)}"
                + (f" ({format_usd(max(cap - spent, Decimal(0)))} left)" if spent else ""),
                window=window,
                amount_usd=value,
                spent_usd=spent,
                limit_usd=cap,
            )


def _usd_tier(
    out: _Verdict,
    spec: PolicySpec,
    r: SpendingLimitRules,
    value: Decimal | None,
    day: Decimal | None,
    missing: list[str],
) -> None:
    """The request's tier under the USD thresholds, and its USD velocity tier (an unpriced
    request: the rule's ``unpriced_tier``)."""
    kind = PolicyType.SPENDING_LIMIT.value
    if value is None:
        out.tier(
            spec,
            kind,
            Tier(r.unpriced_tier),
            "no USD price for " + ", ".join(missing) + f": {r.unpriced_tier} "
            "(an unknown price is never treated as zero; see unpriced_tier)",
            delay=r.delay_seconds,
            timeout=r.approval_timeout,
            unpriced=",".join(missing),
        )
    else:
        tier = _tier_for(r.thresholds_usd, value)
        out.tier(
            spec,
            kind,
            tier,
            f"{format_usd(value)} is {tier.value} under this limit",
            delay=r.delay_seconds,
            timeout=r.approval_timeout,
            amount_usd=value,
            **{f"{k}_usd": v for k, v in _bounds_figures(r.thresholds_usd).items()},
        )
        if day is not None:
            _velocity_usd(out, spec, kind, value, day, r.daily_thresholds_usd, tier, r)


# --------------------------------------------------------------------------- other rule types


def _allowed_addresses(
    env: _Env, out: _Verdict, spec: PolicySpec, r: AllowedAddressesRules
) -> None:
    kind = PolicyType.ALLOWED_ADDRESSES.value
    listed = r.address_set
    for item in env.items:
        if r.mode == "whitelist":
            for addr in item.recipients():
                if addr not in listed:
                    out.deny(
                        spec,
                        kind,
                        f"{item.where}recipient {addr} is not in the allowed list",
                        address=addr,
                    )
        else:
            for addr in item.counterparties():
                if addr in listed:
                    out.deny(spec, kind, f"{item.where}{addr} is blacklisted", address=addr)


def _allowed_tokens(env: _Env, out: _Verdict, spec: PolicySpec, r: AllowedTokensRules) -> None:
    kind = PolicyType.ALLOWED_TOKENS.value
    for item in env.items:
        if (
            item.kind in (TxType.TOKEN_TRANSFER, TxType.APPROVE)
            and item.token
            and item.token not in r.by_address
        ):
            verb = "transfer" if item.kind == TxType.TOKEN_TRANSFER else "approval"
            out.deny(
                spec,
                kind,
                f"{item.where}token {item.token} is not in the allowed tokens ({verb} refused)",
                token=item.token,
            )


def _contract_whitelist(
    env: _Env, out: _Verdict, spec: PolicySpec, r: ContractWhitelistRules
) -> None:
    kind = PolicyType.CONTRACT_WHITELIST.value
    for item in env.items:
        if item.kind == TxType.CONTRACT_CALL and item.to and item.to not in r.address_set:
            out.deny(
                spec, kind, f"{item.where}contract {item.to} is not whitelisted", contract=item.to
            )


def _method_whitelist(env: _Env, out: _Verdict, spec: PolicySpec, r: MethodWhitelistRules) -> None:
    kind = PolicyType.METHOD_WHITELIST.value
    for item in env.items:
        if item.kind != TxType.CONTRACT_CALL or not item.to or item.to not in r.by_contract:
            continue
        allowed = r.by_contract[item.to]
        if item.selector is None:
            out.deny(
                spec,
                kind,
                f"{item.where}call to {item.to} has no 4-byte method selector; only "
                + ", ".join(sorted(allowed))
                + " may be called",
                contract=item.to,
            )
        elif item.selector not in allowed:
            out.deny(
                spec,
                kind,
                f"{item.where}method {item.selector} of {item.to} is not whitelisted",
                contract=item.to,
                selector=item.selector,
            )


def _approved_spenders(
    env: _Env, out: _Verdict, spec: PolicySpec, r: ApprovedSpendersRules
) -> None:
    kind = PolicyType.APPROVED_SPENDERS.value
    for item in env.items:
        if item.kind != TxType.APPROVE or not item.spender or item.amount == 0:
            continue  # a zero approval revokes: always allowed by this rule
        entry = r.by_spender.get(item.spender)
        if entry is None:
            out.deny(
                spec,
                kind,
                f"{item.where}spender {item.spender} is not an approved spender",
                spender=item.spender,
            )
        elif entry.max_amount is not None and item.amount > entry.max_amount:
            out.deny(
                spec,
                kind,
                f"{item.where}approval of {item.amount} exceeds this spender's maximum of "
                f"{entry.max_amount}",
                spender=item.spender,
                amount=item.amount,
                limit=entry.max_amount,
            )


def _approve_amount_limit(
    env: _Env, out: _Verdict, spec: PolicySpec, r: ApproveAmountLimitRules
) -> None:
    """An approval is "unlimited" when it exceeds ``max_amount``, or (without one) the
    token's remaining daily budget from the SPENDING_LIMIT rules. With neither bound
    ``block_unlimited`` cannot measure it, so the owner decides (APPROVAL)."""
    kind = PolicyType.APPROVE_AMOUNT_LIMIT.value
    for item in env.items:
        if item.kind != TxType.APPROVE or item.amount == 0:
            continue  # a zero approval revokes
        if r.max_amount is not None:
            if item.amount > r.max_amount:
                out.deny(
                    spec,
                    kind,
                    f"{item.where}approval of {item.amount} exceeds the maximum of "
                    f"{r.max_amount}"
                    + (" (unlimited approvals are blocked)" if r.block_unlimited else ""),
                    amount=item.amount,
                    limit=r.max_amount,
                )
            continue
        if not r.block_unlimited:
            continue
        remaining = _remaining_daily(env, item.token)
        if remaining is None:
            out.tier(
                spec,
                kind,
                Tier.APPROVAL,
                f"{item.where}approval of {item.amount}: no max_amount and no daily budget "
                "for this token bound it; the owner must approve",
                amount=item.amount,
            )
        elif item.amount > remaining:
            out.deny(
                spec,
                kind,
                f"{item.where}approval of {item.amount} is unlimited: it exceeds the token's "
                f"remaining daily budget of {remaining}",
                amount=item.amount,
                limit=remaining,
            )


def _remaining_daily(env: _Env, token: str | None) -> int | None:
    """The smallest remaining 24 h budget any applicable SPENDING_LIMIT gives ``token``
    (before this request), or ``None`` when none sets one."""
    if token is None:
        return 0
    found: list[int] = []
    for spec in env.rules:
        r = spec.rules
        if (
            isinstance(r, SpendingLimitRules)
            and r.daily_total is not None
            and r.asset != "*"
            and normalize_asset_key(r.asset) == token
        ):
            found.append(max(r.daily_total - env.usage.spent_of(token).day, 0))
    return min(found) if found else None


def _allowed_networks(env: _Env, out: _Verdict, spec: PolicySpec, r: AllowedNetworksRules) -> None:
    network = env.agent.network.strip().lower()
    if network not in r.networks:
        out.deny(
            spec,
            PolicyType.ALLOWED_NETWORKS.value,
            f"network {network} is not allowed (allowed: {', '.join(r.networks)})",
            network=network,
        )


def time_allows(r: TimeRestrictionRules, moment: int) -> bool:
    """True when the rule allows a request at Unix time ``moment``."""
    local = datetime.fromtimestamp(moment, tz=r.zone)
    if r.allowed_hours is not None and not r.allowed_hours.contains(local.hour):
        return False
    return r.allowed_days is None or local.isoweekday() in r.allowed_days


def describe_window(r: TimeRestrictionRules) -> str:
    """``"Mon-Fri 09:00-17:00 Europe/Berlin"``-style text for a time rule."""
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    parts: list[str] = []
    if r.allowed_days is not None:
        parts.append(",".join(names[d - 1] for d in r.allowed_days))
    if r.allowed_hours is not None:
        parts.append(f"{r.allowed_hours.start:02d}:00-{r.allowed_hours.end:02d}:00")
    parts.append(r.timezone)
    return " ".join(parts)


def _time_restriction(env: _Env, out: _Verdict, spec: PolicySpec, r: TimeRestrictionRules) -> None:
    if time_allows(r, env.now):
        return
    local = datetime.fromtimestamp(env.now, tz=r.zone)
    out.deny(
        spec,
        PolicyType.TIME_RESTRICTION.value,
        f"outside the allowed time: it is {local:%a %H:%M} {r.timezone}; allowed "
        + describe_window(r),
        local_time=local.isoformat(),
    )


def _rate_limit(env: _Env, out: _Verdict, spec: PolicySpec, r: RateLimitRules) -> None:
    count = env.usage.count("requests", r.window_seconds)
    if count >= r.max_requests:
        out.deny(
            spec,
            PolicyType.RATE_LIMIT.value,
            f"rate limit: {count} requests in the last {r.window_seconds} s "
            f"(at most {r.max_requests})",
            requests=count,
            limit=r.max_requests,
            window_seconds=r.window_seconds,
        )


def _auto_stop(
    env: _Env, out: _Verdict, spec: PolicySpec, r: AutoStopRules, denied: bool
) -> Reason | None:
    kind = PolicyType.AUTO_STOP.value
    if r.trigger == "consecutive_failures":
        seen = env.usage.consecutive_failures
        fired = seen >= r.threshold
        text = f"{seen} consecutive failed transactions (threshold {r.threshold})"
    elif r.trigger == "max_transactions":
        assert r.window_seconds is not None
        seen = env.usage.count("transactions", r.window_seconds)
        fired = seen >= r.threshold
        text = f"{seen} transactions in the last {r.window_seconds} s (threshold {r.threshold})"
    else:
        assert r.window_seconds is not None
        seen = env.usage.count("denials", r.window_seconds) + (1 if denied else 0)
        # Only a denial can be the one that crosses the threshold: an allowed request never
        # fires max_denials, however many denials the window already holds.
        fired = denied and seen >= r.threshold
        text = f"{seen} denied requests in the last {r.window_seconds} s (threshold {r.threshold})"
    if not fired:
        return None
    message = f"auto-stop: {text}; the agent must be suspended"
    out.deny(spec, kind, message, trigger=r.trigger, observed=seen, threshold=r.threshold)
    return out.reasons[-1]


_HANDLERS: dict[type[Any], Any] = {
    AllowedAddressesRules: _allowed_addresses,
    AllowedTokensRules: _allowed_tokens,
    ContractWhitelistRules: _contract_whitelist,
    MethodWhitelistRules: _method_whitelist,
    ApprovedSpendersRules: _approved_spenders,
    ApproveAmountLimitRules: _approve_amount_limit,
    AllowedNetworksRules: _allowed_networks,
    TimeRestrictionRules: _time_restriction,
    RateLimitRules: _rate_limit,
}


# --------------------------------------------------------------------------- evaluate


def _check_inputs(
    agent: object, policies: object, usage: object, now: object, config: object
) -> tuple[list[PolicySpec], WalletConfig]:
    if not isinstance(agent, AgentContext):
        raise InvalidInputError("agent must be an AgentContext", field="agent")
    if not isinstance(usage, Usage):
        raise InvalidInputError("usage must be a Usage (see compute_usage)", field="usage")
    _check_int(now, "now")
    if isinstance(policies, str | bytes) or not isinstance(policies, Iterable):
        raise InvalidInputError("policies must be an iterable of PolicySpec", field="policies")
    specs = list(policies)
    for spec in specs:
        if not isinstance(spec, PolicySpec):
            raise InvalidInputError(
                f"policies must hold PolicySpec values, not {type(spec).__name__}",
                field="policies",
            )
    cfg = _default_config() if config is None else config
    if not isinstance(cfg, WalletConfig):
        raise InvalidInputError("config must be a WalletConfig", field="config")
    return specs, cfg


def _prices(prices: Mapping[str, AssetPrice] | None) -> dict[str, AssetPrice]:
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise InvalidInputError("prices must map asset keys to AssetPrice", field="prices")
    out: dict[str, AssetPrice] = {}
    for key, value in prices.items():
        if not isinstance(key, str) or not isinstance(value, AssetPrice):
            raise InvalidInputError("prices must map asset keys to AssetPrice", field="prices")
        out[normalize_asset_key(key)] = value
    return out


def applicable(policies: Iterable[PolicySpec], agent: AgentContext) -> list[PolicySpec]:
    """The policies that apply to ``agent``: enabled, global or its own, scope matching."""
    return [
        p
        for p in policies
        if p.enabled
        and (p.agent_id is None or p.agent_id == agent.id)
        and p.rules.applies_to(agent.chain, agent.network)
    ]


def evaluate(
    request: object,
    agent: AgentContext,
    policies: Iterable[PolicySpec],
    usage: Usage,
    now: int,
    *,
    config: WalletConfig | None = None,
    prices: Mapping[str, AssetPrice] | None = None,
    decimals: Mapping[str, int] | None = None,
    effects: Sequence[Effect] | None = None,
    calldata: bytes = b"",
    network_fee: int = 0,
) -> Decision:
    """Decide one request against every applicable policy. Pure: no I/O, no clock.

    Args:
        request: a Transfer, TokenTransfer, ContractCall, Approve or Batch (or a mapping
            validated as one).
        agent: the requesting agent.
        policies: the policies to consider (disabled ones and other agents' are skipped).
        usage: the agent's recent activity (see :func:`~waiaas.policy.compute_usage`).
        now: the time of the request, Unix seconds.
        config: wallet defaults (tier thresholds when no SPENDING_LIMIT sets the tier, delay,
            approval timeout, what APPROVAL means without an owner).
        prices: USD prices per asset key, looked up by the shell (for ``*_usd`` rules).
            A zero price counts as unknown.
        decimals: token decimals the shell read from the chain, for human units in the
            reasons (ALLOWED_TOKENS entries fill the gaps). The decimals a request states
            are never used: they come from the agent.
        effects: the effects decoded from the plan that will be signed
            (:func:`waiaas.plan.decode_plan`). When given, the rules judge these and not the
            request's own fields: recipients, tokens, spenders, contracts, programs and every
            other party come from the bytes. ``None`` judges the request as written (dry
            runs without a chain).
        calldata: the EVM calldata of that plan: addresses in its ABI words are parties
            too (a forwarding contract's real recipient meets the blacklist).
        network_fee: the native network fee the chain charges beyond what the request or its
            effects set themselves (the Solana signature fee; on EVM gas limit times
            ``maxFeePerGas``). The agent does not choose it: the rolling budgets, velocity
            tiers and session totals count it, one request's tier and caps do not. A fee the
            request sets itself (a Solana priority fee, a ``FeeEffect``) is spending like any
            other and counts everywhere.

    Returns:
        A :class:`~waiaas.policy.Decision`.

    Raises:
        InvalidInputError: a malformed argument (never for a request the rules refuse: that
            is a denied decision).

    Example::

        decision = evaluate(Transfer(to=addr, amount=10**9), agent, specs, usage, now)
        if not decision.allowed:
            print(decision.summary())
    """
    req = coerce_request(request)
    specs, cfg = _check_inputs(agent, policies, usage, now, config)
    if isinstance(network_fee, bool) or not isinstance(network_fee, int) or network_fee < 0:
        raise InvalidInputError("network_fee must be a non-negative int", field="network_fee")
    price_map = _prices(prices)
    chain = agent.chain
    items, bad = _normalize_items(req, chain)
    if effects is not None:
        items = _items_from_effects(effects, chain, calldata)
    out = _Verdict()

    if agent.status != AgentStatus.ACTIVE:
        out.deny(None, "AGENT", f"agent {agent.id} is {agent.status.value}", status=agent.status)
    for where, message in bad:
        out.deny(None, "REQUEST", f"{where}: {message}", field=where)

    rules = applicable(specs, agent)
    env = _Env(
        agent=agent,
        usage=usage,
        now=now,
        config=cfg,
        prices=price_map,
        items=tuple(items),
        spend=_spend(items),
        token_decimals=_token_info(rules, decimals),
        rules=tuple(rules),
        fees=network_fee,
    )

    auto_stop_rules = _apply_rules(env, out, rules)
    auto_stop = _auto_stops(env, out, auto_stop_rules)
    tier, asked = _final_tier(out, agent, cfg)
    return _decision(env, out, cfg, tier, asked, auto_stop)


def _token_info(
    rules: Sequence[PolicySpec], decimals: Mapping[str, int] | None
) -> dict[str, tuple[int, str | None]]:
    """Decimals and symbols of tokens for the reasons: ALLOWED_TOKENS entries, then the
    decimals the shell read from the chain (which win)."""
    token_info: dict[str, tuple[int, str | None]] = {}
    for spec in rules:
        if isinstance(spec.rules, AllowedTokensRules):
            for t in spec.rules.tokens:
                if t.decimals is not None:
                    token_info.setdefault(t.address, (t.decimals, t.symbol))
    for token, places in (decimals or {}).items():
        key = normalize_asset_key(token)
        token_info[key] = (places, token_info.get(key, (0, None))[1])
    return token_info


def _apply_rules(
    env: _Env, out: _Verdict, rules: Sequence[PolicySpec]
) -> list[tuple[PolicySpec, AutoStopRules]]:
    """Every rule but AUTO_STOP, the default tiers of the assets no SPENDING_LIMIT
    covered, and the checks that hold whatever the policies say; returns the AUTO_STOP
    rules (they run last, on the verdict so far)."""
    covered: set[str] = set()
    auto_stop_rules: list[tuple[PolicySpec, AutoStopRules]] = []
    for spec in rules:
        r = spec.rules
        if isinstance(r, SpendingLimitRules):
            covered |= _spending_limit(env, out, spec, r)
        elif isinstance(r, AutoStopRules):
            auto_stop_rules.append((spec, r))
        else:
            _HANDLERS[type(r)](env, out, spec, r)

    _defaults(env, out, covered)
    _effect_checks(env, out, rules)
    return auto_stop_rules


def _auto_stops(
    env: _Env, out: _Verdict, auto_stop_rules: Sequence[tuple[PolicySpec, AutoStopRules]]
) -> Reason | None:
    """The AUTO_STOP triggers that fire; the first of them (by reason order), or ``None``."""
    # Triggers that do not depend on this decision run first; max_denials counts this
    # request as a denial when any other rule (or another trigger) denied it.
    ordered = sorted(auto_stop_rules, key=lambda sr: sr[1].trigger == "max_denials")
    fired: list[Reason] = []
    for spec, r in ordered:
        reason = _auto_stop(env, out, spec, r, out.denied)
        if reason is not None:
            fired.append(reason)
    if fired:
        return min(fired, key=_reason_key)
    return None


def _final_tier(out: _Verdict, agent: AgentContext, cfg: WalletConfig) -> tuple[Tier, Tier]:
    """The tier the rules asked for (the highest; the default when none asked) and the
    tier the request gets: an APPROVAL of an agent with no owner is denied, or becomes
    DELAY under ``no_owner_approval="delay"``. Returns ``(tier, asked)``."""
    tier = Tier.highest(*(a.tier for a in out.asks)) if out.asks else cfg.default_tier
    asked = tier
    if tier == Tier.APPROVAL and agent.owner_address is None:
        if cfg.no_owner_approval == "delay":
            tier = Tier.DELAY
            out.add(
                None,
                "OWNER",
                "info",
                "APPROVAL downgraded to DELAY: the agent has no owner to approve "
                "(WalletConfig.no_owner_approval='delay')",
            )
        else:
            out.deny(
                None,
                "OWNER",
                "needs owner approval but the agent has no owner address "
                "(set an owner, or WalletConfig.no_owner_approval='delay')",
            )
    return tier, asked


def _decision(
    env: _Env,
    out: _Verdict,
    cfg: WalletConfig,
    tier: Tier,
    asked: Tier,
    auto_stop: Reason | None,
) -> Decision:
    """The :class:`~waiaas.policy.Decision` of a verdict."""
    # Only the rules that asked for the final tier set its parameters (a DELAY that was an
    # owner-less APPROVAL keeps the delay those APPROVAL rules gave).
    delays = [
        a.delay for a in out.asks if tier == Tier.DELAY and a.tier == asked and a.delay is not None
    ]
    timeouts = [
        a.timeout for a in out.asks if a.tier == asked == Tier.APPROVAL and a.timeout is not None
    ]
    return Decision(
        allowed=not out.denied,
        tier=tier,
        reasons=tuple(sorted(out.reasons, key=_reason_key)),
        budget=tuple(sorted(out.budget, key=lambda b: (b.rule_id, b.asset, b.window))),
        budget_usd=tuple(sorted(out.budget_usd, key=lambda b: (b.rule_id, b.asset, b.window))),
        auto_stop=auto_stop,
        delay_seconds=max(delays) if delays else cfg.delay_seconds,
        approval_timeout=min(timeouts) if timeouts else cfg.approval_timeout,
        spend=_with_fee(_spend(env.items), env.fees),
        fees=env.fees,
    )


def _effect_checks(env: _Env, out: _Verdict, rules: Sequence[PolicySpec]) -> None:
    """Checks that hold whatever the policies say: unknown code is denied unless a
    CONTRACT_WHITELIST names it (``WalletConfig.allow_unlisted_contracts`` relaxes that when
    no whitelist applies); non-canonical encodings of known calls and token movements whose
    token cannot be read are denied; handing control of an account to someone needs the
    owner (APPROVAL)."""
    named: set[str] = set()
    has_list = False
    for s in rules:
        if isinstance(s.rules, ContractWhitelistRules):
            named |= s.rules.address_set
            has_list = True
        elif isinstance(s.rules, MethodWhitelistRules):
            named |= set(s.rules.by_contract)
    for item in env.items:
        if item.malformed:
            out.deny(
                None,
                "CODE",
                f"{item.where}a non-canonical encoding of a known call to {item.to} is refused",
                contract=item.to or "",
            )
        elif (
            item.kind == TxType.CONTRACT_CALL
            and item.to not in named
            and not (env.config.allow_unlisted_contracts and not has_list)
        ):
            what = item.method or item.selector or "code"
            out.deny(
                None,
                "CODE",
                f"{item.where}call to {item.to} ({what}) is refused: no CONTRACT_WHITELIST "
                "names it (unknown code is denied by default)",
                contract=item.to or "",
            )
        if item.unresolved:
            out.deny(
                None,
                "CODE",
                f"{item.where}the token of this {item.kind.value.lower()} cannot be read "
                "from the chain, so no budget can apply",
            )
        if item.authority is not None and item.to is not None:
            out.tier(
                None,
                "AUTHORITY",
                Tier.APPROVAL,
                f"{item.where}hands {item.authority} of {', '.join(item.accounts)} to "
                f"{item.to}: the owner must approve",
            )


def _reason_key(r: Reason) -> tuple[int, str, str, str, str]:
    return (-r.priority, r.rule_id or "", r.type, r.effect, r.message)


def _defaults(env: _Env, out: _Verdict, covered: set[str]) -> None:
    """Tiers from WalletConfig for what no SPENDING_LIMIT classified, and floors."""
    cfg, chain = env.config, env.agent.chain
    for asset, amount in sorted(env.spend.items()):
        if asset in covered:
            continue
        thresholds = cfg.tier_thresholds(chain) if asset == NATIVE else None
        if thresholds is not None:
            tier = thresholds.tier_for(amount)
            out.tier(
                None,
                "DEFAULTS",
                tier,
                f"{env.show(asset, amount)} is {tier.value} under the wallet's default "
                f"{chain} thresholds",
                asset=asset,
                amount=amount,
                instant_max=thresholds.instant_max,
                notify_max=thresholds.notify_max,
                delay_max=thresholds.delay_max,
            )
            default_daily = daily_bounds(
                (thresholds.instant_max, thresholds.notify_max, thresholds.delay_max),
                (None, None, None),
            )
            _velocity(env, out, None, "DEFAULTS", asset, amount, default_daily, tier)
        else:
            out.tier(
                None,
                "DEFAULTS",
                cfg.default_tier,
                f"no SPENDING_LIMIT sets a tier for {env.show(asset, amount)}: "
                f"{cfg.default_tier.value} (WalletConfig.default_tier)",
                asset=asset,
                amount=amount,
            )
    kinds = {i.kind for i in env.items} & {TxType.CONTRACT_CALL, TxType.APPROVE}
    for kind in sorted(kinds):
        what = "contract calls" if kind == TxType.CONTRACT_CALL else "approvals"
        out.tier(
            None,
            "DEFAULTS",
            cfg.default_tier,
            f"{what} are at least {cfg.default_tier.value} (WalletConfig.default_tier)",
        )
