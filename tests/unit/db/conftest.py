"""Fixtures for the storage tests: real SQLite files in ``tmp_path``."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from waiaas.db import Database
from waiaas.db.tables import AgentRow, PolicyRow, SessionRow, TransactionRow
from waiaas.ids import new_id

NOW = 1_750_000_000
"""A fixed "now" (Unix seconds) for rows the tests write."""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Path of a database file that does not exist yet."""
    return tmp_path / "wallet.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    """A freshly created, migrated database, closed after the test."""
    database = Database.open(db_path)
    try:
        yield database
    finally:
        database.close()


_counter = itertools.count()


class RowFactory:
    """Builds valid rows with unique ids and keys; any field can be overridden by keyword."""

    @staticmethod
    def agent(**kw: Any) -> AgentRow:
        n = next(_counter)
        fields: dict[str, Any] = {
            "id": new_id(),
            "name": f"agent-{n}",
            "chain": "solana",
            "network": "devnet",
            "public_key": f"pk-{n}-{new_id()}",
            "status": "ACTIVE",
            "created_at": NOW,
            "updated_at": NOW,
        }
        return AgentRow(**(fields | kw))

    @staticmethod
    def session(agent_id: str, **kw: Any) -> SessionRow:
        fields: dict[str, Any] = {
            "id": new_id(),
            "agent_id": agent_id,
            "token_hash": hashlib.sha256(new_id().encode()).hexdigest(),
            "expires_at": NOW + 3600,
            "created_at": NOW,
        }
        return SessionRow(**(fields | kw))

    @staticmethod
    def transaction(agent_id: str, **kw: Any) -> TransactionRow:
        fields: dict[str, Any] = {
            "id": new_id(),
            "agent_id": agent_id,
            "chain": "solana",
            "type": "TRANSFER",
            "amount": "1000",
            "to_address": "dest",
            "status": "PENDING",
            "created_at": NOW,
        }
        return TransactionRow(**(fields | kw))

    @staticmethod
    def policy(agent_id: str | None, **kw: Any) -> PolicyRow:
        fields: dict[str, Any] = {
            "id": new_id(),
            "agent_id": agent_id,
            "type": "SPENDING_LIMIT",
            "rules": '{"instant_max":"1000"}',
            "created_at": NOW,
            "updated_at": NOW,
        }
        return PolicyRow(**(fields | kw))


@pytest.fixture
def rows() -> RowFactory:
    """A factory of valid table rows."""
    return RowFactory()


@pytest.fixture
def raw_connect() -> Iterator[Callable[..., sqlite3.Connection]]:
    """Open plain ``sqlite3`` connections (bypassing waiaas); all are closed after the test."""
    opened: list[sqlite3.Connection] = []

    def connect(path: Path, **kw: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = sqlite3.connect(path, **kw)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def file_digest() -> Callable[[Path], str]:
    """``file_digest(path)``: hex SHA-256 of the file's bytes."""
    return sha256_file
