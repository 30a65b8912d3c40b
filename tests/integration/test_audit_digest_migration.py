"""Migration 0013 on both dialects: an audit log written by revision 0012 (digests as 64 hex
characters) is converted to the digests' 32 bytes, exactly: the chain and every MAC verify
after it under the same key, an edit made before the upgrade is still named at its row, ids
and the id sequence are kept, every index and trigger of the table is still there and still
works (append-only, the usage buckets), and a downgrade gives back the text it started from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_migrations_with_data import _at_revision, _engine, _raw
from tests.support.pg_schema import create_schema, drop_schema, schema_url
from waiaas.db import migrate
from waiaas.db.chain import AUDIT_COLUMNS, GENESIS, audit_mac, row_hash
from waiaas.integrity import walk_chain

KEY = hashlib.sha256(b"audit key of the test").digest()
AGENT = "01a25109-4b66-73fc-a9ee-4469b82fa8ec"
_COLS = ", ".join(AUDIT_COLUMNS)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at revision 0012: an SQLite path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        path = str(tmp_path / "wallet.db")
        _at_revision(path, "0012")
        yield path
        return
    server = request.getfixturevalue("postgres_url")
    name = create_schema(server, prefix="mig13")
    try:
        url = schema_url(server, name)
        _at_revision(url, "0012")
        yield url
    finally:
        drop_schema(server, name)


def _rows() -> list[tuple[Any, ...]]:
    """Audit rows as waiaas wrote them: system rows, an agent's own rows, refusals (which
    the usage trigger counts), in one hour and the next."""
    out = []
    for i in range(12):
        event = ("TX_REQUESTED", "TX_CONFIRMED", "REQUEST_REFUSED")[i % 3]
        actor = "" if event == "TX_REQUESTED" else "system"
        details = f'{{"amount":"{1000 + i}","to":"x"}}'
        out.append(
            (1_750_000_000 + 900 * i, event, actor, AGENT, None, None, details, "info", None)
        )
    return out


def _write_0012(target: str, *, old_links: int = 3) -> list[tuple[Any, ...]]:
    """Write :func:`_rows` chained and MAC'd as revision 0012 stored them (hex text; the
    first ``old_links`` rows also store their link, as before it was left NULL); returns
    ``(id, prev_hash, row_hash, mac)`` of each."""
    prev = GENESIS
    with _raw(target) as conn:
        for i, values in enumerate(_rows()):
            digest = row_hash(prev, values)
            conn.execute(
                f"INSERT INTO audit_log ({_COLS}, prev_hash, row_hash, mac) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, prev if i < old_links else None, digest, audit_mac(KEY, digest)),
            )
            prev = digest
        return conn.all("SELECT id, prev_hash, row_hash, mac FROM audit_log ORDER BY id")


def _upgrade(target: str, revision: str = "heads") -> None:
    engine = _engine(target)
    try:
        migrate.upgrade(engine, target, target=revision)
    finally:
        engine.dispose()


def _downgrade(target: str, revision: str) -> None:
    from alembic import command

    engine = _engine(target)
    try:
        with engine.connect() as conn, conn.begin():
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()


def _schema(conn: Any) -> dict[str, Any]:
    """The table's indexes and triggers, its id sequence, and the usage buckets."""
    if conn.dialect == "postgresql":
        objects = conn.all(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_log' "
            "AND schemaname = current_schema() UNION ALL "
            "SELECT tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relname = 'audit_log' "
            "AND c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"
        )
        seq = conn.one("SELECT pg_get_serial_sequence('audit_log', 'id')")
        seq = conn.one(f"SELECT last_value FROM {seq[0]}") if seq and seq[0] else None
    else:
        objects = conn.all(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'audit_log' "
            "AND type IN ('index', 'trigger')"
        )
        seq = conn.one("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")
    buckets = conn.all("SELECT * FROM usage_buckets ORDER BY agent_id, start, kind, asset")
    return {"objects": sorted(objects), "seq": seq, "buckets": buckets}


def test_upgrade_converts_every_digest_and_the_chain_still_verifies(target: str) -> None:
    before = _write_0012(target)
    with _raw(target) as conn:
        schema = _schema(conn)
        assert schema["buckets"], "the usage trigger counted the refusals"
    _upgrade(target)
    with _raw(target) as conn:
        after = conn.all("SELECT id, prev_hash, row_hash, mac FROM audit_log ORDER BY id")
        assert [r[0] for r in after] == [r[0] for r in before]  # ids kept
        for old, new in zip(before, after, strict=True):
            for text, stored in zip(old[1:], new[1:], strict=True):
                assert stored == (None if text is None else bytes.fromhex(text))
                assert stored is None or (isinstance(stored, bytes) and len(stored) == 32)
        walk = walk_chain(conn, KEY)
        assert walk.broken is None and walk.rows == len(before)
        assert walk.last_hash == before[-1][2]
        assert _schema(conn) == schema  # indexes, triggers, sequence, buckets
        with pytest.raises(Exception, match="append-only"):
            conn.execute("UPDATE audit_log SET row_hash = NULL")
        with pytest.raises(Exception, match="append-only"):
            conn.execute("DELETE FROM audit_log")
        # the usage trigger still counts a refusal, and ids continue after the old ones
        refused = conn.one(
            "SELECT refused FROM usage_buckets WHERE agent_id = ? AND start = ?",
            (AGENT, 1_750_000_000 - 1_750_000_000 % 3600),
        )
        conn.execute(
            f"INSERT INTO audit_log ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (1_750_000_000, "REQUEST_REFUSED", "system", AGENT, None, None, "{}", "info", None),
        )
        assert conn.one(
            "SELECT refused FROM usage_buckets WHERE agent_id = ? AND start = ?",
            (AGENT, 1_750_000_000 - 1_750_000_000 % 3600),
        ) == ((refused[0] if refused else 0) + 1,)
        assert conn.one("SELECT max(id) FROM audit_log") == (before[-1][0] + 1,)


def test_an_edit_made_before_the_upgrade_is_still_named(target: str) -> None:
    """A row whose MAC was overwritten while the digests were text (with something that is
    not hex) is named at that row after the upgrade: its text is kept as bytes."""
    rows = _write_0012(target)
    with _raw(target) as conn:
        if conn.dialect == "postgresql":
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        else:
            conn.execute("DROP TRIGGER audit_log_no_update")
        victim = rows[7]
        conn.execute("UPDATE audit_log SET mac = ? WHERE id = ?", ("not a mac", victim[0]))
        if conn.dialect == "postgresql":
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
        else:
            conn.execute(
                "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )
    _upgrade(target)
    with _raw(target) as conn:
        walk = walk_chain(conn, KEY)
        assert walk.broken is not None and walk.broken.row_id == victim[0]
        assert walk.broken.kind == "forged"
        assert conn.one("SELECT mac FROM audit_log WHERE id = ?", (victim[0],)) == (b"not a mac",)


def test_upper_case_hex_is_not_made_valid_by_the_upgrade(target: str) -> None:
    """A hash rewritten in upper case (the same digest, but not what waiaas wrote) stays a
    break: only the exact lower-case form converts to the digest's bytes."""
    rows = _write_0012(target)
    victim = rows[5]
    with _raw(target) as conn:
        if conn.dialect == "postgresql":
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            conn.execute(
                "UPDATE audit_log SET row_hash = upper(row_hash) WHERE id = ?", (victim[0],)
            )
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
        else:
            conn.execute("DROP TRIGGER audit_log_no_update")
            conn.execute(
                "UPDATE audit_log SET row_hash = upper(row_hash) WHERE id = ?", (victim[0],)
            )
            conn.execute(
                "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )
    _upgrade(target)
    with _raw(target) as conn:
        walk = walk_chain(conn, KEY)
        assert walk.broken is not None and walk.broken.row_id == victim[0]
        stored = conn.one("SELECT row_hash FROM audit_log WHERE id = ?", (victim[0],))
        assert stored == (victim[2].upper().encode(),)


def test_downgrade_gives_back_the_text(target: str) -> None:
    before = _write_0012(target)
    with _raw(target) as conn:
        schema = _schema(conn)
        everything = conn.all("SELECT * FROM audit_log ORDER BY id")
    _upgrade(target)
    _downgrade(target, "0012")
    with _raw(target) as conn:
        assert conn.all("SELECT * FROM audit_log ORDER BY id") == everything
        assert _schema(conn) == schema
        assert conn.all("SELECT id, prev_hash, row_hash, mac FROM audit_log ORDER BY id") == before
    _upgrade(target)  # and up again
    with _raw(target) as conn:
        assert walk_chain(conn, KEY).broken is None
