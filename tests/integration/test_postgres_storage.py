"""The storage engine on a real PostgreSQL server: opening, migrations, units of work and
their advisory locks, error translation, redaction, the SQLite-only operations.

Every test gets a fresh schema (``tests/support/pg_schema.py``); without
``WAIAAS_TEST_POSTGRES_URL`` they are skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import inspect

from tests.support.pg_schema import libpq, pg_server, pg_url
from waiaas.db import Database, adapt_sql
from waiaas.db.migrate import current_revision, head_revision
from waiaas.errors import (
    DatabaseAuthError,
    DatabaseLockedError,
    DatabaseMissingError,
    DatabaseUnreachableError,
    InvalidInputError,
    StorageError,
)

__all__ = ["pg_server", "pg_url"]

SECRET = "s3cr3t-Pa55word-never-shown"

# wallet_state rows besides the generation counters every database has (migration 0012)
_OWN = "key NOT IN ('generation:policies', 'generation:channels')"


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = Database.open(pg_url)
    try:
        yield database
    finally:
        database.close()


def _with_password(url: str, password: str = SECRET) -> str:
    head, rest = url.split("://", 1)
    userinfo, host = rest.split("@", 1)
    user = userinfo.split(":", 1)[0]
    return f"{head}://{user}:{password}@{host}"


# --------------------------------------------------------------------------- open


def test_open_migrates_an_empty_schema_and_reopens(pg_url: str) -> None:
    db = Database.open(pg_url)
    try:
        assert db.dialect == "postgresql"
        assert db.path is None
        assert current_revision(db.engine) == head_revision()
        tables = set(inspect(db.engine).get_table_names())
        assert {"agents", "sessions", "transactions", "policies", "audit_log"} <= tables
        assert {"pending_approvals", "notification_channels", "wallet_state"} <= tables
        assert {"audit_checkpoints", "usage_buckets", "alembic_version"} <= tables
        with db.write() as uow:
            uow.state.put("probe", {"n": 1}, now=1_700_000_000)
            uow.commit()
    finally:
        db.close()
    again = Database.open(pg_url)
    try:
        assert again.fetch_one("SELECT value FROM wallet_state WHERE key = ?", ("probe",)) == (
            '{"n":1}',
        )
    finally:
        again.close()


def test_plain_postgresql_scheme_is_psycopg(pg_url: str) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    db = Database.open(plain)
    try:
        assert db.engine.url.drivername == "postgresql+psycopg"
        assert db.location.startswith("postgresql+psycopg://")
    finally:
        db.close()


def test_the_password_is_never_shown(pg_url: str) -> None:
    url = _with_password(pg_url)  # trust auth: any password is accepted
    db = Database.open(url)
    try:
        assert SECRET not in db.location and "***" in db.location
        assert SECRET not in repr(db) and SECRET not in repr(db.engine)
    finally:
        db.close()


def test_a_password_in_the_query_is_redacted_too(pg_url: str) -> None:
    db = Database.open(f"{pg_url}&password={SECRET}&sslpassword={SECRET}")
    try:
        assert SECRET not in db.location and SECRET not in repr(db)
        assert SECRET not in repr(db.engine) and SECRET not in str(db.engine.url)
        assert db.fetch_one("SELECT 1") == (1,)  # the readers connect with the same secrets
    finally:
        db.close()


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg2://u:{SECRET}@localhost/db",
        f"postgresql+asyncpg://u:{SECRET}@localhost/db",
        f"postgresql://u:{SECRET}@localhost:notaport/db",
        f"postgresql://u:{SECRET}@localhost:99999/db",
        "sqlite://",
        "sqlite:///:memory:",
    ],
)
def test_bad_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        Database.open(url)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.to_dict())


def test_unreachable_server() -> None:
    # port 1 on localhost: nothing listens there
    url = f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db?connect_timeout=2"
    with pytest.raises(DatabaseUnreachableError) as info:
        Database.open(url)
    assert SECRET not in str(info.value)
    assert info.value.path is not None and "***" in info.value.path


def test_unknown_role_is_an_auth_failure(pg_server: str) -> None:
    url = _with_password(pg_server).replace("://postgres:", "://no_such_role_waiaas:", 1)
    with pytest.raises(DatabaseAuthError) as info:
        Database.open(url)
    assert SECRET not in str(info.value)


def test_missing_database(pg_server: str) -> None:
    url = pg_server.rsplit("/", 1)[0] + "/no_such_database_waiaas"
    with pytest.raises(DatabaseMissingError) as info:
        Database.open(_with_password(url))
    assert "CREATE DATABASE" in str(info.value)
    assert SECRET not in str(info.value)


def test_missing_schema_is_named(pg_server: str) -> None:
    from tests.support.pg_schema import schema_url

    with pytest.raises(StorageError) as info:
        Database.open(schema_url(pg_server, "no_such_schema_waiaas"))
    assert "search_path" in str(info.value)


# --------------------------------------------------------------------------- schema


def test_audit_log_is_append_only(db: Database) -> None:
    with db.write() as uow:
        uow.session.connection().exec_driver_sql(
            "INSERT INTO audit_log (timestamp, event_type, actor, details) "
            "VALUES (1, 'X', 'system', '{}')"
        )
        uow.commit()
    for statement in (
        "UPDATE audit_log SET actor = 'thief'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(StorageError, match="append-only"), db.write() as uow:
            uow.session.connection().exec_driver_sql(statement)
    assert db.fetch_one("SELECT count(*), min(actor) FROM audit_log") == (1, "system")


def test_audit_ids_are_64_bit_identity(db: Database) -> None:
    row = db.fetch_one(
        "SELECT data_type, is_identity FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ? AND column_name = ?",
        ("audit_log", "id"),
    )
    assert row == ("bigint", "YES")


def test_constraints_are_enforced(db: Database) -> None:
    with pytest.raises(StorageError), db.write() as uow:
        uow.session.connection().exec_driver_sql(
            "INSERT INTO agents (id, name, chain, network, public_key, status, created_at, "
            "updated_at) VALUES ('a', 'n', 'c', 'n', 'k', 'BOGUS', 1, 1)"
        )
    with pytest.raises(StorageError), db.write() as uow:  # FK: no such agent
        uow.session.connection().exec_driver_sql(
            "INSERT INTO sessions (id, agent_id, token_hash, expires_at, created_at) "
            "VALUES ('s', 'nobody', 'h', 1, 1)"
        )


# --------------------------------------------------------------------------- reads


def test_fetch_one_is_read_only(db: Database) -> None:
    with pytest.raises(StorageError) as info:
        db.fetch_one(
            "INSERT INTO wallet_state (key, value, updated_at) VALUES (?, ?, ?)", ("k", "v", 1)
        )
    assert type(info.value).__name__ == "DatabaseReadOnlyError"


def test_adapt_sql_rewrites_placeholders_outside_literals() -> None:
    sql = "SELECT '?', \"a?\" FROM t INDEXED BY i WHERE a = ? AND b LIKE '5%' AND c % 2 = ?"
    assert adapt_sql(sql, "sqlite") == sql
    assert adapt_sql(sql, "postgresql") == (
        "SELECT '?', \"a?\" FROM t WHERE a = %s AND b LIKE '5%%' AND c %% 2 = %s"
    )


def test_unit_of_work_fetch_one_sees_its_own_writes(db: Database) -> None:
    with db.write(agent_id="a1") as uow:
        uow.state.put("mine", {"v": 2}, now=5)
        assert uow.fetch_one("SELECT updated_at FROM wallet_state WHERE key = ?", ("mine",)) == (5,)


def test_read_unit_of_work_is_one_read_only_snapshot(db: Database) -> None:
    with db.read() as uow:
        assert uow.fetch_one(f"SELECT count(*) FROM wallet_state WHERE {_OWN}") == (0,)
        with db.write() as writer:
            writer.state.put("late", {}, now=1)
            writer.commit()
        assert uow.fetch_one(f"SELECT count(*) FROM wallet_state WHERE {_OWN}") == (
            0,
        )  # same snapshot
        with pytest.raises(StorageError):
            uow.fetch_one("INSERT INTO wallet_state VALUES ('x', '{}', 1) RETURNING 1")
    assert db.fetch_one(f"SELECT count(*) FROM wallet_state WHERE {_OWN}") == (1,)


# --------------------------------------------------------------------------- locks


def _waiting_advisory_locks(url: str) -> int:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_until(predicate: object, what: str) -> None:
    import time

    assert callable(predicate)
    for _ in range(2000):
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def _hold(
    db: Database,
    agent_id: str | None,
    entered: threading.Event,
    release: threading.Event,
    log: list[str],
    name: str,
) -> threading.Thread:
    def run() -> None:
        with db.write(agent_id=agent_id) as uow:
            log.append(f"{name} in")
            entered.set()
            release.wait(30)
            uow.state.put(name, {}, now=1)
            log.append(f"{name} out")  # before the commit that releases the locks
            uow.commit()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_two_agents_do_not_wait_on_each_other(db: Database, pg_url: str) -> None:
    log: list[str] = []
    a_in, a_go = threading.Event(), threading.Event()
    a = _hold(db, "agent-a", a_in, a_go, log, "a")
    assert a_in.wait(30)
    # While a holds its agent lock, b (another agent) enters, commits and leaves.
    b_in, b_go = threading.Event(), threading.Event()
    b_go.set()
    b = _hold(db, "agent-b", b_in, b_go, log, "b")
    b.join(30)
    assert log == ["a in", "b in", "b out"]
    assert _waiting_advisory_locks(pg_url) == 0
    a_go.set()
    a.join(30)
    assert log[-1] == "a out"


def test_one_agent_is_serialised(db: Database, pg_url: str) -> None:
    log: list[str] = []
    first_in, first_go = threading.Event(), threading.Event()
    first = _hold(db, "agent-a", first_in, first_go, log, "first")
    assert first_in.wait(30)
    second_in, second_go = threading.Event(), threading.Event()
    second_go.set()
    second = _hold(db, "agent-a", second_in, second_go, log, "second")
    _wait_until(lambda: _waiting_advisory_locks(pg_url) == 1, "second waits for the agent lock")
    assert log == ["first in"]
    first_go.set()
    first.join(30)
    second.join(30)
    assert log == ["first in", "first out", "second in", "second out"]


def test_a_global_write_excludes_agents(db: Database, pg_url: str) -> None:
    log: list[str] = []
    g_in, g_go = threading.Event(), threading.Event()
    g = _hold(db, None, g_in, g_go, log, "global")
    assert g_in.wait(30)
    a_in, a_go = threading.Event(), threading.Event()
    a_go.set()
    a = _hold(db, "agent-a", a_in, a_go, log, "agent")
    _wait_until(lambda: _waiting_advisory_locks(pg_url) == 1, "the agent waits for global")
    assert log == ["global in"]
    g_go.set()
    g.join(30)
    a.join(30)
    assert log == ["global in", "global out", "agent in", "agent out"]


def test_an_agent_write_holds_off_a_global_write(db: Database, pg_url: str) -> None:
    log: list[str] = []
    a_in, a_go = threading.Event(), threading.Event()
    a = _hold(db, "agent-a", a_in, a_go, log, "agent")
    assert a_in.wait(30)
    g_in, g_go = threading.Event(), threading.Event()
    g_go.set()
    g = _hold(db, None, g_in, g_go, log, "global")
    _wait_until(lambda: _waiting_advisory_locks(pg_url) == 1, "global waits for the agent")
    assert log == ["agent in"]
    a_go.set()
    a.join(30)
    g.join(30)
    assert log == ["agent in", "agent out", "global in", "global out"]


def test_two_schemas_never_contend(pg_server: str) -> None:
    from tests.support.pg_schema import create_schema, drop_schema, schema_url

    names = [create_schema(pg_server), create_schema(pg_server)]
    dbs = [Database.open(schema_url(pg_server, n)) for n in names]
    try:
        log: list[str] = []
        g_in, g_go = threading.Event(), threading.Event()
        g = _hold(dbs[0], None, g_in, g_go, log, "one")
        assert g_in.wait(30)
        h_in, h_go = threading.Event(), threading.Event()
        h_go.set()
        h = _hold(dbs[1], None, h_in, h_go, log, "two")
        h.join(30)
        assert log == ["one in", "two in", "two out"]
        g_go.set()
        g.join(30)
    finally:
        for d in dbs:
            d.close()
        for n in names:
            drop_schema(pg_server, n)


def test_lock_timeout_becomes_database_locked(db: Database) -> None:
    from waiaas.db.uow import UnitOfWork

    log: list[str] = []
    g_in, g_go = threading.Event(), threading.Event()
    g = _hold(db, None, g_in, g_go, log, "global")
    assert g_in.wait(30)
    try:
        with pytest.raises(DatabaseLockedError), UnitOfWork(db.engine, "write", lock_timeout=0):
            pass
    finally:
        g_go.set()
        g.join(30)


# --------------------------------------------------------------------------- operations


def test_sqlite_only_operations(db: Database) -> None:
    assert db.checkpoint() == (0, 0, 0)
    assert db.integrity_check() == []
    with pytest.raises(StorageError, match="pg_dump"):
        db.backup()
    db.start_checkpointer(0.01)
    assert db._checkpointer is None


# --------------------------------------------------------------------------- health


def test_health_on_postgresql_shows_server_and_revision(pg_url: str) -> None:
    import json

    from typer.testing import CliRunner

    from waiaas.cli import app
    from waiaas.db.migrate import head_revision

    url = _with_password(pg_url)
    Database.open(url).close()
    result = CliRunner().invoke(app, ["--db", url, "health", "--json"])
    assert SECRET not in result.output
    report = json.loads(result.output)
    assert report["database"]["dialect"] == "postgresql"
    assert report["database"]["version"].split(".")[0].isdigit()
    assert "***" in report["database"]["location"]
    assert report["schema"] == {
        "revision": head_revision(),
        "head": head_revision(),
        "current": True,
    }
    assert report["checkpoint"]["wal_bytes"] == 0
    assert result.exit_code == 1  # a warning: no notification channel
    text = CliRunner().invoke(app, ["--db", url, "health"])
    assert "database: postgresql" in text.output and SECRET not in text.output
    assert f"schema: {head_revision()}" in text.output


def test_health_on_an_empty_schema_is_critical(pg_url: str) -> None:
    import json

    from typer.testing import CliRunner

    from waiaas.cli import app

    result = CliRunner().invoke(app, ["--db", pg_url, "health", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.output)["schema"]["revision"] is None


def test_health_on_an_unreachable_server(pg_server: str) -> None:
    from typer.testing import CliRunner

    from waiaas.cli import app

    url = f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db?connect_timeout=2"
    result = CliRunner().invoke(app, ["--db", url, "health"])
    assert result.exit_code == 2
    assert SECRET not in result.output


# --------------------------------------------------------------------------- the audit chain


def test_audit_appends_of_two_agents_chain_in_commit_order(db: Database, pg_url: str) -> None:
    """Agent B's unit of work runs beside agent A's, but its audit append waits for A's
    chain head (the AUDIT lock, seen waiting in pg_locks) and links to A's row."""
    a_appended, a_go = threading.Event(), threading.Event()
    b_entered, b_done = threading.Event(), threading.Event()

    def agent_a() -> None:
        with db.write(agent_id="agent-a") as uow:
            uow.audit.append("TEST_A", actor="system", now=1, agent_id="agent-a")
            a_appended.set()
            a_go.wait(30)
            uow.commit()

    def agent_b() -> None:
        with db.write(agent_id="agent-b") as uow:
            b_entered.set()
            uow.audit.append("TEST_B", actor="system", now=2, agent_id="agent-b")
            uow.commit()
        b_done.set()

    a = threading.Thread(target=agent_a)
    a.start()
    assert a_appended.wait(30)
    b = threading.Thread(target=agent_b)
    b.start()
    assert b_entered.wait(30)  # B's unit of work began while A holds its locks
    _wait_until(lambda: _waiting_advisory_locks(pg_url) == 1, "B's append waits for AUDIT")
    assert not b_done.is_set()
    a_go.set()
    a.join(30)
    b.join(30)
    assert b_done.is_set()
    rows = _chain_rows(db)
    assert [r[0][1] for r in rows] == ["TEST_A", "TEST_B"]
    _assert_one_chain(rows)  # B's row follows A's


def _chain_rows(db: Database) -> list[tuple[tuple[Any, ...], bytes | None, bytes]]:
    """``(AUDIT_COLUMNS values, prev_hash, row_hash)`` of every audit row, in id order."""
    from waiaas.db.chain import AUDIT_COLUMNS

    with db.read() as uow:
        found = (
            uow.session.connection()
            .exec_driver_sql(
                f"SELECT {', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash FROM audit_log ORDER BY id"
            )
            .fetchall()
        )
    return [(tuple(r[:-2]), r[-2], r[-1]) for r in found]


def _assert_one_chain(rows: list[tuple[tuple[Any, ...], bytes | None, bytes]]) -> None:
    """Each row's hash covers the previous row's (new rows store no prev_hash)."""
    from waiaas.db.chain import GENESIS_BYTES, row_digest

    prev = GENESIS_BYTES
    for values, stored_prev, digest in rows:
        assert stored_prev is None
        assert digest == row_digest(prev, values)
        prev = digest


def test_many_agents_appending_keep_one_chain(db: Database) -> None:
    def run(agent: str) -> None:
        for i in range(10):
            with db.write(agent_id=agent) as uow:
                uow.audit.append("TEST", actor="system", now=i, agent_id=agent)
                uow.state.put(f"{agent}-{i}", {}, now=i)
                uow.commit()

    threads = [threading.Thread(target=run, args=(f"agent-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    rows = _chain_rows(db)
    assert len(rows) == 40
    _assert_one_chain(rows)
