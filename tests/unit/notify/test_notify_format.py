"""Exact amounts, Markdown escaping, safe truncation and the NotificationEvent value."""

from __future__ import annotations

import dataclasses
import decimal
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.notify_server import MarkdownV2Error, parse_markdown_v2
from waiaas.errors import InvalidInputError
from waiaas.notify import NotificationEvent, is_critical
from waiaas.notify._format import (
    ATOM_LIMIT,
    BULLET,
    ELLIPSIS,
    escape_discord,
    escape_markdown_v2,
    event_fields,
    fit,
    fit_message,
    format_amount,
    utf16_len,
)
from waiaas.notify.base import MAX_MESSAGE
from waiaas.types import AuditEvent, Severity

# --------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("amount", "decimals", "symbol", "expected"),
    [
        (1_500_000_000, 9, "SOL", "1.5 SOL"),
        (0, 9, "SOL", "0 SOL"),
        (1, 18, "ETH", "0.000000000000000001 ETH"),
        (10**18, 18, "ETH", "1 ETH"),
        (123_456_789, 6, "USDC", "123.456789 USDC"),
        (100, 0, "NFT", "100 NFT"),
        (10**40 + 5, 18, "ETH", "10000000000000000000000.000000000000000005 ETH"),
        (2_500_000, 6, None, "2.5"),
        (250, None, "USDC", "250 base units (USDC)"),
        (250, None, None, "250 base units"),
    ],
)
def test_format_amount_examples(
    amount: int, decimals: int | None, symbol: str | None, expected: str
) -> None:
    """Base units render exactly in human units, trailing zeros removed."""
    assert format_amount(amount, decimals, symbol) == expected


@given(st.integers(min_value=0, max_value=10**80), st.integers(min_value=0, max_value=40))
def test_format_amount_agrees_with_decimal(amount: int, decimals: int) -> None:
    """Two routes agree: parsing the rendered text back gives exactly amount / 10**decimals."""
    text = format_amount(amount, decimals, "TOK")
    number, symbol = text.split(" ")
    assert symbol == "TOK"
    ctx = decimal.Context(prec=200)
    assert ctx.multiply(decimal.Decimal(number), decimal.Decimal(10) ** decimals) == amount
    assert not number.endswith(".") and (("." not in number) or not number.endswith("0"))


# --------------------------------------------------------------------------- escaping


def test_every_markdown_v2_special_character_is_escaped() -> None:
    """Each of Telegram's 18 reserved characters, and the backslash, gets a backslash."""
    special = "_*[]()~`>#+-=|{}.!\\"
    assert escape_markdown_v2(special) == "".join("\\" + c for c in special)
    assert escape_markdown_v2("plain text 123") == "plain text 123"


def test_unescaped_reserved_character_is_refused_by_the_emulator() -> None:
    """The emulated Bot API refuses what Telegram refuses (sanity check of the checker)."""
    with pytest.raises(MarkdownV2Error):
        parse_markdown_v2("1.5 SOL")
    with pytest.raises(MarkdownV2Error):
        parse_markdown_v2("*unclosed bold")
    assert parse_markdown_v2("*bold* 1\\.5") == "bold 1.5"


@given(st.text(max_size=200))
def test_escaped_text_parses_back_to_itself(text: str) -> None:
    """Any text, escaped, is accepted by a MarkdownV2 parser and shows exactly as given."""
    assert parse_markdown_v2(escape_markdown_v2(text)) == text


def test_discord_escaping_neutralises_markdown() -> None:
    """Agent-supplied text cannot make bold, links or headings in Discord."""
    assert escape_discord("**x** [a](b) # h") == "\\*\\*x\\*\\* \\[a\\]\\(b\\) \\# h"


# --------------------------------------------------------------------------- truncation


@given(st.text(max_size=300), st.integers(min_value=0, max_value=120))
def test_fit_respects_budget_and_never_splits_an_escape(text: str, budget: int) -> None:
    """The cut text fits, still parses, and is a prefix of the original plus an ellipsis."""
    out = fit(text, budget, escape_markdown_v2)
    assert utf16_len(out) <= budget
    plain = parse_markdown_v2(out)  # would raise on a dangling backslash
    if plain != text:
        assert plain.endswith(ELLIPSIS) or out == ""
        assert text.startswith(plain.removesuffix(ELLIPSIS))


def test_fit_counts_utf16_units() -> None:
    """An emoji outside the BMP counts as two units, as Telegram counts it."""
    assert utf16_len("\U0001f6a8a") == 3
    assert fit("\U0001f6a8 " * 10, 7) == "\U0001f6a8 \U0001f6a8 " + ELLIPSIS
    huge = "\U0001f6a8" * ATOM_LIMIT  # one word longer than ATOM_LIMIT units: cut inside
    assert fit(huge, 5) == "\U0001f6a8\U0001f6a8" + ELLIPSIS


SOL_A = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
SOL_B = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
EVM_A = "0x0F3233A0d8f51D004bdbf10E892f5e955717D733"
LINK = "https://wallet.example.com/approvals/01a24c80-a4bb-72db/Zwkj_HfIrKf-kLFKKIivH"


@given(st.integers(min_value=0, max_value=200), st.sampled_from([SOL_A, EVM_A, LINK]))
def test_fit_never_shows_part_of_an_address_or_link(budget: int, word: str) -> None:
    """Whatever the budget, an address, an amount or a link is shown whole or not at all."""
    text = f"send 1.5 SOL from {SOL_B} to {word} now"
    for escape in (lambda s: s, escape_markdown_v2, escape_discord):
        out = fit(text, budget, escape)
        plain = out if escape is not escape_markdown_v2 else parse_markdown_v2(out)
        if escape is escape_discord:
            plain = re.sub(r"\\(.)", r"\1", out)
        for token in plain.removesuffix(ELLIPSIS).split():
            assert token in text.split(), (budget, out)


def _effects(n: int) -> list[str]:
    return [f"send 0.{n:09d} SOL from {SOL_A} to {SOL_B}" for n in range(1, n + 1)]


def _approval_text(n: int) -> str:
    return "\n".join(
        [
            f"Agent trader (a1) asks to do {n} things (every one is on the approval page):",
            *(BULLET + e for e in _effects(n)),
            "Network fee: 0.000005 SOL.",
            "Needs the owner's approval: " + "the amount is above the daily limit; " * 3 + ".",
            "Expires at 2023-11-14T23:13:20Z unless the owner decides.",
            f"Approve or reject: {LINK}",
        ]
    )


def test_fit_message_keeps_a_short_message_whole() -> None:
    text = _approval_text(2)
    assert fit_message(text, 10_000) == text
    assert fit_message(text, 10_000, escape_markdown_v2) == escape_markdown_v2(text)


@pytest.mark.parametrize("budget", [400, 700, 1000, 2048, 4096])
def test_fit_message_drops_whole_effects_first_and_keeps_the_link(budget: int) -> None:
    """A batch of many effects: the head line, whole effects in order, one line counting the
    ones left out, then the fee, why, expiry and the whole link."""
    text = _approval_text(60)
    out = fit_message(text, budget)
    assert utf16_len(out) <= budget
    lines = out.split("\n")
    assert lines[0] == text.split("\n")[0]
    assert lines[-1] == f"Approve or reject: {LINK}"
    items = [line for line in lines if line.startswith(BULLET)]
    shown, marker = items[:-1], items[-1]
    assert [line.removeprefix(BULLET) for line in shown] == _effects(60)[: len(shown)]
    assert marker == f"{BULLET}{ELLIPSIS} and {60 - len(shown)} more not shown here"
    if budget >= 1000:
        assert "Expires at 2023-11-14T23:13:20Z unless the owner decides." in lines
        assert "Network fee: 0.000005 SOL." in lines


@pytest.mark.parametrize("escape", [escape_markdown_v2, escape_discord])
def test_fit_message_escaped_stays_within_budget_and_parses(escape: Any) -> None:
    out = fit_message(_approval_text(40), 2000, escape)
    assert utf16_len(out) <= 2000
    if escape is escape_markdown_v2:
        plain = parse_markdown_v2(out)
        assert LINK in plain
    else:
        assert LINK in out  # Discord links stay unescaped (a backslash would break them)
        plain = re.sub(r"\\(.)", r"\1", out)
    for line in plain.split("\n"):
        if line.startswith(BULLET) and ELLIPSIS not in line:
            assert line.removeprefix(BULLET) in _effects(40)


def test_fit_message_cuts_a_long_line_between_words_and_keeps_the_short_ones() -> None:
    """Without a list, a long line of reasons is cut between words; the expiry and the link
    after it stay whole."""
    reasons = "Needs the owner's approval: " + f"recipient {SOL_A} is not whitelisted; " * 40
    text = "\n".join(["Agent trader asks to send 1 SOL.", reasons, "Expires soon.", LINK])
    out = fit_message(text, 600)
    assert len(out) <= 600
    lines = out.split("\n")
    assert lines[0] == "Agent trader asks to send 1 SOL." and lines[-2:] == ["Expires soon.", LINK]
    assert lines[1].endswith(ELLIPSIS)
    for token in lines[1].removesuffix(ELLIPSIS).split():
        assert token in reasons.split()


def test_fit_message_fits_the_largest_notification_message() -> None:
    """The pipeline bounds a queued transaction's message to what NotificationEvent accepts:
    whole effects, then a count, and the link."""
    text = _approval_text(400)
    assert len(text) > MAX_MESSAGE
    out = fit_message(text, MAX_MESSAGE, measure=len)
    assert len(out) <= MAX_MESSAGE
    NotificationEvent(event_type="TX_QUEUED", timestamp=1, message=out)
    assert out.endswith(LINK) and "more not shown here" in out


def test_fit_keeps_short_text_unchanged() -> None:
    """Text within the budget is only escaped."""
    assert fit("a.b", 10, escape_markdown_v2) == "a\\.b"


# --------------------------------------------------------------------------- the event value


def _event(**kw: object) -> NotificationEvent:
    base: dict[str, object] = {"event_type": AuditEvent.TX_CONFIRMED, "timestamp": 1_760_000_000}
    base.update(kw)
    return NotificationEvent(**base)  # type: ignore[arg-type]


def test_event_defaults_severity_and_title_from_the_event_type() -> None:
    """Severity comes from the audit event's default; the title is readable."""
    event = _event(event_type=AuditEvent.TX_FAILED)
    assert event.severity == Severity.WARNING
    assert event.title == "Transaction failed"
    custom = _event(event_type="SOMETHING_NEW")
    assert custom.severity == Severity.INFO
    assert custom.title == "Something new"


def test_event_display_amount_uses_exact_units() -> None:
    """1500000000 lamports with 9 decimals shows as 1.5 SOL."""
    event = _event(amount=1_500_000_000, decimals=9, asset_symbol="SOL")
    assert event.display_amount == "1.5 SOL"
    assert dict(event_fields(event))["Amount"] == "1.5 SOL"
    assert event.to_json_dict()["amount"] == "1500000000"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 1.5),
        ("amount", True),
        ("amount", -1),
        ("amount", "100"),
        ("timestamp", 1.0),
        ("decimals", 256),
        ("severity", "loud"),
        ("event_type", ""),
        ("extra", {"x": object()}),
        ("extra", {"x": float("nan")}),
        ("agent_id", 5),
    ],
)
def test_event_refuses_bad_fields(field: str, value: object) -> None:
    """Floats for money, bools, negatives, unknown severities and non-JSON extras are refused."""
    with pytest.raises(InvalidInputError) as info:
        _event(**{field: value})
    assert info.value.field == field


def test_event_is_immutable() -> None:
    """The event is frozen, extra included."""
    event = _event(extra={"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.title = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.extra["a"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("event_type", "severity", "critical"),
    [
        (AuditEvent.KILL_SWITCH_ACTIVATED, None, True),
        (AuditEvent.AUTO_STOP_TRIGGERED, None, True),
        (AuditEvent.AGENT_SUSPENDED, None, True),
        (AuditEvent.TX_CONFIRMED, Severity.CRITICAL, True),
        ("CUSTOM", "critical", True),
        (AuditEvent.TX_FAILED, None, False),
        (AuditEvent.KILL_SWITCH_RECOVERED, None, False),
    ],
)
def test_critical_classification(
    event_type: str, severity: Severity | None, critical: bool
) -> None:
    """Kill switch, auto-stop, suspension and any critical severity are broadcast."""
    event = _event(event_type=event_type, severity=severity)
    assert is_critical(event) is critical
    assert event.is_critical is critical
