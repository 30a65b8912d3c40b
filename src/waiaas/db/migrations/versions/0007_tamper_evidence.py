"""Tamper evidence: chain the audit log, MAC columns, signed audit checkpoints.

- ``audit_log`` gains ``prev_hash``, ``row_hash`` and ``mac``. Existing rows are chained here,
  in id order, with the frozen encoding of :mod:`waiaas.db.chain` (no row is rewritten other
  than these three columns, none is lost; ids stay). The append-only UPDATE trigger is lifted
  for that one statement and restored in the same transaction. ``mac`` stays NULL for these
  rows: the MAC key lives in the keystore, which a migration never sees. The wallet anchors
  them on its next open (it records the last such row's hash, sealed in the keystore), so an
  unkeyed row after that anchor is a forgery.
- ``agents.owner_mac``, ``policies.mac``, ``transactions.integrity``, ``pending_approvals.mac``:
  MACs over the owner binding, each policy, the stored request and its approval.
- ``audit_checkpoints``: ed25519-signed (sequence, head hash) statements.

ADD COLUMN needs no table rebuild in SQLite. On PostgreSQL the UPDATE trigger is disabled for
the chaining statement and enabled again in the same transaction; the checkpoint table's
integers (ids, sequence numbers, epoch seconds) are BIGINT there.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from waiaas.db.chain import AUDIT_COLUMNS, GENESIS, row_hash

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NO_UPDATE = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
)


_BIG = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.add_column("audit_log", sa.Column("prev_hash", sa.Text, nullable=True))
    op.add_column("audit_log", sa.Column("row_hash", sa.Text, nullable=True))
    op.add_column("audit_log", sa.Column("mac", sa.Text, nullable=True))
    op.add_column("agents", sa.Column("owner_mac", sa.Text, nullable=True))
    op.add_column("policies", sa.Column("mac", sa.Text, nullable=True))
    op.add_column("transactions", sa.Column("integrity", sa.Text, nullable=True))
    op.add_column("pending_approvals", sa.Column("mac", sa.Text, nullable=True))
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", _BIG, primary_key=True, autoincrement=True),
        sa.Column("seq", _BIG, nullable=False),
        sa.Column("head_hash", sa.Text, nullable=False),
        sa.Column("created_at", _BIG, nullable=False),
        sa.Column("wallet_id", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
    )
    op.create_index("idx_audit_checkpoints_seq", "audit_checkpoints", ["seq"])
    conn = op.get_bind()
    cols = ", ".join(AUDIT_COLUMNS)
    rows = conn.exec_driver_sql(f"SELECT id, {cols} FROM audit_log ORDER BY id").fetchall()
    if rows:
        prev = GENESIS
        updates = []
        for row in rows:
            h = row_hash(prev, tuple(row[1:]))
            updates.append((prev, h, row[0]))
            prev = h
        if pg:
            op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            conn.execute(
                sa.text("UPDATE audit_log SET prev_hash = :p, row_hash = :h WHERE id = :i"),
                [{"p": p, "h": h, "i": i} for p, h, i in updates],
            )
            op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
            return
        op.execute("DROP TRIGGER audit_log_no_update")
        conn.exec_driver_sql(
            "UPDATE audit_log SET prev_hash = ?, row_hash = ? WHERE id = ?", updates
        )
        op.execute(_NO_UPDATE)


def downgrade() -> None:
    op.drop_index("idx_audit_checkpoints_seq", "audit_checkpoints")
    op.drop_table("audit_checkpoints")
    for table, column in (
        ("pending_approvals", "mac"),
        ("transactions", "integrity"),
        ("policies", "mac"),
        ("agents", "owner_mac"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
    if op.get_bind().dialect.name == "postgresql":
        for column in ("mac", "row_hash", "prev_hash"):
            op.drop_column("audit_log", column)
        return
    op.execute("DROP TRIGGER audit_log_no_update")
    op.execute("DROP TRIGGER audit_log_no_delete")
    op.execute("DROP TRIGGER audit_log_no_replace")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("mac")
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
    op.execute(_NO_UPDATE)
    op.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
        "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
    )
