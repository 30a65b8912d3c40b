"""The audit chain's row hash: the one encoding migration 0007 and the live code share.

Each ``audit_log`` row stores ``row_hash`` = SHA-256(prev_hash bytes || canonical row), where
``prev_hash`` is the previous row's ``row_hash`` (the first row links to :data:`GENESIS`),
and ``mac`` = HMAC-SHA256 of it under the wallet's audit key (see :mod:`waiaas.integrity`).
The ``prev_hash`` column holds that link on rows written by migration 0007 and before it was
left NULL; new rows store NULL (the link is the previous row's ``row_hash``, which the chain
check reads). The encoding is frozen: changing it would break every stored chain, so a new
one needs a new version tag.

Since migration 0013 the three columns store the 32 bytes of each digest (BLOB on SQLite,
``bytea`` on PostgreSQL) rather than their 64 hex characters; the digests themselves, and so
every chain, are unchanged. :func:`row_digest` and :func:`audit_mac_bytes` work on those bytes;
:func:`row_hash` and :func:`audit_mac` are their hex forms (checkpoints, the keystore's
anchor and head record, and reports show hex).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

__all__ = [
    "AUDIT_COLUMNS",
    "GENESIS",
    "GENESIS_BYTES",
    "audit_mac",
    "audit_mac_bytes",
    "row_digest",
    "row_hash",
]

_VERSION = "waiaas-audit/v1"
GENESIS = hashlib.sha256(b"waiaas audit chain genesis v1").hexdigest()
"""The ``prev_hash`` of the first row of every chain."""
GENESIS_BYTES = bytes.fromhex(GENESIS)
""":data:`GENESIS` as stored: its 32 bytes."""

AUDIT_COLUMNS = (
    "timestamp",
    "event_type",
    "actor",
    "agent_id",
    "session_id",
    "tx_id",
    "details",
    "severity",
    "ip_address",
)
"""The columns a row hash covers, in this order (the id is covered by the chain order)."""


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_sha256 = hashlib.sha256
_fromhex = bytes.fromhex
_hmac_digest = hmac.digest


def row_digest(prev: bytes, values: tuple[Any, ...] | list[Any]) -> bytes:
    """SHA-256 of the previous row's digest ``prev`` and one row's :data:`AUDIT_COLUMNS`
    values: the 32 bytes a row stores as ``row_hash``."""
    return _sha256(prev + _encode([_VERSION, *values]).encode("utf-8")).digest()


def audit_mac_bytes(key: bytes, digest: bytes) -> bytes:
    """HMAC-SHA256 of a row digest under the audit key: the 32 bytes a row stores as ``mac``."""
    return _hmac_digest(key, b"audit-row\x00" + digest, "sha256")


def row_hash(prev_hash: str, values: tuple[Any, ...] | list[Any]) -> str:
    """SHA-256 (hex) of ``prev_hash`` and one row's :data:`AUDIT_COLUMNS` values."""
    return row_digest(_fromhex(prev_hash), values).hex()


def audit_mac(key: bytes, row_hash_hex: str) -> str:
    """HMAC-SHA256 (hex) of a row hash under the audit key."""
    return audit_mac_bytes(key, _fromhex(row_hash_hex)).hex()
