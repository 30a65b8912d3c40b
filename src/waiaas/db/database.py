"""The database handle: open (validate, migrate), units of work, WAL checkpoints, backups.

One class for both dialects: an SQLite file (the default) or a PostgreSQL server
(``postgresql+psycopg://`` URL). On PostgreSQL the SQLite-only operations degrade as the
design says: :meth:`Database.checkpoint` is a no-op, :meth:`Database.backup` points to
``pg_dump``, the integrity PRAGMAs are skipped and no background checkpointer runs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from waiaas._validate import shown
from waiaas.db import migrate
from waiaas.db.engine import (
    POSTGRESQL,
    Target,
    adapt_sql,
    check_path,
    connect_reader,
    make_engine,
    make_pg_engine,
    parse_target,
    pg_connect_args,
)
from waiaas.db.faults import translate
from waiaas.db.uow import UnitOfWork, current_write
from waiaas.errors import (
    DatabaseCorruptError,
    DatabaseOpenError,
    InvalidInputError,
    NotADatabaseError,
    StorageError,
)

__all__ = ["CheckpointResult", "Database"]

log = logging.getLogger("waiaas.db")

#: Idle plain connections kept for :meth:`Database.fetch_one` (more are opened under load and
#: closed when returned).
MAX_IDLE_READERS = 4

#: ``wallet_state`` key of the last background checkpoint (``{"at", "busy", "log_frames"}``).
LAST_CHECKPOINT_KEY = "last_checkpoint"


def _quick_check(engine: Engine, path: str) -> None:
    """``PRAGMA quick_check`` on open: a truncated or damaged file is refused up front."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("PRAGMA quick_check").fetchall()
    found = [str(r[0]) for r in rows]
    if found != ["ok"]:
        raise DatabaseCorruptError(
            f"the database is damaged ({path}): {'; '.join(found[:3])}; restore it from a backup",
            operation="open",
            path=path,
            table=None,
            column=None,
        )


class CheckpointResult(tuple[int, int, int]):
    """``(busy, log_frames, checkpointed_frames)`` as ``PRAGMA wal_checkpoint`` returns
    (what :meth:`waiaas.Wallet.checkpoint` returns).

    Example::

        result = wallet.checkpoint()
        result.busy, result.log_frames, result.checkpointed
    """

    __slots__ = ()

    @property
    def busy(self) -> int:
        """1 when the checkpoint could not finish (a reader or writer held the WAL)."""
        return self[0]

    @property
    def log_frames(self) -> int:
        """Frames in the WAL file."""
        return self[1]

    @property
    def checkpointed(self) -> int:
        """Frames copied back into the database."""
        return self[2]


def _create_private(path: Path) -> None:
    """Create a new, empty database file with mode 0600 before SQLite opens it.

    SQLite gives the ``-wal`` and ``-shm`` files the mode of the database file, so they are
    0600 too. An existing file keeps its mode (the owner may have chosen it).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # created meanwhile by another process
    except OSError as exc:
        raise DatabaseOpenError(
            f"cannot create {str(path)!r}: {exc.strerror or exc}", path=str(path)
        ) from exc
    os.close(fd)
    if os.name == "posix":
        os.chmod(path, 0o600)  # whatever the umask


class Database:
    """An opened, migrated waiaas database: an SQLite file or a PostgreSQL schema.

    Use :meth:`open`; then :meth:`write` / :meth:`read` for units of work.

    Example::

        db = Database.open("wallet.db")
        with db.write() as uow:
            uow.audit.append(AuditEvent.DAEMON_STARTED, actor="system", now=clock.now())
            uow.commit()
        db.close()
    """

    def __init__(self, path: Path | None, engine: Engine, *, location: str | None = None) -> None:
        self.path: Path | None = path
        self.engine = engine
        self.dialect: str = engine.dialect.name
        """``"sqlite"`` or ``"postgresql"``."""
        self.location: str = location if location is not None else str(path)
        """Where the database is, for display: the file path, or the PostgreSQL URL with its
        password replaced by ``***`` (never the password)."""
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._readers: list[Any] = []  # idle plain connections for fetch_one
        self.integrity: Any = None  # waiaas.integrity.Integrity, set once the keystore is open

    def __repr__(self) -> str:
        if self.path is None:
            return f"Database(url={self.location!r})"
        return f"Database(path={str(self.path)!r})"

    @property
    def is_postgresql(self) -> bool:
        """Whether this database lives on a PostgreSQL server."""
        return self.dialect == POSTGRESQL

    def sql(self, statement: str) -> str:
        """``statement`` (``?`` placeholders) for this database's driver (see
        :func:`waiaas.db.adapt_sql`)."""
        return adapt_sql(statement, self.dialect)

    # ------------------------------------------------------------------ open

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        script_location: Path | None = None,
        pool_size: int = 8,
    ) -> Database:
        """Open ``path``, creating the schema for a new database and upgrading an older one.

        Args:
            path: an SQLite file path (or ``sqlite:///relative.db`` /
                ``sqlite:////abs/path.db``), or a PostgreSQL URL
                ``postgresql+psycopg://user:password@host:port/dbname`` (``postgresql://`` is
                taken as psycopg 3 too). The PostgreSQL schema is the first of the
                connection's ``search_path``: choose it with
                ``?options=-csearch_path%3Dname``.
            script_location: another migrations directory (tests).
            pool_size: connections kept open in the pool.

        Example::

            db = Database.open("postgresql+psycopg://waiaas:secret@db.internal/waiaas")
            db.dialect  # "postgresql"
            db.location  # "postgresql+psycopg://waiaas:***@db.internal/waiaas"

        Raises:
            InvalidInputError: ``path`` is not a path (NUL, a name too long, not text), or a
                malformed or unsupported URL.
            DatabaseUnreachableError: the PostgreSQL server cannot be reached.
            DatabaseAuthError: the PostgreSQL server refused the credentials.
            DatabaseMissingError: the PostgreSQL database does not exist.
            DatabaseOpenError: the directory is missing, the path is a directory or not a
                regular file (a FIFO is refused without blocking).
            DatabaseReadOnlyError: the file or its directory cannot be written.
            NotADatabaseError: the file is not an SQLite database.
            DatabaseCorruptError: the file is an SQLite database, but damaged (truncated...).
            SchemaTooNewError: the file was written by a newer waiaas.
            MigrationError: an upgrade failed (the file is left as it was).
            StorageError: any other storage failure (disk full, I/O error...).
        """
        if (
            isinstance(path, bool)
            or not isinstance(path, str | os.PathLike)
            or not str(path).strip()
        ):
            raise InvalidInputError("path must be a non-empty file path", field="path")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InvalidInputError("pool_size must be an integer >= 1", field="pool_size")
        target = parse_target(path)
        if target.dialect == POSTGRESQL:
            return cls._open_pg(target, script_location=script_location, pool_size=pool_size)
        assert target.path is not None
        p = target.path
        existed = check_path(p)
        if not existed:
            _create_private(p)
        engine = make_engine(p, pool_size=pool_size)
        try:
            migrate.upgrade(engine, str(p), script_location=script_location)
            if existed:
                _quick_check(engine, str(p))
        except DatabaseCorruptError as exc:
            engine.dispose()
            if exc.table is None and "not a database" in exc.message:
                raise NotADatabaseError(str(p)) from exc
            raise
        except StorageError:
            engine.dispose()
            raise
        except (SQLAlchemyError, sqlite3.Error) as exc:  # pragma: no cover - translated
            engine.dispose()
            raise translate(exc, operation="open", path=str(p)) from exc
        return cls(p, engine)

    @classmethod
    def _open_pg(cls, target: Target, *, script_location: Path | None, pool_size: int) -> Database:
        assert target.url is not None
        location = target.location
        engine = make_pg_engine(target.url, pool_size=pool_size, connect_args=target.connect_args)
        try:
            migrate.upgrade(engine, location, script_location=script_location)
        except StorageError:
            engine.dispose()
            raise
        except Exception as exc:
            engine.dispose()
            raise translate(exc, operation="open", path=location) from exc
        return cls(None, engine, location=location)

    # ------------------------------------------------------------------ units of work

    def write(self, agent_id: str | None = None) -> UnitOfWork:
        """A write unit of work; its locks are taken up front.

        SQLite: ``BEGIN IMMEDIATE`` (one writer at a time; ``agent_id`` is ignored).
        PostgreSQL: READ COMMITTED and advisory transaction locks taken as the first
        statements: with ``agent_id``, the global lock shared and the agent's exclusive (units
        of work of different agents run in parallel, one agent's are serialised); without
        it, the global lock exclusive (serialised with every other write).

        Args:
            agent_id: the one agent whose state this unit of work changes. Pass it only when
                nothing else but that agent's rows (and audit rows, which take their own lock)
                is read to decide and written.
        """
        self._check_open()
        if agent_id is not None and (not isinstance(agent_id, str) or not agent_id):
            raise InvalidInputError("agent_id must be a non-empty string", field="agent_id")
        return UnitOfWork(
            self.engine,
            "write",
            integrity=self.integrity,
            agent_id=agent_id if self.dialect == POSTGRESQL else None,
        )

    def read(self) -> UnitOfWork:
        """A read unit of work: one consistent snapshot (``BEGIN DEFERRED`` in WAL mode on
        SQLite, ``REPEATABLE READ, READ ONLY`` on PostgreSQL)."""
        self._check_open()
        return UnitOfWork(self.engine, "read", integrity=self.integrity)

    def current_write(self) -> UnitOfWork | None:
        """The write unit of work the calling thread has open (not yet committed) on this
        database, or ``None``: what the database keystore joins instead of opening its own."""
        return current_write(self.engine)

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one read-only statement, or ``None``; no unit of work.

        Runs on a plain ``sqlite3`` connection (read-only, autocommit: the newest committed
        state) taken from a small stack and put back, so a hot single-row read costs a few
        microseconds instead of a pooled connection, a transaction and an ORM session.
        Use it for a read that stands alone; reads that must agree with each other, or with
        a write, belong in one unit of work (:meth:`UnitOfWork.fetch_one`).

        Raises:
            StorageError: the database is closed, or SQLite failed (translated as for units
                of work; a write statement is refused by ``query_only``).
        """
        self._check_open()
        if self.dialect == POSTGRESQL:
            return self._fetch_one_pg(sql, params)
        assert self.path is not None
        try:
            conn = self._readers.pop()
        except IndexError:
            try:
                conn = connect_reader(self.path)
            except sqlite3.Error as exc:
                raise translate(exc, operation="read", path=str(self.path)) from exc
        try:
            cursor = conn.execute(sql, params)
            row: tuple[Any, ...] | None = cursor.fetchone()
            cursor.close()  # ends the statement: an idle reader holds no WAL snapshot
        except sqlite3.Error as exc:
            conn.close()
            raise translate(exc, operation="read", path=str(self.path), statement=sql) from exc
        if self._closed or len(self._readers) >= MAX_IDLE_READERS:
            conn.close()
        else:
            self._readers.append(conn)
        return row

    def _fetch_one_pg(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """:meth:`fetch_one` on PostgreSQL: a plain psycopg connection in autocommit mode
        with ``default_transaction_read_only`` on (each statement is a read-only
        transaction of its own: the newest committed state; writes are refused)."""
        import psycopg

        statement = adapt_sql(sql, POSTGRESQL)
        for attempt in (0, 1):
            try:
                conn = self._readers.pop()
            except IndexError:
                try:
                    conn = self._connect_pg_reader()
                except (psycopg.Error, OSError) as exc:
                    raise translate(exc, operation="connect", path=self.location) from exc
            try:
                row: tuple[Any, ...] | None = conn.execute(statement, params).fetchone()
                break
            except psycopg.Error as exc:
                conn.close()
                if attempt == 0 and conn.broken:
                    continue  # an idle reader the server dropped: once more, fresh
                raise translate(exc, operation="read", path=self.location, statement=sql) from exc
        if self._closed or len(self._readers) >= MAX_IDLE_READERS:
            conn.close()
        else:
            self._readers.append(conn)
        return row

    def _connect_pg_reader(self) -> Any:
        import psycopg

        from waiaas.db.engine import PG_LOCK_TIMEOUT_MS

        cargs, cparams = pg_connect_args(self.engine)
        conn = psycopg.connect(*cargs, **cparams, autocommit=True)
        try:
            conn.execute(
                "SELECT set_config('default_transaction_read_only', 'on', false), "
                "set_config('lock_timeout', %s, false)",
                (f"{PG_LOCK_TIMEOUT_MS}ms",),
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_readers(self) -> None:
        while True:
            try:
                conn = self._readers.pop()
            except IndexError:
                return
            try:
                conn.close()
            except Exception as exc:  # pragma: no cover - closing a plain reader
                log.warning("closing a reader connection failed: %s", exc)

    # ------------------------------------------------------------------ operations

    def checkpoint(self, mode: str = "TRUNCATE") -> CheckpointResult:
        """Run ``PRAGMA wal_checkpoint(mode)`` (CORE-02 §5.1); TRUNCATE empties the WAL file."""
        self._check_open()
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise InvalidInputError(f"unknown checkpoint mode {shown(mode)}", field="mode")
        if self.dialect == POSTGRESQL:
            return CheckpointResult((0, 0, 0))  # the server manages its own WAL
        try:
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                row = raw.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            raise translate(exc, operation="checkpoint", path=str(self.path)) from exc
        return CheckpointResult((int(row[0]), int(row[1]), int(row[2])))

    def backup(self, directory: str | os.PathLike[str] | None = None) -> Path:
        """Write a consistent copy with ``VACUUM INTO`` after a FULL checkpoint (§5.2).

        The file is named ``<db stem>-<UTC timestamp>.db`` in ``directory`` (default: the
        database's own directory) and its path is returned. The target path is passed as a
        bound parameter, so any file name (quotes included) is safe.

        Raises:
            DatabaseOpenError: the directory does not exist.
            StorageError: the target exists or SQLite refused; always on PostgreSQL, whose
                backups are the operator's ``pg_dump`` (see the operations guide).
        """
        self._check_open()
        if self.dialect == POSTGRESQL:
            raise StorageError(
                "waiaas does not back up a PostgreSQL database itself: use pg_dump "
                "(e.g. pg_dump --format=custom --schema=<schema> <database>) together with "
                "a copy of the keystore; see the operations guide",
                operation="backup",
                path=self.location,
            )
        if directory is not None and (
            isinstance(directory, bool) or not isinstance(directory, str | os.PathLike)
        ):
            raise InvalidInputError("directory must be a path", field="directory")
        try:
            assert self.path is not None
            target_dir = Path(directory) if directory is not None else self.path.parent
            text = str(target_dir)
            if "\x00" in text:
                raise InvalidInputError("directory must not contain NUL", field="directory")
            os.fsencode(text)
            found = target_dir.is_dir()
        except (UnicodeEncodeError, TypeError):
            raise InvalidInputError("directory is not a usable path", field="directory") from None
        except OSError as exc:
            raise DatabaseOpenError(
                f"backup directory {text!r} cannot be used: {exc.strerror}", path=text
            ) from None
        if not found:
            raise DatabaseOpenError(
                f"backup directory {str(target_dir)!r} does not exist", path=str(target_dir)
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        assert self.path is not None
        target = target_dir / f"{self.path.stem}-{stamp}.db"
        if target.exists():
            raise StorageError(f"backup target {str(target)!r} already exists")
        self.checkpoint("FULL")
        try:
            # Created empty with mode 0600 first: VACUUM INTO fills an empty file and keeps its
            # mode, where a file SQLite creates itself gets 0644 (minus the umask).
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        except FileExistsError:
            raise StorageError(f"backup target {str(target)!r} already exists") from None
        except OSError as exc:
            raise StorageError(f"backup failed: {exc.strerror or exc}") from exc
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            try:
                raw.execute("VACUUM INTO ?", (str(target),))
            except sqlite3.Error as exc:
                target.unlink(missing_ok=True)
                raise translate(exc, operation="backup", path=str(target)) from exc
        return target

    def start_checkpointer(self, interval: float = 300.0) -> None:
        """Checkpoint (TRUNCATE) every ``interval`` seconds in a daemon thread.

        Failures are logged and retried at the next interval; ``close()`` stops the thread.
        """
        self._check_open()
        if interval <= 0:
            raise InvalidInputError("interval must be positive", field="interval")
        if self._checkpointer is not None or self.dialect == POSTGRESQL:
            return  # nothing to checkpoint on PostgreSQL
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    result = self.checkpoint("TRUNCATE")
                    log.debug("WAL checkpoint: busy=%s log=%s done=%s", *result)
                    self._record_checkpoint(result)
                except StorageError as exc:
                    log.warning("WAL checkpoint failed (will retry): %s", exc)

        self._checkpointer = threading.Thread(target=run, name="waiaas-checkpoint", daemon=True)
        self._checkpointer.start()

    def _record_checkpoint(self, result: CheckpointResult) -> None:
        """Keep the time and outcome of the last background checkpoint in ``wallet_state``
        (key ``last_checkpoint``), where ``waiaas health`` reads it."""
        now = int(time.time())
        with self.write() as uow:
            uow.state.put(
                LAST_CHECKPOINT_KEY,
                {"at": now, "busy": result.busy, "log_frames": result.log_frames},
                now=now,
            )
            uow.commit()

    def stop_checkpointer(self) -> None:
        """Stop the background checkpoint thread, if running."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
            self._checkpointer = None

    def close(self) -> None:
        """Stop background work, checkpoint, and release every connection. Idempotent.

        Never raises for a storage failure: a final checkpoint that fails (disk full,
        read-only) is logged, and the connections are released all the same (SQLite keeps
        the WAL; the next open replays it).
        """
        if self._closed:
            return
        try:
            self.stop_checkpointer()
            try:
                self.checkpoint("TRUNCATE")
            except StorageError as exc:
                log.warning("final WAL checkpoint failed: %s", exc)
        finally:
            self._closed = True
            self._close_readers()
            try:
                self.engine.dispose()
            except Exception as exc:  # pragma: no cover
                log.warning("closing the database connections failed: %s", exc)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def integrity_check(self) -> list[str]:
        """Run ``PRAGMA integrity_check``; return its findings (``[]`` when the file is ok).

        Always ``[]`` on PostgreSQL: the server checks its own pages (``data_checksums``,
        ``amcheck``); waiaas has no file to inspect.

        Raises:
            StorageError: the check itself could not run.
        """
        self._check_open()
        if self.dialect == POSTGRESQL:
            return []
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql("PRAGMA integrity_check").fetchall()
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the database is closed")
