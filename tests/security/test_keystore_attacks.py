"""Attacks on the keystore: tampering, moved or swapped files, traversal, leaks. All refused."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from waiaas.config import KdfLimits
from waiaas.errors import (
    InvalidInputError,
    KeyIntegrityError,
    KeystoreError,
    KeystoreLockedError,
    WaiaasError,
    WrongPasswordError,
)
from waiaas.keystore import Keystore, generate_keypair
from waiaas.keystore.keys import b58encode

PASSWORD = "hunter2-the-master-password-Xq9"


@pytest.fixture
def ks_path(tmp_path: Path) -> Path:
    return tmp_path / "ks"


@pytest.fixture
def ks(ks_path: Path) -> Keystore:
    """An unlocked keystore with two agents' keys."""
    store = Keystore.create(ks_path, PASSWORD, kdf=KdfLimits.minimum())
    for key_id, chain in (("agent-a", "solana"), ("agent-b", "solana"), ("agent-e", "evm")):
        store.add_key(key_id, chain, *generate_keypair(chain))
    return store


def key_file(ks_path: Path, key_id: str) -> Path:
    return ks_path / "gen-1" / "keys" / f"{key_id}.json"


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("position", [0, 10, 30, -1])
def test_flipped_bit_in_sealed_key(ks: Keystore, ks_path: Path, position: int) -> None:
    """One flipped bit anywhere in the sealed bytes (nonce, ciphertext, tag) is detected."""

    def flip(data: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(data["sealed"]))
        raw[position] ^= 0x01
        data["sealed"] = base64.b64encode(bytes(raw)).decode()

    edit(key_file(ks_path, "agent-a"), flip)
    with pytest.raises(KeyIntegrityError) as err, ks.use_key("agent-a"):
        pass
    assert err.value.key_id == "agent-a"
    assert "agent-a" in str(err.value)


def test_key_file_moved_onto_another_agent(ks: Keystore, ks_path: Path) -> None:
    """agent-a's key file copied over agent-b's fails to open as agent-b."""
    shutil.copy(key_file(ks_path, "agent-a"), key_file(ks_path, "agent-b"))
    with pytest.raises(KeyIntegrityError) as err, ks.use_key("agent-b"):
        pass
    assert err.value.key_id == "agent-b"


def test_key_file_moved_and_relabelled(ks: Keystore, ks_path: Path) -> None:
    """Even with its key_id field rewritten, a moved key fails: the id is associated data."""
    target = key_file(ks_path, "agent-b")
    shutil.copy(key_file(ks_path, "agent-a"), target)
    edit(target, lambda d: d.update(key_id="agent-b"))
    with pytest.raises(KeyIntegrityError) as err, ks.use_key("agent-b"):
        pass
    assert err.value.key_id == "agent-b"


def test_public_key_swapped_for_attacker_address(ks: Keystore, ks_path: Path) -> None:
    """Rewriting the stored address (to redirect deposits) is detected while unlocked."""
    _, attacker = generate_keypair("solana")
    edit(key_file(ks_path, "agent-a"), lambda d: d.update(public_key=attacker))
    with pytest.raises(KeyIntegrityError):
        ks.public_key("agent-a")
    with pytest.raises(KeyIntegrityError), ks.use_key("agent-a"):
        pass


def test_chain_field_changed(ks: Keystore, ks_path: Path) -> None:
    """Relabelling a key's chain is detected."""
    edit(key_file(ks_path, "agent-a"), lambda d: d.update(chain="evm"))
    with pytest.raises(KeyIntegrityError), ks.use_key("agent-a"):
        pass


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"format": 1}', b"\xff\xfe", b'{"format": 1, "kind": "key", "key_id": '
     b'"agent-a", "chain": "solana", "public_key": "x", "created_at": 1, "sealed": "!!"}'],
)  # fmt: skip
def test_corrupt_key_file(ks: Keystore, ks_path: Path, content: bytes) -> None:
    """Truncated or garbled key files are KeyIntegrityError naming the key."""
    key_file(ks_path, "agent-a").write_bytes(content)
    with pytest.raises(KeyIntegrityError) as err, ks.use_key("agent-a"):
        pass
    assert err.value.key_id == "agent-a"


def test_key_file_from_another_keystore(ks: Keystore, ks_path: Path, tmp_path: Path) -> None:
    """A key file from another keystore (same password, same key id) does not open here."""
    other = Keystore.create(tmp_path / "other", PASSWORD, kdf=KdfLimits.minimum())
    other.add_key("agent-a", "solana", *generate_keypair("solana"))
    shutil.copy(
        tmp_path / "other" / "gen-1" / "keys" / "agent-a.json", key_file(ks_path, "agent-a")
    )
    with pytest.raises(KeyIntegrityError), ks.use_key("agent-a"):
        pass


def test_header_swapped_from_another_keystore(ks: Keystore, ks_path: Path, tmp_path: Path) -> None:
    """A foreign header (same password) unlocks, but none of this keystore's keys open."""
    Keystore.create(tmp_path / "other", PASSWORD, kdf=KdfLimits.minimum())
    shutil.copy(tmp_path / "other" / "gen-1" / "header.json", ks_path / "gen-1" / "header.json")
    store = Keystore.open(ks_path)
    store.unlock(PASSWORD)
    for key_id in store.key_ids():
        with pytest.raises(KeyIntegrityError), store.use_key(key_id):
            pass


def test_kdf_downgrade_in_header(ks: Keystore, ks_path: Path) -> None:
    """Lowering the stored KDF cost does not open the keystore (the key would differ)."""
    ks.lock()
    ks.change_password(PASSWORD, PASSWORD, kdf=KdfLimits(opslimit=2, memlimit=16384))
    header = ks_path / "gen-2" / "header.json"
    edit(header, lambda d: d["kdf"].update(opslimit=1, memlimit=8192))
    with pytest.raises(WrongPasswordError):
        Keystore.open(ks_path).unlock(PASSWORD)


@pytest.mark.parametrize(
    "change",
    [
        {"opslimit": 10**9},
        {"memlimit": 1 << 40},
        {"memlimit": 0},
        {"algorithm": "scrypt"},
        {"salt": "AAAA"},
    ],
)
def test_absurd_kdf_parameters_refused(ks: Keystore, ks_path: Path, change: dict[str, Any]) -> None:
    """A forged header cannot make unlock run for hours, allocate terabytes or swap the KDF."""
    edit(ks_path / "gen-1" / "header.json", lambda d: d["kdf"].update(change))
    with pytest.raises(KeystoreError, match="corrupt"):
        Keystore.open(ks_path)


def test_symlinked_key_file_is_not_followed(ks: Keystore, ks_path: Path, tmp_path: Path) -> None:
    """A key file replaced by a symlink is refused, not read through."""
    outside = tmp_path / "outside.json"
    shutil.copy(key_file(ks_path, "agent-a"), outside)
    key_file(ks_path, "agent-a").unlink()
    os.symlink(outside, key_file(ks_path, "agent-a"))
    with pytest.raises(KeyIntegrityError, match="cannot be read"), ks.use_key("agent-a"):
        pass


def test_archived_key_tampering(ks: Keystore, ks_path: Path) -> None:
    """A tampered or relocated archive entry is refused."""
    rotation = ks.rotate_key("agent-a", *generate_keypair("solana"))
    archived = Path(rotation.archive_path)
    edit(archived, lambda d: d.update(public_key=generate_keypair("solana")[1]))
    with pytest.raises(KeyIntegrityError), ks.use_archived_key("agent-a", rotation.archive_id):
        pass
    moved = ks_path / "gen-1" / "archive" / "agent-a" / "01aa0000-0000-7000-8000-000000000000.json"
    shutil.copy(archived, moved)
    with pytest.raises(KeyIntegrityError):
        ks.archived_keys("agent-a")


def test_named_secret_moved(ks: Keystore, ks_path: Path) -> None:
    """A named secret copied onto another name is refused."""
    ks.put_secret("jwt", b"j" * 32)
    ks.put_secret("other", b"o" * 32)
    folder = ks_path / "gen-1" / "secrets"
    shutil.copy(folder / "jwt.json", folder / "other.json")
    with pytest.raises(KeyIntegrityError) as err:
        ks.get_secret("other")
    assert err.value.key_id == "secret:other"
    edit(folder / "other.json", lambda d: d.update(name="other"))
    with pytest.raises(KeyIntegrityError):
        ks.get_secret("other")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-2] + ("A" if b[-2] != "A" else "B") + b[-1],
        lambda b: b[:10],
        lambda b: "v2:" + b[3:],
        lambda b: b + "!",
        lambda b: "v1:",
    ],
)
def test_sealed_blob_tampering(ks: Keystore, mangle: Callable[[str], str]) -> None:
    """Changed, truncated or re-versioned blobs are KeyIntegrityError."""
    blob = ks.seal(b"discord-webhook-token", context="notify:discord")
    with pytest.raises(KeyIntegrityError):
        ks.unseal(mangle(blob), context="notify:discord")


# --------------------------------------------------------------------------- wrong password


def test_wrong_password_changes_nothing(ks: Keystore, ks_path: Path) -> None:
    """Failed unlock and failed password change leave every file byte-identical."""
    ks.lock()
    before = files(ks_path)
    store = Keystore.open(ks_path)
    for attempt in ("", "hunter2", PASSWORD.upper(), PASSWORD + " "):
        if attempt:
            with pytest.raises(WrongPasswordError):
                store.unlock(attempt)
            with pytest.raises(WrongPasswordError):
                store.change_password(attempt, "new password")
    assert files(ks_path) == before
    assert store.locked


# --------------------------------------------------------------------------- traversal


@pytest.mark.parametrize(
    "evil", ["../../etc/passwd", "..", "/abs", "a/../../b", "C:\\x", "%2e%2e", "gen-1/../x"]
)
def test_path_traversal_ids(ks: Keystore, ks_path: Path, evil: str) -> None:
    """Ids that would leave the keystore directory are refused before any file access."""
    before = files(ks_path.parent)
    secret, public = generate_keypair("solana")
    for call in (
        lambda: ks.add_key(evil, "solana", secret, public),
        lambda: ks.put_secret(evil, b"x"),
        lambda: ks.get_secret(evil),
        lambda: ks.use_key(evil).__enter__(),
    ):
        with pytest.raises(InvalidInputError):
            call()
    assert files(ks_path.parent) == before


# --------------------------------------------------------------------------- leaks


def test_no_secret_in_repr_errors_or_logs(
    ks_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Password, secrets (hex, base58, base64) never show in a repr, an error or a log line."""
    caplog.set_level(logging.DEBUG)
    store = Keystore.create(ks_path, PASSWORD, kdf=KdfLimits.minimum())
    sol_secret, sol_public = generate_keypair("solana")
    evm_secret, evm_public = generate_keypair("evm")
    store.add_key("agent-s", "solana", sol_secret, sol_public)
    store.add_key("agent-e", "evm", evm_secret, evm_public)
    store.put_secret("jwt", b"J" * 8 + sol_secret)
    texts: list[str] = [repr(store), str(store)]

    def capture(call: Callable[[], Any]) -> None:
        with pytest.raises(WaiaasError) as err:
            call()
        texts.extend([str(err.value), repr(err.value), json.dumps(err.value.to_dict())])
        texts.extend(repr(arg) for arg in err.value.args)

    # errors raised while holding or handling secrets
    capture(lambda: store.add_key("agent-s", "solana", sol_secret, sol_public))
    capture(lambda: store.add_key("agent-x", "solana", sol_secret[:31], sol_public))
    capture(lambda: store.add_key("agent-x", "solana", sol_secret, evm_public))
    capture(lambda: store.add_key("agent-x", "evm", evm_secret, sol_public))
    capture(lambda: store.rotate_key("agent-s", sol_secret, sol_public))
    capture(lambda: Keystore.create(tmp_path / "x", PASSWORD[:0]))
    capture(lambda: store.change_password(PASSWORD + "x", PASSWORD))
    capture(lambda: store.change_password(PASSWORD, ""))
    edit(key_file(ks_path, "agent-s"), lambda d: d.update(chain="evm"))
    capture(lambda: store.use_key("agent-s").__enter__())
    with store.use_key("agent-e") as secret:
        texts.append(repr(store))
        assert secret == evm_secret
    store.lock()
    capture(lambda: store.use_key("agent-e").__enter__())
    capture(lambda: store.unlock(PASSWORD + "!"))
    store.unlock(PASSWORD)
    store.lock()
    texts.append(repr(store))
    texts.append(caplog.text)
    assert "unlocked" in caplog.text and "wrong password" in caplog.text  # logs were captured

    keypair64 = bytes(Keypair.from_seed(sol_secret))
    forbidden = [
        PASSWORD,
        sol_secret.hex(),
        evm_secret.hex(),
        "0x" + evm_secret.hex(),
        b58encode(sol_secret),
        b58encode(keypair64),  # how Solana wallets show a secret key
        base64.b64encode(sol_secret).decode(),
        base64.b64encode(evm_secret).decode(),
        str(list(keypair64)),  # the solana-keygen JSON form
        repr(sol_secret),
        repr(evm_secret),
    ]
    blob = "\n".join(texts)
    for needle in forbidden:
        assert needle not in blob, f"leaked: {needle[:8]}..."


def test_lock_wipes_the_master_key_buffer(ks: Keystore) -> None:
    """lock() overwrites the master key and the seal key in memory with zeros."""
    master = ks._master
    seal_key = ks._seal_key
    assert master is not None and any(master)
    assert seal_key is not None and any(seal_key)
    ks.lock()
    assert master == bytearray(32)
    assert seal_key == bytearray(32)


def test_locked_keystore_refuses_key_material(ks: Keystore, ks_path: Path) -> None:
    """A keystore opened without a password gives out no key material."""
    store = Keystore.open(ks_path)
    with pytest.raises(KeystoreLockedError), store.use_key("agent-a"):
        pass
    with pytest.raises(KeystoreLockedError):
        store.seal(b"x", context="c")
    with pytest.raises(KeystoreLockedError):
        store.get_secret("jwt")


def test_keystore_cannot_be_pickled(ks: Keystore) -> None:
    """Pickling (which would serialise the master key) is refused."""
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(ks)
