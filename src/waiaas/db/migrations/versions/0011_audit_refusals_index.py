"""Audit refusals index: one agent's refusals and dry runs by time, without its other rows.

Spending windows count, besides the agent's transactions, the audit rows of requests that
left no transaction row (``REQUEST_REFUSED``, ``POLICY_VIOLATION`` without a transaction)
and of dry runs (see :data:`waiaas.db.usage.REFUSAL_SQL`). Admission reads those of a
window's first hour; through ``idx_audit_log_agent_timestamp`` that meant every audit row
the agent wrote in that hour (several per transaction) to find the few refusals among them.

- New: ``idx_audit_log_agent_refusals (agent_id, timestamp) WHERE`` the refusal condition,
  partial on SQLite and on PostgreSQL (``postgresql_where``): it holds refusals only, a
  small fraction of the log.

Only an index is added: no table is rebuilt, no row is touched, the append-only triggers,
the hash chain and the usage buckets are unaffected.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# waiaas.db.usage.REFUSAL_SQL as it stood when this revision was written
_REFUSALS = sa.text(
    "(event_type IN ('REQUEST_REFUSED', 'DRY_RUN') "
    "OR (event_type = 'POLICY_VIOLATION' AND tx_id IS NULL))"
)


def upgrade() -> None:
    op.create_index(
        "idx_audit_log_agent_refusals",
        "audit_log",
        ["agent_id", "timestamp"],
        sqlite_where=_REFUSALS,
        postgresql_where=_REFUSALS,
    )


def downgrade() -> None:
    op.drop_index("idx_audit_log_agent_refusals", table_name="audit_log")
