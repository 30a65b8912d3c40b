"""A plain DB-API connection to a wallet's database, bypassing waiaas, on either backend.

Tests that read or tamper with rows behind the library's back (what a thief with write
access to the database can do) use :func:`raw_connect`: ``sqlite3`` on the file, or, under
``--backend=postgresql``, ``psycopg`` on the schema the path was redirected to. Statements use
``?`` placeholders on both (rewritten to ``%s`` for psycopg).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from tests.support import pg_redirect


class RawDb:
    """One autocommit-per-statement connection (``commit()`` ends an explicit batch)."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        """Run one statement; returns the cursor (``fetchone``/``fetchall``)."""
        if self.dialect == "postgresql":
            return self.conn.execute(sql.replace("?", "%s"), tuple(params))
        return self.conn.execute(sql, tuple(params))

    def all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of one query, as tuples."""
        return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one query, or ``None``."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    def dicts(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        """Every row of one query, as ``{column: value}``."""
        cursor = self.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RawDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _engine_of(target: object) -> Any:
    """The SQLAlchemy engine of a Wallet or Database, else ``None``."""
    db = getattr(target, "_db", target)  # a Wallet holds its Database in _db
    return getattr(db, "engine", None)


def target_of(db: object) -> str:
    """What opens ``db`` (a Database or Wallet) again from another process: its SQLite path,
    or its PostgreSQL URL (with the password: for the tests' own servers only)."""
    engine = _engine_of(db)
    if engine is not None and engine.dialect.name == "postgresql":
        return str(engine.url.render_as_string(hide_password=False))
    database: Any = getattr(db, "_db", db)
    return str(database.path)


def raw_connect(target: object, *, autocommit: bool = True) -> RawDb:
    """A raw connection to a wallet's database: ``target`` is a :class:`waiaas.Wallet`, a
    :class:`waiaas.db.Database` (their own database, on either backend) or a path (its
    SQLite file, or the schema the path goes to under ``--backend=postgresql``)."""
    engine = _engine_of(target)
    if engine is not None:
        if engine.dialect.name == "postgresql":
            import psycopg

            url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            return RawDb(psycopg.connect(url, autocommit=autocommit), "postgresql")
        database: Any = getattr(target, "_db", target)
        target = database.path  # SQLite: the file
    assert isinstance(target, str | os.PathLike), target
    if isinstance(target, str) and target.startswith("postgresql"):
        import psycopg

        url = target.replace("postgresql+psycopg://", "postgresql://", 1)
        return RawDb(psycopg.connect(url, autocommit=autocommit), "postgresql")
    if pg_redirect.active() and pg_redirect.redirectable(target) is not None:
        import psycopg

        from tests.support.postgres import server_url

        schema = pg_redirect.schema_for(Path(target).expanduser().absolute())
        url = pg_redirect.url_with_schema(server_url(), schema)
        url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        return RawDb(psycopg.connect(url, autocommit=autocommit), "postgresql")
    conn = sqlite3.connect(target, isolation_level=None if autocommit else "DEFERRED")
    return RawDb(conn, "sqlite")
