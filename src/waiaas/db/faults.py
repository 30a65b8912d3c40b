"""The one place where SQLite, SQLAlchemy and stored-value decoding failures become
:class:`~waiaas.errors.StorageError` subclasses.

Three routes lead here:

* every statement, BEGIN, COMMIT, ROLLBACK and connect that SQLAlchemy runs: the engine's
  ``handle_error`` event (installed by :func:`install`) replaces the SQLAlchemy exception
  with the translated one, chained to the original;
* the few raw ``sqlite3`` calls (checkpoint, backup, migration PRAGMAs): :func:`translate`;
* values read back from the file (JSON documents, decimal amounts): :func:`stored_json`.

The mapping uses SQLite's result code (``sqlite3.Error.sqlite_errorcode``), not the message:

=====================  =======================  ==============================================
SQLite primary code     waiaas error             typical cause
=====================  =======================  ==============================================
SQLITE_READONLY (8)     DatabaseReadOnlyError    file / directory not writable, read-only mount
SQLITE_FULL (13)        DiskFullError            no space left on the device
SQLITE_CORRUPT (11),    DatabaseCorruptError     damaged pages, truncated file, garbage in a
SQLITE_NOTADB (26)                               TEXT column ("Could not decode to UTF-8")
SQLITE_BUSY (5),        DatabaseLockedError      another writer held the lock past the timeout
SQLITE_LOCKED (6)
SQLITE_IOERR (10),      StorageIOError           the OS failed a read or write (EIO, EFBIG...)
SQLITE_PROTOCOL (15)
SQLITE_CANTOPEN (14),   DatabaseOpenError        the file cannot be opened at all
SQLITE_PERM (3)
anything else           StorageError             (constraint failures: a bug or a schema skew)
=====================  =======================  ==============================================

On PostgreSQL (psycopg 3) the SQLSTATE decides instead (:func:`_translate_pg`):

=====================  =========================  ============================================
SQLSTATE               waiaas error               typical cause
=====================  =========================  ============================================
25006                  DatabaseReadOnlyError      a read-only transaction / hot standby
53100                  DiskFullError              the server's disk is full
53200, 53300           StorageIOError             out of memory / too many connections
40P01, 40001, 55P03    DatabaseLockedError        deadlock, serialization failure, lock_timeout
XX001, XX002           DatabaseCorruptError       damaged data or index pages
08xxx, 57P0x, no code  StorageIOError             the connection to the server was lost
28xxx                  DatabaseAuthError          wrong user or password (at connect)
3D000                  DatabaseMissingError       no such database (at connect)
no code, at connect    DatabaseUnreachableError   refused, unknown host, timeout
anything else          StorageError               constraint failures (23xxx), a trigger's
                                                  RAISE (the append-only audit log), ...
=====================  =========================  ============================================

Messages never include the value that failed to decode (it may be anything), nor a URL's
password (the ``path`` of a PostgreSQL database is its redacted URL).
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from waiaas.errors import (
    DatabaseAuthError,
    DatabaseCorruptError,
    DatabaseLockedError,
    DatabaseMissingError,
    DatabaseOpenError,
    DatabaseReadOnlyError,
    DatabaseUnreachableError,
    DiskFullError,
    StorageError,
    StorageIOError,
)

__all__ = ["install", "stored_json", "table_of", "translate"]

_READONLY, _FULL, _CORRUPT, _NOTADB = 8, 13, 11, 26
_BUSY, _LOCKED, _IOERR, _PROTOCOL, _CANTOPEN, _PERM = 5, 6, 10, 15, 14, 3

_TABLE_RE = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+[\"`\[]?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE
)
_COLUMN_RE = re.compile(r"column '?([A-Za-z_][A-Za-z0-9_]*)")


def table_of(statement: str | None) -> str | None:
    """The first table a SQL statement names (``None`` when it names none)."""
    if not statement:
        return None
    match = _TABLE_RE.search(statement)
    if match is None:
        return None
    name = match.group(1)
    return None if name.lower() in ("select", "pragma_table_info") else name


def _operation_of(statement: str | None, default: str) -> str:
    if not statement:
        return default
    head = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
    if head in ("SELECT", "WITH", "PRAGMA"):
        return "read"
    if head == "BEGIN":
        return "begin"
    if head in ("COMMIT", "END"):
        return "commit"
    if head == "ROLLBACK":
        return "rollback"
    if head in ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"):
        return "write"
    return default


def translate(
    exc: BaseException,
    *,
    operation: str,
    path: str | None = None,
    statement: str | None = None,
) -> StorageError:
    """Map a SQLite / SQLAlchemy failure onto the matching :class:`StorageError` subclass.

    Args:
        exc: the exception raised by sqlite3 or SQLAlchemy (its ``orig`` is looked at).
        operation: what was being done (``"open"``, ``"read"``, ``"write"``, ...); a SQL
            ``statement`` refines it.
        path: the database file.
        statement: the SQL statement, when known (used to name the table).

    Returns the error to raise (``raise translate(...) from exc``).
    """
    if isinstance(exc, StorageError):
        return exc
    orig: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        orig = exc.orig
        statement = statement or exc.statement
    operation = _operation_of(statement, operation)
    if _is_psycopg(orig):
        return _translate_pg(orig, operation=operation, path=path, statement=statement)
    return _translate_sqlite(orig, operation=operation, path=path, statement=statement)


def _translate_sqlite(
    orig: BaseException, *, operation: str, path: str | None, statement: str | None
) -> StorageError:
    """A sqlite3 error, by its primary result code (else its message)."""
    text = str(orig)
    code = getattr(orig, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    where = f" ({path})" if path else ""
    fields: dict[str, Any] = {"operation": operation, "path": path}
    found = _sqlite_storage(text, primary, table_of(statement), where, fields)
    if found is not None:
        return found
    if primary in (_BUSY, _LOCKED) or "database is locked" in text:
        return DatabaseLockedError(
            f"cannot {operation}: the database is locked by another connection{where}",
            **fields,
        )
    if primary in (_IOERR, _PROTOCOL) or "disk I/O error" in text:
        name = getattr(orig, "sqlite_errorname", None) or "SQLITE_IOERR"
        return StorageIOError(
            f"cannot {operation}: the operating system reported an I/O error ({name}){where}",
            **fields,
        )
    if primary in (_CANTOPEN, _PERM) or "unable to open database file" in text:
        err = DatabaseOpenError(f"cannot open the database{where}: {text}", path=path or "")
        err.operation = operation
        return err
    kind = type(orig).__name__
    return StorageError(f"the database refused to {operation}{where}: {kind}: {text}", **fields)


def _sqlite_storage(
    text: str, primary: int | None, table: str | None, where: str, fields: dict[str, Any]
) -> StorageError | None:
    """The sqlite3 errors about the stored data or the disk: text that is not UTF-8, a
    read-only database, a full disk, a damaged file; ``None`` for the others."""
    operation = fields["operation"]
    if "Could not decode to UTF-8" in text:
        column = _COLUMN_RE.search(text)
        col = column.group(1) if column else None
        return DatabaseCorruptError(
            f"stored text in {table or 'a table'}"
            f"{'.' + col if col else ''} is not valid UTF-8: the database is damaged{where}; "
            "restore it from a backup",
            table=table,
            column=col,
            **fields,
        )
    if primary == _READONLY or "readonly database" in text:
        return DatabaseReadOnlyError(
            f"cannot {operation}: the database is read-only{where} ({text}); make the file "
            "and its directory writable by this process, or remount the disk read-write",
            **fields,
        )
    if primary == _FULL or "database or disk is full" in text:
        return DiskFullError(
            f"cannot {operation}: the disk is full{where}; the change was rolled back, "
            "free space and retry",
            **fields,
        )
    if primary in (_CORRUPT, _NOTADB) or "malformed" in text or "not a database" in text:
        on = f" in table {table}" if table else ""
        return DatabaseCorruptError(
            f"the database is damaged{on}{where} ({text}); restore it from a backup",
            table=table,
            column=None,
            **fields,
        )
    return None


def _is_psycopg(exc: BaseException) -> bool:
    return type(exc).__module__.split(".", 1)[0] == "psycopg"


_LOST_HINTS = (
    "server closed the connection",
    "connection already closed",
    "the connection is closed",
    "consuming input failed",
    "terminating connection",
    "SSL connection has been closed",
)


def _pg_state(orig: BaseException) -> str:
    """The error's SQLSTATE; for libpq's connection failures, which carry none, the one
    the server's FATAL message means (bad credentials, a missing database)."""
    state: str = getattr(orig, "sqlstate", None) or ""
    if not state and "FATAL:" in str(orig):
        # libpq's connection failures carry no SQLSTATE: read the server's FATAL message
        fatal = str(orig)
        if (
            "password authentication failed" in fatal
            or "no pg_hba.conf entry" in fatal
            or ("role" in fatal and "does not exist" in fatal)
            or "authentication failed" in fatal
        ):
            state = "28000"
        elif "database" in fatal and "does not exist" in fatal:
            state = "3D000"
    return state


def _translate_pg(
    orig: BaseException, *, operation: str, path: str | None, statement: str | None
) -> StorageError:
    """A psycopg error, by SQLSTATE (see the module docstring)."""
    state = _pg_state(orig)
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    where = f" ({path})" if path else ""
    fields: dict[str, Any] = {"operation": operation, "path": path}
    table = table_of(statement)
    connecting = operation in ("open", "connect")
    if state.startswith("28"):
        return DatabaseAuthError(
            f"the PostgreSQL server refused the credentials{where}: check the user and "
            "password in the URL (and pg_hba.conf)",
            path=path or "",
        )
    if state == "3D000":
        return DatabaseMissingError(
            f"the PostgreSQL database does not exist{where}; create it first (CREATE DATABASE ...)",
            path=path or "",
        )
    if state == "25006":
        return DatabaseReadOnlyError(
            f"cannot {operation}: the PostgreSQL transaction is read-only{where} ({text}); "
            "connect to the primary, not a standby",
            **fields,
        )
    if state == "53100":
        return DiskFullError(
            f"cannot {operation}: the database server's disk is full{where}; the change was "
            "rolled back, free space and retry",
            **fields,
        )
    if state in ("40P01", "40001", "55P03"):
        return DatabaseLockedError(
            f"cannot {operation}: the database is locked by another connection{where} ({text})",
            **fields,
        )
    if state in ("XX001", "XX002"):
        on = f" in table {table}" if table else ""
        return DatabaseCorruptError(
            f"the database is damaged{on}{where} ({text}); restore it from a backup",
            table=table,
            column=None,
            **fields,
        )
    lost = state.startswith(("08", "57P")) or any(h in text for h in _LOST_HINTS)
    if not state and type(orig).__name__ == "OperationalError" and connecting and not lost:
        return DatabaseUnreachableError(
            f"cannot reach the PostgreSQL server{where}: {text}", path=path or ""
        )
    if lost or state.startswith("53"):
        return StorageIOError(
            f"cannot {operation}: the connection to the database server failed{where} ({text})",
            **fields,
        )
    kind = type(orig).__name__
    return StorageError(f"the database refused to {operation}{where}: {kind}: {text}", **fields)


def stored_json(text: str | bytes | None, *, table: str, column: str, default: Any = None) -> Any:
    """Decode a JSON document stored in ``table.column``.

    Raises:
        DatabaseCorruptError: the stored value is not valid JSON / UTF-8 (the value itself is
            never put in the message).
    """
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DatabaseCorruptError(
            f"a stored value in {table}.{column} is not valid JSON ({type(exc).__name__}); "
            "the database is damaged: restore it from a backup",
            table=table,
            column=column,
            operation="read",
        ) from None


def install(engine: Engine, path: str) -> None:
    """Make ``engine`` raise translated errors for every failure SQLAlchemy sees."""

    @event.listens_for(engine, "handle_error")
    def _handle(context: ExceptionContext) -> BaseException | None:
        original = context.original_exception
        if not isinstance(original, sqlite3.Error | SQLAlchemyError) and not _is_psycopg(original):
            return None
        statement = context.statement
        if statement is None and context.execution_context is not None:
            statement = getattr(context.execution_context, "statement", None)
        return translate(
            context.sqlalchemy_exception or original,
            operation="connect" if context.connection is None else "read",
            path=path,
            statement=statement,
        )
