"""Add transactions.spend: what a transaction takes out of the wallet, per asset.

A small JSON object (``{"native": "1000000"}``, amounts as decimal strings) kept next to the
row instead of inside ``metadata``, so rolling budgets read a few bytes per row rather than
parsing the whole metadata document. Existing rows are filled from ``metadata.spend``.
ADD COLUMN needs no table rebuild.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("spend", sa.Text, nullable=True))
    op.execute(
        "UPDATE transactions SET spend = json_extract(metadata, '$.spend') "
        "WHERE json_valid(metadata) AND json_type(metadata, '$.spend') = 'object'"
    )


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("spend")
