"""Notifications through the whole product: a wallet with stored channels, a real local HTTP
server emulating ntfy and a signed webhook, and transactions on LiteSVM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.notify_server import Fail, NotifyServer
from tests.support.rawdb import raw_connect
from waiaas import Tier, Transfer, TxStatus, Wallet
from waiaas.chains.solana import SolanaAdapter
from waiaas.keystore.keys import generate_keypair
from waiaas.notify import verify_webhook_signature
from waiaas.testing import fund, local_wallet

SOL = 10**9


@pytest.fixture
def server() -> Iterator[NotifyServer]:
    """The local API emulator."""
    with NotifyServer() as srv:
        yield srv


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on LiteSVM that delivers to its stored channels (the default notifier)."""
    with local_wallet(tmp_path, chains=[SolanaAdapter.local()]) as w:
        yield w


def _agent(wallet: Wallet) -> tuple[str, str]:
    agent = wallet.create_agent("notifier", "solana")
    fund(wallet, agent.id, 10 * SOL)
    token = wallet.issue_session(agent.id).token
    return agent.id, token


def test_notify_tier_reaches_ntfy_with_a_human_amount(wallet: Wallet, server: NotifyServer) -> None:
    """A NOTIFY-tier transfer is delivered to ntfy after commit, showing '0.5 SOL'."""
    wallet.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "alerts"})
    _agent_id, token = _agent(wallet)
    _s, dest = generate_keypair("solana")
    result = wallet.send(token, Transfer(to=dest, amount=SOL // 2))
    assert (result.tier, result.status) == (Tier.NOTIFY, TxStatus.CONFIRMED)
    assert server.wait_for(1, "ntfy", timeout=10)
    bodies = [r.body.decode() for r in server.requests("ntfy")]
    assert any("0.5 SOL" in body for body in bodies), bodies
    if wallet.path is not None:  # SQLite: the file's bytes
        raw = wallet.path.read_bytes()
    else:  # PostgreSQL: what a dump of the table holds
        with raw_connect(wallet) as conn:
            raw = repr(conn.all("SELECT * FROM notification_channels")).encode()
        assert b"NTFY" in raw
    assert b"alerts" not in raw  # the topic is sealed, not stored in clear


def test_kill_switch_is_broadcast_to_every_channel_with_a_valid_signature(
    wallet: Wallet, server: NotifyServer
) -> None:
    """A critical event goes to all channels; the webhook carries a verifiable HMAC."""
    secret = "whsec-test-secret-0123456789abcdef"
    wallet.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "ops"}, priority=10)
    wallet.channels.add("WEBHOOK", {"url": server.webhook_url("ops"), "secret": secret}, priority=1)
    wallet.kill_switch("test: stop everything")
    assert server.wait_for(1, "ntfy", timeout=10)
    assert server.wait_for(1, "webhook", timeout=10)
    hook = server.requests("webhook")[0]
    verify_webhook_signature(secret, hook.headers, hook.body, now=wallet.clock.now())
    assert json.loads(hook.body)["event"]["type"] == "KILL_SWITCH_ACTIVATED"


def test_a_failing_channel_never_affects_the_transaction(
    wallet: Wallet, server: NotifyServer
) -> None:
    """Every channel failing leaves the transaction CONFIRMED and writes NOTIFICATION_FAILED."""
    server.always("ntfy", Fail(500))
    wallet.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "down"})
    agent_id, token = _agent(wallet)
    _s, dest = generate_keypair("solana")
    result = wallet.send(token, Transfer(to=dest, amount=SOL // 2))
    assert result.status == TxStatus.CONFIRMED
    wallet._pipeline.notifier.target.flush(timeout=30)  # type: ignore[union-attr]
    failed = wallet.audit(event_types=["NOTIFICATION_FAILED"]).entries
    assert failed, "the all-channels-failed audit row is missing"
    assert wallet.get_transaction(result.id).status == TxStatus.CONFIRMED
    assert agent_id
