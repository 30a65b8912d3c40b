"""Upgrades on both dialects from every earlier revision, with rows in every table: nothing is
lost. A database (an SQLite file, or a fresh PostgreSQL schema on the tests' server) is
migrated to revision R, filled with CORE-02 rows written by a raw connection (as the waiaas
of revision R would have left them), then opened: it reaches the head and every row reads
back identical on the columns it had. Opening an empty schema (a new server) reaches the head
too, and a second open changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory

from tests.support.pg_schema import create_schema, drop_schema, schema_url
from tests.support.rawdb import raw_connect
from tests.unit.db.test_db_migrations import DATA
from waiaas.db import Database, migrate
from waiaas.db.engine import make_engine, make_pg_engine, parse_target

STATE = [("migration-test", '{"kept":true}', 123)]  # wallet_state (revision 0005 on)


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


EARLIER = _revisions()[:-1]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that does not exist yet: an SQLite path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "wallet.db")
        return
    server = request.getfixturevalue("postgres_url")
    name = create_schema(server, prefix="mig")
    try:
        yield schema_url(server, name)
    finally:
        drop_schema(server, name)


def _engine(target: str) -> Any:
    parsed = parse_target(target)
    if target.startswith("postgresql"):
        return make_pg_engine(parsed.url)  # type: ignore[attr-defined]
    return make_engine(Path(target))


def _at_revision(target: str, revision: str) -> None:
    if not target.startswith("postgresql"):
        Path(target).touch(mode=0o600)
    engine = _engine(target)
    try:
        migrate.upgrade(engine, target, target=revision)
        assert migrate.current_revision(engine) == revision
    finally:
        engine.dispose()


def _raw(target: str) -> Any:
    if target.startswith("postgresql"):
        import psycopg

        from tests.support.pg_schema import libpq
        from tests.support.rawdb import RawDb

        return RawDb(psycopg.connect(libpq(target), autocommit=True), "postgresql")
    return raw_connect(target)


def _columns(conn: Any, table: str) -> list[str]:
    if conn.dialect == "postgresql":
        rows = conn.all(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_schema = current_schema() ORDER BY ordinal_position",
            (table,),
        )
        return [r[0] for r in rows]
    return [r[1] for r in conn.all(f"PRAGMA table_info({table})")]


# the columns of CORE-02's seven tables at revision 0001, in the order of DATA's tuples
FIRST_COLUMNS: dict[str, list[str]] = {}


@pytest.fixture(scope="module", autouse=True)
def _first_columns(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Read once from an SQLite file at 0001 (the columns are the same on both dialects)."""
    probe = tmp_path_factory.mktemp("probe") / "at-0001.db"
    _at_revision(str(probe), _revisions()[0])
    with raw_connect(probe) as conn:
        for table in DATA:
            FIRST_COLUMNS[table] = _columns(conn, table)


def _fill(target: str, revision: str) -> None:
    with _raw(target) as conn:
        for table, rows in DATA.items():
            cols = FIRST_COLUMNS[table]
            marks = ", ".join("?" * len(cols))
            for row in rows:
                conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", row)
        if "wallet_state" in _tables(conn):
            for row in STATE:
                conn.execute(
                    "INSERT INTO wallet_state (key, value, updated_at) VALUES (?, ?, ?)", row
                )


def _tables(conn: Any) -> set[str]:
    if conn.dialect == "postgresql":
        rows = conn.all(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    else:
        rows = conn.all("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


def _contents(target: str) -> dict[str, list[tuple[Any, ...]]]:
    with _raw(target) as conn:
        out = {}
        for table in DATA:
            cols = FIRST_COLUMNS[table]
            out[table] = conn.all(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {cols[0]}")
        if "wallet_state" in _tables(conn):
            out["wallet_state"] = conn.all(
                "SELECT key, value, updated_at FROM wallet_state WHERE key = ?", (STATE[0][0],)
            )
        return out


def _open(target: str) -> None:
    # an sqlite: URL, so --backend=postgresql (which moves paths to schemas) leaves it alone
    Database.open(target if target.startswith("postgresql") else f"sqlite:///{target}").close()


@pytest.mark.parametrize("revision", EARLIER)
def test_every_earlier_revision_upgrades_with_every_row(target: str, revision: str) -> None:
    """Revision R with rows in every table -> head on open; every row identical."""
    _at_revision(target, revision)
    _fill(target, revision)
    before = _contents(target)
    assert {t: sorted(r) for t, r in before.items() if t in DATA} == {
        t: sorted(r) for t, r in DATA.items()
    }
    _open(target)
    engine = _engine(target)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
    after = _contents(target)
    expected_state = before.get("wallet_state", [])
    assert after.pop("wallet_state") == [tuple(r) for r in expected_state]
    before.pop("wallet_state", None)
    assert after == before
    _open(target)  # a second open is a no-op
    assert {k: v for k, v in _contents(target).items() if k in DATA} == before


def test_an_empty_database_reaches_the_head(target: str) -> None:
    """A new server (an empty schema) or a new file: one open creates the head schema."""
    _open(target)
    engine = _engine(target)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
    with _raw(target) as conn:
        assert set(DATA) | {"wallet_state"} <= _tables(conn)
