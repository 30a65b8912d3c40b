"""Migrations on PostgreSQL: the schema agrees with SQLite's, hosts upgrading at once are
serialised by the advisory lock, and an older revision with data upgrades without losing a row.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, inspect

from tests.support.pg_schema import libpq, pg_server, pg_url
from waiaas.db import Database, migrate
from waiaas.db.engine import lock_key, make_engine, make_pg_engine, parse_target
from waiaas.db.migrate import current_revision, head_revision

__all__ = ["pg_server", "pg_url"]

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- schema agreement


def _check_facts(sqltext: str) -> tuple[str, frozenset[str], bool]:
    """A CHECK constraint as (column, allowed literals, allows NULL), for either dialect:
    SQLite keeps ``col IN ('a', 'b')``, PostgreSQL reflects ``col = ANY (ARRAY['a'::text])``."""
    column = re.search(r"[A-Za-z_]\w*", sqltext.replace("CHECK", ""))
    assert column is not None
    literals = frozenset(re.findall(r"'([^']*)'", sqltext))
    numbers = frozenset(re.findall(r"\b(\d+)\b", sqltext)) if not literals else frozenset()
    return column.group(0), literals | numbers, "IS NULL" in sqltext.upper()


def _kind(type_: Any) -> str:
    name = type(type_).__name__.upper()
    if "INT" in name:
        return "integer"
    if "TEXT" in name or "CHAR" in name or "STRING" in name:
        return "text"
    if name in ("BLOB", "BYTEA", "LARGEBINARY"):
        return "bytes"  # the audit digests (migration 0013): BLOB on SQLite, bytea here
    return name


def _schema(engine: Engine) -> dict[str, Any]:
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        if table == "alembic_version":
            continue
        pk = tuple(insp.get_pk_constraint(table)["constrained_columns"])
        columns = {
            c["name"]: (_kind(c["type"]), bool(c["nullable"]) and c["name"] not in pk)
            for c in insp.get_columns(table)
        }
        indexes = {
            i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
            for i in insp.get_indexes(table)
            if not str(i["name"]).startswith("sqlite_autoindex")
        }
        fks = {
            (
                tuple(f["constrained_columns"]),
                f["referred_table"],
                tuple(f["referred_columns"]),
                (f.get("options") or {}).get("ondelete", "NO ACTION").upper(),
            )
            for f in insp.get_foreign_keys(table)
        }
        checks = {_check_facts(str(c["sqltext"])) for c in insp.get_check_constraints(table)}
        out[table] = {
            "pk": pk,
            "columns": columns,
            "indexes": indexes,
            "fks": fks,
            "checks": checks,
        }
    return out


#: CHECKs PostgreSQL has and SQLite does not: the spec's "boolean (0/1)" INTEGER columns are
#: SMALLINT there, with the 0/1 domain spelled out (documented in the PostgreSQL DDL file).
PG_ONLY_CHECKS = {
    "policies": {("enabled", frozenset({"0", "1"}), False)},
    "notification_channels": {("enabled", frozenset({"0", "1"}), False)},
}


def _assert_same(sqlite: dict[str, Any], pg: dict[str, Any]) -> None:
    assert sorted(sqlite) == sorted(pg)
    for table in sqlite:
        s, p = sqlite[table], pg[table]
        assert s["pk"] == p["pk"], table
        assert s["columns"] == p["columns"], table
        assert s["indexes"] == p["indexes"], table
        assert s["fks"] == p["fks"], table
        assert s["checks"] | PG_ONLY_CHECKS.get(table, set()) == p["checks"], table


def test_initial_ddl_agrees_with_the_spec(tmp_path: Path, pg_url: str) -> None:
    """Migration 0001 on both dialects: the same tables, columns, indexes, FKs, CHECKs."""
    sqlite_engine = make_engine(tmp_path / "spec.db")
    pg_engine = make_pg_engine(parse_target(pg_url).url)  # type: ignore[arg-type]
    try:
        migrate.upgrade(sqlite_engine, "spec.db", target="0001")
        migrate.upgrade(pg_engine, "pg", target="0001")
        _assert_same(_schema(sqlite_engine), _schema(pg_engine))
    finally:
        sqlite_engine.dispose()
        pg_engine.dispose()


def test_head_schema_agrees_with_sqlite(tmp_path: Path, pg_url: str) -> None:
    """Every migration on both dialects: the head schemas agree (partial indexes included)."""
    lite = Database.open(tmp_path / "head.db")
    pg = Database.open(pg_url)
    try:
        _assert_same(_schema(lite.engine), _schema(pg.engine))
        with pg.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            ).fetchall()
        where = {row[0]: row[1] for row in rows}
        assert "WHERE (severity <> 'info'::text)" in where["idx_audit_log_severity_timestamp"]
        assert "WHERE (tx_id IS NOT NULL)" in where["idx_audit_log_tx_id"]
        assert "WHERE (mac IS NULL)" in where["idx_usage_buckets_unsealed"]
        assert "POLICY_VIOLATION" in where["idx_audit_log_agent_refusals"]
        assert "WHERE (queued_at IS NOT NULL)" in where["idx_transactions_queued_at"]
        assert "'SUBMITTED'::text" in where["idx_transactions_agent_status"]
    finally:
        lite.close()
        pg.close()


def test_epoch_columns_are_64_bit(pg_url: str) -> None:
    db = Database.open(pg_url)
    try:
        with db.engine.connect() as conn:
            narrow = conn.exec_driver_sql(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND data_type = 'integer' "
                "AND (column_name LIKE '%%_at' OR column_name IN "
                "('timestamp', 'expires_at', 'required_by', 'seq', 'start'))"
            ).fetchall()
        assert narrow == []
    finally:
        db.close()


# --------------------------------------------------------------------------- concurrent upgrade

_OPENER = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from waiaas.db import Database
from waiaas.db.migrate import current_revision
db = Database.open(sys.argv[1])
print(current_revision(db.engine), flush=True)
db.close()
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return env


def _waiting(url: str) -> int:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_processes_upgrading_one_empty_schema_at_once(tmp_path: Path, pg_url: str) -> None:
    """Four processes open one empty schema while the migration lock is held by the test;
    each waits on it (seen in pg_locks); released, one migrates and the others find head."""
    go = tmp_path / "go"
    holder = psycopg.connect(libpq(pg_url), autocommit=True)
    try:
        scope = holder.execute("SELECT current_database(), current_schema()").fetchone()
        assert scope is not None
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(*scope, "migrate"),))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPENER, pg_url, str(go)],
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        go.touch()
        deadline = time.monotonic() + 120
        while _waiting(pg_url) < 4:
            assert time.monotonic() < deadline, "the openers never queued on the migration lock"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.02)
        holder.execute("COMMIT")
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        holder.close()
    assert [p.returncode for p in procs] == [0] * 4, results
    assert {out.strip() for out, _ in results} == {head_revision()}
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(head_revision(),)]


def test_processes_racing_without_help(tmp_path: Path, pg_url: str) -> None:
    """The same race with nobody holding the lock first: all succeed, one schema."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, pg_url, str(go)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    go.touch()
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, results
    assert {out.strip() for out, _ in results} == {head_revision()}


# --------------------------------------------------------------------------- upgrades with data


def _seed(engine: Engine, revision: str) -> None:
    """Rows in every table that exists at ``revision`` (raw SQL, as that revision knew it)."""
    with engine.begin() as conn:
        run = conn.exec_driver_sql
        run(
            "INSERT INTO agents (id, name, chain, network, public_key, status, created_at, "
            "updated_at) VALUES ('ag1', 'one', 'solana', 'devnet', 'pk1', 'ACTIVE', "
            "4102444800, 4102444800)"
        )
        run(
            "INSERT INTO sessions (id, agent_id, token_hash, expires_at, created_at) "
            "VALUES ('se1', 'ag1', 'h', 4102444800, 1)"
        )
        run(
            "INSERT INTO transactions (id, agent_id, session_id, chain, type, amount, status, "
            "created_at, metadata) VALUES ('tx1', 'ag1', 'se1', 'solana', 'TRANSFER', "
            "'123456789012345678901234567890', 'CONFIRMED', 4102444800, "
            '\'{"spend": {"native": "123456789012345678901234567890"}}\')'
        )
        run(
            "INSERT INTO transactions (id, agent_id, chain, type, status, created_at, "
            "metadata) VALUES ('tx2', 'ag1', 'solana', 'TRANSFER', 'FAILED', 2, 'not json')"
        )
        run(
            "INSERT INTO policies (id, agent_id, type, rules, created_at, updated_at) "
            "VALUES ('po1', 'ag1', 'SPENDING_LIMIT', '{}', 1, 1)"
        )
        run(
            "INSERT INTO pending_approvals (id, tx_id, required_by, expires_at, created_at) "
            "VALUES ('pa1', 'tx1', 1, 2, 1)"
        )
        run(
            "INSERT INTO notification_channels (id, type, config, created_at) "
            "VALUES ('ch1', 'NTFY', '{}', 1)"
        )
        for i in range(3):
            run(
                "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, details) "
                f"VALUES ({i}, 'E{i}', 'system', 'ag1', '{{}}')"
            )
        if revision >= "0005":
            run("INSERT INTO wallet_state (key, value, updated_at) VALUES ('k', '1', 4102444800)")


_COUNTS = (
    "agents",
    "sessions",
    "transactions",
    "policies",
    "pending_approvals",
    "notification_channels",
    "audit_log",
)


@pytest.mark.parametrize("revision", ["0001", "0002", "0004", "0006", "0007", "0008"])
def test_upgrade_from_an_earlier_revision_keeps_every_row(pg_url: str, revision: str) -> None:
    engine = make_pg_engine(parse_target(pg_url).url)  # type: ignore[arg-type]
    try:
        migrate.upgrade(engine, "pg", target=revision)
        assert current_revision(engine) == revision
        _seed(engine, revision)
        migrate.upgrade(engine, "pg")
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            for table in _COUNTS:
                n = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
                assert n == (3 if table == "audit_log" else 2 if table == "transactions" else 1)
            amount = conn.exec_driver_sql(
                "SELECT amount, spend FROM transactions WHERE id = 'tx1'"
            ).one()
            assert amount[0] == "123456789012345678901234567890"
            if revision < "0006":
                assert amount[1] == '{"native":"123456789012345678901234567890"}'
            hashes = conn.exec_driver_sql(
                "SELECT prev_hash, row_hash FROM audit_log ORDER BY id"
            ).fetchall()
            if revision < "0007":  # chained by 0007, in id order
                assert hashes[1][0] == hashes[0][1] and hashes[2][0] == hashes[1][1]
            assert (
                conn.exec_driver_sql("SELECT created_at FROM agents").scalar() == 4102444800
            )  # past 2038: 64-bit epochs
    finally:
        engine.dispose()


def test_a_failed_migration_leaves_the_schema_untouched(tmp_path: Path, pg_url: str) -> None:
    """A broken migration after the shipped ones: nothing of the whole upgrade stays."""
    import shutil

    from waiaas.errors import MigrationError

    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    (scripts / "versions" / "9999_broken.py").write_text(
        f'revision = "9999"\ndown_revision = "{head}"\nbranch_labels = None\n'
        "depends_on = None\n\nfrom alembic import op\n\n\ndef upgrade() -> None:\n"
        '    op.execute("CREATE TABLE half_done (x INTEGER)")\n'
        '    op.execute("SELECT no_such_function()")\n\n\ndef downgrade() -> None:\n    pass\n'
    )
    with pytest.raises(MigrationError):
        Database.open(pg_url, script_location=scripts)
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchone()
    assert tables == (0,)


def test_unknown_revision_is_schema_too_new(pg_url: str) -> None:
    from waiaas.errors import SchemaTooNewError

    Database.open(pg_url).close()
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'zzzz'")
    with pytest.raises(SchemaTooNewError):
        Database.open(pg_url)


def test_sqlite_url_opens_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = Database.open("sqlite:///rel.db")
    try:
        assert db.path == tmp_path / "rel.db" and db.dialect == "sqlite"
    finally:
        db.close()
    db = Database.open(f"sqlite:///{tmp_path}/abs.db")
    try:
        assert db.path == tmp_path / "abs.db"
        assert db.location == str(tmp_path / "abs.db")
    finally:
        db.close()


_ = create_engine  # re-exported for readers comparing with the SQLite schema test
