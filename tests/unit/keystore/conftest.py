"""Fixtures for the keystore tests: fast KDF limits, ready-made keystores, an in-memory keyring."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from waiaas.config import PASSWORD_ENV, KdfLimits
from waiaas.keystore import Keystore, generate_keypair

PASSWORD = "correct horse battery staple"


@pytest.fixture
def password() -> str:
    """The master password every ready-made keystore uses."""
    return PASSWORD


@pytest.fixture
def ks_path(tmp_path: Path) -> Path:
    """Where the keystore under test lives."""
    return tmp_path / "wallet.keystore"


@pytest.fixture
def ks(ks_path: Path) -> Keystore:
    """A fresh, unlocked keystore with the minimum (test-only) KDF cost."""
    return Keystore.create(ks_path, PASSWORD, kdf=KdfLimits.minimum())


@pytest.fixture
def filled(ks: Keystore) -> dict[str, tuple[str, bytes, str]]:
    """Two agents' keys stored in ``ks``: ``{key_id: (chain, secret, public_key)}``."""
    out: dict[str, tuple[str, bytes, str]] = {}
    for key_id, chain in (("agent-sol", "solana"), ("agent-evm", "evm")):
        secret, public = generate_keypair(chain)
        ks.add_key(key_id, chain, secret, public)
        out[key_id] = (chain, secret, public)
    return out


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, bytes]]:
    """Read every file under a directory: ``{relative path: bytes}``."""

    def take(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"
        }

    return take


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring backend: a real ``keyring`` backend that keeps a dict."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError(f"{service}/{username} not found")


@pytest.fixture
def keyring_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], None]]:
    """Select keyring backends for one test (no env password); restore the previous after."""
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    previous = keyring.get_keyring()
    try:
        yield keyring.set_keyring
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(keyring_backend: Callable[[Any], None]) -> MemoryKeyring:
    """An in-memory keyring backend, installed for one test and removed after."""
    backend = MemoryKeyring()
    keyring_backend(backend)
    return backend
