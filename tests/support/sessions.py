"""Test doubles shared by the session tests: a real in-memory secret store and a clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from waiaas.db import Database
from waiaas.errors import NotFoundError

T0 = 1_700_000_000


class MemorySecretStore:
    """A real in-memory secret store with the keystore's contract (NotFoundError if absent)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.puts = 0

    def put_secret(self, name: str, value: bytes) -> None:
        self.puts += 1
        self.data[name] = bytes(value)

    def get_secret(self, name: str) -> bytes:
        try:
            return self.data[name]
        except KeyError:
            raise NotFoundError("secret", name) from None


class FrozenClock:
    """A clock whose time ``t`` the test sets directly."""

    def __init__(self, now: int = T0) -> None:
        self.t = now

    def now(self) -> int:
        return self.t


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database file; each test gets a copy (much faster than migrating)."""
    path = tmp_path_factory.mktemp("template") / "wallet.db"
    Database.open(path).close()
    return path


@pytest.fixture
def db(tmp_path: Path, migrated: Path) -> Iterator[Database]:
    """A fresh copy of the migrated database."""
    if migrated.is_file():  # SQLite (under --backend=postgresql: a new schema, migrated)
        shutil.copyfile(migrated, tmp_path / "wallet.db")
    database = Database.open(tmp_path / "wallet.db")
    yield database
    database.close()
