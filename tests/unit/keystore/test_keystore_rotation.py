"""Key rotation and archive, named secrets, and generic sealing for other components."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from waiaas.config import KdfLimits
from waiaas.errors import InvalidInputError, KeyIntegrityError, NotFoundError
from waiaas.keystore import ArchivedKey, KeyRotation, Keystore, generate_keypair

Filled = dict[str, tuple[str, bytes, str]]


# --------------------------------------------------------------------------- rotation


def test_rotate_key_archives_the_old_key(ks: Keystore, filled: Filled) -> None:
    """rotate_key puts the new key in force and keeps the old one, sealed, in the archive."""
    _chain, old_secret, old_public = filled["agent-sol"]
    new_secret, new_public = generate_keypair("solana")
    rotation = ks.rotate_key("agent-sol", new_secret, new_public)
    assert isinstance(rotation, KeyRotation)
    assert (rotation.key_id, rotation.chain) == ("agent-sol", "solana")
    assert (rotation.old_public_key, rotation.new_public_key) == (old_public, new_public)
    assert Path(rotation.archive_path).is_file()
    assert old_secret not in Path(rotation.archive_path).read_bytes()
    with pytest.raises(AttributeError):
        rotation.new_public_key = "x"  # type: ignore[misc]

    assert ks.public_key("agent-sol") == new_public
    with ks.use_key("agent-sol") as got:
        assert got == new_secret

    archived = ks.archived_keys("agent-sol")
    assert archived == [
        ArchivedKey(
            key_id="agent-sol",
            archive_id=rotation.archive_id,
            chain="solana",
            public_key=old_public,
            created_at=archived[0].created_at,
            archived_at=rotation.rotated_at,
            reason="rotated",
        )
    ]
    with ks.use_archived_key("agent-sol", rotation.archive_id) as got:
        assert got == old_secret


def test_rotate_twice_keeps_history_in_order(ks: Keystore, filled: Filled) -> None:
    """Each rotation adds one archive entry; entries are listed oldest first."""
    publics = [filled["agent-evm"][2]]
    for _ in range(3):
        secret, public = generate_keypair("evm")
        ks.rotate_key("agent-evm", secret, public)
        publics.append(public)
    assert [a.public_key for a in ks.archived_keys("agent-evm")] == publics[:-1]
    assert ks.public_key("agent-evm") == publics[-1]


def test_rotate_key_validation(ks: Keystore, filled: Filled) -> None:
    """Same key, other chain's key, mismatched public key, unknown id: refused, nothing changes."""
    _chain, secret, public = filled["agent-sol"]
    with pytest.raises(InvalidInputError, match="already in force"):
        ks.rotate_key("agent-sol", secret, public)
    evm_secret, evm_public = generate_keypair("evm")
    with pytest.raises(InvalidInputError):
        ks.rotate_key("agent-sol", evm_secret, evm_public)
    new_secret, _ = generate_keypair("solana")
    with pytest.raises(InvalidInputError) as err:
        ks.rotate_key("agent-sol", new_secret, generate_keypair("solana")[1])
    assert err.value.field == "public_key"
    with pytest.raises(NotFoundError):
        ks.rotate_key("agent-none", *generate_keypair("solana"))
    assert ks.archived_keys("agent-sol") == []
    with ks.use_key("agent-sol") as got:
        assert got == secret


def test_rotation_retry_after_crash_is_idempotent(ks: Keystore, filled: Filled) -> None:
    """If a rotation died after archiving, a retry reuses that archive entry."""
    _chain, _secret, old_public = filled["agent-sol"]
    new_secret, new_public = generate_keypair("solana")
    first = ks.rotate_key("agent-sol", new_secret, new_public)
    # Simulate the crash: the archive exists but the key file still holds the old key.
    gen = ks.path / "gen-1"
    archived = json.loads(Path(first.archive_path).read_text())
    restored = {
        k: v for k, v in archived.items() if k not in ("archive_id", "archived_at", "reason")
    }
    restored["kind"] = "key"
    (gen / "keys" / "agent-sol.json").write_text(json.dumps(restored))
    second = ks.rotate_key("agent-sol", new_secret, new_public)
    assert second.archive_id == first.archive_id
    assert [a.public_key for a in ks.archived_keys("agent-sol")] == [old_public]


def test_remove_key_moves_it_to_the_archive(ks: Keystore, filled: Filled) -> None:
    """remove_key takes the key out of service but keeps it usable from the archive."""
    _chain, secret, public = filled["agent-evm"]
    archived = ks.remove_key("agent-evm")
    assert archived.reason == "removed" and archived.public_key == public
    assert not ks.has_key("agent-evm")
    assert ks.key_ids() == ["agent-sol"]
    with pytest.raises(NotFoundError), ks.use_key("agent-evm"):
        pass
    with ks.use_archived_key("agent-evm", archived.archive_id) as got:
        assert got == secret
    # The id is free again for a brand-new key.
    ks.add_key("agent-evm", "evm", *generate_keypair("evm"))
    assert ks.has_key("agent-evm")


def test_archived_keys_while_locked_and_unknown(ks: Keystore, filled: Filled) -> None:
    """archived_keys works while locked; unknown ids give an empty list / NotFoundError."""
    rotation = ks.rotate_key("agent-sol", *generate_keypair("solana"))
    ks.lock()
    assert [a.archive_id for a in ks.archived_keys("agent-sol")] == [rotation.archive_id]
    assert ks.archived_keys("agent-nobody") == []
    ks.unlock("correct horse battery staple")
    with pytest.raises(NotFoundError) as err, ks.use_archived_key("agent-sol", "missing-id"):
        pass
    assert err.value.entity == "archived_key"
    with pytest.raises(InvalidInputError), ks.use_archived_key("agent-sol", "../x"):
        pass


# --------------------------------------------------------------------------- named secrets


def test_named_secrets(ks: Keystore, ks_path: Path) -> None:
    """put/get/has/delete named secrets; values are sealed on disk."""
    value = os.urandom(32)
    ks.put_secret("session-jwt", value)
    assert ks.get_secret("session-jwt") == value
    assert ks.has_secret("session-jwt")
    assert ks.secret_names() == ["session-jwt"]
    assert value not in (ks_path / "gen-1" / "secrets" / "session-jwt.json").read_bytes()
    ks.put_secret("session-jwt", b"replaced")
    assert ks.get_secret("session-jwt") == b"replaced"
    ks.put_secret("empty", b"")
    assert ks.get_secret("empty") == b""
    ks.delete_secret("session-jwt")
    assert not ks.has_secret("session-jwt")
    with pytest.raises(NotFoundError) as err:
        ks.get_secret("session-jwt")
    assert err.value.entity == "secret"
    with pytest.raises(NotFoundError):
        ks.delete_secret("session-jwt")


def test_named_secret_validation(ks: Keystore) -> None:
    """Names follow the key-id rules; values must be bytes of bounded size."""
    with pytest.raises(InvalidInputError) as err:
        ks.put_secret("../jwt", b"x")
    assert err.value.field == "name"
    with pytest.raises(InvalidInputError) as err:
        ks.put_secret("jwt", "text")  # type: ignore[arg-type]
    assert err.value.field == "value"
    with pytest.raises(InvalidInputError):
        ks.put_secret("jwt", bytes((1 << 20) + 1))
    ks.put_secret("jwt", bytearray(b"ok"))  # type: ignore[arg-type]
    assert ks.get_secret("jwt") == b"ok"


def test_named_secret_survives_reopen(ks: Keystore, ks_path: Path, password: str) -> None:
    """A named secret is there after lock, reopen and unlock."""
    ks.put_secret("jwt", b"k" * 32)
    ks.lock()
    again = Keystore.open(ks_path)
    assert again.has_secret("jwt")
    again.unlock(password)
    assert again.get_secret("jwt") == b"k" * 32


# --------------------------------------------------------------------------- seal / unseal


def test_seal_round_trip_is_text(ks: Keystore) -> None:
    """seal gives a 'v1:' text blob; unseal with the same context gives the bytes back."""
    blob = ks.seal(b"bot-token-123", context="notify:telegram")
    assert isinstance(blob, str) and blob.startswith("v1:") and blob.isascii()
    assert b"bot-token-123" not in blob.encode()
    assert ks.unseal(blob, context="notify:telegram") == b"bot-token-123"
    assert ks.seal(b"bot-token-123", context="notify:telegram") != blob  # fresh nonce
    assert ks.unseal(ks.seal(b"", context="c"), context="c") == b""


def test_unseal_wrong_context(ks: Keystore) -> None:
    """Another context fails authentication with KeyIntegrityError."""
    blob = ks.seal(b"secret", context="notify:telegram")
    with pytest.raises(KeyIntegrityError) as err:
        ks.unseal(blob, context="notify:discord")
    assert err.value.key_id == "blob:notify:discord"


def test_seal_survives_reopen(ks: Keystore, ks_path: Path, password: str) -> None:
    """A blob sealed in one session unseals in a later one."""
    blob = ks.seal(b"persisted", context="db:column")
    ks.lock()
    again = Keystore.open(ks_path)
    again.unlock(password)
    assert again.unseal(blob, context="db:column") == b"persisted"


def test_seal_is_bound_to_the_keystore(ks: Keystore, tmp_path: Path, password: str) -> None:
    """A blob from another keystore (same password) does not unseal."""
    other = Keystore.create(tmp_path / "other", password, kdf=KdfLimits.minimum())
    blob = other.seal(b"x", context="c")
    with pytest.raises(KeyIntegrityError):
        ks.unseal(blob, context="c")


@pytest.mark.parametrize("context", ["", "a\nb", "x" * 257, None, b"bytes"])
def test_seal_validates_context(ks: Keystore, context: object) -> None:
    """Context must be a printable, non-empty str of bounded length."""
    with pytest.raises(InvalidInputError) as err:
        ks.seal(b"x", context=context)  # type: ignore[arg-type]
    assert err.value.field == "context"


def test_seal_validates_input(ks: Keystore) -> None:
    """Plaintext must be bytes; a blob must be a str."""
    with pytest.raises(InvalidInputError) as err:
        ks.seal("text", context="c")  # type: ignore[arg-type]
    assert err.value.field == "plaintext"
    with pytest.raises(InvalidInputError) as err:
        ks.unseal(b"v1:abc", context="c")  # type: ignore[arg-type]
    assert err.value.field == "blob"
