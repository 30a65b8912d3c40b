"""The notification port: :class:`NotificationEvent`, :class:`Notifier` and :class:`Sealer`.

The pipeline hands a :class:`NotificationEvent` to a :class:`Notifier` *after* the database
transaction that caused it has committed. A notifier never raises into its caller: a
notification that fails must never undo, delay or fail a transaction.

Routing rule (implemented by :class:`~waiaas.notify.dispatcher.NotificationDispatcher`):
critical events (see :func:`is_critical`) are broadcast to every enabled channel; any other
event goes to the enabled channels in priority order (higher first) and the first channel that
delivers it stops the walk.

Example::

    from waiaas.notify import NotificationEvent
    from waiaas.types import AuditEvent

    event = NotificationEvent(
        event_type=AuditEvent.TX_CONFIRMED, timestamp=1_760_000_000, agent_name="trader",
        amount=1_500_000_000, asset_symbol="SOL", decimals=9, chain="solana",
    )
    event.display_amount  # '1.5 SOL'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from waiaas.errors import InvalidInputError
from waiaas.notify._format import format_amount
from waiaas.types import AuditEvent, Severity, Tier

__all__ = [
    "CRITICAL_EVENTS",
    "MAX_MESSAGE",
    "ChannelType",
    "NotificationEvent",
    "Notifier",
    "Sealer",
    "is_critical",
]

CRITICAL_EVENTS: frozenset[str] = frozenset(
    {
        AuditEvent.KILL_SWITCH_ACTIVATED.value,
        AuditEvent.AUTO_STOP_TRIGGERED.value,
        AuditEvent.AGENT_SUSPENDED.value,
    }
)
"""Event types that are always broadcast to every enabled channel, whatever their severity."""


class ChannelType(StrEnum):
    """Kinds of notification channel (the ``notification_channels.type`` column)."""

    TELEGRAM = "TELEGRAM"
    DISCORD = "DISCORD"
    NTFY = "NTFY"
    WEBHOOK = "WEBHOOK"


_TITLES: dict[str, str] = {
    "TX_REQUESTED": "Transaction requested",
    "TX_QUEUED": "Transaction queued",
    "TX_EXECUTING": "Transaction executing",
    "TX_SUBMITTED": "Transaction submitted",
    "TX_CONFIRMED": "Transaction confirmed",
    "TX_FAILED": "Transaction failed",
    "TX_CANCELLED": "Transaction cancelled",
    "TX_EXPIRED": "Transaction expired",
    "TX_APPROVED": "Transaction approved",
    "TX_REJECTED": "Transaction rejected",
    "TX_UNRESOLVED": "Transaction may have landed: operator action needed",
    "TX_RESOLVED": "Unresolved transaction settled by the operator",
    "POLICY_VIOLATION": "Policy violation",
    "KILL_SWITCH_ACTIVATED": "Kill switch activated",
    "KILL_SWITCH_RECOVERED": "Kill switch recovered",
    "AUTO_STOP_TRIGGERED": "Agent stopped automatically",
    "AGENT_SUSPENDED": "Agent suspended",
    "AGENT_RESUMED": "Agent resumed",
    "SESSION_REVOKED": "Session revoked",
}

_MAX_TITLE = 256
MAX_MESSAGE = 16_384
"""The longest ``NotificationEvent.message`` accepted (characters)."""


def _default_title(event_type: str) -> str:
    known = _TITLES.get(event_type)
    if known:
        return known
    return event_type.replace("_", " ").strip().capitalize() or "Notification"


def _check_int(
    name: str, value: object, *, minimum: int | None = 0, maximum: int | None = None
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an int, not {type(value).__name__}", field=name)
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}", field=name)
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"{name} must be <= {maximum}", field=name)


def _check_optional_str(name: str, value: object, limit: int = 1024) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a str, not {type(value).__name__}", field=name)
    if len(value) > limit:
        raise InvalidInputError(f"{name} is longer than {limit} characters", field=name)


def _severity_of(event_type: str, severity: Severity | str | None) -> Severity:
    """The severity given, checked, or the event's default (INFO for an unknown event)."""
    if severity is None:
        try:
            return AuditEvent(event_type).default_severity
        except ValueError:
            return Severity.INFO
    try:
        return Severity(severity)
    except ValueError as exc:
        raise InvalidInputError(
            f"severity must be one of {[s.value for s in Severity]}", field="severity"
        ) from exc


def _checked_extra(value: object) -> dict[str, Any]:
    """A copy of ``extra``, refused unless it is a JSON-serialisable mapping with str keys."""
    if not isinstance(value, Mapping):
        raise InvalidInputError("extra must be a mapping", field="extra")
    extra = dict(value)
    if any(not isinstance(key, str) for key in extra):
        raise InvalidInputError("extra keys must be strings", field="extra")
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError("extra must be JSON-serialisable", field="extra") from exc
    return extra


@dataclass(frozen=True, kw_only=True, slots=True)
class NotificationEvent:
    """One thing worth telling the owner about, rendered by each channel in its own format.

    Args:
        event_type: what happened: an :class:`~waiaas.types.AuditEvent` or any other string
            (``"TEST"`` for a channel test message).
        timestamp: when it happened, Unix seconds (UTC).
        severity: ``info``/``warning``/``critical``; defaults to the audit event's default
            severity (``info`` for unknown event types).
        title: a short headline; defaults to a readable form of the event type.
        message: free text shown under the headline.
        agent_id / agent_name: the agent concerned, if any.
        tx_id / chain / network: the transaction concerned, if any.
        amount: exact amount in base units (lamports, wei); never a float.
        asset_symbol / decimals: how to render ``amount`` for people (``1.5 SOL``).
        to_address: the recipient, if any.
        tier: the tier the policy assigned, if any.
        extra: further JSON-able details (shown as ``key: value`` lines, sent as-is to webhooks).

    Raises:
        InvalidInputError: a field has the wrong type or is out of range (floats for
            ``amount`` are refused), or ``extra`` is not JSON-able.
    """

    event_type: AuditEvent | str
    timestamp: int
    severity: Severity | None = None
    title: str = ""
    message: str = ""
    agent_id: str | None = None
    agent_name: str | None = None
    tx_id: str | None = None
    chain: str | None = None
    network: str | None = None
    amount: int | None = None
    asset_symbol: str | None = None
    decimals: int | None = None
    to_address: str | None = None
    tier: Tier | str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.event_type, str) or not self.event_type.strip():
            raise InvalidInputError("event_type must be a non-empty string", field="event_type")
        if len(self.event_type) > 64:
            raise InvalidInputError("event_type is longer than 64 characters", field="event_type")
        _check_int("timestamp", self.timestamp)
        if self.amount is not None:
            _check_int("amount", self.amount)
        if self.decimals is not None:
            _check_int("decimals", self.decimals, maximum=255)
        for name in ("agent_id", "agent_name", "tx_id", "chain", "network", "to_address"):
            _check_optional_str(name, getattr(self, name))
        _check_optional_str("asset_symbol", self.asset_symbol, 128)  # may be a token address
        _check_optional_str("title", self.title, _MAX_TITLE)
        _check_optional_str("message", self.message, MAX_MESSAGE)
        if self.tier is not None and not isinstance(self.tier, str):
            raise InvalidInputError("tier must be a Tier or str", field="tier")

        object.__setattr__(self, "severity", _severity_of(self.event_type, self.severity))
        if not self.title:
            object.__setattr__(self, "title", _default_title(str(self.event_type)))
        object.__setattr__(self, "extra", MappingProxyType(_checked_extra(self.extra)))

    @property
    def resolved_severity(self) -> Severity:
        """The severity (never ``None`` after construction)."""
        return self.severity if self.severity is not None else Severity.INFO

    @property
    def is_critical(self) -> bool:
        """True when the event must be broadcast to every channel (see :func:`is_critical`)."""
        return is_critical(self)

    @property
    def display_amount(self) -> str | None:
        """``amount`` in human units with the symbol (``"1.5 SOL"``), or ``None`` without one.

        Without ``decimals`` the amount is shown in base units (``"250000 base units"``).
        """
        if self.amount is None:
            return None
        return format_amount(self.amount, self.decimals, self.asset_symbol)

    def to_json_dict(self) -> dict[str, Any]:
        """The event as JSON-able data (amounts as decimal strings, never floats)."""
        return {
            "type": str(self.event_type),
            "severity": str(self.resolved_severity),
            "title": self.title,
            "message": self.message,
            "timestamp": self.timestamp,
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "tx_id": self.tx_id,
            "chain": self.chain,
            "network": self.network,
            "amount": None if self.amount is None else str(self.amount),
            "asset_symbol": self.asset_symbol,
            "decimals": self.decimals,
            "amount_display": self.display_amount,
            "to_address": self.to_address,
            "tier": None if self.tier is None else str(self.tier),
            "extra": dict(self.extra),
        }


def is_critical(event: NotificationEvent) -> bool:
    """Whether ``event`` is broadcast to every enabled channel.

    Critical events are KILL_SWITCH_ACTIVATED, AUTO_STOP_TRIGGERED, AGENT_SUSPENDED and any
    event whose severity is ``critical``.
    """
    return str(event.event_type) in CRITICAL_EVENTS or event.severity == Severity.CRITICAL


@runtime_checkable
class Notifier(Protocol):
    """Where the pipeline sends notifications, after commit.

    Implementations must never raise from :meth:`notify` and should not block on I/O there.
    """

    def notify(self, event: NotificationEvent) -> None:
        """Hand ``event`` over for delivery. Never raises, never blocks on the network."""
        ...

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is pending (waiting at most ``timeout`` seconds), then stop."""
        ...


@runtime_checkable
class Sealer(Protocol):
    """Authenticated encryption of small secrets, bound to a context string.

    The keystore provides this; channel secrets are sealed with the channel id as context, so
    a sealed blob copied onto another channel row does not open.
    """

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Encrypt ``plaintext`` for ``context``; return a text blob safe to store."""
        ...

    def unseal(self, blob: str, *, context: str) -> bytes:
        """Decrypt a blob made by :meth:`seal` with the same ``context``.

        Raises a :class:`~waiaas.errors.KeystoreError` when locked, tampered or moved.
        """
        ...
