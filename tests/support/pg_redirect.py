"""Run the suites on PostgreSQL: every wallet opened by a *path* goes to a schema instead.

With ``pytest --backend=postgresql`` the plugin (:mod:`tests.support.backend`) calls
:func:`install`, which wraps :meth:`waiaas.Wallet.open` and :meth:`waiaas.db.Database.open`:
a path becomes ``<server URL>?options=-csearch_path%3D<schema>``, one schema per absolute
path (the same path gives the same schema, so a test that closes and reopens its wallet, or
hands the path to a child process, finds its data again). The keystore follows PostgreSQL's
default (the database keystore); before ``WalletConfig.keystore_backend`` existed, a
``keystore_dir`` beside the path.

Child processes inherit ``$WAIAAS_TEST_BACKEND`` and call :func:`install_from_env` first
(``tests/e2e/wallet_child.py`` and the ``python -c`` children do), so the redirect reaches
them without any site hook.

A path that is not a plausible new or reopened wallet (its directory missing, a directory, a
FIFO, an existing non-empty file, NUL bytes...) is left alone: the tests of those errors
are about the path itself, and keep running on SQLite.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

BACKEND_ENV = "WAIAAS_TEST_BACKEND"
TAG_ENV = "WAIAAS_TEST_PG_TAG"

_lock = threading.Lock()
_created: set[str] = set()
_installed = False


def active() -> bool:
    """Whether this process runs the tests on PostgreSQL (``$WAIAAS_TEST_BACKEND``)."""
    return os.environ.get(BACKEND_ENV) == "postgresql"


def tag() -> str:
    """This test session's schema prefix (shared with its children through the env)."""
    value = os.environ.get(TAG_ENV)
    if not value:
        value = os.urandom(4).hex()
        os.environ[TAG_ENV] = value
    return value


def schema_for(path: Path) -> str:
    """The schema of the wallet at ``path`` (a valid, unquoted PostgreSQL identifier)."""
    digest = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return f"w_{tag()}_{digest}"


def url_with_schema(base: str, schema: str) -> str:
    """``base`` (a PostgreSQL URL) with ``search_path`` set to ``schema`` through libpq's
    ``options`` (the form the engine documents)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def ensure_schema(schema: str) -> None:
    """``CREATE SCHEMA IF NOT EXISTS`` (once per process; another process may race us)."""
    with _lock:
        if schema in _created:
            return
        import psycopg

        from tests.support.postgres import connect

        conn: Any = connect()
        try:
            # another process may create it at the same moment
            with contextlib.suppress(
                psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema
            ):
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        finally:
            conn.close()
        _created.add(schema)


def redirectable(path: object) -> Path | None:
    """The absolute path when ``path`` names a new or reopened wallet, else ``None``."""
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        return None
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        return None
    if text.startswith(("postgresql:", "postgresql+", "sqlite:")):
        return None
    try:
        p = Path(text).expanduser().absolute()
        if len(p.name.encode()) > 255 or not p.parent.is_dir():
            return None
        if p.exists() and (not p.is_file() or p.stat().st_size > 0):
            return None  # a directory, a FIFO, or a real file: the test is about the file
    except (OSError, ValueError, RuntimeError):
        return None
    return p


def target_for(path: Path) -> str:
    """The URL a redirected wallet opens (its schema created)."""
    from tests.support.postgres import server_url

    schema = schema_for(path)
    ensure_schema(schema)
    return url_with_schema(server_url(), schema)


def target(path: object) -> str | None:
    """The URL to open instead of ``path``, or ``None`` to leave it alone."""
    p = redirectable(path)
    return None if p is None else target_for(p)


def _keystore_config(config: Any, path: Path) -> Any:
    """Before the database keystore existed: a keystore directory beside ``path``."""
    from waiaas.config import WalletConfig

    if "keystore_backend" in WalletConfig.model_fields:
        return config  # PostgreSQL's default: the keystore is in the database
    config = config if config is not None else WalletConfig()
    if config.keystore_dir is None:
        config = config.model_copy(update={"keystore_dir": f"{path}.keystore"})
    return config


def install() -> None:
    """Wrap ``Wallet.open`` and ``Database.open`` (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    from waiaas.db.database import Database
    from waiaas.wallet import Wallet

    wallet_open = Wallet.open.__func__  # type: ignore[attr-defined]
    database_open = Database.open.__func__  # type: ignore[attr-defined]

    @functools.wraps(wallet_open)
    def open_wallet(cls: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        p = redirectable(path)
        if p is not None:
            kwargs["config"] = _keystore_config(kwargs.get("config"), p)
            path = target_for(p)
        return wallet_open(cls, path, *args, **kwargs)

    @functools.wraps(database_open)
    def open_database(cls: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        redirected = target(path)
        return database_open(cls, redirected or path, *args, **kwargs)

    Wallet.open = classmethod(open_wallet)  # type: ignore[method-assign,assignment]
    Database.open = classmethod(open_database)  # type: ignore[method-assign,assignment]


def install_from_env() -> None:
    """:func:`install` when ``$WAIAAS_TEST_BACKEND`` says ``postgresql`` (child processes)."""
    if active():
        install()


def drop_session_schemas() -> None:
    """Drop every schema this session created (on a server the tests did not start)."""
    from tests.support.postgres import connect

    conn: Any = connect()
    try:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
            (f"w\\_{tag()}\\_%",),
        ).fetchall()
        for (name,) in rows:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        conn.close()
