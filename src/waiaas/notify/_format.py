"""Text helpers for notifications: exact amounts, Markdown escaping, safe truncation.

Everything here is pure. Lengths are counted in UTF-16 code units, which is how Telegram
counts and never less than what Discord counts, so a limit respected here is respected there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from waiaas.notify.base import NotificationEvent

__all__ = [
    "ELLIPSIS",
    "escape_discord",
    "escape_markdown_v2",
    "event_fields",
    "fit",
    "format_amount",
    "format_timestamp",
    "severity_icon",
    "utf16_len",
]

ELLIPSIS = "…"

# Telegram Bot API, "MarkdownV2 style": these must be escaped with a preceding backslash
# anywhere outside pre/code entities; the backslash itself too.
_MDV2_SPECIAL = frozenset("_*[]()~`>#+-=|{}.!\\")
# Discord markdown: characters that start formatting, links, quotes, headings or lists.
_DISCORD_SPECIAL = frozenset("\\*_~`|>#-[]()<")

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
    """Escape Discord markdown so agent-supplied text renders literally."""
    return "".join("\\" + ch if ch in _DISCORD_SPECIAL else ch for ch in text)


def fit(
    text: str,
    budget: int,
    escape: Callable[[str], str] = lambda s: s,
    *,
    measure: Callable[[str], int] = utf16_len,
) -> str:
    """Escape ``text`` and cut it to at most ``budget`` units, ending with an ellipsis if cut.

    The cut happens between source characters, so an escape sequence (``\\.``) or a
    surrogate pair is never split.
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
    for ch in text:
        piece = escape(ch)
        size = measure(piece)
        if used + size > room:
            break
        out.append(piece)
        used += size
    return "".join(out) + marker


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
            value = value[:299] + ELLIPSIS
        fields.append((key, value))
    fields.append(("Time", format_timestamp(event.timestamp)))
    return fields
