"""The storage seam of the keystore: where its sealed records live.

Internal module. :class:`~waiaas.keystore.Keystore` holds all the logic (validation, sealing,
archive, password change) and talks to a :class:`Backend` in terms of *records*: opaque bytes
(the JSON documents of ``docs/keystore.md``) at an :data:`Address` within a password
*generation*. Two backends implement it:

- :class:`~waiaas.keystore._filestore.FileBackend`: one file per record under
  ``<dir>/gen-N/`` (the default; the format every earlier release wrote).
- :class:`~waiaas.keystore._dbstore.DatabaseBackend`: one row per record in the
  ``keystore_records`` table of a waiaas database (migration 0010), for wallets on several
  hosts.

Addresses::

    ("header",)                          the header of the generation
    ("keys", key_id)                     a stored key
    ("archive", key_id, archive_id)      an archived key
    ("secrets", name)                    a named secret

Folders for :meth:`Backend.names`: ``("keys",)``, ``("secrets",)``, ``("archive",)`` (the key
ids that have archived keys) and ``("archive", key_id)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Literal, Protocol

Address = tuple[str, ...]

HEADER: Address = ("header",)
KEYS = "keys"
ARCHIVE = "archive"
SECRETS = "secrets"


class StaleRecord(Exception):
    """A record was sealed under another generation than the one asked for (the database
    backend: another host changed the password since this one read the generation)."""


class Backend(Protocol):
    """Where a keystore's records live (see the module docstring)."""

    kind: Literal["file", "database"]

    @property
    def path(self) -> Path | None:
        """The keystore directory, or None when the records live in a database."""

    @property
    def location(self) -> str:
        """Where the keystore lives, for messages and logs (never a password)."""

    def exists(self) -> bool:
        """Whether a keystore exists there."""

    def prepare_create(self) -> None:
        """Refuse an occupied location, make it ready (before the KDF runs)."""

    def create(self, header: bytes) -> None:
        """Write generation 1 with ``header`` and make it current, atomically."""

    def open_existing(self) -> None:
        """Check there is a keystore (NotFoundError) and clean leftovers of crashes."""

    def current(self) -> int:
        """The live generation."""

    def current_header(self, *, for_change: bool = False) -> tuple[int, bytes, str]:
        """``(generation, header bytes, label for messages)`` of the live generation.

        Inside :meth:`writer`, ``for_change`` locks the header against other writers (the
        database backend: ``FOR UPDATE``; plain writers take it ``FOR SHARE``).
        """

    def stamp(self) -> object:
        """A cheap token that changes when the live generation may have changed."""

    def label(self, generation: int, address: Address) -> str:
        """The record's name for messages (a file path, or ``table:name``)."""

    def read(self, generation: int, address: Address, limit: int) -> bytes:
        """The record at ``address``.

        Raises:
            FileNotFoundError: no such record.
            StaleRecord: the record belongs to another generation (database backend).
            OSError: unreadable, a symlink, too large (file backend).
        """

    def has(self, generation: int, address: Address) -> bool:
        """Whether a record exists at ``address``."""

    def names(
        self, generation: int, folder: Address, *, strict: bool = False, dirs: bool = False
    ) -> list[str]:
        """The valid ids in ``folder``, sorted; ``strict`` raises on anything unexpected."""

    def writer(self) -> AbstractContextManager[None]:
        """Serialise writers (and, in a database, run the writes in one transaction)."""

    def write(self, generation: int, address: Address, data: bytes) -> None:
        """Create or replace a record (inside :meth:`writer`)."""

    def delete(self, generation: int, address: Address) -> None:
        """Remove a record, missing is fine (inside :meth:`writer`)."""

    def replace_generation(
        self,
        old_generation: int,
        new_generation: int,
        header: bytes,
        records: Sequence[tuple[Address, bytes]],
    ) -> None:
        """Make ``new_generation`` (``header`` and exactly ``records``) the live one, all or
        nothing (inside :meth:`writer`): a crash leaves the old generation or the new."""

    def drop_generation(self, generation: int) -> None:
        """Remove a generation that is no longer live (best effort)."""
