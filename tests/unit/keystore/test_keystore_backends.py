"""The same keystore on both backends: files, and rows of a waiaas database.

Every test here runs on the file backend (a directory) and on the database backend (the
``keystore_records`` table of a real SQLite database, and of a fresh schema on a real
PostgreSQL server: ``WAIAAS_TEST_POSTGRES_URL``, or the private server the tests start). A
second ``Database`` handle on the same database stands for another host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import pg_redirect
from tests.support.pg_schema import pg_server, pg_url
from waiaas.config import KdfLimits
from waiaas.db import Database
from waiaas.errors import (
    InvalidInputError,
    KeystoreError,
    KeystoreLockedError,
    NotFoundError,
    PasswordChangedError,
    WrongPasswordError,
)
from waiaas.keystore import Keystore, generate_keypair

__all__ = ["pg_server", "pg_url"]  # fixtures

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new master password"
SRC = str(Path(__file__).resolve().parents[3] / "src")


class Place:
    """Where a keystore lives for one test, and how to reach it again (another 'host')."""

    def __init__(self, backend: str, tmp_path: Path, url: str | None = None) -> None:
        self.backend = "file" if backend == "file" else "database"
        self.tmp_path = tmp_path
        self.dir = tmp_path / "wallet.keystore"
        self.db_target: str = url if url is not None else str(tmp_path / "wallet.db")
        self._dbs: list[Database] = []

    def target(self) -> Path | Database:
        """A fresh handle: the directory, or a new Database on the same database."""
        if self.backend == "file":
            return self.dir
        db = Database.open(self.db_target)
        self._dbs.append(db)
        return db

    def spec(self) -> str:
        """What a child process opens: ``file:<dir>`` or ``database:<path or URL>``."""
        if self.backend == "file":
            return f"file:{self.dir}"
        # under --backend=postgresql, the schema the parent's path was redirected to
        redirected = pg_redirect.target(self.db_target) if pg_redirect.active() else None
        return f"database:{redirected or self.db_target}"

    def close(self) -> None:
        for db in self._dbs:
            db.close()


@pytest.fixture(params=["file", "sqlite", "postgresql"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    where = Place(request.param, tmp_path, url)
    try:
        yield where
    finally:
        where.close()


@pytest.fixture
def ks(place: Place) -> Keystore:
    return Keystore.create(place.target(), PASSWORD, kdf=KdfLimits.minimum())


def reopen(place: Place, password: str = PASSWORD) -> Keystore:
    store = Keystore.open(place.target())
    store.unlock(password)
    return store


@pytest.fixture
def populated(ks: Keystore) -> dict[str, Any]:
    """Keys on both chains, an archived key, named secrets and a sealed blob; and the truth."""
    keys: dict[str, bytes] = {}
    for index in range(2):
        for chain in ("solana", "evm"):
            secret, public = generate_keypair(chain)
            ks.add_key(f"agent-{chain}-{index}", chain, secret, public)
            keys[f"agent-{chain}-{index}"] = secret
    old_secret = keys["agent-solana-0"]
    new_secret, new_public = generate_keypair("solana")
    rotation = ks.rotate_key("agent-solana-0", new_secret, new_public)
    keys["agent-solana-0"] = new_secret
    ks.put_secret("jwt", b"j" * 32)
    blob = ks.seal(b"telegram-token", context="notify:telegram")
    return {
        "keys": keys,
        "archive": (rotation.archive_id, old_secret),
        "secrets": {"jwt": b"j" * 32},
        "blob": blob,
    }


def assert_intact(store: Keystore, truth: dict[str, Any]) -> None:
    assert store.key_ids() == sorted(truth["keys"])
    for key_id, secret in truth["keys"].items():
        with store.use_key(key_id) as got:
            assert got == secret, key_id
    archive_id, old_secret = truth["archive"]
    with store.use_archived_key("agent-solana-0", archive_id) as got:
        assert got == old_secret
    for name, value in truth["secrets"].items():
        assert store.get_secret(name) == value
    assert store.unseal(truth["blob"], context="notify:telegram") == b"telegram-token"


# --------------------------------------------------------------------------- lifecycle


def test_backend_and_location(ks: Keystore, place: Place) -> None:
    """The keystore says where it lives; a database keystore has no directory."""
    assert ks.backend == place.backend
    if place.backend == "file":
        assert ks.path == place.dir and ks.location == str(place.dir)
    else:
        assert ks.path is None and "keystore_records" in ks.location
        assert not place.dir.exists()
    assert "unlocked" in repr(ks) and "keys=0" in repr(ks)


def test_create_open_unlock_and_wrong_password(ks: Keystore, place: Place) -> None:
    """Created unlocked; opened locked; a wrong password changes nothing; the right one opens."""
    secret, public = generate_keypair("evm")
    ks.add_key("agent-1", "evm", secret, public)
    other = Keystore.open(place.target())
    assert other.locked and other.keystore_id == ks.keystore_id
    assert other.key_ids() == ["agent-1"] and other.public_key("agent-1") == public
    with pytest.raises(KeystoreLockedError), other.use_key("agent-1"):
        pass
    with pytest.raises(WrongPasswordError):
        other.unlock("not the password")
    assert other.locked
    other.unlock(PASSWORD)
    with other.use_key("agent-1") as got:
        assert got == secret
    assert Keystore.exists(place.target())


def test_create_refuses_an_existing_keystore(ks: Keystore, place: Place) -> None:
    with pytest.raises(KeystoreError, match="already exists"):
        Keystore.create(place.target(), PASSWORD, kdf=KdfLimits.minimum())


def test_open_missing(place: Place) -> None:
    """No keystore there: NotFoundError (the database is migrated, its table is empty)."""
    assert not Keystore.exists(place.target())
    with pytest.raises(NotFoundError):
        Keystore.open(place.target())


def test_duplicate_and_unknown_keys(ks: Keystore) -> None:
    secret, public = generate_keypair("solana")
    ks.add_key("agent-1", "solana", secret, public)
    with pytest.raises(InvalidInputError, match="already exists"):
        ks.add_key("agent-1", "solana", *generate_keypair("solana"))
    with pytest.raises(NotFoundError), ks.use_key("agent-2"):
        pass
    assert not ks.has_key("agent-2") and ks.has_key("agent-1")


def test_rotation_remove_and_archive(ks: Keystore, populated: dict[str, Any]) -> None:
    """Rotate keeps the old key sealed in the archive; remove moves the key there too."""
    assert_intact(ks, populated)
    archived = ks.archived_keys("agent-solana-0")
    assert [a.reason for a in archived] == ["rotated"]
    gone = ks.remove_key("agent-evm-1")
    assert not ks.has_key("agent-evm-1")
    with ks.use_archived_key("agent-evm-1", gone.archive_id) as got:
        assert got == populated["keys"]["agent-evm-1"]
    assert [a.reason for a in ks.archived_keys("agent-evm-1")] == ["removed"]


def test_named_secrets(ks: Keystore, place: Place) -> None:
    ks.put_secret("a", b"1")
    ks.put_secret("a", b"2")
    ks.put_secret("b", b"3")
    assert ks.secret_names() == ["a", "b"] and ks.get_secret("a") == b"2"
    ks.delete_secret("b")
    with pytest.raises(NotFoundError):
        ks.get_secret("b")
    assert reopen(place).get_secret("a") == b"2"


# --------------------------------------------------------------------------- passwords


def test_change_password_reseals_everything(
    ks: Keystore, place: Place, populated: dict[str, Any]
) -> None:
    ks.change_password(PASSWORD, NEW_PASSWORD)
    assert_intact(ks, populated)  # the instance that changed it stays unlocked
    with pytest.raises(WrongPasswordError):
        reopen(place, PASSWORD)
    assert_intact(reopen(place, NEW_PASSWORD), populated)


def test_another_host_notices_a_password_change(
    ks: Keystore, place: Place, populated: dict[str, Any]
) -> None:
    """An instance unlocked under the old password locks itself at its next use of key
    material and asks for the new password; metadata keeps working meanwhile."""
    other = reopen(place)
    ks.change_password(PASSWORD, NEW_PASSWORD)
    with pytest.raises(PasswordChangedError, match="another process"), other.use_key("agent-evm-0"):
        pass
    assert other.locked
    assert other.key_ids() == sorted(populated["keys"])
    with pytest.raises(PasswordChangedError):
        other.add_key("agent-x", "solana", *generate_keypair("solana"))
    with pytest.raises(WrongPasswordError):
        other.unlock(PASSWORD)
    other.unlock(NEW_PASSWORD)
    assert_intact(other, populated)


def test_a_writer_under_the_old_password_is_refused(ks: Keystore, place: Place) -> None:
    """A host that did not read anything since the change and writes first is refused
    too: a record is never written under a generation that was replaced."""
    other = reopen(place)
    ks.change_password(PASSWORD, NEW_PASSWORD)
    with pytest.raises(PasswordChangedError):
        other.put_secret("late", b"x")
    assert not ks.has_secret("late")


def test_two_password_changes_at_once(
    ks: Keystore, place: Place, populated: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The KDF runs before the writer lock; a change that lands meanwhile (another host)
    wins and the slower one is refused with nothing changed."""
    from waiaas.keystore import _crypto

    other = reopen(place)
    real = _crypto.derive_key
    calls = 0

    def derive(*args: Any) -> bytearray:
        nonlocal calls
        calls += 1
        if calls == 2:  # ks has checked its current password: the other host changes it now
            monkeypatch.setattr(_crypto, "derive_key", real)
            other.change_password(PASSWORD, "the other host's password")
        return real(*args)

    monkeypatch.setattr(_crypto, "derive_key", derive)
    with pytest.raises(KeystoreError, match="another process meanwhile"):
        ks.change_password(PASSWORD, NEW_PASSWORD)
    with pytest.raises(WrongPasswordError):
        reopen(place, NEW_PASSWORD)
    assert_intact(reopen(place, "the other host's password"), populated)


# --------------------------------------------------------------------------- processes

CHILD_ADD = textwrap.dedent(
    """
    import sys
    from waiaas.db import Database
    from waiaas.keystore import Keystore, generate_keypair

    spec, password, tag, count = sys.argv[1:5]
    kind, _, where = spec.partition(":")
    target = Database.open(where) if kind == "database" else where
    ks = Keystore.open(target)
    ks.unlock(password)
    print("READY", flush=True)
    sys.stdin.readline()   # start together
    for i in range(int(count)):
        secret, public = generate_keypair("solana")
        ks.add_key(f"{tag}-{i}", "solana", secret, public)
    print("DONE", flush=True)
    """
)


def test_two_processes_add_keys_at_once(ks: Keystore, place: Place) -> None:
    """Two processes creating keys at the same moment both succeed; every key opens."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD_ADD, place.spec(), PASSWORD, tag, "8"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for tag in ("p", "q")
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "READY":
                child.kill()
                _, err = child.communicate()
                pytest.fail(f"a child did not start: {err}")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            assert "DONE" in out
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    expected = sorted(f"{tag}-{i}" for tag in ("p", "q") for i in range(8))
    assert ks.key_ids() == expected
    for key_id in expected:
        with ks.use_key(key_id) as secret:
            assert len(secret) == 32


def test_threads_use_keys_while_another_writes(ks: Keystore, populated: dict[str, Any]) -> None:
    """Readers in threads and a writer share one instance (one database handle)."""
    import threading

    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(20):
                with ks.use_key("agent-evm-0") as secret:
                    assert secret == populated["keys"]["agent-evm-0"]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(5):
        ks.add_key(f"late-{i}", "solana", *generate_keypair("solana"))
    for t in threads:
        t.join()
    assert errors == []
    assert len(ks.key_ids()) == len(populated["keys"]) + 5
