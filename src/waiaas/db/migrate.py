"""Schema migrations: alembic scripts shipped inside the package, applied on open.

``upgrade(engine, path)`` brings a database to head inside **one** ``BEGIN IMMEDIATE``
transaction with foreign-key enforcement off (the table-rebuild pattern needs it; SQLite's
``PRAGMA foreign_key_check`` runs before commit instead). Either every pending migration
applies, or none does and the file is left exactly as it was.

On PostgreSQL (transactional DDL) the whole upgrade is one ``BEGIN`` too, whose first
statement takes ``pg_advisory_xact_lock(MIGRATE)`` (keyed by database and schema): two hosts
upgrading one server at once are serialised, and the second re-reads the revision after the
lock, finds the schema at head and does nothing. No PRAGMA and no foreign-key check there:
PostgreSQL enforces foreign keys in every statement.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from waiaas.db.engine import BEGIN_OPTION, PG_MIGRATE, POSTGRESQL
from waiaas.db.faults import translate
from waiaas.errors import MigrationError, SchemaTooNewError, StorageError

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(script_location: Path | None = None) -> Config:
    """An alembic ``Config`` pointing at the shipped (or another) migrations directory."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location or MIGRATIONS_DIR))
    return cfg


def head_revision(script_location: Path | None = None) -> str:
    """The newest revision this package knows."""
    head = ScriptDirectory.from_config(alembic_config(script_location)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision a database is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _apply(conn: Connection, cfg: Config, target: str, wanted: str, path: str) -> None:
    """Run the pending migrations and the foreign-key check in one ``BEGIN IMMEDIATE``
    transaction: commit only if both succeed."""
    trans = conn.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}).begin()
    try:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise MigrationError(
                f"migration to {wanted} would break {len(broken)} foreign key(s)",
                path=path,
                revision=wanted,
            )
        trans.commit()
    except BaseException:
        trans.rollback()
        raise


def _check_known(script: ScriptDirectory, before: str | None, head: str, path: str) -> None:
    if before is not None:
        try:
            script.get_revision(before)
        except Exception as exc:
            raise SchemaTooNewError(path, before, head) from exc


def _upgrade_pg(
    engine: Engine, cfg: Config, script: ScriptDirectory, head: str, path: str, target: str
) -> str | None:
    wanted = head if target == "head" else target
    with engine.connect() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        if conn.in_transaction():
            conn.rollback()
        _check_known(script, before, head, path)
        if before == wanted:
            return before
        trans = conn.execution_options(**{BEGIN_OPTION: PG_MIGRATE}).begin()
        try:
            # Under the lock: another host may have upgraded while this one waited.
            before = MigrationContext.configure(conn).get_current_revision()
            _check_known(script, before, head, path)
            if before != wanted:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
            trans.commit()
        except BaseException as exc:
            try:
                trans.rollback()
            except Exception:  # the connection died: the server rolled back already
                conn.invalidate()
            if isinstance(exc, SchemaTooNewError) or not isinstance(exc, Exception):
                raise
            failure = _failed(exc, path, before, wanted)
            if failure is exc:
                raise
            raise failure from exc
        finally:
            conn.execution_options(**{BEGIN_OPTION: "DEFERRED"})
    return before


def _failed(exc: Exception, path: str, before: str | None, wanted: str) -> Exception:
    """What a failed upgrade raises: a MigrationError as it is; a specific storage error
    (read-only, disk full, corrupt, locked, I/O) as it is, so it says what happened, not
    "migration"; anything else as a MigrationError that says nothing was applied."""
    if isinstance(exc, MigrationError) or (
        isinstance(exc, StorageError) and type(exc) is not StorageError
    ):
        return exc
    why = exc.message if isinstance(exc, StorageError) else f"{type(exc).__name__}: {exc}"
    return MigrationError(
        f"migrating {path} from {before or 'empty'} to {wanted} failed: {why}; the database "
        "was left unchanged",
        path=path,
        revision=wanted,
    )


def upgrade(
    engine: Engine,
    path: str,
    *,
    target: str = "head",
    script_location: Path | None = None,
) -> str | None:
    """Upgrade the database to ``target`` atomically; return the revision it was at.

    Raises:
        SchemaTooNewError: the database is at a revision this package does not know.
        MigrationError: a migration failed; nothing was applied.
    """
    cfg = alembic_config(script_location)
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head() or ""
    if engine.dialect.name == POSTGRESQL:
        return _upgrade_pg(engine, cfg, script, head, path, target)
    with engine.connect() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        if conn.in_transaction():
            conn.rollback()
        if before is not None:
            try:
                script.get_revision(before)
            except Exception as exc:
                raise SchemaTooNewError(path, before, head) from exc
        wanted = head if target == "head" else target
        if before == wanted:
            return before
        raw = conn.connection.driver_connection
        assert raw is not None
        # Outside any transaction (inside one, SQLite ignores this PRAGMA).
        try:
            raw.execute("PRAGMA foreign_keys = OFF")
        except sqlite3.Error as exc:
            raise translate(exc, operation="open", path=path) from exc
        try:
            _apply(conn, cfg, target, wanted, path)
        except Exception as exc:
            failure = _failed(exc, path, before, wanted)
            if failure is exc:
                raise
            raise failure from exc
        finally:
            try:
                raw.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error:
                conn.invalidate()  # never hand a connection without FK checks back to the pool
            conn.execution_options(**{BEGIN_OPTION: "DEFERRED"})
    return before
