"""The file backend of the keystore: one file per record, generations as directories.

Internal module. The layout (all directories 0700, all files 0600, every write atomic)::

    <path>/
      CURRENT                   {"format": 1, "generation": N}: the one live generation
      .lock                     flock serialising writers across processes
      gen-N/
        header.json
        keys/<key_id>.json
        archive/<key_id>/<archive_id>.json
        secrets/<name>.json

A password change writes a complete ``gen-(N+1)`` beside ``gen-N`` and then replaces
``CURRENT`` atomically (the commit point); leftovers are removed on the next open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, Literal

from waiaas.errors import KeystoreError, NotFoundError, WaiaasError
from waiaas.keystore import _files
from waiaas.keystore._backend import ARCHIVE, HEADER, KEYS, SECRETS, Address

__all__ = ["FileBackend"]

FORMAT_VERSION: Final = 1
CURRENT: Final = "CURRENT"
LOCK: Final = ".lock"
HEADER_FILE: Final = "header.json"
SUFFIX: Final = ".json"
GEN_PREFIX: Final = "gen-"
GEN_RE: Final = re.compile(r"gen-([1-9][0-9]{0,17})")
ID_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_-])?")

_log = logging.getLogger("waiaas.keystore")


def gen_name(generation: int) -> str:
    return f"{GEN_PREFIX}{generation}"


def dump(data: dict[str, object]) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=1) + "\n").encode("utf-8")


class FileBackend:
    """Records as files under a keystore directory (see the module docstring)."""

    kind: Literal["file", "database"] = "file"

    def __init__(self, root: Path) -> None:
        self._root = root
        self._current_path = os.path.join(root, CURRENT)  # a str: stat()ed per use
        self._dirlock = _files.DirectoryLock(root / LOCK)

    @property
    def path(self) -> Path | None:
        return self._root

    @property
    def location(self) -> str:
        return str(self._root)

    # ------------------------------------------------------------------ existence

    def exists(self) -> bool:
        return (self._root / CURRENT).is_file()

    def prepare_create(self) -> None:
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

    def create(self, header: bytes) -> None:
        with self._dirlock.hold():
            self._refuse_occupied()  # again, now that no other writer can interfere
            self._remove_leftovers(keep=None)
            try:
                gen_dir = self._gen_dir(1)
                _files.make_private_dir(gen_dir)
                for sub in (KEYS, ARCHIVE, SECRETS):
                    _files.make_private_dir(gen_dir / sub)
                _files.write_atomic(gen_dir / HEADER_FILE, header)
                _files.fsync_dir(self._root)
                self._write_current(1)
            except OSError as exc:
                self._remove_leftovers(keep=None)
                raise self._io_error("create", exc) from None

    def _refuse_occupied(self) -> None:
        root = self._root
        if not root.exists():
            return
        if not root.is_dir():
            raise KeystoreError(
                f"cannot create keystore at {root}: not a directory", path=str(root)
            )
        if (root / CURRENT).exists():
            raise KeystoreError(
                f"a keystore already exists at {root}; use Keystore.open", path=str(root)
            )
        foreign = sorted(
            name
            for name in os.listdir(root)
            if name != LOCK
            and not name.startswith(_files.TMP_PREFIX)
            and not GEN_RE.fullmatch(name)
        )
        if foreign:
            raise KeystoreError(
                f"cannot create keystore in {root}: the directory is not empty "
                f"({', '.join(foreign[:5])})",
                path=str(root),
            )

    def open_existing(self) -> None:
        if not (self._root / CURRENT).is_file():
            raise NotFoundError("keystore", str(self._root))
        self.current_header()
        with self._dirlock.hold(blocking=False) as acquired:
            if acquired:
                self._remove_leftovers(keep=self.current())

    # ------------------------------------------------------------------ generations

    def current(self) -> int:
        path = self._root / CURRENT
        try:
            raw = _files.read_file(path, limit=4096)
        except FileNotFoundError:
            raise NotFoundError("keystore", str(self._root)) from None
        except OSError as exc:
            raise self._io_error("read", exc) from None
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            version = data.get("format")
            if (
                isinstance(version, int)
                and not isinstance(version, bool)
                and version > FORMAT_VERSION
            ):
                raise KeystoreError(
                    f"keystore pointer {path} has format {version}, newer than this waiaas "
                    f"reads ({FORMAT_VERSION}); upgrade waiaas to open it",
                    path=str(path),
                    found=version,
                    known=FORMAT_VERSION,
                )
            if version != FORMAT_VERSION:
                raise ValueError(f"unknown format {version!r}")
            generation = data.get("generation")
            if not isinstance(generation, int) or isinstance(generation, bool):
                raise ValueError("not an integer")
            match = GEN_RE.fullmatch(gen_name(generation))
            if match is None:
                raise ValueError("bad generation")
            return int(match.group(1))
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeystoreError(
                f"keystore pointer {path} is corrupt: {exc}", path=str(path)
            ) from None

    def _write_current(self, generation: int) -> None:
        _files.write_atomic(
            self._root / CURRENT, dump({"format": FORMAT_VERSION, "generation": generation})
        )

    def current_header(self, *, for_change: bool = False) -> tuple[int, bytes, str]:
        """The live generation and its header, tolerating a concurrent switch."""
        generation = -1
        for _ in range(3):
            generation = self.current()
            path = self._gen_dir(generation) / HEADER_FILE
            try:
                raw = _files.read_file(path, limit=65536)
            except FileNotFoundError:
                if self._gen_dir(generation).is_dir():
                    raise KeystoreError(
                        f"keystore header {path} is missing", path=str(path)
                    ) from None
                continue  # CURRENT moved on while we read it; try the new one
            except OSError as exc:
                raise self._io_error("read", exc) from None
            return generation, raw, str(path)
        raise KeystoreError(
            f"keystore at {self._root} is corrupt: CURRENT names {gen_name(generation)}, "
            "which does not exist",
            path=str(self._root),
        )

    def stamp(self) -> object:
        try:
            info = os.stat(self._current_path)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    # ------------------------------------------------------------------ records

    def _gen_dir(self, generation: int) -> Path:
        return self._root / gen_name(generation)

    def _file(self, generation: int, address: Address) -> str:
        if address == HEADER:
            return os.path.join(self._root, gen_name(generation), HEADER_FILE)
        # Plain string joins: reading a key is the hot path of every signature.
        *folders, last = address
        return os.path.join(self._root, gen_name(generation), *folders, last + SUFFIX)

    def label(self, generation: int, address: Address) -> str:
        return self._file(generation, address)

    def read(self, generation: int, address: Address, limit: int) -> bytes:
        return _files.read_file(self._file(generation, address), limit=limit)

    def has(self, generation: int, address: Address) -> bool:
        return os.path.isfile(self._file(generation, address))

    def names(
        self, generation: int, folder: Address, *, strict: bool = False, dirs: bool = False
    ) -> list[str]:
        """Valid ids of ``<id>.json`` files (or of sub-directories) in ``folder``, sorted.

        With ``strict``, an entry that is neither ours nor a dot-file raises, so a password
        change never silently leaves something behind.
        """
        path = self._gen_dir(generation).joinpath(*folder)
        try:
            entries = os.listdir(path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._io_error("read", exc) from None
        found: list[str] = []
        for entry in entries:
            if entry.startswith("."):
                continue
            stem = entry if dirs else entry[: -len(SUFFIX)] if entry.endswith(SUFFIX) else ""
            is_dir = (path / entry).is_dir()
            if stem and ID_RE.fullmatch(stem) and ".." not in stem and is_dir == dirs:
                found.append(stem)
            elif strict:
                raise KeystoreError(
                    f"unexpected entry {path / entry} in the keystore; move it away first",
                    path=str(path / entry),
                )
        return sorted(found)

    # ------------------------------------------------------------------ writes

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        with self._dirlock.hold():
            yield

    def write(self, generation: int, address: Address, data: bytes) -> None:
        target = Path(self._file(generation, address))
        try:
            if address[0] == ARCHIVE:
                _files.make_private_dir(target.parent)
                _files.fsync_dir(target.parent.parent)
            _files.write_atomic(target, data)
        except OSError as exc:
            raise self._io_error("write", exc) from None

    def delete(self, generation: int, address: Address) -> None:
        try:
            _files.remove_file(Path(self._file(generation, address)))
        except OSError as exc:
            raise self._io_error("delete", exc) from None

    def replace_generation(
        self,
        old_generation: int,
        new_generation: int,
        header: bytes,
        records: Sequence[tuple[Address, bytes]],
    ) -> None:
        new_dir = self._gen_dir(new_generation)
        try:
            _files.remove_tree(new_dir)  # a leftover of an earlier interrupted change
            _files.make_private_dir(new_dir)
            for sub in (KEYS, ARCHIVE, SECRETS):
                _files.make_private_dir(new_dir / sub)
            _files.write_atomic(new_dir / HEADER_FILE, header)
            _files.fsync_dir(self._root)
            folders: set[Path] = set()
            for address, data in records:
                target = Path(self._file(new_generation, address))
                if target.parent not in folders and address[0] == ARCHIVE:
                    _files.make_private_dir(target.parent)
                folders.add(target.parent)
                _files.write_atomic(target, data)
            for folder in sorted(folders | {new_dir / s for s in (KEYS, ARCHIVE, SECRETS)}):
                _files.fsync_dir(folder)
            _files.fsync_dir(new_dir)
        except OSError as exc:
            _files.remove_tree(new_dir)
            raise self._io_error("change_password", exc) from None
        except BaseException:
            _files.remove_tree(new_dir)
            raise
        # The commit point: before this rename the old generation is in force, after it
        # the new one.
        try:
            self._write_current(new_generation)
        except BaseException as exc:
            self._abandon_generation(old_generation, new_generation)
            if isinstance(exc, OSError):
                raise self._io_error("change_password", exc) from None
            raise

    def _abandon_generation(self, old_generation: int, new_generation: int) -> None:
        """After a failed switch, delete the new generation unless it did become current."""
        try:
            in_force = self.current()
        except WaiaasError:
            in_force = None
        if in_force == old_generation:
            _files.remove_tree(self._gen_dir(new_generation))

    def drop_generation(self, generation: int) -> None:
        try:
            _files.remove_tree(self._gen_dir(generation))
        except OSError as exc:  # harmless: removed on the next open
            _log.warning("could not remove old generation: %s", exc.strerror or exc)

    # ------------------------------------------------------------------ housekeeping

    def _io_error(self, operation: str, exc: OSError) -> KeystoreError:
        return KeystoreError(
            f"keystore {operation} failed at {self._root}: {exc.strerror or exc}",
            path=str(self._root),
        )

    def _remove_leftovers(self, keep: int | None) -> None:
        """Delete generations other than ``keep`` and temp files (caller holds the lock)."""
        try:
            for name in os.listdir(self._root):
                path = self._root / name
                if name.startswith(_files.TMP_PREFIX):
                    _files.remove_file(path)
                elif GEN_RE.fullmatch(name) and name != (
                    gen_name(keep) if keep is not None else None
                ):
                    _log.info("removing leftover %s from an interrupted write", name)
                    _files.remove_tree(path)
            if keep is not None:
                _files.remove_temp_files(self._gen_dir(keep))
            _files.fsync_dir(self._root)
        except OSError as exc:
            _log.warning("could not clean keystore leftovers: %s", exc.strerror or exc)
