"""Add usage_minutes and usage_seconds: the usage buckets' sums per minute and per second.

A window's start falls inside an hour: rolling budgets counted the part of that hour inside
(or before) the window from its rows, up to half an hour of them, a number that grows with
the agent's send rate. The same sums per minute and per second (see :mod:`waiaas.db.usage`,
:data:`~waiaas.db.usage.FINE`) let readers count that part from at most 59 minute and 59
second buckets. Creates the two tables (the columns of ``usage_buckets``), their unsealed
indexes and the triggers on ``transactions`` and ``audit_log`` that keep them exact in the
same statements as every row they summarise (plpgsql functions on PostgreSQL, and one for
``TRUNCATE``), then fills them from the existing rows. ``mac`` stays NULL: the wallet seals
them on its first keyed write, readers take an unsealed one from its rows until then.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

from waiaas.db import usage

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in usage.fine_ddl(dialect):
        op.execute(stmt)
    for stmt in usage.fine_fill(dialect):
        op.execute(stmt)


def downgrade() -> None:
    for stmt in usage.fine_drop_sql(op.get_bind().dialect.name):
        op.execute(stmt)
