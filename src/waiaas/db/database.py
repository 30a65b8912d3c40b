"""The database handle: open (validate, migrate), units of work, WAL checkpoints, backups."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlalchemy.exc import OperationalError

from waiaas.db import migrate
from waiaas.db.engine import check_path, make_engine
from waiaas.db.uow import UnitOfWork
from waiaas.errors import DatabaseOpenError, InvalidInputError, NotADatabaseError, StorageError

__all__ = ["CheckpointResult", "Database"]

log = logging.getLogger("waiaas.db")

#: ``wallet_state`` key of the last background checkpoint (``{"at", "busy", "log_frames"}``).
LAST_CHECKPOINT_KEY = "last_checkpoint"


class CheckpointResult(tuple[int, int, int]):
    """``(busy, log_frames, checkpointed_frames)`` as ``PRAGMA wal_checkpoint`` returns."""

    __slots__ = ()

    @property
    def busy(self) -> int:
        return self[0]

    @property
    def log_frames(self) -> int:
        return self[1]

    @property
    def checkpointed(self) -> int:
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
            InvalidInputError: ``path`` is not a path.
            DatabaseOpenError: the directory is missing, or the path is a directory.
            NotADatabaseError: the file is not an SQLite database.
            SchemaTooNewError: the file was written by a newer waiaas.
            MigrationError: an upgrade failed (the file is left as it was).
        """
        if not isinstance(path, str | os.PathLike) or not str(path).strip():
            raise InvalidInputError("path must be a non-empty file path", field="path")
        p = Path(path).expanduser().absolute()
        if not check_path(p):
            _create_private(p)
        engine = make_engine(p)
        try:
            migrate.upgrade(engine, str(p), script_location=script_location)
        except StorageError:
            engine.dispose()
            raise
        except (SADatabaseError, sqlite3.DatabaseError) as exc:
            engine.dispose()
            text = str(getattr(exc, "orig", exc))
            if "not a database" in text or "malformed" in text or "encrypted" in text:
                raise NotADatabaseError(str(p)) from exc
            raise DatabaseOpenError(f"cannot open {str(p)!r}: {text}", path=str(p)) from exc
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

    # ------------------------------------------------------------------ operations

    def checkpoint(self, mode: str = "TRUNCATE") -> CheckpointResult:
        """Run ``PRAGMA wal_checkpoint(mode)`` (CORE-02 §5.1); TRUNCATE empties the WAL file."""
        self._check_open()
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise InvalidInputError(f"unknown checkpoint mode {mode!r}", field="mode")
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            row = raw.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
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
        target_dir = Path(directory) if directory is not None else self.path.parent
        if not target_dir.is_dir():
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
                raise StorageError(f"backup failed: {exc}") from exc
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
                except (OperationalError, sqlite3.Error, StorageError) as exc:
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
        """Stop background work, checkpoint, and release every connection. Idempotent."""
        if self._closed:
            return
        self.stop_checkpointer()
        try:
            self.checkpoint("TRUNCATE")
        except (OperationalError, sqlite3.Error, StorageError) as exc:  # pragma: no cover
            log.warning("final WAL checkpoint failed: %s", exc)
        self._closed = True
        self.engine.dispose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the database is closed")
