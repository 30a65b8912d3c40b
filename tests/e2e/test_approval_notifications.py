"""APPROVAL and DELAY notifications end to end: a wallet with stored channels delivering to
the local HTTP channel server (tests/support/notify_server.py), transactions on eth-tester and
LiteSVM. The owner reads what the agent asks, why it needs them, until when, and where to
sign; a DELAY notification says how to cancel."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TIER_AMOUNTS, EvmOwner, SolanaOwner, new_agent, recipient
from tests.support.notify_server import NotifyServer, parse_markdown_v2
from waiaas import Batch, ContractCall, Transfer
from waiaas.notify._format import BULLET, ELLIPSIS
from waiaas.testing import FrozenClock, fast_config, local_wallet

APPROVALS_URL = "https://wallet.example.com/approvals"


@pytest.fixture
def server() -> Iterator[NotifyServer]:
    with NotifyServer() as srv:
        yield srv


def _wallet(tmp_path: Path, **config: Any) -> Any:
    return local_wallet(tmp_path, config=fast_config(**config), clock=FrozenClock())


def _event(server: NotifyServer, event_type: str) -> dict[str, Any]:
    assert server.wait_for(1, "webhook", timeout=10)
    for _ in range(50):
        for rec in server.requests("webhook"):
            event = json.loads(rec.body)["event"]
            if event["type"] == event_type:
                return dict(event)
        server.wait_for(len(server.requests("webhook")) + 1, "webhook", timeout=0.2)
    raise AssertionError(f"no {event_type} webhook among {server.requests('webhook')}")


@pytest.mark.parametrize("chain", ["evm", "solana"])
def test_approval_notification_carries_summary_expiry_and_link(
    tmp_path: Path, server: NotifyServer, chain: str
) -> None:
    """The queued APPROVAL notification is a warning with the amount in human units, the
    recipient, why the owner must approve, the expiry as ISO time and the page link; the
    Telegram copy of it parses as MarkdownV2 on the emulated Bot API."""
    with _wallet(tmp_path, approvals_url=APPROVALS_URL) as wallet:
        wallet.channels.add("WEBHOOK", {"url": server.webhook_url("owner"), "secret": "s" * 32})
        owner = EvmOwner() if chain == "evm" else SolanaOwner()
        agent = new_agent(wallet, chain, owner=owner, name="trader")
        token = wallet.issue_session(agent.id).token
        dest = recipient(chain)
        result = wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["APPROVAL"]))
        assert result.tier == "APPROVAL"
        event = _event(server, "TX_QUEUED")
        link = wallet.approval_link(result.id)
        assert link is not None and link.startswith(f"{APPROVALS_URL}/{result.id}/")
        human = "2 ETH" if chain == "evm" else "11 SOL"
        assert event["severity"] == "warning"
        assert event["title"] == "Owner approval needed"
        message = event["message"]
        assert f"Agent trader ({agent.id}) asks to send {human} from " in message
        assert "default" in message and "thresholds" in message  # why: the policy's words
        expiry = "2023-11-14T23:13:20Z"  # FrozenClock start + 3600 s
        assert f"Expires at {expiry}" in message
        assert f"Approve or reject: {link}" in message
        assert event["extra"]["approval_expires_at"] == expiry
        assert event["extra"]["approval_link"] == link


def test_approval_notification_on_telegram_parses_and_links(
    tmp_path: Path, server: NotifyServer
) -> None:
    """The same notification through the emulated Telegram Bot API: the MarkdownV2 text
    parses (the API refuses bad escaping) and holds the amount, the expiry and the link."""
    with _wallet(tmp_path, approvals_url=APPROVALS_URL) as wallet:
        wallet.channels.add(
            "TELEGRAM",
            {
                "bot_token": "123456:ABCdefGhIJKlmNoPQRstuVWXyz",
                "chat_id": 42,
                "api_base_url": server.telegram_base,
            },
        )
        agent = new_agent(wallet, "evm", owner=EvmOwner(), name="trader")
        token = wallet.issue_session(agent.id).token
        result = wallet.send(token, Transfer(to=recipient("evm"), amount=2 * 10**18))
        assert server.wait_for(1, "telegram", timeout=10)
        plain = parse_markdown_v2(server.requests("telegram")[0].json()["text"])
        link = wallet.approval_link(result.id)
        assert "Owner approval needed" in plain and "send 2 ETH from" in plain
        assert "2023-11-14T23:13:20Z" in plain
        assert link is not None and link in plain


def test_without_a_page_the_notification_says_what_to_sign(
    tmp_path: Path, server: NotifyServer
) -> None:
    """No approvals_url: no link, and the message names the CLI command that prints the
    message to sign."""
    with _wallet(tmp_path) as wallet:
        wallet.channels.add("WEBHOOK", {"url": server.webhook_url("owner"), "secret": "s" * 32})
        agent = new_agent(wallet, "evm", owner=EvmOwner())
        token = wallet.issue_session(agent.id).token
        result = wallet.send(token, Transfer(to=recipient("evm"), amount=2 * 10**18))
        event = _event(server, "TX_QUEUED")
        assert wallet.approval_link(result.id) is None
        assert "approval_link" not in event["extra"]
        assert f"approvals message {result.id}" in event["message"]
        assert event["severity"] == "warning"


def test_delay_notification_says_when_and_how_to_cancel(
    tmp_path: Path, server: NotifyServer
) -> None:
    """A DELAY notification gives the execution time as ISO and the cancel command."""
    with _wallet(tmp_path) as wallet:
        wallet.channels.add("WEBHOOK", {"url": server.webhook_url("owner"), "secret": "s" * 32})
        agent = new_agent(wallet, "solana")
        token = wallet.issue_session(agent.id).token
        result = wallet.send(token, Transfer(to=recipient("solana"), amount=2 * 10**9))
        assert result.tier == "DELAY"
        event = _event(server, "TX_QUEUED")
        message = event["message"]
        assert "send 2 SOL from" in message
        assert "Executes at 2023-11-14T22:28:20Z unless cancelled" in message
        assert f"tx cancel {result.id}" in message and f'wallet.cancel("{result.id}")' in message
        assert event["extra"]["execute_after"] == "2023-11-14T22:28:20Z"
        wallet.cancel(result.id)
        assert wallet.get_transaction(result.id).status == "CANCELLED"


# --------------------------------------------------------------------------- long batches

LIMITS = {"telegram": 4096, "discord": 2000, "ntfy": 4096}
ACCOUNTS = 18  # as many accounts as a 1232-byte Solana transaction of 16 instructions holds
ALT_PROGRAM = "AddressLookupTab1e1111111111111111111111111"  # executable on LiteSVM
BASE58_RUN = re.compile(r"[1-9A-HJ-NP-Za-km-z]{20,}")


def _add_channel(wallet: Any, server: NotifyServer, kind: str) -> None:
    if kind == "telegram":
        config: dict[str, Any] = {
            "bot_token": "123456:ABCdefGhIJKlmNoPQRstuVWXyz",
            "chat_id": 42,
            "api_base_url": server.telegram_base,
        }
    elif kind == "discord":
        config = {"webhook_url": server.discord_url()}
    elif kind == "ntfy":
        config = {"server_url": server.ntfy_base, "topic": "owner"}
    else:
        config = {"url": server.webhook_url("owner"), "secret": "s" * 32}
    wallet.channels.add(kind.upper(), config)


def _delivered(server: NotifyServer, kind: str) -> str:
    """The text the owner reads on ``kind`` (webhook: the event's message)."""
    assert server.wait_for(1, kind, timeout=10)
    record = server.requests(kind)[0]
    assert record.action == "Ok"
    if kind == "telegram":
        return parse_markdown_v2(record.json()["text"])
    if kind == "discord":
        content = str(record.json()["content"])
        return re.sub(r"\\(.)", r"\1", content.replace("**", ""))
    if kind == "ntfy":
        assert len(record.body) <= LIMITS["ntfy"]
        return record.body.decode("utf-8")
    return str(json.loads(record.body)["event"]["message"])


@pytest.mark.parametrize("kind", ["telegram", "discord", "ntfy", "webhook"])
def test_a_long_batch_never_shows_part_of_an_address(
    tmp_path: Path, server: NotifyServer, kind: str
) -> None:
    """A Solana batch of 16 effects whose lines name dozens of full 44-character addresses
    (about 14,000 characters in all) queued for APPROVAL, delivered through each channel:
    every address shown is whole, the effects shown are whole lines in order and the rest are
    counted, and the amount, the expiry and the link are there in full. The webhook, which
    has room, carries every effect."""
    with _wallet(tmp_path, approvals_url=APPROVALS_URL) as wallet:
        _add_channel(wallet, server, kind)
        agent = new_agent(wallet, "solana", owner=SolanaOwner(), name="trader")
        wallet.add_policy("CONTRACT_WHITELIST", {"contracts": [ALT_PROGRAM]}, agent_id=agent.id)
        token = wallet.issue_session(agent.id).token
        dest = recipient("solana")
        accounts = [{"pubkey": recipient("solana")} for _ in range(ACCOUNTS)]
        calls = [
            ContractCall(to=ALT_PROGRAM, data=bytes([i]), accounts=accounts) for i in range(15)
        ]
        batch = Batch(requests=[Transfer(to=dest, amount=11 * 10**9), *calls])
        result = wallet.send(token, batch)
        assert (result.status, result.tier) == ("QUEUED", "APPROVAL")
        shown = wallet.transaction_display(result.id)
        link = wallet.approval_link(result.id)
        assert link is not None and len(shown.effects) == 16
        assert sum(len(e.text) for e in shown.effects) > 13_000
        text = _delivered(server, kind)
    if kind != "webhook":
        assert len(text) <= LIMITS[kind]
    effects = [e.text for e in shown.effects]
    lines = text.split("\n")
    items = [line.removeprefix(BULLET) for line in lines if line.startswith(BULLET)]
    if kind == "webhook":
        assert items == effects
    else:
        *whole, marker = items
        assert whole == effects[: len(whole)] and len(whole) >= 1
        assert marker == f"{ELLIPSIS} and {16 - len(whole)} more not shown here"
    assert f"send 11 SOL from {agent.public_key} to {dest}" in items
    assert f"Approve or reject: {link}" in lines
    assert "Expires at 2023-11-14T23:13:20Z unless the owner decides." in lines
    assert "Network fee: 0.000005 SOL." in lines
    head = f"Agent trader ({agent.id}) asks to do 16 things (every one is on the approval page):"
    assert head in lines  # the list's head line says where every effect is shown
    known = {agent.public_key, dest, ALT_PROGRAM, *(a["pubkey"] for a in accounts)}
    for run in BASE58_RUN.findall(text.replace(link, "")):
        assert run in known, f"a partial or unknown address {run!r} in the {kind} text"
