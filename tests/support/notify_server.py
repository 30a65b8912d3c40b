"""A real local HTTP server that emulates the notification APIs waiaas talks to.

One :class:`NotifyServer` (a ``ThreadingHTTPServer`` on 127.0.0.1, free port, own thread)
serves four routes:

* ``/telegram/bot<token>/sendMessage``: the Bot API. Parses MarkdownV2 like Telegram does
  (unescaped reserved characters and unbalanced entities are refused with 400 "can't parse
  entities"), refuses texts longer than 4096 characters after parsing, answers
  ``{"ok": true, "result": {...}}`` or ``{"ok": false, "error_code": ..., "description": ...}``.
* ``/discord/api/webhooks/<id>/<token>``: Discord webhooks; 204 (or 200 with ``?wait=true``);
  400 when ``content`` is longer than 2000 characters.
* ``/ntfy/<topic>``: ntfy publish; 200 with the message JSON; optional bearer-token auth.
* ``/webhook/<name>``: a generic receiver; 200 ``{"received": true}``.

Every request is recorded. Behaviour can be scripted per route (``"telegram"``) or per
target (``"ntfy:<topic>"``, ``"discord:<webhook id>"``, ``"webhook:<name>"``,
``"telegram:<chat id>"``): :class:`Fail` (an HTTP error), :class:`Stall` (sleep past the
client's timeout, then answer), :class:`TooMany` (429 with Retry-After).

Example::

    with NotifyServer() as server:
        server.script("ntfy:alerts", Fail(500), Fail(503))    # the next two fail, then OK
        server.always("discord", Fail(500))                    # every Discord call fails
        ...
        assert len(server.requests("ntfy")) == 3
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Fail",
    "MarkdownV2Error",
    "NotifyServer",
    "Ok",
    "Recorded",
    "Stall",
    "TooMany",
    "parse_markdown_v2",
]


# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Ok:
    """Answer normally."""


@dataclass(frozen=True)
class Fail:
    """Answer with an HTTP error ``status``."""

    status: int = 500


@dataclass(frozen=True)
class Stall:
    """Sleep ``seconds`` before answering normally (to trigger client timeouts)."""

    seconds: float = 5.0


@dataclass(frozen=True)
class TooMany:
    """Answer 429; ``retry_after`` in the Retry-After header and/or the JSON body."""

    retry_after: float = 1
    header: bool = True
    body: bool = True


Action = Ok | Fail | Stall | TooMany


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    route: str
    target: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    action: str
    received_at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8")


# --------------------------------------------------------------------------- MarkdownV2


class MarkdownV2Error(ValueError):
    """Telegram would refuse this text: "Bad Request: can't parse entities: ..."."""


_RESERVED = set("_*[]()~`>#+-=|{}.!")


def parse_markdown_v2(text: str) -> str:
    """Parse Telegram MarkdownV2 and return the plain text, or raise :class:`MarkdownV2Error`.

    Follows the Bot API rules: any character with code 1-126 may be escaped with ``\\``;
    the reserved characters must be; entities (``*bold*``, ``_italic_``, ``__underline__``,
    ``~strike~``, ``||spoiler||``, ```code```, ``[text](url)``) must be properly nested.
    """
    out: list[str] = []
    stack: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n or not 1 <= ord(text[i + 1]) <= 126:
                raise MarkdownV2Error(f"can't parse entities: stray '\\' at byte offset {i}")
            out.append(text[i + 1])
            i += 2
            continue
        if ch == "`":
            end = i + 1
            buf: list[str] = []
            while end < n and text[end] != "`":
                if text[end] == "\\":
                    if end + 1 >= n:
                        raise MarkdownV2Error("can't parse entities: unclosed code")
                    buf.append(text[end + 1])
                    end += 2
                    continue
                buf.append(text[end])
                end += 1
            if end >= n:
                raise MarkdownV2Error("can't parse entities: can't find end of Code entity")
            out.extend(buf)
            i = end + 1
            continue
        if ch == "_" and text.startswith("__", i):
            _toggle(stack, "__", i)
            i += 2
            continue
        if ch == "|" and text.startswith("||", i):
            _toggle(stack, "||", i)
            i += 2
            continue
        if ch in "*_~":
            _toggle(stack, ch, i)
            i += 1
            continue
        if ch == "[":
            stack.append("[")
            i += 1
            continue
        if ch == "]" and stack and stack[-1] == "[":
            stack.pop()
            if not text.startswith("(", i + 1):
                raise MarkdownV2Error("can't parse entities: link without URL")
            end = i + 2
            while end < n and text[end] != ")":
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                raise MarkdownV2Error("can't parse entities: unclosed link URL")
            i = end + 1
            continue
        if ch == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # block quote marker
            continue
        if ch in _RESERVED:
            raise MarkdownV2Error(
                f"can't parse entities: Character '{ch}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        out.append(ch)
        i += 1
    if stack:
        raise MarkdownV2Error(f"can't parse entities: can't find end of {stack[-1]} entity")
    return "".join(out)


def _toggle(stack: list[str], marker: str, offset: int) -> None:
    if stack and stack[-1] == marker:
        stack.pop()
    elif marker in stack:
        raise MarkdownV2Error(f"can't parse entities: badly nested {marker!r} at {offset}")
    else:
        stack.append(marker)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode_rfc2047(value: str) -> str:
    m = re.fullmatch(r"=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=", value, flags=re.IGNORECASE)
    if m:
        return base64.b64decode(m.group(1)).decode("utf-8")
    return value


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    app: NotifyServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that time out and hang up are expected here
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # one write per response, no Nagle: avoids 40 ms delayed-ACK stalls on keep-alive
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            self.server.app._handle(self, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST

    def reply(
        self,
        status: int,
        payload: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else b""
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204:
            ctype = "application/json" if payload is not None else "text/plain; charset=utf-8"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204 and data:
            self.wfile.write(data)
        self.wfile.flush()


_TG_PATH = re.compile(r"^/telegram/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
_DISCORD_PATH = re.compile(r"^/discord/api/webhooks/(?P<id>[^/]+)/(?P<token>[^/]+)$")
_NTFY_PATH = re.compile(r"^/ntfy/(?P<topic>[-_A-Za-z0-9]{1,64})$")
_WEBHOOK_PATH = re.compile(r"^/webhook/(?P<name>[^/]+)$")


class NotifyServer:
    """Emulates Telegram, Discord, ntfy and a webhook receiver on 127.0.0.1 (see module doc).

    Attributes:
        telegram_tokens: when not ``None``, only these bot tokens are accepted (401 otherwise).
        ntfy_tokens: when not ``None``, ntfy requires ``Authorization: Bearer <one of these>``.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._records: list[Recorded] = []
        self._scripts: dict[str, deque[Action]] = {}
        self._defaults: dict[str, Action] = {}
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self.telegram_tokens: set[str] | None = None
        self.ntfy_tokens: set[str] | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.app = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> NotifyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> NotifyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def telegram_base(self) -> str:
        """The ``api_base_url`` to configure a Telegram channel with."""
        return f"{self.base_url}/telegram"

    def discord_url(self, webhook_id: str = "1001", token: str = "discord-webhook-token") -> str:
        """A Discord webhook URL on this server."""
        return f"{self.base_url}/discord/api/webhooks/{webhook_id}/{token}"

    @property
    def ntfy_base(self) -> str:
        """The ``server_url`` to configure an ntfy channel with."""
        return f"{self.base_url}/ntfy"

    def webhook_url(self, name: str = "hook") -> str:
        """A generic webhook URL on this server."""
        return f"{self.base_url}/webhook/{name}"

    # ------------------------------------------------------------------ control

    def script(self, key: str, *actions: Action) -> None:
        """Queue one-shot behaviours for ``key`` (a route or ``route:target``), in order."""
        with self._lock:
            self._scripts.setdefault(key, deque()).extend(actions)

    def always(self, key: str, action: Action | None) -> None:
        """Behave like ``action`` for every request to ``key`` (``None`` restores normal)."""
        with self._lock:
            if action is None:
                self._defaults.pop(key, None)
            else:
                self._defaults[key] = action

    def requests(self, key: str | None = None) -> list[Recorded]:
        """Recorded requests, all or for a route / ``route:target``."""
        with self._lock:
            return [r for r in self._records if key is None or key in (r.route, r.target)]

    def wait_for(self, count: int, key: str | None = None, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` requests to ``key`` were recorded."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (
                len([r for r in self._records if key is None or key in (r.route, r.target)]) < count
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def clear(self) -> None:
        """Forget recorded requests and scripted behaviours."""
        with self._lock:
            self._records.clear()
            self._scripts.clear()
            self._defaults.clear()

    # ------------------------------------------------------------------ dispatch

    def _next_action(self, route: str, target: str) -> Action:
        with self._lock:
            for key in (target, route):
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft()
            for key in (target, route):
                if key in self._defaults:
                    return self._defaults[key]
            return Ok()

    def _handle(self, handler: _Handler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        path = parts.path
        query = parse_qs(parts.query)
        route, target, params = "unknown", "unknown", {}
        for name, pattern in (
            ("telegram", _TG_PATH),
            ("discord", _DISCORD_PATH),
            ("ntfy", _NTFY_PATH),
            ("webhook", _WEBHOOK_PATH),
        ):
            m = pattern.match(path)
            if m:
                route, params = name, m.groupdict()
                break
        if route == "telegram":
            chat = ""
            with contextlib.suppress(ValueError, AttributeError, UnicodeDecodeError):
                chat = str(json.loads(body.decode("utf-8")).get("chat_id", ""))
            target = f"telegram:{chat}"
        elif route == "discord":
            target = f"discord:{params['id']}"
        elif route == "ntfy":
            target = f"ntfy:{params['topic']}"
        elif route == "webhook":
            target = f"webhook:{params['name']}"
        action = self._next_action(route, target)
        record = Recorded(
            route=route,
            target=target,
            method=handler.command,
            path=path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            action=type(action).__name__,
        )
        with self._lock:
            self._records.append(record)
            self._lock.notify_all()

        if isinstance(action, Stall):
            self._stop.wait(action.seconds)
        elif isinstance(action, Fail):
            self._fail(handler, route, action.status)
            return
        elif isinstance(action, TooMany):
            self._too_many(handler, route, action)
            return

        if handler.command != "POST":
            handler.reply(405, {"error": "method not allowed"})
        elif route == "telegram":
            self._telegram(handler, params, body)
        elif route == "discord":
            self._discord(handler, body, query)
        elif route == "ntfy":
            self._ntfy(handler, params, body)
        elif route == "webhook":
            handler.reply(200, {"received": True})
        else:
            handler.reply(404, {"error": "not found"})

    # ------------------------------------------------------------------ failures

    def _fail(self, handler: _Handler, route: str, status: int) -> None:
        if route == "telegram":
            handler.reply(
                status,
                {"ok": False, "error_code": status, "description": f"Error {status}"},
            )
        elif route == "discord":
            handler.reply(status, {"message": f"Error {status}", "code": 0})
        elif route == "ntfy":
            handler.reply(status, {"code": status * 100, "http": status, "error": "failed"})
        else:
            handler.reply(status, raw=f"error {status}".encode())

    def _too_many(self, handler: _Handler, route: str, action: TooMany) -> None:
        headers = {"Retry-After": str(action.retry_after)} if action.header else {}
        payload: dict[str, Any]
        if route == "telegram":
            payload = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {action.retry_after}",
            }
            if action.body:
                payload["parameters"] = {"retry_after": action.retry_after}
        elif route == "discord":
            payload = {"message": "You are being rate limited.", "global": False}
            if action.body:
                payload["retry_after"] = action.retry_after
        else:
            payload = {"code": 42901, "http": 429, "error": "limit reached"}
        handler.reply(429, payload, headers=headers)

    # ------------------------------------------------------------------ APIs

    def _telegram(self, handler: _Handler, params: dict[str, str], body: bytes) -> None:
        if self.telegram_tokens is not None and params["token"] not in self.telegram_tokens:
            handler.reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        if params["method"] != "sendMessage":
            handler.reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            handler.reply(400, {"ok": False, "error_code": 400, "description": "Bad Request"})
            return
        text = data.get("text")
        if "chat_id" not in data:
            self._tg_bad(handler, "Bad Request: chat_id is empty")
            return
        if not isinstance(text, str) or not text:
            self._tg_bad(handler, "Bad Request: message text is empty")
            return
        plain = text
        if data.get("parse_mode") == "MarkdownV2":
            try:
                plain = parse_markdown_v2(text)
            except MarkdownV2Error as exc:
                self._tg_bad(handler, f"Bad Request: {exc}")
                return
        if _utf16_len(plain) > 4096:
            self._tg_bad(handler, "Bad Request: message is too long")
            return
        handler.reply(
            200,
            {
                "ok": True,
                "result": {
                    "message_id": next(self._ids),
                    "date": int(time.time()),
                    "chat": {"id": data["chat_id"], "type": "private"},
                    "text": plain,
                },
            },
        )

    def _tg_bad(self, handler: _Handler, description: str) -> None:
        handler.reply(400, {"ok": False, "error_code": 400, "description": description})

    def _discord(self, handler: _Handler, body: bytes, query: dict[str, list[str]]) -> None:
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            handler.reply(400, {"message": "Cannot send an empty message", "code": 50006})
            return
        content = data.get("content")
        if not content and not data.get("embeds"):
            handler.reply(400, {"message": "Cannot send an empty message", "code": 50006})
            return
        if isinstance(content, str) and len(content) > 2000:
            handler.reply(
                400,
                {
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}},
                },
            )
            return
        if query.get("wait") == ["true"]:
            handler.reply(200, {"id": str(next(self._ids)), "content": content})
        else:
            handler.reply(204)

    def _ntfy(self, handler: _Handler, params: dict[str, str], body: bytes) -> None:
        if self.ntfy_tokens is not None:
            auth = handler.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.ntfy_tokens:
                handler.reply(403, {"code": 40301, "http": 403, "error": "forbidden"})
                return
        title = _decode_rfc2047(handler.headers.get("Title", ""))
        tags = [t for t in handler.headers.get("Tags", "").split(",") if t]
        priority = int(handler.headers.get("Priority", "3") or 3)
        handler.reply(
            200,
            {
                "id": f"m{next(self._ids)}",
                "time": int(time.time()),
                "event": "message",
                "topic": params["topic"],
                "title": title,
                "message": body.decode("utf-8", "replace"),
                "priority": priority,
                "tags": tags,
            },
        )
