"""Storage faults reach the caller as StorageError subclasses that say what happened, and the
history written before the fault is intact once the fault is removed.

Real faults only: a full tmpfs, a read-only mount, a read-only file opened by an unprivileged
process, truncated and corrupted files. Mounting needs root (CAP_SYS_ADMIN); where the suite
cannot mount, those tests are skipped and the others still run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from waiaas import (
    DatabaseCorruptError,
    DatabaseOpenError,
    DatabaseReadOnlyError,
    DiskFullError,
    NotADatabaseError,
    StorageError,
    Wallet,
)
from waiaas.testing import TEST_PASSWORD, FrozenClock, fast_config, local_chains

SOL = 10**9

# faults of the SQLite file and its directory (disk full, read-only, damaged pages)
pytestmark = pytest.mark.sqlite_only


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    """A small tmpfs at ``where`` (skips the test where mounting is not allowed)."""
    if not _mount_tmpfs(where, size):
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _open(db: Path, keystore: Path, clock: FrozenClock) -> Wallet:
    return Wallet.open(
        db,
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=fast_config(keystore_dir=str(keystore)),
        clock=clock,
    )


def _history(db: Path) -> tuple[int, list[tuple[str, str]]]:
    """(audit rows, agents as (id, status)) read with plain sqlite3."""
    conn = sqlite3.connect(db)
    try:
        audit = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        agents = conn.execute("SELECT id, status FROM agents ORDER BY id").fetchall()
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    assert ok == "ok"
    return int(audit), [(str(a), str(s)) for a, s in agents]


def _fill(directory: Path) -> Path:
    """Fill the file system holding ``directory`` until it says ENOSPC."""
    filler = directory / "filler.bin"
    chunk = b"\0" * 65536
    # unbuffered: a buffered file would try to flush its rest again at close() and raise
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError:
            pass
    # the last partial write may have left a few bytes: take them too
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as fh:
        for _ in range(64):
            fh.write(b"\0" * 512)
            fh.flush()
    return filler


def test_disk_full_is_disk_full_and_close_still_locks(tmp_path: Path) -> None:
    """On a full disk every write raises DiskFullError (nothing half-written), close() locks
    the keystore and releases the file without raising, and after space is freed the
    history is all there."""
    clock = FrozenClock()
    with tmpfs(tmp_path / "disk", "4m") as disk:
        db = disk / "wallet.db"
        ks = tmp_path / "keystore"
        wallet = _open(db, ks, clock)
        agent = wallet.create_agent("a", "solana")
        wallet.issue_session(agent.id)
        wallet.checkpoint()
        filler = _fill(disk)
        audit_before, agents_before = _history(db)
        with pytest.raises(StorageError) as caught:
            for i in range(50):  # WAL pages already allocated may absorb the first writes
                clock.advance(1)
                wallet.suspend_agent(agent.id, reason=f"try {i}")
                wallet.resume_agent(agent.id)
        assert isinstance(caught.value, DiskFullError), caught.value
        assert "disk is full" in caught.value.message
        assert caught.value.operation in ("write", "commit", "begin", "read")
        wallet.close()  # must not raise although its last write fails
        assert wallet._keystore.locked
        assert wallet._db.closed
        filler.unlink()
        audit_after, agents_after = _history(db)
        assert audit_after >= audit_before
        assert [a for a, _ in agents_after] == [a for a, _ in agents_before]
        with _open(db, ks, clock) as again:
            info = again.get_agent(agent.id)
            assert info.status in ("ACTIVE", "SUSPENDED")
            assert again._db.integrity_check() == []


def test_read_only_mount_refuses_open_with_read_only_error(tmp_path: Path) -> None:
    """A wallet on a file system remounted read-only: open says read-only, not SQL."""
    clock = FrozenClock()
    with tmpfs(tmp_path / "disk", "8m") as disk:
        db = disk / "wallet.db"
        ks = tmp_path / "keystore"
        with _open(db, ks, clock) as wallet:
            wallet.create_agent("a", "solana")
        audit_before, agents_before = _history(db)
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(disk)], capture_output=True, check=False
        )
        if remount.returncode != 0:
            pytest.skip("cannot remount read-only here")
        with pytest.raises(DatabaseReadOnlyError) as caught:
            _open(db, ks, clock)
        assert "read-only" in caught.value.message
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert _history(db) == (audit_before, agents_before)
        with _open(db, ks, clock) as wallet:
            assert len(wallet.list_agents()) == 1


_AS_NOBODY = textwrap.dedent(
    """
    import os, sys, tempfile
    from waiaas import Wallet, StorageError
    from waiaas.testing import TEST_PASSWORD, fast_config
    # load every module as root first (the interpreter's files may be unreadable to nobody)
    with tempfile.TemporaryDirectory() as warm:
        w = Wallet.open(os.path.join(warm, "w.db"), password=TEST_PASSWORD, config=fast_config())
        w.close()
    os.setgid(65534)
    os.setuid(65534)
    try:
        config = fast_config(keystore_dir=sys.argv[2])
        Wallet.open(sys.argv[1], password=TEST_PASSWORD, config=config)
    except StorageError as exc:
        print(type(exc).__name__, exc.code)
    else:
        print("opened")
    """
)


def test_read_only_file_for_an_unprivileged_process(tmp_path: Path) -> None:
    """A database file the process may read but not write: DatabaseReadOnlyError on open
    (checked as ``nobody``: root may write any file)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    base = Path("/tmp") / f"waiaas-ro-{os.getpid()}-{tmp_path.name}"
    base.mkdir(mode=0o755)
    try:
        db, ks = base / "wallet.db", base / "keystore"
        with _open(db, ks, FrozenClock()) as wallet:
            wallet.create_agent("a", "solana")
        for p in [ks, *ks.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        db.chmod(0o444)
        before = _history(db)
        src = str(Path(__file__).resolve().parents[2] / "src")
        out = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(db), str(ks)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": src, "HOME": "/tmp"},
            timeout=120,
            check=False,
        )
        assert out.stdout.strip() == "DatabaseReadOnlyError STORAGE_READ_ONLY", out.stderr
        db.chmod(0o644)
        assert _history(db) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _make(tmp_path: Path) -> tuple[Path, Path, str]:
    db, ks = tmp_path / "wallet.db", tmp_path / "keystore"
    with _open(db, ks, FrozenClock()) as wallet:
        agent = wallet.create_agent("a", "solana")
        wallet.issue_session(agent.id)
    return db, ks, agent.id


@pytest.mark.parametrize("keep", [100, 4096, 0.5])
def test_truncated_file_is_refused_and_a_restored_copy_opens(tmp_path: Path, keep: float) -> None:
    """A truncated database is refused with a StorageError subclass (corrupt / not a
    database); putting the saved copy back opens with the history intact."""
    db, ks, agent_id = _make(tmp_path)
    saved = tmp_path / "saved.db"
    shutil.copy(db, saved)
    before = _history(db)
    size = db.stat().st_size
    with db.open("r+b") as fh:
        fh.truncate(int(size * keep) if isinstance(keep, float) else keep)
    with pytest.raises((DatabaseCorruptError, NotADatabaseError)) as caught:
        _open(db, ks, FrozenClock())
    assert isinstance(caught.value, StorageError)
    shutil.copy(saved, db)
    assert _history(db) == before
    with _open(db, ks, FrozenClock()) as wallet:
        assert wallet.get_agent(agent_id).name == "a"


def test_damaged_pages_are_corrupt_on_open(tmp_path: Path) -> None:
    """Garbage written over a b-tree page: DatabaseCorruptError on open, not SQLAlchemy."""
    db, ks, _ = _make(tmp_path)
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    with db.open("r+b") as fh:
        for n in (2, 3, 4):
            fh.seek(page * n + 8)
            fh.write(os.urandom(page - 16))
    with pytest.raises(StorageError) as caught:
        _open(db, ks, FrozenClock())
    assert isinstance(caught.value, DatabaseCorruptError | NotADatabaseError), caught.value


def test_bad_json_in_a_stored_document_names_the_table(tmp_path: Path) -> None:
    """A stored JSON document that no longer parses: DatabaseCorruptError naming table and
    column, never JSONDecodeError (and the value itself is not in the message)."""
    db, ks, agent_id = _make(tmp_path)
    with _open(db, ks, FrozenClock()) as wallet:
        conn = sqlite3.connect(db)
        conn.execute(
            "INSERT INTO wallet_state(key, value, updated_at) VALUES ('kill_switch', "
            "'{not json SECRETVALUE', 0) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
        )
        conn.commit()
        conn.close()
        with pytest.raises(DatabaseCorruptError) as caught:
            wallet.kill_switch_state()
        assert caught.value.table == "wallet_state"
        assert "SECRETVALUE" not in caught.value.message
        assert wallet.get_agent(agent_id).name == "a"


def test_invalid_utf8_in_a_text_column_is_corrupt(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in a TEXT column: DatabaseCorruptError, not
    OperationalError('Could not decode to UTF-8')."""
    db, ks, agent_id = _make(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE agents SET name = CAST(x'fffe41' AS TEXT) WHERE id = ?", (agent_id,))
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseCorruptError) as caught:
        _open(db, ks, FrozenClock())  # recovery reads every agent
    assert "UTF-8" in caught.value.message
    assert caught.value.table == "agents"
    assert caught.value.column == "name"


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO at the path is refused at once (opening it for reading would block)."""
    fifo = tmp_path / "wallet.db"
    os.mkfifo(fifo)
    with pytest.raises(DatabaseOpenError, match="not a regular file"):
        Wallet.open(fifo, password=TEST_PASSWORD, config=fast_config())


def test_every_sqlite_result_code_maps_to_a_storage_error() -> None:
    """A StorageError subclass for every SQLite result code the translation knows."""
    from waiaas.db.faults import translate
    from waiaas.errors import DatabaseLockedError, StorageIOError

    def err(code: int, text: str) -> sqlite3.Error:
        exc = sqlite3.OperationalError(text)
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        exc.sqlite_errorname = "X"  # type: ignore[attr-defined]
        return exc

    cases = {
        8: DatabaseReadOnlyError,
        13: DiskFullError,
        11: DatabaseCorruptError,
        26: DatabaseCorruptError,
        5: DatabaseLockedError,
        6: DatabaseLockedError,
        10: StorageIOError,
        10 | (12 << 8): StorageIOError,
        14: DatabaseOpenError,
    }
    for code, kind in cases.items():
        got = translate(err(code, "x"), operation="write", statement="INSERT INTO agents ...")
        assert type(got) is kind, (code, got)
    corrupt = translate(err(11, "malformed"), operation="read", statement="SELECT * FROM policies")
    assert isinstance(corrupt, DatabaseCorruptError) and corrupt.table == "policies"
    assert corrupt.operation == "read"
