"""SQLite engine: path checks, the seven CORE-02 PRAGMAs, and explicit transaction control.

Every pooled connection runs CORE-02 §1.2's PRAGMAs, in the spec's order, as soon as it is
opened. pysqlite's implicit transaction handling is switched off (``isolation_level=None``) and
waiaas emits ``BEGIN`` itself, so that DDL is transactional (a failed migration rolls back
completely) and write units of work take the lock up front with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import QueuePool

from waiaas.errors import DatabaseOpenError, NotADatabaseError

__all__ = ["BEGIN_OPTION", "PRAGMAS", "check_path", "make_engine"]

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


def check_path(path: Path) -> bool:
    """Validate a database path before SQLite touches it; return whether the file exists.

    Raises:
        DatabaseOpenError: the directory is missing or the path is a directory.
        NotADatabaseError: the file exists, is not empty and is not an SQLite database.
    """
    parent = path.parent
    if not parent.is_dir():
        raise DatabaseOpenError(f"directory {str(parent)!r} does not exist", path=str(path))
    if path.is_dir():
        raise DatabaseOpenError(f"{str(path)!r} is a directory", path=str(path))
    if not path.exists():
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise DatabaseOpenError(f"cannot read {str(path)!r}: {exc.strerror}", path=str(path)) from exc
    if head and head != _SQLITE_MAGIC:
        raise NotADatabaseError(str(path))
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


def make_engine(path: Path, *, pool_size: int = 8) -> Engine:
    """Create the SQLAlchemy engine for ``path`` with PRAGMAs and explicit BEGIN handling."""
    target = str(path)

    def _connect() -> sqlite3.Connection:
        # A creator instead of a URL: any file name works, quotes and '?' included.
        return sqlite3.connect(target, check_same_thread=False, timeout=5.0)

    engine = create_engine(
        "sqlite+pysqlite://",
        creator=_connect,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=32,
        pool_timeout=60,
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine
