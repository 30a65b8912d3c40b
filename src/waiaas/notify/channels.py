"""Notification channels: Telegram, Discord, ntfy and signed webhooks.

A channel turns a :class:`~waiaas.notify.base.NotificationEvent` into one HTTP request
(:meth:`Channel.build_request`) and judges the response (:meth:`Channel.check_response`).
It does no I/O itself: :mod:`waiaas.notify.dispatcher` sends, retries and rate-limits.

Each channel type has a strict configuration model (unknown keys are refused):

==========  ===========================================================  =====================
type        configuration                                                secret fields
==========  ===========================================================  =====================
TELEGRAM    ``bot_token``, ``chat_id``, ``message_thread_id``?,           ``bot_token``
            ``api_base_url`` (default ``https://api.telegram.org``)
DISCORD     ``webhook_url``, ``username``?                               ``webhook_url``
NTFY        ``server_url`` (default ``https://ntfy.sh``), ``topic``,      ``topic``,
            ``access_token``?                                            ``access_token``
WEBHOOK     ``url``, ``secret`` (16+ characters)                         ``url``, ``secret``
==========  ===========================================================  =====================

Every model also takes ``allow_insecure_http`` (default ``False``): plain ``http://`` URLs are
refused unless they point at a loopback address or this flag is set.

Secret fields are :class:`pydantic.SecretStr`, so reprs show ``**********``; the service seals
them with the keystore before they reach the database.

Example::

    from waiaas.notify.channels import TelegramChannel, TelegramConfig

    channel = TelegramChannel(TelegramConfig(bot_token="123456:AAE...", chat_id=-1001234567))
    request = channel.build_request(event, now=1_760_000_000, delivery_id="...")
"""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from waiaas._validate import shown
from waiaas.errors import InvalidInputError
from waiaas.ids import new_id
from waiaas.notify._format import (
    escape_discord,
    escape_markdown_v2,
    event_fields,
    fit,
    fit_message,
    severity_icon,
    utf16_len,
)
from waiaas.notify.base import ChannelType, NotificationEvent
from waiaas.notify.webhook import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign_webhook

__all__ = [
    "DISCORD_LIMIT",
    "NTFY_LIMIT_BYTES",
    "TELEGRAM_LIMIT",
    "Channel",
    "ChannelConfig",
    "DiscordChannel",
    "DiscordConfig",
    "NtfyChannel",
    "NtfyConfig",
    "OutboundRequest",
    "ResponseVerdict",
    "TelegramChannel",
    "TelegramConfig",
    "WebhookChannel",
    "WebhookConfig",
    "build_channel",
    "parse_channel_config",
]

TELEGRAM_LIMIT = 4096
"""Telegram's ``sendMessage`` text limit (UTF-16 code units, counted here before parsing)."""
DISCORD_LIMIT = 2000
"""Discord's webhook ``content`` limit."""
NTFY_LIMIT_BYTES = 4096
"""ntfy's default message size limit (larger bodies become attachments)."""

_USER_AGENT = "waiaas-notify/1"
_SECURE = "[secure]"


# --------------------------------------------------------------------------- wire values


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One HTTP request a channel wants sent. Its repr hides the URL (it may hold a token)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def __repr__(self) -> str:
        return (
            f"OutboundRequest(method={self.method!r}, url={_redact_url(self.url)!r}, "
            f"body={len(self.body)} bytes)"
        )

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), if present."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


@dataclass(frozen=True, slots=True)
class ResponseVerdict:
    """What a channel makes of a response.

    Attributes:
        ok: the message was delivered.
        retryable: a transient failure (429, 5xx, 408) worth retrying.
        retry_after: seconds the server asked us to wait, when it said.
        error: a short description of the failure (no secrets), empty when ``ok``.
    """

    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    error: str = ""


@runtime_checkable
class Channel(Protocol):
    """A notification channel: request builder + response judge, no I/O.

    Third parties can add channel types by implementing this protocol.
    """

    @property
    def id(self) -> str:
        """The channel id (the ``notification_channels.id`` column)."""
        ...

    @property
    def type(self) -> str:
        """The channel type (``TELEGRAM``, ...)."""
        ...

    @property
    def priority(self) -> int:
        """Higher goes first in priority fallback."""
        ...

    def build_request(
        self, event: NotificationEvent, *, now: int, delivery_id: str
    ) -> OutboundRequest:
        """The HTTP request delivering ``event``. Called again for every retry."""
        ...

    def check_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ResponseVerdict:
        """Judge the response to a request made by :meth:`build_request`."""
        ...

    def secret_values(self) -> tuple[str, ...]:
        """Strings that must never appear in logs or stored errors (tokens, URLs)."""
        ...


# --------------------------------------------------------------------------- configs


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(value: str, *, allow_insecure_http: bool, what: str) -> str:
    value = value.strip()
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{what} is not a valid URL") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{what} must be an http(s) URL")
    if not host:
        raise ValueError(f"{what} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not carry credentials in the URL")
    if parts.fragment:
        raise ValueError(f"{what} must not have a #fragment")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in value):
        raise ValueError(f"{what} must not contain whitespace or control characters")
    if parts.scheme == "http" and not (allow_insecure_http or _is_loopback(host)):
        raise ValueError(
            f"{what} uses plain http to a non-loopback host; use https (or set allow_insecure_http)"
        )
    return value


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return _SECURE
    return f"{parts.scheme}://{netloc}/{_SECURE}" if netloc else _SECURE


class ChannelConfig(BaseModel):
    """Base of the per-type configuration models (strict, frozen, no unknown keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    secret_fields: ClassVar[tuple[str, ...]] = ()
    channel_type: ClassVar[ChannelType]

    allow_insecure_http: bool = False

    def public_dict(self) -> dict[str, Any]:
        """The non-secret fields as JSON-able data."""
        return self.model_dump(mode="json", exclude=set(self.secret_fields), exclude_none=True)

    def secret_dict(self) -> dict[str, str]:
        """The secret fields in clear (only for sealing; never log this)."""
        out: dict[str, str] = {}
        for name in self.secret_fields:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.get_secret_value()
        return out

    def redacted(self) -> dict[str, Any]:
        """Every field, secrets masked (``[secure]``; URLs keep only scheme and host)."""
        out = self.public_dict()
        for name, value in self.secret_dict().items():
            out[name] = self._mask(name, value)
        return out

    def _mask(self, name: str, value: str) -> str:
        if value.startswith(("http://", "https://")):
            return _redact_url(value)
        return _SECURE


class TelegramConfig(ChannelConfig):
    """Telegram Bot API: the bot's token and the chat (user, group or ``@channel``)."""

    secret_fields: ClassVar[tuple[str, ...]] = ("bot_token",)
    channel_type: ClassVar[ChannelType] = ChannelType.TELEGRAM

    bot_token: SecretStr
    chat_id: int | str
    message_thread_id: int | None = Field(default=None, ge=1)
    api_base_url: str = "https://api.telegram.org"

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        bot_id, sep, rest = value.get_secret_value().partition(":")
        ok = (
            sep
            and bot_id.isascii()
            and bot_id.isdigit()
            and 0 < len(bot_id) <= 20
            and 20 <= len(rest) <= 100
            and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in rest)
        )
        if not ok:
            raise ValueError("bot_token must look like '<digits>:<token>' as issued by BotFather")
        return value

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat(cls, value: object) -> int | str:
        if isinstance(value, bool):
            raise ValueError("chat_id must be an integer id or '@channelusername'")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            text = value.strip()
            digits = text[1:] if text.startswith("-") else text
            if digits.isascii() and digits.isdigit() and len(digits) <= 20:
                return int(text)
            name = text[1:]
            if (
                text.startswith("@")
                and 5 <= len(name) <= 32
                and all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)
            ):
                return text
        raise ValueError("chat_id must be an integer id or '@channelusername'")

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, value: str, info: Any) -> str:
        insecure = bool(info.data.get("allow_insecure_http", False))
        return _check_url(value, allow_insecure_http=insecure, what="api_base_url").rstrip("/")

    def _mask(self, name: str, value: str) -> str:
        # the bot id before ':' is public (it is in the bot's profile); the rest is the secret
        return value.partition(":")[0] + ":" + _SECURE


class DiscordConfig(ChannelConfig):
    """Discord incoming webhook: its URL (which embeds the webhook token)."""

    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url",)
    channel_type: ClassVar[ChannelType] = ChannelType.DISCORD

    webhook_url: SecretStr
    username: str | None = Field(default=None, min_length=1, max_length=80)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr, info: Any) -> SecretStr:
        insecure = bool(info.data.get("allow_insecure_http", False))
        return SecretStr(
            _check_url(value.get_secret_value(), allow_insecure_http=insecure, what="webhook_url")
        )


class NtfyConfig(ChannelConfig):
    """ntfy (ntfy.sh or self-hosted): server, topic and an optional access token.

    The topic is treated as a secret: on a public server, whoever knows it can subscribe.
    """

    secret_fields: ClassVar[tuple[str, ...]] = ("topic", "access_token")
    channel_type: ClassVar[ChannelType] = ChannelType.NTFY

    server_url: str = "https://ntfy.sh"
    topic: SecretStr
    access_token: SecretStr | None = None

    @field_validator("server_url")
    @classmethod
    def _server(cls, value: str, info: Any) -> str:
        insecure = bool(info.data.get("allow_insecure_http", False))
        url = _check_url(value, allow_insecure_http=insecure, what="server_url").rstrip("/")
        if urlsplit(url).query:
            raise ValueError("server_url must not have a query string")
        return url

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if not (
            1 <= len(text) <= 64
            and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in text)
        ):
            raise ValueError("topic must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'")
        return SecretStr(text)

    @field_validator("access_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if not text or len(text) > 256 or not all(0x21 <= ord(ch) <= 0x7E for ch in text):
            raise ValueError("access_token must be 1-256 printable ASCII characters")
        return SecretStr(text)


class WebhookConfig(ChannelConfig):
    """A generic HTTPS endpoint receiving JSON signed with HMAC-SHA256 (see :mod:`.webhook`)."""

    secret_fields: ClassVar[tuple[str, ...]] = ("url", "secret")
    channel_type: ClassVar[ChannelType] = ChannelType.WEBHOOK

    url: SecretStr
    secret: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr, info: Any) -> SecretStr:
        insecure = bool(info.data.get("allow_insecure_http", False))
        return SecretStr(
            _check_url(value.get_secret_value(), allow_insecure_http=insecure, what="url")
        )

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not 16 <= len(value.get_secret_value()) <= 256:
            raise ValueError("secret must be 16-256 characters (see generate_webhook_secret())")
        return value


_CONFIGS: dict[ChannelType, type[ChannelConfig]] = {
    ChannelType.TELEGRAM: TelegramConfig,
    ChannelType.DISCORD: DiscordConfig,
    ChannelType.NTFY: NtfyConfig,
    ChannelType.WEBHOOK: WebhookConfig,
}


def _channel_type(value: object) -> ChannelType:
    try:
        if isinstance(value, str):
            return ChannelType(value.strip().upper())
        raise ValueError(value)
    except ValueError:
        raise InvalidInputError(
            f"unknown channel type {shown(value)}; "
            f"expected one of {[t.value for t in ChannelType]}",
            field="type",
        ) from None


def parse_channel_config(channel_type: ChannelType | str, data: Mapping[str, Any]) -> ChannelConfig:
    """Validate ``data`` as the configuration of a ``channel_type`` channel.

    Raises:
        InvalidInputError: unknown type, unknown keys, missing or malformed values; every
            problem is listed in ``problems`` (secret values are never echoed).

    Example::

        parse_channel_config("NTFY", {"server_url": "https://ntfy.example", "topic": "alerts"})
    """
    kind = _channel_type(channel_type)
    if not isinstance(data, Mapping):
        raise InvalidInputError("config must be a mapping", field="config")
    model = _CONFIGS[kind]
    try:
        # allow_insecure_http is declared first (on the base model), so the URL validators
        # that depend on it see its value whatever the key order of ``data``
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "config"
            problems.append(f"{where}: {error['msg']}")
        fields = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        raise InvalidInputError(
            f"invalid {kind.value} channel config: " + "; ".join(problems),
            field=f"config.{fields.pop()}" if len(fields) == 1 else "config",
            problems=problems,
        ) from None


# --------------------------------------------------------------------------- responses


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = None
    for key, candidate in headers.items():
        if key.lower() == "retry-after":
            value = candidate.strip()
            break
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(body: bytes, secrets: tuple[str, ...]) -> str:
    text = body[:300].decode("utf-8", "replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, _SECURE)
    text = " ".join(text.split())
    return text[:200]


def _default_verdict(
    status: int, headers: Mapping[str, str], body: bytes, secrets: tuple[str, ...]
) -> ResponseVerdict:
    if 200 <= status < 300:
        return ResponseVerdict(ok=True)
    error = f"HTTP {status}"
    detail = _short(body, secrets)
    if detail:
        error += f": {detail}"
    if status == 429 or status == 408 or status >= 500:
        return ResponseVerdict(
            ok=False, retryable=True, retry_after=_retry_after(headers), error=error
        )
    return ResponseVerdict(ok=False, error=error)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


# --------------------------------------------------------------------------- text rendering


def _render_text(
    event: NotificationEvent,
    *,
    limit: int,
    escape: Any,
    bold: Any,
    measure: Any = utf16_len,
    include_title: bool = True,
) -> str:
    """Headline, message, then ``Label: value`` lines, within ``limit`` without breaking markup.

    The message is shortened by whole lines (:func:`fit_message`: list items first, never
    part of a word); a field is shown whole or left out, so an address, an amount or a link
    never appears in part.
    """
    lines: list[str] = []
    remaining = limit
    if include_title:
        title = f"{severity_icon(event.resolved_severity)} {event.title}"
        head = bold(fit(title, max(1, min(limit // 4, 600)), escape, measure=measure))
        lines.append(head)
        remaining -= measure(head)
    fields = [
        bold(escape(label + ":")) + " " + escape(value) for label, value in event_fields(event)
    ]
    if event.message:
        # At least half the limit; more when the fields need less than the other half.
        wanted = sum(1 + measure(line) for line in fields)
        budget = max(min(remaining - 1, limit // 2), remaining - 1 - wanted)
        text = fit_message(event.message, budget, escape, measure=measure) if budget > 0 else ""
        if text:
            lines.append(text)
            remaining -= 1 + measure(text)
    for line in fields:
        cost = (1 if lines else 0) + measure(line)
        if cost <= remaining:
            lines.append(line)
            remaining -= cost
    return "\n".join(lines)


def _mdv2_bold(text: str) -> str:
    return f"*{text}*"


def _discord_bold(text: str) -> str:
    return f"**{text}**"


def _plain(text: str) -> str:
    return text


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _header_text(value: str, limit: int = 250) -> str:
    """A safe single-line header value; non-ASCII is sent as an RFC 2047 encoded word."""
    clean = " ".join(
        "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in value).split()
    )
    clean = fit(clean, limit)
    if clean.isascii():
        return clean
    return "=?UTF-8?B?" + base64.b64encode(clean.encode("utf-8")).decode("ascii") + "?="


# --------------------------------------------------------------------------- channels


class _BaseChannel:
    type: ChannelType
    _config: ChannelConfig

    def __init__(self, config: ChannelConfig, *, id: str | None = None, priority: int = 0) -> None:
        if not isinstance(config, ChannelConfig) or config.channel_type is not self.type:
            raise InvalidInputError(
                f"{type(self).__name__} needs a {self.type.value} config", field="config"
            )
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidInputError("priority must be an int", field="priority")
        if id is not None and (not isinstance(id, str) or not id.strip() or len(id) > 64):
            raise InvalidInputError("id must be a non-empty string of at most 64 chars", field="id")
        self._id = id or new_id()
        self._priority = priority
        self._config = config

    @property
    def id(self) -> str:
        """The channel id."""
        return self._id

    @property
    def priority(self) -> int:
        """Higher goes first in priority fallback."""
        return self._priority

    @property
    def config(self) -> ChannelConfig:
        """The validated configuration (secrets stay :class:`~pydantic.SecretStr`)."""
        return self._config

    def secret_values(self) -> tuple[str, ...]:
        """Secret strings to scrub from any logged or stored text."""
        return tuple(v for v in self._config.secret_dict().values() if v)

    def check_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ResponseVerdict:
        """2xx delivers; 408/429/5xx are retryable (honouring Retry-After); other codes fail."""
        return _default_verdict(status, headers, body, self.secret_values())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(id={self._id!r}, priority={self._priority}, "
            f"config={self._config.redacted()!r})"
        )


class TelegramChannel(_BaseChannel):
    """Telegram ``sendMessage`` with MarkdownV2 text (every special character escaped).

    Text is cut to :data:`TELEGRAM_LIMIT` between characters, never inside an escape.
    """

    type = ChannelType.TELEGRAM
    _config: TelegramConfig

    def render(self, event: NotificationEvent) -> str:
        """The MarkdownV2 message text for ``event``."""
        return _render_text(event, limit=TELEGRAM_LIMIT, escape=escape_markdown_v2, bold=_mdv2_bold)

    def build_request(
        self, event: NotificationEvent, *, now: int, delivery_id: str
    ) -> OutboundRequest:
        """``POST {api_base_url}/bot<token>/sendMessage`` with a JSON body."""
        cfg = self._config
        payload: dict[str, Any] = {
            "chat_id": cfg.chat_id,
            "text": self.render(event),
            "parse_mode": "MarkdownV2",
            "link_preview_options": {"is_disabled": True},
        }
        if cfg.message_thread_id is not None:
            payload["message_thread_id"] = cfg.message_thread_id
        url = f"{cfg.api_base_url}/bot{cfg.bot_token.get_secret_value()}/sendMessage"
        return OutboundRequest(
            "POST",
            url,
            (("Content-Type", "application/json"), ("User-Agent", _USER_AGENT)),
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        )

    def check_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ResponseVerdict:
        """Bot API answers ``{"ok": true}`` or ``{"ok": false, "error_code", "description"}``.

        A 429 carries ``parameters.retry_after``, used when no Retry-After header is present.
        """
        verdict = _default_verdict(status, headers, body, self.secret_values())
        data = _json(body)
        if not isinstance(data, dict):
            return verdict
        if verdict.ok and data.get("ok") is not True:
            return ResponseVerdict(ok=False, error=f"Telegram refused: {_tg_description(data)}")
        if not verdict.ok:
            error = f"HTTP {status}: {_tg_description(data, with_code=False)}"
            retry_after = verdict.retry_after
            params = data.get("parameters")
            if retry_after is None and isinstance(params, dict):
                value = params.get("retry_after")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    retry_after = max(0.0, float(value))
            return ResponseVerdict(
                ok=False, retryable=verdict.retryable, retry_after=retry_after, error=error
            )
        return verdict


def _tg_description(data: dict[str, Any], *, with_code: bool = True) -> str:
    description = data.get("description")
    code = data.get("error_code")
    text = description[:200] if isinstance(description, str) else "no description"
    return f"{code} {text}" if with_code and isinstance(code, int) else text


class DiscordChannel(_BaseChannel):
    """Discord webhook: ``{"content": ...}`` with mentions disabled and markdown escaped."""

    type = ChannelType.DISCORD
    _config: DiscordConfig

    def render(self, event: NotificationEvent) -> str:
        """The message ``content`` for ``event`` (at most :data:`DISCORD_LIMIT` units)."""
        return _render_text(event, limit=DISCORD_LIMIT, escape=escape_discord, bold=_discord_bold)

    def build_request(
        self, event: NotificationEvent, *, now: int, delivery_id: str
    ) -> OutboundRequest:
        """``POST <webhook_url>``; ``allowed_mentions`` is empty so nobody can be pinged."""
        payload: dict[str, Any] = {
            "content": self.render(event),
            "allowed_mentions": {"parse": []},
        }
        if self._config.username:
            payload["username"] = self._config.username
        return OutboundRequest(
            "POST",
            self._config.webhook_url.get_secret_value(),
            (("Content-Type", "application/json"), ("User-Agent", _USER_AGENT)),
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        )

    def check_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ResponseVerdict:
        """204/200 deliver; a 429 may carry ``retry_after`` (seconds) in its JSON body."""
        verdict = _default_verdict(status, headers, body, self.secret_values())
        if status == 429 and verdict.retry_after is None:
            data = _json(body)
            if isinstance(data, dict):
                value = data.get("retry_after")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return ResponseVerdict(
                        ok=False,
                        retryable=True,
                        retry_after=max(0.0, float(value)),
                        error=verdict.error,
                    )
        return verdict


_NTFY_PRIORITY = {"critical": "5", "warning": "4", "info": "3"}
_NTFY_TAGS = {"critical": "rotating_light", "warning": "warning", "info": "information_source"}


class NtfyChannel(_BaseChannel):
    """ntfy publish: ``POST {server_url}/{topic}``, plain text body, Title/Priority/Tags headers."""

    type = ChannelType.NTFY
    _config: NtfyConfig

    def render(self, event: NotificationEvent) -> str:
        """The plain-text body (at most :data:`NTFY_LIMIT_BYTES` UTF-8 bytes)."""
        return _render_text(
            event,
            limit=NTFY_LIMIT_BYTES,
            escape=_plain,
            bold=_plain,
            measure=_utf8_len,
            include_title=False,
        )

    def build_request(
        self, event: NotificationEvent, *, now: int, delivery_id: str
    ) -> OutboundRequest:
        """Priority 5/4/3 for critical/warning/info; tags: a severity emoji and the event type."""
        cfg = self._config
        severity = str(event.resolved_severity)
        event_tag = "".join(
            ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_"
            for ch in str(event.event_type).lower()
        )
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("User-Agent", _USER_AGENT),
            ("Title", _header_text(event.title)),
            ("Priority", _NTFY_PRIORITY.get(severity, "3")),
            ("Tags", f"{_NTFY_TAGS.get(severity, 'information_source')},{event_tag}"),
        ]
        if cfg.access_token is not None:
            headers.append(("Authorization", f"Bearer {cfg.access_token.get_secret_value()}"))
        return OutboundRequest(
            "POST",
            f"{cfg.server_url}/{cfg.topic.get_secret_value()}",
            tuple(headers),
            self.render(event).encode("utf-8"),
        )


class WebhookChannel(_BaseChannel):
    """Generic webhook: compact JSON, signed with HMAC-SHA256 (see :mod:`waiaas.notify.webhook`).

    The body is ``{"id": <delivery id>, "sent_at": <unix>, "event": {...}}``; the delivery id
    is the same on every retry, so receivers can de-duplicate.
    """

    type = ChannelType.WEBHOOK
    _config: WebhookConfig

    def build_request(
        self, event: NotificationEvent, *, now: int, delivery_id: str
    ) -> OutboundRequest:
        """The signed ``POST``; the signature timestamp is ``now`` (fresh on each retry)."""
        body = json.dumps(
            {"id": delivery_id, "sent_at": now, "event": event.to_json_dict()},
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
        ).encode("utf-8")
        signature = sign_webhook(self._config.secret.get_secret_value(), body, now)
        return OutboundRequest(
            "POST",
            self._config.url.get_secret_value(),
            (
                ("Content-Type", "application/json"),
                ("User-Agent", _USER_AGENT),
                (EVENT_HEADER, _header_text(str(event.event_type), 64)),
                (DELIVERY_HEADER, _header_text(delivery_id, 64)),
                (SIGNATURE_HEADER, signature),
            ),
            body,
        )


_CLASSES: dict[ChannelType, Callable[..., Channel]] = {
    ChannelType.TELEGRAM: TelegramChannel,
    ChannelType.DISCORD: DiscordChannel,
    ChannelType.NTFY: NtfyChannel,
    ChannelType.WEBHOOK: WebhookChannel,
}


def build_channel(
    channel_type: ChannelType | str,
    config: ChannelConfig | Mapping[str, Any],
    *,
    id: str | None = None,
    priority: int = 0,
) -> Channel:
    """Make the channel object for ``channel_type`` from a config model or a plain mapping.

    Raises:
        InvalidInputError: unknown type or invalid config (see :func:`parse_channel_config`).

    Example::

        build_channel("DISCORD", {"webhook_url": "https://discord.com/api/webhooks/1/abc"})
    """
    kind = _channel_type(channel_type)
    model = config if isinstance(config, ChannelConfig) else parse_channel_config(kind, config)
    return _CLASSES[kind](model, id=id, priority=priority)
