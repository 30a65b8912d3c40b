"""Move a wallet's file keystore into its database (``waiaas keystore migrate-to-database``).

The sealed records are copied verbatim (they do not depend on where they are stored: each
key stays bound to its keystore id, key id, chain and public key), after every one of them
has been opened with the password, in **one** database transaction; then the keystore
directory is renamed to ``<dir>.migrated-<UTC time>`` so that nothing keeps writing to it.
The master password is unchanged.

Stop every process that uses the wallet first: one that keeps the files open would go on
using them.

Example::

    from waiaas.keystore.migrate import move_to_database

    moved = move_to_database("/var/lib/agents/wallet.db", password)
    print(moved.records, "records; old directory kept at", moved.old_directory)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from waiaas.clock import SystemClock
from waiaas.errors import InvalidInputError, KeystoreError, KeystoreMismatchError, NotFoundError
from waiaas.keystore._backend import ARCHIVE, HEADER, KEYS, SECRETS, Address
from waiaas.keystore._dbstore import DatabaseBackend
from waiaas.keystore._filestore import FileBackend
from waiaas.keystore.store import Keystore

__all__ = ["MovedKeystore", "move_to_database"]

_KEYSTORE_STATE = "keystore"  # the wallet_state key holding {"id": <keystore id>}


@dataclass(frozen=True, slots=True)
class MovedKeystore:
    """What :func:`move_to_database` did.

    Attributes:
        keystore_id: the keystore's id (unchanged; the database recorded it already).
        records: how many records were copied (header, keys, archived keys, secrets).
        old_directory: where the keystore directory was moved to (delete it once the
            wallet has been opened from the database and backed up).
    """

    keystore_id: str
    records: int
    old_directory: Path


def move_to_database(
    db_path: str | os.PathLike[str],
    password: str,
    *,
    keystore_dir: str | os.PathLike[str] | None = None,
) -> MovedKeystore:
    """Copy the file keystore of the wallet at ``db_path`` into its database.

    Args:
        db_path: the wallet database (an SQLite file, or a PostgreSQL URL with
            ``keystore_dir``).
        password: the master password (every record is opened with it before the copy).
        keystore_dir: the keystore directory (default ``<db_path>.keystore``).

    Raises:
        NotFoundError: no keystore directory there.
        WrongPasswordError: the password does not open it; nothing changed.
        KeyIntegrityError: a record fails authentication; nothing changed.
        KeystoreMismatchError: the directory is not the keystore this database recorded.
        KeystoreError: the database already holds a keystore.
        StorageError: the database failed; nothing changed.
    """
    from waiaas.db.database import Database

    if not isinstance(db_path, str | os.PathLike) or not os.fspath(db_path):
        raise InvalidInputError("db_path must be a path", field="db_path")
    where = os.fspath(db_path)
    if keystore_dir is None and where.startswith("postgresql"):
        raise InvalidInputError(
            "a PostgreSQL wallet has no default keystore directory: pass keystore_dir",
            field="keystore_dir",
        )
    directory = Path(os.path.abspath(keystore_dir or f"{where}.keystore"))
    if not Keystore.exists(directory):
        raise NotFoundError("keystore", str(directory))
    db = Database.open(db_path)
    try:
        source = Keystore.open(directory)
        source.unlock(password)
        try:
            return _move(db, source, directory)
        finally:
            source.lock()
    finally:
        db.close()


def _move(db: object, source: Keystore, directory: Path) -> MovedKeystore:
    from waiaas.db.database import Database

    assert isinstance(db, Database)
    files = FileBackend(directory)
    clock = SystemClock()
    target = DatabaseBackend(db, clock)
    with db.read() as uow:
        _check_recorded(uow, source, directory)  # first: the right keystore at all?
    head = _verified_head(db, source, directory)
    with files.writer(), db.write() as uow:  # no keystore or wallet writer meanwhile
        expected = _check_recorded(uow, source, directory)
        generation, header, _ = files.current_header()
        keystore_id = source.keystore_id
        if target.exists():
            raise KeystoreError(
                f"the {target.location} already holds a keystore; nothing was copied",
                path=target.location,
            )
        records = _verified_records(source, files, generation)
        with target.writer():  # joins this transaction
            target.write(generation, HEADER, header)
            for address, data in records:
                target.write(generation, address, data)
        if head is not None:
            integ, rid, digest = head
            integ.head_db = db
            integ.stage_head(uow, rid, digest)
        if expected is None:
            uow.state.put(_KEYSTORE_STATE, {"id": keystore_id}, now=clock.now())
        uow.commit()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        moved = directory.with_name(f"{directory.name}.migrated-{stamp}")
        os.replace(directory, moved)
    return MovedKeystore(keystore_id=keystore_id, records=len(records) + 1, old_directory=moved)


def _check_recorded(uow: Any, source: Keystore, directory: Path) -> str | None:
    """The keystore id the database recorded (None for an old database); a different one
    than ``source``'s is refused."""
    recorded = uow.state.get(_KEYSTORE_STATE)
    expected = recorded.get("id") if isinstance(recorded, dict) else None
    keystore_id = source.keystore_id
    if expected is not None and expected != keystore_id:
        raise KeystoreMismatchError(
            f"the keystore at {str(directory)!r} (id {keystore_id}) is not the one this "
            f"database was created with (id {expected}); nothing was copied",
            path=str(directory),
            expected_id=str(expected),
            found_id=keystore_id,
        )
    return None if expected is None else str(expected)


def _verified_head(db: object, source: Keystore, directory: Path) -> tuple[Any, int, str] | None:
    """Verify the audit log against the head the files recorded (a cut tail or a lost WAL
    is refused here, not laundered into the database); return it for the head row."""
    from waiaas import integrity
    from waiaas.errors import TamperDetectedError

    keys = integrity.Integrity.keys_from(source)
    if keys is None:
        return None  # never opened as a wallet: nothing sealed yet
    integ = integrity.Integrity(
        mac_key=keys[0],
        signing_seed=keys[1],
        wallet_id=source.keystore_id,
        anchor=integrity.Integrity.anchor_from(source),
        head_path=directory / integrity.HEAD_FILE,
    )
    report = integrity.verify_recent(db, integ)
    if not report["ok"]:
        raise TamperDetectedError(
            f"the audit log does not verify ({report['message']}); nothing was copied: open "
            "the wallet with its file keystore to investigate first",
            entity="audit_log",
            problem=str(report["problem"]),
        )
    recorded = integ.read_head()
    if recorded is None:
        return None
    return integ, recorded[0], recorded[1]


def _verified_records(
    source: Keystore, files: FileBackend, generation: int
) -> list[tuple[Address, bytes]]:
    """Every record's bytes, each one opened with the master key first."""
    out: list[tuple[Address, bytes]] = []
    for key_id in files.names(generation, (KEYS,), strict=True):
        with source.use_key(key_id):
            pass
        out.append(((KEYS, key_id), files.read(generation, (KEYS, key_id), 65536)))
    for key_id in files.names(generation, (ARCHIVE,), strict=True, dirs=True):
        for archive_id in files.names(generation, (ARCHIVE, key_id), strict=True):
            with source.use_archived_key(key_id, archive_id):
                pass
            address = (ARCHIVE, key_id, archive_id)
            out.append((address, files.read(generation, address, 65536)))
    for name in files.names(generation, (SECRETS,), strict=True):
        source.get_secret(name)
        out.append(((SECRETS, name), files.read(generation, (SECRETS, name), 4 << 20)))
    return out
