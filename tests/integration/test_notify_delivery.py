"""Delivery over real HTTP to a local server emulating Telegram, Discord, ntfy and webhooks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

import httpx
import pytest

from tests.support.notify_server import Fail, NotifyServer, Stall, TooMany, parse_markdown_v2
from waiaas.notify import (
    Channel,
    DeliveryReport,
    NotificationDispatcher,
    NotificationEvent,
    Notifier,
    RetryPolicy,
    StaticChannelSource,
    build_channel,
    deliver,
    verify_webhook_signature,
)
from waiaas.types import AuditEvent, Severity

TOKEN = "7012345678:AAH-secretSECRETsecret_token-XYZ0123"
DISCORD_TOKEN = "discord-webhook-secret-token"
NTFY_TOKEN = "tk_ntfysecretaccesstoken"
WEBHOOK_SECRET = "whsec_integration-secret-0001"
SECRETS = (TOKEN, TOKEN.split(":")[1], DISCORD_TOKEN, NTFY_TOKEN, WEBHOOK_SECRET)

FAST = RetryPolicy(timeout=0.4, max_retries=2, base_delay=0.01, max_delay=0.05, max_retry_after=2)


class FrozenClock:
    def __init__(self, now: int = 1_760_000_000) -> None:
        self.value = now

    def now(self) -> int:
        return self.value


@pytest.fixture
def server() -> Iterator[NotifyServer]:
    with NotifyServer() as srv:
        yield srv


@pytest.fixture
def transport() -> Iterator[httpx.HTTPTransport]:
    t = httpx.HTTPTransport()
    yield t
    t.close()


def tg(server: NotifyServer, priority: int = 0, chat_id: int = -1001) -> Channel:
    return build_channel(
        "TELEGRAM",
        {"bot_token": TOKEN, "chat_id": chat_id, "api_base_url": server.telegram_base},
        id=f"tg{chat_id}",
        priority=priority,
    )


def dc(server: NotifyServer, priority: int = 0) -> Channel:
    return build_channel(
        "DISCORD",
        {"webhook_url": server.discord_url("55", DISCORD_TOKEN)},
        id="dc",
        priority=priority,
    )


def nt(server: NotifyServer, priority: int = 0, topic: str = "alerts") -> Channel:
    return build_channel(
        "NTFY",
        {"server_url": server.ntfy_base, "topic": topic, "access_token": NTFY_TOKEN},
        id=f"nt-{topic}",
        priority=priority,
    )


def wh(server: NotifyServer, priority: int = 0, name: str = "hook") -> Channel:
    return build_channel(
        "WEBHOOK",
        {"url": server.webhook_url(name), "secret": WEBHOOK_SECRET},
        id=f"wh-{name}",
        priority=priority,
    )


def ev(event_type: str = AuditEvent.TX_CONFIRMED, **kw: object) -> NotificationEvent:
    base: dict[str, object] = {
        "event_type": event_type,
        "timestamp": 1_760_000_000,
        "agent_name": "trader",
        "amount": 1_500_000_000,
        "decimals": 9,
        "asset_symbol": "SOL",
        "tx_id": "tx-1",
    }
    base.update(kw)
    return NotificationEvent(**base)  # type: ignore[arg-type]


def dispatcher(
    channels: Sequence[Channel] | StaticChannelSource, **kw: object
) -> NotificationDispatcher:
    options: dict[str, object] = {"retry": FAST, "clock": FrozenClock()}
    options.update(kw)
    return NotificationDispatcher(channels, **options)  # type: ignore[arg-type]


def last_report(source: StaticChannelSource) -> DeliveryReport:
    return source.reports[-1]


# --------------------------------------------------------------------------- wire formats


def test_each_channel_delivers_its_wire_format(server: NotifyServer) -> None:
    """A critical event reaches all four emulated APIs, each in its own format."""
    server.ntfy_tokens = {NTFY_TOKEN}
    server.telegram_tokens = {TOKEN}
    source = StaticChannelSource([tg(server, 4), dc(server, 3), nt(server, 2), wh(server, 1)])
    with dispatcher(source) as d:
        d.notify(ev(AuditEvent.KILL_SWITCH_ACTIVATED, message="Stop everything. (now!)"))
        assert d.flush(10)
    assert last_report(source).delivered
    assert [r.status for r in last_report(source).results] == ["delivered"] * 4

    (telegram,) = server.requests("telegram")
    assert telegram.path == f"/telegram/bot{TOKEN}/sendMessage"
    body = telegram.json()
    assert body["parse_mode"] == "MarkdownV2" and body["chat_id"] == -1001
    assert "Stop everything. (now!)" in parse_markdown_v2(body["text"])

    (discord,) = server.requests("discord")
    assert discord.path == f"/discord/api/webhooks/55/{DISCORD_TOKEN}"
    assert discord.json()["allowed_mentions"] == {"parse": []}
    assert "**Amount:** 1.5 SOL" in discord.json()["content"]

    (ntfy,) = server.requests("ntfy")
    assert ntfy.path == "/ntfy/alerts"
    assert ntfy.headers["authorization"] == f"Bearer {NTFY_TOKEN}"
    assert ntfy.headers["priority"] == "5" and ntfy.headers["title"] == "Kill switch activated"
    assert "Amount: 1.5 SOL" in ntfy.text

    (hook,) = server.requests("webhook")
    assert verify_webhook_signature(WEBHOOK_SECRET, hook.headers, hook.body, now=1_760_000_000)
    assert hook.json()["event"]["type"] == "KILL_SWITCH_ACTIVATED"


def test_limits_are_accepted_by_the_emulated_apis(server: NotifyServer) -> None:
    """Huge, markup-heavy messages are cut so that Telegram and Discord accept them."""
    source = StaticChannelSource([tg(server), dc(server)])
    nasty = ("*_[]()~`>#+-=|{}.!\\ \U0001f680 " * 2000)[:16_000]
    with dispatcher(source) as d:
        d.notify(ev(AuditEvent.AUTO_STOP_TRIGGERED, message=nasty))
        assert d.flush(10)
    assert [r.status for r in last_report(source).results] == ["delivered", "delivered"]
    text = server.requests("telegram")[0].json()["text"]
    assert len(parse_markdown_v2(text)) <= 4096


# --------------------------------------------------------------------------- routing


def test_priority_fallback_stops_at_first_success(server: NotifyServer) -> None:
    """First channel fails, the second delivers, the third is never called."""
    server.always("ntfy:first", Fail(400))
    source = StaticChannelSource(
        [nt(server, 1, "third"), nt(server, 30, "first"), nt(server, 20, "second")]
    )
    with dispatcher(source) as d:
        d.notify(ev())
        assert d.flush(10)
    assert [r.target for r in server.requests()] == ["ntfy:first", "ntfy:second"]
    report = last_report(source)
    assert [(r.channel_id, r.status) for r in report.results] == [
        ("nt-first", "failed"),
        ("nt-second", "delivered"),
    ]
    assert "nt-third" not in source.last_success_at | source.last_failure_at
    assert source.last_failure_at["nt-first"] == 1_760_000_000
    assert source.last_success_at["nt-second"] == 1_760_000_000


@pytest.mark.parametrize(
    "event",
    [
        ev(AuditEvent.KILL_SWITCH_ACTIVATED),
        ev(AuditEvent.AUTO_STOP_TRIGGERED),
        ev(AuditEvent.AGENT_SUSPENDED),
        ev("CUSTOM_ALARM", severity=Severity.CRITICAL),
    ],
)
def test_critical_events_are_broadcast(server: NotifyServer, event: NotificationEvent) -> None:
    """Critical events go to every enabled channel even after a success."""
    source = StaticChannelSource([nt(server, 3, "a"), nt(server, 2, "b"), wh(server, 1)])
    with dispatcher(source) as d:
        d.notify(event)
        assert d.flush(10)
    assert sorted(r.target for r in server.requests()) == ["ntfy:a", "ntfy:b", "webhook:hook"]
    assert last_report(source).broadcast


def test_broadcast_survives_a_failing_channel(server: NotifyServer) -> None:
    """One broken channel does not keep a critical event from the others."""
    server.always("ntfy:a", Fail(500))
    source = StaticChannelSource([nt(server, 3, "a"), nt(server, 2, "b")])
    with dispatcher(source) as d:
        d.notify(ev(AuditEvent.KILL_SWITCH_ACTIVATED))
        assert d.flush(10)
    assert [r.status for r in last_report(source).results] == ["failed", "delivered"]


# --------------------------------------------------------------------------- rate limiting


def test_rate_limit_per_channel_falls_back(server: NotifyServer) -> None:
    """With 20/min, the 21st event in the same instant skips the channel and falls back."""
    frozen = [100.0]
    source = StaticChannelSource([nt(server, 2, "main"), nt(server, 1, "spare")])
    with dispatcher(source, monotonic=lambda: frozen[0], rate_limit_per_minute=20) as d:
        for _ in range(25):
            d.notify(ev())
        assert d.flush(20)
        assert len(server.requests("ntfy:main")) == 20
        assert len(server.requests("ntfy:spare")) == 5
        assert d.stats.rate_limited == 5 and d.stats.delivered == 25
        frozen[0] += 3.0  # one token refills every 3 s at 20/min
        d.notify(ev())
        assert d.flush(10)
    assert len(server.requests("ntfy:main")) == 21


def test_rate_limited_everywhere_means_undelivered(server: NotifyServer) -> None:
    """When every channel is out of tokens the event is reported undelivered, not sent."""
    source = StaticChannelSource([nt(server)])
    with dispatcher(source, monotonic=lambda: 5.0, rate_limit_per_minute=2) as d:
        for _ in range(3):
            d.notify(ev())
        assert d.flush(10)
        assert d.stats.undelivered == 1
    assert len(server.requests()) == 2
    assert [r.status for r in last_report(source).results] == ["rate_limited"]


def test_critical_events_bypass_an_empty_bucket(server: NotifyServer) -> None:
    """A kill-switch alert is sent even when the channel's bucket is empty."""
    source = StaticChannelSource([nt(server)])
    with dispatcher(source, monotonic=lambda: 5.0, rate_limit_per_minute=1) as d:
        d.notify(ev())
        d.notify(ev())
        d.notify(ev(AuditEvent.KILL_SWITCH_ACTIVATED))
        assert d.flush(10)
    assert [r.headers["priority"] for r in server.requests()] == ["3", "5"]


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("failures", "requests"),
    [
        ((Fail(500), Fail(503)), 3),
        ((TooMany(retry_after=0),), 2),
        ((Stall(1.5),), 2),
        ((Fail(408),), 2),
    ],
)
def test_transient_failures_are_retried(
    server: NotifyServer, failures: tuple[object, ...], requests: int
) -> None:
    """5xx, 429, timeouts and 408 are retried until delivered."""
    server.script("ntfy", *failures)  # type: ignore[arg-type]
    source = StaticChannelSource([nt(server)])
    with dispatcher(source) as d:
        d.notify(ev())
        assert d.flush(10)
    (result,) = last_report(source).results
    assert result.status == "delivered" and result.attempts == requests
    assert len(server.requests()) == requests


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_4xx_are_not_retried(server: NotifyServer, status: int) -> None:
    """A client error fails at once: one request only."""
    server.always("discord", Fail(status))
    source = StaticChannelSource([dc(server)])
    with dispatcher(source) as d:
        d.notify(ev())
        assert d.flush(10)
    (result,) = last_report(source).results
    assert result.status == "failed" and result.attempts == 1
    assert result.error.startswith(f"HTTP {status}")
    assert len(server.requests()) == 1


def test_retries_are_bounded(server: NotifyServer) -> None:
    """A channel that always fails gets 1 + max_retries attempts."""
    server.always("ntfy", Fail(500))
    source = StaticChannelSource([nt(server)])
    with dispatcher(source) as d:
        d.notify(ev())
        assert d.flush(10)
    assert len(server.requests()) == 1 + FAST.max_retries
    assert last_report(source).results[0].status == "failed"


@pytest.mark.parametrize(
    ("make", "failure", "expected"),
    [
        (nt, TooMany(retry_after=7), [7.0]),
        (tg, TooMany(retry_after=11, header=False), [11.0]),  # Telegram's body field
        (dc, TooMany(retry_after=0.5, header=False), [0.5]),  # Discord's body field
    ],
)
def test_retry_after_is_honoured(
    server: NotifyServer,
    transport: httpx.HTTPTransport,
    make: object,
    failure: TooMany,
    expected: list[float],
) -> None:
    """The wait before the retry is exactly what the server asked for."""
    channel = make(server)  # type: ignore[operator]
    server.script(channel.type.lower(), failure)
    waits: list[float] = []
    policy = RetryPolicy(timeout=1, max_retries=2, max_retry_after=60)
    result = deliver(channel, ev(), transport=transport, policy=policy, sleep=waits.append)
    assert result.ok and result.attempts == 2
    assert waits == expected


def test_backoff_grows_without_retry_after(
    server: NotifyServer, transport: httpx.HTTPTransport
) -> None:
    """Without Retry-After the waits double (with at most 25% jitter)."""
    server.script("ntfy", Fail(500), Fail(500), Fail(500))
    waits: list[float] = []
    policy = RetryPolicy(timeout=1, max_retries=3, base_delay=1.0, max_delay=100)
    assert deliver(nt(server), ev(), transport=transport, policy=policy, sleep=waits.append).ok
    assert [int(w) for w in waits] == [1, 2, 4]


def test_long_retry_after_pauses_the_channel(server: NotifyServer) -> None:
    """A Retry-After beyond max_retry_after is not waited for; the channel is paused."""
    server.script("ntfy:main", TooMany(retry_after=3600))
    source = StaticChannelSource([nt(server, 2, "main"), nt(server, 1, "spare")])
    with dispatcher(source) as d:
        d.notify(ev())
        d.notify(ev())
        assert d.flush(10)
    assert [r.target for r in server.requests()] == ["ntfy:main", "ntfy:spare", "ntfy:spare"]
    first, second = list(source.reports)
    assert "paused" in first.results[0].error
    assert second.results[0].status == "rate_limited"


# ------------------------------------------------------------------- never block, never raise


def test_a_stalling_channel_never_blocks_notify(server: NotifyServer) -> None:
    """While the worker is stuck on a stalled request, notify() returns; overflow is dropped."""
    server.always("ntfy", Stall(5))
    source = StaticChannelSource([nt(server)])
    policy = RetryPolicy(timeout=1.5, max_retries=0)
    d = dispatcher(source, retry=policy, queue_size=10)
    try:
        d.notify(ev())
        assert server.wait_for(1, "ntfy")  # the worker is now inside the stalled request
        for _ in range(100):
            d.notify(ev())
        stats = d.stats
        assert stats.enqueued == 11
        assert stats.dropped_queue_full == 90
    finally:
        d.close(timeout=0)
        server.always("ntfy", None)


def test_notify_never_raises(server: NotifyServer) -> None:
    """Garbage input and a broken channel source are absorbed and counted."""

    class BrokenSource:
        def enabled_channels(self) -> Sequence[Channel]:
            raise RuntimeError("database gone")

        def record(self, report: DeliveryReport) -> None:
            raise AssertionError("not reached")

    with dispatcher(BrokenSource()) as d:  # type: ignore[arg-type]
        d.notify("not an event")  # type: ignore[arg-type]
        d.notify(ev())
        assert d.flush(10)
        assert d.stats.internal_errors == 2
        d.notify(ev())  # the worker survived
        assert d.flush(10)
        assert d.stats.internal_errors == 3


def test_failing_record_does_not_stop_delivery(server: NotifyServer) -> None:
    """If recording the outcome fails, later events are still delivered."""

    class Source(StaticChannelSource):
        def record(self, report: DeliveryReport) -> None:
            raise RuntimeError("disk full")

    with dispatcher(Source([nt(server)])) as d:
        d.notify(ev())
        d.notify(ev())
        assert d.flush(10)
        assert d.stats.record_errors == 2 and d.stats.delivered == 2


def test_dispatcher_is_a_notifier() -> None:
    """The dispatcher satisfies the Notifier protocol the pipeline depends on."""
    with NotificationDispatcher([]) as d:
        assert isinstance(d, Notifier)
        d.notify(ev())
        assert d.flush(5)
        assert d.stats.no_channels == 1


# --------------------------------------------------------------------------- close


def test_close_drains_the_queue(server: NotifyServer) -> None:
    """Everything queued before close() is delivered; events after close() are dropped."""
    source = StaticChannelSource([nt(server)])
    d = dispatcher(source, rate_limit_per_minute=1000)
    for i in range(30):
        d.notify(ev(tx_id=f"tx-{i}"))
    d.close()
    assert len(server.requests()) == 30
    assert d.stats.delivered == 30 and d.pending == 0
    d.notify(ev())
    assert d.stats.dropped_closed == 1
    d.close()  # idempotent


def test_close_with_timeout_gives_up_on_a_stalled_queue(server: NotifyServer) -> None:
    """close(timeout) returns while a request is stalled; what is left is dropped, counted."""
    server.always("ntfy", Stall(3))
    source = StaticChannelSource([nt(server)])
    d = dispatcher(source, retry=RetryPolicy(timeout=1.0, max_retries=0))
    for _ in range(5):
        d.notify(ev())
    assert server.wait_for(1, "ntfy")
    d.close(timeout=0.05)
    assert d.pending >= 1  # still busy: close did not wait for the stalled request
    assert d.flush(timeout=10)  # the in-flight request times out, the rest is dropped
    assert d.pending == 0
    stats = d.stats
    assert stats.dropped_on_close == 4
    server.always("ntfy", None)


def test_send_now_is_synchronous(server: NotifyServer) -> None:
    """send_now() routes and records in the calling thread and returns the report."""
    source = StaticChannelSource([nt(server, 1, "x")])
    with dispatcher(source) as d:
        report = d.send_now(ev())
    assert report.delivered and len(server.requests()) == 1
    assert source.reports[-1] is report


# --------------------------------------------------------------------------- secrets


def test_no_secret_reaches_any_log(server: NotifyServer, caplog: pytest.LogCaptureFixture) -> None:
    """Failures, retries and successes are logged (httpx included) without tokens or URLs."""
    caplog.set_level(logging.DEBUG)
    server.script("telegram", Fail(500), Stall(1))
    server.always("discord", Fail(404))
    server.script("webhook", TooMany(retry_after=0))
    source = StaticChannelSource([tg(server, 4), dc(server, 3), nt(server, 2), wh(server, 1)])
    with dispatcher(source) as d:
        d.notify(ev(AuditEvent.KILL_SWITCH_ACTIVATED))
        d.notify(ev())
        assert d.flush(10)
    assert "retry 1" in caplog.text and "not delivered" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text
    for report in source.reports:
        for result in report.results:
            assert not any(secret in result.error for secret in SECRETS)


def test_threads_are_not_leaked(server: NotifyServer) -> None:
    """close() ends the worker thread."""
    before = threading.active_count()
    d = dispatcher([nt(server)])
    assert d.running
    d.close()
    assert not d.running
    assert threading.active_count() <= before
