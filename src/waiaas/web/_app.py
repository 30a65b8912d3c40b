"""The Starlette application behind :func:`waiaas.web.approvals_app` (internal)."""

from __future__ import annotations

import html
import json
import logging
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waiaas.errors import (
    ApprovalError,
    InvalidInputError,
    KeystoreLockedError,
    WaiaasError,
)
from waiaas.pipeline import approvals
from waiaas.pipeline.approvals import iso_time
from waiaas.types import TransactionInfo, TxStatus
from waiaas.wallet import Wallet
from waiaas.web.display import TxDisplay

__all__ = ["CSP", "build_app"]

log = logging.getLogger("waiaas.web")

#: The Content-Security-Policy of every response: only this app's own script and style,
#: fetches only back to this origin, no frames, no forms, no plugins, no inline code.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_STATIC = {"approve.js": "text/javascript; charset=utf-8", "approve.css": "text/css; charset=utf-8"}
_MAX_BODY = 8192
_LOCKED = "The wallet is locked; ask its operator to unlock it, then reload this page."
_NOT_FOUND = "This approval link is not valid. Check that you copied the whole link."

# What the owner reads when the server refuses a signature (by ApprovalError.reason).
_REFUSALS = {
    "wrong_signer": "The signature does not match this approval: it was not made by the "
    "owner's wallet ({owner}) over this exact message. Switch your wallet to the owner "
    "account and sign again.",
    "bad_signature": "The signature is not valid for this approval message.",
    "malformed": "The signature could not be read: {detail}.",
    "already_decided": "This approval was already decided; a signature counts only once.",
    "expired": "The approval window has expired; the transaction will not execute.",
    "not_queued": "The transaction is no longer waiting for approval ({detail}).",
    "not_awaiting_approval": "This transaction is not waiting for an owner approval.",
    "no_owner": "The agent has no owner address, so nobody can approve this transaction.",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _headers(response: Response) -> Response:
    for key, value in _HEADERS.items():
        response.headers.setdefault(key, value)
    return response


class _SecurityHeaders:
    """Adds the security headers to every response, including Starlette's own errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in _HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _page(title: str, body: str, status: int = 200) -> Response:
    text = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)}</title>"
        '<link rel="stylesheet" href="../static/approve.css">'
        f"</head><body>{body}</body></html>"
    )
    return _headers(HTMLResponse(text, status_code=status))


def _error_page(message: str, status: int) -> Response:
    body = (
        '<main class="card"><h1>Owner approval</h1>'
        f'<p class="error" id="status" role="alert">{_e(message)}</p></main>'
    )
    return _page("Owner approval", body, status)


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return _headers(JSONResponse(data, status_code=status))


class _Approvals:
    def __init__(self, wallet: Wallet) -> None:
        self.wallet = wallet

    def _lookup(self, tx_id: str, token: str) -> approvals.ApprovalRequest | None:
        """The approval behind a link, or ``None`` for any bad link (one answer for all)."""
        return self.wallet.check_approval_link(tx_id, token)

    def _origins(self, request: Request) -> set[str]:
        """Origins a decision may come from: this server as the request reached it, and the
        configured ``approvals_url`` (what the browser sees behind a TLS-terminating proxy)."""
        allowed = {_origin(request)}
        if self.wallet.config.approvals_url is not None:
            parts = urlsplit(self.wallet.config.approvals_url)
            allowed.add(f"{parts.scheme}://{parts.netloc}")
        return allowed

    def _closed(self, req: approvals.ApprovalRequest) -> str | None:
        """Why the approval can no longer be decided, or ``None`` while it is open."""
        tx = self.wallet.get_transaction(req.tx_id)
        now = self.wallet.clock.now()
        if tx.status == TxStatus.QUEUED and now < req.expires_at:
            return None
        if tx.status == TxStatus.QUEUED or tx.status == TxStatus.EXPIRED:
            return (
                f"This approval expired at {iso_time(req.expires_at)}; "
                "the transaction will not execute."
            )
        if tx.status == TxStatus.CANCELLED:
            if tx.error and "REJECTED" in tx.error:
                return "This transaction was rejected by the owner; there is nothing to sign."
            return "This transaction was cancelled; there is nothing to sign."
        return (
            f"This approval was already decided: the transaction is {tx.status.value}"
            + (f" (hash {tx.tx_hash})" if tx.tx_hash else "")
            + "."
        )

    async def page(self, request: Request) -> Response:
        try:
            return await _run(self._page, request)
        except KeystoreLockedError:
            return _error_page(_LOCKED, 503)

    def _page(self, request: Request) -> Response:
        tx_id = str(request.path_params["tx_id"])
        req = self._lookup(tx_id, str(request.path_params["token"]))
        if req is None:
            return _error_page(_NOT_FOUND, 404)
        shown: TxDisplay = self.wallet.transaction_display(req.tx_id)
        closed = self._closed(req)
        kind = approvals.owner_kind(req.owner_address)
        effects = "".join(
            f'<li class="effect" data-kind="{_e(e.kind)}">{_e(e.text)}</li>' for e in shown.effects
        )
        reasons = "".join(f"<li>{_e(r)}</li>" for r in shown.reasons) or (
            "<li>the policy put this transaction in the APPROVAL tier</li>"
        )
        wallet_name = "an Ethereum wallet (MetaMask or another injected wallet)"
        if kind == "solana":
            wallet_name = "a Solana wallet (Phantom or another Wallet Standard wallet)"
        rows = [
            ("Agent", f"{req.agent_name} ({req.agent_id})"),
            ("Chain", f"{req.chain} / {req.network}"),
            ("Tier", req.tier),
            ("Transaction", req.tx_id),
            ("Owner", req.owner_address),
            ("Expires", f"{iso_time(req.expires_at)} (UTC)"),
        ]
        facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
        parts = [
            f'<main class="card" id="approval" data-owner="{_e(req.owner_address)}" '
            f'data-kind="{kind}">',
            "<h1>Owner approval needed</h1>",
            f'<p class="summary" id="summary">{_e(shown.summary)}</p>',
            '<h2>What this transaction does</h2><ul id="effects">',
            effects or "<li>no recorded effects</li>",
            "</ul>",
            f'<p class="fee" id="fee">{_e(_fee_line(shown))}</p>',
            f'<h2>Why it needs your approval</h2><ul id="reasons">{reasons}</ul>',
            f'<dl id="facts">{facts}</dl>',
        ]
        if closed is not None:
            parts.append(f'<p class="error" id="status" role="alert">{_e(closed)}</p>')
            parts.append("</main>")
            return _page("Owner approval", "".join(parts), 410)
        message = approvals.build_message(req, "approve")
        reject = approvals.build_message(req, "reject")
        parts += [
            f"<p>Sign with {_e(wallet_name)} holding the owner account. Signing costs nothing "
            "and sends nothing by itself: it records your decision.</p>",
            '<div class="actions">',
            '<button type="button" id="approve" class="approve">Approve</button>',
            '<button type="button" id="reject" class="reject">Reject</button>',
            "</div>",
            '<p id="status" role="status" aria-live="polite"></p>',
            "<details><summary>The exact message you sign</summary>",
            f'<pre id="msg-approve">{_e(message)}</pre>',
            f'<pre id="msg-reject" hidden>{_e(reject)}</pre>',
            "</details>",
            "</main>",
            '<script src="../static/approve.js"></script>',
        ]
        return _page("Owner approval", "".join(parts))

    async def decide(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin not in self._origins(request):
            return _json({"error": "requests from another site are refused"}, 403)
        if "application/json" not in request.headers.get("content-type", ""):
            return _json({"error": "send the decision as JSON"}, 415)
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _json({"error": "request too large"}, 413)
        try:
            data = json.loads(body)
        except ValueError:
            return _json({"error": "the request is not valid JSON"}, 400)
        try:
            return await _run(self._decide, request, data)
        except KeystoreLockedError:
            return _json({"error": _LOCKED}, 503)

    def _decide(self, request: Request, data: Any) -> Response:
        tx_id = str(request.path_params["tx_id"])
        req = self._lookup(tx_id, str(request.path_params["token"]))
        if req is None:
            return _json({"error": _NOT_FOUND}, 404)
        if not isinstance(data, dict):
            return _json({"error": "the request must be a JSON object"}, 400)
        action, signature = data.get("action"), data.get("signature")
        if action not in ("approve", "reject"):
            return _json({"error": "action must be 'approve' or 'reject'"}, 400)
        if not isinstance(signature, str) or not signature:
            return _json({"error": "a signature is required"}, 400)
        try:
            if action == "approve":
                tx = self.wallet.approve(req.tx_id, signature)
            else:
                tx = self.wallet.reject(req.tx_id, signature)
        except ApprovalError as exc:
            return self._refused(req, exc)
        except WaiaasError as exc:  # the decision is committed; executing it failed here
            tx = self.wallet.get_transaction(req.tx_id)
            if action == "reject" or tx.status not in (TxStatus.QUEUED, TxStatus.FAILED):
                raise
            log.warning("approved %s; executing it here failed: %s", req.tx_id, exc)
            text = f"Approved, but the transaction failed: {_detail(exc)}."
            if tx.status == TxStatus.QUEUED:
                text = "Approved. The wallet executes the transaction on its next pass."
            return _json({"ok": True, "status": tx.status.value, "message": text})
        return _json(
            {
                "ok": True,
                "status": tx.status.value,
                "tx_hash": tx.tx_hash,
                "message": _decided_text(action, tx),
            }
        )

    def _refused(self, req: approvals.ApprovalRequest, exc: ApprovalError) -> Response:
        """The answer to a decision the wallet refused: why, in the owner's words; 409 when
        the request is closed now (decided, no longer queued, expired)."""
        template = _REFUSALS.get(exc.reason or "", "The signature was refused: {detail}.")
        text = template.format(owner=req.owner_address, detail=_detail(exc))
        now_closed = self._closed(req)
        if now_closed is not None and exc.reason in ("already_decided", "not_queued", "expired"):
            text = now_closed
        return _json({"error": text, "reason": exc.reason}, 409 if now_closed else 400)

    async def static(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        media = _STATIC.get(name)
        if media is None:
            return _headers(Response("not found", status_code=404, media_type="text/plain"))
        data = resources.files("waiaas.web").joinpath("static", name).read_bytes()
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    async def not_found(self, request: Request) -> Response:
        return _error_page(_NOT_FOUND, 404)


def _fee_line(shown: TxDisplay) -> str:
    fee = shown.network_fee
    if fee is None:
        return "Network fee: not known yet (it is priced when the transaction is built)."
    return "N" + fee.text[1:]


def _detail(exc: WaiaasError) -> str:
    return str(exc.args[0] if exc.args else exc).rstrip(".")


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def _run(func: Any, *args: Any) -> Response:
    from starlette.concurrency import run_in_threadpool

    result: Response = await run_in_threadpool(func, *args)
    return result


def build_app(wallet: Wallet, *, debug: bool = False) -> Starlette:
    """See :func:`waiaas.web.approvals_app`."""
    if not isinstance(wallet, Wallet):
        raise InvalidInputError("approvals_app needs an open Wallet", field="wallet")
    handlers = _Approvals(wallet)
    routes = [
        Route("/static/{name}", handlers.static, methods=["GET"]),
        Route("/{tx_id}/{token}", handlers.page, methods=["GET"]),
        Route("/{tx_id}/{token}", handlers.decide, methods=["POST"]),
        Route("/{path:path}", handlers.not_found, methods=["GET"]),
    ]
    return Starlette(debug=debug, routes=routes, middleware=[Middleware(_SecurityHeaders)])


def _decided_text(action: str, tx: TransactionInfo) -> str:
    """What the page tells the owner once their decision is committed."""
    if action == "reject":
        return "Rejected. The transaction will not execute."
    if tx.status == TxStatus.QUEUED:  # no chain adapter in this process
        return "Approved. The wallet executes the transaction on its next pass."
    return f"Approved. The transaction is {tx.status.value}" + (
        f" (hash {tx.tx_hash})." if tx.tx_hash else "."
    )
