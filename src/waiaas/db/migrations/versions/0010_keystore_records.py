"""Add keystore_records: the keystore's sealed records, for the database keystore backend.

One row per record of the file layout (``docs/keystore.md``): ``header`` (format, keystore id,
Argon2id parameters and salt, the wrapped seal key), ``keys/<key id>``, ``archive/<key id>/
<archive id>``, ``secrets/<name>``, and ``audit-head`` (the MAC'd audit chain head). ``body``
is the same JSON a file of the file backend holds; every key in it stays AEAD-sealed and bound
to its keystore id, key id, chain and public key. ``generation`` is the password generation
the record was sealed under (a password change rewrites every row in one transaction).

The table is created on every database; a wallet that keeps its keystore in files leaves it
empty. Epoch seconds are BIGINT on PostgreSQL (INTEGER there is 32-bit).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _epoch() -> sa.types.TypeEngine[int]:
    return sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "keystore_records",
        sa.Column("name", sa.Text, primary_key=True, nullable=False),
        sa.Column("generation", _epoch(), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", _epoch(), nullable=False),
        sa.CheckConstraint("generation >= 0", name="ck_keystore_records_generation"),
    )


def downgrade() -> None:
    op.drop_table("keystore_records")
