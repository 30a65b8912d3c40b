"""Signed outbound webhooks: the signature scheme, and the check a receiver runs.

Every webhook delivery is a ``POST`` of a JSON body with these headers::

    Content-Type: application/json
    X-Waiaas-Event: TX_CONFIRMED
    X-Waiaas-Delivery: 0199c6a2-...          (same on every retry of one delivery)
    X-Waiaas-Signature: t=1760000000,v1=5257a869...

``v1`` is the hex HMAC-SHA256, keyed with the channel's secret, of ``"<t>.<raw body>"``. The
timestamp is part of the signed text, so an old delivery cannot be replayed with a fresh
``t``; receivers refuse a ``t`` further than ``tolerance`` seconds from their clock, and can
refuse a delivery id they have already processed.

Receiver example::

    from waiaas.notify import verify_webhook_signature, WebhookSignatureError

    try:
        verify_webhook_signature(SECRET, request.headers, request.body, now=int(time.time()))
    except WebhookSignatureError as exc:
        return 400, exc.reason
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

from waiaas.errors import InvalidInputError, WaiaasError

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "WebhookSignatureError",
    "generate_webhook_secret",
    "sign_webhook",
    "verify_webhook_signature",
]

SIGNATURE_HEADER = "X-Waiaas-Signature"
EVENT_HEADER = "X-Waiaas-Event"
DELIVERY_HEADER = "X-Waiaas-Delivery"

_MAX_HEADER = 4096


class WebhookSignatureError(WaiaasError):
    """A webhook delivery failed verification.

    Attributes:
        reason: ``missing_header``, ``malformed_header``, ``timestamp_outside_tolerance`` or
            ``signature_mismatch``.
    """

    code = "WEBHOOK_SIGNATURE_INVALID"
    reason: str

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        try:
            key = secret.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError("secret must be valid text", field="secret") from None
    elif isinstance(secret, bytes | bytearray):
        key = bytes(secret)
    else:
        raise InvalidInputError("secret must be str or bytes", field="secret")
    if not key:
        raise InvalidInputError("secret must not be empty", field="secret")
    return key


def _digest(key: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def generate_webhook_secret() -> str:
    """A new random webhook secret (``whsec_`` + 43 URL-safe characters, 256 bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign_webhook(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Waiaas-Signature`` header value for ``body`` sent at ``timestamp``.

    >>> sign_webhook("whsec_test", b'{"a":1}', 1700000000)[:13]
    't=1700000000,'
    """
    if not isinstance(body, bytes | bytearray):
        raise InvalidInputError("body must be the raw bytes", field="body")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise InvalidInputError("timestamp must be a non-negative int", field="timestamp")
    return f"t={timestamp},v1={_digest(_key(secret), timestamp, bytes(body))}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == lowered:
                value = candidate
                break
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if isinstance(value, str) else None


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > _MAX_HEADER:
        raise WebhookSignatureError("malformed_header", "signature header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError("malformed_header", "signature header is malformed")
        if name == "t":
            if timestamp is not None or not (value.isascii() and value.isdigit()):
                raise WebhookSignatureError("malformed_header", "bad timestamp in signature")
            if len(value) > 12:
                raise WebhookSignatureError("malformed_header", "bad timestamp in signature")
            timestamp = int(value)
        elif name == "v1":
            if not value.isascii():
                raise WebhookSignatureError("malformed_header", "bad v1 signature")
            signatures.append(value.lower())
        # other schemes (v2, ...) are ignored, so senders can add them later
    if timestamp is None or not signatures:
        raise WebhookSignatureError(
            "malformed_header", "signature header needs t= and at least one v1="
        )
    return timestamp, signatures


def verify_webhook_signature(
    secret: str | bytes | Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    tolerance: int = 300,
) -> int:
    """Check a received webhook: signature over the raw body, and freshness of its timestamp.

    Args:
        secret: the channel's webhook secret, or several (accepted during a secret rotation).
        headers: the request headers (any mapping; the name is matched case-insensitively).
        body: the raw request body, exactly as received (not re-serialised JSON).
        now: the receiver's current Unix time, seconds.
        tolerance: the most seconds ``t`` may differ from ``now`` in either direction.

    Returns:
        The signed timestamp ``t``.

    Raises:
        WebhookSignatureError: the header is missing or malformed, ``t`` is outside the
            tolerance (a replay or a skewed clock), or no signature matches any secret.
        InvalidInputError: ``secret``, ``body``, ``now`` or ``tolerance`` has the wrong type.

    Example::

        verify_webhook_signature("whsec_...", {"X-Waiaas-Signature": "t=...,v1=..."},
                                 raw_body, now=int(time.time()))
    """
    keys = [_key(s) for s in ([secret] if isinstance(secret, str | bytes | bytearray) else secret)]
    if not keys:
        raise InvalidInputError("at least one secret is required", field="secret")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidInputError("body must be the raw request bytes", field="body")
    for name, value in (("now", now), ("tolerance", tolerance)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative int", field=name)
    header = _header(headers, SIGNATURE_HEADER)
    if header is None:
        raise WebhookSignatureError("missing_header", f"no {SIGNATURE_HEADER} header")
    timestamp, signatures = _parse(header)
    if abs(now - timestamp) > tolerance:
        raise WebhookSignatureError(
            "timestamp_outside_tolerance",
            f"signature timestamp is {now - timestamp} s away from now (tolerance {tolerance} s)",
        )
    raw = bytes(body)
    matched = False
    for key in keys:
        expected = _digest(key, timestamp, raw)
        for candidate in signatures:
            # compare every pair: no early exit that would leak which secret matched
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureError("signature_mismatch", "webhook signature does not match")
    return timestamp
