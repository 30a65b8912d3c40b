"""Operations: WAL checkpoints (on demand and in the background) and backups."""

from __future__ import annotations

import calendar
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from waiaas.db import CheckpointResult, Database
from waiaas.errors import DatabaseOpenError, InvalidInputError, StorageError

NOW = 1_750_000_000
TABLES = (
    "agents",
    "sessions",
    "transactions",
    "policies",
    "audit_log",
    "pending_approvals",
    "notification_channels",
    "wallet_state",
)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _write_some(db: Database, rows: Any, n: int = 20) -> None:
    with db.write() as uow:
        agent = uow.agents.add(rows.agent())
        for i in range(n):
            tx = uow.transactions.add(rows.transaction(agent.id, amount=str(10**20 + i)))
            uow.audit.append("TX_REQUESTED", actor="system", now=NOW + i, tx_id=tx.id)
        uow.policies.add(rows.policy(None))
        uow.state.put("kill_switch", {"active": False}, now=NOW)
        uow.commit()


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.01)


def _counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()


@pytest.mark.sqlite_only  # SQLite's WAL checkpoints
def test_checkpoint_truncate_empties_the_wal(db: Database, db_path: Path, rows: Any) -> None:
    """After writes the -wal file has frames; checkpoint TRUNCATE leaves it 0 bytes."""
    _write_some(db, rows)
    assert _wal(db_path).stat().st_size > 0
    result = db.checkpoint("TRUNCATE")
    assert isinstance(result, CheckpointResult)
    assert result.busy == 0
    assert result.log_frames == result.checkpointed == 0  # TRUNCATE resets the log
    assert _wal(db_path).stat().st_size == 0


@pytest.mark.sqlite_only  # SQLite's WAL checkpoints
def test_checkpoint_passive_reports_frames(db: Database, rows: Any) -> None:
    """A PASSIVE checkpoint copies every frame when nobody reads; counts are reported."""
    _write_some(db, rows)
    result = db.checkpoint("PASSIVE")
    assert result.busy == 0
    assert result.log_frames > 0
    assert result.checkpointed == result.log_frames


@pytest.mark.parametrize("mode", ["truncate", "NONE", "TRUNCATE); DROP TABLE agents; --", ""])
def test_checkpoint_refuses_unknown_modes(db: Database, mode: str) -> None:
    """Only PASSIVE/FULL/RESTART/TRUNCATE are accepted (nothing is interpolated blindly)."""
    with pytest.raises(InvalidInputError) as err:
        db.checkpoint(mode)
    assert err.value.field == "mode"


@pytest.mark.sqlite_only  # SQLite's WAL checkpoints
def test_background_checkpointer_shrinks_the_wal(db: Database, db_path: Path, rows: Any) -> None:
    """start_checkpointer(0.05) truncates the WAL after writes, again and again."""
    db.start_checkpointer(interval=0.05)
    for _ in range(2):
        _write_some(db, rows)
        _wait_until(lambda: _wal(db_path).stat().st_size == 0, "the WAL to be truncated")
    db.start_checkpointer(interval=0.05)  # a second start is a no-op
    assert [t.name for t in threading.enumerate()].count("waiaas-checkpoint") == 1


@pytest.mark.sqlite_only  # SQLite's WAL checkpoints
def test_failed_checkpoint_is_logged_and_retried(
    db: Database,
    db_path: Path,
    rows: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A checkpoint that fails is logged as a warning; the next run succeeds."""
    real = Database.checkpoint
    calls: list[str] = []

    def flaky(self: Database, mode: str = "TRUNCATE") -> CheckpointResult:
        calls.append(mode)
        if len(calls) == 1:
            raise StorageError("disk hiccup")
        return real(self, mode)

    monkeypatch.setattr(Database, "checkpoint", flaky)
    caplog.set_level(logging.WARNING, logger="waiaas.db")
    _write_some(db, rows)
    assert _wal(db_path).stat().st_size > 0
    db.start_checkpointer(interval=0.05)
    _wait_until(lambda: len(calls) >= 2, "a second checkpoint attempt")
    _wait_until(lambda: _wal(db_path).stat().st_size == 0, "the retried checkpoint")
    warnings = [r for r in caplog.records if r.name == "waiaas.db"]
    assert warnings[0].levelno == logging.WARNING
    assert "WAL checkpoint failed" in warnings[0].getMessage()
    assert "disk hiccup" in warnings[0].getMessage()
    assert len(warnings) == 1


@pytest.mark.sqlite_only  # SQLite's WAL checkpoints
def test_close_stops_the_checkpointer(db_path: Path) -> None:
    """close() stops the background thread; stop_checkpointer() alone does too."""
    db = Database.open(db_path)
    db.start_checkpointer(interval=0.05)
    assert any(t.name == "waiaas-checkpoint" for t in threading.enumerate())
    db.stop_checkpointer()
    assert not any(t.name == "waiaas-checkpoint" for t in threading.enumerate())
    db.start_checkpointer(interval=0.05)
    assert any(t.name == "waiaas-checkpoint" for t in threading.enumerate())
    db.close()
    assert not any(t.name == "waiaas-checkpoint" for t in threading.enumerate())


@pytest.mark.parametrize("interval", [0, -1.0])
def test_checkpointer_interval_must_be_positive(db: Database, interval: float) -> None:
    """A non-positive interval raises InvalidInputError."""
    with pytest.raises(InvalidInputError):
        db.start_checkpointer(interval=interval)


@pytest.mark.sqlite_only  # backups of the SQLite file
def test_backup_is_a_timestamped_copy_that_opens(db: Database, db_path: Path, rows: Any) -> None:
    """backup() writes <stem>-<UTC stamp>.db next to the db; it opens with the same rows."""
    _write_some(db, rows)
    before = time.time()
    target = db.backup()
    assert target.parent == db_path.parent
    match = re.fullmatch(r"wallet-(\d{8}T\d{12})Z\.db", target.name)
    assert match is not None
    stamp = calendar.timegm(time.strptime(match.group(1)[:15], "%Y%m%dT%H%M%S"))
    assert before - 5 <= stamp <= time.time() + 5
    assert _counts(target) == _counts(db_path)
    assert _counts(target)["transactions"] == 20
    copy = Database.open(target)
    try:
        with copy.read() as uow:
            assert uow.audit.count() == 20
            assert uow.state.get("kill_switch") == {"active": False}
    finally:
        copy.close()
    second = db.backup()
    assert second != target and second.is_file()


@pytest.mark.sqlite_only  # backups of the SQLite file
def test_backup_into_another_directory(db: Database, tmp_path: Path, rows: Any) -> None:
    """backup(directory) writes there; a missing directory raises DatabaseOpenError."""
    _write_some(db, rows)
    where = tmp_path / "backups"
    where.mkdir()
    target = db.backup(where)
    assert target.parent == where
    assert _counts(target) == _counts(db.path)
    with pytest.raises(DatabaseOpenError):
        db.backup(tmp_path / "missing")


@pytest.mark.sqlite_only  # backups of the SQLite file
def test_hostile_paths_are_used_literally(tmp_path: Path, rows: Any) -> None:
    """Quotes, semicolons and spaces in the db path and backup dir inject nothing."""
    home = tmp_path / "x'); DROP TABLE agents; --"
    home.mkdir()
    path = home / 'my "wallet"; it\'s.db'
    backups = tmp_path / "back'ups \"; DROP TABLE audit_log; --"
    backups.mkdir()
    db = Database.open(path)
    try:
        _write_some(db, rows)
        target = db.backup(backups)
        same_dir = db.backup()
    finally:
        db.close()
    assert target.parent == backups
    assert target.name.startswith('my "wallet"; it\'s-')
    assert same_dir.parent == home
    for copy in (path, target, same_dir):
        counts = _counts(copy)
        assert counts["agents"] == 1 and counts["audit_log"] == 20, copy
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([home.name, backups.name])
