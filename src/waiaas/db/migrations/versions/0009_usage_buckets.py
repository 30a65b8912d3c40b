"""Add usage_buckets: per agent and hour, the sums rolling budgets read instead of the rows.

Creates the table (see :mod:`waiaas.db.usage`), the triggers on ``transactions`` and
``audit_log`` that keep it exact in the same transaction as every row they summarise, and
fills it from the existing rows. ``mac`` stays NULL here (a migration never sees the keystore):
the wallet seals each bucket the first time it writes it, and until then readers with the key
take such a bucket from its rows.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

from waiaas.db import usage
from waiaas.db.usage import DDL, TRIGGER_NAMES, fill_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # TODO(pgusage): usage.PG_DDL creates only the table and its index so far; the
        # plpgsql triggers and the backfill (usage.pg_fill_sql) replace this branch's body.
        for stmt in usage.PG_DDL:
            op.execute(stmt)
        return
    for stmt in DDL:
        op.execute(stmt)
    for stmt in fill_sql():
        op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # TODO(pgusage): drop the plpgsql triggers and their functions too.
        op.drop_table("usage_buckets")
        return
    for name in TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index("idx_usage_buckets_unsealed", table_name="usage_buckets")
    op.drop_table("usage_buckets")
