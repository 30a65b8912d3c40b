"""Text helpers for notifications: exact amounts, Markdown escaping, safe truncation.

Everything here is pure. Lengths are counted in UTF-16 code units, which is how Telegram
counts and never less than what Discord counts, so a limit respected here is respected there.

Truncation never shows part of a word: an address, an amount or a link is shown whole or not
at all (a partial address is dangerous: an owner might match its first characters). Only a
"word" longer than :data:`ATOM_LIMIT` units (a blob, never an address or a link waiaas
writes) may be cut inside. Messages are shortened by lines (:func:`fit_message`): list items
(lines starting with :data:`BULLET`) go first, from the end, and one line says how many are
not shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from waiaas.notify.base import NotificationEvent

__all__ = [
    "ATOM_LIMIT",
    "BULLET",
    "ELLIPSIS",
    "escape_discord",
    "escape_markdown_v2",
    "event_fields",
    "fit",
    "fit_message",
    "format_amount",
    "format_timestamp",
    "severity_icon",
    "utf16_len",
]

ELLIPSIS = "…"
BULLET = "• "
"""Lines of a message that start with this are list items (e.g. one effect each)."""
ATOM_LIMIT = 512
"""Words up to this many units are never cut (addresses, amounts, links)."""

# Telegram Bot API, "MarkdownV2 style": these must be escaped with a preceding backslash
# anywhere outside pre/code entities; the backslash itself too.
_MDV2_SPECIAL = frozenset("_*[]()~`>#+-=|{}.!\\")
# Discord markdown: characters that start formatting, links, quotes, headings or lists.
_DISCORD_SPECIAL = frozenset("\\*_~`|>#-[]()<")

# A link as Discord recognises one (the autolink rule of its markdown parser).
_URL = re.compile(r"https?://[^\s<]+[^<.,:;\"')\]\s]")

_ICONS = {"critical": "\U0001f6a8", "warning": "\u26a0\ufe0f", "info": "\u2139\ufe0f"}


def format_amount(amount: int, decimals: int | None, symbol: str | None) -> str:
    """Render an exact base-unit amount for people, without floats.

    >>> format_amount(1_500_000_000, 9, "SOL")
    '1.5 SOL'
    >>> format_amount(10**18, 18, "ETH")
    '1 ETH'
    >>> format_amount(250, None, "USDC")
    '250 base units (USDC)'
    """
    if decimals is None:
        return f"{amount} base units" + (f" ({symbol})" if symbol else "")
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    text = str(whole)
    if frac:
        text += "." + str(frac).rjust(decimals, "0").rstrip("0")
    return f"{sign}{text} {symbol}" if symbol else f"{sign}{text}"


def format_timestamp(timestamp: int) -> str:
    """``2025-10-09 08:53:20 UTC`` for a Unix timestamp (falls back to the raw number)."""
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(timestamp)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (an emoji outside the BMP counts 2)."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def escape_markdown_v2(text: str) -> str:
    r"""Escape ``text`` for Telegram's MarkdownV2 (outside code entities).

    >>> escape_markdown_v2("1.5 SOL (fee: 0.000005)!")
    '1\\.5 SOL \\(fee: 0\\.000005\\)\\!'
    """
    return "".join("\\" + ch if ch in _MDV2_SPECIAL else ch for ch in text)


def escape_discord(text: str) -> str:
    r"""Escape Discord markdown so agent-supplied text renders literally.

    Links are left as they are: Discord links a URL before reading markdown, so a backslash
    inside it would become part of the link and break it (nothing inside a link formats).

    >>> escape_discord("*x* at https://a.example/t/x_y-z")
    '\\*x\\* at https://a.example/t/x_y-z'
    """
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        out.append(_escape_discord_plain(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_escape_discord_plain(text[last:]))
    return "".join(out)


def _escape_discord_plain(text: str) -> str:
    return "".join("\\" + ch if ch in _DISCORD_SPECIAL else ch for ch in text)


def _words(text: str) -> list[str]:
    """``text`` as alternating runs of whitespace and non-whitespace (joined: ``text``)."""
    return re.findall(r"\s+|\S+", text)


def fit(
    text: str,
    budget: int,
    escape: Callable[[str], str] = lambda s: s,
    *,
    measure: Callable[[str], int] = utf16_len,
) -> str:
    """Escape ``text`` and cut it to at most ``budget`` units, ending with an ellipsis if cut.

    The cut falls between words: an address, an amount or a link is kept whole or left out,
    never shown in part. Only a word longer than :data:`ATOM_LIMIT` units may be cut inside
    it. An escape sequence (``\\.``) or a surrogate pair is never split.
    """
    escaped = escape(text)
    if measure(escaped) <= budget:
        return escaped
    marker = escape(ELLIPSIS)
    room = budget - measure(marker)
    if room < 0:
        return ""
    out: list[str] = []
    used = 0
    for word in _words(text):
        piece = escape(word)
        size = measure(piece)
        if used + size <= room:
            out.append(piece)
            used += size
            continue
        if not word.isspace() and size > ATOM_LIMIT:
            for ch in word:
                bit = escape(ch)
                if used + measure(bit) > room:
                    break
                out.append(bit)
                used += measure(bit)
        break
    return "".join(out) + marker


def fit_message(
    text: str,
    budget: int,
    escape: Callable[[str], str] = lambda s: s,
    *,
    measure: Callable[[str], int] = utf16_len,
) -> str:
    """Escape a message of lines and shorten it to at most ``budget`` units, by whole lines.

    In order, until it fits:

    1. list items (lines starting with :data:`BULLET`) are left out from the end, replaced by
       one line ``• … and N more not shown here``;
    2. the first line, lines holding a link (``://``) and the list's lines are kept; each
       other line is kept whole if it still fits, else left out, and the first one left out
       is cut between words (:func:`fit`) into the room that remains;
    3. if even the kept lines do not fit, the whole text is cut between words.

    So the recipient, the amount and the link of a transaction are never shown in part.

    Example::

        text = "\n".join(["Agent bot asks to:", *(f"• send {n} SOL to {dest}" for n in range(40)),
                          "Approve or reject: https://wallet.example.com/approvals/..."])
        fit_message(text, 1000)
        # the first line, the first effects whole, "• … and 31 more not shown here", the link
    """
    lines = text.split("\n")

    def size(kept: list[str]) -> int:
        return sum(measure(escape(line)) for line in kept) + max(0, len(kept) - 1)

    def join(kept: list[str]) -> str:
        return "\n".join(escape(line) for line in kept)

    if size(lines) <= budget:
        return join(lines)
    items = [i for i, line in enumerate(lines) if line.startswith(BULLET)]
    if items:
        for keep in range(len(items) - 1, -1, -1):
            shorter = _drop_items(lines, items, keep)
            if size(shorter) <= budget:
                return join(shorter)
        lines = _drop_items(lines, items, 0)
    fixed = [i == 0 or "://" in line or line.startswith(BULLET) for i, line in enumerate(lines)]
    kept = [escape(line) if keep else None for line, keep in zip(lines, fixed, strict=True)]
    room = budget - size([line for line, keep in zip(lines, fixed, strict=True) if keep])
    if room < 0:
        return fit("\n".join(lines), budget, escape, measure=measure)
    skipped: list[int] = []
    for i, line in enumerate(lines):
        if fixed[i]:
            continue
        cost = 1 + measure(escape(line))
        if cost <= room:
            kept[i] = escape(line)
            room -= cost
        else:
            skipped.append(i)
    if skipped and room - 1 > measure(escape(ELLIPSIS)):
        kept[skipped[0]] = fit(lines[skipped[0]], room - 1, escape, measure=measure)
    return "\n".join(line for line in kept if line is not None)


def _drop_items(lines: list[str], items: list[int], keep: int) -> list[str]:
    """``lines`` with only the first ``keep`` list items, and a line counting the others."""
    dropped = set(items[keep:])
    out: list[str] = []
    for i, line in enumerate(lines):
        if i in dropped:
            if i == items[keep]:
                out.append(f"{BULLET}{ELLIPSIS} and {len(dropped)} more not shown here")
            continue
        out.append(line)
    return out


def severity_icon(severity: str) -> str:
    """An emoji for the severity (used as a title prefix)."""
    return _ICONS.get(severity, _ICONS["info"])


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def event_fields(event: NotificationEvent) -> list[tuple[str, str]]:
    """The ``(label, value)`` lines every text channel shows, in display order."""
    fields: list[tuple[str, str]] = []
    if event.agent_name and event.agent_id:
        fields.append(("Agent", f"{event.agent_name} ({event.agent_id})"))
    elif event.agent_name or event.agent_id:
        fields.append(("Agent", str(event.agent_name or event.agent_id)))
    amount = event.display_amount
    if amount is not None:
        fields.append(("Amount", amount))
    if event.to_address:
        fields.append(("To", event.to_address))
    if event.chain and event.network:
        fields.append(("Chain", f"{event.chain} / {event.network}"))
    elif event.chain or event.network:
        fields.append(("Chain", str(event.chain or event.network)))
    if event.tier is not None:
        fields.append(("Tier", str(event.tier)))
    if event.tx_id:
        fields.append(("Transaction", event.tx_id))
    for key in sorted(event.extra):
        value = _value_text(event.extra[key])
        if len(value) > 300:
            value = fit(value, 300, measure=len)
        fields.append((key, value))
    fields.append(("Time", format_timestamp(event.timestamp)))
    return fields
