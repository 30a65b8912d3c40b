"""CORE-02 initial schema: the seven tables, exactly as the spec's DDL.

The DDL is executed verbatim from ``waiaas/db/sql/core-02-schema.sql`` (extracted from
CORE-02 §2.1-2.7), so migration 1 *is* the spec. On PostgreSQL its faithful translation
``core-02-schema.postgresql.sql`` runs instead (BIGINT epochs, an identity audit id; the same
CHECKs, indexes and foreign keys: a test compares the two schemas).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from importlib import resources

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


SCHEMA_FILES = {
    "sqlite": "sql/core-02-schema.sql",
    "postgresql": "sql/core-02-schema.postgresql.sql",
}


def _statements(dialect: str = "sqlite") -> list[str]:
    name = SCHEMA_FILES[dialect]
    sql = resources.files("waiaas.db").joinpath(name).read_text("utf-8")
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def upgrade() -> None:
    for statement in _statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for table in (
        "notification_channels",
        "pending_approvals",
        "audit_log",
        "policies",
        "transactions",
        "sessions",
        "agents",
    ):
        op.execute(f"DROP TABLE {table}")
