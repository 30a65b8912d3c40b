"""Channel configs, wire formats, limits and response handling (pure: no network)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.notify_server import parse_markdown_v2
from waiaas.errors import InvalidInputError
from waiaas.notify import (
    DiscordChannel,
    NotificationEvent,
    NtfyChannel,
    TelegramChannel,
    TelegramConfig,
    WebhookChannel,
    build_channel,
    parse_channel_config,
    verify_webhook_signature,
)
from waiaas.notify._format import ELLIPSIS
from waiaas.notify.channels import DISCORD_LIMIT, NTFY_LIMIT_BYTES, TELEGRAM_LIMIT
from waiaas.types import AuditEvent, Severity

TOKEN = "7012345678:AAH-secretSECRETsecret_token-XYZ0123"
DISCORD_URL = "https://discord.com/api/webhooks/1234/discord-secret-token"
WEBHOOK_SECRET = "whsec_0123456789abcdef0123"


def telegram(**kw: object) -> TelegramChannel:
    cfg = {"bot_token": TOKEN, "chat_id": -1001234567890, **kw}
    channel = build_channel("TELEGRAM", cfg, id="tg")
    assert isinstance(channel, TelegramChannel)
    return channel


def event(**kw: object) -> NotificationEvent:
    base: dict[str, object] = {
        "event_type": AuditEvent.TX_CONFIRMED,
        "timestamp": 1_760_000_000,
        "agent_id": "agent-1",
        "agent_name": "trader_bot",
        "amount": 1_500_000_000,
        "decimals": 9,
        "asset_symbol": "SOL",
        "chain": "solana",
        "network": "devnet",
        "to_address": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
        "tier": "NOTIFY",
        "tx_id": "tx-42",
        "message": "Paid invoice #7 (fee: 0.000005 SOL)!",
    }
    base.update(kw)
    return NotificationEvent(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- configs


def test_unknown_keys_and_bad_values_are_all_reported() -> None:
    """A config with several problems fails closed and lists every one."""
    with pytest.raises(InvalidInputError) as info:
        parse_channel_config("NTFY", {"topic": "bad topic!", "colour": "red"})
    problems = info.value.problems
    assert any(p.startswith("topic:") for p in problems)
    assert any(p.startswith("colour:") for p in problems)
    assert info.value.field == "config"


def test_invalid_config_never_echoes_a_secret() -> None:
    """A malformed token is refused without repeating it in the error."""
    bad = "not-a-token-but-very-secret-value"
    with pytest.raises(InvalidInputError) as info:
        parse_channel_config("TELEGRAM", {"bot_token": bad, "chat_id": 1})
    assert bad not in str(info.value)
    assert bad not in repr(info.value.to_dict())
    assert info.value.field == "config.bot_token"


def test_unknown_channel_type_is_refused() -> None:
    """Only the four known types exist."""
    with pytest.raises(InvalidInputError) as info:
        build_channel("SLACK", {})
    assert info.value.field == "type"


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com/hook",
        "ftp://example.com/x",
        "https://user:pw@example.com/x",
        "https://example.com/x#frag",
        "not a url",
        "https:///nohost",
    ],
)
def test_unsafe_urls_are_refused(url: str) -> None:
    """Plain http to a remote host, other schemes, credentials and fragments are refused."""
    with pytest.raises(InvalidInputError):
        parse_channel_config("WEBHOOK", {"url": url, "secret": WEBHOOK_SECRET})


def test_plain_http_is_allowed_for_loopback_or_when_asked() -> None:
    """Self-hosted servers: loopback always, other hosts only with allow_insecure_http."""
    parse_channel_config("NTFY", {"server_url": "http://127.0.0.1:8080", "topic": "t"})
    parse_channel_config("NTFY", {"server_url": "http://[::1]:8080", "topic": "t"})
    parse_channel_config(
        "NTFY", {"server_url": "http://ntfy.lan", "topic": "t", "allow_insecure_http": True}
    )
    with pytest.raises(InvalidInputError):
        parse_channel_config("NTFY", {"server_url": "http://ntfy.lan", "topic": "t"})


@pytest.mark.parametrize(
    ("chat_id", "expected"), [("-100123", -100123), (42, 42), ("@my_channel", "@my_channel")]
)
def test_telegram_chat_id_forms(chat_id: object, expected: object) -> None:
    """Numeric ids (also as strings) become ints; @channel usernames stay strings."""
    cfg = parse_channel_config("TELEGRAM", {"bot_token": TOKEN, "chat_id": chat_id})
    assert isinstance(cfg, TelegramConfig)
    assert cfg.chat_id == expected


def test_reprs_never_show_secrets() -> None:
    """Channel, config and request reprs mask tokens and URLs that embed tokens."""
    tg = telegram()
    dc = build_channel("DISCORD", {"webhook_url": DISCORD_URL})
    wh = build_channel("WEBHOOK", {"url": "https://h.example/in?key=k3y", "secret": WEBHOOK_SECRET})
    nt = build_channel("NTFY", {"topic": "private-topic-name", "access_token": "tk_secret123"})
    secrets = [TOKEN.split(":")[1], "discord-secret-token", "k3y", WEBHOOK_SECRET]
    secrets += ["private-topic-name", "tk_secret123"]
    for thing in (tg, dc, wh, nt):
        text = repr(thing) + repr(thing.build_request(event(), now=1, delivery_id="d"))
        text += repr(getattr(thing, "config", None))
        for secret in secrets:
            assert secret not in text
    assert "7012345678:[secure]" in repr(tg)  # the public bot id stays visible
    assert "https://discord.com/[secure]" in repr(dc)


# --------------------------------------------------------------------------- Telegram


def test_telegram_wire_format() -> None:
    """POST {base}/bot<token>/sendMessage with chat_id, MarkdownV2 text, no link preview."""
    request = telegram(message_thread_id=7).build_request(event(), now=1, delivery_id="d")
    assert request.method == "POST"
    assert request.url == f"https://api.telegram.org/bot{TOKEN}/sendMessage"
    assert request.header("content-type") == "application/json"
    body = json.loads(request.body)
    assert body["chat_id"] == -1001234567890
    assert body["parse_mode"] == "MarkdownV2"
    assert body["message_thread_id"] == 7
    assert body["link_preview_options"] == {"is_disabled": True}
    plain = parse_markdown_v2(body["text"])
    assert "Transaction confirmed" in plain
    assert "Amount: 1.5 SOL" in plain
    assert "Paid invoice #7 (fee: 0.000005 SOL)!" in plain
    assert "Agent: trader_bot (agent-1)" in plain


@pytest.mark.parametrize("filler", [".", "a", "\U0001f600", "\\", "_*"])
def test_telegram_long_text_is_cut_within_limit_and_still_parses(filler: str) -> None:
    """A huge message is cut to 4096 units without breaking an escape or an entity."""
    big = event(message=(filler * 16_000)[:16_000], extra={"note": filler * 5000})
    text = telegram().render(big)
    assert sum(2 if ord(c) > 0xFFFF else 1 for c in text) <= TELEGRAM_LIMIT
    plain = parse_markdown_v2(text)
    assert plain.startswith("\u2139\ufe0f Transaction confirmed")
    assert "Amount: 1.5 SOL" in plain  # the important fields survive truncation


def test_telegram_title_is_bold_and_injection_proof() -> None:
    """Markdown in agent-supplied text shows literally instead of formatting."""
    text = telegram().render(event(agent_name="*evil*[link](http://x)", title="Paid_ok"))
    assert text.startswith("*\u2139\ufe0f Paid\\_ok*\n")
    assert "Agent: *evil*[link](http://x) (agent-1)" in parse_markdown_v2(text)


def test_telegram_response_handling() -> None:
    """ok:true delivers; ok:false fails; 429 retries after parameters.retry_after; 400 does not."""
    tg = telegram()
    assert tg.check_response(200, {}, b'{"ok":true,"result":{}}').ok
    refused = tg.check_response(200, {}, b'{"ok":false,"error_code":400,"description":"no"}')
    assert not refused.ok and not refused.retryable
    limited = tg.check_response(
        429,
        {},
        b'{"ok":false,"error_code":429,"description":"Too Many Requests",'
        b'"parameters":{"retry_after":17}}',
    )
    assert limited.retryable and limited.retry_after == 17
    header_wins = tg.check_response(
        429, {"Retry-After": "3"}, b'{"ok":false,"parameters":{"retry_after":17}}'
    )
    assert header_wins.retry_after == 3
    bad = tg.check_response(
        400, {}, b'{"ok":false,"error_code":400,"description":"chat not found"}'
    )
    assert not bad.retryable and "chat not found" in bad.error
    assert tg.check_response(502, {}, b"<html>bad gateway</html>").retryable


# --------------------------------------------------------------------------- Discord


def test_discord_wire_format_blocks_mentions() -> None:
    """POST to the webhook URL with content, no allowed mentions, markdown escaped."""
    dc = build_channel("DISCORD", {"webhook_url": DISCORD_URL, "username": "waiaas"})
    assert isinstance(dc, DiscordChannel)
    request = dc.build_request(event(message="@everyone **look**"), now=1, delivery_id="d")
    assert request.url == DISCORD_URL
    body = json.loads(request.body)
    assert body["allowed_mentions"] == {"parse": []}
    assert body["username"] == "waiaas"
    assert body["content"].startswith("**\u2139\ufe0f Transaction confirmed**\n")
    assert "@everyone \\*\\*look\\*\\*" in body["content"]
    assert "**Amount:** 1.5 SOL" in body["content"]


def test_discord_content_limit() -> None:
    """Content never exceeds 2000 characters."""
    dc = build_channel("DISCORD", {"webhook_url": DISCORD_URL})
    assert isinstance(dc, DiscordChannel)
    text = dc.render(event(message="_" * 16_000))
    assert len(text) <= DISCORD_LIMIT
    assert not text.endswith("\\")


def test_discord_429_uses_body_retry_after() -> None:
    """Discord puts retry_after (seconds, float) in the JSON body."""
    dc = build_channel("DISCORD", {"webhook_url": DISCORD_URL})
    verdict = dc.check_response(429, {}, b'{"message":"rate limited","retry_after":0.75}')
    assert verdict.retryable and verdict.retry_after == 0.75
    assert dc.check_response(204, {}, b"").ok


# --------------------------------------------------------------------------- ntfy


def test_ntfy_wire_format() -> None:
    """POST {server}/{topic}; Title/Priority/Tags headers; bearer token; plain body."""
    nt = build_channel(
        "NTFY",
        {"server_url": "https://ntfy.example.org/", "topic": "alerts", "access_token": "tk_abc"},
    )
    assert isinstance(nt, NtfyChannel)
    request = nt.build_request(
        event(event_type=AuditEvent.KILL_SWITCH_ACTIVATED), now=1, delivery_id="d"
    )
    assert request.url == "https://ntfy.example.org/alerts"
    assert request.header("Title") == "Kill switch activated"
    assert request.header("Priority") == "5"
    assert request.header("Tags") == "rotating_light,kill_switch_activated"
    assert request.header("Authorization") == "Bearer tk_abc"
    body = request.body.decode()
    assert "Amount: 1.5 SOL" in body and "*" not in body


def test_ntfy_headers_are_safe() -> None:
    """CR/LF cannot inject headers; non-ASCII titles travel as RFC 2047 words."""
    nt = build_channel("NTFY", {"topic": "alerts"})
    injected = nt.build_request(event(title="a\r\nX-Evil: 1"), now=1, delivery_id="d")
    assert injected.header("Title") == "a X-Evil: 1"
    unicode = nt.build_request(event(title="Überweisung ✓"), now=1, delivery_id="d")
    title = unicode.header("Title")
    assert title is not None and title.startswith("=?UTF-8?B?")
    assert base64.b64decode(title[10:-2]).decode() == "Überweisung ✓"


def test_ntfy_body_limit_in_bytes() -> None:
    """The body stays within ntfy's 4096-byte message limit."""
    nt = build_channel("NTFY", {"topic": "alerts"})
    request = nt.build_request(event(message="ü" * 10_000), now=1, delivery_id="d")
    assert len(request.body) <= NTFY_LIMIT_BYTES
    request.body.decode("utf-8")  # never cut inside a character


def test_severity_maps_to_ntfy_priority() -> None:
    """critical 5, warning 4, info 3."""
    nt = build_channel("NTFY", {"topic": "alerts"})
    for severity, priority in ((Severity.CRITICAL, "5"), ("warning", "4"), ("info", "3")):
        req = nt.build_request(event(severity=severity), now=1, delivery_id="d")
        assert req.header("Priority") == priority


# --------------------------------------------------------------------------- webhook


def test_webhook_wire_format_is_signed() -> None:
    """JSON body with delivery id and the event; the signature verifies with the secret."""
    wh = build_channel("WEBHOOK", {"url": "https://h.example/in", "secret": WEBHOOK_SECRET})
    assert isinstance(wh, WebhookChannel)
    request = wh.build_request(event(), now=1_760_000_100, delivery_id="dlv-1")
    headers = dict(request.headers)
    assert headers["X-Waiaas-Event"] == "TX_CONFIRMED"
    assert headers["X-Waiaas-Delivery"] == "dlv-1"
    body = json.loads(request.body)
    assert body["id"] == "dlv-1"
    assert body["event"]["amount"] == "1500000000"
    assert body["event"]["amount_display"] == "1.5 SOL"
    assert verify_webhook_signature(WEBHOOK_SECRET, headers, request.body, now=1_760_000_100)


def test_default_response_rules() -> None:
    """2xx delivers; 408/429/5xx retry (Retry-After honoured, also as HTTP date); 4xx fail."""
    wh = build_channel("WEBHOOK", {"url": "https://h.example/in", "secret": WEBHOOK_SECRET})
    assert wh.check_response(201, {}, b"").ok
    assert wh.check_response(408, {}, b"").retryable
    assert wh.check_response(503, {"retry-after": "12"}, b"").retry_after == 12
    dated = wh.check_response(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"")
    assert dated.retryable and dated.retry_after == 0  # a date in the past: retry now
    for status in (301, 400, 401, 403, 404, 410):
        verdict = wh.check_response(status, {}, b"nope")
        assert not verdict.ok and not verdict.retryable
        assert verdict.error.startswith(f"HTTP {status}")


def test_response_errors_are_scrubbed_of_secrets() -> None:
    """A server echoing the request URL does not get the token into our error text."""
    tg = telegram()
    verdict = tg.check_response(404, {}, f"no such path /bot{TOKEN}/sendMessage".encode())
    assert TOKEN not in verdict.error
    assert "[secure]" in verdict.error


# --------------------------------------------------------------------------- no partial words

SOL_TO = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
LINK = "https://wallet.example.com/approvals/tx-42/Zwkj_HfIrKf-kLFKKIivH_UPxTL4715x-QWY666OEJyBY"


def _renders(big: NotificationEvent) -> dict[str, str]:
    """The plain text each text channel shows for ``big``."""
    import re

    nt = build_channel("NTFY", {"topic": "alerts"})
    dc = build_channel("DISCORD", {"webhook_url": DISCORD_URL})
    assert isinstance(nt, NtfyChannel) and isinstance(dc, DiscordChannel)
    tg_text = telegram().render(big)
    dc_text = dc.render(big)
    nt_text = nt.render(big)
    assert sum(2 if ord(c) > 0xFFFF else 1 for c in tg_text) <= TELEGRAM_LIMIT
    assert len(dc_text) <= DISCORD_LIMIT
    assert len(nt_text.encode()) <= NTFY_LIMIT_BYTES
    return {
        "telegram": parse_markdown_v2(tg_text),
        "discord": re.sub(r"\\(.)", r"\1", dc_text.replace("**", "")),
        "ntfy": nt_text,
    }


@pytest.mark.parametrize("filler", ["reason ", "x", "é "])
def test_fields_are_whole_or_absent_whatever_the_message(filler: str) -> None:
    """However long the message and the extras, the recipient, the amount and the link are
    never shown in part: a field line is whole or left out, and the message is cut between
    words."""
    big = event(
        message=(f"recipient {SOL_TO} " + filler * 3000)[:16_000],
        extra={"approval_link": LINK, "note": (filler + SOL_TO + " ") * 40},
    )
    for name, plain in _renders(big).items():
        assert f"To: {SOL_TO}" in plain, name
        assert "Amount: 1.5 SOL" in plain, name
        for line in plain.split("\n"):
            if line.startswith("approval_link:"):
                assert line == f"approval_link: {LINK}", name
        for token in plain.replace(ELLIPSIS, " ").split():
            if token.startswith(SOL_TO[:6]) or SOL_TO.endswith(token[-6:]):
                assert SOL_TO in token, (name, token)


def test_discord_leaves_links_unescaped() -> None:
    """Discord links a URL before reading markdown: an escaping backslash inside it would
    become part of the link, so links are sent as they are and the rest is escaped."""
    dc = build_channel("DISCORD", {"webhook_url": DISCORD_URL})
    assert isinstance(dc, DiscordChannel)
    text = dc.render(event(message=f"Approve or reject: {LINK}", extra={"approval_link": LINK}))
    assert f"Approve or reject: {LINK}" in text
    assert f"**approval\\_link:** {LINK}" in text
