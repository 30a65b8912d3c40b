"""Delivery of notifications: a bounded queue, one worker thread, rate limits and retries.

:class:`NotificationDispatcher` is the production :class:`~waiaas.notify.base.Notifier`.

* ``notify(event)`` appends to a bounded in-memory queue and returns at once. It never
  blocks on the network and never raises; when the queue is full the event is dropped and
  counted (``stats.dropped_queue_full``), and a warning is logged (without secrets).
* One daemon worker thread delivers events in order. Channels come fresh from a
  :class:`ChannelSource` for every event, so enabling, disabling or editing a channel takes
  effect on the next event. An event queued with ``channels_at`` (the channels' generation
  the unit of work that committed it read under its write lock) asks a source that knows
  generations (the database source's ``enabled_channels_at``) for the channels as committed
  then: its kept ones when it loaded them at that generation, with nothing read.
* Routing: a critical event (:func:`~waiaas.notify.base.is_critical`) goes to every enabled
  channel; any other event walks the channels by priority (highest first) until one delivers.
* Each channel has a token bucket (default 20 messages a minute). A non-critical event skips a
  channel whose bucket is empty (status ``rate_limited``) and falls back to the next one;
  critical events are sent regardless.
* Each request has a timeout. Transient failures (HTTP 408/429/5xx, timeouts, connection
  errors) are retried with exponential backoff, honouring ``Retry-After``; other 4xx answers
  fail at once. A ``Retry-After`` longer than ``RetryPolicy.max_retry_after`` is not waited
  for: the channel is paused for that long instead.
* After each event the :class:`DeliveryReport` goes to ``ChannelSource.record`` (the
  database source updates ``last_success_at``/``last_failure_at`` and writes a
  ``NOTIFICATION_FAILED`` audit row when no channel delivered).
* ``close(timeout)`` delivers what is queued, waiting at most ``timeout`` seconds; what is
  still pending then is dropped and counted.

Requests go straight to an :class:`httpx.BaseTransport` (not through ``httpx.Client``), so the
request URL, which holds the Telegram bot token or the Discord webhook token, is never
written to httpx's request log.

Example::

    from waiaas.notify import NotificationDispatcher, StaticChannelSource, build_channel

    channel = build_channel("NTFY", {"topic": "my-wallet-alerts"}, priority=10)
    with NotificationDispatcher(StaticChannelSource([channel])) as notifier:
        notifier.notify(event)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

import httpx

from waiaas.clock import Clock, SystemClock
from waiaas.db.generations import Observed
from waiaas.errors import InvalidInputError, StateError, WaiaasError
from waiaas.ids import new_id
from waiaas.notify.base import NotificationEvent, is_critical
from waiaas.notify.channels import Channel, OutboundRequest, ResponseVerdict

__all__ = [
    "ChannelResult",
    "ChannelSource",
    "DeliveryReport",
    "DispatcherStats",
    "NotificationDispatcher",
    "RetryPolicy",
    "StaticChannelSource",
    "deliver",
]

_log = logging.getLogger("waiaas.notify")

_MAX_RESPONSE_BYTES = 64 * 1024


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Timeouts and retries for one channel delivery.

    Attributes:
        timeout: seconds for each of connect, read, write and pool wait of one request.
        max_retries: retries after the first attempt for transient failures.
        base_delay: the first backoff, seconds; doubled on each retry (plus up to 25% jitter).
        max_delay: the longest backoff between two attempts.
        max_retry_after: the longest ``Retry-After`` waited for; a longer one pauses the
            channel instead of blocking the queue.
    """

    timeout: float = 10.0
    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        for name in ("timeout", "base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidInputError(f"{name} must be a non-negative number", field=name)
        if self.timeout <= 0:
            raise InvalidInputError("timeout must be > 0", field="timeout")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidInputError("max_retries must be an int", field="max_retries")
        if not 0 <= self.max_retries <= 10:
            raise InvalidInputError("max_retries must be between 0 and 10", field="max_retries")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1-based), with jitter, capped."""
        delay = self.base_delay * float(1 << max(0, retry - 1))
        return min(self.max_delay, delay * (1 + random.uniform(0, 0.25)))


ResultStatus = Literal["delivered", "failed", "rate_limited"]


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """The outcome of one event on one channel.

    Attributes:
        channel_id / channel_type: which channel.
        status: ``delivered``, ``failed`` or ``rate_limited`` (skipped, nothing sent).
        attempts: HTTP requests made (0 when rate-limited).
        error: why it failed, with secrets removed (empty when delivered).
        at: when the outcome was known, Unix seconds.
    """

    channel_id: str
    channel_type: str
    status: ResultStatus
    attempts: int
    error: str = ""
    at: int = 0

    @property
    def ok(self) -> bool:
        """True when delivered."""
        return self.status == "delivered"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Everything that happened to one event.

    Attributes:
        event: the event.
        delivery_id: a unique id for this delivery (webhooks send it as ``X-Waiaas-Delivery``).
        broadcast: whether the event was critical (sent to every channel).
        results: one entry per channel tried or skipped, in the order tried.
        at: when delivery finished, Unix seconds.
    """

    event: NotificationEvent
    delivery_id: str
    broadcast: bool
    results: tuple[ChannelResult, ...]
    at: int

    @property
    def delivered(self) -> bool:
        """True when at least one channel delivered the event."""
        return any(r.ok for r in self.results)


@dataclass(slots=True)
class DispatcherStats:
    """Counters since the dispatcher started (a snapshot copy is returned by ``stats``)."""

    enqueued: int = 0
    delivered: int = 0
    undelivered: int = 0
    dropped_queue_full: int = 0
    dropped_closed: int = 0
    dropped_on_close: int = 0
    no_channels: int = 0
    rate_limited: int = 0
    retries: int = 0
    channel_failures: int = 0
    internal_errors: int = 0
    record_errors: int = 0
    per_channel: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class ChannelSource(Protocol):
    """Where the dispatcher gets channels and reports outcomes (the database, or a list)."""

    def enabled_channels(self) -> Sequence[Channel]:
        """The enabled channels, highest priority first."""
        ...

    def record(self, report: DeliveryReport) -> None:
        """Persist the outcome of one event (timestamps, an audit row when all failed)."""
        ...


@runtime_checkable
class _GenerationSource(Protocol):
    """A :class:`ChannelSource` that can answer for a generation of the channels read by the
    unit of work that committed an event (the database source)."""

    def enabled_channels_at(self, at: Observed) -> Sequence[Channel]: ...


@dataclass(frozen=True, slots=True)
class _Queued:
    """An event waiting in the queue, with the channels' generation it was committed at."""

    event: NotificationEvent
    channels_at: Observed | None = None


class StaticChannelSource:
    """A fixed list of channels held in memory (no database).

    It keeps ``last_success_at``/``last_failure_at`` per channel and the last 1,000 reports.

    Example::

        source = StaticChannelSource([build_channel("NTFY", {"topic": "alerts"})])
    """

    def __init__(self, channels: Iterable[Channel]) -> None:
        items = list(channels)
        for channel in items:
            if not isinstance(channel, Channel):
                raise InvalidInputError("every channel must implement Channel", field="channels")
        ids = [c.id for c in items]
        if len(set(ids)) != len(ids):
            raise InvalidInputError("channel ids must be unique", field="channels")
        # stable sort: equal priorities keep the given order
        self._channels = tuple(sorted(items, key=lambda c: -c.priority))
        self._lock = threading.Lock()
        self.last_success_at: dict[str, int] = {}
        self.last_failure_at: dict[str, int] = {}
        self.reports: deque[DeliveryReport] = deque(maxlen=1000)

    def enabled_channels(self) -> Sequence[Channel]:
        """All channels, highest priority first."""
        return self._channels

    def record(self, report: DeliveryReport) -> None:
        """Remember the outcome in memory."""
        with self._lock:
            for result in report.results:
                if result.status == "delivered":
                    self.last_success_at[result.channel_id] = result.at
                elif result.status == "failed":
                    self.last_failure_at[result.channel_id] = result.at
            self.reports.append(report)

    def __repr__(self) -> str:
        return f"StaticChannelSource({len(self._channels)} channels)"


# --------------------------------------------------------------------------- rate limiting


class _RateLimiter:
    """One token bucket per channel id; thread-safe."""

    def __init__(self, per_minute: int, monotonic: Callable[[], float]) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last refill)
        self._paused: dict[str, float] = {}

    def try_acquire(self, channel_id: str, *, force: bool = False) -> bool:
        now = self._monotonic()
        with self._lock:
            tokens, last = self._buckets.get(channel_id, (self._capacity, now))
            tokens = min(self._capacity, tokens + max(0.0, now - last) * self._rate)
            paused = self._paused.get(channel_id, 0.0) > now
            if not paused and tokens >= 1.0:
                self._buckets[channel_id] = (tokens - 1.0, now)
                return True
            self._buckets[channel_id] = (tokens, now)
            return force

    def pause(self, channel_id: str, seconds: float) -> None:
        with self._lock:
            until = self._monotonic() + seconds
            self._paused[channel_id] = max(until, self._paused.get(channel_id, 0.0))


# --------------------------------------------------------------------------- one delivery


def _send(
    transport: httpx.BaseTransport, req: OutboundRequest, timeout: float
) -> tuple[int, dict[str, str], bytes]:
    request = httpx.Request(
        req.method,
        req.url,
        headers=list(req.headers),
        content=req.body,
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )
    response = transport.handle_request(request)
    try:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _MAX_RESPONSE_BYTES:
                break
        body = b"".join(chunks)[:_MAX_RESPONSE_BYTES]
    finally:
        response.close()
    return response.status_code, dict(response.headers.items()), body


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secure]")
    return text


def _secrets(channel: Channel) -> tuple[str, ...]:
    """The channel's secrets, to scrub from errors (none when they cannot be read)."""
    try:
        return tuple(channel.secret_values())
    except Exception:
        return ()


def _result(
    channel: Channel, status: ResultStatus, attempts: int, error: str, clock: Clock
) -> ChannelResult:
    return ChannelResult(
        channel_id=channel.id,
        channel_type=str(channel.type),
        status=status,
        attempts=attempts,
        error="" if status == "delivered" else error,
        at=clock.now(),
    )


def _build_request(
    channel: Channel,
    event: NotificationEvent,
    clock: Clock,
    delivery_id: str,
    secrets: Sequence[str],
) -> OutboundRequest | str:
    """The request for one attempt, or why it could not be built (secrets scrubbed)."""
    try:
        return channel.build_request(event, now=clock.now(), delivery_id=delivery_id)
    except WaiaasError as exc:  # our errors carry no secrets by design
        return _scrub(f"could not build the request: {exc.message}", secrets)
    except Exception as exc:
        return f"could not build the request ({type(exc).__name__})"


def _attempt(
    channel: Channel, transport: httpx.BaseTransport, request: OutboundRequest, timeout: float
) -> ResponseVerdict:
    """Send ``request`` once; the channel's verdict on the response (a timeout or a
    connection failure: retryable; any other error: not)."""
    try:
        status, headers, body = _send(transport, request, timeout)
        return channel.check_response(status, headers, body)
    except httpx.TimeoutException as exc:
        return ResponseVerdict(ok=False, retryable=True, error=f"timeout ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return ResponseVerdict(
            ok=False, retryable=True, error=f"connection failed ({type(exc).__name__})"
        )
    except Exception as exc:
        return ResponseVerdict(ok=False, error=f"request failed ({type(exc).__name__})")


def deliver(
    channel: Channel,
    event: NotificationEvent,
    *,
    transport: httpx.BaseTransport,
    policy: RetryPolicy | None = None,
    clock: Clock | None = None,
    delivery_id: str | None = None,
    abort: threading.Event | None = None,
    on_pause: Callable[[str, float], None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> ChannelResult:
    """Send ``event`` on ``channel`` now, retrying transient failures; never raises.

    This is what the dispatcher does for one channel; it is public for hosts that want a
    synchronous send (the channel test message uses it).

    Args:
        channel: the channel.
        event: the event.
        transport: the httpx transport to send with (e.g. ``httpx.HTTPTransport()``).
        policy: timeouts and retries (default :class:`RetryPolicy`).
        clock: for the result timestamp and webhook signatures (default system clock).
        delivery_id: stable id across retries (default: a new UUIDv7).
        abort: when set, no further retry is started.
        on_pause: called with ``(channel_id, seconds)`` for a ``Retry-After`` longer than
            ``policy.max_retry_after``.
        sleep: how to wait between attempts when there is no ``abort`` event (default
            ``time.sleep``).

    Returns:
        The :class:`ChannelResult` (``delivered`` or ``failed``).
    """
    policy = policy or RetryPolicy()
    clock = clock or SystemClock()
    delivery_id = delivery_id or new_id()
    attempts = 0
    error = ""

    def result(status: ResultStatus) -> ChannelResult:
        return _result(channel, status, attempts, error, clock)

    secrets = _secrets(channel)
    while True:
        request = _build_request(channel, event, clock, delivery_id, secrets)
        if isinstance(request, str):
            error = request
            return result("failed")
        attempts += 1
        verdict = _attempt(channel, transport, request, policy.timeout)
        if verdict.ok:
            return result("delivered")
        error = _scrub(verdict.error, secrets)
        if not verdict.retryable or attempts > policy.max_retries:
            return result("failed")
        if verdict.retry_after is not None:
            if verdict.retry_after > policy.max_retry_after:
                if on_pause is not None:
                    on_pause(channel.id, verdict.retry_after)
                error += f" (server asked to wait {verdict.retry_after:.0f} s; channel paused)"
                return result("failed")
            delay = verdict.retry_after
        else:
            delay = policy.backoff(attempts)
        _log.info(
            "notification channel %s (%s): %s; retry %d in %.2f s",
            channel.id,
            channel.type,
            error,
            attempts,
            delay,
        )
        if abort is not None:
            if abort.wait(delay):
                error += " (aborted: dispatcher closing)"
                return result("failed")
        elif delay > 0:
            sleep(delay)


# --------------------------------------------------------------------------- dispatcher


class NotificationDispatcher:
    """The :class:`~waiaas.notify.base.Notifier` that delivers in a background thread.

    Args:
        channels: a :class:`ChannelSource` (e.g. the database source from
            :class:`~waiaas.notify.service.ChannelService`) or a plain iterable of channels.
        transport: the httpx transport to send with; default ``httpx.HTTPTransport()``
            (owned and closed by the dispatcher). Pass ``httpx.MockTransport`` in tests of
            your own code.
        clock: the clock for timestamps (default system clock).
        queue_size: how many events may wait; more are dropped and counted.
        rate_limit_per_minute: the token-bucket size and refill per channel.
        retry: timeouts and retries (:class:`RetryPolicy`).
        monotonic: the time source of the rate limiter (for tests).

    Raises:
        InvalidInputError: a bad argument.

    Example::

        dispatcher = NotificationDispatcher(service.source(), rate_limit_per_minute=20)
        dispatcher.notify(event)      # returns at once
        dispatcher.close(timeout=5)   # drain before exit
    """

    def __init__(
        self,
        channels: ChannelSource | Iterable[Channel],
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        queue_size: int = 1000,
        rate_limit_per_minute: int = 20,
        retry: RetryPolicy | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InvalidInputError("queue_size must be a positive int", field="queue_size")
        if (
            isinstance(rate_limit_per_minute, bool)
            or not isinstance(rate_limit_per_minute, int)
            or rate_limit_per_minute < 1
        ):
            raise InvalidInputError(
                "rate_limit_per_minute must be a positive int", field="rate_limit_per_minute"
            )
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise InvalidInputError("transport must be an httpx.BaseTransport", field="transport")
        if isinstance(channels, ChannelSource):
            self._source: ChannelSource = channels
        else:
            self._source = StaticChannelSource(channels)
        self._at_source = self._source if isinstance(self._source, _GenerationSource) else None
        # the channels the source keeps for a generation, answered without a read (or None)
        self._kept_at: Callable[[Observed], Sequence[Channel] | None] | None = (
            getattr(self._source, "kept_channels_at", None) if self._at_source else None
        )
        self._owns_transport = transport is None
        self._transport = transport if transport is not None else httpx.HTTPTransport()
        self._clock = clock or SystemClock()
        self._policy = retry or RetryPolicy()
        self._limiter = _RateLimiter(rate_limit_per_minute, monotonic)
        self._queue_size = queue_size
        self._queue: deque[_Queued] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closing = False
        self._abort = threading.Event()
        self._stats = DispatcherStats()
        self._worker = threading.Thread(
            target=self._run, name="waiaas-notify-dispatcher", daemon=True
        )
        self._worker.start()

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"NotificationDispatcher({self._source!r}, {state}, queued={len(self._queue)})"

    # ------------------------------------------------------------------ Notifier

    def notify(self, event: NotificationEvent, *, channels_at: Observed | None = None) -> None:
        """Queue ``event`` for delivery and return at once. Never raises, never blocks on I/O.

        ``channels_at``: the channels' generation (:data:`waiaas.db.generations.CHANNELS`)
        as the unit of work that committed the event read it under its write lock. A source
        with ``enabled_channels_at`` then gives the channels as committed with that unit of
        work (a channel disabled after that commit may still get the event); without it, or
        with another source, the channels as committed when the event is delivered. When
        the source keeps the channels of that generation and they are none
        (``kept_channels_at``), the event is counted (``enqueued``, ``no_channels``) at once,
        without waking the worker: there is nothing to deliver.

        The event is dropped (and counted) when it is not a :class:`NotificationEvent`, when
        the queue is full, or after :meth:`close`.
        """
        try:
            if not isinstance(event, NotificationEvent):
                with self._cond:
                    self._stats.internal_errors += 1
                _log.warning("notify() got a %s, not a NotificationEvent", type(event).__name__)
                return
            nothing_to_deliver = self._no_channels_at(channels_at)
            with self._cond:
                if self._closing:
                    self._stats.dropped_closed += 1
                    dropped = self._stats.dropped_closed
                    reason = "closed"
                elif nothing_to_deliver:
                    # nothing to deliver (the channels as committed with the event are none,
                    # known without a read): counted here, the worker is not woken
                    self._stats.enqueued += 1
                    self._stats.no_channels += 1
                    return
                elif len(self._queue) >= self._queue_size:
                    self._stats.dropped_queue_full += 1
                    dropped = self._stats.dropped_queue_full
                    reason = "full"
                else:
                    at = channels_at if isinstance(channels_at, Observed) else None
                    self._queue.append(_Queued(event, at))
                    self._stats.enqueued += 1
                    self._cond.notify_all()  # wakes the worker (flush() may wait here too)
                    return
            if dropped == 1 or dropped % 100 == 0:
                _log.warning(
                    "notification %s dropped: dispatcher %s (%d dropped so far)",
                    event.event_type,
                    reason,
                    dropped,
                )
        except Exception:  # a notifier must never raise into the pipeline
            return

    def _no_channels_at(self, at: Observed | None) -> bool:
        """Whether the source knows, without a read, that no channel was enabled at ``at``."""
        if self._kept_at is None or not isinstance(at, Observed):
            return False
        try:
            kept = self._kept_at(at)
        except Exception:  # the worker asks the source again (and handles its failure)
            return False
        return kept is not None and len(kept) == 0

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting events, deliver what is queued, then stop the worker.

        Waits at most ``timeout`` seconds (``None``: until done). Events still queued after
        that are dropped and counted in ``stats.dropped_on_close``. Safe to call twice.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if threading.current_thread() is self._worker:
            return
        self._worker.join(timeout)
        if self._worker.is_alive():
            self._abort.set()
            with self._cond:
                pending = len(self._queue)
            _log.warning(
                "notification dispatcher close timed out; %d queued notification(s) dropped",
                pending,
            )

    def __enter__(self) -> NotificationDispatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ extras

    @property
    def stats(self) -> DispatcherStats:
        """A snapshot of the counters."""
        with self._cond:
            s = self._stats
            return DispatcherStats(
                enqueued=s.enqueued,
                delivered=s.delivered,
                undelivered=s.undelivered,
                dropped_queue_full=s.dropped_queue_full,
                dropped_closed=s.dropped_closed,
                dropped_on_close=s.dropped_on_close,
                no_channels=s.no_channels,
                rate_limited=s.rate_limited,
                retries=s.retries,
                channel_failures=s.channel_failures,
                internal_errors=s.internal_errors,
                record_errors=s.record_errors,
                per_channel=dict(s.per_channel),
            )

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (False once close() has finished its work)."""
        return self._worker.is_alive()

    @property
    def pending(self) -> int:
        """Events queued or being delivered."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been handled; False if ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                if not self._worker.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 0.5)
            return True

    def send_now(self, event: NotificationEvent) -> DeliveryReport:
        """Deliver ``event`` synchronously in the calling thread (same routing and recording).

        Raises:
            InvalidInputError: ``event`` is not a :class:`NotificationEvent`.
            StateError: the dispatcher is closed.
        """
        if not isinstance(event, NotificationEvent):
            raise InvalidInputError("event must be a NotificationEvent", field="event")
        self._check_open()
        return self._dispatch(event, new_id())

    def send_test(self, channel: Channel, event: NotificationEvent) -> ChannelResult:
        """Send ``event`` on ``channel`` only, synchronously, outside the rate limit.

        Raises:
            StateError: the dispatcher is closed.
        """
        self._check_open()
        return deliver(
            channel, event, transport=self._transport, policy=self._policy, clock=self._clock
        )

    # ------------------------------------------------------------------ worker

    def _check_open(self) -> None:
        if self._closing:
            raise StateError("the notification dispatcher is closed")

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if self._abort.is_set() or (not self._queue and self._closing):
                        self._stats.dropped_on_close += len(self._queue)
                        self._queue.clear()
                        break
                    queued = self._queue.popleft()
                    self._busy = True
                try:
                    self._dispatch(queued.event, new_id(), queued.channels_at)
                except Exception as exc:  # keep the worker alive whatever happens
                    with self._cond:
                        self._stats.internal_errors += 1
                    _log.error("notification dispatch failed: %s", type(exc).__name__)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            if self._owns_transport:
                self._transport.close()

    def _channels(self, at: Observed | None) -> list[Channel]:
        """The channels for an event (as committed at ``at``, when the source can tell)."""
        if at is not None and self._at_source is not None:
            return list(self._at_source.enabled_channels_at(at))
        return list(self._source.enabled_channels())

    def _dispatch(
        self, event: NotificationEvent, delivery_id: str, channels_at: Observed | None = None
    ) -> DeliveryReport:
        channels = self._channels(channels_at)
        broadcast = is_critical(event)
        results: list[ChannelResult] = []
        for channel in channels:
            if self._abort.is_set():
                break
            allowed = self._limiter.try_acquire(channel.id, force=broadcast)
            if not allowed:
                results.append(
                    _result(channel, "rate_limited", 0, "rate limit reached", self._clock)
                )
                continue
            result = deliver(
                channel,
                event,
                transport=self._transport,
                policy=self._policy,
                clock=self._clock,
                delivery_id=delivery_id,
                abort=self._abort,
                on_pause=self._limiter.pause,
            )
            results.append(result)
            if result.ok:
                _log.debug("notification %s delivered via %s", event.event_type, channel.id)
            else:
                _log.warning(
                    "notification %s not delivered via channel %s (%s) after %d attempt(s): %s",
                    event.event_type,
                    channel.id,
                    channel.type,
                    result.attempts,
                    result.error,
                )
            if result.ok and not broadcast:
                break
        report = DeliveryReport(
            event=event,
            delivery_id=delivery_id,
            broadcast=broadcast,
            results=tuple(results),
            at=self._clock.now(),
        )
        self._count(report, has_channels=bool(channels))
        if channels:
            try:
                self._source.record(report)
            except Exception as exc:
                with self._cond:
                    self._stats.record_errors += 1
                _log.error("could not record a notification outcome: %s", type(exc).__name__)
        return report

    def _count(self, report: DeliveryReport, *, has_channels: bool) -> None:
        with self._cond:
            s = self._stats
            if not has_channels:
                s.no_channels += 1
            elif report.delivered:
                s.delivered += 1
            else:
                s.undelivered += 1
            for r in report.results:
                if r.status == "rate_limited":
                    s.rate_limited += 1
                elif r.status == "failed":
                    s.channel_failures += 1
                if r.attempts > 1:
                    s.retries += r.attempts - 1
                if r.ok:
                    s.per_channel[r.channel_id] = s.per_channel.get(r.channel_id, 0) + 1
