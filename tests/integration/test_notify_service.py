"""Channels in a real SQLite file, secrets sealed by a real keystore, delivery over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.notify_server import Fail, NotifyServer
from tests.support.rawdb import raw_connect
from waiaas.config import KdfLimits
from waiaas.db import Database
from waiaas.errors import (
    InvalidInputError,
    KeyIntegrityError,
    KeystoreLockedError,
    NotFoundError,
    NotificationError,
)
from waiaas.keystore import Keystore
from waiaas.notify import (
    ChannelService,
    NotificationDispatcher,
    NotificationEvent,
    RetryPolicy,
    verify_webhook_signature,
)
from waiaas.types import AuditEvent

TOKEN = "7012345678:AAH-secretSECRETsecret_token-XYZ0123"
DISCORD_TOKEN = "discord-webhook-secret-token-77"
NTFY_TOKEN = "tk_ntfysecretaccesstoken"
NTFY_TOPIC = "private-topic-4f1c"
WEBHOOK_SECRET = "whsec_integration-secret-0001"
PASSWORD = "correct horse battery staple"
FAST = RetryPolicy(timeout=0.5, max_retries=1, base_delay=0.01, max_delay=0.02)


class Clock:
    def __init__(self, now: int = 1_760_000_000) -> None:
        self.value = now

    def now(self) -> int:
        return self.value


@pytest.fixture
def server() -> Iterator[NotifyServer]:
    with NotifyServer() as srv:
        yield srv


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "wallet.db")
    yield database
    database.close()


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore.create(tmp_path / "keystore", PASSWORD, kdf=KdfLimits.minimum())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def transport() -> Iterator[httpx.HTTPTransport]:
    t = httpx.HTTPTransport()
    yield t
    t.close()


@pytest.fixture
def service(
    db: Database, keystore: Keystore, clock: Clock, transport: httpx.HTTPTransport
) -> ChannelService:
    return ChannelService(db, keystore, clock, transport=transport, retry=FAST)


def telegram_config(server: NotifyServer) -> dict[str, Any]:
    return {"bot_token": TOKEN, "chat_id": -1001, "api_base_url": server.telegram_base}


def add_all(service: ChannelService, server: NotifyServer) -> dict[str, str]:
    ids = {
        "telegram": service.add("TELEGRAM", telegram_config(server), priority=40).id,
        "discord": service.add(
            "DISCORD", {"webhook_url": server.discord_url("9", DISCORD_TOKEN)}, priority=30
        ).id,
        "ntfy": service.add(
            "NTFY",
            {"server_url": server.ntfy_base, "topic": NTFY_TOPIC, "access_token": NTFY_TOKEN},
            priority=20,
        ).id,
        "webhook": service.add(
            "WEBHOOK", {"url": server.webhook_url("in"), "secret": WEBHOOK_SECRET}, priority=10
        ).id,
    }
    return ids


def audit_rows(db: Database, event: AuditEvent) -> list[dict[str, Any]]:
    with raw_connect(db) as conn:
        rows = conn.dicts("SELECT * FROM audit_log WHERE event_type = ? ORDER BY id", (str(event),))
    # the digests (row_hash, mac: 32 bytes each) as hex, so a row dumps as JSON
    return [
        {k: bytes(v).hex() if isinstance(v, (bytes, memoryview)) else v for k, v in r.items()}
        | {"details": json.loads(r["details"])}
        for r in rows
    ]


def channel_row(db: Database, channel_id: str) -> dict[str, Any]:
    with raw_connect(db) as conn:
        [row] = conn.dicts("SELECT * FROM notification_channels WHERE id = ?", (channel_id,))
    return row


def ev(event_type: str = AuditEvent.TX_CONFIRMED, **kw: object) -> NotificationEvent:
    base: dict[str, object] = {
        "event_type": event_type,
        "timestamp": 1_760_000_000,
        "agent_id": "agent-7",
        "tx_id": "tx-7",
        "amount": 2_000_000_000,
        "decimals": 9,
        "asset_symbol": "SOL",
    }
    base.update(kw)
    return NotificationEvent(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- sealing


def test_database_file_holds_no_usable_secret(
    service: ChannelService, server: NotifyServer, db: Database
) -> None:
    """Tokens, webhook URLs/secrets and the ntfy topic are sealed: the raw bytes lack them."""
    add_all(service, server)
    if getattr(db, "dialect", "sqlite") == "postgresql":  # what a dump of the table holds
        with raw_connect(db) as conn:
            raw = repr(conn.all("SELECT * FROM notification_channels")).encode()
        assert b"TELEGRAM" in raw
    else:  # the file's bytes
        db.checkpoint("TRUNCATE")
        raw = db.path.read_bytes()
        wal = db.path.with_name(db.path.name + "-wal")
        if wal.exists():
            raw += wal.read_bytes()
        assert b"notification_channels" in raw
    for secret in (TOKEN, TOKEN.split(":")[1], DISCORD_TOKEN, NTFY_TOKEN, NTFY_TOPIC):
        assert secret.encode() not in raw
    assert WEBHOOK_SECRET.encode() not in raw
    assert b"/webhook/in" not in raw


def test_listing_shows_settings_with_secrets_masked(
    service: ChannelService, server: NotifyServer, keystore: Keystore
) -> None:
    """list() and get() work even while the keystore is locked, and never show a secret."""
    ids = add_all(service, server)
    keystore.lock()
    infos = service.list()
    assert [i.type for i in infos] == ["TELEGRAM", "DISCORD", "NTFY", "WEBHOOK"]
    tg = service.get(ids["telegram"])
    assert tg.config["bot_token"] == "7012345678:[secure]"
    assert tg.config["chat_id"] == -1001
    assert service.get(ids["discord"]).config["webhook_url"].endswith("/[secure]")
    assert service.get(ids["ntfy"]).config["topic"] == "[secure]"
    assert service.get(ids["ntfy"]).config["server_url"] == server.ntfy_base
    text = repr(infos)
    for secret in (TOKEN.split(":")[1], DISCORD_TOKEN, NTFY_TOKEN, NTFY_TOPIC, WEBHOOK_SECRET):
        assert secret not in text


def test_sealed_config_copied_to_another_row_does_not_open(
    service: ChannelService, server: NotifyServer, db: Database
) -> None:
    """The channel id is the sealing context: moving a blob between rows is detected."""
    a = service.add("TELEGRAM", telegram_config(server)).id
    b = service.add("TELEGRAM", {**telegram_config(server), "chat_id": 5}).id
    with raw_connect(db) as conn:
        conn.execute(
            "UPDATE notification_channels SET config = "
            "(SELECT config FROM notification_channels WHERE id = ?) WHERE id = ?",
            (a, b),
        )
    with pytest.raises(KeyIntegrityError):
        service.channel(b)
    # the dispatcher reports the channel as failed (and audits) instead of crashing
    with NotificationDispatcher(service.source(), retry=FAST) as d:
        report = d.send_now(ev(AuditEvent.KILL_SWITCH_ACTIVATED))
    results = {r.channel_id: r for r in report.results}
    assert results[a].ok
    assert results[b].status == "failed" and results[b].attempts == 0
    assert "KEY_INTEGRITY" in results[b].error


def test_locked_keystore_blocks_changes_that_need_secrets(
    service: ChannelService, server: NotifyServer, keystore: Keystore
) -> None:
    """Adding, editing the config or testing needs the keystore; toggling does not."""
    cid = service.add("TELEGRAM", telegram_config(server)).id
    keystore.lock()
    with pytest.raises(KeystoreLockedError):
        service.add("NTFY", {"topic": "x"})
    with pytest.raises(KeystoreLockedError):
        service.update(cid, config={"chat_id": 9})
    with pytest.raises(KeystoreLockedError):
        service.send_test(cid)
    assert service.disable(cid).enabled is False
    assert service.update(cid, priority=3).priority == 3
    assert len(service.list()) == 1


# --------------------------------------------------------------------------- management + audit


def test_every_change_is_audited_without_secrets(
    service: ChannelService, server: NotifyServer, db: Database, clock: Clock
) -> None:
    """add, update, disable, enable and remove each write one NOTIFICATION_CHANNEL_UPDATED row."""
    cid = service.add("TELEGRAM", telegram_config(server), priority=1, actor="owner").id
    clock.value += 10
    service.update(cid, config={"chat_id": -2002}, priority=5, actor="operator")
    service.disable(cid)
    service.disable(cid)  # no change, no row
    service.enable(cid)
    service.remove(cid)
    rows = audit_rows(db, AuditEvent.NOTIFICATION_CHANNEL_UPDATED)
    assert [r["details"]["action"] for r in rows] == [
        "added",
        "updated",
        "disabled",
        "enabled",
        "removed",
    ]
    assert rows[0]["actor"] == "owner" and rows[1]["actor"] == "operator"
    assert rows[1]["timestamp"] == 1_760_000_010
    assert rows[1]["details"]["fields"] == ["config.chat_id", "priority"]
    assert sorted(rows[0]["details"]["fields"]) == ["api_base_url", "bot_token", "chat_id"]
    assert all(r["details"]["channel_id"] == cid for r in rows)
    dumped = json.dumps(rows)
    assert TOKEN.split(":")[1] not in dumped and server.telegram_base not in dumped
    with pytest.raises(NotFoundError):
        service.get(cid)


def test_update_merges_and_keeps_secrets(
    service: ChannelService, server: NotifyServer, db: Database
) -> None:
    """Changing the chat id keeps the sealed token; the new setting is used on the wire."""
    cid = service.add("TELEGRAM", telegram_config(server)).id
    before = channel_row(db, cid)["config"]
    info = service.update(cid, config={"chat_id": "@wallet_alerts"})
    assert info.config["chat_id"] == "@wallet_alerts"
    assert channel_row(db, cid)["config"] != before  # re-sealed
    service.send_test(cid)
    (request,) = server.requests("telegram")
    assert request.path == f"/telegram/bot{TOKEN}/sendMessage"
    assert request.json()["chat_id"] == "@wallet_alerts"


def test_invalid_changes_leave_nothing_behind(
    service: ChannelService, server: NotifyServer, db: Database
) -> None:
    """A refused add or update writes no row and no audit entry."""
    with pytest.raises(InvalidInputError):
        service.add("TELEGRAM", {"bot_token": "nope", "chat_id": 1})
    with pytest.raises(InvalidInputError):
        service.add("TELEGRAM", telegram_config(server), priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        service.add("PAGER", {})
    assert service.list() == []
    assert audit_rows(db, AuditEvent.NOTIFICATION_CHANNEL_UPDATED) == []
    cid = service.add("NTFY", {"server_url": server.ntfy_base, "topic": "t"}).id
    with pytest.raises(InvalidInputError):
        service.update(cid, config={"topic": "no spaces allowed"})
    with pytest.raises(InvalidInputError):
        service.update(cid, config={"unknown": 1})
    assert len(audit_rows(db, AuditEvent.NOTIFICATION_CHANNEL_UPDATED)) == 1
    with pytest.raises(NotFoundError):
        service.enable("01900000-0000-7000-8000-000000000000")


def test_send_test_records_outcome(
    service: ChannelService, server: NotifyServer, db: Database, clock: Clock
) -> None:
    """A test message updates last_success_at, a failed one last_failure_at and raises."""
    cid = service.add(
        "WEBHOOK", {"url": server.webhook_url("t"), "secret": WEBHOOK_SECRET}, enabled=False
    ).id
    result = service.send_test(cid, message="hello from the test")
    assert result.ok
    (request,) = server.requests("webhook")
    assert verify_webhook_signature(WEBHOOK_SECRET, request.headers, request.body, clock.now())
    assert request.json()["event"]["message"] == "hello from the test"
    assert service.get(cid).last_success_at == clock.now()

    clock.value += 60
    server.always("webhook", Fail(410))
    with pytest.raises(NotificationError) as info:
        service.send_test(cid)
    assert info.value.reason.startswith("HTTP 410")
    assert info.value.channel_id == cid
    got = service.get(cid)
    assert got.last_failure_at == clock.now() and got.last_success_at == clock.now() - 60


# ------------------------------------------------------------------- dispatch through the DB


def test_dispatch_updates_timestamps_and_respects_enabled(
    service: ChannelService, server: NotifyServer, db: Database, clock: Clock
) -> None:
    """Fallback through DB channels: failure and success timestamps land in the rows."""
    ids = add_all(service, server)
    service.disable(ids["discord"])
    server.always("telegram", Fail(500))
    with NotificationDispatcher(service.source(), retry=FAST, clock=clock) as d:
        d.notify(ev())
        assert d.flush(10)
    assert [r.route for r in server.requests()] == ["telegram", "telegram", "ntfy"]
    assert channel_row(db, ids["telegram"])["last_failure_at"] == clock.now()
    assert channel_row(db, ids["ntfy"])["last_success_at"] == clock.now()
    assert channel_row(db, ids["webhook"])["last_success_at"] is None
    assert channel_row(db, ids["discord"])["last_success_at"] is None
    assert audit_rows(db, AuditEvent.NOTIFICATION_FAILED) == []


def test_all_channels_failing_writes_an_audit_row(
    service: ChannelService, server: NotifyServer, db: Database, clock: Clock
) -> None:
    """When nothing delivers, one NOTIFICATION_FAILED row names each channel's error."""
    ids = add_all(service, server)
    for route in ("telegram", "discord", "ntfy", "webhook"):
        server.always(route, Fail(503))
    with NotificationDispatcher(service.source(), retry=FAST, clock=clock) as d:
        d.notify(ev(AuditEvent.TX_FAILED))
        assert d.flush(10)
    (row,) = audit_rows(db, AuditEvent.NOTIFICATION_FAILED)
    assert row["severity"] == "warning" and row["actor"] == "system"
    assert row["agent_id"] == "agent-7" and row["tx_id"] == "tx-7"
    details = row["details"]
    assert details["event"] == "TX_FAILED" and details["broadcast"] is False
    assert [c["id"] for c in details["channels"]] == [
        ids["telegram"],
        ids["discord"],
        ids["ntfy"],
        ids["webhook"],
    ]
    assert all(
        c["error"].startswith("HTTP 503") and c["attempts"] == 2 for c in details["channels"]
    )
    text = json.dumps(row)
    for secret in (TOKEN, DISCORD_TOKEN, NTFY_TOKEN, NTFY_TOPIC, WEBHOOK_SECRET):
        assert secret not in text
    for cid in ids.values():
        assert channel_row(db, cid)["last_failure_at"] == clock.now()


def test_channel_changes_apply_to_the_next_event(
    service: ChannelService, server: NotifyServer, clock: Clock
) -> None:
    """The dispatcher reads channels per event: a newly added channel is used at once."""
    with NotificationDispatcher(service.source(), retry=FAST, clock=clock) as d:
        d.notify(ev())
        assert d.flush(10)
        assert d.stats.no_channels == 1
        service.add("NTFY", {"server_url": server.ntfy_base, "topic": "late"})
        d.notify(ev())
        assert d.flush(10)
    assert [r.target for r in server.requests()] == ["ntfy:late"]


def test_an_event_at_a_generation_kept_without_channels_does_not_wake_the_worker(
    service: ChannelService, server: NotifyServer, clock: Clock, db: Database, tmp_path: Path
) -> None:
    """An event whose channels' generation the source keeps with no channel is counted
    (``enqueued``, ``no_channels``) without reaching the worker; one at another generation
    (a channel added since), of another counter or another database, or at a generation not
    kept yet, goes to the worker and is delivered where there is a channel."""
    from waiaas.db.generations import CHANNELS, POLICIES, Observed

    def generation() -> str:
        found = db.fetch_one("SELECT value FROM wallet_state WHERE key = ?", (CHANNELS,))
        assert found is not None
        return str(found[0])

    service.add("NTFY", {"server_url": server.ntfy_base, "topic": "gone"})
    service.remove(service.list()[0].id)
    empty = generation()
    other = Database.open(tmp_path / "other.db")
    try:
        with NotificationDispatcher(service.source(), retry=FAST, clock=clock) as d:
            dispatched: list[object] = []
            real = d._dispatch

            def counted(*args: Any, **kwargs: Any) -> Any:
                dispatched.append(args[0])
                return real(*args, **kwargs)

            d._dispatch = counted  # type: ignore[method-assign]
            d.notify(ev(), channels_at=Observed(db, CHANNELS, empty))  # not kept yet
            assert d.flush(10) and len(dispatched) == 1
            for _ in range(3):  # kept empty at this generation
                d.notify(ev(), channels_at=Observed(db, CHANNELS, empty))
            assert d.flush(10) and len(dispatched) == 1
            assert (d.stats.enqueued, d.stats.no_channels) == (4, 4)
            d.notify(ev(), channels_at=Observed(db, POLICIES, empty))
            d.notify(ev(), channels_at=Observed(other, CHANNELS, empty))
            assert d.flush(10) and len(dispatched) == 3
            service.add("NTFY", {"server_url": server.ntfy_base, "topic": "late"})
            d.notify(ev(), channels_at=Observed(db, CHANNELS, generation()))
            assert d.flush(10) and len(dispatched) == 4
            assert d.stats.delivered == 1 and d.stats.no_channels == 6
            # no longer kept: the worker reads the channels as committed now
            d.notify(ev(), channels_at=Observed(db, CHANNELS, empty))
            assert d.flush(10) and len(dispatched) == 5
    finally:
        other.close()
    assert [r.target for r in server.requests()] == ["ntfy:late"] * 2


def test_an_event_with_its_channels_generation_goes_to_the_channels_as_committed_then(
    service: ChannelService, server: NotifyServer, clock: Clock, db: Database, tmp_path: Path
) -> None:
    """``notify(event, channels_at=...)``: the channels as committed with the event's unit of
    work, from what the source keeps at that generation (a channel disabled after that
    commit still gets it); the generation of another counter or another database is not
    taken for it (the channels as committed now)."""
    from waiaas.db.generations import CHANNELS, POLICIES, Observed
    from waiaas.notify import StaticChannelSource, build_channel

    def generation() -> str:
        found = db.fetch_one("SELECT value FROM wallet_state WHERE key = ?", (CHANNELS,))
        assert found is not None
        return str(found[0])

    info = service.add("NTFY", {"server_url": server.ntfy_base, "topic": "then"})
    other = Database.open(tmp_path / "other.db")
    try:
        with NotificationDispatcher(service.source(), retry=FAST, clock=clock) as d:
            d.notify(ev())
            assert d.flush(10)  # kept: [then] at this generation
            committed = generation()
            service.disable(info.id)
            d.notify(ev(), channels_at=Observed(db, CHANNELS, committed))
            assert d.flush(10)
            assert d.stats.delivered == 2 and d.stats.no_channels == 0
            d.notify(ev(), channels_at=Observed(db, POLICIES, committed))
            assert d.flush(10)
            assert d.stats.no_channels == 1
            service.enable(info.id)
            d.notify(ev())
            assert d.flush(10)
            kept = generation()
            service.disable(info.id)
            d.notify(ev(), channels_at=Observed(other, CHANNELS, kept))
            assert d.flush(10)
            assert (d.stats.delivered, d.stats.no_channels) == (3, 2)
    finally:
        other.close()
    assert [r.target for r in server.requests()] == ["ntfy:then"] * 3
    channel = build_channel("NTFY", {"server_url": server.ntfy_base, "topic": "static"})
    with NotificationDispatcher(StaticChannelSource([channel]), retry=FAST, clock=clock) as d:
        d.notify(ev(), channels_at=Observed(db, CHANNELS, "1"))  # no generations there
        assert d.flush(10)
        assert d.stats.delivered == 1
