"""Unit of work: one database transaction, with a repository per table.

``db.write()`` takes the write lock up front (``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL
advisory transaction locks as the first statements, per agent with ``db.write(agent_id=...)``),
so a decision read inside it cannot be invalidated by another thread or process before it is
written. Nothing is committed unless ``commit()`` is called; leaving the block (normally or by
an exception) without it rolls everything back.

Example::

    with db.write() as uow:
        agent = uow.agents.get(agent_id)
        uow.audit.append(AuditEvent.AGENT_SUSPENDED, actor="owner", now=now, agent_id=agent_id)
        uow.commit()
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm.util import identity_key
from sqlalchemy.pool import PoolProxiedConnection
from sqlmodel import Session

from waiaas.db import usage
from waiaas.db.engine import (
    BEGIN_OPTION,
    JOINED,
    PG_AGENT,
    PG_READ,
    POSTGRESQL,
    adapt_sql,
    begin_dbapi,
    location_of,
    lock_key,
    scope_of,
)
from waiaas.db.faults import translate
from waiaas.db.portable import dbapi_sql
from waiaas.db.repositories import (
    AgentRepository,
    ApprovalRepository,
    AuditRepository,
    ChannelRepository,
    PolicyRepository,
    SessionRepository,
    StateRepository,
    TransactionRepository,
)
from waiaas.db.usage import Verified
from waiaas.errors import DatabaseLockedError, StorageError, StorageIOError

__all__ = ["UnitOfWork", "current_write"]

# The write units of work open in each thread, innermost last (see current_write).
_open_writes = threading.local()


class Ran(NamedTuple):
    """What :meth:`UnitOfWork.run_dbapi` ran: the rows the statement matched, the rows it
    returned (``[]`` without ``RETURNING``) and SQLite's last inserted row id (``None`` on
    PostgreSQL)."""

    rowcount: int
    rows: list[tuple[Any, ...]]
    lastrowid: int | None


def current_write(engine: Engine) -> UnitOfWork | None:
    """The write unit of work this thread has open on ``engine`` and not yet committed.

    Code that must write inside the caller's transaction when there is one (the database
    keystore: a key rotation commits with the agent row and its audit row) joins it instead
    of opening a second write transaction, which on SQLite would wait for the first forever.
    """
    stack: list[UnitOfWork] = getattr(_open_writes, "stack", [])
    for uow in reversed(stack):
        if uow._engine is engine and uow._pooled is not None and not uow._committed:
            return uow
    return None


#: What a session that was never built holds: nothing loaded.
_NOTHING_LOADED: Mapping[Any, Any] = MappingProxyType({})


class _LazySession:
    """The unit of work's ORM session (:attr:`UnitOfWork.session`), built on first real use.

    The hot paths run plain DB-API statements and only ask a session whether it has
    changes to flush, whether it has a row loaded, for its connection's DB-API connection
    and what it is bound to: a session that was never built answers those itself (nothing
    pending, nothing loaded, a flush that has nothing to do, the unit of work's pooled
    connection), so a unit of work that needs no ORM never builds one, nor a SQLAlchemy
    ``Connection``. Anything else builds the session and is asked of it.
    """

    __slots__ = ("_uow",)

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    @property
    def new(self) -> Any:
        built = self._uow._session
        return built.new if built is not None else ()

    @property
    def dirty(self) -> Any:
        built = self._uow._session
        return built.dirty if built is not None else ()

    @property
    def deleted(self) -> Any:
        built = self._uow._session
        return built.deleted if built is not None else ()

    @property
    def identity_map(self) -> Any:
        built = self._uow._session
        return built.identity_map if built is not None else _NOTHING_LOADED

    @property
    def dialect(self) -> str:
        """The unit of work's dialect name (:func:`waiaas.db.portable.dialect_of`)."""
        return self._uow.dialect

    @property
    def update_returning(self) -> bool:
        """Whether the dialect can return rows from an UPDATE (SQLite 3.35+, PostgreSQL)."""
        return bool(self._uow._engine.dialect.update_returning)

    @staticmethod
    def identity_key(*args: Any, **kwargs: Any) -> Any:
        """:meth:`Session.identity_key` (needs no session)."""
        return identity_key(*args, **kwargs)

    def flush(self, objects: Any = None) -> None:
        """Flush the built session; one never built has nothing to flush."""
        built = self._uow._session
        if built is not None:
            built.flush(objects)

    def connection(self, *args: Any, **kwargs: Any) -> Any:
        """The session's connection: the built session's, else a stand-in whose
        ``connection`` is the unit of work's pooled DB-API connection (what the hot paths
        take from it) and which builds the SQLAlchemy ``Connection`` for anything else."""
        built = self._uow._session
        if built is not None:
            return built.connection(*args, **kwargs)
        self._uow._check_open()
        return _Bound(self._uow)

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        built = self._uow._session
        if built is not None:
            return built.get_bind(*args, **kwargs)
        return self._uow._connection()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow._orm_session(), name)


class _Bound:
    """What :meth:`_LazySession.connection` gives before any ORM use: the unit of work's
    pooled DB-API connection as ``connection`` (``.driver_connection``, ``.info``), and the
    SQLAlchemy ``Connection`` (built on first use, in the same transaction) for the rest."""

    __slots__ = ("_uow",)

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    @property
    def connection(self) -> PoolProxiedConnection:
        self._uow._check_open()
        pooled = self._uow._pooled
        assert pooled is not None
        return pooled

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow._connection(), name)


class UnitOfWork:
    """One database transaction and the repositories bound to it.

    Attributes:
        session: the SQLModel session (for queries the repositories do not cover; built
            on first use).
        agents, sessions, transactions, policies, audit, approvals, channels, state:
            the repositories (each built on first use).
    """

    def __init__(
        self,
        engine: Engine,
        mode: Literal["read", "write"],
        *,
        lock_timeout: float = 60.0,
        integrity: Any = None,
        agent_id: str | None = None,
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._mode = mode
        self._agent_id = agent_id
        self._audit_locked = False
        self._lock_timeout = lock_timeout
        # the pooled DB-API connection the transaction runs on (BEGIN / COMMIT / ROLLBACK
        # are issued on it directly), and a SQLAlchemy Connection over it built only when
        # the ORM or Core is used (_connection)
        self._pooled: PoolProxiedConnection | None = None
        self._raw: Any = None
        self._conn: Connection | None = None
        self._committed = False
        self._integrity = integrity
        self._session: Session | None = None
        # what the repositories hold as their session (see _LazySession)
        self._orm = cast(Session, _LazySession(self))
        # usage buckets this unit of work verified before changing them (waiaas.db.usage)
        self.usage_verified: Verified = {}
        self._reseal = True

    @property
    def integrity(self) -> Any:
        """The wallet's :class:`~waiaas.integrity.Integrity` keys, or None (bare database)."""
        return self._integrity

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._dialect

    @property
    def agent_id(self) -> str | None:
        """The agent this write unit of work is locked to (PostgreSQL), or ``None``."""
        return self._agent_id

    def _begin_mode(self) -> str:
        if self._dialect != POSTGRESQL:
            return "IMMEDIATE" if self._mode == "write" else "DEFERRED"
        if self._mode == "read":
            return PG_READ
        if self._agent_id is not None:
            return PG_AGENT
        return "IMMEDIATE"

    def buckets_untouched(self) -> None:
        """Say that this unit of work's writes change no usage bucket (a move between two
        spending statuses, an audit row that is no refusal: see the triggers in
        :mod:`waiaas.db.usage`), so its commit looks for no bucket to seal.

        A bucket another writer left unsealed stays so until the next keyed write unit of
        work seals it; until then readers count its hour from its rows. Said wrongly, it
        costs the same: an unsealed bucket is never trusted.
        """
        self._reseal = False

    def audit_lock(self) -> None:
        """Serialise appends to the audit hash chain (called before reading its head).

        On PostgreSQL a per-agent unit of work runs in parallel with other agents', so the
        chain head is guarded by its own advisory lock, held to commit (lock order GLOBAL ->
        AGENT -> AUDIT). A global write already excludes everyone; SQLite's ``BEGIN
        IMMEDIATE`` does too: no-op there.
        """
        if self._audit_locked or self._dialect != POSTGRESQL or self._agent_id is None:
            return
        self._check_open()
        db, schema = scope_of(self._pooled)
        self.run_dbapi(f"SELECT pg_advisory_xact_lock({lock_key(db, schema, 'audit')})", ())
        self._audit_locked = True

    def __enter__(self) -> UnitOfWork:
        mode = self._begin_mode()
        agent_id = self._agent_id if mode == PG_AGENT else None
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.005
        reconnected = False
        while True:
            pooled = self._checkout()
            try:
                begin_dbapi(self._engine, pooled, mode, agent_id)
                break
            except StorageIOError:
                _close_quietly(pooled)
                if self._dialect != POSTGRESQL or reconnected:
                    raise
                # A pooled connection the server dropped (restart, idle timeout, failover):
                # BEGIN did nothing; once more on a fresh connection.
                reconnected = True
            except DatabaseLockedError as exc:
                _close_quietly(pooled)
                if time.monotonic() > deadline:
                    raise DatabaseLockedError(
                        f"the database stayed locked for {self._lock_timeout:.0f} s",
                        operation="begin",
                        path=exc.path,
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except BaseException:
                _close_quietly(pooled)
                raise
        self._pooled = pooled
        self._raw = pooled.driver_connection
        if self._mode == "write":
            if not hasattr(_open_writes, "stack"):
                _open_writes.stack = []
            _open_writes.stack.append(self)
        return self

    def _checkout(self) -> PoolProxiedConnection:
        """A connection from the engine's pool (its failures translated as the engine's)."""
        try:
            return self._engine.raw_connection()
        except Exception as exc:
            if not _is_db_error(exc):
                raise
            raise translate(exc, operation="connect", path=location_of(self._engine)) from exc

    def _check_open(self) -> None:
        if self._pooled is None:
            raise StorageError("unit of work is not open")

    def _connection(self) -> Connection:
        """The SQLAlchemy ``Connection`` over this unit of work's pooled connection, in its
        transaction (built on first use: the ORM session, Core statements)."""
        conn = self._conn
        if conn is None:
            self._check_open()
            conn = Connection(self._engine, connection=self._pooled)
            conn.execution_options(**{BEGIN_OPTION: JOINED})
            conn.begin()  # the transaction begun on the DB-API connection: nothing is emitted
            self._conn = conn
        return conn

    @property
    def session(self) -> Session:
        """The SQLModel session on this unit of work's connection (built on first real use;
        see :class:`_LazySession`).

        Raises:
            StorageError: the unit of work is not open.
        """
        self._check_open()
        return self._orm

    def _orm_session(self) -> Session:
        """The real SQLModel session, built now if it was not."""
        built = self._session
        if built is None:
            conn = self._connection()
            built = self._session = Session(bind=conn, autoflush=True, expire_on_commit=False)
        return built

    @functools.cached_property
    def agents(self) -> AgentRepository:
        """``agents``."""
        return AgentRepository(self._orm, self._integrity)

    @functools.cached_property
    def sessions(self) -> SessionRepository:
        """``sessions``."""
        return SessionRepository(self._orm, self._integrity)

    @functools.cached_property
    def transactions(self) -> TransactionRepository:
        """``transactions``, its hot-path writes on this unit of work's connection."""
        repository = TransactionRepository(self._orm, self._integrity)
        repository.execute = self.execute
        return repository

    @functools.cached_property
    def policies(self) -> PolicyRepository:
        """``policies``."""
        return PolicyRepository(self._orm, self._integrity)

    @functools.cached_property
    def audit(self) -> AuditRepository:
        """``audit_log``: its head lock, head read and appends bound to this unit of work."""
        audit = AuditRepository(self._orm, self._integrity)
        audit.before_head = self.audit_lock
        audit.fetch_one = self.fetch_one
        audit.run_dbapi = self.run_dbapi
        return audit

    @functools.cached_property
    def approvals(self) -> ApprovalRepository:
        """``pending_approvals``."""
        return ApprovalRepository(self._orm, self._integrity)

    @functools.cached_property
    def channels(self) -> ChannelRepository:
        """``notification_channels``."""
        return ChannelRepository(self._orm, self._integrity)

    @functools.cached_property
    def state(self) -> StateRepository:
        """``wallet_state``."""
        return StateRepository(self._orm, self._integrity)

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one read-only statement, on this unit of work's transaction.

        A plain DB-API read for hot paths: it sees what the transaction sees (pending ORM
        changes are flushed first) without building ORM objects. ``sql`` uses ``?``
        placeholders on both dialects (rewritten for psycopg, see :func:`waiaas.db.adapt_sql`).

        Raises:
            StorageError: the database failed, or the unit of work is not open.
        """
        self._ready()
        if self._dialect == POSTGRESQL:
            return self._fetch_one_pg(sql, params)
        try:
            cursor = self._raw.execute(sql, params)
            row: tuple[Any, ...] | None = cursor.fetchone()
            cursor.close()
        except sqlite3.Error as exc:
            raise translate(exc, operation="read", statement=sql) from exc
        return row

    def _ready(self) -> None:
        """Before a DB-API statement: the unit of work is open, and pending ORM changes are
        flushed (the statement sees what the session wrote)."""
        if self._pooled is None:
            raise StorageError("unit of work is not open")
        s = self._session
        if s is not None and (s.new or s.dirty or s.deleted):
            s.flush()

    def _fetch_one_pg(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        try:
            with self._raw.cursor() as cursor:
                cursor.execute(adapt_sql(sql, POSTGRESQL), params)
                row: tuple[Any, ...] | None = cursor.fetchone()
        except Exception as exc:
            if type(exc).__module__.split(".", 1)[0] != "psycopg":
                raise
            raise translate(exc, operation="read", statement=sql) from exc
        return row

    def execute(self, sql: str, params: Sequence[Any] = ()) -> tuple[int, list[tuple[Any, ...]]]:
        """One statement on this unit of work's transaction, through its DB-API connection:
        the rows it matched (``rowcount``) and the rows it returned (a ``RETURNING``
        clause; ``[]`` without one).

        For the hot paths' writes (:mod:`waiaas.db.statements`): no SQLAlchemy statement is
        built or compiled. Pending ORM changes are flushed first; objects of this unit of
        work's session that the statement changes are the caller's to update. ``sql`` uses
        ``?`` placeholders on both dialects (rewritten once per statement for psycopg).

        Raises:
            StorageError: the database failed, or the unit of work is not open.
        """
        ran = self.run_dbapi(dbapi_sql(sql, self._dialect), params)
        return ran.rowcount, ran.rows

    def run_dbapi(self, sql: str, params: Sequence[Any]) -> Ran:
        """One statement already in this dialect's DB-API form (``?`` on SQLite, ``%s`` on
        PostgreSQL), on this unit of work's transaction (pending ORM changes are flushed
        first): :class:`Ran` (its rowcount, the rows it returned, SQLite's last row id).

        For statements prepared once per dialect and run on a hot path (the audit appends);
        :meth:`execute` takes the portable ``?`` form and comes here.

        Raises:
            StorageError: the database failed, or the unit of work is not open.
        """
        self._ready()
        if self._dialect == POSTGRESQL:
            return self._run_pg(sql, params)
        try:
            cursor = self._raw.execute(sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            ran = Ran(cursor.rowcount, rows, cursor.lastrowid)
            cursor.close()
        except sqlite3.Error as exc:
            raise translate(exc, operation="write", statement=sql) from exc
        return ran

    def _run_pg(self, sql: str, params: Sequence[Any]) -> Ran:
        try:
            with self._raw.cursor() as cursor:
                cursor.execute(sql, params)
                rows: list[tuple[Any, ...]] = (
                    cursor.fetchall() if cursor.description is not None else []
                )
                return Ran(cursor.rowcount, rows, None)
        except Exception as exc:
            if type(exc).__module__.split(".", 1)[0] != "psycopg":
                raise
            raise translate(exc, operation="write", statement=sql) from exc

    def commit(self) -> None:
        """Flush and commit. The unit of work cannot be used for writes afterwards."""
        self._check_open()
        try:
            if self._session is not None:
                self._session.flush()
            if self._integrity is not None and self._mode == "write" and self._reseal:
                usage.reseal(self, self._integrity, self.usage_verified)
            audit = self.__dict__.get("audit")  # built only if this unit of work used it
            head = audit.last if audit is not None and audit.appended else None
            if head is not None and self._integrity is not None:
                self._integrity.maybe_checkpoint(self, head)
                # the database keystore's head row commits with the rows it names
                self._integrity.stage_head(self, *head)
            self._end("commit")
        except SQLAlchemyError as exc:
            raise translate(exc, operation="commit") from exc
        self._committed = True
        if head is not None and self._integrity is not None:
            # After the commit: the keystore's record must never name a row that is not there.
            self._integrity.record_head(*head)

    def _end(self, how: Literal["commit", "rollback"]) -> None:
        """COMMIT or ROLLBACK: through the SQLAlchemy ``Connection`` when one was built (it
        owns the transaction's state then), else on the DB-API connection itself."""
        conn = self._conn
        if conn is not None:
            trans = conn.get_transaction()
            if trans is not None and how == "commit":
                trans.commit()
            elif trans is not None:
                trans.rollback()
            return
        raw = self._raw
        try:
            if how == "commit":
                raw.commit()
            else:
                raw.rollback()
        except Exception as exc:
            if not _is_db_error(exc):
                raise
            if getattr(raw, "broken", False) or getattr(raw, "closed", False):
                assert self._pooled is not None
                self._pooled.invalidate()  # never hand a dead connection back to the pool
            raise translate(exc, operation=how, path=location_of(self._engine)) from exc

    def rollback(self) -> None:
        """Discard everything done in this unit of work."""
        if self._pooled is None:
            return
        self._end("rollback")

    @property
    def writable(self) -> bool:
        """Whether this is a write unit of work (``db.write()``)."""
        return self._mode == "write"

    @property
    def committed(self) -> bool:
        """Whether ``commit()`` succeeded."""
        return self._committed

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed_cleanup: BaseException | None = None
        stack: list[UnitOfWork] = getattr(_open_writes, "stack", [])
        if self in stack:
            stack.remove(self)
        try:
            if not self._committed:
                self.rollback()
        except (SQLAlchemyError, StorageError) as cleanup:
            # A rollback that fails (the connection died, the disk vanished) must not hide
            # the error that brought us here; SQLite rolls back on close anyway.
            failed_cleanup = cleanup
        finally:
            if self._session is not None:
                with contextlib.suppress(SQLAlchemyError, StorageError):
                    self._session.close()
            if self._conn is not None:
                _close_quietly(self._conn)  # hands the pooled connection back too
            elif self._pooled is not None:
                _close_quietly(self._pooled)
            self._conn = None
            self._pooled = None
        if isinstance(exc, SQLAlchemyError) and not isinstance(exc, StorageError):
            # Anything SQLAlchemy raised that the engine did not translate (ORM state
            # errors after a failed flush, ...) leaves as a StorageError too.
            raise translate(exc, operation="write" if self._mode == "write" else "read") from exc
        if exc is None and failed_cleanup is not None:
            raise translate(failed_cleanup, operation="rollback") from failed_cleanup


def _close_quietly(conn: Connection | PoolProxiedConnection) -> None:
    with contextlib.suppress(SQLAlchemyError, StorageError):
        conn.close()


def _is_db_error(exc: BaseException) -> bool:
    """A failure of either driver or of SQLAlchemy (what :func:`translate` maps)."""
    return isinstance(exc, sqlite3.Error | SQLAlchemyError | StorageError) or (
        type(exc).__module__.split(".", 1)[0] == "psycopg"
    )
