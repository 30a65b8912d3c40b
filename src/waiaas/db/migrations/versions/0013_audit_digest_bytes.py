"""Audit digests as bytes: ``audit_log.prev_hash``, ``row_hash`` and ``mac`` store the 32
bytes of each SHA-256 / HMAC-SHA256 value (BLOB on SQLite, ``bytea`` on PostgreSQL) instead
of their 64 lowercase hex characters: 96 bytes less per row, the same digests, so every
chain and MAC verifies as before (the public API and reports still show hex).

Every stored value is converted exactly: 64 lowercase hex characters become their 32 bytes;
anything else (a value not written by waiaas: upper case, another length, not hex) becomes
the UTF-8 bytes of its text, which no digest equals, so a row edited before the upgrade is
still reported after it. NULL stays NULL. Ids, the AUTOINCREMENT sequence, every index and
every trigger (the append-only ones of 0002 and ``usage_audit_insert`` of 0009) are kept.

- SQLite: the table is rebuilt (a column's declared type cannot change in place): a copy
  with the BLOB columns is filled in id order, the old table dropped (its implicit DELETE
  fires no trigger), the copy renamed, ``sqlite_sequence`` set back to what it held, and
  the table's indexes and triggers created again from their stored SQL. The triggers are
  created after the copy, so the usage trigger does not count the copied rows twice.
- PostgreSQL: ``ALTER COLUMN ... TYPE bytea USING ...`` rewrites the rows without firing
  any row trigger; indexes, triggers and the identity stay as they are.

Downgrade converts back: 32 bytes to their hex, anything else to its text (SQLite: UTF-8
where it decodes, else hex; PostgreSQL: ``encode(..., 'escape')``).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import re
from typing import Any

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_DIGESTS = ("prev_hash", "row_hash", "mac")
_HEX = re.compile(r"[0-9a-f]{64}")
_TEMP = "audit_log_0013"


def _to_bytes(value: Any) -> bytes | None:
    """A stored digest column's value as migration 0013 stores it."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    text = str(value)
    if _HEX.fullmatch(text):
        return bytes.fromhex(text)
    return text.encode("utf-8")


def _to_text(value: Any) -> str | None:
    """A stored digest as revision 0012 stored it (the inverse of :func:`_to_bytes`)."""
    if value is None:
        return None
    if not isinstance(value, bytes):
        return str(value)
    if len(value) == 32:
        return value.hex()
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.hex()


_PG_UP = (
    "CASE WHEN {c} ~ '^[0-9a-f]{{64}}$' THEN decode({c}, 'hex') ELSE convert_to({c}, 'UTF8') END"
)
_PG_DOWN = "CASE WHEN length({c}) = 32 THEN encode({c}, 'hex') ELSE encode({c}, 'escape') END"


def _pg_alter(kind: str, using: str) -> None:
    op.execute(
        "ALTER TABLE audit_log "
        + ", ".join(f"ALTER COLUMN {c} TYPE {kind} USING {using.format(c=c)}" for c in _DIGESTS)
    )


def _sqlite_rebuild(kind: str, convert: Any) -> None:
    """Rebuild ``audit_log`` with the digest columns declared ``kind``, their values passed
    through ``convert``; everything else as it was."""
    conn = op.get_bind()
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.create_function("waiaas_digest_0013", 1, convert, deterministic=True)
    table_sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'"
    ).scalar_one()
    new_sql, swapped = re.subn(
        r"\bprev_hash \w+, row_hash \w+, mac \w+\)\s*$",
        f"prev_hash {kind}, row_hash {kind}, mac {kind})",
        table_sql,
    )
    head, named = re.subn(r'^CREATE TABLE "?audit_log"?', f"CREATE TABLE {_TEMP}", new_sql)
    if swapped != 1 or named != 1:
        raise RuntimeError("audit_log is not in the shape this revision converts")
    attached = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'audit_log' "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY rowid"
    ).all()
    seq = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").scalar()
    columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(audit_log)").all()]
    picked = ", ".join(f"waiaas_digest_0013({c})" if c in _DIGESTS else c for c in columns)
    conn.exec_driver_sql(head)
    conn.exec_driver_sql(
        f"INSERT INTO {_TEMP} ({', '.join(columns)}) SELECT {picked} FROM audit_log ORDER BY id"
    )
    conn.exec_driver_sql("DROP TABLE audit_log")
    conn.exec_driver_sql(f"ALTER TABLE {_TEMP} RENAME TO audit_log")
    conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'audit_log'")
    if seq is not None:
        conn.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('audit_log', ?)", (seq,)
        )
    for (statement,) in attached:
        conn.exec_driver_sql(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_alter("bytea", _PG_UP)
        return
    _sqlite_rebuild("BLOB", _to_bytes)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_alter("text", _PG_DOWN)
        return
    _sqlite_rebuild("TEXT", _to_text)
