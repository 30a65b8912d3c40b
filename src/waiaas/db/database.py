"""The database handle: open (validate, migrate), units of work, WAL checkpoints, backups."""

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
from waiaas.db.engine import check_path, connect_reader, make_engine
from waiaas.db.faults import translate
from waiaas.db.uow import UnitOfWork
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
    """An opened, migrated waiaas SQLite database.

    Use :meth:`open`; then :meth:`write` / :meth:`read` for units of work.

    Example::

        db = Database.open("wallet.db")
        with db.write() as uow:
            uow.audit.append(AuditEvent.DAEMON_STARTED, actor="system", now=clock.now())
            uow.commit()
        db.close()
    """

    def __init__(self, path: Path, engine: Engine) -> None:
        self.path = path
        self.engine = engine
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._readers: list[sqlite3.Connection] = []  # idle connections for fetch_one
        self.integrity: Any = None  # waiaas.integrity.Integrity, set once the keystore is open

    def __repr__(self) -> str:
        return f"Database(path={str(self.path)!r})"

    # ------------------------------------------------------------------ open

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        script_location: Path | None = None,
    ) -> Database:
        """Open ``path``, creating the schema for a new file and upgrading an older one.

        Raises:
            InvalidInputError: ``path`` is not a path (NUL, a name too long, not text).
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
        try:
            p = Path(path).expanduser().absolute()
        except (TypeError, ValueError, OSError, RuntimeError) as exc:
            raise InvalidInputError(f"path is not usable: {exc}", field="path") from None
        existed = check_path(p)
        if not existed:
            _create_private(p)
        engine = make_engine(p)
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

    # ------------------------------------------------------------------ units of work

    def write(self) -> UnitOfWork:
        """A write unit of work: ``BEGIN IMMEDIATE`` (the write lock is taken up front)."""
        self._check_open()
        return UnitOfWork(self.engine, "write", integrity=self.integrity)

    def read(self) -> UnitOfWork:
        """A read unit of work (``BEGIN DEFERRED``; a consistent snapshot in WAL mode)."""
        self._check_open()
        return UnitOfWork(self.engine, "read", integrity=self.integrity)

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

    def _close_readers(self) -> None:
        while True:
            try:
                conn = self._readers.pop()
            except IndexError:
                return
            try:
                conn.close()
            except sqlite3.Error as exc:  # pragma: no cover - closing a plain reader
                log.warning("closing a reader connection failed: %s", exc)

    # ------------------------------------------------------------------ operations

    def checkpoint(self, mode: str = "TRUNCATE") -> CheckpointResult:
        """Run ``PRAGMA wal_checkpoint(mode)`` (CORE-02 §5.1); TRUNCATE empties the WAL file."""
        self._check_open()
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise InvalidInputError(f"unknown checkpoint mode {shown(mode)}", field="mode")
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
            StorageError: the target exists or SQLite refused.
        """
        self._check_open()
        if directory is not None and (
            isinstance(directory, bool) or not isinstance(directory, str | os.PathLike)
        ):
            raise InvalidInputError("directory must be a path", field="directory")
        try:
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
        if self._checkpointer is not None:
            return
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
            except (SQLAlchemyError, sqlite3.Error, StorageError) as exc:  # pragma: no cover
                log.warning("closing the database connections failed: %s", exc)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def integrity_check(self) -> list[str]:
        """Run ``PRAGMA integrity_check``; return its findings (``[]`` when the file is ok).

        Raises:
            StorageError: the check itself could not run.
        """
        self._check_open()
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql("PRAGMA integrity_check").fetchall()
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the database is closed")
