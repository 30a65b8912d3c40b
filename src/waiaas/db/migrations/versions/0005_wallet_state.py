"""Add wallet_state: persisted wallet-wide state (the kill switch, ...).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallet_state",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        # epoch seconds: BIGINT on PostgreSQL (INTEGER there is 32-bit)
        sa.Column(
            "updated_at", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_table("wallet_state")
