"""Migrations on open: upgrade with data, atomic failure, the table-rebuild path."""

from __future__ import annotations

import json
import shutil
import sqlite3
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from waiaas.db import Database, migrate
from waiaas.db.engine import make_engine
from waiaas.db.migrate import MIGRATIONS_DIR
from waiaas.errors import MigrationError

SEVEN_TABLES = (
    "agents",
    "sessions",
    "transactions",
    "policies",
    "audit_log",
    "pending_approvals",
    "notification_channels",
)

AGENTS = [
    ("a1", "alpha", "solana", "devnet", "pk1", "ACTIVE", "owner1", 100, 101, None, None),
    ("a2", "beta", "evm", "sepolia", "pk2", "SUSPENDED", None, 100, 102, 102, "too many fails"),
]
SESSIONS = [
    ("s1", "a1", "h1", 9999, '{"max_amount":"10"}', None, None, 100),
    ("s2", "a2", "h2", 9999, None, '{"count":3}', 150, 100),
]
TRANSACTIONS = [
    (
        "t1",
        "a1",
        "s1",
        "solana",
        "sig1",
        "TRANSFER",
        "5000",
        "dest1",
        "CONFIRMED",
        "INSTANT",
        None,
        120,
        110,
        None,
        '{"memo":"x"}',
    ),
    (
        "t2",
        "a2",
        None,
        "evm",
        None,
        "TOKEN_TRANSFER",
        "123456789012345678901234567890",
        "0xabc",
        "QUEUED",
        "APPROVAL",
        130,
        None,
        129,
        None,
        None,
    ),
]
POLICIES = [
    ("p1", "a1", "SPENDING_LIMIT", '{"instant_max":"10"}', 5, 1, 100, 100),
    ("p2", None, "ALLOWED_ADDRESSES", '{"addresses":["x"]}', 0, 0, 100, 101),
    ("p3", "a2", "AUTO_STOP", '{"consecutive_failures":3}', 1, 1, 100, 102),
    ("p4", "a1", "TIME_RESTRICTION", '{"hours":[9,17]}', 2, 1, 100, 103),
]
AUDIT = [
    (1, 100, "AGENT_CREATED", "owner", "a1", None, None, "{}", "info", "127.0.0.1"),
    (2, 110, "TX_REQUESTED", "agent:a1", "a1", "s1", "t1", '{"amount":"5000"}', "info", None),
    (3, 140, "KILL_SWITCH_ACTIVATED", "owner", None, None, None, "{}", "critical", None),
]
APPROVALS = [("ap1", "t2", 200, 300, None, None, None, 130)]
CHANNELS = [
    ("c1", "TELEGRAM", '{"chat_id":"1"}', 2, 1, 150, None, 100),
    ("c2", "NTFY", '{"topic":"w"}', 0, 0, None, 160, 100),
    ("c3", "DISCORD", '{"webhook":"https://example.invalid/x"}', 1, 1, None, None, 100),
]
DATA: dict[str, list[tuple[Any, ...]]] = {
    "agents": AGENTS,
    "sessions": SESSIONS,
    "transactions": TRANSACTIONS,
    "policies": POLICIES,
    "audit_log": AUDIT,
    "pending_approvals": APPROVALS,
    "notification_channels": CHANNELS,
}


def _at_revision(path: Path, target: str) -> Path:
    engine = make_engine(path)
    try:
        migrate.upgrade(engine, str(path), target=target)
    finally:
        engine.dispose()
    return path


def _fill(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        with conn:
            for table, rows in DATA.items():
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    finally:
        conn.close()


# Columns later migrations add; a file upgraded from 0001 is compared on CORE-02's columns.
ADDED_COLUMNS = {
    ("transactions", "spend"),  # 0006
    ("transactions", "integrity"),  # 0007
    ("audit_log", "prev_hash"),  # 0007
    ("audit_log", "row_hash"),  # 0007
    ("audit_log", "mac"),  # 0007
    ("agents", "owner_mac"),  # 0007
    ("policies", "mac"),  # 0007
    ("pending_approvals", "mac"),  # 0007
}


def _contents(path: Path, tables: tuple[str, ...] = SEVEN_TABLES) -> dict[str, list[Any]]:
    conn = sqlite3.connect(path)
    try:
        out: dict[str, list[Any]] = {}
        for table in tables:
            cols = [
                r[1]
                for r in conn.execute(f"PRAGMA table_info({table})")
                if (table, r[1]) not in ADDED_COLUMNS
            ]
            out[table] = conn.execute(
                f"SELECT {', '.join(cols)} FROM {table} ORDER BY {cols[0]}"
            ).fetchall()
        return out
    finally:
        conn.close()


def _revision(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])
    finally:
        conn.close()


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    """A database at revision 0001 holding rows in all seven tables."""
    path = _at_revision(tmp_path / "old.db", "0001")
    _fill(path)
    return path


def test_old_file_upgrades_on_open_and_keeps_every_row(old_file: Path) -> None:
    """A 0001 file with rows everywhere upgrades to head on open; all rows are identical."""
    assert _revision(old_file) == "0001"
    assert _contents(old_file) == {t: sorted(r) for t, r in DATA.items()}
    before = _contents(old_file)
    db = Database.open(old_file)
    try:
        assert migrate.current_revision(db.engine) == migrate.head_revision()
        with db.read() as uow:
            assert uow.agents.get("a2") is not None
            assert uow.transactions.get("t2").amount == "123456789012345678901234567890"  # type: ignore[union-attr]
            assert [p.id for p in uow.policies.for_agent("a1")] == ["p1", "p4"]
    finally:
        db.close()
    assert _contents(old_file) == before
    conn = sqlite3.connect(old_file)
    try:
        # AUTOINCREMENT's high-water mark survives: ids are never reused
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")
        assert seq.fetchone() == (3,)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_rebuilt_tables_keep_rows_and_accept_only_the_new_values(old_file: Path) -> None:
    """policies/notification_channels rebuilt: rows identical, new CHECK values only."""
    before = _contents(old_file, ("policies", "notification_channels"))
    Database.open(old_file).close()
    assert _contents(old_file, ("policies", "notification_channels")) == before

    conn = sqlite3.connect(old_file)
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        with conn:
            conn.execute(
                "INSERT INTO policies (id, agent_id, type, rules, created_at, updated_at) "
                "VALUES ('p9', 'a1', 'RATE_LIMIT', '{}', 1, 1)"
            )
            conn.execute(
                "INSERT INTO notification_channels (id, type, config, created_at) "
                "VALUES ('c9', 'WEBHOOK', '{}', 1)"
            )
        row = conn.execute("SELECT priority, enabled FROM policies WHERE id = 'p9'").fetchone()
        assert row == (0, 1)  # defaults survived the rebuild
        for sql in (
            "INSERT INTO policies (id, agent_id, type, rules, created_at, updated_at) "
            "VALUES ('px', NULL, 'BOGUS', '{}', 1, 1)",
            "INSERT INTO notification_channels (id, type, config, created_at) "
            "VALUES ('cx', 'EMAIL', '{}', 1)",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                conn.execute(sql)
        # the rebuilt policies table still references agents, with ON DELETE CASCADE
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
            conn.execute(
                "INSERT INTO policies (id, agent_id, type, rules, created_at, updated_at) "
                "VALUES ('py', 'no-such-agent', 'RATE_LIMIT', '{}', 1, 1)"
            )
        with conn:
            conn.execute("DELETE FROM pending_approvals")
            conn.execute("DELETE FROM transactions WHERE agent_id = 'a2'")
            conn.execute("DELETE FROM agents WHERE id = 'a2'")
        ids = [r[0] for r in conn.execute("SELECT id FROM policies ORDER BY id")]
        assert ids == ["p1", "p2", "p4", "p9"]
    finally:
        conn.close()


def _copy_migrations(tmp_path: Path, extra: str) -> Path:
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9000_extra.py").write_text(
        textwrap.dedent(
            '''\
            """A migration written for a test."""

            import sqlalchemy as sa
            from alembic import op

            revision = "9000"
            down_revision = "HEAD"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
            '''
        ).replace("HEAD", migrate.head_revision())
        + textwrap.indent(textwrap.dedent(extra), "    ")
    )
    return scripts


def _populated_head(path: Path) -> None:
    _at_revision(path, "0001")
    _fill(path)
    Database.open(path).close()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            """\
            op.create_table("scratch", sa.Column("id", sa.Integer, primary_key=True))
            op.execute("INSERT INTO scratch (id) VALUES (1)")
            op.execute("UPDATE agents SET name = 'rewritten'")
            op.execute("DELETE FROM notification_channels")
            op.add_column("agents", sa.Column("extra", sa.Text))
            op.execute("THIS IS NOT SQL")
            """,
            "syntax error",
            id="invalid-sql",
        ),
        pytest.param(
            """\
            op.execute("DELETE FROM agents WHERE id = 'a1'")
            """,
            "foreign key",
            id="breaks-a-foreign-key",
        ),
        pytest.param(
            """\
            op.execute("CREATE TABLE channels_new (id TEXT PRIMARY KEY, type TEXT NOT NULL)")
            op.execute(
                "INSERT INTO channels_new (id, type) SELECT id, type FROM notification_channels"
            )
            op.execute("DROP TABLE notification_channels")
            op.execute("ALTER TABLE channels_new RENAME TO notification_channels")
            raise RuntimeError("stop half-way")
            """,
            "stop half-way",
            id="python-error-after-a-rebuild",
        ),
    ],
)
def test_failed_migration_leaves_the_file_exactly_as_it_was(
    tmp_path: Path, body: str, reason: str, file_digest: Callable[[Path], str]
) -> None:
    """A later migration that does real work then fails: MigrationError; file bytes unchanged."""
    path = tmp_path / "wallet.db"
    _populated_head(path)
    scripts = _copy_migrations(tmp_path, body)
    digest, dump = file_digest(path), _dump(path)
    assert migrate.head_revision(scripts) == "9000"

    with pytest.raises(MigrationError) as err:
        Database.open(path, script_location=scripts)

    assert err.value.revision == "9000"
    assert err.value.path == str(path)
    assert reason in str(err.value)
    assert file_digest(path) == digest
    assert _dump(path) == dump
    assert _revision(path) == migrate.head_revision()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["migrations", "wallet.db"]
    # and the shipped migrations still open it normally
    Database.open(path).close()
    assert file_digest(path) == digest


def test_successful_extra_migration_applies_and_keeps_foreign_keys_on(tmp_path: Path) -> None:
    """A good later migration from another script directory applies; foreign keys stay ON."""
    path = tmp_path / "wallet.db"
    _populated_head(path)
    scripts = _copy_migrations(
        tmp_path,
        """\
        op.create_table("scratch", sa.Column("id", sa.Integer, primary_key=True))
        op.execute("INSERT INTO scratch (id) VALUES (1)")
        """,
    )
    db = Database.open(path, script_location=scripts)
    try:
        assert migrate.current_revision(db.engine) == "9000"
        with db.read() as uow:
            raw = uow.session.connection().connection.driver_connection
            assert raw is not None
            assert raw.execute("PRAGMA foreign_keys").fetchone() == (1,)
            assert raw.execute("SELECT id FROM scratch").fetchall() == [(1,)]
    finally:
        db.close()


def test_failure_in_the_last_of_several_pending_migrations_undoes_them_all(
    old_file: Path, tmp_path: Path, file_digest: Callable[[Path], str]
) -> None:
    """0001 -> 9000 where 9000 fails: every migration before it (rebuilds included) is undone."""
    scripts = _copy_migrations(tmp_path, 'op.execute("SELECT no_such_function()")\n')
    digest, dump = file_digest(old_file), _dump(old_file)
    with pytest.raises(MigrationError, match="from 0001 to 9000"):
        Database.open(old_file, script_location=scripts)
    assert file_digest(old_file) == digest
    assert _dump(old_file) == dump
    assert _revision(old_file) == "0001"


def test_rebuilding_a_parent_table_keeps_children_and_their_foreign_keys(
    old_file: Path, tmp_path: Path
) -> None:
    """A later migration rebuilding agents (4 tables refer to it) keeps every row and FK."""
    Database.open(old_file).close()
    before = _contents(old_file)
    scripts = _copy_migrations(
        tmp_path,
        """\
        statuses = "'CREATING', 'ACTIVE', 'SUSPENDED', 'TERMINATING', 'TERMINATED'"
        agents = sa.Table(
            "agents",
            sa.MetaData(),
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("chain", sa.Text, nullable=False),
            sa.Column("network", sa.Text, nullable=False),
            sa.Column("public_key", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'CREATING'")),
            sa.Column("owner_address", sa.Text),
            sa.Column("created_at", sa.Integer, nullable=False),
            sa.Column("updated_at", sa.Integer, nullable=False),
            sa.Column("suspended_at", sa.Integer),
            sa.Column("suspension_reason", sa.Text),
            sa.CheckConstraint(f"status IN ({statuses})"),
            sa.Index("idx_agents_public_key", "public_key", unique=True),
            sa.Index("idx_agents_status", "status"),
            sa.Index("idx_agents_chain_network", "chain", "network"),
        )
        with op.batch_alter_table("agents", recreate="always", copy_from=agents) as batch:
            batch.add_column(sa.Column("label", sa.Text))
        """,
    )
    Database.open(old_file, script_location=scripts).close()
    after = _contents(old_file)
    assert after["agents"] == [(*row, None) for row in before["agents"]]  # + label column
    assert {t: r for t, r in after.items() if t != "agents"} == {
        t: r for t, r in before.items() if t != "agents"
    }
    conn = sqlite3.connect(old_file)
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute(
                "INSERT INTO sessions (id, agent_id, token_hash, expires_at, created_at)"
                " VALUES ('sx', 'ghost', 'h', 1, 1)"
            )
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):  # RESTRICT
            conn.execute("DELETE FROM agents WHERE id = 'a1'")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE agents SET status = 'BOGUS' WHERE id = 'a1'")
        with conn:  # CASCADE from agents to sessions and policies still works
            conn.execute("DELETE FROM pending_approvals")
            conn.execute("DELETE FROM transactions WHERE agent_id = 'a2'")
            conn.execute("DELETE FROM agents WHERE id = 'a2'")
        assert conn.execute("SELECT id FROM sessions").fetchall() == [("s1",)]
        assert conn.execute("SELECT id FROM policies ORDER BY id").fetchall() == [
            ("p1",),
            ("p2",),
            ("p4",),
        ]
    finally:
        conn.close()


def test_spend_column_is_filled_from_metadata_on_upgrade(tmp_path: Path) -> None:
    """0006 copies metadata.spend into the new column; rows without one stay NULL."""
    path = tmp_path / "w.db"
    _at_revision(path, "0005")
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO agents (id, name, chain, network, public_key, status, created_at,"
            " updated_at) VALUES ('a', 'n', 'solana', 'devnet', 'pk', 'ACTIVE', 1, 1)"
        )
        rows = [
            ("t1", '{"spend": {"native": "123456789012345678901234567890"}}'),
            ("t2", '{"asset": "native"}'),
            ("t3", "not json"),
        ]
        for tx_id, meta in rows:
            conn.execute(
                "INSERT INTO transactions (id, agent_id, chain, type, status, created_at,"
                " metadata) VALUES (?, 'a', 'solana', 'TRANSFER', 'CONFIRMED', 1, ?)",
                (tx_id, meta),
            )
        conn.commit()
    finally:
        conn.close()
    Database.open(path).close()
    conn = sqlite3.connect(path)
    try:
        got = dict(conn.execute("SELECT id, spend FROM transactions").fetchall())
    finally:
        conn.close()
    assert json.loads(got["t1"]) == {"native": "123456789012345678901234567890"}
    assert got["t2"] is None and got["t3"] is None


def test_existing_audit_rows_are_chained_by_the_upgrade(old_file: Path) -> None:
    """0007 chains the audit rows already there, in id order; none lost; still append-only
    (the links stored as bytes since 0013)."""
    from waiaas.db.chain import GENESIS_BYTES
    from waiaas.integrity import walk_chain

    before = _contents(old_file, ("audit_log",))
    Database.open(old_file).close()
    assert _contents(old_file, ("audit_log",)) == before
    conn = sqlite3.connect(old_file)
    try:
        walk = walk_chain(conn, None)
        assert walk.broken is None and walk.rows == len(before["audit_log"])
        first = conn.execute("SELECT prev_hash FROM audit_log ORDER BY id LIMIT 1").fetchone()
        assert first == (GENESIS_BYTES,)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_log SET row_hash = 'x'")
    finally:
        conn.close()


def test_generation_counters_and_their_triggers_on_upgrade(tmp_path: Path) -> None:
    """0012 adds the counters at 1 and the triggers that move them; rows already there
    are untouched, and downgrading removes both."""
    from waiaas.db import generations

    path = tmp_path / "w.db"
    _at_revision(path, "0011")
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO policies (id, agent_id, type, rules, priority, enabled, created_at, "
            "updated_at) VALUES ('p', NULL, 'RATE_LIMIT', '{}', 0, 1, 1, 1)"
        )
        conn.execute(
            "INSERT INTO notification_channels (id, type, config, priority, enabled, "
            "created_at) VALUES ('c', 'NTFY', '{}', 0, 1, 1)"
        )
        conn.commit()
        before = conn.execute("SELECT * FROM policies").fetchall()
    finally:
        conn.close()
    Database.open(path).close()
    assert _revision(path) == migrate.head_revision()

    def counters() -> dict[str, str]:
        c = sqlite3.connect(path)
        try:
            return dict(
                c.execute("SELECT key, value FROM wallet_state WHERE key LIKE 'generation:%'")
            )
        finally:
            c.close()

    start = counters()
    assert set(start) == {generations.POLICIES, generations.CHANNELS}
    assert all(v.isdigit() and 1 <= int(v) <= 2**52 for v in start.values())  # random starts
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT * FROM policies").fetchall() == before
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
        assert set(generations.TRIGGER_NAMES) <= names
        with conn:
            conn.execute("UPDATE policies SET priority = 2")
            conn.execute("UPDATE notification_channels SET last_success_at = 9")
    finally:
        conn.close()
    assert counters() == {
        generations.POLICIES: str(int(start[generations.POLICIES]) + 1),
        generations.CHANNELS: start[generations.CHANNELS],
    }
    from alembic import command

    engine = make_engine(path)
    try:
        with engine.connect() as c, c.begin():
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0011")
    finally:
        engine.dispose()
    assert counters() == {}
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    finally:
        conn.close()
    assert not set(generations.TRIGGER_NAMES) & names
