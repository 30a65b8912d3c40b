"""The audit log: append-only in the database, default severities, queries and paging."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update

from waiaas.db import Database
from waiaas.db.tables import AuditRow
from waiaas.errors import StorageError
from waiaas.types import AuditEvent, Severity

NOW = 1_750_000_000

# CORE-02 §2.5's event list with its severities (waiaas adds more events; all default info
# unless types.py says otherwise).
SPEC_SEVERITIES = {
    "AGENT_CREATED": "info",
    "AGENT_ACTIVATED": "info",
    "AGENT_SUSPENDED": "warning",
    "AGENT_TERMINATED": "info",
    "SESSION_ISSUED": "info",
    "SESSION_REVOKED": "info",
    "SESSION_EXPIRED": "info",
    "TX_REQUESTED": "info",
    "TX_QUEUED": "info",
    "TX_SUBMITTED": "info",
    "TX_CONFIRMED": "info",
    "TX_FAILED": "warning",
    "TX_CANCELLED": "info",
    "POLICY_VIOLATION": "warning",
    "POLICY_UPDATED": "info",
    "KEYSTORE_UNLOCKED": "info",
    "KEYSTORE_LOCKED": "info",
    "KEY_ROTATED": "info",
    "KILL_SWITCH_ACTIVATED": "critical",
    "DAEMON_STARTED": "info",
    "DAEMON_STOPPED": "info",
    "AUTH_FAILED": "warning",
    "RATE_LIMIT_EXCEEDED": "warning",
}


def _append_some(db: Database) -> list[int]:
    with db.write() as uow:
        ids = [
            uow.audit.append(AuditEvent.AGENT_CREATED, actor="owner", now=NOW, agent_id="a1"),
            uow.audit.append(
                AuditEvent.TX_FAILED,
                actor="system",
                now=NOW + 1,
                agent_id="a1",
                tx_id="t1",
                details={"error": "boom", "amount": 10**30},
                ip_address="127.0.0.1",
            ),
        ]
        uow.commit()
    return ids


def test_update_and_delete_fail_through_sqlalchemy(db: Database) -> None:
    """UPDATE and DELETE of audit rows abort with 'append-only'; rows stay as they were."""
    _append_some(db)
    for stmt in (
        update(AuditRow).values(actor="attacker"),
        delete(AuditRow),
        delete(AuditRow).where(AuditRow.event_type == "TX_FAILED"),  # type: ignore[arg-type]
    ):
        with pytest.raises(StorageError, match="audit_log is append-only"), db.write() as uow:
            uow.session.execute(stmt)
    with pytest.raises(StorageError, match="append-only"), db.write() as uow:
        newest = uow.audit.query(limit=1)[0]
        row = uow.session.get(AuditRow, newest.id)
        uow.session.delete(row)
        uow.session.flush()
    with db.read() as uow:
        assert [(r.actor, r.event_type) for r in uow.audit.query()] == [
            ("system", "TX_FAILED"),
            ("owner", "AGENT_CREATED"),
        ]


@pytest.mark.sqlite_only  # a plain sqlite3 client on the file
def test_update_and_delete_fail_through_raw_sqlite(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection]
) -> None:
    """A plain sqlite3 client cannot rewrite or erase history either."""
    _append_some(db)
    raw = raw_connect(db_path)
    for sql in (
        "UPDATE audit_log SET severity = 'info'",
        "UPDATE audit_log SET details = '{}' WHERE id = 1",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = 2",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="audit_log is append-only"):
            raw.execute(sql)
    raw.rollback()
    assert raw.execute("SELECT count(*) FROM audit_log").fetchone() == (2,)


@pytest.mark.sqlite_only  # a plain sqlite3 client on the file
@pytest.mark.parametrize(
    "sql",
    [
        "INSERT OR REPLACE INTO audit_log (id, timestamp, event_type, actor, details)"
        " VALUES (1, 0, 'FORGED', 'x', '{}')",
        "REPLACE INTO audit_log (id, timestamp, event_type, actor, details)"
        " VALUES (2, 0, 'FORGED', 'x', '{}')",
        "INSERT INTO audit_log (id, timestamp, event_type, actor, details)"
        " VALUES (1, 0, 'FORGED', 'x', '{}') ON CONFLICT (id) DO UPDATE SET actor = 'x'",
    ],
)
def test_replace_and_upsert_cannot_overwrite_a_row(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection], sql: str
) -> None:
    """REPLACE (which skips DELETE triggers) and upserts on an existing id are refused."""
    _append_some(db)
    raw = raw_connect(db_path)
    before = raw.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    with pytest.raises(sqlite3.IntegrityError, match="audit_log is append-only"):
        raw.execute(sql)
    raw.rollback()
    assert raw.execute("SELECT * FROM audit_log ORDER BY id").fetchall() == before


@pytest.mark.sqlite_only  # a plain sqlite3 client on the file
def test_new_ids_may_still_be_given_explicitly(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection]
) -> None:
    """The no-replace trigger only refuses ids that exist; a fresh explicit id is fine."""
    _append_some(db)
    raw = raw_connect(db_path)
    with raw:
        raw.execute(
            "INSERT INTO audit_log (id, timestamp, event_type, actor, details)"
            " VALUES (100, 0, 'DAEMON_STARTED', 'cli', '{}')"
        )
    with db.write() as uow:
        assert uow.audit.append(AuditEvent.DAEMON_STOPPED, actor="cli", now=NOW) == 101
        uow.commit()


@pytest.mark.sqlite_only  # a plain sqlite3 client on the file
def test_appended_row_is_stored_as_given(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection]
) -> None:
    """append() stores every field; details is canonical JSON; big ints are exact."""
    ids = _append_some(db)
    assert ids == [1, 2]
    raw = raw_connect(db_path)
    cols = "id, timestamp, event_type, actor, agent_id, session_id, tx_id, details, severity, "
    assert raw.execute(f"SELECT {cols} ip_address FROM audit_log WHERE id = 2").fetchone() == (
        2,
        NOW + 1,
        "TX_FAILED",
        "system",
        "a1",
        None,
        "t1",
        '{"amount":1000000000000000000000000000000,"error":"boom"}',
        "warning",
        "127.0.0.1",
    )


def test_spec_event_severities_are_the_defaults() -> None:
    """Every event CORE-02 §2.5 lists exists with the severity the spec gives it."""
    for name, severity in SPEC_SEVERITIES.items():
        assert AuditEvent(name).default_severity == Severity(severity), name


@pytest.mark.sqlite_only  # a plain sqlite3 client on the file
def test_writer_covers_every_event_with_its_default_severity(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection]
) -> None:
    """Each AuditEvent appends with its default severity; an explicit one overrides it."""
    with db.write() as uow:
        for event in AuditEvent:
            uow.audit.append(event, actor="system", now=NOW)
        uow.audit.append(AuditEvent.DAEMON_STARTED, actor="cli", now=NOW, severity="critical")
        uow.commit()
    raw = raw_connect(db_path)
    stored = raw.execute("SELECT event_type, severity FROM audit_log ORDER BY id").fetchall()
    assert stored[:-1] == [(str(e), str(e.default_severity)) for e in AuditEvent]
    assert stored[-1] == ("DAEMON_STARTED", "critical")


def test_invalid_severity_is_refused(db: Database) -> None:
    """The severity CHECK constraint refuses anything but info/warning/critical."""
    with pytest.raises(StorageError, match=r"(?i)check"), db.write() as uow:
        uow.audit.append("X", actor="system", now=NOW, severity="fatal")


@pytest.fixture
def history(db: Database) -> list[dict[str, Any]]:
    """300 audit rows over 3 agents, 4 event types, 3 severities, a few transactions;
    timestamps not in id order (clock jitter) and many rows sharing a timestamp."""
    rng = random.Random(42)
    events = ["TX_REQUESTED", "TX_CONFIRMED", "AUTH_FAILED", "KILL_SWITCH_ACTIVATED"]
    written: list[dict[str, Any]] = []
    with db.write() as uow:
        for i in range(300):
            row: dict[str, Any] = {
                "agent_id": rng.choice(["a1", "a2", None]),
                "now": NOW + rng.randrange(0, 100),  # clock jitter: not monotonic in id
                "event": rng.choice(events),
                "severity": rng.choice(["info", "warning", "critical"]),
                "tx_id": rng.choice(["t1", "t2", "t3", None, None, None]),
            }
            row["id"] = uow.audit.append(
                row["event"],
                actor="system",
                now=row["now"],
                agent_id=row["agent_id"],
                tx_id=row["tx_id"],
                severity=row["severity"],
                details={"i": i},
            )
            written.append(row)
        uow.commit()
    return written


# Every filter shape the query supports (alone and combined), with the rows it must match.
SHAPES: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda r: True),
    ({"agent_id": "a1"}, lambda r: r["agent_id"] == "a1"),
    ({"since": NOW + 20, "until": NOW + 40}, lambda r: NOW + 20 <= r["now"] <= NOW + 40),
    ({"since": NOW + 30}, lambda r: r["now"] >= NOW + 30),
    ({"until": NOW + 50}, lambda r: r["now"] <= NOW + 50),
    ({"event_types": ["AUTH_FAILED"]}, lambda r: r["event"] == "AUTH_FAILED"),
    (
        {"event_types": ["AUTH_FAILED", "KILL_SWITCH_ACTIVATED", "AUTH_FAILED"]},
        lambda r: r["event"] in ("AUTH_FAILED", "KILL_SWITCH_ACTIVATED"),
    ),
    ({"severities": ["critical"]}, lambda r: r["severity"] == "critical"),
    (
        {"severities": ["warning", "critical"]},
        lambda r: r["severity"] in ("warning", "critical"),
    ),
    ({"severities": ["info"]}, lambda r: r["severity"] == "info"),
    ({"severities": ["info", "critical"]}, lambda r: r["severity"] in ("info", "critical")),
    ({"severities": ["critical", "info", "warning"]}, lambda r: True),
    ({"tx_id": "t2"}, lambda r: r["tx_id"] == "t2"),
    (
        {"agent_id": "a2", "event_types": ["TX_REQUESTED", "TX_CONFIRMED"]},
        lambda r: r["agent_id"] == "a2" and r["event"].startswith("TX_"),
    ),
    (
        {"agent_id": "a1", "severities": ["warning"]},
        lambda r: r["agent_id"] == "a1" and r["severity"] == "warning",
    ),
    (
        {"agent_id": "a1", "severities": ["info"]},
        lambda r: r["agent_id"] == "a1" and r["severity"] == "info",
    ),
    (
        {"agent_id": "a2", "since": NOW + 5, "until": NOW + 90},
        lambda r: r["agent_id"] == "a2" and NOW + 5 <= r["now"] <= NOW + 90,
    ),
    (
        {"agent_id": "a1", "until": NOW + 50, "event_types": ["AUTH_FAILED"]},
        lambda r: r["agent_id"] == "a1" and r["now"] <= NOW + 50 and r["event"] == "AUTH_FAILED",
    ),
    (
        {"agent_id": "a2", "since": NOW + 10, "severities": ["critical", "warning"]},
        lambda r: r["agent_id"] == "a2" and r["now"] >= NOW + 10 and r["severity"] != "info",
    ),
    (
        {"since": NOW + 10, "until": NOW + 70, "event_types": ["TX_CONFIRMED"]},
        lambda r: NOW + 10 <= r["now"] <= NOW + 70 and r["event"] == "TX_CONFIRMED",
    ),
    (
        {"until": NOW + 60, "severities": ["warning"]},
        lambda r: r["now"] <= NOW + 60 and r["severity"] == "warning",
    ),
    (
        {"event_types": ["AUTH_FAILED"], "severities": ["critical"]},
        lambda r: r["event"] == "AUTH_FAILED" and r["severity"] == "critical",
    ),
    (
        {"agent_id": "a1", "event_types": ["TX_REQUESTED"], "severities": ["warning"]},
        lambda r: (
            r["agent_id"] == "a1" and r["event"] == "TX_REQUESTED" and r["severity"] == "warning"
        ),
    ),
    (
        {"tx_id": "t1", "agent_id": "a2", "since": NOW + 20},
        lambda r: r["tx_id"] == "t1" and r["agent_id"] == "a2" and r["now"] >= NOW + 20,
    ),
]


def _newest_first(
    history: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]
) -> list[int]:
    rows = sorted((r for r in history if keep(r)), key=lambda r: (r["now"], r["id"]), reverse=True)
    return [r["id"] for r in rows]


@pytest.mark.parametrize(("filters", "keep"), SHAPES, ids=[repr(f) for f, _ in SHAPES])
def test_query_filters(
    db: Database,
    history: list[dict[str, Any]],
    filters: dict[str, Any],
    keep: Callable[[dict[str, Any]], bool],
) -> None:
    """query() returns exactly the matching rows, newest first by (timestamp, id)."""
    with db.read() as uow:
        got = [r.id for r in uow.audit.query(**filters, limit=1000)]
    expected = _newest_first(history, keep)
    assert expected  # every shape matches something here
    assert got == expected


def test_agent_time_range_is_newest_timestamp_first(
    db: Database, history: list[dict[str, Any]]
) -> None:
    """CORE-02 §5.4 #3 (agent_range) is the same query: newest timestamp first, then id."""
    with db.read() as uow:
        got = uow.audit.query(agent_id="a1", since=NOW + 10, until=NOW + 80, limit=1000)
        by_range = uow.audit.agent_range("a1", NOW + 10, NOW + 80, limit=1000)
    expected = _newest_first(
        history, lambda r: r["agent_id"] == "a1" and NOW + 10 <= r["now"] <= NOW + 80
    )
    assert [r.id for r in got] == expected
    assert [r.id for r in by_range] == expected


@pytest.mark.parametrize(("filters", "keep"), SHAPES, ids=[repr(f) for f, _ in SHAPES])
@pytest.mark.parametrize("page", [1, 7, 100])
def test_cursor_pages_through_everything_exactly_once(
    db: Database,
    history: list[dict[str, Any]],
    filters: dict[str, Any],
    keep: Callable[[dict[str, Any]], bool],
    page: int,
) -> None:
    """limit + before_id (last id of the previous page) visits every match exactly once, in
    order, although many rows share a timestamp and timestamps do not follow ids."""
    seen: list[int] = []
    with db.read() as uow:
        cursor: int | None = None
        while True:
            rows = uow.audit.query(**filters, limit=page, before_id=cursor)
            assert len(rows) <= page
            if not rows:
                break
            seen.extend(r.id for r in rows if r.id is not None)
            cursor = rows[-1].id
    assert seen == _newest_first(history, keep)


def test_a_cursor_that_names_no_row_ends_the_paging(
    db: Database, history: list[dict[str, Any]]
) -> None:
    """A cursor is the id of a row of a previous page; one naming no row yields nothing
    (rather than a page from an arbitrary place)."""
    with db.read() as uow:
        assert uow.audit.query(before_id=10_000) == []
        assert uow.audit.query(agent_id="a1", before_id=0) == []
        assert uow.audit.query(before_id=history[5]["id"])  # a real one still pages


def test_count(db: Database, history: list[dict[str, Any]]) -> None:
    """count() agrees with the rows written, with and without filters."""
    with db.read() as uow:
        assert uow.audit.count() == 300
        assert uow.audit.count(agent_id="a1") == sum(r["agent_id"] == "a1" for r in history)
        assert uow.audit.count(event_type="AUTH_FAILED") == sum(
            r["event"] == "AUTH_FAILED" for r in history
        )
        assert uow.audit.count(since=NOW + 50) == sum(r["now"] >= NOW + 50 for r in history)


@pytest.mark.sqlite_only  # a plain sqlite3 client on the file
def test_an_agents_own_actor_is_stored_short_and_read_back_whole(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection]
) -> None:
    """``agent:<id>`` on a row of that agent is stored as ``""`` (the id is the row's
    ``agent_id``) and every query reads it back whole; any other actor (another agent's,
    a bare ``agent``, one given by a caller) is stored as given; a row of the long form
    (written before) reads the same; the chain covers what is stored."""
    from waiaas.db.chain import row_digest
    from waiaas.integrity import walk_chain

    with db.write() as uow:
        uow.audit.append(AuditEvent.TX_REQUESTED, actor="agent:a1", now=NOW, agent_id="a1")
        uow.audit.append(AuditEvent.TX_CANCELLED, actor="agent:a2", now=NOW + 1, agent_id="a1")
        uow.audit.append(AuditEvent.POLICY_VIOLATION, actor="agent", now=NOW + 2)
        uow.audit.append(AuditEvent.POLICY_UPDATED, actor="agent", now=NOW + 3, agent_id="a1")
        with pytest.raises(ValueError, match="actor"):
            uow.audit.append(AuditEvent.POLICY_UPDATED, actor="", now=NOW, agent_id="a1")
        uow.commit()
    raw = raw_connect(db_path)
    stored = [r[0] for r in raw.execute("SELECT actor FROM audit_log ORDER BY id")]
    assert stored == ["", "agent:a2", "agent", "agent"]
    # a row as the previous version wrote it: the long form, chained to the last row
    (prev,) = raw.execute("SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    values = (NOW + 4, "TX_REQUESTED", "agent:a1", "a1", None, None, "{}", "info", None)
    with raw:
        raw.execute(
            "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, session_id, tx_id, "
            "details, severity, ip_address, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, row_digest(prev, values)),
        )
    assert walk_chain(raw, None).broken is None
    expected = ["agent:a1", "agent:a2", "agent", "agent", "agent:a1"]
    with db.read() as uow:
        assert [r.actor for r in sorted(uow.audit.query(), key=lambda r: r.id)] == expected
        mine = uow.audit.query(agent_id="a1", event_types=["TX_REQUESTED"])
        assert [r.actor for r in mine] == ["agent:a1", "agent:a1"]


# ------------------------------------------------------------ appends: prepared statements


def _entries(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "event": AuditEvent.TX_REQUESTED,
            "actor": "agent:a1" if i % 2 else "system",
            "now": NOW + i,
            "agent_id": "a1",
            "tx_id": f"t{i}",
            "details": {"n": i, "skip": None},
        }
        for i in range(start, start + n)
    ]


@pytest.mark.sqlite_only  # a plain sqlite3 client on the file
@pytest.mark.parametrize("count", [2, 3, 600])
def test_append_all_chains_rows_in_order_in_batches(
    db: Database, db_path: Path, raw_connect: Callable[..., sqlite3.Connection], count: int
) -> None:
    """Rows appended together (more than one INSERT's worth too) take ascending ids in the
    order given, chain after the rows before them, and store 32-byte digests that read back
    as hex."""
    from waiaas.db.chain import GENESIS_BYTES, row_digest
    from waiaas.integrity import walk_chain

    with db.write() as uow:
        first = uow.audit.append(AuditEvent.AGENT_CREATED, actor="owner", now=NOW)
        ids = uow.audit.append_all(_entries(count))
        last = uow.audit.append(AuditEvent.AGENT_CREATED, actor="owner", now=NOW)
        uow.commit()
    assert ids == list(range(first + 1, first + 1 + count)) and last == ids[-1] + 1
    raw = raw_connect(db_path)
    walk = walk_chain(raw, None)
    assert walk.broken is None and walk.rows == count + 2
    stored = raw.execute(
        "SELECT timestamp, event_type, actor, agent_id, session_id, tx_id, details, severity, "
        "ip_address, prev_hash, row_hash, mac FROM audit_log ORDER BY id"
    ).fetchall()
    prev = GENESIS_BYTES
    for row in stored:
        assert row[9] is None and row[11] is None  # no link stored; no key: no MAC
        assert isinstance(row[10], bytes) and row[10] == row_digest(prev, list(row[:9]))
        prev = row[10]
    assert stored[1][6] == '{"n":0}'  # None values left out, compact, sorted keys
    with db.read() as uow:
        records = {r.id: r for r in uow.audit.query(limit=1000)}
    assert records[ids[-1]].row_hash == stored[-2][10].hex()
    assert records[ids[0]].actor == "system" and records[ids[1]].actor == "agent:a1"


def test_rows_that_took_their_ids_out_of_order_fail_the_unit_of_work(db: Database) -> None:
    """Where the INSERT returns ids, rows whose ids do not follow the order they were
    chained in (as a database assigning ids out of order would give) are refused: the unit
    of work fails and nothing is kept."""
    with db.write() as uow:
        uow.audit.append(AuditEvent.AGENT_CREATED, actor="owner", now=NOW)
        uow.commit()
    with db.write() as uow:
        real = uow.audit.run_dbapi
        assert real is not None

        def swapped(sql: str, params: Any) -> Any:
            count, rows, last = real(sql, params)
            if "RETURNING id, row_hash" not in sql:
                pytest.skip("this SQLite returns no ids from an INSERT")
            (a, ha), (b, hb) = sorted(rows)
            return count, [(a, hb), (b, ha)], last

        uow.audit.run_dbapi = swapped
        with pytest.raises(StorageError, match="out of order"):
            uow.audit.append_all(_entries(2))
    with db.read() as uow:
        assert uow.audit.count() == 1


def test_append_errors_are_storage_errors(db: Database, db_path: Path) -> None:
    """A prepared append that the database refuses leaves as a StorageError (here: an
    INSERT naming an id that exists, which the append-only trigger aborts)."""
    with db.write() as uow:
        uow.audit.append(AuditEvent.AGENT_CREATED, actor="owner", now=NOW)
        uow.commit()
    with db.write() as uow, pytest.raises(StorageError):
        uow.run_dbapi(
            "INSERT INTO audit_log (id, timestamp, event_type, actor, details) "
            "VALUES (1, 0, 'X', 'a', '{}')",
            (),
        )
