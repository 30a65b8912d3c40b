"""A wallet's database and its keystore belong together: a missing or foreign keystore is
refused with what to restore, never silently replaced by a new empty one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.rawdb import raw_connect
from waiaas import (
    KeystoreMismatchError,
    KeystoreMissingError,
    PasswordChangedError,
    Wallet,
    WrongPasswordError,
)
from waiaas.testing import TEST_PASSWORD, fast_config, local_chains


def _open(db: Path, ks: Path | None = None, password: str = TEST_PASSWORD) -> Wallet:
    config = fast_config(keystore_dir=str(ks)) if ks is not None else fast_config()
    return Wallet.open(db, password=password, chains=local_chains(), config=config)


@pytest.mark.sqlite_only  # the file keystore beside the database
def test_database_with_agents_and_no_keystore_is_refused(tmp_path: Path) -> None:
    """The keystore directory is gone: open refuses, names the path to restore, and does
    not create a new keystore (any password, even a wrong one, gets the same answer)."""
    db = tmp_path / "wallet.db"
    with _open(db) as wallet:
        wallet.create_agent("a", "solana")
        ks = wallet.keystore_path
        ks_id = wallet._keystore.keystore_id
    saved = tmp_path / "saved.keystore"
    shutil.move(ks, saved)
    for password in (TEST_PASSWORD, "any other password"):
        with pytest.raises(KeystoreMissingError) as caught:
            _open(db, password=password)
        assert caught.value.path == str(ks)
        assert caught.value.expected_id == ks_id
        assert "restore" in caught.value.message
        assert not ks.exists()
    shutil.move(saved, ks)
    with _open(db) as wallet:
        assert len(wallet.list_agents()) == 1


@pytest.mark.sqlite_only  # the file keystore beside the database
def test_database_from_before_keystore_ids_with_agents_is_refused(tmp_path: Path) -> None:
    """A database that never recorded a keystore id but has agents is refused too."""
    db = tmp_path / "wallet.db"
    with _open(db) as wallet:
        wallet.create_agent("a", "solana")
        ks = wallet.keystore_path
    with raw_connect(db) as conn:
        conn.execute("DELETE FROM wallet_state WHERE key = 'keystore'")
    shutil.rmtree(ks)
    with pytest.raises(KeystoreMissingError, match="has agents") as caught:
        _open(db)
    assert caught.value.expected_id is None


@pytest.mark.sqlite_only  # the file keystore beside the database
def test_a_foreign_keystore_is_refused(tmp_path: Path) -> None:
    """Another wallet's keystore put in place of this one's: KeystoreMismatchError with
    both ids; nothing is written to either."""
    db1, db2 = tmp_path / "one.db", tmp_path / "two.db"
    with _open(db1) as one:
        one.create_agent("a", "solana")
        ks1, id1 = one.keystore_path, one._keystore.keystore_id
    with _open(db2) as two:
        ks2, id2 = two.keystore_path, two._keystore.keystore_id
    with pytest.raises(KeystoreMismatchError) as caught:
        _open(db1, ks2)
    assert caught.value.expected_id == id1
    assert caught.value.found_id == id2
    with _open(db1, ks1) as one:
        assert one.list_agents()[0].name == "a"


def test_a_new_database_gets_a_new_keystore_and_records_it(tmp_path: Path) -> None:
    """Only a new database creates a keystore; its id is recorded in the database."""
    db = tmp_path / "wallet.db"
    with _open(db) as wallet:
        created = wallet._keystore.keystore_id
    with raw_connect(db) as conn:
        row = conn.one("SELECT value FROM wallet_state WHERE key = 'keystore'")
    assert row is not None and created in row[0]


def test_password_changed_by_another_process_names_that_cause(tmp_path: Path) -> None:
    """A wallet still holding the old password after another process changed it gets
    PasswordChangedError (not a bare 'locked'), on every try until it unlocks again; the old
    password is then refused as wrong and the new one works."""
    db = tmp_path / "wallet.db"
    first = _open(db)
    try:
        agent = first.create_agent("a", "solana")
        second = _open(db)
        second.change_password(TEST_PASSWORD, "a brand new password")
        second.close()
        for _ in range(2):
            with pytest.raises(PasswordChangedError) as caught:
                first.rotate_key(agent.id)
            assert caught.value.code == "KEYSTORE_PASSWORD_CHANGED"
            assert "another process" in caught.value.message
        with pytest.raises(WrongPasswordError):
            first.unlock(TEST_PASSWORD)
        first.unlock("a brand new password")
        assert first.rotate_key(agent.id).id == agent.id
    finally:
        first.close()
