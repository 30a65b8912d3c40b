"""Rule models, one per policy type, and :func:`validate_rules`.

Every model is a frozen pydantic model with ``extra="forbid"``: an unknown or misspelt key
is an error, never silently ignored, so a typo in a policy fails closed. Amounts are
base units (``int`` or decimal-digit strings; floats, signs and exponents are refused); USD
figures are decimal strings of dollars (``"12.50"``), never floats.

Every rule may be scoped with ``chain`` (``"solana"``, ``"evm"``, ...) and ``network``: a
rule whose scope does not match the agent does not apply to it at all.

Example::

    >>> rules = validate_rules("SPENDING_LIMIT", '{"per_transaction": "1000000000"}')
    >>> rules.per_transaction
    1000000000
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from waiaas.addresses import address_problem
from waiaas.errors import InvalidInputError
from waiaas.policy.addresses import (
    EVM,
    SOLANA,
    _normalize_or_none,
    _printable_ascii,
    _safe,
    address_chains,
    normalize_selector,
)
from waiaas.types import Amount

__all__ = [
    "KNOWN_NETWORKS",
    "AllowedAddressesRules",
    "AllowedNetworksRules",
    "AllowedTokensRules",
    "ApproveAmountLimitRules",
    "ApprovedSpendersRules",
    "AutoStopRules",
    "ContractEntry",
    "ContractWhitelistRules",
    "HourWindow",
    "MethodEntry",
    "MethodWhitelistRules",
    "PolicyType",
    "RateLimitRules",
    "Rules",
    "SpenderEntry",
    "SpendingLimitRules",
    "TimeRestrictionRules",
    "TokenEntry",
    "UsdAmount",
    "check_scope",
    "rules_model",
    "validate_rules",
]

MAX_LIST = 1000
"""Most entries a list in one rule may hold."""

KNOWN_NETWORKS: Mapping[str, tuple[str, ...]] = {
    "solana": ("mainnet-beta", "devnet", "testnet", "localnet"),
    "evm": (
        "mainnet",
        "sepolia",
        "holesky",
        "hoodi",
        "local",
        "base",
        "base-sepolia",
        "optimism",
        "optimism-sepolia",
        "arbitrum",
        "arbitrum-sepolia",
        "polygon",
        "polygon-amoy",
        "bsc",
        "avalanche",
        "linea",
        "scroll",
        "gnosis",
    ),
}
"""The documented networks per chain family a rule's ``network`` scope may name without a
configured adapter (see docs/policies.md). A wallet also accepts the networks of the chain
adapters it was opened with."""


def check_scope(rules: BaseModel, configured: Iterable[tuple[str, str]] = ()) -> None:
    """Refuse a rule scope that could never apply: a ``chain`` that is no known family, a
    ``network`` that neither a configured adapter nor :data:`KNOWN_NETWORKS` knows (for
    that chain, when the rule names one). A typo must fail at write, not silently never
    apply.

    Args:
        rules: a validated rule model.
        configured: ``(chain, network)`` of the chain adapters the wallet was opened with.

    Raises:
        InvalidInputError: naming ``chain`` or ``network`` and what is known.
    """
    chain = getattr(rules, "chain", None)
    network = getattr(rules, "network", None)
    known: dict[str, set[str]] = {c: set(n) for c, n in KNOWN_NETWORKS.items()}
    for c, n in configured:
        known.setdefault(c.lower(), set()).add(n.strip().lower())
    if chain is not None and chain not in known:
        msg = (
            f"chain {_safe(chain)} is not a known chain family (known: {', '.join(sorted(known))})"
        )
        raise InvalidInputError(msg, field="chain", problems=[f"chain: {msg}"])
    if network is None:
        return
    names = known[chain] if chain is not None else set().union(*known.values())
    if network not in names:
        where = f" on {chain}" if chain is not None else ""
        msg = (
            f"network {_safe(network)} is not a known network{where} (known: "
            + ", ".join(sorted(names))
            + "; configure an adapter for it to use another)"
        )
        raise InvalidInputError(msg, field="network", problems=[f"network: {msg}"])


class PolicyType(StrEnum):
    """The policy types waiaas enforces. Each has a rule model (see :func:`rules_model`)."""

    SPENDING_LIMIT = "SPENDING_LIMIT"
    ALLOWED_ADDRESSES = "ALLOWED_ADDRESSES"
    TIME_RESTRICTION = "TIME_RESTRICTION"
    AUTO_STOP = "AUTO_STOP"
    RATE_LIMIT = "RATE_LIMIT"
    ALLOWED_TOKENS = "ALLOWED_TOKENS"
    CONTRACT_WHITELIST = "CONTRACT_WHITELIST"
    METHOD_WHITELIST = "METHOD_WHITELIST"
    APPROVED_SPENDERS = "APPROVED_SPENDERS"
    APPROVE_AMOUNT_LIMIT = "APPROVE_AMOUNT_LIMIT"
    ALLOWED_NETWORKS = "ALLOWED_NETWORKS"


class _Problems(ValueError):
    """Several problems found by one validator; :func:`validate_rules` lists each one."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in problems))
        self.problems = problems


# --------------------------------------------------------------------------- value types

_USD_RE = re.compile(r"^[0-9]{1,80}(\.[0-9]{1,40})?$")


def _parse_usd(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(
            f'must be a decimal string of US dollars such as "12.50", not {type(value).__name__}'
        )
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        value = format(value, "f") if value.is_finite() else "nan"
    text = value.strip()
    if not _USD_RE.match(text):
        raise ValueError(
            f'must be a non-negative decimal string such as "12.50", got {_safe(value)}'
        )
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guarantees it
        raise ValueError(f"not a decimal: {_safe(value)}") from exc


UsdAmount = Annotated[
    Decimal,
    BeforeValidator(_parse_usd),
    PlainSerializer(lambda v: format(v, "f"), return_type=str),
]
"""A non-negative amount of US dollars, exact; written as a decimal string (``"12.50"``)."""


def _check_name(value: str, what: str) -> str:
    text = value.strip().lower()
    if not _printable_ascii(text) or len(text) > 64:
        raise ValueError(f"{what} must be 1-64 printable ASCII characters, got {_safe(value)}")
    return text


def _normalize_rule_address(value: object, chain: str | None) -> str:
    """Normalise an address written in a rule.

    Unscoped rules (or rules scoped to a built-in chain) need an address valid on a built-in
    chain; the two formats do not overlap, so the format tells which normal form applies.
    """
    if not isinstance(value, str):
        raise ValueError(f"must be an address string, not {type(value).__name__}")
    if chain is not None and chain not in (EVM, SOLANA):
        normal = _normalize_or_none(chain, value)
        if normal is None:
            raise ValueError(f"{_safe(value)} is not a valid address")
        return normal
    chains = address_chains(value)
    if not chains and value.strip()[:2] in ("0x", "0X"):
        raise ValueError(f"{_safe(value)}: {address_problem(EVM, value.strip())}")
    if chain is not None and chain not in chains:
        raise ValueError(f"{_safe(value)} is not a valid {chain} address")
    if not chains:
        raise ValueError(f"{_safe(value)} is not a valid EVM or Solana address")
    found = chain or next(iter(sorted(chains)))
    normal = _normalize_or_none(found, value)
    assert normal is not None
    return normal


def _item_address(value: object, info: ValidationInfo) -> object:
    """Item-level validator: normalise one address of a list with the rule's chain scope."""
    return _normalize_rule_address(value, info.data.get("chain"))


def _entry_address(key: str) -> Any:
    def check(value: BaseModel, info: ValidationInfo) -> BaseModel:
        address = _normalize_rule_address(getattr(value, key), info.data.get("chain"))
        return value.model_copy(update={key: address})

    return AfterValidator(check)


def _non_empty_unique(values: tuple[Any, ...], key: Any = None) -> tuple[Any, ...]:
    if not values:
        raise ValueError("must list at least one entry")
    out: dict[Any, Any] = {}
    for item in values:
        out.setdefault(key(item) if key else item, item)
    return tuple(out.values())


_RuleAddress = Annotated[str, AfterValidator(_item_address)]


# --------------------------------------------------------------------------- base


class _RulesBase(BaseModel):
    """Fields every rule type has: an optional chain / network scope."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    chain: str | None = Field(default=None, description="apply only to agents on this chain family")
    network: str | None = Field(default=None, description="apply only to agents on this network")

    @field_validator("chain", "network")
    @classmethod
    def _scope_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_name(value, str(info.field_name))

    def applies_to(self, chain: str, network: str) -> bool:
        """True when the rule's scope covers an agent on ``chain`` / ``network``."""
        if self.chain is not None and self.chain != chain.lower():
            return False
        return self.network is None or self.network == network.strip().lower()


_Seconds = Annotated[StrictInt, Field(ge=1, le=366 * 86_400)]


# --------------------------------------------------------------------------- SPENDING_LIMIT


class SpendingLimitRules(_RulesBase):
    """Caps and tier thresholds for one asset.

    Attributes:
        asset: ``"native"`` (SOL, ETH; the default), a token address, or ``"*"`` (every
            asset; only the ``*_usd`` fields make sense then).
        per_transaction: most one request may move (a batch counts as one request).
        daily_total / weekly_total: most the agent may move in any rolling 24 h / 7 d,
            counting in-flight and confirmed transactions plus this request.
        instant_max / notify_max / delay_max: inclusive upper bounds of the INSTANT,
            NOTIFY and DELAY tiers; above the highest bound given: APPROVAL. A bound that
            is left out skips its tier.
        daily_instant_max / daily_notify_max / daily_delay_max: velocity tiers, the same
            bounds for the agent's rolling 24 h total of this asset *including* this request
            (in-flight and confirmed, the same accounting as ``daily_total``); a request's
            tier is at least the tier of that total. When left out they default to
            ``notify_max``, ``delay_max`` and ``delay_max`` (the highest per-request bound
            given stands in for a missing one), so a day's INSTANT requests add up to at most
            one NOTIFY-sized request, and a total that one request could only move with the
            owner's approval needs it however it is split.
        *_usd: the same in US dollars (decimal strings), valued with the prices passed to
            ``evaluate``. An unknown price is never treated as zero (see docs/policies.md).
        delay_seconds / approval_timeout: cooldown and owner wait when this rule sets
            the DELAY / APPROVAL tier (else the wallet's defaults).
        on_exceed: ``"deny"`` (default) refuses a request over a cap; ``"approval"`` sends
            it to the owner instead.
        unpriced_tier: the tier of a request a ``*_usd`` figure cannot value because a price
            is unknown (missing, zero, negative or not finite); default ``"APPROVAL"``.
    """

    asset: str = "native"
    per_transaction: Amount | None = None
    daily_total: Amount | None = None
    weekly_total: Amount | None = None
    instant_max: Amount | None = None
    notify_max: Amount | None = None
    delay_max: Amount | None = None
    daily_instant_max: Amount | None = None
    daily_notify_max: Amount | None = None
    daily_delay_max: Amount | None = None
    per_transaction_usd: UsdAmount | None = None
    daily_total_usd: UsdAmount | None = None
    weekly_total_usd: UsdAmount | None = None
    instant_max_usd: UsdAmount | None = None
    notify_max_usd: UsdAmount | None = None
    delay_max_usd: UsdAmount | None = None
    daily_instant_max_usd: UsdAmount | None = None
    daily_notify_max_usd: UsdAmount | None = None
    daily_delay_max_usd: UsdAmount | None = None
    delay_seconds: Annotated[StrictInt, Field(ge=0, le=30 * 86_400)] | None = None
    approval_timeout: Annotated[StrictInt, Field(ge=1, le=30 * 86_400)] | None = None
    on_exceed: Literal["deny", "approval"] = "deny"
    unpriced_tier: Literal["NOTIFY", "DELAY", "APPROVAL"] = "APPROVAL"

    @field_validator("asset")
    @classmethod
    def _asset(cls, value: str, info: ValidationInfo) -> str:
        if value in ("native", "*"):
            return value
        return _normalize_rule_address(value, info.data.get("chain"))

    @model_validator(mode="after")
    def _consistent(self) -> SpendingLimitRules:
        problems: list[tuple[str, str]] = []
        base = ("per_transaction", "daily_total", "weekly_total")
        tiers = ("instant_max", "notify_max", "delay_max")
        usd = ("per_transaction_usd", "daily_total_usd", "weekly_total_usd")
        usd_tiers = ("instant_max_usd", "notify_max_usd", "delay_max_usd")
        velocity = (
            "daily_instant_max",
            "daily_notify_max",
            "daily_delay_max",
            "daily_instant_max_usd",
            "daily_notify_max_usd",
            "daily_delay_max_usd",
        )
        if all(getattr(self, f) is None for f in base + tiers + usd + usd_tiers + velocity):
            problems.append(("", "a SPENDING_LIMIT needs at least one cap or tier threshold"))
        if self.asset == "*":
            for name in base + tiers:
                if getattr(self, name) is not None:
                    problems.append(
                        (name, 'base-unit figures need one asset; with asset "*" use *_usd')
                    )
        daily = ("daily_instant_max", "daily_notify_max", "daily_delay_max")
        daily_usd = tuple(f"{n}_usd" for n in daily)
        if self.asset == "*":
            for name in daily:
                if getattr(self, name) is not None:
                    problems.append(
                        (name, 'base-unit figures need one asset; with asset "*" use *_usd')
                    )
        for group in (tiers, usd_tiers, daily, daily_usd):
            given = [(n, getattr(self, n)) for n in group if getattr(self, n) is not None]
            for (low_name, low), (high_name, high) in itertools.pairwise(given):
                if low > high:
                    problems.append((high_name, f"must be >= {low_name}"))
        if problems:
            raise _Problems(problems)
        return self

    @property
    def thresholds(self) -> tuple[int | None, int | None, int | None]:
        """``(instant_max, notify_max, delay_max)`` in base units."""
        return (self.instant_max, self.notify_max, self.delay_max)

    @property
    def thresholds_usd(self) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        """``(instant_max_usd, notify_max_usd, delay_max_usd)``."""
        return (self.instant_max_usd, self.notify_max_usd, self.delay_max_usd)

    @property
    def daily_thresholds(self) -> tuple[int | None, int | None, int | None]:
        """The velocity bounds for the rolling 24 h total, defaults filled in (see above)."""
        return daily_bounds(
            self.thresholds, (self.daily_instant_max, self.daily_notify_max, self.daily_delay_max)
        )

    @property
    def daily_thresholds_usd(self) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        """The USD velocity bounds, defaults filled in from the ``*_usd`` tier bounds."""
        return daily_bounds(
            self.thresholds_usd,
            (self.daily_instant_max_usd, self.daily_notify_max_usd, self.daily_delay_max_usd),
        )


def daily_bounds(
    per_request: tuple[Any, Any, Any], daily: tuple[Any, Any, Any]
) -> tuple[Any, Any, Any]:
    """Velocity bounds: the explicit ``daily`` ones, else defaults from the per-request bounds.

    Defaults: INSTANT while the 24 h total is at most ``notify_max``, NOTIFY up to
    ``delay_max``, APPROVAL above ``delay_max`` (a missing per-request bound is replaced by
    the highest one given). With no per-request bound at all, no velocity tier applies
    unless set explicitly.
    """
    _i, notify, delay = per_request
    given = [b for b in per_request if b is not None]
    if not given:
        return daily
    highest = max(given)
    defaults = (
        notify if notify is not None else highest,
        delay if delay is not None else highest,
        delay if delay is not None else highest,
    )
    low, mid, high = (d if d is not None else x for d, x in zip(daily, defaults, strict=True))
    return (low, mid, high)


# --------------------------------------------------------------------------- addresses


class AllowedAddressesRules(_RulesBase):
    """Recipients the agent may pay (``whitelist``) or must never touch (``blacklist``).

    Entries may mix chains; an entry that is not an address of the agent's chain does not
    concern that agent. See docs/policies.md for exactly which request fields are checked.
    """

    addresses: tuple[_RuleAddress, ...] = Field(max_length=MAX_LIST)
    mode: Literal["whitelist", "blacklist"] = "whitelist"

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _non_empty_unique(value)

    @cached_property
    def address_set(self) -> frozenset[str]:
        """The normalised addresses, for O(1) lookups."""
        return frozenset(self.addresses)


# --------------------------------------------------------------------------- time


class HourWindow(BaseModel):
    """Local hours ``[start, end)``; ``start > end`` wraps past midnight (22 -> 6)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: Annotated[StrictInt, Field(ge=0, le=23)]
    end: Annotated[StrictInt, Field(ge=1, le=24)]

    @model_validator(mode="after")
    def _not_empty(self) -> HourWindow:
        if self.start == self.end:
            raise ValueError("start == end is an empty window; leave allowed_hours out for 24 h")
        return self

    def contains(self, hour: int) -> bool:
        """True when local ``hour`` (0-23) lies in the window."""
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


class TimeRestrictionRules(_RulesBase):
    """When the agent may transact, in a named IANA time zone (DST handled by ``zoneinfo``).

    Attributes:
        allowed_hours: ``{"start": 9, "end": 17}``; end-exclusive; may wrap midnight.
        allowed_days: ISO weekdays, 1 = Monday .. 7 = Sunday, of the local date at the moment
            of the request.
        timezone: an IANA name such as ``"Europe/Berlin"`` (default ``"UTC"``).
    """

    allowed_hours: HourWindow | None = None
    allowed_days: tuple[Annotated[StrictInt, Field(ge=1, le=7)], ...] | None = Field(
        default=None, min_length=1, max_length=7
    )
    timezone: str = "UTC"

    @field_validator("allowed_days")
    @classmethod
    def _unique_days(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("days must not repeat")
        return None if value is None else tuple(sorted(value))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not _printable_ascii(value) or ".." in value or value.startswith("/"):
            raise ValueError(f"{_safe(value)} is not an IANA time zone name")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{_safe(value)} is not a known IANA time zone") from exc
        return value

    @model_validator(mode="after")
    def _something(self) -> TimeRestrictionRules:
        if self.allowed_hours is None and self.allowed_days is None:
            raise ValueError("a TIME_RESTRICTION needs allowed_hours, allowed_days or both")
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        """The rule's time zone."""
        return ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- counters


class AutoStopRules(_RulesBase):
    """Suspend the agent when a trigger fires (the shell performs the suspension).

    Triggers:
        ``consecutive_failures``: the agent's last ``threshold`` transactions failed on chain.
        ``max_transactions``: ``threshold`` transactions already ran in ``window_seconds``.
        ``max_denials``: this denial is the ``threshold``-th in ``window_seconds``.
    """

    trigger: Literal["consecutive_failures", "max_transactions", "max_denials"]
    threshold: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    window_seconds: _Seconds | None = None
    action: Literal["suspend"] = "suspend"

    @model_validator(mode="after")
    def _window(self) -> AutoStopRules:
        if self.trigger == "consecutive_failures" and self.window_seconds is not None:
            raise _Problems([("window_seconds", "not used by consecutive_failures")])
        if self.trigger != "consecutive_failures" and self.window_seconds is None:
            raise _Problems([("window_seconds", f"required by the {self.trigger} trigger")])
        return self


class RateLimitRules(_RulesBase):
    """At most ``max_requests`` requests (allowed or denied) per rolling ``window_seconds``."""

    max_requests: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    window_seconds: _Seconds


# --------------------------------------------------------------------------- tokens, contracts


class TokenEntry(BaseModel):
    """A token the agent may use; ``decimals`` and ``symbol`` only improve explanations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    symbol: str | None = Field(default=None, min_length=1, max_length=16, pattern=r"^[ -~]+$")
    decimals: Annotated[StrictInt, Field(ge=0, le=255)] | None = None


def _entry(value: object, key: str) -> object:
    return {key: value} if isinstance(value, str) else value


class AllowedTokensRules(_RulesBase):
    """The tokens the agent may transfer or approve (entries: address or ``{address, ...}``)."""

    tokens: tuple[
        Annotated[
            TokenEntry, BeforeValidator(lambda v: _entry(v, "address")), _entry_address("address")
        ],
        ...,
    ] = Field(max_length=MAX_LIST)

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: tuple[TokenEntry, ...]) -> tuple[TokenEntry, ...]:
        return _non_empty_unique(value, key=lambda t: t.address)

    @cached_property
    def by_address(self) -> Mapping[str, TokenEntry]:
        """Entries keyed by normalised address."""
        return {t.address: t for t in self.tokens}


class ContractEntry(BaseModel):
    """A contract (EVM) or program (Solana) the agent may call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[ -~]+$")


class ContractWhitelistRules(_RulesBase):
    """The contracts / programs the agent may call (entries: address or ``{address, name}``)."""

    contracts: tuple[
        Annotated[
            ContractEntry,
            BeforeValidator(lambda v: _entry(v, "address")),
            _entry_address("address"),
        ],
        ...,
    ] = Field(max_length=MAX_LIST)

    @field_validator("contracts")
    @classmethod
    def _contracts(cls, value: tuple[ContractEntry, ...]) -> tuple[ContractEntry, ...]:
        return _non_empty_unique(value, key=lambda c: c.address)

    @cached_property
    def address_set(self) -> frozenset[str]:
        """The normalised contract addresses."""
        return frozenset(c.address for c in self.contracts)


class MethodEntry(BaseModel):
    """The 4-byte selectors callable on one EVM contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contract: str
    selectors: tuple[str, ...] = Field(max_length=256)

    @field_validator("contract")
    @classmethod
    def _contract(cls, value: str) -> str:
        return _normalize_rule_address(value, EVM)

    @field_validator("selectors")
    @classmethod
    def _selectors(cls, value: tuple[Any, ...]) -> tuple[str, ...]:
        problems: list[tuple[str, str]] = []
        out: list[str] = []
        for index, item in enumerate(value):
            normal = normalize_selector(item)
            if normal is None:
                problems.append((str(index), f'{_safe(item)} is not "0x" + 8 hex digits'))
            elif normal not in out:
                out.append(normal)
        if problems:
            raise _Problems(problems)
        return _non_empty_unique(tuple(out))


class MethodWhitelistRules(_RulesBase):
    """Per EVM contract, the method selectors the agent may call.

    A contract listed here may only be called with one of its selectors (calls without a
    4-byte selector are refused); contracts not listed are left to CONTRACT_WHITELIST.
    """

    methods: tuple[MethodEntry, ...] = Field(max_length=MAX_LIST)

    @field_validator("methods")
    @classmethod
    def _merge(cls, value: tuple[MethodEntry, ...]) -> tuple[MethodEntry, ...]:
        _non_empty_unique(value, key=id)
        merged: dict[str, list[str]] = {}
        for entry in value:
            bucket = merged.setdefault(entry.contract, [])
            bucket.extend(s for s in entry.selectors if s not in bucket)
        return tuple(MethodEntry(contract=c, selectors=tuple(s)) for c, s in merged.items())

    @cached_property
    def by_contract(self) -> Mapping[str, frozenset[str]]:
        """Allowed selectors keyed by normalised contract address."""
        return {m.contract: frozenset(m.selectors) for m in self.methods}


class SpenderEntry(BaseModel):
    """A spender the agent may approve, optionally up to ``max_amount`` base units."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spender: str
    max_amount: Amount | None = None


class ApprovedSpendersRules(_RulesBase):
    """The spenders the agent may grant token allowances to."""

    spenders: tuple[
        Annotated[
            SpenderEntry,
            BeforeValidator(lambda v: _entry(v, "spender")),
            _entry_address("spender"),
        ],
        ...,
    ] = Field(max_length=MAX_LIST)

    @field_validator("spenders")
    @classmethod
    def _spenders(cls, value: tuple[SpenderEntry, ...]) -> tuple[SpenderEntry, ...]:
        seen: dict[str, SpenderEntry] = {}
        problems: list[tuple[str, str]] = []
        for index, entry in enumerate(value):
            earlier = seen.setdefault(entry.spender, entry)
            if earlier.max_amount != entry.max_amount:
                problems.append((str(index), "the same spender is listed twice with two limits"))
        if problems:
            raise _Problems(problems)
        return _non_empty_unique(value, key=lambda s: s.spender)

    @cached_property
    def by_spender(self) -> Mapping[str, SpenderEntry]:
        """Entries keyed by normalised spender address."""
        return {s.spender: s for s in self.spenders}


class ApproveAmountLimitRules(_RulesBase):
    """Caps a single token approval.

    Attributes:
        max_amount: the largest allowance one approval may grant (base units).
        block_unlimited: refuse "unlimited" approvals (default ``True``). Without
            ``max_amount`` an approval is unlimited when it exceeds the token's remaining
            daily budget (SPENDING_LIMIT ``daily_total`` for that token); with neither bound
            the approval needs the owner (APPROVAL). No magic numbers: ``2**256 - 1`` and
            ``2**255 - 1`` are judged alike. Approvals also count their full allowance
            against the token's budgets and the session's totals when granted.
    """

    max_amount: Amount | None = None
    block_unlimited: StrictBool = True


class AllowedNetworksRules(_RulesBase):
    """The networks (``"mainnet-beta"``, ``"devnet"``, ``"sepolia"``, ...) the agent may use."""

    networks: tuple[Annotated[str, AfterValidator(lambda v: _check_name(v, "network"))], ...] = (
        Field(max_length=256)
    )

    @field_validator("networks")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _non_empty_unique(value)


Rules = (
    SpendingLimitRules
    | AllowedAddressesRules
    | TimeRestrictionRules
    | AutoStopRules
    | RateLimitRules
    | AllowedTokensRules
    | ContractWhitelistRules
    | MethodWhitelistRules
    | ApprovedSpendersRules
    | ApproveAmountLimitRules
    | AllowedNetworksRules
)
"""Any validated rule model."""

_MODELS: dict[PolicyType, type[BaseModel]] = {
    PolicyType.SPENDING_LIMIT: SpendingLimitRules,
    PolicyType.ALLOWED_ADDRESSES: AllowedAddressesRules,
    PolicyType.TIME_RESTRICTION: TimeRestrictionRules,
    PolicyType.AUTO_STOP: AutoStopRules,
    PolicyType.RATE_LIMIT: RateLimitRules,
    PolicyType.ALLOWED_TOKENS: AllowedTokensRules,
    PolicyType.CONTRACT_WHITELIST: ContractWhitelistRules,
    PolicyType.METHOD_WHITELIST: MethodWhitelistRules,
    PolicyType.APPROVED_SPENDERS: ApprovedSpendersRules,
    PolicyType.APPROVE_AMOUNT_LIMIT: ApproveAmountLimitRules,
    PolicyType.ALLOWED_NETWORKS: AllowedNetworksRules,
}


def rules_model(policy_type: PolicyType | str) -> type[BaseModel]:
    """The rule model class for ``policy_type``.

    Raises:
        InvalidInputError: unknown policy type.
    """
    return _MODELS[_policy_type(policy_type)]


def _policy_type(value: object) -> PolicyType:
    try:
        return PolicyType(str(value)) if isinstance(value, str) else PolicyType(repr(value))
    except ValueError:
        known = ", ".join(t.value for t in PolicyType)
        raise InvalidInputError(
            f"unknown policy type {_safe(value)}; known types: {known}",
            field="type",
            problems=[f"type: unknown policy type {_safe(value)}; known types: {known}"],
        ) from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {_safe(key)}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _load_json(text: str | bytes) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except _DuplicateKey as exc:
        raise InvalidInputError(
            f"rules JSON has a {exc}", field="rules", problems=[f"rules: {exc}"]
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(
            f"rules are not valid JSON: {exc}", field="rules", problems=[f"rules: {exc}"]
        ) from None


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "rules"


def _problems_from(error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        loc = _format_loc(tuple(item["loc"]))
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            for sub, msg in cause.problems:
                problems.append(f"{loc}.{sub}: {msg}" if sub else f"{loc}: {msg}")
            continue
        msg = str(cause) if isinstance(cause, ValueError) else item["msg"]
        problems.append(f"{loc}: {msg}")
    return [p.replace("rules.", "", 1) if p.startswith("rules.") else p for p in problems]


def validate_rules(policy_type: PolicyType | str, rules: object) -> Rules:
    """Validate the rules of one policy and return the typed, normalised model.

    Args:
        policy_type: a :class:`PolicyType` or its name (``"SPENDING_LIMIT"``, ...).
        rules: a JSON string/bytes, a mapping, or an already validated model of that type.

    Returns:
        The frozen rule model (addresses normalised, amounts as ``int``).

    Raises:
        InvalidInputError: unknown type, invalid JSON (duplicate keys, ``NaN``), or rules
            that do not fit; ``problems`` lists every problem found as ``"field: message"``.

    Example::

        >>> validate_rules("RATE_LIMIT", {"max_requests": 10, "window_seconds": 60})
        RateLimitRules(chain=None, network=None, max_requests=10, window_seconds=60)
    """
    kind = _policy_type(policy_type)
    model = _MODELS[kind]
    if isinstance(rules, model):
        return rules  # type: ignore[return-value]  # model is one of the Rules members
    if isinstance(rules, BaseModel):
        raise InvalidInputError(
            f"{type(rules).__name__} are not {kind} rules",
            field="rules",
            problems=[f"rules: {type(rules).__name__} are not {kind} rules"],
        )
    data = _load_json(rules) if isinstance(rules, str | bytes) else rules
    if not isinstance(data, Mapping):
        msg = f"{kind} rules must be a JSON object, not {type(data).__name__}"
        raise InvalidInputError(msg, field="rules", problems=[f"rules: {msg}"])
    try:
        return model.model_validate(dict(data))  # type: ignore[return-value]
    except ValidationError as exc:
        problems = _problems_from(exc)
        raise InvalidInputError(
            f"invalid {kind} rules: {len(problems)} problem(s): " + "; ".join(problems),
            field="rules",
            problems=problems,
        ) from None
