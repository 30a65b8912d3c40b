"""Wallets whose keystore lives in their database (``keystore_backend="database"``).

Real SQLite files (and, with ``--backend=postgresql``, a real PostgreSQL schema) and the
in-process chains: opening, signing, the keystore-id checks, the refusals when the keystore is
not where the configuration looks, the move of a file keystore into the database (library and
CLI, SQLite), a rotation that commits with its audit row, a password change seen by another
host, and the audit head recorded in a row. Rows are read and edited through a raw connection
on either backend, as a thief with write access to the database would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest
from typer.testing import CliRunner

from tests.e2e.conftest import SOL, new_agent, recipient
from tests.security.test_tamper_evidence import _attack
from tests.support.pg_schema import pg_server, pg_url
from tests.support.rawdb import raw_connect
from waiaas import (
    KeystoreMismatchError,
    KeystoreMissingError,
    PasswordChangedError,
    Wallet,
    WrongPasswordError,
)
from waiaas.cli import app
from waiaas.config import KdfLimits
from waiaas.errors import KeystoreError, TamperDetectedError
from waiaas.keystore.migrate import move_to_database
from waiaas.testing import TEST_PASSWORD, FrozenClock, fast_config, fund, local_chains
from waiaas.types import AuditEvent, Transfer

__all__ = ["pg_server", "pg_url"]  # fixtures

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _open(path: Path, password: str = TEST_PASSWORD, **config: Any) -> Wallet:
    return Wallet.open(
        path,
        password=password,
        chains=local_chains(),
        config=fast_config(**config),
        clock=FrozenClock(),
    )


def _records(path: Path) -> dict[str, tuple[int, str]]:
    with raw_connect(path) as conn:
        found = conn.all("SELECT name, generation, body FROM keystore_records")
    return {name: (generation, body) for name, generation, body in found}


def _sql(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    with raw_connect(path) as conn:
        conn.execute(sql, params)


# --------------------------------------------------------------------------- opening


def test_a_database_keystore_wallet_signs_and_reopens(tmp_path: Path) -> None:
    """Created with the database backend: no directory, keys in rows, a transfer signs;
    reopened without saying so ("auto" finds the keystore in the database)."""
    db = tmp_path / "wallet.db"
    with _open(db, keystore_backend="database") as w:
        assert w.keystore_path is None
        agent = new_agent(w, "solana", funds=10 * SOL)
        token = w.issue_session(agent.id).token
        result = w.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
        assert result.status == "CONFIRMED"
    assert not Path(f"{db}.keystore").exists()
    names = _records(db)
    assert f"keys/{agent.id}" in names and "header" in names and "audit-head" in names
    with _open(db) as w:
        assert w.keystore_path is None
        assert w.verify_audit().ok
        assert w.get_agent(agent.id).public_key == agent.public_key
    with pytest.raises(WrongPasswordError):
        _open(db, password="not the password at all")


def test_database_with_agents_and_no_key_records_is_refused(tmp_path: Path) -> None:
    """The keystore rows are gone but the agents are there: refused, nothing created."""
    db = tmp_path / "wallet.db"
    with _open(db, keystore_backend="database") as w:
        w.create_agent("a", "solana")
    _sql(db, "DELETE FROM keystore_records")
    with pytest.raises(KeystoreMissingError, match="keystore_records") as caught:
        _open(db, keystore_backend="database")
    assert caught.value.expected_id is not None
    assert _records(db) == {}


@pytest.mark.sqlite_only
def test_a_file_wallet_asked_for_its_database_keystore(tmp_path: Path) -> None:
    """An existing file-keystore wallet opened with "database": refused, naming the way to
    move it; and the other way round."""
    db = tmp_path / "wallet.db"
    with _open(db) as w:
        w.create_agent("a", "solana")
    with pytest.raises(KeystoreMissingError, match="migrate-to-database"):
        _open(db, keystore_backend="database")
    other = tmp_path / "other.db"
    with _open(other, keystore_backend="database") as w:
        w.create_agent("a", "solana")
    with pytest.raises(KeystoreMissingError, match="keystore_backend='database'"):
        _open(other, keystore_backend="file")


def test_a_foreign_database_keystore_is_refused(tmp_path: Path) -> None:
    """Another wallet's keystore rows copied into this database: KeystoreMismatchError."""
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    with _open(one, keystore_backend="database") as w:
        w.create_agent("a", "solana")
        expected = w._keystore.keystore_id
    with _open(two, keystore_backend="database") as w:
        found = w._keystore.keystore_id
    _sql(one, "DELETE FROM keystore_records")
    with raw_connect(two) as source:
        foreign = source.all("SELECT name, generation, body, updated_at FROM keystore_records")
    with raw_connect(one) as conn:
        for row in foreign:
            conn.execute("INSERT INTO keystore_records VALUES (?, ?, ?, ?)", row)
    with pytest.raises(KeystoreMismatchError) as caught:
        _open(one)
    assert caught.value.expected_id == expected and caught.value.found_id == found


def test_config_refuses_a_directory_with_the_database_backend(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="keystore_dir"):
        fast_config(keystore_backend="database", keystore_dir=str(tmp_path / "ks"))


# --------------------------------------------------------------------------- transactions


def test_a_rotation_commits_with_its_audit_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation whose audit row fails to be written leaves the old key in force: the
    keystore rows rolled back with the agent row (no half-rotated state to reconcile)."""
    from waiaas.db.repositories import AuditRepository

    db = tmp_path / "wallet.db"
    with _open(db, keystore_backend="database") as w:
        agent = w.create_agent("a", "solana")
        before = _records(db)[f"keys/{agent.id}"]
        real = AuditRepository.append

        def failing(self: AuditRepository, event: Any, *args: Any, **kw: Any) -> Any:
            if event == AuditEvent.KEY_ROTATED:
                raise KeystoreError("injected: the audit row could not be written")
            return real(self, event, *args, **kw)

        monkeypatch.setattr(AuditRepository, "append", failing)
        with pytest.raises(KeystoreError, match="injected"):
            w.rotate_key(agent.id)
        monkeypatch.setattr(AuditRepository, "append", real)
        assert _records(db)[f"keys/{agent.id}"] == before
        assert not any(n.startswith(f"archive/{agent.id}/") for n in _records(db))
        assert w.get_agent(agent.id).public_key == agent.public_key
        rotated = w.rotate_key(agent.id)
        assert rotated.public_key != agent.public_key
        assert w._keystore.public_key(agent.id) == rotated.public_key


def test_a_password_change_on_one_host_is_seen_by_another(tmp_path: Path) -> None:
    """Two wallets on one database (two hosts): after one changes the password the other
    refuses key use with PasswordChangedError until it unlocks with the new password."""
    db = tmp_path / "wallet.db"
    first = _open(db, keystore_backend="database")
    try:
        agent = first.create_agent("a", "solana")
        second = _open(db)
        second.change_password(TEST_PASSWORD, "a brand new password")
        second.close()
        with pytest.raises(PasswordChangedError, match="another process"):
            first.rotate_key(agent.id)
        with pytest.raises(WrongPasswordError):
            first.unlock(TEST_PASSWORD)
        first.unlock("a brand new password")
        assert first.rotate_key(agent.id).id == agent.id
    finally:
        first.close()
    with pytest.raises(WrongPasswordError):
        _open(db)
    _open(db, password="a brand new password").close()


# --------------------------------------------------------------------------- moving files in


@pytest.mark.sqlite_only
def test_move_a_file_keystore_into_the_database(tmp_path: Path) -> None:
    """The sealed records are copied verbatim in one transaction; the wallet then opens from
    the database (auto), everything verifies and signs; the directory is kept aside."""
    db = tmp_path / "wallet.db"
    with _open(db) as w:
        agent = w.create_agent("a", "solana")
        old = w.rotate_key(agent.id)
        keystore_id = w._keystore.keystore_id
    directory = Path(f"{db}.keystore")
    moved = move_to_database(db, TEST_PASSWORD)
    assert moved.keystore_id == keystore_id and moved.records >= 5
    assert not directory.exists() and moved.old_directory.is_dir()
    assert f"keys/{agent.id}" in _records(db)
    with _open(db) as w:
        assert w.keystore_path is None
        assert w.verify_audit().ok
        assert w._keystore.public_key(agent.id) == old.public_key
        assert len(w._keystore.archived_keys(agent.id)) == 1
        fund(w, agent.id, 10 * SOL)  # fresh local chains: the rotated key signs
        token = w.issue_session(agent.id).token
        sent = w.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
        assert sent.status == "CONFIRMED"


@pytest.mark.sqlite_only
def test_moving_refuses_what_would_lose_or_mix_keys(tmp_path: Path) -> None:
    """A wrong password, another wallet's keystore, or a database that already holds one:
    refused, nothing copied, the directory left where it was."""
    db, other = tmp_path / "wallet.db", tmp_path / "other.db"
    with _open(db) as w:
        w.create_agent("a", "solana")
    with _open(other) as w:
        w.create_agent("b", "evm")
    with pytest.raises(WrongPasswordError):
        move_to_database(db, "not the password at all")
    with pytest.raises(KeystoreMismatchError):
        move_to_database(db, TEST_PASSWORD, keystore_dir=f"{other}.keystore")
    assert _records(db) == {} and Path(f"{db}.keystore").is_dir()
    move_to_database(db, TEST_PASSWORD)
    shutil.copytree(next(tmp_path.glob("wallet.db.keystore.migrated-*")), f"{db}.keystore")
    with pytest.raises(KeystoreError, match="already holds a keystore"):
        move_to_database(db, TEST_PASSWORD)


@pytest.mark.sqlite_only
def test_moving_refuses_a_log_whose_tail_was_cut(tmp_path: Path) -> None:
    """The file keystore's recorded head must be in the log: a cut tail is not laundered."""
    db = tmp_path / "wallet.db"
    with _open(db) as w:
        w.create_agent("a", "solana")
        w.create_agent("b", "solana")
    _cut_tail(db, 2)
    with pytest.raises(TamperDetectedError, match="nothing was copied"):
        move_to_database(db, TEST_PASSWORD)
    assert _records(db) == {}


@pytest.mark.sqlite_only
def test_the_cli_moves_the_keystore(tmp_path: Path) -> None:
    db = tmp_path / "wallet.db"
    with _open(db) as w:
        w.create_agent("a", "solana")
    result = CliRunner().invoke(
        app,
        ["--db", str(db), "keystore", "migrate-to-database", "--json"],
        env={"WAIAAS_MASTER_PASSWORD": TEST_PASSWORD},
        obj={"chains": local_chains(), "config": {"kdf": KdfLimits.minimum()}},
    )
    assert result.exit_code == 0, result.output
    assert '"records"' in result.stdout and not Path(f"{db}.keystore").exists()
    again = CliRunner().invoke(
        app,
        ["--db", str(db), "keystore", "migrate-to-database"],
        env={"WAIAAS_MASTER_PASSWORD": TEST_PASSWORD},
    )
    assert again.exit_code == 1 and again.stderr.startswith("error: keystore")
    assert "not found" in again.stderr


# --------------------------------------------------------------------------- the audit head


def _cut_tail(path: Path, rows: int) -> None:
    """Delete the newest audit rows as a database writer would (triggers lifted)."""
    with raw_connect(path) as conn:
        row = conn.one("SELECT max(id) FROM audit_log")
    assert row is not None
    _attack(path, ("DELETE FROM audit_log WHERE id > ?", (int(row[0]) - rows,)))


def test_the_head_row_catches_a_cut_tail(tmp_path: Path) -> None:
    """The head row is written with the audit rows: deleting the newest rows is refused."""
    db = tmp_path / "wallet.db"
    with _open(db, keystore_backend="database") as w:
        w.create_agent("a", "solana")
    _cut_tail(db, 2)
    with pytest.raises(TamperDetectedError) as caught:
        _open(db)
    assert caught.value.problem == "truncated"


def test_a_forged_head_row_is_refused(tmp_path: Path) -> None:
    """Moving the head row back (to hide a cut) without the MAC key is refused."""
    import json

    db = tmp_path / "wallet.db"
    with _open(db, keystore_backend="database") as w:
        w.create_agent("a", "solana")
    head = json.loads(_records(db)["audit-head"][1])
    _cut_tail(db, 2)
    with raw_connect(db) as conn:
        found = conn.one("SELECT id, row_hash FROM audit_log ORDER BY id DESC")
    assert found is not None
    rid, digest = found
    head.update(id=rid, hash=digest.hex())  # names a row that is there, but the MAC is old
    _sql(db, "UPDATE keystore_records SET body = ? WHERE name = 'audit-head'", (json.dumps(head),))
    with pytest.raises(TamperDetectedError):
        _open(db)


_CRASH = """
import os, sys
from waiaas.testing import TEST_PASSWORD, fast_config, local_chains
from waiaas.wallet import Wallet
w = Wallet.open(sys.argv[1], password=TEST_PASSWORD, chains=local_chains(), config=fast_config())
w.create_agent("late", "solana")
os._exit(0)   # a crash: the last commits are only in the -wal file
"""


@pytest.mark.sqlite_only
def test_a_lost_wal_takes_the_head_row_with_it(tmp_path: Path) -> None:
    """The documented limit (docs/design.md): with the keystore in the database, losing the
    WAL loses the head row with the rows it named, so the open cannot tell; and the key
    created in those commits is gone with them (the creation is recovered as TERMINATED).
    The file backend (the SQLite default) keeps its head outside the database for this."""
    db = tmp_path / "wallet.db"
    with _open(db, keystore_backend="database") as w:
        w.create_agent("a", "solana")
    env = {**os.environ, "PYTHONPATH": SRC}
    subprocess.run([sys.executable, "-c", _CRASH, str(db)], check=True, env=env)
    Path(f"{db}-wal").unlink()
    Path(f"{db}-shm").unlink(missing_ok=True)
    with _open(db) as w:
        assert w.verify_audit().ok
        assert [a.name for a in w.list_agents()] == ["a"]


# --------------------------------------------------------------------------- PostgreSQL


def test_postgresql_keeps_its_keystore_in_the_database(pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL "auto" is the database keystore; "file" needs keystore_dir."""
    from waiaas.errors import InvalidInputError

    with Wallet.open(
        pg_url, password=TEST_PASSWORD, chains=local_chains(), config=fast_config()
    ) as w:
        assert w.keystore_path is None
        agent = w.create_agent("a", "solana")
        assert "keystore_records" in w._keystore.location
    with raw_connect(pg_url) as conn:
        assert conn.one("SELECT 1 FROM keystore_records WHERE name = ?", (f"keys/{agent.id}",))
    with pytest.raises(InvalidInputError, match="keystore_dir"):
        Wallet.open(
            pg_url,
            password=TEST_PASSWORD,
            chains=local_chains(),
            config=fast_config(keystore_backend="file"),
        )


def test_postgresql_with_a_file_keystore(pg_url: str, tmp_path: Path) -> None:
    """A PostgreSQL wallet may keep its keys in files (keystore_dir); the database then has
    no keystore rows, and opening it without the directory is refused; moving the files in
    (with an explicit directory) makes it a database-keystore wallet."""
    from waiaas.errors import InvalidInputError

    directory = tmp_path / "wallet.keystore"
    config = fast_config(keystore_backend="file", keystore_dir=str(directory))
    with Wallet.open(pg_url, password=TEST_PASSWORD, chains=local_chains(), config=config) as w:
        w.create_agent("a", "solana")
        assert w.keystore_path == directory
    with raw_connect(pg_url) as conn:
        assert conn.all("SELECT name FROM keystore_records") == []
    with pytest.raises(KeystoreMissingError, match="keystore_backend='file'"):
        Wallet.open(pg_url, password=TEST_PASSWORD, chains=local_chains(), config=fast_config())
    with pytest.raises(InvalidInputError, match="keystore_dir"):
        move_to_database(pg_url, TEST_PASSWORD)
    moved = move_to_database(pg_url, TEST_PASSWORD, keystore_dir=directory)
    assert moved.old_directory.is_dir() and not directory.exists()
    with Wallet.open(
        pg_url, password=TEST_PASSWORD, chains=local_chains(), config=fast_config()
    ) as w:
        assert w.keystore_path is None
        assert w.verify_audit().ok
        agent = w.list_agents()[0]
        assert w._keystore.public_key(agent.id) == agent.public_key
