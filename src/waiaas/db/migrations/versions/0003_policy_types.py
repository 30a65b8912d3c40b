"""Extend policies.type with the policy types beyond CORE-02's four; index agent budgets.

SQLite cannot ALTER a CHECK constraint, so ``policies`` is rebuilt (CORE-02 §4.6) with alembic
batch mode: create ``_alembic_tmp_policies`` with the new definition, copy every row by column
name, drop the old table, rename, recreate the indexes. The definition is frozen here (not
imported from ``tables.py``) so this migration keeps meaning what it meant.

Also adds ``idx_transactions_agent_created`` so rolling budget windows read only the window.

PostgreSQL alters CHECK constraints in place: the constraint is dropped and added again by
name, no table is rebuilt.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_TYPES = ("SPENDING_LIMIT", "ALLOWED_ADDRESSES", "TIME_RESTRICTION", "AUTO_STOP")
NEW_TYPES = (
    *OLD_TYPES,
    "RATE_LIMIT",
    "ALLOWED_TOKENS",
    "CONTRACT_WHITELIST",
    "METHOD_WHITELIST",
    "APPROVED_SPENDERS",
    "APPROVE_AMOUNT_LIMIT",
    "ALLOWED_NETWORKS",
)


def _policies(types: tuple[str, ...]) -> sa.Table:
    check = "type IN (" + ", ".join(f"'{t}'" for t in types) + ")"
    return sa.Table(
        "policies",
        sa.MetaData(),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("agent_id", sa.Text, sa.ForeignKey("agents.id", ondelete="CASCADE")),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("enabled", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
        sa.CheckConstraint(check),
        sa.Index("idx_policies_agent_id", "agent_id"),
        sa.Index("idx_policies_type", "type"),
        sa.Index("idx_policies_enabled", "enabled"),
    )


def _pg_check(types: tuple[str, ...]) -> None:
    op.execute("ALTER TABLE policies DROP CONSTRAINT policies_type_check")
    op.execute(
        "ALTER TABLE policies ADD CONSTRAINT policies_type_check CHECK (type IN ("
        + ", ".join(f"'{t}'" for t in types)
        + "))"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_check(NEW_TYPES)
    else:
        with op.batch_alter_table("policies", recreate="always", copy_from=_policies(NEW_TYPES)):
            pass
    op.create_index("idx_transactions_agent_created", "transactions", ["agent_id", "created_at"])


def downgrade() -> None:
    op.drop_index("idx_transactions_agent_created", table_name="transactions")
    op.execute("DELETE FROM policies WHERE type NOT IN ('" + "', '".join(OLD_TYPES) + "')")
    if op.get_bind().dialect.name == "postgresql":
        _pg_check(OLD_TYPES)
        return
    with op.batch_alter_table("policies", recreate="always", copy_from=_policies(OLD_TYPES)):
        pass
