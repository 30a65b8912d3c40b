"""Changing the master password: all keys re-sealed, and a crash leaves all-old or all-new."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from waiaas.config import KdfLimits
from waiaas.errors import (
    InvalidInputError,
    KeyIntegrityError,
    KeystoreLockedError,
    WrongPasswordError,
)
from waiaas.keystore import Keystore, _files, generate_keypair

NEW_PASSWORD = "a brand new master password"
SRC = str(Path(__file__).resolve().parents[3] / "src")


class Injected(Exception):
    """The failure a test injects in the middle of a password change."""


@pytest.fixture
def populated(ks: Keystore) -> dict[str, Any]:
    """A keystore with keys, an archived key, named secrets and a sealed blob; and the truth."""
    keys: dict[str, bytes] = {}
    for index in range(3):
        for chain in ("solana", "evm"):
            secret, public = generate_keypair(chain)
            ks.add_key(f"agent-{chain}-{index}", chain, secret, public)
            keys[f"agent-{chain}-{index}"] = secret
    old_secret = keys["agent-solana-0"]
    new_secret, new_public = generate_keypair("solana")
    rotation = ks.rotate_key("agent-solana-0", new_secret, new_public)
    keys["agent-solana-0"] = new_secret
    ks.put_secret("jwt", b"j" * 32)
    ks.put_secret("webhook", b"w" * 16)
    blob = ks.seal(b"telegram-token", context="notify:telegram")
    return {
        "keys": keys,
        "archive": (rotation.archive_id, old_secret),
        "secrets": {"jwt": b"j" * 32, "webhook": b"w" * 16},
        "blob": blob,
    }


def assert_intact(store: Keystore, truth: dict[str, Any]) -> None:
    """Every key, the archived key, the secrets and the blob read back as stored."""
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


def reopen(path: Path, password: str) -> Keystore:
    store = Keystore.open(path)
    store.unlock(password)
    return store


def generations(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.startswith("gen-"))


# --------------------------------------------------------------------------- the happy path


def test_change_password(
    ks: Keystore, ks_path: Path, password: str, populated: dict[str, Any]
) -> None:
    """After a change only the new password works and everything is intact."""
    ks.change_password(password, NEW_PASSWORD)
    assert not ks.locked
    assert_intact(ks, populated)
    assert generations(ks_path) == ["gen-2"]
    with pytest.raises(WrongPasswordError):
        reopen(ks_path, password)
    assert_intact(reopen(ks_path, NEW_PASSWORD), populated)


def test_change_password_reseals_everything(
    ks: Keystore, ks_path: Path, password: str, populated: dict[str, Any], snapshot: Any
) -> None:
    """Every sealed record is rewritten (new salt, new ciphertexts); metadata is kept."""
    before = snapshot(ks_path / "gen-1")
    ks.change_password(password, NEW_PASSWORD)
    after = snapshot(ks_path / "gen-2")
    assert sorted(before) == sorted(after)
    for name in before:
        assert before[name] != after[name], name
    assert ks.key_info("agent-evm-1").created_at > 0


def test_change_password_while_locked_stays_locked(
    ks: Keystore, ks_path: Path, password: str, populated: dict[str, Any]
) -> None:
    """A locked keystore can change its password and stays locked."""
    ks.lock()
    ks.change_password(password, NEW_PASSWORD)
    assert ks.locked
    ks.unlock(NEW_PASSWORD)
    assert_intact(ks, populated)


def test_change_password_can_raise_kdf_limits(ks: Keystore, ks_path: Path, password: str) -> None:
    """The KDF limits can be raised together with the password; they are stored."""
    stronger = KdfLimits(opslimit=2, memlimit=16384)
    ks.change_password(password, NEW_PASSWORD, kdf=stronger)
    assert ks.kdf == stronger
    assert Keystore.open(ks_path).kdf == stronger


def test_change_password_wrong_current_changes_nothing(
    ks: Keystore, ks_path: Path, password: str, populated: dict[str, Any], snapshot: Any
) -> None:
    """A wrong current password raises WrongPasswordError and leaves every byte as it was."""
    before = snapshot(ks_path)
    with pytest.raises(WrongPasswordError):
        ks.change_password("not the password", NEW_PASSWORD)
    assert snapshot(ks_path) == before
    assert_intact(reopen(ks_path, password), populated)


@pytest.mark.parametrize("new", ["", None, b"bytes"])
def test_change_password_validates_new(ks: Keystore, password: str, new: object) -> None:
    """The new password must be a non-empty str."""
    with pytest.raises(InvalidInputError) as err:
        ks.change_password(password, new)  # type: ignore[arg-type]
    assert err.value.field == "new_password"


def test_change_password_refuses_a_tampered_record(
    ks: Keystore, ks_path: Path, password: str, populated: dict[str, Any], snapshot: Any
) -> None:
    """A record that fails authentication aborts the change; the old generation stays."""
    victim = ks_path / "gen-1" / "keys" / "agent-evm-2.json"
    victim.write_text(victim.read_text().replace('"sealed": "', '"sealed": "AAAA'))
    before = snapshot(ks_path)
    with pytest.raises(KeyIntegrityError) as err:
        ks.change_password(password, NEW_PASSWORD)
    assert err.value.key_id == "agent-evm-2"
    assert snapshot(ks_path) == before
    assert generations(ks_path) == ["gen-1"]


def test_other_instance_notices_a_password_change(
    ks: Keystore, ks_path: Path, password: str, populated: dict[str, Any]
) -> None:
    """An instance unlocked under the old password locks itself when another changes it."""
    other = reopen(ks_path, password)
    ks.change_password(password, NEW_PASSWORD)
    with pytest.raises(KeystoreLockedError, match="another process"), other.use_key("agent-evm-0"):
        pass
    assert other.locked
    secret, public = generate_keypair("solana")
    with pytest.raises(KeystoreLockedError):
        other.add_key("agent-x", "solana", secret, public)
    other.unlock(NEW_PASSWORD)
    assert_intact(other, populated)


# --------------------------------------------------------------------------- injected crashes


def count_writes(ks_path: Path, password: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many atomic writes one password change of this keystore makes (on a copy)."""
    import shutil

    copy = ks_path.parent / "dry-run"
    shutil.copytree(ks_path, copy)
    writes = 0
    real = _files.write_atomic

    def counting(path: Path, data: bytes) -> None:
        nonlocal writes
        writes += 1
        real(path, data)

    monkeypatch.setattr(_files, "write_atomic", counting)
    Keystore.open(copy).change_password(password, NEW_PASSWORD)
    monkeypatch.setattr(_files, "write_atomic", real)
    return writes


def test_crash_at_every_write_leaves_the_old_keystore(
    ks: Keystore,
    ks_path: Path,
    password: str,
    populated: dict[str, Any],
    snapshot: Callable[[Path], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure at any write of the change, up to the CURRENT switch, leaves all-old."""
    total = count_writes(ks_path, password, monkeypatch)
    assert total == 11  # header + 6 keys + 1 archive + 2 secrets + CURRENT
    before = snapshot(ks_path)
    real = _files.write_atomic
    for fail_at in range(1, total + 1):
        seen = 0

        def failing(path: Path, data: bytes, fail_at: int = fail_at) -> None:
            nonlocal seen
            seen += 1
            if seen == fail_at:
                raise Injected(f"crash at write {fail_at} ({path.name})")
            real(path, data)

        monkeypatch.setattr(_files, "write_atomic", failing)
        with pytest.raises(Injected):
            ks.change_password(password, NEW_PASSWORD)
        monkeypatch.setattr(_files, "write_atomic", real)
        assert snapshot(ks_path) == before, f"changed after a crash at write {fail_at}"
        assert generations(ks_path) == ["gen-1"]
        assert_intact(ks, populated)  # the same instance still works
    with pytest.raises(WrongPasswordError):
        reopen(ks_path, NEW_PASSWORD)
    assert_intact(reopen(ks_path, password), populated)


def test_os_error_midway_is_a_keystore_error(
    ks: Keystore,
    ks_path: Path,
    password: str,
    populated: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk error (e.g. ENOSPC) while writing the new generation is a KeystoreError."""
    from waiaas.errors import KeystoreError

    real = _files.write_atomic
    seen = 0

    def disk_full(path: Path, data: bytes) -> None:
        nonlocal seen
        seen += 1
        if seen == 4:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(_files, "write_atomic", disk_full)
    with pytest.raises(KeystoreError, match="No space left"):
        ks.change_password(password, NEW_PASSWORD)
    monkeypatch.setattr(_files, "write_atomic", real)
    assert generations(ks_path) == ["gen-1"]
    assert_intact(reopen(ks_path, password), populated)


def test_crash_after_the_switch_leaves_the_new_keystore(
    ks: Keystore,
    ks_path: Path,
    password: str,
    populated: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash after CURRENT moved (old generation not yet deleted) leaves all-new."""
    real = _files.remove_tree

    def crash_on_old(path: Path) -> None:
        if path.name == "gen-1":
            raise Injected("crash before removing the old generation")
        real(path)

    monkeypatch.setattr(_files, "remove_tree", crash_on_old)
    with pytest.raises(Injected):
        ks.change_password(password, NEW_PASSWORD)
    monkeypatch.setattr(_files, "remove_tree", real)
    assert generations(ks_path) == ["gen-1", "gen-2"]
    with pytest.raises(WrongPasswordError):
        reopen(ks_path, password)
    store = reopen(ks_path, NEW_PASSWORD)  # open() removed the leftover gen-1
    assert generations(ks_path) == ["gen-2"]
    assert_intact(store, populated)


# --------------------------------------------------------------------------- SIGKILL


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from waiaas.keystore import Keystore, _files

    path, old, new, where, point = sys.argv[1:6]
    point = int(point)
    real_write, real_remove = _files.write_atomic, _files.remove_tree
    seen = 0

    def stall():
        print("READY", flush=True)
        time.sleep(60)  # the parent kills us here

    def write(target, data):
        global seen
        real_write(target, data)
        if "gen-2" in str(target):
            seen += 1
            if where == "write" and seen == point:
                stall()

    def remove(target):
        if where == "switched" and target.name == "gen-1":
            stall()
        real_remove(target)

    _files.write_atomic, _files.remove_tree = write, remove
    Keystore.open(path).change_password(old, new)
    print("FINISHED", flush=True)
    """
)


def kill_midway(path: Path, password: str, where: str, point: int) -> None:
    """Run a password change in a child process and SIGKILL it at the given point."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), password, NEW_PASSWORD, where, str(point)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line == "READY", f"child said {line!r}; stderr: {child.stderr.read()}"  # type: ignore[union-attr]
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("point", [1, 2, 6, 10])
def test_sigkill_while_writing_new_generation(
    ks: Keystore, ks_path: Path, password: str, populated: dict[str, Any], point: int
) -> None:
    """A process killed while writing the new generation leaves the old password in force."""
    ks.lock()
    kill_midway(ks_path, password, "write", point)
    assert "gen-2" in generations(ks_path)  # the half-written generation is there...
    with pytest.raises(WrongPasswordError):
        reopen(ks_path, NEW_PASSWORD)
    store = reopen(ks_path, password)
    assert generations(ks_path) == ["gen-1"]  # ...and open() removed it
    assert_intact(store, populated)
    # The keystore is fully usable afterwards: a later change succeeds.
    store.change_password(password, NEW_PASSWORD)
    assert_intact(reopen(ks_path, NEW_PASSWORD), populated)


def test_sigkill_after_the_switch(
    ks: Keystore, ks_path: Path, password: str, populated: dict[str, Any]
) -> None:
    """A process killed after switching CURRENT leaves the new password in force."""
    ks.lock()
    kill_midway(ks_path, password, "switched", 0)
    with pytest.raises(WrongPasswordError):
        reopen(ks_path, password)
    store = reopen(ks_path, NEW_PASSWORD)
    assert generations(ks_path) == ["gen-2"]
    assert_intact(store, populated)
