"""SQLite engine: path checks, the seven CORE-02 PRAGMAs, and explicit transaction control.

Every pooled connection runs CORE-02 §1.2's PRAGMAs, in the spec's order, as soon as it is
opened. pysqlite's implicit transaction handling is switched off (``isolation_level=None``) and
waiaas emits ``BEGIN`` itself, so that DDL is transactional (a failed migration rolls back
completely) and write units of work take the lock up front with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import sqlite3
import stat
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.interfaces import ReflectedForeignKeyConstraint
from sqlalchemy.pool import PoolProxiedConnection, QueuePool

from waiaas.db import faults
from waiaas.errors import (
    DatabaseOpenError,
    DatabaseReadOnlyError,
    InvalidInputError,
    NotADatabaseError,
)

__all__ = [
    "AGENT_OPTION",
    "BEGIN_OPTION",
    "JOINED",
    "POSTGRESQL",
    "PRAGMAS",
    "SQLITE",
    "Target",
    "adapt_sql",
    "begin_dbapi",
    "check_path",
    "connect_reader",
    "location_of",
    "lock_key",
    "make_engine",
    "make_pg_engine",
    "parse_target",
    "pg_begin_sql",
    "redact",
]

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

JOINED = "JOINED"
"""``BEGIN_OPTION`` of a connection whose transaction was begun on its DB-API connection
already (:func:`begin_dbapi`): its ``begin`` emits nothing."""

#: each engine's display location: the SQLite file, or the redacted PostgreSQL URL
_LOCATIONS: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()

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


def _on_begin(path: str) -> Any:
    """The ``begin`` listener of the engine of ``path``: ``BEGIN <mode>`` on the DB-API
    connection itself (one statement per unit of work: not worth SQLAlchemy's execution
    path), its failure translated as the engine's own are (:func:`faults.install`)."""

    def on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        if mode == JOINED:
            return
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"unknown BEGIN mode {mode!r}")
        sql = f"BEGIN {mode}"
        try:
            conn.connection.driver_connection.execute(sql).close()
        except sqlite3.Error as exc:
            raise faults.translate(exc, operation="begin", path=path, statement=sql) from exc

    return on_begin


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
    event.listen(engine, "begin", _on_begin(target))
    faults.install(engine, target)
    _LOCATIONS[engine] = target
    return engine


# --------------------------------------------------------------------------- PostgreSQL

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

#: ``BEGIN_OPTION`` values understood on PostgreSQL (besides SQLite's DEFERRED/IMMEDIATE,
#: which mean a plain BEGIN and a global write lock there).
PG_READ = "READ"
PG_AGENT = "AGENT"
PG_MIGRATE = "MIGRATE"
AGENT_OPTION = "waiaas_agent"
"""Connection execution option naming the agent a PostgreSQL write unit of work locks."""

#: How long one PostgreSQL lock wait may last before it fails with ``55P03`` (translated to
#: :class:`DatabaseLockedError`; units of work retry until their own deadline), like
#: SQLite's ``busy_timeout``.
PG_LOCK_TIMEOUT_MS = 5000
#: The migration lock waits this long: another host may be applying a long migration.
PG_MIGRATE_LOCK_TIMEOUT_MS = 600_000

_LOCK_NAMESPACE = "waiaas/v1"
_SCOPE = "waiaas_scope"  # connection-record info key: (current_database(), current_schema())


@dataclass(frozen=True)
class Target:
    """Where a database lives: an SQLite file or a PostgreSQL URL (see :func:`parse_target`).

    Attributes:
        dialect: ``"sqlite"`` or ``"postgresql"``.
        path: the SQLite file (absolute); ``None`` on PostgreSQL.
        url: the PostgreSQL URL (``postgresql+psycopg``); ``None`` on SQLite.
        location: a display string: the path, or the URL with any password as ``***``.
    """

    dialect: str
    path: Path | None
    url: URL | None = field(repr=False)
    location: str
    connect_args: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Secrets taken out of the URL's query (``sslpassword``...), passed to psycopg apart,
    so the URL an engine keeps (and shows) holds none."""


_PG_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")
_SQLITE_SCHEMES = ("sqlite:///", "sqlite+pysqlite:///")


def is_url(target: object) -> bool:
    """Whether ``target`` is a database URL (``postgresql://``, ``sqlite:///``...)."""
    if not isinstance(target, str):
        return False
    head = target.lstrip().lower()
    return head.startswith(_PG_SCHEMES + _SQLITE_SCHEMES) or head.startswith(
        ("postgresql+", "sqlite:", "sqlite+")
    )


def redact(url: URL) -> str:
    """``url`` as text with its password (and any ``*password*`` query parameter) as ``***``."""
    query = {k: ("***" if "password" in k.lower() else v) for k, v in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True)


def parse_target(target: str | os.PathLike[str]) -> Target:
    """Classify what ``Database.open`` was given.

    * ``postgresql://…`` or ``postgresql+psycopg://…`` (also ``postgres://``): PostgreSQL
      through psycopg 3 (the plain forms are rewritten to ``+psycopg``);
    * ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's convention:
      what follows ``sqlite:///`` is the path);
    * anything else: a file path, as always.

    Raises:
        InvalidInputError: the URL is malformed, names another driver (psycopg2, asyncpg...)
            or an in-memory SQLite database. The message never contains the URL's password.
    """
    if isinstance(target, bool) or not isinstance(target, str | os.PathLike):
        raise InvalidInputError("path must be a file path or a database URL", field="path")
    text = os.fspath(target)
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("path must be a non-empty file path or URL", field="path")
    if not is_url(text):
        return Target(SQLITE, _absolute(text), None, "")
    lowered = text.lstrip().lower()
    if lowered.startswith(("sqlite:", "sqlite+")):
        for scheme in _SQLITE_SCHEMES:
            if lowered.startswith(scheme):
                rest = text.lstrip()[len(scheme) :]
                if not rest or rest == ":memory:":
                    break
                return Target(SQLITE, _absolute(rest), None, "")
        raise InvalidInputError(
            "an sqlite URL must name a file: sqlite:///relative.db or sqlite:////abs/path.db "
            "(in-memory databases are not supported)",
            field="path",
        )
    return _pg_target(text.strip())


def _absolute(text: str) -> Path:
    if "\x00" in text:
        raise InvalidInputError("path must not contain a NUL character", field="path")
    try:
        return Path(text).expanduser().absolute()
    except (TypeError, ValueError, OSError, RuntimeError) as exc:
        raise InvalidInputError(f"path is not usable: {type(exc).__name__}", field="path") from None


def _pg_target(text: str) -> Target:
    try:
        url = make_url(text)
    except Exception:  # ArgumentError, ValueError (bad port): the text may hold a password
        raise InvalidInputError(
            "the PostgreSQL URL is malformed; expected "
            "postgresql+psycopg://user:password@host:port/database",
            field="path",
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername != "postgresql+psycopg":
        raise InvalidInputError(
            f"unsupported PostgreSQL driver {url.drivername!r}: waiaas uses psycopg 3 "
            "(postgresql+psycopg://...)",
            field="path",
        )
    try:
        _ = url.port  # parsed lazily by some SQLAlchemy versions
        if url.port is not None and not 0 < int(url.port) < 65536:
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidInputError("the PostgreSQL URL has an invalid port", field="path") from None
    # A password in the query string would be shown by SQLAlchemy's URL repr: move it to
    # the userinfo (which SQLAlchemy hides) or, for other secrets, out of the URL entirely.
    secrets = {k: v for k, v in url.query.items() if "password" in k.lower()}
    if secrets:
        url = url.difference_update_query(list(secrets))
        given = secrets.pop("password", None)
        if given is not None and url.password is None:
            url = url.set(password=given if isinstance(given, str) else given[-1])
    connect_args = {k: (v if isinstance(v, str) else v[-1]) for k, v in secrets.items()}
    return Target(POSTGRESQL, None, url, redact(url), connect_args)


def lock_key(database: str, schema: str, name: str) -> int:
    """The 64-bit advisory-lock key of ``name`` in one database and schema.

    A hash of (namespace, database, schema, name), so two wallets in two schemas (or two
    databases of one server) never contend for a lock.
    """
    digest = hashlib.blake2b(
        "\x00".join((_LOCK_NAMESPACE, database, schema, name)).encode("utf-8"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def scope_of(conn: Any) -> tuple[str, str]:
    """``(current_database(), current_schema())`` of a pooled PostgreSQL connection (a
    SQLAlchemy connection, or the pool's own proxy of the DB-API connection)."""
    if isinstance(conn, PoolProxiedConnection):
        info = conn.info
    else:
        info = conn.connection.info if hasattr(conn, "connection") else conn.info
    scope = info.get(_SCOPE)
    assert scope is not None, "not a waiaas PostgreSQL connection"
    return cast(tuple[str, str], scope)


def _pg_on_connect(location: str) -> Any:
    def on_connect(dbapi_conn: Any, record: Any) -> None:
        # waiaas emits BEGIN itself (as on SQLite): each unit of work names its isolation and
        # takes its advisory locks as the first statements of its transaction.
        dbapi_conn.autocommit = True
        row = dbapi_conn.execute(
            "SELECT current_database(), current_schema(), set_config('lock_timeout', %s, false)",
            (f"{PG_LOCK_TIMEOUT_MS}ms",),
        ).fetchone()
        if row is None or row[1] is None:
            raise DatabaseOpenError(
                f"no schema of the connection's search_path exists ({location}); create it "
                "first (CREATE SCHEMA ...) or fix options=-csearch_path in the URL",
                path=location,
            )
        record.info[_SCOPE] = (str(row[0]), str(row[1]))

    return on_connect


def pg_begin_sql(mode: str, scope: tuple[str, str], agent_id: str | None = None) -> str:
    """The BEGIN statement (and advisory locks) a PostgreSQL unit of work starts with.

    * ``READ``: ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`` (one snapshot);
    * ``IMMEDIATE`` (a global write): READ COMMITTED and the GLOBAL lock, exclusive;
    * ``AGENT``: READ COMMITTED, GLOBAL shared, then the agent's lock, exclusive;
    * ``MIGRATE``: the migration lock (with a long lock timeout);
    * ``DEFERRED``: a plain ``BEGIN``.
    """
    db, schema = scope
    if mode == PG_READ:
        return "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    if mode == "DEFERRED":
        return "BEGIN"
    if mode in ("IMMEDIATE", "EXCLUSIVE"):
        return f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(db, schema, 'global')})"
    if mode == PG_AGENT:
        if agent_id is None:
            raise ValueError("an AGENT unit of work needs an agent id")
        return (
            f"BEGIN; SELECT pg_advisory_xact_lock_shared({lock_key(db, schema, 'global')}), "
            f"pg_advisory_xact_lock({lock_key(db, schema, 'agent:' + agent_id)})"
        )
    if mode == PG_MIGRATE:
        return (
            f"BEGIN; SET LOCAL lock_timeout = '{PG_MIGRATE_LOCK_TIMEOUT_MS}ms'; "
            f"SELECT pg_advisory_xact_lock({lock_key(db, schema, 'migrate')}); "
            f"SET LOCAL lock_timeout = '{PG_LOCK_TIMEOUT_MS}ms'"
        )
    raise ValueError(f"unknown BEGIN mode {mode!r}")


def _pg_on_begin(conn: Any) -> None:
    options = conn.get_execution_options()
    mode = options.get(BEGIN_OPTION, "DEFERRED")
    if mode == JOINED:
        return
    sql = pg_begin_sql(mode, scope_of(conn), options.get(AGENT_OPTION))
    raw = conn.connection.driver_connection
    try:
        raw.execute(sql, prepare=False)
    except Exception as exc:
        if getattr(raw, "broken", False) or getattr(raw, "closed", False):
            conn.invalidate()  # never hand a dead connection back to the pool
        raise faults.translate(exc, operation="begin", path=redact(conn.engine.url)) from exc


_CONNECT_ARGS: weakref.WeakKeyDictionary[Engine, dict[str, Any]] = weakref.WeakKeyDictionary()


def make_pg_engine(
    url: URL, *, pool_size: int = 8, connect_args: dict[str, Any] | None = None
) -> Engine:
    """Create the SQLAlchemy engine for a PostgreSQL URL (psycopg 3, QueuePool).

    Every pooled connection is in autocommit mode with ``lock_timeout`` set; units of work
    emit ``BEGIN`` themselves (see :func:`pg_begin_sql`). ``connect_args`` are extra psycopg
    connection parameters (``Target.connect_args``).
    """
    extra = dict(connect_args or {})
    engine = create_engine(
        url,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=60,
        connect_args=extra,
    )
    _CONNECT_ARGS[engine] = extra
    event.listen(engine, "connect", _pg_on_connect(redact(url)))
    event.listen(engine, "begin", _pg_on_begin)
    faults.install(engine, redact(url))
    _LOCATIONS[engine] = redact(url)
    return engine


def location_of(engine: Engine) -> str | None:
    """Where ``engine`` stores its data, for error messages: the SQLite file or the
    PostgreSQL URL without its password (``None`` for an engine not made here)."""
    return _LOCATIONS.get(engine)


def begin_dbapi(
    engine: Engine, pooled: PoolProxiedConnection, mode: str, agent_id: str | None = None
) -> None:
    """Begin a transaction on a pooled DB-API connection of ``engine`` (no SQLAlchemy
    ``Connection``): ``BEGIN <mode>`` on SQLite, :func:`pg_begin_sql` (its advisory locks
    included) on PostgreSQL. A PostgreSQL connection found dead is invalidated (never handed
    back to the pool).

    Raises:
        StorageError: the BEGIN failed (translated: :class:`DatabaseLockedError` when the
            lock stayed taken, :class:`StorageIOError` when the server connection died...).
        ValueError: an unknown ``mode``.
    """
    raw: Any = pooled.driver_connection
    if engine.dialect.name == POSTGRESQL:
        sql = pg_begin_sql(mode, scope_of(pooled), agent_id)
        try:
            raw.execute(sql, prepare=False)
        except Exception as exc:
            if getattr(raw, "broken", False) or getattr(raw, "closed", False):
                pooled.invalidate()
            raise faults.translate(exc, operation="begin", path=location_of(engine)) from exc
        return
    if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
        raise ValueError(f"unknown BEGIN mode {mode!r}")
    sql = f"BEGIN {mode}"
    try:
        raw.execute(sql).close()
    except sqlite3.Error as exc:
        raise faults.translate(
            exc, operation="begin", path=location_of(engine), statement=sql
        ) from exc


def pg_connect_args(engine: Engine) -> tuple[list[Any], dict[str, Any]]:
    """The ``psycopg.connect`` arguments of a PostgreSQL engine (for plain readers)."""
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    return list(cargs), {**cparams, **_CONNECT_ARGS.get(engine, {})}


def pg_connect_kwargs(target: Target) -> tuple[list[Any], dict[str, Any]]:
    """The ``psycopg.connect`` arguments of a PostgreSQL target (no engine, no connection)."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    assert target.url is not None
    dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]
    cargs, cparams = dialect.create_connect_args(target.url)  # type: ignore[no-untyped-call]
    return list(cargs), {**cparams, **target.connect_args}


_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _qmark_to_format(sql: str) -> str:
    sql = _INDEXED_BY.sub("", sql)  # SQLite's planner hint; PostgreSQL has none
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def adapt_sql(sql: str, dialect: str) -> str:
    """A raw DB-API statement written with ``?`` placeholders, for ``dialect``.

    SQLite takes it unchanged; on PostgreSQL (psycopg's ``format`` paramstyle) every ``?``
    outside a quoted literal or identifier becomes ``%s``, a literal ``%`` is doubled and
    SQLite's ``INDEXED BY`` planner hints are dropped.

    Example::

        raw.execute(adapt_sql("SELECT id FROM agents WHERE id = ?", db.dialect), (agent_id,))
    """
    if dialect == SQLITE:
        return sql
    return _qmark_to_format(sql)
