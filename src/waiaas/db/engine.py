"""SQLite engine: path checks, the seven CORE-02 PRAGMAs, and explicit transaction control.

Every pooled connection runs CORE-02 §1.2's PRAGMAs, in the spec's order, as soon as it is
opened. pysqlite's implicit transaction handling is switched off (``isolation_level=None``) and
waiaas emits ``BEGIN`` itself, so that DDL is transactional (a failed migration rolls back
completely) and write units of work take the lock up front with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.interfaces import ReflectedForeignKeyConstraint
from sqlalchemy.pool import QueuePool

from waiaas.db import faults
from waiaas.errors import (
    DatabaseOpenError,
    DatabaseReadOnlyError,
    InvalidInputError,
    NotADatabaseError,
)

__all__ = ["BEGIN_OPTION", "PRAGMAS", "check_path", "connect_reader", "make_engine"]

# CORE-02 §1.2, in this order.
PRAGMAS: tuple[tuple[str, str], ...] = (
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    ("busy_timeout", "5000"),
    ("cache_size", "-64000"),
    ("mmap_size", "268435456"),
    ("temp_store", "MEMORY"),
)

BEGIN_OPTION = "waiaas_begin"
"""Connection execution option naming the BEGIN flavour: DEFERRED (default) or IMMEDIATE."""

_SQLITE_MAGIC = b"SQLite format 3\x00"


_NAME_MAX = 255


def check_path(path: Path) -> bool:
    """Validate a database path before SQLite touches it; return whether the file exists.

    Only ``stat`` and a non-blocking read of the header are used, so a FIFO, a device or a
    socket at the path is refused without ever blocking.

    Raises:
        InvalidInputError: the path holds a NUL character, or a name longer than the file
            system allows.
        DatabaseOpenError: the directory is missing, the path is a directory or not a
            regular file, or it cannot be read.
        DatabaseReadOnlyError: the file, or the directory that must hold its WAL files,
            cannot be written by this process.
        NotADatabaseError: the file exists, is not empty and is not an SQLite database.
    """
    text = _check_name(path)
    parent = path.parent
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise InvalidInputError("path is too long for the file system", field="path") from None
        if exc.errno == errno.ENOTDIR:
            raise DatabaseOpenError(f"a parent of {text!r} is not a directory", path=text) from None
        raise DatabaseOpenError(f"cannot stat {text!r}: {exc.strerror}", path=text) from None
    if st is None:
        if not parent.is_dir():
            raise DatabaseOpenError(f"directory {str(parent)!r} does not exist", path=text)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise DatabaseReadOnlyError(
                f"cannot create {text!r}: its directory is not writable",
                operation="open",
                path=text,
            )
        return False
    return _check_existing(path, st)


def _check_name(path: Path) -> str:
    """The path as text, if the file system could ever take it (no NUL, encodable, names
    within NAME_MAX)."""
    text = str(path)
    if "\x00" in text:
        raise InvalidInputError("path must not contain a NUL character", field="path")
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        raise InvalidInputError(
            "path cannot be encoded for the file system (a lone surrogate?)", field="path"
        ) from None
    if any(len(os.fsencode(part)) > _NAME_MAX for part in path.parts):
        raise InvalidInputError(f"path has a name longer than {_NAME_MAX} bytes", field="path")
    return text


def _check_existing(path: Path, st: os.stat_result) -> bool:
    """An existing path: a regular, writable SQLite file (or an empty one) whose WAL files
    can be written too. Returns whether it has content."""
    text, parent = str(path), path.parent
    if stat.S_ISDIR(st.st_mode):
        raise DatabaseOpenError(f"{text!r} is a directory", path=text)
    if not stat.S_ISREG(st.st_mode):
        raise DatabaseOpenError(
            f"{text!r} is not a regular file (a FIFO, device or socket)", path=text
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            head = os.read(fd, len(_SQLITE_MAGIC))
        finally:
            os.close(fd)
    except OSError as exc:
        raise DatabaseOpenError(f"cannot read {text!r}: {exc.strerror}", path=text) from exc
    if head and head != _SQLITE_MAGIC:
        raise NotADatabaseError(text)
    if not os.access(path, os.W_OK):
        raise DatabaseReadOnlyError(
            f"{text!r} is read-only for this process; make it writable (waiaas records "
            "every action in it)",
            operation="open",
            path=text,
        )
    for suffix in ("-wal", "-shm"):
        side = Path(f"{text}{suffix}")
        if side.exists() and not os.access(side, os.W_OK):
            raise DatabaseReadOnlyError(
                f"{str(side)!r} is read-only for this process", operation="open", path=text
            )
    if not os.access(parent, os.W_OK | os.X_OK) and not Path(f"{text}-wal").exists():
        raise DatabaseReadOnlyError(
            f"the directory of {text!r} is not writable (SQLite needs it for the WAL file)",
            operation="open",
            path=text,
        )
    return bool(head)


def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # waiaas emits BEGIN itself (see module docstring)
    cur = dbapi_conn.cursor()
    try:
        for name, value in PRAGMAS:
            cur.execute(f"PRAGMA {name} = {value}")
    finally:
        cur.close()


def _on_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
    if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
        raise ValueError(f"unknown BEGIN mode {mode!r}")
    conn.exec_driver_sql(f"BEGIN {mode}")


class _SQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite, with foreign-key reflection that also sees column-level ``ON DELETE``.

    SQLAlchemy reads a foreign key's ``ON DELETE`` / ``ON UPDATE`` actions only from
    table-level ``FOREIGN KEY (...) REFERENCES`` clauses; CORE-02's DDL writes them on the
    column (``agent_id TEXT REFERENCES agents(id) ON DELETE CASCADE``), so without this the
    actions reflect as missing and alembic's autogenerate compare reports every such key as
    changed. ``PRAGMA foreign_key_list`` knows the actions either way; fill them in from it.
    """

    supports_statement_cache = True

    def get_foreign_keys(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[ReflectedForeignKeyConstraint]:
        fks = [
            cast(ReflectedForeignKeyConstraint, {**fk, "options": dict(fk.get("options") or {})})
            for fk in super().get_foreign_keys(  # type: ignore[no-untyped-call]
                connection, table_name, schema=schema, **kw
            )
        ]
        if all(fk["options"] for fk in fks):
            return fks
        quote = self.identifier_preparer.quote_identifier
        prefix = f"{quote(schema)}." if schema else ""
        rows = connection.exec_driver_sql(
            f"PRAGMA {prefix}foreign_key_list({quote(table_name)})"
        ).fetchall()
        # row: id, seq, table, from, to, on_update, on_delete, match
        by_id: dict[int, tuple[list[str], str, str, str]] = {}
        for row in rows:
            by_id.setdefault(row[0], ([], row[2], row[5], row[6]))[0].append(row[3])
        actions = {(tuple(c), t): (u, d) for c, t, u, d in by_id.values()}
        for fk in fks:
            if fk["options"]:
                continue
            found = actions.get((tuple(fk["constrained_columns"]), fk["referred_table"]))
            if found is None:
                continue
            on_update, on_delete = found
            if on_delete and on_delete != "NO ACTION":
                fk["options"]["ondelete"] = on_delete
            if on_update and on_update != "NO ACTION":
                fk["options"]["onupdate"] = on_update
        return fks


registry.register("sqlite.waiaas", __name__, "_SQLiteDialect")


def connect_reader(path: Path) -> sqlite3.Connection:
    """A plain, read-only ``sqlite3`` connection with the CORE-02 PRAGMAs (``query_only`` on).

    Autocommit: each statement reads the newest committed state (a WAL snapshot of its
    own). ``Database.fetch_one`` keeps a few for single-row reads on hot paths, where a
    pooled SQLAlchemy connection and a unit of work would cost far more than the read.
    """
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=5.0)
    try:
        _on_connect(conn, None)
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def make_engine(path: Path, *, pool_size: int = 8) -> Engine:
    """Create the SQLAlchemy engine for ``path`` with PRAGMAs and explicit BEGIN handling."""
    target = str(path)

    def _connect() -> sqlite3.Connection:
        # A creator instead of a URL: any file name works, quotes and '?' included.
        return sqlite3.connect(target, check_same_thread=False, timeout=5.0)

    engine = create_engine(
        "sqlite+waiaas://",
        creator=_connect,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=32,
        pool_timeout=60,
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    faults.install(engine, target)
    return engine
