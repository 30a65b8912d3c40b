"""Add transactions.spend: what a transaction takes out of the wallet, per asset.

A small JSON object (``{"native": "1000000"}``, amounts as decimal strings) kept next to the
row instead of inside ``metadata``, so rolling budgets read a few bytes per row rather than
parsing the whole metadata document. Existing rows are filled from ``metadata.spend``.
ADD COLUMN needs no table rebuild.

PostgreSQL has no ``json_valid``; the rows are read and filled from Python there (the same
result: the ``spend`` object's JSON text, for rows whose metadata is valid JSON with an
object under ``spend``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("spend", sa.Text, nullable=True))
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT id, metadata FROM transactions WHERE metadata IS NOT NULL"
        ).fetchall()
        updates = []
        for tx_id, metadata in rows:
            try:
                spend = json.loads(metadata).get("spend")
            except (ValueError, AttributeError, RecursionError):
                continue
            if isinstance(spend, dict):
                updates.append({"spend": json.dumps(spend, separators=(",", ":")), "id": tx_id})
        if updates:
            conn.execute(sa.text("UPDATE transactions SET spend = :spend WHERE id = :id"), updates)
        return
    op.execute(
        "UPDATE transactions SET spend = json_extract(metadata, '$.spend') "
        "WHERE json_valid(metadata) AND json_type(metadata, '$.spend') = 'object'"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("transactions", "spend")
        return
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("spend")
