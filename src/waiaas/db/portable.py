"""SQL that runs on SQLite and on PostgreSQL.

Statements are written once, in the SQLite form the project has always used (``?`` or
``:name`` placeholders for the DB-API, ``INDEXED BY`` planner hints where a plan is pinned),
and turned into the PostgreSQL form here, once per statement (cached):

- :func:`dbapi_sql`: for a raw DB-API cursor: ``?`` becomes ``%s`` and ``:name`` becomes
  ``%(name)s`` (psycopg's styles), a literal ``%`` is doubled, ``INDEXED BY`` is dropped;
- :func:`text_for`: a SQLAlchemy ``text()`` of the statement for the dialect (bind
  parameters stay ``:name``; only the SQLite hints go);
- :func:`raw`: the unit of work's DB-API connection, wrapped on PostgreSQL so that
  ``execute`` / ``executemany`` take the SQLite form (on SQLite it is the plain
  ``sqlite3.Connection``: no cost on the hot paths);
- :func:`as_json`: a TEXT column holding JSON, as SQLAlchemy's JSON type (``->>`` on
  PostgreSQL needs ``CAST(... AS JSON)``; SQLite reads the text as it is).

Rules for the statements themselves (both dialects): no ``rowid``, no ``json_each`` /
``json_extract`` / ``GLOB`` / ``typeof``; booleans are summed as ``CASE WHEN ... THEN 1 ELSE 0
END``; NULL-safe comparisons are spelled ``(x IS NULL OR x != v)``; amounts are TEXT summed
in Python.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import JSON, TextClause, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from waiaas.db.engine import adapt_sql

__all__ = [
    "RawConnection",
    "as_json",
    "dbapi_sql",
    "dialect_of",
    "raw",
    "stream",
    "text_for",
    "unhinted",
]

_HINT = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)
# a quoted string or identifier (kept as is), a cast, or a named placeholder outside them
_NAMED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|:[A-Za-z_]\w*")


def dialect_of(uow: Any) -> str:
    """``"sqlite"`` or ``"postgresql"``: the dialect of a unit of work (or a session)."""
    known = getattr(uow, "dialect", None)
    if isinstance(known, str):
        return known
    session = getattr(uow, "session", uow)
    bind = session.get_bind()
    return str(bind.dialect.name)


@functools.lru_cache(maxsize=512)
def unhinted(sql: str, dialect: str) -> str:
    """``sql`` without SQLite's ``INDEXED BY`` hints on any other dialect."""
    return sql if dialect == "sqlite" else _HINT.sub("", sql)


@functools.lru_cache(maxsize=512)
def dbapi_sql(sql: str, dialect: str) -> str:
    """A DB-API statement in the SQLite form (``?`` or ``:name``) for ``dialect``.

    :func:`waiaas.db.adapt_sql` (``?`` -> ``%s``, ``%`` doubled, hints dropped), then
    ``:name`` -> ``%(name)s`` outside quotes; cached per statement.

    >>> dbapi_sql("SELECT a FROM t INDEXED BY i WHERE b = ? AND c = ':x' AND d % 2 = 0",
    ...           "postgresql")
    "SELECT a FROM t WHERE b = %s AND c = ':x' AND d %% 2 = 0"
    >>> dbapi_sql("SELECT :agent::text", "postgresql")
    'SELECT %(agent)s::text'
    """
    if dialect == "sqlite":
        return sql

    def swap(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok.startswith(":") and tok != "::":
            return f"%({tok[1:]})s"
        return tok

    return _NAMED.sub(swap, adapt_sql(sql, dialect))


@functools.lru_cache(maxsize=512)
def text_for(sql: str, dialect: str) -> TextClause:
    """``text(sql)`` for ``dialect`` (compiled once per statement and dialect)."""
    return text(unhinted(sql, dialect))


class RawConnection(Protocol):
    """What the code uses of a DB-API connection (``sqlite3.Connection`` has it)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any: ...


class _Translating:
    """A psycopg connection that takes statements in the SQLite form."""

    __slots__ = ("_conn", "_dialect")

    def __init__(self, conn: Any, dialect: str) -> None:
        self._conn = conn
        self._dialect = dialect

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = (), /) -> Any:
        return self._conn.execute(dbapi_sql(sql, self._dialect), parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        cur = self._conn.cursor()
        cur.executemany(dbapi_sql(sql, self._dialect), list(parameters))
        return cur

    def stream(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """A server-side cursor (rows arrive in batches, not all at once)."""
        cur = self._conn.cursor(name=f"waiaas_stream_{id(self):x}")
        cur.itersize = _STREAM_BATCH
        cur.execute(dbapi_sql(sql, self._dialect), parameters)
        return cur


_STREAM_BATCH = 4096


def stream(conn: Any, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    """A cursor over a long result read with ``fetchmany``: a server-side cursor on
    PostgreSQL (inside the unit of work's transaction), the plain cursor on SQLite (which
    steps through the rows as they are fetched)."""
    if isinstance(conn, _Translating):
        return conn.stream(sql, parameters)
    return conn.execute(sql, parameters)


def raw(uow: Any) -> RawConnection:
    """The DB-API connection of ``uow``'s transaction, taking SQLite-form statements.

    On SQLite this is the ``sqlite3.Connection`` itself; on PostgreSQL a thin wrapper that
    rewrites each statement once (see :func:`dbapi_sql`). Pending ORM changes are not
    flushed: call ``uow.session.flush()`` first where they matter.
    """
    conn = uow.session.connection().connection.driver_connection
    assert conn is not None
    dialect = conn.__class__.__module__.split(".", 1)[0]
    if dialect == "sqlite3":
        return conn  # type: ignore[no-any-return]
    return _Translating(conn, "postgresql")


class as_json(FunctionElement[Any]):
    """A TEXT column holding JSON, typed as JSON (``as_json(col)["key"].as_boolean()``).

    SQLite's JSON functions read the text as it is; PostgreSQL needs ``CAST(col AS JSON)``
    before ``->>``.
    """

    type = JSON()
    name = "as_json"
    inherit_cache = True


@compiles(as_json)
def _as_json_plain(element: as_json, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(as_json, "postgresql")
def _as_json_pg(element: as_json, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS JSON)"
