"""Unconfirmed transaction indexes: the scans and listings by a status other than CONFIRMED
read only those rows.

- ``idx_transactions_status_unconfirmed (status, created_at)`` serves the wallet-wide look-ups
  by status: ``process_due``'s queued, pending and submitted rows on every tick, crash
  recovery's EXECUTING / SUBMITTED rows, the kill switch's PENDING / QUEUED rows, the
  integrity check of in-flight rows and a listing of one status. Each of those read the whole
  table (the primary key in order) before: at a million transactions, every tick of the
  background runner scanned them three times.
- ``idx_transactions_agent_unconfirmed (agent_id, status, created_at)`` serves an agent's
  listing by such a status, newest first, without reading the agent's other rows.

Both hold the rows whose status is not CONFIRMED (``WHERE``
:data:`waiaas.db.tables.NOT_CONFIRMED`), partial on SQLite and on PostgreSQL: the
transactions in flight and the failed, cancelled and expired ones, a small share of a
wallet's rows. The queries name the same term. No table is rebuilt, no row is touched.
Downgrade drops them.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# waiaas.db.tables.NOT_CONFIRMED as it stood when this revision was written
_NOT_CONFIRMED = sa.text("status <> 'CONFIRMED'")
_INDEXES = {
    "idx_transactions_status_unconfirmed": ["status", "created_at"],
    "idx_transactions_agent_unconfirmed": ["agent_id", "status", "created_at"],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        op.create_index(
            name,
            "transactions",
            columns,
            sqlite_where=_NOT_CONFIRMED,
            postgresql_where=_NOT_CONFIRMED,
        )


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="transactions")
