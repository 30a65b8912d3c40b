"""Keystore lifecycle and keys: create/open/unlock/lock, files on disk, add/use, validation."""

from __future__ import annotations

import copy
import json
import os
import pickle
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.pwhash.argon2id
import pytest
from eth_account import Account
from nacl.signing import SigningKey, VerifyKey

from waiaas.config import KdfLimits
from waiaas.errors import (
    InvalidInputError,
    KeystoreError,
    KeystoreLockedError,
    NotFoundError,
    WrongPasswordError,
)
from waiaas.keystore import FORMAT_VERSION, KeyInfo, Keystore, generate_keypair
from waiaas.keystore.keys import b58decode

Filled = dict[str, tuple[str, bytes, str]]


class FixedClock:
    """A clock that always says the same second."""

    def __init__(self, now: int) -> None:
        self.value = now

    def now(self) -> int:
        return self.value


@pytest.fixture
def kdf_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Count Argon2id runs: each call records (opslimit, memlimit)."""
    calls: list[tuple[int, int]] = []
    real = nacl.pwhash.argon2id.kdf

    def counting(size: int, password: bytes, salt: bytes, *, opslimit: int, memlimit: int) -> bytes:
        calls.append((opslimit, memlimit))
        return real(size, password, salt, opslimit=opslimit, memlimit=memlimit)

    monkeypatch.setattr(nacl.pwhash.argon2id, "kdf", counting)
    return calls


# --------------------------------------------------------------------------- lifecycle


def test_create_returns_unlocked_and_open_starts_locked(ks: Keystore, ks_path: Path) -> None:
    """create() leaves the keystore unlocked; open() of the same path starts locked."""
    assert not ks.locked
    assert Keystore.exists(ks_path)
    again = Keystore.open(ks_path)
    assert again.locked
    assert again.keystore_id == ks.keystore_id
    assert again.kdf == KdfLimits.minimum()


def test_unlock_wrong_password(ks: Keystore, ks_path: Path, password: str) -> None:
    """A wrong password raises WrongPasswordError and leaves the keystore locked."""
    other = Keystore.open(ks_path)
    with pytest.raises(WrongPasswordError) as err:
        other.unlock(password + "!")
    assert err.value.code == "WRONG_PASSWORD"
    assert other.locked
    other.unlock(password)
    assert not other.locked


def test_lock_drops_master_key(ks: Keystore, filled: Filled) -> None:
    """After lock() every operation that needs key material raises KeystoreLockedError."""
    ks.lock()
    ks.lock()  # idempotent
    assert ks.locked
    secret, public = generate_keypair("solana")
    attempts: list[Callable[[], Any]] = [
        lambda: ks.use_key("agent-sol").__enter__(),
        lambda: ks.add_key("agent-new", "solana", secret, public),
        lambda: ks.rotate_key("agent-sol", secret, public),
        lambda: ks.remove_key("agent-sol"),
        lambda: ks.seal(b"x", context="c"),
        lambda: ks.unseal("v1:AAAA", context="c"),
        lambda: ks.put_secret("n", b"v"),
        lambda: ks.get_secret("n"),
        lambda: ks.delete_secret("n"),
    ]
    for attempt in attempts:
        with pytest.raises(KeystoreLockedError):
            attempt()


def test_metadata_works_while_locked(ks: Keystore, filled: Filled, ks_path: Path) -> None:
    """key_ids, has_key, public_key and key_info need no password."""
    ks.lock()
    locked = Keystore.open(ks_path)
    assert locked.key_ids() == ["agent-evm", "agent-sol"]
    assert locked.has_key("agent-sol")
    assert not locked.has_key("agent-nobody")
    for key_id, (chain, _secret, public) in filled.items():
        info = locked.key_info(key_id)
        assert info == KeyInfo(key_id, chain, public, info.created_at)
        assert locked.public_key(key_id) == public


def test_context_manager_locks(ks_path: Path, password: str) -> None:
    """Leaving a ``with Keystore...`` block locks the keystore."""
    Keystore.create(ks_path, password, kdf=KdfLimits.minimum()).lock()
    with Keystore.open(ks_path) as opened:
        opened.unlock(password)
        assert not opened.locked
    assert opened.locked


def test_kdf_runs_once_per_unlock_never_per_use(
    ks_path: Path, password: str, kdf_calls: list[tuple[int, int]]
) -> None:
    """Argon2id runs at create and at unlock only; 50 uses of a key run it zero times."""
    limits = KdfLimits(opslimit=2, memlimit=16384)
    store = Keystore.create(ks_path, password, kdf=limits)
    assert kdf_calls == [(2, 16384)]
    secret, public = generate_keypair("solana")
    store.add_key("agent-1", "solana", secret, public)
    store.lock()
    store.unlock(password)
    assert len(kdf_calls) == 2
    for _ in range(50):
        with store.use_key("agent-1") as got:
            assert got == secret
    store.seal(b"x", context="c")
    store.key_info("agent-1")
    assert len(kdf_calls) == 2


def test_open_missing(tmp_path: Path) -> None:
    """Opening a path without a keystore is NotFoundError(entity='keystore')."""
    with pytest.raises(NotFoundError) as err:
        Keystore.open(tmp_path / "nothing-here")
    assert err.value.entity == "keystore"
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError):
        Keystore.open(tmp_path / "empty")
    assert not Keystore.exists(tmp_path / "empty")


def test_create_refuses_existing_or_foreign(ks: Keystore, ks_path: Path, tmp_path: Path) -> None:
    """create() refuses an existing keystore and a directory holding other files."""
    with pytest.raises(KeystoreError, match="already exists"):
        Keystore.create(ks_path, "pw", kdf=KdfLimits.minimum())
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(KeystoreError, match="not empty"):
        Keystore.create(foreign, "pw", kdf=KdfLimits.minimum())
    assert sorted(os.listdir(foreign)) == ["notes.txt"]
    with pytest.raises(KeystoreError, match="parent directory"):
        Keystore.create(tmp_path / "no" / "such" / "dir", "pw", kdf=KdfLimits.minimum())


def test_create_in_empty_existing_directory(tmp_path: Path) -> None:
    """An existing empty directory is accepted and tightened to mode 0700."""
    target = tmp_path / "ks"
    target.mkdir(mode=0o755)
    Keystore.create(target, "pw", kdf=KdfLimits.minimum())
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("password", "field"),
    [("", "password"), (None, "password"), (b"bytes", "password"), ("x" * 5000, "password")],
)
def test_create_validates_password(tmp_path: Path, password: object, field: str) -> None:
    """The password must be a non-empty str of bounded size; nothing is created otherwise."""
    with pytest.raises(InvalidInputError) as err:
        Keystore.create(tmp_path / "ks", password, kdf=KdfLimits.minimum())  # type: ignore[arg-type]
    assert err.value.field == field
    assert not (tmp_path / "ks").exists()


def test_create_validates_kdf(tmp_path: Path) -> None:
    """KDF limits must be a KdfLimits within libsodium's and our sanity bounds."""
    with pytest.raises(InvalidInputError) as err:
        Keystore.create(tmp_path / "ks", "pw", kdf={"opslimit": 1})  # type: ignore[arg-type]
    assert err.value.field == "kdf"
    with pytest.raises(InvalidInputError):
        Keystore.create(tmp_path / "ks", "pw", kdf=KdfLimits(opslimit=65, memlimit=8192))
    with pytest.raises(InvalidInputError):
        Keystore.create(tmp_path / "ks", "pw", kdf=KdfLimits(opslimit=1, memlimit=1 << 33))


def test_unicode_password_is_normalised(tmp_path: Path) -> None:
    """A password typed in NFD opens a keystore created with the NFC form."""
    nfc, nfd = "caf\u00e9-pw", "cafe\u0301-pw"
    store = Keystore.create(tmp_path / "ks", nfc, kdf=KdfLimits.minimum())
    store.lock()
    store.unlock(nfd)
    assert not store.locked


# --------------------------------------------------------------------------- files


def test_files_modes_and_format(ks: Keystore, filled: Filled, ks_path: Path) -> None:
    """Directories are 0700, files 0600; CURRENT and every record carry the format version."""
    for path in [ks_path, *ks_path.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    current = json.loads((ks_path / "CURRENT").read_text())
    assert current == {"format": FORMAT_VERSION, "generation": 1}
    header = json.loads((ks_path / "gen-1" / "header.json").read_text())
    assert header["format"] == FORMAT_VERSION
    assert header["kdf"]["algorithm"] == "argon2id13"
    assert header["kdf"]["opslimit"] == 1 and header["kdf"]["memlimit"] == 8192
    assert header["aead"] == "xchacha20poly1305-ietf"
    record = json.loads((ks_path / "gen-1" / "keys" / "agent-sol.json").read_text())
    assert record["format"] == FORMAT_VERSION
    assert record["key_id"] == "agent-sol" and record["chain"] == "solana"
    assert set(record) == {
        "format",
        "kind",
        "key_id",
        "chain",
        "public_key",
        "created_at",
        "sealed",
    }


def test_no_plaintext_secret_on_disk(ks: Keystore, filled: Filled, ks_path: Path) -> None:
    """Neither the raw secret nor its hex appears in any file."""
    blobs = [p.read_bytes() for p in ks_path.rglob("*") if p.is_file()]
    for _chain, secret, _public in filled.values():
        for blob in blobs:
            assert secret not in blob
            assert secret.hex().encode() not in blob


def test_open_refuses_newer_format(ks: Keystore, ks_path: Path) -> None:
    """A keystore written by a newer format is refused with a message saying to upgrade."""
    (ks_path / "CURRENT").write_text(json.dumps({"format": 2, "generation": 1}))
    with pytest.raises(KeystoreError, match="upgrade waiaas") as err:
        Keystore.open(ks_path)
    assert err.value.found == 2


def test_open_reports_corrupt_pointer(ks: Keystore, ks_path: Path) -> None:
    """A corrupt CURRENT or a missing generation is a KeystoreError, not a crash."""
    (ks_path / "CURRENT").write_text("{not json")
    with pytest.raises(KeystoreError, match="corrupt"):
        Keystore.open(ks_path)
    (ks_path / "CURRENT").write_text(json.dumps({"format": 1, "generation": 7}))
    with pytest.raises(KeystoreError, match="gen-7"):
        Keystore.open(ks_path)


def test_open_removes_leftovers(ks: Keystore, filled: Filled, ks_path: Path) -> None:
    """Temp files and unreferenced generations from an interrupted write are removed on open."""
    (ks_path / "gen-2").mkdir()
    (ks_path / "gen-2" / "header.json").write_text("half written")
    (ks_path / ".tmp-0123").write_bytes(b"partial")
    (ks_path / "gen-1" / "keys" / ".tmp-abcd").write_bytes(b"partial")
    Keystore.open(ks_path)
    assert sorted(os.listdir(ks_path)) == [".lock", "CURRENT", "gen-1"]
    assert sorted(os.listdir(ks_path / "gen-1" / "keys")) == ["agent-evm.json", "agent-sol.json"]


# --------------------------------------------------------------------------- keys


def test_use_key_yields_the_secret_and_signs(ks: Keystore, filled: Filled) -> None:
    """use_key yields exactly the stored secret; it signs for the stored public key."""
    with ks.use_key("agent-sol") as seed:
        signature = SigningKey(seed).sign(b"hello").signature
    VerifyKey(b58decode(filled["agent-sol"][2])).verify(b"hello", signature)
    with ks.use_key("agent-evm") as key:
        assert Account.from_key(key).address == filled["agent-evm"][2]
    assert ks.key_info("agent-sol").created_at > 0


def test_add_key_evm_address_is_checksummed(ks: Keystore) -> None:
    """An EVM address given in lower case is stored checksummed."""
    secret, address = generate_keypair("evm")
    info = ks.add_key("agent-1", "evm", secret, address.lower())
    assert info.public_key == address
    assert ks.public_key("agent-1") == address


def test_add_key_uses_the_clock(ks_path: Path, password: str) -> None:
    """Timestamps come from the injected clock."""
    store = Keystore.create(ks_path, password, kdf=KdfLimits.minimum(), clock=FixedClock(1234))
    secret, public = generate_keypair("solana")
    assert store.add_key("agent-1", "solana", secret, public).created_at == 1234
    assert store.key_info("agent-1").created_at == 1234


def test_add_key_refuses_duplicates(ks: Keystore, filled: Filled) -> None:
    """A taken key id is refused; the stored key is unchanged."""
    secret, public = generate_keypair("solana")
    with pytest.raises(InvalidInputError, match="rotate_key") as err:
        ks.add_key("agent-sol", "solana", secret, public)
    assert err.value.field == "key_id"
    with ks.use_key("agent-sol") as got:
        assert got == filled["agent-sol"][1]


def test_add_key_checks_public_key_matches(ks: Keystore) -> None:
    """For known chains the public key must be the one the secret derives."""
    secret, _ = generate_keypair("solana")
    _, other = generate_keypair("solana")
    with pytest.raises(InvalidInputError) as err:
        ks.add_key("agent-1", "solana", secret, other)
    assert err.value.field == "public_key"
    evm_secret, _ = generate_keypair("evm")
    _, evm_other = generate_keypair("evm")
    with pytest.raises(InvalidInputError):
        ks.add_key("agent-1", "evm", evm_secret, evm_other)
    assert ks.key_ids() == []


@pytest.mark.parametrize(
    ("chain", "secret", "public", "field"),
    [
        ("solana", bytes(31), "x", "secret"),
        ("evm", bytes(32), "0x" + "00" * 20, "secret"),
        ("solana", "a string", "x", "secret"),
        ("Solana", bytes(32), "x", "chain"),
        ("", bytes(32), "x", "chain"),
        ("cosmos", b"", "cosmos1abc", "secret"),
        ("cosmos", bytes(2000), "cosmos1abc", "secret"),
        ("cosmos", bytes(32), "has space", "public_key"),
        ("cosmos", bytes(32), "", "public_key"),
    ],
)
def test_add_key_validates(
    ks: Keystore, chain: str, secret: object, public: str, field: str
) -> None:
    """Bad chains, secrets and public keys are InvalidInputError naming the field."""
    with pytest.raises(InvalidInputError) as err:
        ks.add_key("agent-1", chain, secret, public)  # type: ignore[arg-type]
    assert err.value.field == field
    assert not ks.has_key("agent-1")


def test_other_chain_keys_are_opaque(ks: Keystore) -> None:
    """A chain family waiaas does not know stores an opaque secret and public key."""
    ks.add_key("agent-1", "cosmos", b"\x01" * 33, "cosmos1qqqq")
    with ks.use_key("agent-1") as got:
        assert got == b"\x01" * 33
    assert ks.key_info("agent-1").chain == "cosmos"


@pytest.mark.parametrize(
    "key_id",
    ["", "../escape", "a/b", "a\\b", "..", ".hidden", "x..y", "trailing.", "a b", "é", "a\x00b",
     "x" * 129, None, 7],
)  # fmt: skip
def test_key_ids_are_validated(ks: Keystore, key_id: object) -> None:
    """Ids that could escape the directory or be ambiguous as file names are refused."""
    secret, public = generate_keypair("solana")
    calls: list[Callable[[], Any]] = [
        lambda: ks.add_key(key_id, "solana", secret, public),  # type: ignore[arg-type]
        lambda: ks.use_key(key_id).__enter__(),  # type: ignore[arg-type]
        lambda: ks.has_key(key_id),  # type: ignore[arg-type]
        lambda: ks.public_key(key_id),  # type: ignore[arg-type]
        lambda: ks.rotate_key(key_id, secret, public),  # type: ignore[arg-type]
        lambda: ks.remove_key(key_id),  # type: ignore[arg-type]
        lambda: ks.archived_keys(key_id),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidInputError) as err:
            call()
        assert err.value.field == "key_id"


def test_uuid_key_ids_are_accepted(ks: Keystore) -> None:
    """Agent ids (UUIDv7 strings) are valid key ids."""
    from waiaas.ids import new_id

    key_id = new_id()
    secret, public = generate_keypair("evm")
    ks.add_key(key_id, "evm", secret, public)
    assert ks.key_ids() == [key_id]


def test_unknown_key(ks: Keystore) -> None:
    """Using or reading a key that does not exist is NotFoundError(entity='key')."""
    with pytest.raises(NotFoundError) as err, ks.use_key("agent-x"):
        pass
    assert (err.value.entity, err.value.entity_id) == ("key", "agent-x")
    with pytest.raises(NotFoundError):
        ks.public_key("agent-x")


def test_repr_shows_state_and_count_only(ks: Keystore, filled: Filled, ks_path: Path) -> None:
    """The repr names the path, the lock state and the key count."""
    assert repr(ks) == f"Keystore(path={str(ks_path)!r}, unlocked, keys=2)"
    ks.lock()
    assert repr(ks) == f"Keystore(path={str(ks_path)!r}, locked, keys=2)"


def test_cannot_be_pickled_or_copied(ks: Keystore) -> None:
    """An unlocked keystore cannot be serialised (that would write the master key out)."""
    with pytest.raises(TypeError):
        pickle.dumps(ks)
    with pytest.raises(TypeError):
        copy.copy(ks)


def test_concurrent_use_from_threads(ks: Keystore, filled: Filled) -> None:
    """Several threads can use keys at once; every use yields the right secret."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(100):
                for key_id, (_chain, secret, _public) in filled.items():
                    with ks.use_key(key_id) as got:
                        assert got == secret
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
