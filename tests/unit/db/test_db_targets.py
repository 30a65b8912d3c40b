"""What ``Database.open`` is given: paths, ``sqlite:`` URLs and PostgreSQL URLs; redaction
of passwords; advisory-lock keys; the ``?`` placeholder rewrite; ``pool_size``."""

from __future__ import annotations

from pathlib import Path

import pytest

from waiaas import WalletConfig
from waiaas.db import Database, adapt_sql, parse_target
from waiaas.db.engine import lock_key, pg_begin_sql
from waiaas.errors import InvalidInputError

SECRET = "hunter2-Secret"


def test_a_plain_path_is_sqlite(tmp_path: Path) -> None:
    target = parse_target(tmp_path / "w.db")
    assert (target.dialect, target.path, target.url) == ("sqlite", tmp_path / "w.db", None)


def test_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_target("sqlite:///rel.db").path == tmp_path / "rel.db"
    assert parse_target(f"sqlite:///{tmp_path}/abs.db").path == tmp_path / "abs.db"
    assert parse_target(f"sqlite+pysqlite:///{tmp_path}/p.db").path == tmp_path / "p.db"
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:relative.db"):
        with pytest.raises(InvalidInputError):
            parse_target(bad)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@db.internal:5432/w",
        f"postgresql+psycopg://u:{SECRET}@db.internal/w",
        f"postgres://u:{SECRET}@db.internal/w",
    ],
)
def test_postgresql_urls_use_psycopg_and_hide_the_password(url: str) -> None:
    target = parse_target(url)
    assert target.dialect == "postgresql" and target.path is None
    assert target.url is not None and target.url.drivername == "postgresql+psycopg"
    assert target.url.password == SECRET  # kept for connecting...
    assert SECRET not in target.location and "u:***@" in target.location  # ...never shown
    assert SECRET not in repr(target.location)


def test_password_query_parameters_are_hidden() -> None:
    target = parse_target(f"postgresql://u@h/w?password={SECRET}&sslpassword={SECRET}&x=1")
    assert SECRET not in target.location and SECRET not in repr(target)
    assert target.location == "postgresql+psycopg://u:***@h/w?x=1"
    assert target.url is not None and target.url.password == SECRET
    assert SECRET not in repr(target.url)
    assert target.connect_args == {"sslpassword": SECRET}


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg2://u:{SECRET}@h/w",
        f"postgresql+asyncpg://u:{SECRET}@h/w",
        f"postgresql+pg8000://u:{SECRET}@h/w",
        f"postgresql://u:{SECRET}@h:port/w",
        f"postgresql://u:{SECRET}@h:0/w",
        f"postgresql://u:{SECRET}@h:70000/w",
    ],
)
def test_bad_postgresql_urls(url: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_target(url)
    assert SECRET not in str(info.value) and info.value.field == "path"


@pytest.mark.parametrize("value", ["", "   ", 3, None, True, b"/x.db"])
def test_not_a_target(value: object) -> None:
    with pytest.raises(InvalidInputError):
        Database.open(value)  # type: ignore[arg-type]


def test_lock_keys_depend_on_database_schema_and_name() -> None:
    keys = {
        lock_key("db", "s1", "global"),
        lock_key("db", "s2", "global"),
        lock_key("db2", "s1", "global"),
        lock_key("db", "s1", "agent:a"),
        lock_key("db", "s1", "agent:b"),
    }
    assert len(keys) == 5
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert lock_key("db", "s1", "global") == lock_key("db", "s1", "global")  # stable


def test_begin_statements_take_the_locks_first() -> None:
    scope = ("db", "s")
    g, a = lock_key(*scope, "global"), lock_key(*scope, "agent:x")
    assert pg_begin_sql("IMMEDIATE", scope) == f"BEGIN; SELECT pg_advisory_xact_lock({g})"
    assert pg_begin_sql("AGENT", scope, "x") == (
        f"BEGIN; SELECT pg_advisory_xact_lock_shared({g}), pg_advisory_xact_lock({a})"
    )
    assert pg_begin_sql("READ", scope) == "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    with pytest.raises(ValueError, match="agent id"):
        pg_begin_sql("AGENT", scope)


def test_adapt_sql() -> None:
    assert adapt_sql("SELECT ? WHERE a LIKE '%?'", "sqlite") == "SELECT ? WHERE a LIKE '%?'"
    assert adapt_sql("SELECT ? WHERE a LIKE '%?'", "postgresql") == ("SELECT %s WHERE a LIKE '%%?'")
    assert adapt_sql('SELECT "q?" , ?', "postgresql") == 'SELECT "q?" , %s'
    assert adapt_sql("SELECT a FROM t INDEXED BY ix WHERE b = ?", "postgresql") == (
        "SELECT a FROM t WHERE b = %s"
    )


@pytest.mark.sqlite_only  # a path opens an SQLite file
def test_pool_size(tmp_path: Path) -> None:
    assert WalletConfig().pool_size == 8
    with pytest.raises(ValueError, match="pool_size"):
        WalletConfig(pool_size=0)
    for bad in (0, -1, True, 2.5):
        with pytest.raises(InvalidInputError):
            Database.open(tmp_path / "p.db", pool_size=bad)  # type: ignore[arg-type]
    db = Database.open(tmp_path / "p.db", pool_size=3)
    try:
        assert db.engine.pool.size() == 3  # type: ignore[attr-defined]
        assert db.dialect == "sqlite" and db.location == str(tmp_path / "p.db")
    finally:
        db.close()


def test_a_postgresql_wallet_with_a_file_keystore_needs_a_keystore_dir() -> None:
    """Refused before any connection is made (port 1 would refuse one), without the URL's
    password in the message; the default (the database keystore) needs no directory."""
    from waiaas import Wallet, WalletConfig

    with pytest.raises(InvalidInputError) as info:
        Wallet.open(
            f"postgresql://u:{SECRET}@127.0.0.1:1/w",
            password="x" * 16,
            config=WalletConfig(keystore_backend="file"),
        )
    assert info.value.field == "keystore_backend" and SECRET not in str(info.value)
