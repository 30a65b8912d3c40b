"""The plain values the policy evaluator works on, and the :class:`Decision` it returns.

Inputs (built by the shell from the database; all immutable):

* :class:`AgentContext`: who asks (id, chain, network, status, owner address).
* :class:`PolicySpec`: one stored policy with its validated rules.
* :class:`Usage`: what the agent already did in the windows the rules look at; built by
  :func:`compute_usage` from :class:`UsageRow` tuples.
* :class:`AssetPrice`: a USD price the shell looked up (evaluation itself never does I/O).

Output: :class:`Decision`, a frozen pydantic model with a lossless JSON round trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from waiaas import _display as _d
from waiaas.errors import InvalidInputError
from waiaas.policy.addresses import _evm_lower, _safe
from waiaas.policy.rules import PolicyType, Rules, UsdAmount, validate_rules
from waiaas.types import AgentStatus, Amount, Tier, TxStatus

__all__ = [
    "DAY",
    "NATIVE",
    "NATIVE_DECIMALS",
    "NATIVE_SYMBOLS",
    "WEEK",
    "AgentContext",
    "AssetPrice",
    "AssetUsage",
    "BudgetFigure",
    "Decision",
    "PolicySpec",
    "PriceOracle",
    "Reason",
    "Usage",
    "UsageRow",
    "UsdBudgetFigure",
    "compute_usage",
    "normalize_asset_key",
    "required_windows",
]

NATIVE = "native"
"""The asset key of the chain's own coin (SOL, ETH)."""

DAY = 86_400
WEEK = 7 * DAY

NATIVE_DECIMALS: Mapping[str, int] = _d.NATIVE_DECIMALS
"""Decimals of the native coin of the shipped chain families (used for human units and USD
values); an adapter names its own with ``SupportsNativeAsset``."""

NATIVE_SYMBOLS: Mapping[str, str] = _d.NATIVE_SYMBOLS

POLICY_DENIED = "POLICY_DENIED"
"""The ``error`` of a transaction row recorded for a policy-denied request."""

_SPENDING = frozenset(
    {TxStatus.PENDING, TxStatus.QUEUED, TxStatus.EXECUTING, TxStatus.SUBMITTED, TxStatus.CONFIRMED}
)


def _check_int(value: object, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(
            f"{name} must be an integer >= {minimum}, got {_safe(value)}", field=name
        )
    return value


def _check_str(value: object, name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InvalidInputError(f"{name} must be a non-empty string", field=name)
    return value


def normalize_asset_key(asset: str) -> str:
    """Normal form of an asset key: ``"native"``, or a token address (EVM in lower case).

    The format tells the chain (EVM addresses start with ``0x``; base58 has no ``0``), so
    no chain is needed. Unknown formats are returned unchanged (they only ever match
    themselves).
    """
    if asset == NATIVE:
        return asset
    text = asset.strip()
    return _evm_lower(text) or text


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class AgentContext:
    """The agent a request comes from.

    Attributes:
        id: agent id.
        chain: chain family (``"solana"``, ``"evm"``, or a third-party adapter's name).
        network: network name (``"devnet"``, ``"mainnet-beta"``, ``"sepolia"``, ...).
        status: the agent's status; anything but ACTIVE is denied.
        owner_address: the owner's wallet address, or ``None`` when the agent has no owner
            (then nobody can approve, see ``WalletConfig.no_owner_approval``).
        native_symbol, native_decimals: the chain's native coin as its adapter names it
            (``SupportsNativeAsset``), both or neither; when neither, the shipped families'
            (SOL / 9, ETH / 18) and, for another chain, none: amounts of its native coin
            are shown in base units and a USD rule finds it unpriced.

    Raises:
        InvalidInputError: a field is missing or of the wrong type.

    Example::

        AgentContext(id="a1", chain="solana", network="devnet")
        AgentContext(id="a2", chain="toy", network="local", native_symbol="TOY",
                     native_decimals=6)
    """

    id: str
    chain: str
    network: str
    status: AgentStatus = AgentStatus.ACTIVE
    owner_address: str | None = None
    native_symbol: str | None = None
    native_decimals: int | None = None

    def __post_init__(self) -> None:
        _check_str(self.id, "id")
        _check_str(self.chain, "chain")
        _check_str(self.network, "network")
        _check_str(self.owner_address, "owner_address", optional=True)
        _check_str(self.native_symbol, "native_symbol", optional=True)
        if self.native_decimals is not None:
            _check_int(self.native_decimals, "native_decimals")
            if self.native_decimals > 36:
                raise InvalidInputError(
                    "native_decimals must be at most 36", field="native_decimals"
                )
        if (self.native_symbol is None) != (self.native_decimals is None):
            raise InvalidInputError(
                "native_symbol and native_decimals go together", field="native_symbol"
            )
        try:
            object.__setattr__(self, "status", AgentStatus(self.status))
        except ValueError:
            raise InvalidInputError(
                f"status must be one of {[s.value for s in AgentStatus]}", field="status"
            ) from None
        object.__setattr__(self, "chain", self.chain.strip().lower())

    def native_units(self) -> tuple[int, str] | None:
        """``(decimals, symbol)`` of the agent's native coin: the adapter's when given, else
        the shipped family's, else ``None``.

        >>> AgentContext(id="a1", chain="evm", network="local").native_units()
        (18, 'ETH')
        >>> AgentContext(id="a1", chain="toy", network="local").native_units() is None
        True
        """
        if self.native_decimals is not None and self.native_symbol is not None:
            return self.native_decimals, self.native_symbol
        if self.chain in NATIVE_DECIMALS:
            return NATIVE_DECIMALS[self.chain], NATIVE_SYMBOLS[self.chain]
        return None


@dataclass(frozen=True, slots=True, init=False)
class PolicySpec:
    """One policy as the evaluator sees it.

    Attributes:
        id: policy id (appears in every reason the policy gives).
        agent_id: the agent it governs, or ``None`` for a global policy (both apply).
        type: the policy type.
        rules: the validated rules (a dict or JSON string is validated on construction).
        priority: orders the reasons list (higher first); never changes the outcome.
        enabled: disabled policies are skipped entirely.

    Raises:
        InvalidInputError: unknown type or invalid rules (every problem listed).

    Example::

        PolicySpec(id="p1", agent_id=None, type="RATE_LIMIT",
                   rules={"max_requests": 10, "window_seconds": 60})
    """

    id: str
    agent_id: str | None
    type: PolicyType
    rules: Rules
    priority: int
    enabled: bool

    def __init__(
        self,
        id: str,
        agent_id: str | None,
        type: PolicyType | str,
        rules: Rules | Mapping[str, Any] | str | bytes,
        priority: int = 0,
        enabled: bool = True,
    ) -> None:
        _check_str(id, "id")
        _check_str(agent_id, "agent_id", optional=True)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidInputError("priority must be an integer", field="priority")
        if not isinstance(enabled, bool):
            raise InvalidInputError("enabled must be a bool", field="enabled")
        validated = validate_rules(type, rules)  # also refuses an unknown type
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "agent_id", agent_id)
        object.__setattr__(self, "type", PolicyType(type))
        object.__setattr__(self, "rules", validated)
        object.__setattr__(self, "priority", priority)
        object.__setattr__(self, "enabled", enabled)

    def __repr__(self) -> str:
        return _d.short_repr(
            "PolicySpec",
            [
                ("id", self.id),
                ("type", self.type),
                ("agent_id", self.agent_id),
                ("rules", self.rules.model_dump(mode="json", exclude_none=True)),
                ("priority", self.priority or None),
                ("enabled", None if self.enabled else False),
            ],
        )

    def _repr_html_(self) -> str:
        return _policy_html(
            self.type.value,
            self.id,
            self.agent_id,
            self.rules.model_dump(mode="json", exclude_none=True),
            self.priority,
            self.enabled,
        )


def _policy_html(
    kind: str,
    policy_id: str,
    agent_id: str | None,
    rules: Mapping[str, object],
    priority: int,
    enabled: bool,
) -> str:
    """The notebook rendering shared by :class:`PolicySpec` and ``PolicyInfo``."""
    pairs: list[tuple[str, object]] = [
        ("id", policy_id),
        ("applies to", agent_id or "every agent (global)"),
        ("enabled", "yes" if enabled else "no"),
        ("priority", str(priority)),
    ]
    pairs += [(f"rules.{k}", v) for k, v in rules.items()]
    return _d.fields_html(f"{kind} policy", pairs)


@dataclass(frozen=True, slots=True)
class AssetPrice:
    """A USD price: ``usd`` per whole unit of an asset with ``decimals`` decimals.

    Example: SOL at $150.25 is ``AssetPrice(Decimal("150.25"), 9)``.
    """

    usd: Decimal
    decimals: int

    def __post_init__(self) -> None:
        if not isinstance(self.usd, Decimal) or not self.usd.is_finite() or self.usd < 0:
            raise InvalidInputError("usd must be a finite, non-negative Decimal", field="usd")
        _check_int(self.decimals, "decimals")
        if self.decimals > 255:
            raise InvalidInputError("decimals must be <= 255", field="decimals")

    def value_of(self, amount: int) -> Decimal:
        """The exact USD value of ``amount`` base units (no rounding)."""
        return EXACT.divide(
            EXACT.multiply(Decimal(amount), self.usd), EXACT.power(10, self.decimals)
        )


EXACT = Context(prec=1000)  # exact for any amount / price / decimals this API accepts


@runtime_checkable
class PriceOracle(Protocol):
    """Where the shell gets USD prices (per whole unit); ``None`` when unknown."""

    def price_usd(self, chain: str, asset: str) -> Decimal | None:
        """USD per whole unit of ``asset`` (``"native"`` or a token address) on ``chain``."""
        ...


@dataclass(frozen=True, slots=True)
class AssetUsage:
    """Base units of one asset the agent moved in the last 24 h and 7 days."""

    day: int = 0
    week: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """What the agent already did, as the rules need it.

    Attributes:
        spent: per asset key (``"native"`` or normalised token address), amounts of the
            in-flight and confirmed transactions in the last 24 h / 7 d.
        requests: per window length (seconds), every request recorded in it (denied ones too).
        transactions: per window length, requests that were not denied by policy.
        denials: per window length, requests denied by policy.
        consecutive_failures: on-chain failures since the last confirmed transaction.
    """

    spent: Mapping[str, AssetUsage] = field(default_factory=dict)
    requests: Mapping[int, int] = field(default_factory=dict)
    transactions: Mapping[int, int] = field(default_factory=dict)
    denials: Mapping[int, int] = field(default_factory=dict)
    consecutive_failures: int = 0

    def spent_of(self, asset: str) -> AssetUsage:
        """Usage of ``asset`` (zeros when none)."""
        return self.spent.get(asset) or AssetUsage()

    def count(self, which: Literal["requests", "transactions", "denials"], window: int) -> int:
        """A counter for ``window`` seconds.

        Raises:
            InvalidInputError: the usage was built without that window.
        """
        table: Mapping[int, int] = getattr(self, which)
        if window not in table:
            raise InvalidInputError(
                f"usage has no {which} count for a {window} s window; build it with "
                "compute_usage(..., windows=required_windows(policies))",
                field="usage",
            )
        return table[window]


class UsageRow(NamedTuple):
    """One recorded transaction, as :func:`compute_usage` needs it.

    Attributes:
        created_at: Unix seconds.
        status: the transaction status.
        asset: asset key of ``amount`` (``"native"`` or a token address).
        amount: base units moved.
        error: the row's error (``"POLICY_DENIED"`` marks a policy denial).
        more: further ``(asset, amount)`` pairs moved by the same transaction (a batch).
    """

    created_at: int
    status: str
    asset: str
    amount: int
    error: str | None = None
    more: tuple[tuple[str, int], ...] = ()


def required_windows(policies: Iterable[PolicySpec]) -> frozenset[int]:
    """The window lengths (seconds) the given policies need counts for (always 24 h, 7 d)."""
    windows = {DAY, WEEK}
    for spec in policies:
        seconds = getattr(spec.rules, "window_seconds", None)
        if isinstance(seconds, int):
            windows.add(seconds)
    return frozenset(windows)


def compute_usage(rows: Iterable[UsageRow], now: int, windows: Iterable[int]) -> Usage:
    """Build :class:`Usage` from recorded transactions. Pure.

    A row counts in a window of ``w`` seconds when ``created_at > now - w`` (rows stamped
    slightly in the future by another process's clock count too). Spending counts rows that
    are in flight or confirmed (PENDING, QUEUED, EXECUTING, SUBMITTED, CONFIRMED), summed as
    exact Python ints. ``consecutive_failures`` counts FAILED rows (not policy denials) after
    the last CONFIRMED one, over the rows given.

    Args:
        rows: recorded transactions of one agent, in any order.
        now: the evaluation time, Unix seconds.
        windows: the window lengths to count (see :func:`required_windows`).

    Raises:
        InvalidInputError: ``now`` or a window is not a non-negative int, or a row is malformed.

    Example::

        usage = compute_usage([UsageRow(1000, "CONFIRMED", "native", 5)], 2000, {86400})
        usage.spent["native"].day   # 5
    """
    _check_int(now, "now")
    wanted = sorted({_check_int(w, "window", minimum=1) for w in windows} | {DAY, WEEK})
    day: dict[str, int] = {}
    week: dict[str, int] = {}
    requests = dict.fromkeys(wanted, 0)
    txs = dict.fromkeys(wanted, 0)
    denials = dict.fromkeys(wanted, 0)
    ordered: list[tuple[int, int, str, str | None]] = []
    for index, row in enumerate(rows):
        created, status, error = row.created_at, row.status, row.error
        _check_int(created, "created_at")
        denied = error == POLICY_DENIED
        ordered.append((created, index, str(status), error))
        age = now - created
        for w in wanted:
            if age < w:
                requests[w] += 1
                if denied:
                    denials[w] += 1
                else:
                    txs[w] += 1
        if denied or status not in _SPENDING or age >= WEEK:
            continue
        for asset, amount in ((row.asset, row.amount), *row.more):
            _check_int(amount, "amount")
            key = normalize_asset_key(asset)
            week[key] = week.get(key, 0) + amount
            if age < DAY:
                day[key] = day.get(key, 0) + amount
    failures = 0
    for _, _, status, error in sorted(ordered, reverse=True):
        if status == TxStatus.CONFIRMED:
            break
        if status == TxStatus.FAILED and error != POLICY_DENIED:
            failures += 1
    spent = {k: AssetUsage(day=day.get(k, 0), week=v) for k, v in week.items()}
    return Usage(
        spent=spent,
        requests=requests,
        transactions=txs,
        denials=denials,
        consecutive_failures=failures,
    )


# --------------------------------------------------------------------------- output


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reason(_Frozen):
    """One thing a rule (or a built-in check) said about the request.

    Attributes:
        rule_id: the policy id, or ``None`` for built-in checks (agent status, address
            format, wallet defaults, owner availability).
        type: the policy type, or ``AGENT`` / ``REQUEST`` / ``DEFAULTS`` / ``OWNER``.
        effect: ``deny`` (refuses the request), ``tier`` (asks for ``tier``) or ``info``.
        message: a sentence a person or an agent can act on.
        tier: the tier asked for (``effect == "tier"``).
        priority: the policy's priority (orders the list; never changes the outcome).
        figures: the values compared, as strings (amounts in base units).
    """

    rule_id: str | None = None
    type: str
    effect: Literal["deny", "tier", "info"]
    message: str
    tier: Tier | None = None
    priority: int = 0
    figures: dict[str, str] = Field(default_factory=dict)

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return _d.short_repr(
            "Reason",
            [
                ("type", self.type),
                ("effect", self.effect),
                ("tier", self.tier),
                ("rule_id", self.rule_id),
                ("message", self.message),
            ],
        )


class BudgetFigure(_Frozen):
    """A cap in base units the decision checked: spent before, requested, limit, remaining.

    ``window`` is ``transaction`` (per request), ``24h`` or ``7d``; ``remaining`` is what is
    left *before* this request (never negative).
    """

    rule_id: str
    asset: str
    window: Literal["transaction", "24h", "7d"]
    spent: Amount
    requested: Amount
    limit: Amount
    remaining: Amount


class UsdBudgetFigure(_Frozen):
    """The same as :class:`BudgetFigure` in US dollars (exact decimals, as strings in JSON)."""

    rule_id: str
    asset: str
    window: Literal["transaction", "24h", "7d"]
    spent: UsdAmount
    requested: UsdAmount
    limit: UsdAmount
    remaining: UsdAmount


class Decision(_Frozen):
    """The verdict on one request.

    Attributes:
        allowed: ``False`` when any rule denied.
        tier: the tier the request gets (when denied: the tier it would have had).
        reasons: every reason, highest priority first.
        budget / budget_usd: the caps checked, with the figures used.
        auto_stop: set when an AUTO_STOP trigger fired: the agent must be suspended.
        delay_seconds: cooldown for DELAY (from the rule that set the tier, else config).
        approval_timeout: owner wait for APPROVAL (idem).
        spend: what the request takes out of the wallet per asset key, in base units, as
            the budgets counted it (transfers, rent, fees, approvals' allowances); the
            shell records exactly this on the transaction and charges it to the session.
        fees: the native network fees included in ``spend`` (the rolling budgets, velocity
            tiers and session totals count them; tiers and per-request caps do not).

    Example::

        text = decision.to_json()
        assert Decision.from_json(text) == decision
    """

    allowed: bool
    tier: Tier
    reasons: tuple[Reason, ...] = ()
    budget: tuple[BudgetFigure, ...] = ()
    budget_usd: tuple[UsdBudgetFigure, ...] = ()
    auto_stop: Reason | None = None
    delay_seconds: int = Field(ge=0)
    approval_timeout: int = Field(ge=1)
    spend: dict[str, Amount] = Field(default_factory=dict)
    fees: Amount = 0

    @property
    def deny_reasons(self) -> tuple[Reason, ...]:
        """The reasons that deny."""
        return tuple(r for r in self.reasons if r.effect == "deny")

    def summary(self) -> str:
        """One line: the verdict and the deny reasons (or the tier)."""
        if not self.allowed:
            return "denied: " + "; ".join(r.message for r in self.deny_reasons)
        return f"allowed as {self.tier.value}"

    def to_json(self) -> str:
        """JSON text; amounts are decimal strings, so nothing is lost."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Decision:
        """Parse :meth:`to_json` output.

        Raises:
            InvalidInputError: not a valid decision document.
        """
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'decision'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ]
            raise InvalidInputError(
                "not a valid decision document", field="decision", problems=problems
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (amounts as strings)."""
        result: dict[str, Any] = json.loads(self.to_json())
        return result

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        verdict = f"allowed as {self.tier.value}" if self.allowed else "denied"
        deny = "; ".join(r.message for r in self.deny_reasons)
        if len(deny) > 100:
            deny = deny[:97] + "..."
        n = len(self.reasons)
        extra = f": {deny}" if deny else f", {n} reason{'' if n == 1 else 's'}"
        return f"Decision({verdict}{extra})"

    def _repr_html_(self) -> str:
        return decision_html(self)


def decision_html(decision: Decision, caption: str | None = None) -> str:
    """Verdict, reasons and budget figures as HTML tables."""
    verdict = (_d.badge(decision.tier) if decision.allowed else _d.badge("DENIED")) + (
        f" (would be {decision.tier.value})" if not decision.allowed else ""
    )
    parts = [
        _d.fields_html(
            caption or "Policy decision",
            [
                ("verdict", _d.raw(verdict)),
                ("summary", decision.summary()),
                (
                    "delay",
                    f"{decision.delay_seconds} s" if decision.tier == "DELAY" else None,
                ),
                (
                    "owner has",
                    f"{decision.approval_timeout} s" if decision.tier == "APPROVAL" else None,
                ),
                ("auto stop", decision.auto_stop.message if decision.auto_stop else None),
            ],
        )
    ]
    if decision.reasons:
        parts.append(
            _d.table_html(
                ("effect", "type", "tier", "message", "rule"),
                [
                    (
                        _d.raw(_d.badge("DENIED")) if r.effect == "deny" else r.effect,
                        r.type,
                        r.tier,
                        r.message,
                        _d.short(r.rule_id) if r.rule_id else "built-in",
                    )
                    for r in decision.reasons
                ],
                caption="Reasons",
            )
        )
    figures: list[tuple[object, ...]] = [
        (b.window, b.asset, str(b.spent), str(b.requested), str(b.limit), str(b.remaining))
        for b in decision.budget
    ]
    figures += [
        (b.window, f"{b.asset} (USD)", str(b.spent), str(b.requested), str(b.limit),
         str(b.remaining))
        for b in decision.budget_usd
    ]  # fmt: skip
    if figures:
        parts.append(
            _d.table_html(
                ("window", "asset", "spent before", "requested", "limit", "remaining"),
                figures,
                caption="Budgets checked (base units)",
            )
        )
    return "".join(parts)
