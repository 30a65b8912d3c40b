"""Usage covering index: a window's first hour is counted from the index alone.

Admission counts the rows of each window's first hour (requests and policy denials, see
:func:`waiaas.services.policies._edges_sql`); a 60 s RATE_LIMIT reads every row of the last
minute on every request. ``idx_transactions_agent_created (agent_id, created_at)`` found
them, but whether a row is a denial (``error``) was read from the table, one lookup per row.

- ``idx_transactions_agent_created`` becomes ``(agent_id, created_at, error)``: same name,
  same leading columns (every query that reads it keeps its plan), and the counts read no
  table row. ``error`` is NULL on most rows (one byte in the index entry), so it does not
  grow the file noticeably. It replaces the index rather than adding one: the rows are
  indexed once.

No table is rebuilt, no row is touched, the usage buckets and their triggers are unaffected.
Downgrade restores the two-column index.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_NAME = "idx_transactions_agent_created"


def upgrade() -> None:
    op.drop_index(_NAME, table_name="transactions")
    op.create_index(_NAME, "transactions", ["agent_id", "created_at", "error"])


def downgrade() -> None:
    op.drop_index(_NAME, table_name="transactions")
    op.create_index(_NAME, "transactions", ["agent_id", "created_at"])
