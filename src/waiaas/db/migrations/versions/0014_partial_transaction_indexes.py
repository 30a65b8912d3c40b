"""Partial transaction indexes: two indexes of ``transactions`` hold only the rows their
queries read, not every transaction ever made.

- ``idx_transactions_agent_status (agent_id, status)`` serves the look-ups of an agent's
  in-flight transactions (CORE-02 §5.4 #2: ``active_for_agent``, admission's busy and nonce
  checks, a listing of one in-flight status). It now holds the rows in ``PENDING``,
  ``QUEUED``, ``EXECUTING`` or ``SUBMITTED`` only (``WHERE``
  :data:`waiaas.db.tables.IN_FLIGHT`): a few rows per agent at any time, where it held one
  entry per transaction forever. Those queries name the same term, so SQLite and
  PostgreSQL both use it; a listing of final rows reads ``idx_transactions_agent_created``.
- ``idx_transactions_queued_at (queued_at)`` holds the rows that were queued (``WHERE
  queued_at IS NOT NULL``): an INSTANT or NOTIFY transaction, most of them, is never
  queued. Any range condition on ``queued_at`` implies that term.

Each index is dropped and created again with its condition, partial on SQLite and on
PostgreSQL (``postgresql_where``). No table is rebuilt, no row is touched; the triggers,
the hash chain and the usage buckets are unaffected. Downgrade creates them whole again.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# waiaas.db.tables.IN_FLIGHT as it stood when this revision was written
_IN_FLIGHT = sa.text("status IN ('PENDING', 'QUEUED', 'EXECUTING', 'SUBMITTED')")
_QUEUED = sa.text("queued_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("idx_transactions_agent_status", table_name="transactions")
    op.create_index(
        "idx_transactions_agent_status",
        "transactions",
        ["agent_id", "status"],
        sqlite_where=_IN_FLIGHT,
        postgresql_where=_IN_FLIGHT,
    )
    op.drop_index("idx_transactions_queued_at", table_name="transactions")
    op.create_index(
        "idx_transactions_queued_at",
        "transactions",
        ["queued_at"],
        sqlite_where=_QUEUED,
        postgresql_where=_QUEUED,
    )


def downgrade() -> None:
    op.drop_index("idx_transactions_agent_status", table_name="transactions")
    op.create_index("idx_transactions_agent_status", "transactions", ["agent_id", "status"])
    op.drop_index("idx_transactions_queued_at", table_name="transactions")
    op.create_index("idx_transactions_queued_at", "transactions", ["queued_at"])
