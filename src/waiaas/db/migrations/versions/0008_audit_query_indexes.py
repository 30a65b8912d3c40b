"""Audit query indexes: one per filter shape, each ending in ``timestamp`` (then the rowid).

Every audit query returns rows newest first by ``(timestamp, id)``; an index whose last
column is ``timestamp`` hands its rows over in exactly that order (SQLite appends the rowid,
which is ``id``), so a page reads about ``limit`` index entries whatever the table's size.

- ``idx_audit_log_event_type (event_type)`` becomes ``idx_audit_log_event_timestamp
  (event_type, timestamp)``.
- ``idx_audit_log_severity (severity)`` becomes ``idx_audit_log_severity_timestamp (severity,
  timestamp) WHERE severity != 'info'``: queries ask for warnings and critical rows, a few per
  cent of the log; "info" (most rows) is found at once by walking any other index.
- New: ``idx_audit_log_agent_event_timestamp (agent_id, event_type, timestamp)`` and
  ``idx_audit_log_agent_severity_timestamp (agent_id, severity, timestamp) WHERE severity !=
  'info'`` for one agent's events or warnings, which are rare among its rows;
  ``idx_audit_log_tx_id (tx_id) WHERE tx_id IS NOT NULL`` for a transaction's rows (there was
  no index: the whole log was read).
- Dropped: ``idx_audit_log_agent_id (agent_id)``, a prefix of ``idx_audit_log_agent_timestamp``.

The partial indexes are partial on PostgreSQL too (``postgresql_where``).

Only indexes change: no table is rebuilt, no row is touched, the append-only triggers and the
hash chain are unaffected.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_RARE = sa.text("severity != 'info'")
_HAS_TX = sa.text("tx_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("idx_audit_log_agent_id", table_name="audit_log")
    op.drop_index("idx_audit_log_event_type", table_name="audit_log")
    op.drop_index("idx_audit_log_severity", table_name="audit_log")
    op.create_index("idx_audit_log_event_timestamp", "audit_log", ["event_type", "timestamp"])
    op.create_index(
        "idx_audit_log_agent_event_timestamp", "audit_log", ["agent_id", "event_type", "timestamp"]
    )
    op.create_index(
        "idx_audit_log_severity_timestamp",
        "audit_log",
        ["severity", "timestamp"],
        sqlite_where=_RARE,
        postgresql_where=_RARE,
    )
    op.create_index(
        "idx_audit_log_agent_severity_timestamp",
        "audit_log",
        ["agent_id", "severity", "timestamp"],
        sqlite_where=_RARE,
        postgresql_where=_RARE,
    )
    op.create_index(
        "idx_audit_log_tx_id",
        "audit_log",
        ["tx_id"],
        sqlite_where=_HAS_TX,
        postgresql_where=_HAS_TX,
    )


def downgrade() -> None:
    for name in (
        "idx_audit_log_tx_id",
        "idx_audit_log_agent_severity_timestamp",
        "idx_audit_log_severity_timestamp",
        "idx_audit_log_agent_event_timestamp",
        "idx_audit_log_event_timestamp",
    ):
        op.drop_index(name, table_name="audit_log")
    op.create_index("idx_audit_log_severity", "audit_log", ["severity"])
    op.create_index("idx_audit_log_event_type", "audit_log", ["event_type"])
    op.create_index("idx_audit_log_agent_id", "audit_log", ["agent_id"])
