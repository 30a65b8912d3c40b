"""The encrypted keystore: agents' private keys and other secrets, sealed under one master key.

The master key is derived from the master password with Argon2id **once per unlock**; every
key is then opened on demand with that key (one AEAD decryption, microseconds), never by
re-running the KDF. Each key is sealed with XChaCha20-Poly1305 and bound, as associated data,
to the keystore id, its key id (the agent id), its chain and its public key, so a key file
moved onto another agent, or edited to show another address, fails to open.

Where the records live is a backend (``waiaas.keystore._backend``): files (the default)
or rows of a waiaas database (``Keystore.create(db, ...)`` / ``Keystore.open(db)``), for
wallets that run on several hosts. The record documents, their sealing and binding are the
same in both; the master key is never stored, only derived from the password.

In files (all directories 0700, all files 0600, every write atomic)::

    <path>/
      CURRENT                   {"format": 1, "generation": N}: the one live generation
      .lock                     flock serialising writers across processes
      gen-N/
        header.json             format, keystore id, Argon2id parameters + salt, wrapped seal key
        keys/<key_id>.json      one sealed key per agent
        archive/<key_id>/<archive_id>.json   keys replaced by rotate_key / remove_key
        secrets/<name>.json     named secrets (e.g. a wallet's session-signing secret)

Changing the password writes a complete ``gen-(N+1)`` beside ``gen-N`` and then replaces
``CURRENT`` atomically: a crash at any point leaves either the old generation (old password)
or the new one (new password) in force, never a mix. Leftovers are removed on the next open.

In a database: one row of ``keystore_records`` per record (``header``, ``keys/<key_id>``,
``archive/<key_id>/<archive_id>``, ``secrets/<name>``), and a password change rewrites them
all in one transaction.

Example::

    from waiaas.keystore import Keystore, generate_keypair

    ks = Keystore.create("/var/lib/app/wallet.keystore", "correct horse battery staple")
    secret, address = generate_keypair("evm")
    ks.add_key("agent-1", "evm", secret, address)
    ks.lock()

    ks = Keystore.open("/var/lib/app/wallet.keystore")
    ks.unlock("correct horse battery staple")      # Argon2id runs here, once
    with ks.use_key("agent-1") as secret:           # no KDF: one AEAD decryption
        ...sign with secret...
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from waiaas.clock import Clock, SystemClock
from waiaas.config import KdfLimits
from waiaas.errors import (
    InvalidInputError,
    KeyIntegrityError,
    KeystoreError,
    KeystoreLockedError,
    NotFoundError,
    PasswordChangedError,
    WrongPasswordError,
)
from waiaas.ids import new_id
from waiaas.keystore import _crypto
from waiaas.keystore._backend import ARCHIVE as _ARCHIVE
from waiaas.keystore._backend import KEYS as _KEYS
from waiaas.keystore._backend import SECRETS as _SECRETS
from waiaas.keystore._backend import Address, Backend, StaleRecord
from waiaas.keystore._filestore import FileBackend
from waiaas.keystore.keys import (
    SECRET_LENGTHS,
    check_secret,
    normalize_public_key,
    public_key_for,
)

if TYPE_CHECKING:
    from waiaas.db.database import Database

__all__ = ["FORMAT_VERSION", "ArchivedKey", "KeyInfo", "KeyRotation", "Keystore"]

#: Version of the on-disk format this code writes and the newest it reads.
FORMAT_VERSION: Final = 1

_ID_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_-])?")
_CHAIN_RE: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MAX_SECRET_BYTES: Final = 1 << 20
_MAX_CONTEXT_CHARS: Final = 256
_MAX_OTHER_CHAIN_SECRET: Final = 1024
_MAX_PUBLIC_KEY_CHARS: Final = 256
_BLOB_PREFIX: Final = "v1:"

_log = logging.getLogger("waiaas.keystore")


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public facts about a stored key (no key material).

    Attributes:
        key_id: the key id (the agent id).
        chain: the chain family (``"solana"``, ``"evm"``, ...).
        public_key: the public key / address the key signs for.
        created_at: when the key was stored, Unix seconds.
    """

    key_id: str
    chain: str
    public_key: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ArchivedKey:
    """A key that was replaced by :meth:`Keystore.rotate_key` or removed by
    :meth:`Keystore.remove_key`. It stays sealed in the archive area.

    Attributes:
        key_id: the key id it belonged to.
        archive_id: its id in the archive (time-ordered); pass it to
            :meth:`Keystore.use_archived_key`.
        chain: the chain family.
        public_key: the public key / address it signs for.
        created_at: when the key was first stored, Unix seconds.
        archived_at: when it was archived, Unix seconds.
        reason: ``"rotated"`` or ``"removed"``.
    """

    key_id: str
    archive_id: str
    chain: str
    public_key: str
    created_at: int
    archived_at: int
    reason: Literal["rotated", "removed"]


@dataclass(frozen=True, slots=True)
class KeyRotation:
    """The result of :meth:`Keystore.rotate_key`; the caller records it (KEY_ROTATED audit).

    Attributes:
        key_id: the rotated key id.
        chain: the chain family.
        old_public_key: the public key that was replaced (now archived).
        new_public_key: the public key now in force.
        archive_id: where the old key lives in the archive area
            (see :meth:`Keystore.archived_keys`, :meth:`Keystore.use_archived_key`).
        archive_path: the archived file at the time of rotation. A later password change
            moves the archive into a new generation directory; ``archive_id`` stays valid.
        rotated_at: Unix seconds.
    """

    key_id: str
    chain: str
    old_public_key: str
    new_public_key: str
    archive_id: str
    archive_path: str
    rotated_at: int


@dataclass(frozen=True, slots=True)
class _Header:
    keystore_id: str
    created_at: int
    opslimit: int
    memlimit: int
    salt: bytes
    seal_key: bytes

    def with_seal_key(self, sealed: bytes) -> _Header:
        return _Header(
            self.keystore_id, self.created_at, self.opslimit, self.memlimit, self.salt, sealed
        )

    def wrap_aad(self) -> bytes:
        return _crypto.aad(
            "waiaas.keystore.header",
            str(FORMAT_VERSION),
            self.keystore_id,
            _crypto.KDF_ALGORITHM,
            str(self.opslimit),
            str(self.memlimit),
            self.salt,
        )

    def to_json(self) -> bytes:
        return _dump(
            {
                "format": FORMAT_VERSION,
                "kind": "header",
                "keystore_id": self.keystore_id,
                "created_at": self.created_at,
                "kdf": {
                    "algorithm": _crypto.KDF_ALGORITHM,
                    "opslimit": self.opslimit,
                    "memlimit": self.memlimit,
                    "salt": _b64(self.salt),
                },
                "aead": _crypto.AEAD_ALGORITHM,
                "seal_key": _b64(self.seal_key),
            }
        )


@dataclass(frozen=True, slots=True)
class _KeyRecord:
    key_id: str
    chain: str
    public_key: str
    created_at: int
    sealed: bytes
    archive_id: str | None = None
    archived_at: int | None = None
    reason: Literal["rotated", "removed"] | None = None

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "kind": "key",
            "key_id": self.key_id,
            "chain": self.chain,
            "public_key": self.public_key,
            "created_at": self.created_at,
            "sealed": _b64(self.sealed),
        }
        if self.archive_id is not None:
            data.update(
                kind="archived_key",
                archive_id=self.archive_id,
                archived_at=self.archived_at,
                reason=self.reason,
            )
        return _dump(data)

    def archived(
        self, archive_id: str, at: int, reason: Literal["rotated", "removed"]
    ) -> _KeyRecord:
        return _KeyRecord(
            self.key_id, self.chain, self.public_key, self.created_at, self.sealed,
            archive_id, at, reason,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _SecretRecord:
    name: str
    updated_at: int
    sealed: bytes

    def to_json(self) -> bytes:
        return _dump(
            {
                "format": FORMAT_VERSION,
                "kind": "secret",
                "name": self.name,
                "updated_at": self.updated_at,
                "sealed": _b64(self.sealed),
            }
        )


# --------------------------------------------------------------------------- helpers


def _dump(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=1) + "\n").encode("utf-8")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a string")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not an integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("not a non-empty string")
    return value


def _check_name(value: object, field: str) -> str:
    """Key ids, secret names, archive ids: they become file names, so keep them tame."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a str", field=field)
    if not _ID_RE.fullmatch(value) or ".." in value:
        raise InvalidInputError(
            f"{field} must be 1-128 characters of letters, digits, '-', '_' and '.', "
            "starting with a letter or digit, without '..' or a trailing '.'",
            field=field,
        )
    return value


def _check_chain(value: object) -> str:
    if not isinstance(value, str) or not _CHAIN_RE.fullmatch(value):
        raise InvalidInputError(
            "chain must be a lower-case chain family name such as 'solana' or 'evm'",
            field="chain",
        )
    return str(value)


def _check_key_material(chain: str, secret: object, public_key: object) -> tuple[bytes, str]:
    """Validate a secret and its public key; for known chains the two must belong together."""
    if chain in SECRET_LENGTHS:
        raw = check_secret(chain, secret)  # type: ignore[arg-type]  # checked at runtime
        canonical = normalize_public_key(chain, public_key)  # type: ignore[arg-type]
        if public_key_for(chain, raw) != canonical:
            raise InvalidInputError(
                f"public_key {canonical} does not belong to the given secret", field="public_key"
            )
        return raw, canonical
    if not isinstance(secret, bytes | bytearray):
        raise InvalidInputError("the secret must be bytes", field="secret")
    if not 0 < len(secret) <= _MAX_OTHER_CHAIN_SECRET:
        raise InvalidInputError(
            f"the secret must be 1-{_MAX_OTHER_CHAIN_SECRET} bytes", field="secret"
        )
    if (
        not isinstance(public_key, str)
        or not 0 < len(public_key) <= _MAX_PUBLIC_KEY_CHARS
        or not public_key.isprintable()
        or any(ch.isspace() for ch in public_key)
    ):
        raise InvalidInputError(
            "the public key must be a printable string without spaces", field="public_key"
        )
    return bytes(secret), public_key


def _check_context(context: object) -> str:
    if (
        not isinstance(context, str)
        or not 0 < len(context) <= _MAX_CONTEXT_CHARS
        or not context.isprintable()
    ):
        raise InvalidInputError(
            f"context must be a printable string of 1-{_MAX_CONTEXT_CHARS} characters",
            field="context",
        )
    return context


def _check_limits(limits: object) -> KdfLimits:
    if not isinstance(limits, KdfLimits):
        raise InvalidInputError("kdf must be a KdfLimits", field="kdf")
    lo_ops, hi_ops = _crypto.OPSLIMIT_BOUNDS
    lo_mem, hi_mem = _crypto.MEMLIMIT_BOUNDS
    if not (lo_ops <= limits.opslimit <= hi_ops and lo_mem <= limits.memlimit <= hi_mem):
        raise InvalidInputError(
            f"kdf limits must satisfy {lo_ops} <= opslimit <= {hi_ops} and "
            f"{lo_mem} <= memlimit <= {hi_mem}",
            field="kdf",
        )
    return limits


def _check_format(data: dict[str, Any], what: str, path: str | Path) -> None:
    version = data.get("format")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise KeystoreError(
            f"{what} {path} has format {version}, newer than this waiaas reads "
            f"({FORMAT_VERSION}); upgrade waiaas to open it",
            path=str(path),
            found=version,
            known=FORMAT_VERSION,
        )
    if version != FORMAT_VERSION:
        raise ValueError(f"unknown format {version!r}")


def _load_json(raw: bytes) -> dict[str, Any]:
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


# --------------------------------------------------------------------------- the keystore


class Keystore:
    """An encrypted keystore, kept in files or in a waiaas database (see the module docstring).

    Create one with :meth:`create`, open an existing one with :meth:`open` (it starts
    locked), then :meth:`unlock` it with the master password. A locked keystore still
    answers :meth:`key_ids`, :meth:`has_key`, :meth:`public_key`, :meth:`key_info` and
    :meth:`archived_keys`; anything that touches key material raises
    :class:`~waiaas.errors.KeystoreLockedError`.

    Thread-safe. Several processes (and, with the database backend, several hosts) may use
    one keystore: writers are serialised (a file lock, or the database's write lock); if
    another process changes the password, this one locks itself at its next use of key
    material and asks to be unlocked again (:class:`~waiaas.errors.PasswordChangedError`).

    Used as a context manager, the keystore is locked when the block ends.
    """

    __slots__ = (
        "__weakref__",
        "_changed_elsewhere",
        "_clock",
        "_current_stamp",
        "_generation",
        "_keystore_id",
        "_master",
        "_seal_key",
        "_state",
        "_store",
    )

    def __init__(
        self, path: str | os.PathLike[str] | Database, *, clock: Clock | None = None
    ) -> None:
        """Open the existing keystore at ``path``, locked. Same as :meth:`open`."""
        self._setup(path, clock)
        self._open_existing()

    def _setup(self, target: object, clock: Clock | None) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidInputError("clock must provide now()", field="clock")
        self._clock: Clock = clock or SystemClock()
        self._store: Backend = _backend_for(target, self._clock)
        self._state = threading.RLock()
        self._master: bytearray | None = None
        self._seal_key: bytearray | None = None
        self._generation: int | None = None
        self._keystore_id: str | None = None
        self._changed_elsewhere = False
        self._current_stamp: object = None

    # ------------------------------------------------------------------ create / open

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str] | Database,
        password: str,
        *,
        kdf: KdfLimits | None = None,
        clock: Clock | None = None,
    ) -> Keystore:
        """Create a new keystore at ``path`` protected by ``password``; return it unlocked.

        ``path`` is a directory: it is created (mode 0700) if missing, and may exist only if
        it is empty (or holds the leftovers of an interrupted ``create``). It may also be an
        open :class:`~waiaas.db.Database`: the keystore then lives in its
        ``keystore_records`` table, which must hold no keystore yet.

        Args:
            path: the keystore directory (its parent must exist), or a ``Database``.
            password: the master password (non-empty; NFC-normalised, UTF-8).
            kdf: Argon2id limits; default :meth:`KdfLimits.moderate` (~0.8 s, 256 MiB).
                They are stored with the keystore and can be raised by
                :meth:`change_password`.
            clock: source of the timestamps written into records.

        Raises:
            InvalidInputError: bad path, password or limits.
            KeystoreError: a keystore already exists there, the directory holds other
                files, or it cannot be written.
            StorageError: the database failed (database backend).

        Example::

            ks = Keystore.create(tmp_path / "ks", "pw", kdf=KdfLimits.minimum())
            ks = Keystore.create(Database.open(tmp_path / "w.db"), "pw")  # in the database
        """
        self = cls.__new__(cls)
        self._setup(path, clock)
        secret = _crypto.password_bytes(password)
        limits = _check_limits(kdf if kdf is not None else KdfLimits.moderate())
        self._store.prepare_create()
        salt = _crypto.new_salt()
        master = _crypto.derive_key(secret, salt, limits.opslimit, limits.memlimit)
        seal_key = _crypto.new_key()
        draft = _Header(new_id(), self._clock.now(), limits.opslimit, limits.memlimit, salt, b"")
        header = draft.with_seal_key(_crypto.seal(master, bytes(seal_key), draft.wrap_aad()))
        try:
            self._store.create(header.to_json())
        except BaseException:
            _crypto.wipe(master)
            _crypto.wipe(seal_key)
            raise
        with self._state:
            self._install(master, seal_key, 1, header.keystore_id)
        _log.info("keystore created at %s", self._store.location)
        return self

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | Database, *, clock: Clock | None = None
    ) -> Keystore:
        """Open the existing keystore at ``path`` (a directory or a ``Database``); it starts
        locked.

        Leftovers of an interrupted write or password change are removed (unless another
        process is writing at that moment).

        Raises:
            InvalidInputError: bad path.
            NotFoundError: no keystore at ``path`` (entity ``"keystore"``).
            KeystoreError: the keystore is corrupt or was written by a newer waiaas.

        Example::

            ks = Keystore.open("wallet.keystore")
            ks.unlock(resolve_password(None, keyring_user="wallet"))
        """
        return cls(path, clock=clock)

    @staticmethod
    def exists(path: str | os.PathLike[str] | Database) -> bool:
        """Whether a keystore exists at ``path``: a directory with a ``CURRENT`` file, or a
        ``Database`` whose ``keystore_records`` table holds a keystore header."""
        return _backend_for(path, SystemClock()).exists()

    def _open_existing(self) -> None:
        self._store.open_existing()
        self._current_header()

    # ------------------------------------------------------------------ lock / unlock

    def unlock(self, password: str) -> None:
        """Derive the master key from ``password`` (Argon2id, once) and keep it until :meth:`lock`.

        Raises:
            InvalidInputError: ``password`` is not a non-empty str.
            WrongPasswordError: the password does not open the keystore; nothing changed.
            KeystoreError: the keystore is corrupt or unreadable.

        Example::

            ks.unlock("correct horse battery staple")
        """
        secret = _crypto.password_bytes(password)
        generation, header = self._current_header()
        master = _crypto.derive_key(secret, header.salt, header.opslimit, header.memlimit)
        try:
            seal_key = bytearray(_crypto.unseal(master, header.seal_key, header.wrap_aad()))
        except _crypto.AuthenticationFailed:
            _crypto.wipe(master)
            _log.warning("keystore unlock refused at %s: wrong password", self._store.location)
            raise WrongPasswordError() from None
        with self._state:
            self._install(master, seal_key, generation, header.keystore_id)
        _log.info("keystore unlocked at %s", self._store.location)

    def lock(self) -> None:
        """Forget the master key (its buffer is overwritten with zeros). Idempotent."""
        with self._state:
            was_unlocked = self._master is not None
            self._drop_keys()
        if was_unlocked:
            _log.info("keystore locked at %s", self._store.location)

    @property
    def locked(self) -> bool:
        """``True`` until :meth:`unlock` succeeds, and again after :meth:`lock`."""
        return self._master is None

    @property
    def path(self) -> Path | None:
        """The keystore directory; ``None`` when the keystore lives in a database."""
        return self._store.path

    @property
    def backend(self) -> Literal["file", "database"]:
        """Where the records live: ``"file"`` (a directory) or ``"database"`` (a table)."""
        return self._store.kind

    @property
    def location(self) -> str:
        """Where the keystore lives, for messages: the directory, or the database."""
        return self._store.location

    @property
    def kdf(self) -> KdfLimits:
        """The Argon2id limits of the live generation."""
        _, header = self._current_header()
        return KdfLimits(opslimit=header.opslimit, memlimit=header.memlimit)

    @property
    def keystore_id(self) -> str:
        """The keystore's random id (bound into every sealed record)."""
        _, header = self._current_header()
        return header.keystore_id

    def _install(
        self, master: bytearray, seal_key: bytearray, generation: int, keystore_id: str
    ) -> None:
        self._drop_keys()
        self._changed_elsewhere = False
        self._master = master
        self._seal_key = seal_key
        self._generation = generation
        self._keystore_id = keystore_id
        self._current_stamp = self._store.stamp()

    def _drop_keys(self) -> None:
        _crypto.wipe(self._master)
        _crypto.wipe(self._seal_key)
        self._master = None
        self._seal_key = None
        self._generation = None
        self._current_stamp = None

    def __enter__(self) -> Keystore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.lock()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            _crypto.wipe(self._master)
            _crypto.wipe(self._seal_key)

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a Keystore cannot be pickled or copied")

    def __repr__(self) -> str:
        try:
            count: int | str = len(self._store.names(self._resolve_generation(), (_KEYS,)))
        except Exception:  # a repr must never raise
            count = "?"
        state = "locked" if self._master is None else "unlocked"
        if self._store.kind == "file":
            return f"Keystore(path={self._store.location!r}, {state}, keys={count})"
        return f"Keystore(backend='database', {state}, keys={count})"

    # ------------------------------------------------------------------ keys: metadata

    def key_ids(self) -> list[str]:
        """The ids of the stored (non-archived) keys, sorted. Works while locked."""
        return self._store.names(self._resolve_generation(), (_KEYS,))

    def has_key(self, key_id: str) -> bool:
        """Whether a key with ``key_id`` is stored. Works while locked.

        Raises:
            InvalidInputError: ``key_id`` is not a valid id.
        """
        key_id = _check_name(key_id, "key_id")
        return self._store.has(self._resolve_generation(), (_KEYS, key_id))

    def key_info(self, key_id: str) -> KeyInfo:
        """Chain, public key and creation time of a stored key.

        Works while locked. While unlocked the record is authenticated first, so a record
        edited to show another address raises instead of being believed.

        Raises:
            InvalidInputError: bad ``key_id``.
            NotFoundError: no such key (entity ``"key"``).
            KeyIntegrityError: the key record is corrupt or fails authentication.
        """
        key_id = _check_name(key_id, "key_id")
        with self._state:
            master = bytes(self._master) if self._master is not None else None
        generation = self._resolve_generation()
        record = self._read_key(generation, key_id)
        if master is not None:
            self._open_key(master, record)
        return KeyInfo(record.key_id, record.chain, record.public_key, record.created_at)

    def public_key(self, key_id: str) -> str:
        """The public key / address of a stored key. See :meth:`key_info`.

        Example::

            address = ks.public_key(agent_id)
        """
        return self.key_info(key_id).public_key

    # ------------------------------------------------------------------ keys: add / use

    def add_key(self, key_id: str, chain: str, secret: bytes, public_key: str) -> KeyInfo:
        """Seal ``secret`` under the master key and store it as ``key_id``.

        For ``solana`` and ``evm`` the secret must be 32 bytes (ed25519 seed / secp256k1
        private key) and ``public_key`` must be the one it derives (an EVM address may be
        given in any case; it is stored checksummed). Other chain names are accepted with
        1-1024-byte secrets and an opaque public key string.

        Raises:
            InvalidInputError: bad id, chain, secret or public key, or ``key_id`` is taken
                (use :meth:`rotate_key` to replace a key).
            KeystoreLockedError: the keystore is locked.
            KeystoreError: the record cannot be written.

        Example::

            secret, address = generate_keypair("solana")
            ks.add_key(agent_id, "solana", secret, address)
        """
        key_id = _check_name(key_id, "key_id")
        chain = _check_chain(chain)
        raw, public_key = _check_key_material(chain, secret, public_key)
        with self._writing() as (master, generation):
            if self._store.has(generation, (_KEYS, key_id)):
                raise InvalidInputError(
                    f"a key with id {key_id} already exists; use rotate_key to replace it",
                    field="key_id",
                )
            record = self._seal_key_record(
                master, key_id, chain, public_key, raw, self._clock.now()
            )
            self._store.write(generation, (_KEYS, key_id), record.to_json())
        _log.info("key %s (%s) added", key_id, chain)
        return KeyInfo(key_id, chain, public_key, record.created_at)

    @contextlib.contextmanager
    def use_key(self, key_id: str) -> Iterator[bytes]:
        """Unseal the key ``key_id`` for the duration of one ``with`` block.

        The secret is opened with the master key derived at :meth:`unlock` (one AEAD
        decryption, no KDF) and the keystore keeps no plaintext copy: each call reads the
        sealed record again. Do not keep the yielded bytes beyond the block.

        Yields:
            the raw secret (32 bytes for solana/evm).

        Raises:
            InvalidInputError: bad ``key_id``.
            KeystoreLockedError: the keystore is locked (or another process changed the
                password since it was unlocked).
            NotFoundError: no such key.
            KeyIntegrityError: the key record is corrupt, tampered or belongs to another key.

        Example::

            with ks.use_key(agent_id) as secret:
                signed = adapter.sign(unsigned, secret)
        """
        key_id = _check_name(key_id, "key_id")
        master, generation = self._unlocked()
        record = self._read_key(generation, key_id)
        secret = self._open_key(master, record)
        del master
        try:
            yield secret
        finally:
            del secret

    # ------------------------------------------------------------------ keys: rotate / remove

    def rotate_key(self, key_id: str, new_secret: bytes, new_public_key: str) -> KeyRotation:
        """Replace the key ``key_id`` with a new one; the old key is archived, still sealed.

        The new key must be of the same chain as the old one. Writing the KEY_ROTATED audit
        row is the caller's job. With the database backend, called inside a write unit of
        work of the same database, the rotation joins that transaction (and commits or rolls
        back with it); otherwise it is one transaction of its own.

        Raises:
            InvalidInputError: bad id or key material, or the new public key equals the old.
            KeystoreLockedError: the keystore is locked.
            NotFoundError: no key ``key_id``.
            KeyIntegrityError: the current key fails authentication (nothing is changed).

        Example::

            secret, address = generate_keypair("evm")
            rotation = ks.rotate_key(agent_id, secret, address)
            audit.write(AuditEvent.KEY_ROTATED, old=rotation.old_public_key,
                        new=rotation.new_public_key)
        """
        key_id = _check_name(key_id, "key_id")
        with self._writing() as (master, generation):
            old = self._read_key(generation, key_id)
            self._open_key(master, old)
            raw, public_key = _check_key_material(old.chain, new_secret, new_public_key)
            if public_key == old.public_key:
                raise InvalidInputError(
                    "the new key is the key already in force", field="new_public_key"
                )
            now = self._clock.now()
            archived = self._archive(generation, old, now, "rotated")
            new = self._seal_key_record(master, key_id, old.chain, public_key, raw, now)
            self._store.write(generation, (_KEYS, key_id), new.to_json())
            archive_path = self._store.label(generation, (_ARCHIVE, key_id, archived.archive_id))
        _log.info("key %s rotated; old key archived as %s", key_id, archived.archive_id)
        return KeyRotation(
            key_id=key_id,
            chain=old.chain,
            old_public_key=old.public_key,
            new_public_key=public_key,
            archive_id=archived.archive_id,
            archive_path=archive_path,
            rotated_at=now,
        )

    def remove_key(self, key_id: str) -> ArchivedKey:
        """Take the key ``key_id`` out of service: it moves to the archive, still sealed.

        Nothing is destroyed, so funds left at the old address stay reachable through
        :meth:`use_archived_key`.

        Raises:
            InvalidInputError: bad ``key_id``.
            KeystoreLockedError: the keystore is locked.
            NotFoundError: no key ``key_id``.
            KeyIntegrityError: the key fails authentication (nothing is changed).
        """
        key_id = _check_name(key_id, "key_id")
        with self._writing() as (master, generation):
            record = self._read_key(generation, key_id)
            self._open_key(master, record)
            archived = self._archive(generation, record, self._clock.now(), "removed")
            self._store.delete(generation, (_KEYS, key_id))
        _log.info("key %s removed; archived as %s", key_id, archived.archive_id)
        return archived

    def archived_keys(self, key_id: str) -> list[ArchivedKey]:
        """The archived keys of ``key_id``, oldest first (empty if none). Works while locked.

        Raises:
            InvalidInputError: bad ``key_id``.
            KeyIntegrityError: an archive record is corrupt.
        """
        key_id = _check_name(key_id, "key_id")
        generation = self._resolve_generation()
        out: list[ArchivedKey] = []
        for archive_id in self._store.names(generation, (_ARCHIVE, key_id)):
            record = self._read_record(generation, key_id, archive_id)
            out.append(self._archived_view(record))
        return out

    @contextlib.contextmanager
    def use_archived_key(self, key_id: str, archive_id: str) -> Iterator[bytes]:
        """Unseal an archived key for one ``with`` block (e.g. to sweep an old address).

        Raises:
            InvalidInputError: bad ids.
            KeystoreLockedError: the keystore is locked.
            NotFoundError: no such archived key (entity ``"archived_key"``).
            KeyIntegrityError: the archive record is corrupt or tampered.
        """
        key_id = _check_name(key_id, "key_id")
        archive_id = _check_name(archive_id, "archive_id")
        master, generation = self._unlocked()
        try:
            record = self._read_record(generation, key_id, archive_id)
        except FileNotFoundError:
            self._check_generation()
            raise NotFoundError("archived_key", f"{key_id}/{archive_id}") from None
        secret = self._open_key(master, record)
        del master
        try:
            yield secret
        finally:
            del secret

    # ------------------------------------------------------------------ named secrets

    def put_secret(self, name: str, value: bytes) -> None:
        """Store (or replace) the named secret ``name``, sealed under the master key.

        Raises:
            InvalidInputError: bad name, or ``value`` is not bytes (at most 1 MiB).
            KeystoreLockedError: the keystore is locked.

        Example::

            ks.put_secret("session-jwt", os.urandom(32))
        """
        name = _check_name(name, "name")
        raw = self._check_value(value)
        with self._writing() as (master, generation):
            record = self._seal_secret_record(master, name, raw, self._clock.now())
            self._store.write(generation, (_SECRETS, name), record.to_json())

    def get_secret(self, name: str) -> bytes:
        """The named secret ``name``.

        Raises:
            InvalidInputError: bad name.
            KeystoreLockedError: the keystore is locked.
            NotFoundError: no such secret (entity ``"secret"``).
            KeyIntegrityError: the secret record is corrupt or tampered (key id
                ``secret:<name>``).
        """
        name = _check_name(name, "name")
        master, generation = self._unlocked()
        try:
            record = self._read_secret(generation, name)
        except FileNotFoundError:
            self._check_generation()
            raise NotFoundError("secret", name) from None
        return self._open_secret(master, record)

    def has_secret(self, name: str) -> bool:
        """Whether the named secret ``name`` exists. Works while locked."""
        name = _check_name(name, "name")
        return self._store.has(self._resolve_generation(), (_SECRETS, name))

    def secret_names(self) -> list[str]:
        """The names of the stored named secrets, sorted. Works while locked."""
        return self._store.names(self._resolve_generation(), (_SECRETS,))

    def delete_secret(self, name: str) -> None:
        """Delete the named secret ``name`` for good.

        Raises:
            InvalidInputError: bad name.
            KeystoreLockedError: the keystore is locked.
            NotFoundError: no such secret.
        """
        name = _check_name(name, "name")
        with self._writing() as (_master, generation):
            if not self._store.has(generation, (_SECRETS, name)):
                raise NotFoundError("secret", name)
            self._store.delete(generation, (_SECRETS, name))

    # ------------------------------------------------------------------ generic sealing

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Seal ``plaintext`` for storage elsewhere (e.g. a database column).

        The result is text (``"v1:"`` + base64) bound to ``context`` (associated data):
        :meth:`unseal` with another context fails. Blobs are sealed with a random key kept
        in the keystore header, so they stay readable after :meth:`change_password`.

        Raises:
            InvalidInputError: ``plaintext`` is not bytes (at most 1 MiB) or bad context.
            KeystoreLockedError: the keystore is locked.

        Example::

            blob = ks.seal(bot_token.encode(), context="notify:telegram")
            assert ks.unseal(blob, context="notify:telegram") == bot_token.encode()
        """
        raw = self._check_value(plaintext, field="plaintext")
        context = _check_context(context)
        key, keystore_id = self._blob_key()
        sealed = _crypto.seal(key, raw, self._blob_aad(keystore_id, context))
        return _BLOB_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")

    def unseal(self, blob: str, *, context: str) -> bytes:
        """Open a blob made by :meth:`seal` with the same ``context``.

        Raises:
            InvalidInputError: ``blob`` is not a str, or bad context.
            KeystoreLockedError: the keystore is locked.
            KeyIntegrityError: malformed, tampered, from another keystore, or another context
                (key id ``blob:<context>``).
        """
        if not isinstance(blob, str):
            raise InvalidInputError("blob must be a str made by seal()", field="blob")
        context = _check_context(context)
        key, keystore_id = self._blob_key()
        label = f"blob:{context}"
        if not blob.startswith(_BLOB_PREFIX):
            raise KeyIntegrityError(label, "is malformed (unknown version prefix)")
        try:
            sealed = base64.b64decode(blob[len(_BLOB_PREFIX) :], altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise KeyIntegrityError(label, "is malformed (bad base64)") from None
        try:
            return _crypto.unseal(key, sealed, self._blob_aad(keystore_id, context))
        except _crypto.AuthenticationFailed:
            raise KeyIntegrityError(label) from None

    # ------------------------------------------------------------------ change password

    def change_password(
        self, current_password: str, new_password: str, *, kdf: KdfLimits | None = None
    ) -> None:
        """Re-seal every key, archived key and named secret under a new master key.

        The new master key comes from ``new_password`` with a new salt (and ``kdf`` limits,
        default: keep the current ones). All or nothing: the file backend writes a complete
        new generation next to the old one, then switches ``CURRENT`` atomically; the
        database backend rewrites every row in one transaction. A crash leaves the keystore
        either entirely under the old password or entirely under the new one. Blobs made by
        :meth:`seal` stay valid. A keystore that was unlocked stays unlocked (under the new
        key); a locked one stays locked. Other processes (other hosts) that had it unlocked
        lock themselves at their next use of key material
        (:class:`~waiaas.errors.PasswordChangedError`) and need the new password.

        Raises:
            InvalidInputError: bad passwords or limits.
            WrongPasswordError: ``current_password`` is wrong; nothing changed.
            KeyIntegrityError: a stored record fails authentication; nothing changed.
            KeystoreError: the new generation cannot be written; nothing changed.

        Example::

            ks.change_password("old pw", "new pw", kdf=KdfLimits.moderate())
        """
        old_secret = _crypto.password_bytes(current_password)
        try:
            new_secret = _crypto.password_bytes(new_password)
        except InvalidInputError as exc:
            raise InvalidInputError(exc.message.replace("password", "new password"),
                                    field="new_password") from None  # fmt: skip
        if kdf is not None:
            _check_limits(kdf)
        # The KDF runs twice (seconds with production limits) before the writer lock is
        # taken: the database backend holds the database's write lock while it writes.
        generation, header = self._current_header()
        old_master = _crypto.derive_key(old_secret, header.salt, header.opslimit, header.memlimit)
        new_master: bytearray | None = None
        seal_key: bytearray | None = None
        try:
            try:
                seal_key = bytearray(_crypto.unseal(old_master, header.seal_key, header.wrap_aad()))
            except _crypto.AuthenticationFailed:
                _log.warning("password change refused at %s: wrong password", self._store.location)
                raise WrongPasswordError() from None
            limits = kdf or KdfLimits(opslimit=header.opslimit, memlimit=header.memlimit)
            salt = _crypto.new_salt()
            new_master = _crypto.derive_key(new_secret, salt, limits.opslimit, limits.memlimit)
            draft = _Header(header.keystore_id, header.created_at, limits.opslimit,
                            limits.memlimit, salt, b"")  # fmt: skip
            new_header = draft.with_seal_key(
                _crypto.seal(new_master, bytes(seal_key), draft.wrap_aad())
            )
            new_generation = generation + 1
            self._switch_generation(generation, header, new_header, old_master, new_master)
            # Committed (the database backend commits when its writer ends).
            with self._state:
                if self._master is not None:
                    self._install(new_master, seal_key, new_generation, header.keystore_id)
                    new_master = seal_key = None  # now owned by the keystore
            self._store.drop_generation(generation)
        finally:
            _crypto.wipe(old_master)
            _crypto.wipe(new_master)
            _crypto.wipe(seal_key)
        _log.info(
            "keystore password changed at %s (generation %d)",
            self._store.location,
            new_generation,
        )

    def _switch_generation(
        self,
        generation: int,
        header: _Header,
        new_header: _Header,
        old_master: bytearray,
        new_master: bytearray,
    ) -> None:
        """Under the store's writer lock: every record re-sealed under ``new_master`` and the
        next generation put in force, unless another process changed the password since
        ``header`` was read (then nothing is written)."""
        with self._store.writer():
            live, live_header = self._current_header(for_change=True)
            if live != generation or live_header.salt != header.salt:
                raise KeystoreError(
                    f"the keystore at {self._store.location} had its password changed by "
                    "another process meanwhile; nothing was changed (use the password "
                    "now in force)",
                    path=self._store.location,
                )
            records = self._resealed(generation, header.keystore_id, old_master, new_master)
            # The commit point: before it the old generation is in force, after it the
            # new one.
            self._store.replace_generation(
                generation, generation + 1, new_header.to_json(), records
            )

    def _resealed(
        self,
        generation: int,
        keystore_id: str,
        old_master: bytearray,
        new_master: bytearray,
    ) -> list[tuple[Address, bytes]]:
        """Every record of ``generation`` opened with the old key and sealed with the new."""
        store = self._store
        out: list[tuple[Address, bytes]] = []
        for key_id in store.names(generation, (_KEYS,), strict=True):
            record = self._read_key(generation, key_id)
            secret = self._open_key(old_master, record, keystore_id)
            resealed = self._seal_key_record(
                new_master, key_id, record.chain, record.public_key, secret,
                record.created_at, keystore_id,
            )  # fmt: skip
            out.append(((_KEYS, key_id), resealed.to_json()))
        for key_id in store.names(generation, (_ARCHIVE,), strict=True, dirs=True):
            for archive_id in store.names(generation, (_ARCHIVE, key_id), strict=True):
                record = self._read_record(generation, key_id, archive_id)
                secret = self._open_key(old_master, record, keystore_id)
                fresh = self._seal_key_record(
                    new_master, key_id, record.chain, record.public_key, secret,
                    record.created_at, keystore_id,
                )  # fmt: skip
                assert record.archived_at is not None and record.reason is not None
                fresh = fresh.archived(archive_id, record.archived_at, record.reason)
                out.append(((_ARCHIVE, key_id, archive_id), fresh.to_json()))
        for name in store.names(generation, (_SECRETS,), strict=True):
            srec = self._read_secret(generation, name)
            value = self._open_secret(old_master, srec, keystore_id)
            fresh_secret = self._seal_secret_record(
                new_master, name, value, srec.updated_at, keystore_id
            )
            out.append(((_SECRETS, name), fresh_secret.to_json()))
        return out

    # ------------------------------------------------------------------ internals: state

    def _unlocked(self) -> tuple[bytes, int]:
        """A copy of the master key and the generation it opens; checks for a foreign change."""
        with self._state:
            if self._master is None or self._generation is None:
                raise self._locked_error()
            self._check_generation()
            if self._master is None or self._generation is None:  # pragma: no cover
                raise KeystoreLockedError()
            return bytes(self._master), self._generation

    def _locked_error(self) -> KeystoreLockedError:
        """Locked: say so, naming a password change by another process when that was why."""
        if self._changed_elsewhere:
            return PasswordChangedError()
        return KeystoreLockedError()

    def _blob_key(self) -> tuple[bytes, str]:
        with self._state:
            if self._seal_key is None or self._keystore_id is None:
                raise self._locked_error()
            return bytes(self._seal_key), self._keystore_id

    def _check_generation(self) -> None:
        """Lock (and raise) if another process switched generations since we unlocked."""
        with self._state:
            if self._master is None:
                return
            stamp = self._store.stamp()
            if stamp is not None and stamp == self._current_stamp:
                return
            try:
                current: int | None = self._store.current()
            except (NotFoundError, KeystoreError):
                current = None
            if current != self._generation:
                self._drop_keys()
                self._changed_elsewhere = True
                _log.warning(
                    "keystore at %s changed by another writer; locked", self._store.location
                )
                raise PasswordChangedError()
            self._current_stamp = stamp

    def _recheck_generation(self) -> None:
        """A record was sealed under another generation: re-read the live one (raises
        PasswordChangedError if it moved while this keystore was unlocked)."""
        with self._state:
            self._current_stamp = None
            self._check_generation()

    def _resolve_generation(self) -> int:
        with self._state:
            if self._master is not None and self._generation is not None:
                self._check_generation()
                if self._generation is not None:
                    return self._generation
        return self._store.current()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[tuple[bytes, int]]:
        """Hold the writer lock; yield the master key and the live generation."""
        with self._store.writer():
            with self._state:
                if self._master is None:
                    raise self._locked_error()
                self._current_stamp = None  # force a fresh read of the live generation
                self._check_generation()
                if self._master is None or self._generation is None:  # pragma: no cover
                    raise KeystoreLockedError()
                master, generation = bytes(self._master), self._generation
            yield master, generation

    # ------------------------------------------------------------------ internals: records

    def _read(self, generation: int, address: Address, limit: int) -> bytes:
        """A record's bytes; a record of another generation means the password changed."""
        try:
            return self._store.read(generation, address, limit)
        except StaleRecord:
            self._recheck_generation()
            with self._state:
                unlocked = self._master is not None
            if not unlocked:  # read while locked, racing a password change: read again
                return self._store.read(self._store.current(), address, limit)
            raise OSError(f"{'/'.join(address)} was sealed under another generation") from None

    def _current_header(self, *, for_change: bool = False) -> tuple[int, _Header]:
        generation, raw, label = self._store.current_header(for_change=for_change)
        return generation, _parse_header(raw, label)

    def _key_aad(self, keystore_id: str, key_id: str, chain: str, public_key: str) -> bytes:
        return _crypto.aad("waiaas.keystore.key", keystore_id, key_id, chain, public_key)

    def _secret_aad(self, keystore_id: str, name: str) -> bytes:
        return _crypto.aad("waiaas.keystore.secret", keystore_id, name)

    def _blob_aad(self, keystore_id: str, context: str) -> bytes:
        return _crypto.aad("waiaas.keystore.blob", keystore_id, context)

    def _current_keystore_id(self) -> str:
        with self._state:
            if self._keystore_id is None:
                raise KeystoreLockedError()
            return self._keystore_id

    def _seal_key_record(
        self,
        master: bytes | bytearray,
        key_id: str,
        chain: str,
        public_key: str,
        secret: bytes,
        created_at: int,
        keystore_id: str | None = None,
    ) -> _KeyRecord:
        ks_id = keystore_id or self._current_keystore_id()
        sealed = _crypto.seal(master, secret, self._key_aad(ks_id, key_id, chain, public_key))
        return _KeyRecord(key_id, chain, public_key, created_at, sealed)

    def _open_key(
        self, master: bytes | bytearray, record: _KeyRecord, keystore_id: str | None = None
    ) -> bytes:
        ks_id = keystore_id or self._current_keystore_id()
        associated = self._key_aad(ks_id, record.key_id, record.chain, record.public_key)
        try:
            return _crypto.unseal(master, record.sealed, associated)
        except _crypto.AuthenticationFailed:
            where = f" (archive {record.archive_id})" if record.archive_id else ""
            _log.warning("key %s%s failed authentication", record.key_id, where)
            raise KeyIntegrityError(record.key_id, f"failed authentication{where}") from None

    def _read_key(self, generation: int, key_id: str) -> _KeyRecord:
        try:
            return self._read_record(generation, key_id, None)
        except FileNotFoundError:
            self._check_generation()
            raise NotFoundError("key", key_id) from None

    def _read_record(self, generation: int, key_id: str, archive_id: str | None) -> _KeyRecord:
        """Parse a key or archived-key record; the ids it claims must match where it lies."""
        where = f" (archive {archive_id})" if archive_id else ""
        address = (_KEYS, key_id) if archive_id is None else (_ARCHIVE, key_id, archive_id)
        try:
            raw = self._read(generation, address, 65536)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyIntegrityError(
                key_id, f"cannot be read{where}: {exc.strerror or exc}"
            ) from None
        try:
            data = _load_json(raw)
            _check_format(data, "key file", self._store.label(generation, address))
            record = _KeyRecord(
                key_id=_str(data.get("key_id")),
                chain=_str(data.get("chain")),
                public_key=_str(data.get("public_key")),
                created_at=_int(data.get("created_at")),
                sealed=_unb64(data.get("sealed")),
            )
            if archive_id is None:
                if data.get("kind") != "key":
                    raise ValueError("not a key record")
            else:
                reason = data.get("reason")
                if data.get("kind") != "archived_key" or reason not in ("rotated", "removed"):
                    raise ValueError("not an archived key record")
                if data.get("archive_id") != archive_id:
                    raise ValueError("archive id does not match its file name")
                record = record.archived(archive_id, _int(data.get("archived_at")), reason)
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise KeyIntegrityError(key_id, f"is corrupt{where}: {exc}") from None
        if record.key_id != key_id:
            raise KeyIntegrityError(key_id, f"holds the key of another key id{where}")
        return record

    def _archived_view(self, record: _KeyRecord) -> ArchivedKey:
        assert record.archive_id is not None and record.archived_at is not None
        assert record.reason is not None
        return ArchivedKey(
            key_id=record.key_id,
            archive_id=record.archive_id,
            chain=record.chain,
            public_key=record.public_key,
            created_at=record.created_at,
            archived_at=record.archived_at,
            reason=record.reason,
        )

    def _archive(
        self, generation: int, record: _KeyRecord, now: int, reason: Literal["rotated", "removed"]
    ) -> ArchivedKey:
        """Copy ``record`` (still sealed) into the archive; idempotent after a crash."""
        for existing in self._store.names(generation, (_ARCHIVE, record.key_id)):
            earlier = self._read_record(generation, record.key_id, existing)
            if earlier.public_key == record.public_key and earlier.sealed == record.sealed:
                return self._archived_view(earlier)
        archived = record.archived(new_id(), now, reason)
        assert archived.archive_id is not None
        self._store.write(
            generation, (_ARCHIVE, record.key_id, archived.archive_id), archived.to_json()
        )
        return self._archived_view(archived)

    def _seal_secret_record(
        self,
        master: bytes | bytearray,
        name: str,
        value: bytes,
        updated_at: int,
        keystore_id: str | None = None,
    ) -> _SecretRecord:
        ks_id = keystore_id or self._current_keystore_id()
        return _SecretRecord(
            name, updated_at, _crypto.seal(master, value, self._secret_aad(ks_id, name))
        )

    def _open_secret(
        self, master: bytes | bytearray, record: _SecretRecord, keystore_id: str | None = None
    ) -> bytes:
        ks_id = keystore_id or self._current_keystore_id()
        try:
            return _crypto.unseal(master, record.sealed, self._secret_aad(ks_id, record.name))
        except _crypto.AuthenticationFailed:
            raise KeyIntegrityError(f"secret:{record.name}") from None

    def _read_secret(self, generation: int, name: str) -> _SecretRecord:
        label = f"secret:{name}"
        address = (_SECRETS, name)
        try:
            raw = self._read(generation, address, _MAX_SECRET_BYTES * 2)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyIntegrityError(label, f"cannot be read: {exc.strerror or exc}") from None
        try:
            data = _load_json(raw)
            _check_format(data, "secret file", self._store.label(generation, address))
            if data.get("kind") != "secret":
                raise ValueError("not a secret record")
            record = _SecretRecord(
                _str(data.get("name")), _int(data.get("updated_at")), _unb64(data.get("sealed"))
            )
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise KeyIntegrityError(label, f"is corrupt: {exc}") from None
        if record.name != name:
            raise KeyIntegrityError(label, "holds the secret of another name")
        return record

    @staticmethod
    def _check_value(value: object, field: str = "value") -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidInputError(f"{field} must be bytes", field=field)
        raw = bytes(value)
        if len(raw) > _MAX_SECRET_BYTES:
            raise InvalidInputError(
                f"{field} must be at most {_MAX_SECRET_BYTES} bytes", field=field
            )
        return raw


def _backend_for(target: object, clock: Clock) -> Backend:
    """The backend for a keystore at ``target``: a directory, or a waiaas ``Database``."""
    from waiaas.db.database import Database

    if isinstance(target, Database):
        from waiaas.keystore._dbstore import DatabaseBackend

        return DatabaseBackend(target, clock)
    if not isinstance(target, str | os.PathLike) or not os.fspath(target):
        raise InvalidInputError("path must be a non-empty path or a Database", field="path")
    return FileBackend(Path(os.path.abspath(os.fspath(target))))


def _parse_header(raw: bytes, label: str) -> _Header:
    try:
        data = _load_json(raw)
        _check_format(data, "keystore header", label)
        if data.get("kind") != "header" or data.get("aead") != _crypto.AEAD_ALGORITHM:
            raise ValueError("not a keystore header")
        kdf = data.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("algorithm") != _crypto.KDF_ALGORITHM:
            raise ValueError("unknown key derivation")
        opslimit, memlimit = _int(kdf.get("opslimit")), _int(kdf.get("memlimit"))
        lo_ops, hi_ops = _crypto.OPSLIMIT_BOUNDS
        lo_mem, hi_mem = _crypto.MEMLIMIT_BOUNDS
        if not (lo_ops <= opslimit <= hi_ops and lo_mem <= memlimit <= hi_mem):
            raise ValueError("key derivation limits out of bounds")
        salt = _unb64(kdf.get("salt"))
        if len(salt) != _crypto.SALT_BYTES:
            raise ValueError("bad salt length")
        keystore_id = _check_name(_str(data.get("keystore_id")), "keystore_id")
        return _Header(
            keystore_id, _int(data.get("created_at")), opslimit, memlimit, salt,
            _unb64(data.get("seal_key")),
        )  # fmt: skip
    except (ValueError, UnicodeDecodeError, binascii.Error, InvalidInputError) as exc:
        raise KeystoreError(f"keystore header {label} is corrupt: {exc}", path=label) from None
