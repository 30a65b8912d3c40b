"""File primitives of the keystore: private directories, atomic writes, no-follow reads, lock.

Internal module. Every file is written as: a temporary file in the same directory (mode
0600, ``O_EXCL``), write, ``fsync``, ``os.replace`` onto the final name, ``fsync`` of the
directory. A reader therefore sees the old file or the new one, never a mix, and a crash
leaves at most a ``.tmp-*`` file behind, which the keystore removes when it is next opened.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

TMP_PREFIX: Final = ".tmp-"
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
MAX_FILE_BYTES: Final = 4 << 20

_POSIX = os.name == "posix"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (create, rename, unlink) to disk. No-op off POSIX."""
    if not _POSIX:
        return
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (if missing) with mode 0700 and make sure the mode is 0700."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not path.is_dir() or path.is_symlink():
            raise
    if _POSIX:
        os.chmod(path, DIR_MODE)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file gets mode 0600."""
    directory = path.parent
    tmp = directory / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
    fd = os.open(tmp, flags, FILE_MODE)
    try:
        try:
            if _POSIX:
                os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def read_file(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a regular file without following a symlink at its last component.

    Raises:
        FileNotFoundError: no such file.
        OSError: a symlink, not a regular file, larger than ``limit``, or unreadable.
    """
    fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{os.path.basename(path)} is not a regular file")
        if info.st_size > limit:
            raise OSError(f"{os.path.basename(path)} is larger than {limit} bytes")
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(f"{os.path.basename(path)} is larger than {limit} bytes")
    return data


def remove_file(path: Path) -> None:
    """Unlink ``path`` (missing is fine) and flush the directory."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fsync_dir(path.parent)


def remove_tree(path: Path) -> None:
    """Delete a directory tree (missing is fine)."""
    if path.is_symlink():
        os.unlink(path)
        return
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def remove_temp_files(directory: Path) -> int:
    """Delete ``.tmp-*`` leftovers of interrupted writes under ``directory``; return how many."""
    removed = 0
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
        for name in files:
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(root, name))
                    removed += 1
    return removed


class DirectoryLock:
    """An exclusive lock serialising writers of one keystore directory.

    In one process a re-entrant thread lock; across processes an ``flock`` on a ``.lock``
    file (POSIX only; elsewhere only the thread lock applies). The OS releases the ``flock``
    when the holder dies, so a killed writer never leaves the keystore locked.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(self, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock for the block; yields ``False`` if ``blocking=False`` and it is busy."""
        if not self._thread_lock.acquire(blocking=blocking):
            yield False
            return
        try:
            if self._depth == 0 and not self._acquire_file(blocking):
                yield False
                return
            self._depth += 1
            try:
                yield True
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release_file()
        finally:
            self._thread_lock.release()

    def _acquire_file(self, blocking: bool) -> bool:
        if not _POSIX:
            return True
        import fcntl

        flags = os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC
        fd = os.open(self._path, flags, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def _release_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock
