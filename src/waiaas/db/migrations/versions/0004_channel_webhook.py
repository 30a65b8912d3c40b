"""Extend notification_channels.type with WEBHOOK (signed outbound webhooks).

A table rebuild through alembic batch mode, like 0003: the definition is frozen here and
every row is copied by column name.

PostgreSQL replaces the CHECK constraint by name instead.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_TYPES = ("TELEGRAM", "DISCORD", "NTFY")
NEW_TYPES = (*OLD_TYPES, "WEBHOOK")


def _channels(types: tuple[str, ...]) -> sa.Table:
    check = "type IN (" + ", ".join(f"'{t}'" for t in types) + ")"
    return sa.Table(
        "notification_channels",
        sa.MetaData(),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("enabled", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("last_success_at", sa.Integer),
        sa.Column("last_failure_at", sa.Integer),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.CheckConstraint(check),
        sa.Index("idx_notification_channels_type", "type"),
        sa.Index("idx_notification_channels_enabled", "enabled"),
    )


def _pg_check(types: tuple[str, ...]) -> None:
    op.execute("ALTER TABLE notification_channels DROP CONSTRAINT notification_channels_type_check")
    op.execute(
        "ALTER TABLE notification_channels ADD CONSTRAINT notification_channels_type_check "
        "CHECK (type IN (" + ", ".join(f"'{t}'" for t in types) + "))"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_check(NEW_TYPES)
        return
    with op.batch_alter_table(
        "notification_channels", recreate="always", copy_from=_channels(NEW_TYPES)
    ):
        pass


def downgrade() -> None:
    op.execute("DELETE FROM notification_channels WHERE type = 'WEBHOOK'")
    if op.get_bind().dialect.name == "postgresql":
        _pg_check(OLD_TYPES)
        return
    with op.batch_alter_table(
        "notification_channels", recreate="always", copy_from=_channels(OLD_TYPES)
    ):
        pass
