"""Opening a database: the seven PRAGMAs on every connection, and refusing bad paths."""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from waiaas.db import Database, migrate
from waiaas.db.engine import PRAGMAS
from waiaas.errors import (
    DatabaseOpenError,
    InvalidInputError,
    NotADatabaseError,
    SchemaTooNewError,
    StorageError,
)

# CORE-02 §1.2: "run these PRAGMAs in this order right after connecting".
SPEC_PRAGMAS = (
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    ("busy_timeout", "5000"),
    ("cache_size", "-64000"),
    ("mmap_size", "268435456"),
    ("temp_store", "MEMORY"),
)

# What SQLite reports back for them.
EXPECTED_VALUES = {
    "journal_mode": "wal",
    "synchronous": 1,
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "cache_size": -64000,
    "mmap_size": 268435456,
    "temp_store": 2,
}


def _read_pragmas(raw: sqlite3.Connection) -> dict[str, Any]:
    return {name: raw.execute(f"PRAGMA {name}").fetchone()[0] for name in EXPECTED_VALUES}


def test_pragmas_are_the_spec_s_in_the_spec_s_order() -> None:
    """waiaas.db.engine.PRAGMAS is CORE-02 §1.2's list, in its order."""
    assert PRAGMAS == SPEC_PRAGMAS


@pytest.mark.sqlite_only  # SQLite's PRAGMAs and WAL file
def test_every_new_pooled_connection_runs_the_pragmas_in_order(db: Database) -> None:
    """Connections made after open execute exactly the seven PRAGMAs first, in order."""
    executed: dict[int, list[str]] = defaultdict(list)

    def trace(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.set_trace_callback(executed[id(dbapi_conn)].append)

    event.listen(db.engine, "connect", trace, insert=True)  # before waiaas's own listener
    db.engine.dispose()
    conns = [db.engine.connect() for _ in range(4)]  # all checked out: four new connections
    try:
        assert len(executed) == 4
        for statements in executed.values():
            assert statements[:7] == [f"PRAGMA {name} = {value}" for name, value in SPEC_PRAGMAS]
        for conn in conns:
            raw = conn.connection.driver_connection
            assert isinstance(raw, sqlite3.Connection)
            assert _read_pragmas(raw) == EXPECTED_VALUES
    finally:
        for conn in conns:
            conn.close()
        event.remove(db.engine, "connect", trace)


@pytest.mark.sqlite_only  # SQLite's PRAGMAs and WAL file
def test_pragmas_hold_inside_units_of_work_and_after_migration(db: Database) -> None:
    """A write and a read unit of work see all seven values (foreign keys back ON)."""
    for factory in (db.write, db.read):
        with factory() as uow:
            raw = uow.session.connection().connection.driver_connection
            assert isinstance(raw, sqlite3.Connection)
            assert _read_pragmas(raw) == EXPECTED_VALUES


@pytest.mark.sqlite_only  # SQLite's PRAGMAs and WAL file
def test_wal_mode_is_persistent_in_the_file(db: Database, db_path: Path) -> None:
    """The file itself is in WAL mode (a plain sqlite3 connection sees it too)."""
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


@pytest.mark.sqlite_only  # the SQLite file itself
def test_new_file_is_created_at_head(db_path: Path) -> None:
    """Opening a path that does not exist creates the file at the newest revision."""
    assert not db_path.exists()
    db = Database.open(db_path)
    try:
        assert db_path.is_file()
        assert migrate.current_revision(db.engine) == migrate.head_revision() == "0016"
    finally:
        db.close()
    assert db.closed


@pytest.mark.sqlite_only  # the SQLite file itself
def test_reopening_is_a_no_op(db_path: Path, file_digest: Callable[[Path], str]) -> None:
    """Opening a head database again changes nothing in the file."""
    Database.open(db_path).close()
    before = file_digest(db_path)
    Database.open(db_path).close()
    assert file_digest(db_path) == before


def test_missing_directory_is_refused_and_nothing_created(tmp_path: Path) -> None:
    """A path in a directory that does not exist raises DatabaseOpenError; no dir appears."""
    path = tmp_path / "nope" / "wallet.db"
    with pytest.raises(DatabaseOpenError) as err:
        Database.open(path)
    assert err.value.path == str(path)
    assert "does not exist" in str(err.value)
    assert not (tmp_path / "nope").exists()
    assert list(tmp_path.iterdir()) == []


def test_directory_path_is_refused(tmp_path: Path) -> None:
    """A directory given as the database path raises DatabaseOpenError."""
    with pytest.raises(DatabaseOpenError, match="is a directory"):
        Database.open(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"hello, this is a text file\n" * 40, id="text"),
        pytest.param(random.Random(7).randbytes(8192), id="random-bytes"),
        pytest.param(
            b"SQLite format 3\x00" + random.Random(8).randbytes(8192),
            id="sqlite-magic-then-garbage",
        ),
    ],
)
def test_not_a_database_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    """A file that is not SQLite raises NotADatabaseError and its bytes stay the same."""
    path = tmp_path / "wallet.db"
    path.write_bytes(content)
    with pytest.raises(NotADatabaseError) as err:
        Database.open(path)
    assert err.value.path == str(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wallet.db"]


@pytest.mark.sqlite_only  # the SQLite file itself
def test_schema_too_new_is_refused_and_left_untouched(
    db_path: Path, file_digest: Callable[[Path], str]
) -> None:
    """A database stamped with an unknown revision raises SchemaTooNewError, unchanged."""
    Database.open(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    raw.commit()
    raw.close()
    before = file_digest(db_path)
    with pytest.raises(SchemaTooNewError) as err:
        Database.open(db_path)
    assert err.value.found == "0099_from_the_future"
    assert err.value.known == migrate.head_revision()
    assert err.value.code == "SCHEMA_TOO_NEW"
    assert file_digest(db_path) == before
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("0099_from_the_future",)
        ]
    finally:
        raw.close()


@pytest.mark.parametrize("bad", ["", "   ", 42, None])
def test_path_must_be_a_path(bad: Any) -> None:
    """A blank or non-path argument raises InvalidInputError naming the field."""
    with pytest.raises(InvalidInputError) as err:
        Database.open(bad)
    assert err.value.field == "path"


def test_closed_database_refuses_work(db_path: Path) -> None:
    """After close(), units of work and operations raise StorageError; close is idempotent."""
    db = Database.open(db_path)
    db.close()
    db.close()
    for call in (db.write, db.read, db.checkpoint, db.backup):
        with pytest.raises(StorageError, match="closed"):
            call()


@pytest.mark.sqlite_only  # the SQLite file itself
def test_repr_names_only_the_path(db: Database, db_path: Path) -> None:
    """The repr shows the path and nothing else."""
    assert repr(db) == f"Database(path={str(db_path)!r})"


@pytest.mark.sqlite_only  # the SQLite file itself
def test_path_with_quotes_and_question_mark_works(tmp_path: Path) -> None:
    """A file name with quotes, '?', '#' and spaces is used literally (no URI parsing)."""
    path = tmp_path / 'we\'ird "name"?mode=ro#x.db'
    db = Database.open(path)
    try:
        with db.write() as uow:
            uow.state.put("k", {"v": 1}, now=1)
            uow.commit()
    finally:
        db.close()
    assert path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
