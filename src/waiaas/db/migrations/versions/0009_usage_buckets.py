"""Add usage_buckets: per agent and hour, the sums rolling budgets read instead of the rows.

Creates the table (see :mod:`waiaas.db.usage`), the triggers on ``transactions`` and
``audit_log`` that keep it exact in the same transaction as every row they summarise, and
fills it from the existing rows. On PostgreSQL the same arithmetic runs in plpgsql trigger
functions (:data:`waiaas.db.usage.PG_DDL`). ``mac`` stays NULL here (a migration never sees
the keystore): the wallet seals each bucket the first time it writes it, and until then
readers with the key take such a bucket from its rows.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

from waiaas.db import usage

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in usage.ddl(dialect):
        op.execute(stmt)
    for stmt in usage.fill(dialect):
        op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in usage.drop_sql(dialect):
        op.execute(stmt)
    op.drop_index("idx_usage_buckets_unsealed", table_name="usage_buckets")
    op.drop_table("usage_buckets")
    for stmt in usage.drop_functions_sql(dialect):
        op.execute(stmt)
