"""The encrypted keystore: agents' private keys and other secrets, sealed under one master key.

The master key is derived from the master password with Argon2id **once per unlock**; every
key is then opened on demand with that key (one AEAD decryption, microseconds), never by
re-running the KDF. Each key is sealed with XChaCha20-Poly1305 and bound, as associated data,
to the keystore id, its key id (the agent id), its chain and its public key, so a key file
moved onto another agent, or edited to show another address, fails to open.

On disk (all directories 0700, all files 0600, every write atomic)::

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
from typing import Any, Final, Literal

from waiaas.clock import Clock, SystemClock
from waiaas.config import KdfLimits
from waiaas.errors import (
    InvalidInputError,
    KeyIntegrityError,
    KeystoreError,
    KeystoreLockedError,
    NotFoundError,
    PasswordChangedError,
    WaiaasError,
    WrongPasswordError,
)
from waiaas.ids import new_id
from waiaas.keystore import _crypto, _files
from waiaas.keystore.keys import (
    SECRET_LENGTHS,
    check_secret,
    normalize_public_key,
    public_key_for,
)

__all__ = ["FORMAT_VERSION", "ArchivedKey", "KeyInfo", "KeyRotation", "Keystore"]

#: Version of the on-disk format this code writes and the newest it reads.
FORMAT_VERSION: Final = 1

_CURRENT: Final = "CURRENT"
_LOCK: Final = ".lock"
_HEADER: Final = "header.json"
_KEYS: Final = "keys"
_ARCHIVE: Final = "archive"
_SECRETS: Final = "secrets"
_GEN_PREFIX: Final = "gen-"
_SUFFIX: Final = ".json"

_ID_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_-])?")
_CHAIN_RE: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_GEN_RE: Final = re.compile(r"gen-([1-9][0-9]{0,17})")
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


def _gen_name(generation: int) -> str:
    return f"{_GEN_PREFIX}{generation}"


# --------------------------------------------------------------------------- the keystore


class Keystore:
    """An encrypted, file-based keystore (see the module docstring for the format).

    Create one with :meth:`create`, open an existing one with :meth:`open` (it starts
    locked), then :meth:`unlock` it with the master password. A locked keystore still
    answers :meth:`key_ids`, :meth:`has_key`, :meth:`public_key`, :meth:`key_info` and
    :meth:`archived_keys`; anything that touches key material raises
    :class:`~waiaas.errors.KeystoreLockedError`.

    Thread-safe. Several processes may use one keystore: writers are serialised by a file
    lock; if another process changes the password, this one locks itself and asks to be
    unlocked again.

    Used as a context manager, the keystore is locked when the block ends.
    """

    __slots__ = (
        "__weakref__",
        "_changed_elsewhere",
        "_clock",
        "_current_path",
        "_current_stamp",
        "_dirlock",
        "_generation",
        "_keystore_id",
        "_master",
        "_root",
        "_seal_key",
        "_state",
    )

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        """Open the existing keystore at ``path``, locked. Same as :meth:`open`."""
        self._setup(path, clock)
        self._open_existing()

    def _setup(self, path: object, clock: Clock | None) -> None:
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise InvalidInputError("path must be a non-empty path", field="path")
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidInputError("clock must provide now()", field="clock")
        self._root = Path(os.path.abspath(os.fspath(path)))
        self._current_path = os.path.join(self._root, _CURRENT)  # a str: stat()ed per use
        self._clock: Clock = clock or SystemClock()
        self._dirlock = _files.DirectoryLock(self._root / _LOCK)
        self._state = threading.RLock()
        self._master: bytearray | None = None
        self._seal_key: bytearray | None = None
        self._generation: int | None = None
        self._keystore_id: str | None = None
        self._changed_elsewhere = False
        self._current_stamp: tuple[int, int, int] | None = None

    # ------------------------------------------------------------------ create / open

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        password: str,
        *,
        kdf: KdfLimits | None = None,
        clock: Clock | None = None,
    ) -> Keystore:
        """Create a new keystore at ``path`` protected by ``password``; return it unlocked.

        ``path`` is a directory: it is created (mode 0700) if missing, and may exist only if
        it is empty (or holds the leftovers of an interrupted ``create``).

        Args:
            path: the keystore directory. Its parent must exist.
            password: the master password (non-empty; NFC-normalised, UTF-8).
            kdf: Argon2id limits; default :meth:`KdfLimits.moderate` (~0.8 s, 256 MiB).
                They are stored with the keystore and can be raised by
                :meth:`change_password`.
            clock: source of the timestamps written into records.

        Raises:
            InvalidInputError: bad path, password or limits.
            KeystoreError: a keystore already exists there, the directory holds other
                files, or it cannot be written.

        Example::

            ks = Keystore.create(tmp_path / "ks", "pw", kdf=KdfLimits.minimum())
        """
        self = cls.__new__(cls)
        self._setup(path, clock)
        secret = _crypto.password_bytes(password)
        limits = _check_limits(kdf if kdf is not None else KdfLimits.moderate())
        root = self._root
        if not root.parent.is_dir():
            raise KeystoreError(
                f"cannot create keystore {root}: parent directory does not exist",
                path=str(root),
            )
        try:
            self._refuse_occupied()  # before touching the directory at all
            _files.make_private_dir(root)
        except OSError as exc:
            raise KeystoreError(
                f"cannot create keystore directory {root}: {exc.strerror or exc}", path=str(root)
            ) from None
        with self._dirlock.hold():
            self._refuse_occupied()  # again, now that no other writer can interfere
            self._remove_leftovers(keep=None)
            salt = _crypto.new_salt()
            master = _crypto.derive_key(secret, salt, limits.opslimit, limits.memlimit)
            seal_key = _crypto.new_key()
            draft = _Header(
                new_id(), self._clock.now(), limits.opslimit, limits.memlimit, salt, b""
            )
            header = draft.with_seal_key(_crypto.seal(master, bytes(seal_key), draft.wrap_aad()))
            try:
                self._write_generation_skeleton(1, header)
                self._write_current(1)
            except OSError as exc:
                _crypto.wipe(master)
                _crypto.wipe(seal_key)
                self._remove_leftovers(keep=None)
                raise self._io_error("create", exc) from None
            with self._state:
                self._install(master, seal_key, 1, header.keystore_id)
        _log.info("keystore created at %s", root)
        return self

    def _refuse_occupied(self) -> None:
        root = self._root
        if not root.exists():
            return
        if not root.is_dir():
            raise KeystoreError(
                f"cannot create keystore at {root}: not a directory", path=str(root)
            )
        if (root / _CURRENT).exists():
            raise KeystoreError(
                f"a keystore already exists at {root}; use Keystore.open", path=str(root)
            )
        foreign = sorted(
            name
            for name in os.listdir(root)
            if name != _LOCK
            and not name.startswith(_files.TMP_PREFIX)
            and not _GEN_RE.fullmatch(name)
        )
        if foreign:
            raise KeystoreError(
                f"cannot create keystore in {root}: the directory is not empty "
                f"({', '.join(foreign[:5])})",
                path=str(root),
            )

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, clock: Clock | None = None) -> Keystore:
        """Open the existing keystore at ``path``; it starts locked.

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
    def exists(path: str | os.PathLike[str]) -> bool:
        """Whether a keystore exists at ``path`` (a directory with a ``CURRENT`` file)."""
        return (Path(os.fspath(path)) / _CURRENT).is_file()

    def _open_existing(self) -> None:
        if not (self._root / _CURRENT).is_file():
            raise NotFoundError("keystore", str(self._root))
        self._current_header()
        with self._dirlock.hold(blocking=False) as acquired:
            if acquired:
                self._remove_leftovers(keep=self._read_current())

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
            _log.warning("keystore unlock refused at %s: wrong password", self._root)
            raise WrongPasswordError() from None
        with self._state:
            self._install(master, seal_key, generation, header.keystore_id)
        _log.info("keystore unlocked at %s", self._root)

    def lock(self) -> None:
        """Forget the master key (its buffer is overwritten with zeros). Idempotent."""
        with self._state:
            was_unlocked = self._master is not None
            self._drop_keys()
        if was_unlocked:
            _log.info("keystore locked at %s", self._root)

    @property
    def locked(self) -> bool:
        """``True`` until :meth:`unlock` succeeds, and again after :meth:`lock`."""
        return self._master is None

    @property
    def path(self) -> Path:
        """The keystore directory."""
        return self._root

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
        self._current_stamp = self._stamp_current()

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
            count: int | str = len(
                self._list_names(self._gen_dir(self._resolve_generation()) / _KEYS)
            )
        except Exception:  # a repr must never raise
            count = "?"
        state = "locked" if self._master is None else "unlocked"
        return f"Keystore(path={str(self._root)!r}, {state}, keys={count})"

    # ------------------------------------------------------------------ keys: metadata

    def key_ids(self) -> list[str]:
        """The ids of the stored (non-archived) keys, sorted. Works while locked."""
        return self._list_names(self._gen_dir(self._resolve_generation()) / _KEYS)

    def has_key(self, key_id: str) -> bool:
        """Whether a key with ``key_id`` is stored. Works while locked.

        Raises:
            InvalidInputError: ``key_id`` is not a valid id.
        """
        key_id = _check_name(key_id, "key_id")
        path = self._gen_dir(self._resolve_generation()) / _KEYS / f"{key_id}{_SUFFIX}"
        return path.is_file()

    def key_info(self, key_id: str) -> KeyInfo:
        """Chain, public key and creation time of a stored key.

        Works while locked. While unlocked the record is authenticated first, so a file
        edited to show another address raises instead of being believed.

        Raises:
            InvalidInputError: bad ``key_id``.
            NotFoundError: no such key (entity ``"key"``).
            KeyIntegrityError: the key file is corrupt or fails authentication.
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
            KeystoreError: the file cannot be written.

        Example::

            secret, address = generate_keypair("solana")
            ks.add_key(agent_id, "solana", secret, address)
        """
        key_id = _check_name(key_id, "key_id")
        chain = _check_chain(chain)
        raw, public_key = _check_key_material(chain, secret, public_key)
        with self._writing() as (master, gen_dir):
            path = gen_dir / _KEYS / f"{key_id}{_SUFFIX}"
            if path.exists():
                raise InvalidInputError(
                    f"a key with id {key_id} already exists; use rotate_key to replace it",
                    field="key_id",
                )
            record = self._seal_key_record(
                master, key_id, chain, public_key, raw, self._clock.now()
            )
            self._write(path, record.to_json(), "add_key")
        _log.info("key %s (%s) added", key_id, chain)
        return KeyInfo(key_id, chain, public_key, record.created_at)

    @contextlib.contextmanager
    def use_key(self, key_id: str) -> Iterator[bytes]:
        """Unseal the key ``key_id`` for the duration of one ``with`` block.

        The secret is opened with the master key derived at :meth:`unlock` (one AEAD
        decryption, no KDF) and the keystore keeps no plaintext copy: each call reads the
        sealed file again. Do not keep the yielded bytes beyond the block.

        Yields:
            the raw secret (32 bytes for solana/evm).

        Raises:
            InvalidInputError: bad ``key_id``.
            KeystoreLockedError: the keystore is locked (or another process changed the
                password since it was unlocked).
            NotFoundError: no such key.
            KeyIntegrityError: the key file is corrupt, tampered or belongs to another key.

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
        row is the caller's job: this method does no database I/O.

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
        with self._writing() as (master, gen_dir):
            old = self._read_key(self._generation_of(gen_dir), key_id)
            self._open_key(master, old)
            raw, public_key = _check_key_material(old.chain, new_secret, new_public_key)
            if public_key == old.public_key:
                raise InvalidInputError(
                    "the new key is the key already in force", field="new_public_key"
                )
            now = self._clock.now()
            archived = self._archive(gen_dir, old, now, "rotated")
            new = self._seal_key_record(master, key_id, old.chain, public_key, raw, now)
            self._write(gen_dir / _KEYS / f"{key_id}{_SUFFIX}", new.to_json(), "rotate_key")
            archive_path = self._archive_path(gen_dir, key_id, archived.archive_id)
        _log.info("key %s rotated; old key archived as %s", key_id, archived.archive_id)
        return KeyRotation(
            key_id=key_id,
            chain=old.chain,
            old_public_key=old.public_key,
            new_public_key=public_key,
            archive_id=archived.archive_id,
            archive_path=str(archive_path),
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
        with self._writing() as (master, gen_dir):
            record = self._read_key(self._generation_of(gen_dir), key_id)
            self._open_key(master, record)
            archived = self._archive(gen_dir, record, self._clock.now(), "removed")
            try:
                _files.remove_file(gen_dir / _KEYS / f"{key_id}{_SUFFIX}")
            except OSError as exc:
                raise self._io_error("remove_key", exc) from None
        _log.info("key %s removed; archived as %s", key_id, archived.archive_id)
        return archived

    def archived_keys(self, key_id: str) -> list[ArchivedKey]:
        """The archived keys of ``key_id``, oldest first (empty if none). Works while locked.

        Raises:
            InvalidInputError: bad ``key_id``.
            KeyIntegrityError: an archive file is corrupt.
        """
        key_id = _check_name(key_id, "key_id")
        gen_dir = self._gen_dir(self._resolve_generation())
        folder = gen_dir / _ARCHIVE / key_id
        out: list[ArchivedKey] = []
        for archive_id in self._list_names(folder):
            record = self._read_record_file(folder / f"{archive_id}{_SUFFIX}", key_id, archive_id)
            out.append(self._archived_view(record))
        return out

    @contextlib.contextmanager
    def use_archived_key(self, key_id: str, archive_id: str) -> Iterator[bytes]:
        """Unseal an archived key for one ``with`` block (e.g. to sweep an old address).

        Raises:
            InvalidInputError: bad ids.
            KeystoreLockedError: the keystore is locked.
            NotFoundError: no such archived key (entity ``"archived_key"``).
            KeyIntegrityError: the archive file is corrupt or tampered.
        """
        key_id = _check_name(key_id, "key_id")
        archive_id = _check_name(archive_id, "archive_id")
        master, generation = self._unlocked()
        path = self._archive_path(self._gen_dir(generation), key_id, archive_id)
        try:
            record = self._read_record_file(path, key_id, archive_id)
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
        with self._writing() as (master, gen_dir):
            record = self._seal_secret_record(master, name, raw, self._clock.now())
            self._write(gen_dir / _SECRETS / f"{name}{_SUFFIX}", record.to_json(), "put_secret")

    def get_secret(self, name: str) -> bytes:
        """The named secret ``name``.

        Raises:
            InvalidInputError: bad name.
            KeystoreLockedError: the keystore is locked.
            NotFoundError: no such secret (entity ``"secret"``).
            KeyIntegrityError: the secret file is corrupt or tampered (key id ``secret:<name>``).
        """
        name = _check_name(name, "name")
        master, generation = self._unlocked()
        path = self._gen_dir(generation) / _SECRETS / f"{name}{_SUFFIX}"
        try:
            record = self._read_secret_file(path, name)
        except FileNotFoundError:
            self._check_generation()
            raise NotFoundError("secret", name) from None
        return self._open_secret(master, record)

    def has_secret(self, name: str) -> bool:
        """Whether the named secret ``name`` exists. Works while locked."""
        name = _check_name(name, "name")
        return (self._gen_dir(self._resolve_generation()) / _SECRETS / f"{name}{_SUFFIX}").is_file()

    def secret_names(self) -> list[str]:
        """The names of the stored named secrets, sorted. Works while locked."""
        return self._list_names(self._gen_dir(self._resolve_generation()) / _SECRETS)

    def delete_secret(self, name: str) -> None:
        """Delete the named secret ``name`` for good.

        Raises:
            InvalidInputError: bad name.
            KeystoreLockedError: the keystore is locked.
            NotFoundError: no such secret.
        """
        name = _check_name(name, "name")
        with self._writing() as (_master, gen_dir):
            path = gen_dir / _SECRETS / f"{name}{_SUFFIX}"
            if not path.is_file():
                raise NotFoundError("secret", name)
            try:
                _files.remove_file(path)
            except OSError as exc:
                raise self._io_error("delete_secret", exc) from None

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
        default: keep the current ones). A complete new generation is written next to the
        old one, then ``CURRENT`` is switched atomically: a crash leaves the keystore either
        entirely under the old password or entirely under the new one. Blobs made by
        :meth:`seal` stay valid. A keystore that was unlocked stays unlocked (under the new
        key); a locked one stays locked.

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
        with self._dirlock.hold():
            generation, header = self._current_header()
            old_master = _crypto.derive_key(
                old_secret, header.salt, header.opslimit, header.memlimit
            )
            new_master: bytearray | None = None
            seal_key: bytearray | None = None
            try:
                try:
                    seal_key = bytearray(
                        _crypto.unseal(old_master, header.seal_key, header.wrap_aad())
                    )
                except _crypto.AuthenticationFailed:
                    _log.warning("password change refused at %s: wrong password", self._root)
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
                self._write_new_generation(
                    generation, new_generation, header.keystore_id, old_master, new_master,
                    new_header,
                )  # fmt: skip
                # The commit point: before this rename the old generation is in force,
                # after it the new one.
                try:
                    self._write_current(new_generation)
                except BaseException as exc:
                    self._abandon_generation(generation, new_generation)
                    if isinstance(exc, OSError):
                        raise self._io_error("change_password", exc) from None
                    raise
                with self._state:
                    if self._master is not None:
                        self._install(new_master, seal_key, new_generation, header.keystore_id)
                        new_master = seal_key = None  # now owned by the keystore
                try:
                    _files.remove_tree(self._gen_dir(generation))
                except OSError as exc:  # harmless: removed on the next open
                    _log.warning("could not remove old generation: %s", exc.strerror or exc)
            finally:
                _crypto.wipe(old_master)
                _crypto.wipe(new_master)
                _crypto.wipe(seal_key)
        _log.info("keystore password changed at %s (generation %d)", self._root, new_generation)

    def _abandon_generation(self, old_generation: int, new_generation: int) -> None:
        """After a failed switch, delete the new generation unless it did become current."""
        try:
            in_force = self._read_current()
        except WaiaasError:
            in_force = None
        if in_force == old_generation:
            _files.remove_tree(self._gen_dir(new_generation))

    def _write_new_generation(
        self,
        old_generation: int,
        new_generation: int,
        keystore_id: str,
        old_master: bytearray,
        new_master: bytearray,
        header: _Header,
    ) -> None:
        old_dir = self._gen_dir(old_generation)
        new_dir = self._gen_dir(new_generation)
        try:
            _files.remove_tree(new_dir)  # a leftover of an earlier interrupted change
            self._write_generation_skeleton(new_generation, header)
            for key_id in self._list_names(old_dir / _KEYS, strict=True):
                record = self._read_key(old_generation, key_id)
                secret = self._open_key(old_master, record, keystore_id)
                resealed = self._seal_key_record(
                    new_master, key_id, record.chain, record.public_key, secret,
                    record.created_at, keystore_id,
                )  # fmt: skip
                _files.write_atomic(new_dir / _KEYS / f"{key_id}{_SUFFIX}", resealed.to_json())
            for key_id in self._list_names(old_dir / _ARCHIVE, strict=True, dirs=True):
                folder = old_dir / _ARCHIVE / key_id
                target = new_dir / _ARCHIVE / key_id
                _files.make_private_dir(target)
                for archive_id in self._list_names(folder, strict=True):
                    record = self._read_record_file(
                        folder / f"{archive_id}{_SUFFIX}", key_id, archive_id
                    )
                    secret = self._open_key(old_master, record, keystore_id)
                    fresh = self._seal_key_record(
                        new_master, key_id, record.chain, record.public_key, secret,
                        record.created_at, keystore_id,
                    )  # fmt: skip
                    assert record.archived_at is not None and record.reason is not None
                    fresh = fresh.archived(archive_id, record.archived_at, record.reason)
                    _files.write_atomic(target / f"{archive_id}{_SUFFIX}", fresh.to_json())
                _files.fsync_dir(target)
            for name in self._list_names(old_dir / _SECRETS, strict=True):
                srec = self._read_secret_file(old_dir / _SECRETS / f"{name}{_SUFFIX}", name)
                value = self._open_secret(old_master, srec, keystore_id)
                fresh_secret = self._seal_secret_record(
                    new_master, name, value, srec.updated_at, keystore_id
                )
                _files.write_atomic(new_dir / _SECRETS / f"{name}{_SUFFIX}", fresh_secret.to_json())
            for sub in (_KEYS, _ARCHIVE, _SECRETS):
                _files.fsync_dir(new_dir / sub)
            _files.fsync_dir(new_dir)
        except OSError as exc:
            _files.remove_tree(new_dir)
            raise self._io_error("change_password", exc) from None
        except BaseException:
            _files.remove_tree(new_dir)
            raise

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

    def _stamp_current(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self._current_path)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def _check_generation(self) -> None:
        """Lock (and raise) if another process switched ``CURRENT`` since we unlocked."""
        with self._state:
            if self._master is None:
                return
            stamp = self._stamp_current()
            if stamp is not None and stamp == self._current_stamp:
                return
            try:
                current = self._read_current()
            except (NotFoundError, KeystoreError):
                current = None
            if current != self._generation:
                self._drop_keys()
                self._changed_elsewhere = True
                _log.warning("keystore at %s changed by another writer; locked", self._root)
                raise PasswordChangedError()
            self._current_stamp = stamp

    def _resolve_generation(self) -> int:
        with self._state:
            if self._master is not None and self._generation is not None:
                self._check_generation()
                if self._generation is not None:
                    return self._generation
        return self._read_current()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[tuple[bytes, Path]]:
        """Hold the writer lock; yield the master key and the live generation directory."""
        with self._dirlock.hold():
            with self._state:
                if self._master is None:
                    raise self._locked_error()
                self._current_stamp = None  # force a fresh read of CURRENT
                self._check_generation()
                if self._master is None or self._generation is None:  # pragma: no cover
                    raise KeystoreLockedError()
                master, generation = bytes(self._master), self._generation
            yield master, self._gen_dir(generation)

    # ------------------------------------------------------------------ internals: files

    def _gen_dir(self, generation: int) -> Path:
        return self._root / _gen_name(generation)

    def _generation_of(self, gen_dir: Path) -> int:
        match = _GEN_RE.fullmatch(gen_dir.name)
        assert match is not None
        return int(match.group(1))

    def _archive_path(self, gen_dir: Path, key_id: str, archive_id: str) -> Path:
        return gen_dir / _ARCHIVE / key_id / f"{archive_id}{_SUFFIX}"

    def _io_error(self, operation: str, exc: OSError) -> KeystoreError:
        return KeystoreError(
            f"keystore {operation} failed at {self._root}: {exc.strerror or exc}",
            path=str(self._root),
        )

    def _write(self, path: Path, data: bytes, operation: str) -> None:
        try:
            _files.write_atomic(path, data)
        except OSError as exc:
            raise self._io_error(operation, exc) from None

    def _read_current(self) -> int:
        path = self._root / _CURRENT
        try:
            raw = _files.read_file(path, limit=4096)
        except FileNotFoundError:
            raise NotFoundError("keystore", str(self._root)) from None
        except OSError as exc:
            raise self._io_error("read", exc) from None
        try:
            data = _load_json(raw)
            _check_format(data, "keystore pointer", path)
            match = _GEN_RE.fullmatch(_gen_name(_int(data.get("generation"))))
            if match is None:
                raise ValueError("bad generation")
            return int(match.group(1))
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeystoreError(
                f"keystore pointer {path} is corrupt: {exc}", path=str(path)
            ) from None

    def _write_current(self, generation: int) -> None:
        _files.write_atomic(
            self._root / _CURRENT, _dump({"format": FORMAT_VERSION, "generation": generation})
        )

    def _current_header(self) -> tuple[int, _Header]:
        """The live generation and its header, tolerating a concurrent switch."""
        generation = -1
        for _ in range(3):
            generation = self._read_current()
            try:
                return generation, self._read_header(generation)
            except FileNotFoundError:
                continue  # CURRENT moved on while we read it; try the new one
        raise KeystoreError(
            f"keystore at {self._root} is corrupt: CURRENT names {_gen_name(generation)}, "
            "which does not exist",
            path=str(self._root),
        )

    def _read_header(self, generation: int) -> _Header:
        path = self._gen_dir(generation) / _HEADER
        try:
            raw = _files.read_file(path, limit=65536)
        except FileNotFoundError:
            if not self._gen_dir(generation).is_dir():
                raise
            raise KeystoreError(f"keystore header {path} is missing", path=str(path)) from None
        except OSError as exc:
            raise self._io_error("read", exc) from None
        try:
            data = _load_json(raw)
            _check_format(data, "keystore header", path)
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
            raise KeystoreError(
                f"keystore header {path} is corrupt: {exc}", path=str(path)
            ) from None

    def _write_generation_skeleton(self, generation: int, header: _Header) -> Path:
        gen_dir = self._gen_dir(generation)
        _files.make_private_dir(gen_dir)
        for sub in (_KEYS, _ARCHIVE, _SECRETS):
            _files.make_private_dir(gen_dir / sub)
        _files.write_atomic(gen_dir / _HEADER, header.to_json())
        _files.fsync_dir(self._root)
        return gen_dir

    def _remove_leftovers(self, keep: int | None) -> None:
        """Delete generations other than ``keep`` and temp files (caller holds the lock)."""
        try:
            for name in os.listdir(self._root):
                path = self._root / name
                if name.startswith(_files.TMP_PREFIX):
                    _files.remove_file(path)
                elif _GEN_RE.fullmatch(name) and name != (
                    _gen_name(keep) if keep is not None else None
                ):
                    _log.info("removing leftover %s from an interrupted write", name)
                    _files.remove_tree(path)
            if keep is not None:
                _files.remove_temp_files(self._gen_dir(keep))
            _files.fsync_dir(self._root)
        except OSError as exc:
            _log.warning("could not clean keystore leftovers: %s", exc.strerror or exc)

    def _list_names(self, folder: Path, *, strict: bool = False, dirs: bool = False) -> list[str]:
        """Valid ids of ``<id>.json`` files (or of sub-directories) in ``folder``, sorted.

        With ``strict``, an entry that is neither ours nor a dot-file raises, so a password
        change never silently leaves something behind.
        """
        try:
            entries = os.listdir(folder)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._io_error("read", exc) from None
        names: list[str] = []
        for entry in entries:
            if entry.startswith("."):
                continue
            stem = entry if dirs else entry[: -len(_SUFFIX)] if entry.endswith(_SUFFIX) else ""
            is_dir = (folder / entry).is_dir()
            if stem and _ID_RE.fullmatch(stem) and ".." not in stem and is_dir == dirs:
                names.append(stem)
            elif strict:
                raise KeystoreError(
                    f"unexpected entry {folder / entry} in the keystore; move it away first",
                    path=str(folder / entry),
                )
        return sorted(names)

    # ------------------------------------------------------------------ internals: records

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
        # Plain string joins: this is the hot path of every signature.
        path = os.path.join(self._root, _gen_name(generation), _KEYS, key_id + _SUFFIX)
        try:
            return self._read_record_file(path, key_id, None)
        except FileNotFoundError:
            self._check_generation()
            raise NotFoundError("key", key_id) from None

    def _read_record_file(
        self, path: str | Path, key_id: str, archive_id: str | None
    ) -> _KeyRecord:
        """Parse a key or archived-key file; the ids it claims must match where it lies."""
        where = f" (archive {archive_id})" if archive_id else ""
        try:
            raw = _files.read_file(path, limit=65536)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyIntegrityError(
                key_id, f"cannot be read{where}: {exc.strerror or exc}"
            ) from None
        try:
            data = _load_json(raw)
            _check_format(data, "key file", path)
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
        self, gen_dir: Path, record: _KeyRecord, now: int, reason: Literal["rotated", "removed"]
    ) -> ArchivedKey:
        """Copy ``record`` (still sealed) into the archive; idempotent after a crash."""
        folder = gen_dir / _ARCHIVE / record.key_id
        for existing in self._list_names(folder):
            earlier = self._read_record_file(
                folder / f"{existing}{_SUFFIX}", record.key_id, existing
            )
            if earlier.public_key == record.public_key and earlier.sealed == record.sealed:
                return self._archived_view(earlier)
        archived = record.archived(new_id(), now, reason)
        assert archived.archive_id is not None
        try:
            _files.make_private_dir(folder)
            _files.fsync_dir(folder.parent)
            _files.write_atomic(folder / f"{archived.archive_id}{_SUFFIX}", archived.to_json())
        except OSError as exc:
            raise self._io_error("archive", exc) from None
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

    def _read_secret_file(self, path: Path, name: str) -> _SecretRecord:
        label = f"secret:{name}"
        try:
            raw = _files.read_file(path, limit=_MAX_SECRET_BYTES * 2)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyIntegrityError(label, f"cannot be read: {exc.strerror or exc}") from None
        try:
            data = _load_json(raw)
            _check_format(data, "secret file", path)
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
