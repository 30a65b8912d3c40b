"""Channel management on the database, with secrets sealed by the keystore.

:class:`ChannelService` adds, edits, enables, disables, removes and lists the rows of
``notification_channels`` and sends test messages. Every change writes a
``NOTIFICATION_CHANNEL_UPDATED`` audit row in the same transaction (names of changed fields,
never their values).

:class:`DatabaseChannelSource` is the :class:`~waiaas.notify.dispatcher.ChannelSource` the
dispatcher reads channels from; it records ``last_success_at`` / ``last_failure_at`` and
writes a ``NOTIFICATION_FAILED`` audit row when no channel delivered an event.

The ``config`` column holds JSON like::

    {"v": 1,
     "settings": {"chat_id": -1001234, "api_base_url": "https://api.telegram.org", ...},
     "redacted": {"bot_token": "123456:[secure]"},
     "sealed": "v1:..."}

``sealed`` is the secret fields (tokens, webhook URLs and secrets, ntfy topic) sealed with the
:class:`~waiaas.notify.base.Sealer` under the channel id as context, so the database file holds
no usable secret and a blob copied to another row does not open. ``redacted`` lets channels be
listed while the keystore is locked.

Example::

    service = ChannelService(db, keystore, clock)
    info = service.add("TELEGRAM", {"bot_token": "123456:AAE...", "chat_id": -1001234}, priority=10)
    service.send_test(info.id)
    dispatcher = NotificationDispatcher(service.source())
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import httpx

from waiaas._validate import check_actor, check_id, check_priority
from waiaas.clock import Clock, SystemClock
from waiaas.db import Database
from waiaas.db.generations import CHANNELS, Observed
from waiaas.db.tables import ChannelRow
from waiaas.errors import (
    InvalidInputError,
    NotFoundError,
    NotificationError,
    StorageError,
    WaiaasError,
)
from waiaas.ids import new_id
from waiaas.notify.base import ChannelType, NotificationEvent, Sealer
from waiaas.notify.channels import (
    Channel,
    ChannelConfig,
    OutboundRequest,
    ResponseVerdict,
    build_channel,
    parse_channel_config,
)
from waiaas.notify.dispatcher import ChannelResult, DeliveryReport, RetryPolicy, deliver
from waiaas.types import AuditEvent, Severity

__all__ = ["ChannelInfo", "ChannelService", "DatabaseChannelSource", "test_event"]

_log = logging.getLogger("waiaas.notify")

_FORMAT = 1
_ENTITY = "notification_channel"
_GENERATION_SQL = "SELECT value FROM wallet_state WHERE key = ?"


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel as shown to people: the configuration with every secret masked.

    Attributes:
        id, type, priority, enabled, created_at: the row's columns.
        config: the settings; secret fields show ``[secure]`` (URLs keep scheme and host,
            Telegram tokens keep the public bot id).
        last_success_at / last_failure_at: Unix seconds of the last delivery outcome.
    """

    id: str
    type: str
    priority: int
    enabled: bool
    config: Mapping[str, Any]
    last_success_at: int | None
    last_failure_at: int | None
    created_at: int


def test_event(now: int, message: str | None = None) -> NotificationEvent:
    """The event a channel test sends (``event_type`` ``CHANNEL_TEST``, severity info)."""
    return NotificationEvent(
        event_type="CHANNEL_TEST",
        timestamp=now,
        severity=Severity.INFO,
        title="Test notification",
        message=message or "This is a test message from waiaas: the channel works.",
    )


# --------------------------------------------------------------------------- row <-> channel


def _encode(channel_id: str, config: ChannelConfig, sealer: Sealer) -> str:
    secrets = config.secret_dict()
    data: dict[str, Any] = {
        "v": _FORMAT,
        "settings": config.public_dict(),
        "redacted": {k: v for k, v in config.redacted().items() if k in secrets},
        "sealed": None,
    }
    if secrets:
        plaintext = json.dumps(secrets, separators=(",", ":"), sort_keys=True).encode("utf-8")
        data["sealed"] = sealer.seal(plaintext, context=channel_id)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _stored(row: ChannelRow) -> dict[str, Any]:
    try:
        data = json.loads(row.config)
    except ValueError:
        raise StorageError(f"notification channel {row.id} has a malformed config") from None
    if not isinstance(data, dict) or data.get("v") != _FORMAT:
        raise StorageError(f"notification channel {row.id} has an unknown config format")
    if not isinstance(data.get("settings"), dict):
        raise StorageError(f"notification channel {row.id} has a malformed config")
    return data


def _decode(row: ChannelRow, sealer: Sealer) -> ChannelConfig:
    """Unseal and validate a row's config (raises KeystoreError when locked or tampered)."""
    data = _stored(row)
    values: dict[str, Any] = dict(data["settings"])
    blob = data.get("sealed")
    if blob is not None:
        if not isinstance(blob, str):
            raise StorageError(f"notification channel {row.id} has a malformed config")
        secrets = json.loads(sealer.unseal(blob, context=row.id).decode("utf-8"))
        if not isinstance(secrets, dict):
            raise StorageError(f"notification channel {row.id} has a malformed config")
        values.update(secrets)
    return parse_channel_config(row.type, values)


def _info(row: ChannelRow) -> ChannelInfo:
    try:
        data = _stored(row)
        shown = {**data["settings"], **(data.get("redacted") or {})}
    except StorageError:
        shown = {"error": "unreadable config"}
    return ChannelInfo(
        id=row.id,
        type=row.type,
        priority=row.priority,
        enabled=bool(row.enabled),
        config=MappingProxyType(shown),
        last_success_at=row.last_success_at,
        last_failure_at=row.last_failure_at,
        created_at=row.created_at,
    )


class _UnusableChannel:
    """Stands in for a row that cannot be loaded (keystore locked, tampered config...).

    Delivering through it fails with the reason, so the failure is recorded and audited.
    """

    def __init__(self, row: ChannelRow, reason: str) -> None:
        self._id = row.id
        self._type = row.type
        self._priority = row.priority
        self.reason = reason

    @property
    def id(self) -> str:
        return self._id

    @property
    def type(self) -> str:
        return self._type

    @property
    def priority(self) -> int:
        return self._priority

    def build_request(
        self, event: NotificationEvent, *, now: int, delivery_id: str
    ) -> OutboundRequest:
        raise NotificationError(
            f"channel {self._id} cannot be used: {self.reason}",
            channel_id=self._id,
            reason=self.reason,
        )

    def check_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ResponseVerdict:
        return ResponseVerdict(ok=False, error=self.reason)

    def secret_values(self) -> tuple[str, ...]:
        return ()

    def __repr__(self) -> str:
        return f"_UnusableChannel(id={self._id!r}, reason={self.reason!r})"


class _Loader:
    """Turns rows into channels, caching unsealed configs by (id, type, config text)."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[str, str], ChannelConfig]] = {}

    def load(self, row: ChannelRow) -> Channel:
        key = (row.type, row.config)
        with self._lock:
            hit = self._cache.get(row.id)
        if hit is not None and hit[0] == key:
            config = hit[1]
        else:
            try:
                config = _decode(row, self._sealer)
            except WaiaasError as exc:
                reason = f"{exc.code}: config could not be loaded"
                _log.warning("notification channel %s unusable: %s", row.id, reason)
                return _UnusableChannel(row, reason)
            with self._lock:
                self._cache[row.id] = (key, config)
        return build_channel(row.type, config, id=row.id, priority=row.priority)

    def forget(self, channel_id: str) -> None:
        with self._lock:
            self._cache.pop(channel_id, None)


# --------------------------------------------------------------------------- source


class DatabaseChannelSource:
    """Reads enabled channels from the database and records delivery outcomes there.

    Args:
        db: the opened :class:`~waiaas.db.Database`.
        sealer: the keystore (or any :class:`~waiaas.notify.base.Sealer`).
        clock: unused for timestamps (reports carry their own); kept for symmetry.

    A row whose config cannot be unsealed (locked keystore, tampering) is still returned, as
    a channel whose delivery fails with that reason, so the failure is recorded and audited.
    """

    def __init__(self, db: Database, sealer: Sealer, *, _loader: _Loader | None = None) -> None:
        if not isinstance(sealer, Sealer):
            raise InvalidInputError("sealer must provide seal() and unseal()", field="sealer")
        self._db = db
        self._loader = _loader or _Loader(sealer)
        self._lock = threading.Lock()
        # (channel id, success?) -> the timestamp this source last wrote: a burst of events
        # within one second then costs one write, not one per event
        self._marked: dict[tuple[str, bool], int] = {}
        # (the channels' generation, the channels loaded in the transaction that read it)
        self._kept: tuple[str, tuple[Channel, ...]] | None = None

    def __repr__(self) -> str:
        return f"DatabaseChannelSource({self._db!r})"

    def enabled_channels(self) -> list[Channel]:
        """The enabled channels, highest priority first (then oldest first), as committed now.

        The channels are kept with the channels' generation read in the same transaction
        (:mod:`waiaas.db.generations`; it grows on every change of a channel, by trigger and
        by :class:`ChannelService`, but not on delivery outcomes). Each call reads the
        generation alone (one single-row read of the newest committed state) and reads the
        channels again only when it moved. A list holding a channel that could not be
        loaded (keystore locked, ...) is not kept: the next event tries again.
        """
        found = self._db.fetch_one(_GENERATION_SQL, (CHANNELS,))
        return self._channels(None if found is None else found[0])

    def enabled_channels_at(self, at: Observed) -> list[Channel]:
        """The enabled channels for an event whose unit of work read the channels'
        generation ``at`` under its write lock, in the transaction that committed it.

        The kept channels when they were loaded at that generation of this database (no
        read: they are the channels as committed with the event, though a channel changed
        since may still be among them); otherwise (another generation, another database,
        another counter) what :meth:`enabled_channels` gives, read in one transaction with
        the generation now.
        """
        if at.database is not self._db or at.key != CHANNELS:
            return self.enabled_channels()
        return self._channels(at.value)

    def kept_channels_at(self, at: Observed) -> tuple[Channel, ...] | None:
        """The channels :meth:`enabled_channels_at` gives for ``at`` when it gives them
        without a read (kept at that very generation of this database), else ``None``."""
        if at.database is not self._db or at.key != CHANNELS:
            return None
        with self._lock:
            kept = self._kept
        if kept is None or at.value is None or kept[0] != at.value:
            return None
        return kept[1]

    def _channels(self, generation: str | None) -> list[Channel]:
        """The kept channels when kept at ``generation`` (``None``: unknown), else the
        channels and their generation read in one read transaction (kept when loadable)."""
        with self._lock:
            kept = self._kept
        if generation is not None and kept is not None and kept[0] == generation:
            return list(kept[1])
        with self._db.read() as uow:
            uow.state.prefetch((CHANNELS,))
            _read, loaded = uow.state.held(CHANNELS)
            rows = uow.channels.all(enabled_only=True)
        channels = [self._loader.load(row) for row in rows]
        if loaded is not None and not any(isinstance(c, _UnusableChannel) for c in channels):
            with self._lock:
                self._kept = (loaded, tuple(channels))
        return channels

    def record(self, report: DeliveryReport) -> None:
        """Update last_success_at/last_failure_at; audit NOTIFICATION_FAILED if undelivered."""
        event = report.event
        marks: dict[tuple[str, bool], int] = {}
        with self._lock:
            for result in report.results:
                if result.status != "rate_limited":
                    key = (result.channel_id, result.ok)
                    if self._marked.get(key) != result.at:
                        marks[key] = result.at
        if not marks and report.delivered:
            return
        with self._db.write() as uow:
            for (channel_id, success), at in marks.items():
                uow.channels.mark(channel_id, success=success, now=at)
            if not report.delivered:
                uow.audit.append(
                    AuditEvent.NOTIFICATION_FAILED,
                    actor="system",
                    now=report.at,
                    agent_id=event.agent_id,
                    tx_id=event.tx_id,
                    details={
                        "event": str(event.event_type),
                        "severity": str(event.resolved_severity),
                        "delivery_id": report.delivery_id,
                        "broadcast": report.broadcast,
                        "channels": [
                            {
                                "id": r.channel_id,
                                "type": r.channel_type,
                                "status": r.status,
                                "attempts": r.attempts,
                                "error": r.error,
                            }
                            for r in report.results
                        ],
                    },
                )
            uow.commit()
        with self._lock:
            self._marked.update(marks)


# --------------------------------------------------------------------------- service


def _check_id(channel_id: object) -> str:
    return check_id(channel_id, "channel_id", max_length=64)


class ChannelService:
    """Manage notification channels stored in the database.

    Args:
        db: the opened :class:`~waiaas.db.Database`.
        sealer: seals channel secrets (the :class:`~waiaas.keystore.Keystore`).
        clock: timestamps for rows and audit entries (default system clock).
        transport: httpx transport for test messages (default: a fresh
            ``httpx.HTTPTransport`` per test message).
        retry: timeouts/retries for test messages (default: 10 s timeout, 1 retry).

    Raises:
        InvalidInputError: ``sealer`` does not provide ``seal``/``unseal``.

    Example::

        service = ChannelService(db, keystore)
        info = service.add("NTFY", {"topic": "wallet-alerts"}, priority=5)
        service.disable(info.id)
    """

    def __init__(
        self,
        db: Database,
        sealer: Sealer,
        clock: Clock | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(sealer, Sealer):
            raise InvalidInputError("sealer must provide seal() and unseal()", field="sealer")
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidInputError("clock must provide now()", field="clock")
        self._db = db
        self._sealer = sealer
        self._clock: Clock = clock or SystemClock()
        self._transport = transport
        self._retry = retry or RetryPolicy(timeout=10.0, max_retries=1)
        self._loader = _Loader(sealer)

    def __repr__(self) -> str:
        return f"ChannelService({self._db!r})"

    def source(self) -> DatabaseChannelSource:
        """The :class:`DatabaseChannelSource` for a dispatcher (shares this service's cache)."""
        return DatabaseChannelSource(self._db, self._sealer, _loader=self._loader)

    # ------------------------------------------------------------------ queries

    def get(self, channel_id: str) -> ChannelInfo:
        """The channel ``channel_id``, secrets masked.

        Raises:
            NotFoundError: no such channel.
        """
        channel_id = _check_id(channel_id)
        with self._db.read() as uow:
            row = uow.channels.get(channel_id)
            if row is None:
                raise NotFoundError(_ENTITY, channel_id)
            return _info(row)

    def list(self, *, enabled_only: bool = False) -> builtins.list[ChannelInfo]:
        """Every channel (or only enabled ones), highest priority first, secrets masked."""
        with self._db.read() as uow:
            return [_info(row) for row in uow.channels.all(enabled_only=bool(enabled_only))]

    def channel(self, channel_id: str) -> Channel:
        """The usable channel object (secrets unsealed) for ``channel_id``.

        Raises:
            NotFoundError: no such channel.
            KeystoreLockedError / KeyIntegrityError: the secrets cannot be unsealed.
        """
        channel_id = _check_id(channel_id)
        with self._db.read() as uow:
            row = uow.channels.get(channel_id)
            if row is None:
                raise NotFoundError(_ENTITY, channel_id)
        config = _decode(row, self._sealer)
        return build_channel(row.type, config, id=row.id, priority=row.priority)

    # ------------------------------------------------------------------ changes

    def add(
        self,
        channel_type: ChannelType | str,
        config: Mapping[str, Any],
        *,
        priority: int = 0,
        enabled: bool = True,
        actor: str = "owner",
    ) -> ChannelInfo:
        """Validate, seal and store a new channel.

        Args:
            channel_type: ``TELEGRAM``, ``DISCORD``, ``NTFY`` or ``WEBHOOK``.
            config: the type's settings (see :mod:`waiaas.notify.channels`).
            priority: higher is tried first for non-critical events.
            enabled: whether it receives notifications.
            actor: who made the change (audit ``actor``).

        Raises:
            InvalidInputError: bad type, config, priority or actor (all problems listed).
            KeystoreLockedError: the keystore must be unlocked to seal the secrets.
            StorageError: the database refused the row.

        Example::

            service.add("DISCORD", {"webhook_url": "https://discord.com/api/webhooks/1/x"})
        """
        parsed = parse_channel_config(channel_type, config)
        kind = parsed.channel_type
        priority = check_priority(priority)
        if not isinstance(enabled, bool):
            raise InvalidInputError("enabled must be a bool", field="enabled")
        actor = check_actor(actor)
        channel_id = new_id()
        stored = _encode(channel_id, parsed, self._sealer)
        now = self._clock.now()
        row = ChannelRow(
            id=channel_id,
            type=kind.value,
            config=stored,
            priority=priority,
            enabled=int(enabled),
            created_at=now,
        )
        with self._db.write() as uow:
            try:
                uow.channels.add(row)
            except StorageError as exc:  # a constraint the schema enforces
                raise StorageError(
                    f"the database refused a {kind.value} channel (is its schema up to date?)"
                ) from exc
            self._audit(
                uow,
                "added",
                row,
                actor,
                now,
                fields=sorted(str(k) for k in config),
            )
            uow.commit()
            return _info(row)

    def update(
        self,
        channel_id: str,
        *,
        config: Mapping[str, Any] | None = None,
        priority: int | None = None,
        actor: str = "owner",
    ) -> ChannelInfo:
        """Change a channel's settings and/or priority.

        ``config`` is merged onto the current settings: keys given replace their value,
        keys omitted keep theirs (so a chat id can change without re-entering the token),
        and a key given as ``None`` goes back to its default.

        Raises:
            NotFoundError: no such channel.
            InvalidInputError: the merged config, the priority or the actor is invalid.
            KeystoreLockedError: changing ``config`` needs the keystore unlocked.
        """
        channel_id = _check_id(channel_id)
        actor = check_actor(actor)
        if config is not None and not isinstance(config, Mapping):
            raise InvalidInputError("config must be a mapping", field="config")
        if priority is not None:
            priority = check_priority(priority)
        with self._db.write() as uow:
            row = uow.channels.get(channel_id)
            if row is None:
                raise NotFoundError(_ENTITY, channel_id)
            changed: list[str] = []
            if config:
                current = _decode(row, self._sealer)
                merged: dict[str, Any] = {**current.public_dict(), **current.secret_dict()}
                for key, value in config.items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                parsed = parse_channel_config(row.type, merged)
                row.config = _encode(row.id, parsed, self._sealer)
                changed += [f"config.{k}" for k in sorted(str(k) for k in config)]
            if priority is not None and priority != row.priority:
                row.priority = priority
                changed.append("priority")
            if not changed:
                return _info(row)
            now = self._clock.now()
            uow.session.add(row)
            self._audit(uow, "updated", row, actor, now, fields=changed)
            uow.commit()
            self._loader.forget(channel_id)
            return _info(row)

    def enable(self, channel_id: str, *, actor: str = "owner") -> ChannelInfo:
        """Let the channel receive notifications again.

        Raises:
            NotFoundError: no such channel.
        """
        return self._set_enabled(channel_id, True, actor)

    def disable(self, channel_id: str, *, actor: str = "owner") -> ChannelInfo:
        """Stop sending to the channel (it stays stored).

        Raises:
            NotFoundError: no such channel.
        """
        return self._set_enabled(channel_id, False, actor)

    def remove(self, channel_id: str, *, actor: str = "owner") -> None:
        """Delete the channel and its sealed secrets.

        Raises:
            NotFoundError: no such channel.
        """
        channel_id = _check_id(channel_id)
        actor = check_actor(actor)
        with self._db.write() as uow:
            row = uow.channels.get(channel_id)
            if row is None:
                raise NotFoundError(_ENTITY, channel_id)
            now = self._clock.now()
            self._audit(uow, "removed", row, actor, now)
            uow.channels.delete(channel_id)
            uow.commit()
        self._loader.forget(channel_id)

    def send_test(self, channel_id: str, *, message: str | None = None) -> ChannelResult:
        """Send a test message now on this channel (enabled or not), outside the rate limit.

        ``last_success_at`` / ``last_failure_at`` are updated.

        Returns:
            The delivered :class:`~waiaas.notify.dispatcher.ChannelResult`.

        Raises:
            NotFoundError: no such channel.
            KeystoreLockedError: the secrets cannot be unsealed.
            NotificationError: the message was not delivered (``reason`` says why; no secrets).
        """
        channel = self.channel(channel_id)
        event = test_event(self._clock.now(), message)
        transport = self._transport or httpx.HTTPTransport()
        try:
            result = deliver(
                channel, event, transport=transport, policy=self._retry, clock=self._clock
            )
        finally:
            if self._transport is None:
                transport.close()
        with self._db.write() as uow:
            uow.channels.mark(channel.id, success=result.ok, now=result.at)
            uow.commit()
        if not result.ok:
            raise NotificationError(
                f"test message on channel {channel.id} failed: {result.error}",
                channel_id=channel.id,
                reason=result.error,
            )
        return result

    # ------------------------------------------------------------------ helpers

    def _set_enabled(self, channel_id: str, enabled: bool, actor: str) -> ChannelInfo:
        channel_id = _check_id(channel_id)
        actor = check_actor(actor)
        with self._db.write() as uow:
            row = uow.channels.get(channel_id)
            if row is None:
                raise NotFoundError(_ENTITY, channel_id)
            if bool(row.enabled) == enabled:
                return _info(row)
            row.enabled = int(enabled)
            uow.session.add(row)
            now = self._clock.now()
            self._audit(uow, "enabled" if enabled else "disabled", row, actor, now)
            uow.commit()
            return _info(row)

    @staticmethod
    def _audit(
        uow: Any,
        action: str,
        row: ChannelRow,
        actor: str,
        now: int,
        *,
        fields: builtins.list[str] | None = None,
    ) -> None:
        details: dict[str, Any] = {
            "action": action,
            "channel_id": row.id,
            "type": row.type,
            "priority": row.priority,
            "enabled": bool(row.enabled),
        }
        if fields is not None:
            details["fields"] = fields
        uow.state.bump(CHANNELS)  # as the triggers do: a change seen without them
        uow.audit.append(
            AuditEvent.NOTIFICATION_CHANNEL_UPDATED, actor=actor, now=now, details=details
        )
