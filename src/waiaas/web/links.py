"""Unguessable approval links that expire with the approval.

A link is ``<approvals_url>/<tx id>/<token>``. The token is an HMAC-SHA256, under a per-wallet
secret of 32 random bytes kept sealed in the keystore (named secret
``"approval-link-secret"``), of the transaction id, the approval id and the approval's expiry.
Nothing about it is stored in the database, so a copy of the database does not reveal links;
without the token the page answers "not found" for every transaction alike.

A link only opens the page. Approving or rejecting still needs the owner's wallet signature
over the approval message: a leaked link lets someone read the transaction, not decide it.
Once the approval is decided or expired the page says so and offers nothing to sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from waiaas.errors import KeystoreError, NotFoundError

if TYPE_CHECKING:
    from waiaas.keystore import Keystore

__all__ = ["LINK_SECRET_NAME", "check_token", "link_token"]

#: Name of the per-wallet link secret in the keystore.
LINK_SECRET_NAME = "approval-link-secret"  # noqa: S105 - a name, not a secret
_SECRET_BYTES = 32
_TOKEN_CHARS = 43  # base64url of 32 bytes, unpadded


def _secret(keystore: Keystore) -> bytes:
    try:
        value = keystore.get_secret(LINK_SECRET_NAME)
    except NotFoundError:
        keystore.put_secret(LINK_SECRET_NAME, secrets.token_bytes(_SECRET_BYTES))
        value = keystore.get_secret(LINK_SECRET_NAME)
    if len(value) < _SECRET_BYTES:
        raise KeystoreError("the stored approval link secret is malformed")
    return value


def link_token(keystore: Keystore, tx_id: str, approval_id: str, expires_at: int) -> str:
    """The token of the approval link of ``tx_id`` (43 base64url characters).

    Raises:
        KeystoreLockedError: the keystore is locked.
    """
    message = f"waiaas-approval-link\x00{tx_id}\x00{approval_id}\x00{expires_at}".encode()
    digest = hmac.new(_secret(keystore), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def check_token(
    keystore: Keystore, tx_id: str, approval_id: str, expires_at: int, token: object
) -> bool:
    """Whether ``token`` is the link token of this approval (constant-time comparison)."""
    if not isinstance(token, str) or len(token) != _TOKEN_CHARS or not token.isascii():
        return False
    expected = link_token(keystore, tx_id, approval_id, expires_at)
    return hmac.compare_digest(expected.encode("ascii"), token.encode("ascii"))
