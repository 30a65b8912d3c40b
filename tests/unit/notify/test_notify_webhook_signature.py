"""Webhook signatures: what a receiver accepts and what it refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waiaas.errors import InvalidInputError
from waiaas.notify import (
    WebhookSignatureError,
    generate_webhook_secret,
    sign_webhook,
    verify_webhook_signature,
)

SECRET = "whsec_receiver-test-secret-01"
BODY = b'{"event":{"type":"TX_CONFIRMED"},"id":"d1","sent_at":1700000000}'
T = 1_700_000_000


def headers(value: str) -> dict[str, str]:
    return {"X-Waiaas-Signature": value}


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """The documented recipe: hex HMAC-SHA256(secret, "<t>.<body>")."""
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, BODY, T) == f"t={T},v1={expected}"


def test_valid_signature_is_accepted_and_returns_the_timestamp() -> None:
    """A fresh, untampered delivery verifies; the header name is case-insensitive."""
    value = sign_webhook(SECRET, BODY, T)
    assert verify_webhook_signature(SECRET, headers(value), BODY, now=T + 10) == T
    assert verify_webhook_signature(SECRET, {"x-waiaas-signature": value}, BODY, now=T) == T


@given(st.binary(max_size=512), st.text(min_size=1, max_size=64))
def test_roundtrip_for_any_body_and_secret(body: bytes, secret: str) -> None:
    """Whatever the body and secret, a signature made now verifies now."""
    assert verify_webhook_signature(secret, headers(sign_webhook(secret, body, T)), body, T) == T


def test_tampered_body_is_refused() -> None:
    """One changed byte breaks the signature."""
    value = sign_webhook(SECRET, BODY, T)
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook_signature(SECRET, headers(value), BODY.replace(b"d1", b"d2"), now=T)
    assert info.value.reason == "signature_mismatch"


def test_wrong_secret_is_refused() -> None:
    """A signature made with another secret does not verify."""
    value = sign_webhook("whsec_someone-else-entirely", BODY, T)
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook_signature(SECRET, headers(value), BODY, now=T)
    assert info.value.reason == "signature_mismatch"


def test_old_delivery_replayed_later_is_refused() -> None:
    """A captured delivery replayed after the tolerance window is refused."""
    value = sign_webhook(SECRET, BODY, T)
    assert verify_webhook_signature(SECRET, headers(value), BODY, now=T + 300) == T
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook_signature(SECRET, headers(value), BODY, now=T + 301)
    assert info.value.reason == "timestamp_outside_tolerance"


def test_replay_with_a_fresh_timestamp_is_refused() -> None:
    """Rewriting t= to look fresh invalidates the signature (t is signed)."""
    old = sign_webhook(SECRET, BODY, T)
    forged = old.replace(f"t={T}", f"t={T + 3600}")
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook_signature(SECRET, headers(forged), BODY, now=T + 3600)
    assert info.value.reason == "signature_mismatch"


def test_timestamp_from_the_future_is_refused() -> None:
    """A timestamp beyond the tolerance ahead of the receiver's clock is refused too."""
    value = sign_webhook(SECRET, BODY, T + 1000)
    with pytest.raises(WebhookSignatureError):
        verify_webhook_signature(SECRET, headers(value), BODY, now=T, tolerance=300)


def test_secret_rotation_accepts_old_and_new() -> None:
    """A receiver can accept several secrets while rotating; several v1 values are allowed."""
    new = generate_webhook_secret()
    by_new = sign_webhook(new, BODY, T)
    assert verify_webhook_signature([SECRET, new], headers(by_new), BODY, now=T) == T
    both = by_new + "," + sign_webhook(SECRET, BODY, T).split(",")[1]
    assert verify_webhook_signature(SECRET, headers(both), BODY, now=T) == T


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "malformed_header"),
        ("v1=abc", "malformed_header"),
        (f"t={T}", "malformed_header"),
        (f"t=soon,v1={'0' * 64}", "malformed_header"),
        (f"t={T},t={T},v1={'0' * 64}", "malformed_header"),
        (f"t={T},v1=\u00e9\u00e9", "malformed_header"),
        ("garbage", "malformed_header"),
        (f"t={T},v1={'0' * 64}", "signature_mismatch"),
        (f"t={T},v0=abc,v1={'0' * 64}", "signature_mismatch"),
    ],
)
def test_malformed_headers_are_refused(value: str, reason: str) -> None:
    """Every malformed header is refused with a reason, never an unexpected exception."""
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook_signature(SECRET, headers(value), BODY, now=T)
    assert info.value.reason == reason


def test_missing_header_is_refused() -> None:
    """No signature header: refused."""
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook_signature(SECRET, {}, BODY, now=T)
    assert info.value.reason == "missing_header"
    assert info.value.code == "WEBHOOK_SIGNATURE_INVALID"


def test_bad_arguments_are_input_errors() -> None:
    """A str body (re-serialised JSON would not match), empty secrets or a float clock."""
    value = sign_webhook(SECRET, BODY, T)
    with pytest.raises(InvalidInputError):
        verify_webhook_signature(SECRET, headers(value), BODY.decode(), now=T)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        verify_webhook_signature([], headers(value), BODY, now=T)
    with pytest.raises(InvalidInputError):
        verify_webhook_signature("", headers(value), BODY, now=T)
    with pytest.raises(InvalidInputError):
        verify_webhook_signature(SECRET, headers(value), BODY, now=1.5)  # type: ignore[arg-type]


def test_generated_secrets_are_random_and_long() -> None:
    """256-bit secrets with a recognisable prefix."""
    a, b = generate_webhook_secret(), generate_webhook_secret()
    assert a != b and a.startswith("whsec_") and len(a) >= 40
