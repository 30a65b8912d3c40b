"""Generation counters of policies and notification channels, kept by triggers.

Two ``wallet_state`` rows, ``generation:policies`` and ``generation:channels``, grow by one
on every change of their table (see :mod:`waiaas.db.generations`): any INSERT, UPDATE or
DELETE of ``policies``; any INSERT or DELETE of ``notification_channels`` and any UPDATE of
one that changes more than ``last_success_at`` / ``last_failure_at``. A process keeps the
policies and channels it read together with the counter and reads them again only when the
counter moved.

The rows are created here at a random value (and by the first bump where missing). No
table is rebuilt and no other row is touched.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

from waiaas.db import generations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in generations.ddl(dialect):
        op.execute(stmt)
    for key in (generations.POLICIES, generations.CHANNELS):
        op.execute(generations.bump_sql(key, dialect))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in generations.drop_sql(dialect):
        op.execute(stmt)
    op.execute(
        "DELETE FROM wallet_state WHERE key IN "
        f"('{generations.POLICIES}', '{generations.CHANNELS}')"
    )
