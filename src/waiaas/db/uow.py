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
from sqlmodel import Session

from waiaas.db import usage
from waiaas.db.engine import (
    AGENT_OPTION,
    BEGIN_OPTION,
    PG_AGENT,
    PG_READ,
    POSTGRESQL,
    adapt_sql,
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
        if uow._engine is engine and uow._conn is not None and not uow._committed:
            return uow
    return None


#: What a session that was never built holds: nothing loaded.
_NOTHING_LOADED: Mapping[Any, Any] = MappingProxyType({})


class _LazySession:
    """The unit of work's ORM session as its repositories hold it, built on first real use.

    The hot paths run plain DB-API statements and only ask a session whether it has
    changes to flush, whether it has a row loaded, and what it is bound to: a session that
    was never built answers those itself (nothing pending, nothing loaded, the unit of
    work's connection), so a unit of work that needs no ORM never builds one. Anything
    else builds the session (:attr:`UnitOfWork.session`) and is asked of it.
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

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        built = self._uow._session
        if built is not None:
            return built.get_bind(*args, **kwargs)
        if self._uow._conn is None:
            raise StorageError("unit of work is not open")
        return self._uow._conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow.session, name)


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

    def _begin_options(self) -> dict[str, Any]:
        if self._dialect != POSTGRESQL:
            return {BEGIN_OPTION: "IMMEDIATE" if self._mode == "write" else "DEFERRED"}
        if self._mode == "read":
            return {BEGIN_OPTION: PG_READ}
        if self._agent_id is not None:
            return {BEGIN_OPTION: PG_AGENT, AGENT_OPTION: self._agent_id}
        return {BEGIN_OPTION: "IMMEDIATE"}

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
        if self._conn is None:
            raise StorageError("unit of work is not open")
        db, schema = scope_of(self._conn)
        self._conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock_key(db, schema, 'audit')})")
        self._audit_locked = True

    def __enter__(self) -> UnitOfWork:
        options = self._begin_options()
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.005
        reconnected = False
        while True:
            try:
                conn = self._engine.connect().execution_options(**options)
            except SQLAlchemyError as exc:  # pragma: no cover - the engine translates
                raise translate(exc, operation="connect") from exc
            try:
                conn.begin()
                break
            except StorageIOError:
                _close_quietly(conn)
                if self._dialect != POSTGRESQL or reconnected:
                    raise
                # A pooled connection the server dropped (restart, idle timeout, failover):
                # BEGIN did nothing; once more on a fresh connection.
                reconnected = True
            except DatabaseLockedError as exc:
                _close_quietly(conn)
                if time.monotonic() > deadline:
                    raise DatabaseLockedError(
                        f"the database stayed locked for {self._lock_timeout:.0f} s",
                        operation="begin",
                        path=exc.path,
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except StorageError:
                _close_quietly(conn)
                raise
            except SQLAlchemyError as exc:  # pragma: no cover - the engine translates
                _close_quietly(conn)
                raise translate(exc, operation="begin") from exc
        self._conn = conn
        self._raw: Any = conn.connection.driver_connection
        if self._mode == "write":
            if not hasattr(_open_writes, "stack"):
                _open_writes.stack = []
            _open_writes.stack.append(self)
        return self

    @property
    def session(self) -> Session:
        """The SQLModel session on this unit of work's connection, built on first use.

        Raises:
            StorageError: the unit of work is not open.
        """
        built = self._session
        if built is None:
            if self._conn is None:
                raise StorageError("unit of work is not open")
            built = self._session = Session(bind=self._conn, autoflush=True, expire_on_commit=False)
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
        if self._conn is None:
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
        if self._conn is None:
            raise StorageError("unit of work is not open")
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
            trans = self._conn.get_transaction()
            if trans is not None:
                trans.commit()
        except SQLAlchemyError as exc:
            raise translate(exc, operation="commit") from exc
        self._committed = True
        if head is not None and self._integrity is not None:
            # After the commit: the keystore's record must never name a row that is not there.
            self._integrity.record_head(*head)

    def rollback(self) -> None:
        """Discard everything done in this unit of work."""
        if self._conn is None:
            return
        trans = self._conn.get_transaction()
        if trans is not None:
            trans.rollback()

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
                _close_quietly(self._conn)
                self._conn = None
        if isinstance(exc, SQLAlchemyError) and not isinstance(exc, StorageError):
            # Anything SQLAlchemy raised that the engine did not translate (ORM state
            # errors after a failed flush, ...) leaves as a StorageError too.
            raise translate(exc, operation="write" if self._mode == "write" else "read") from exc
        if exc is None and failed_cleanup is not None:
            raise translate(failed_cleanup, operation="rollback") from failed_cleanup


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(SQLAlchemyError, StorageError):
        conn.close()
