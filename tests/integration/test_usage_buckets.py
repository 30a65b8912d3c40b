"""Usage buckets (migration 0009) against the row-by-row computation, on real SQLite files
and on fresh PostgreSQL schemas (the plpgsql triggers, see :data:`waiaas.db.usage.PG_DDL`).

``load_usage`` reads the hourly buckets the triggers keep plus the rows of each window's first
hour; ``_scan_usage`` (the computation it replaced) reads every row of the windows. Random
histories of inserts, denials, failures, cancellations, confirmations, expiries, refusals and
dry runs, with the clock moving forward and backward, must give the same Usage, with and
without the wallet's integrity key, through read and write units of work.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.pg_schema import create_schema, drop_schema, schema_url
from tests.support.rawdb import RawDb, raw_connect
from waiaas.db import Database, UnitOfWork
from waiaas.db import usage as usage_db
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.ids import new_id
from waiaas.integrity import Integrity
from waiaas.policy.model import DAY, WEEK
from waiaas.services import policies
from waiaas.services.policies import _scan_usage, load_usage
from waiaas.types import AuditEvent

NOW = 1_780_000_000
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
EVM_TOKEN = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
STATUSES = (
    "PENDING",
    "QUEUED",
    "EXECUTING",
    "SUBMITTED",
    "CONFIRMED",
    "FAILED",
    "CANCELLED",
    "EXPIRED",
)


def make_integrity() -> Integrity:
    return Integrity(
        mac_key=os.urandom(32),
        signing_seed=os.urandom(32),
        wallet_id="test-wallet",
        anchor=(0, "0" * 64),
        head_path=None,
        checkpoint_rows=10**9,
    )


def add_agent(db: Database) -> str:
    agent_id = new_id()
    with db.write() as uow:
        uow.agents.add(
            AgentRow(
                id=agent_id,
                name=f"agent-{agent_id[-6:]}",
                chain="solana",
                network="devnet",
                public_key=f"pk-{agent_id}",
                status="ACTIVE",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        uow.commit()
    return agent_id


def check(uow: UnitOfWork, agent: str, now: int, windows: set[int], exclude: str = "") -> None:
    ordered = sorted(windows | {DAY, WEEK})
    got = load_usage(uow, agent, now, windows, exclude_tx_id=exclude or None)
    want = _scan_usage(uow, agent, now, ordered, exclude)
    assert got == want


# --------------------------------------------------------------------------- strategies

amounts = st.one_of(
    st.integers(0, 10**12),
    st.integers(0, 2**256 - 1),
    st.sampled_from([0, 1, 10**9 - 1, 10**9, 10**18, 2**64, 2**256 - 1, 10**81 - 1]),
)
# texts Python's json module reads but SQLite's json_valid and PostgreSQL's jsonb refuse:
# nothing in them may count, in the buckets or in the rows
NOT_JSON_BUT_NEARLY = [
    '{"native": "5", "x": NaN}',
    '{"native": "5", "x": -Infinity}',
    '{"native": "5", "x": "\\u0000"}',
]
# "²" and "①" are digits to str.isdigit but no number to int(): they count nowhere
odd_values = st.sampled_from(
    [
        *("", "12a", "-5", "٣", "²", "①", "1" * 82, "0" * 90 + "7", " 5", "5.0"),
        *(7, None, True, [1], {"a": "1"}),
    ]
)
spends = st.one_of(
    st.dictionaries(
        st.sampled_from(["native", TOKEN, EVM_TOKEN, EVM_TOKEN.lower(), f" {TOKEN}"]),
        amounts.map(str),
        max_size=3,
    ),
    st.dictionaries(st.sampled_from(["native", TOKEN]), odd_values, min_size=1, max_size=2),
    st.just(None),  # an older row without the spend column: read from its request/asset
    st.sampled_from(["not json", "[1, 2]", '"5"', "{}", *NOT_JSON_BUT_NEARLY]),
)
ops = st.one_of(
    st.tuples(st.just("insert"), st.sampled_from(STATUSES), spends, st.integers(-5000, 5000)),
    st.tuples(st.just("deny"), spends),
    st.tuples(
        st.just("status"),
        st.integers(0, 10**6),
        st.sampled_from(["CONFIRMED", "FAILED", "CANCELLED", "EXPIRED", "SUBMITTED"]),
        st.sampled_from([None, "reverted", "POLICY_DENIED", "TAMPER_DETECTED"]),
    ),
    st.tuples(st.just("spend"), st.integers(0, 10**6), spends),
    st.tuples(st.just("move"), st.integers(0, 10**6)),
    st.tuples(
        st.just("audit"),
        st.sampled_from(
            [AuditEvent.REQUEST_REFUSED, AuditEvent.DRY_RUN, AuditEvent.POLICY_VIOLATION]
        ),
        st.booleans(),
    ),
    st.tuples(
        st.just("clock"),
        st.one_of(
            st.integers(1, 4000),
            st.integers(3000, 3 * DAY),
            st.integers(-2 * DAY, -1),
            st.sampled_from([WEEK, -WEEK, 3600, -3600, DAY + 1]),
        ),
    ),
    st.tuples(st.just("check"), st.sets(st.sampled_from([1, 60, 3599, 3600, 7200, 86_401]))),
)


def stored_spend(spend: Any) -> str | None:
    if spend is None or isinstance(spend, str):
        return spend
    return json.dumps(spend)


def tx_row(agent: str, created: int, status: str, spend: Any, error: str | None = None) -> Any:
    meta = {"request": {"type": "TRANSFER", "to": "x" * 32, "amount": "7"}, "asset": TOKEN}
    return TransactionRow(
        id=new_id(),
        agent_id=agent,
        chain="solana",
        type="TRANSFER",
        amount="7",
        status=status,
        created_at=created,
        error=error,
        metadata_json=json.dumps(meta),
        spend=stored_spend(spend),
    )


Opener = Callable[[], Database]


@pytest.fixture(scope="module")
def sqlite_opener(tmp_path_factory: pytest.TempPathFactory) -> Opener:
    """Opens a new SQLite file per call."""
    workdir = tmp_path_factory.mktemp("usage")
    return lambda: Database.open(workdir / f"{new_id()}.db")


@pytest.fixture(scope="module")
def postgresql_opener(postgres_url: str) -> Iterator[Opener]:
    """Opens a new PostgreSQL schema of its own per call (all dropped at the end)."""
    schemas: list[str] = []

    def open_pg() -> Database:
        schemas.append(create_schema(postgres_url, prefix="usage"))
        return Database.open(schema_url(postgres_url, schemas[-1]))

    try:
        yield open_pg
    finally:
        for name in schemas:
            drop_schema(postgres_url, name)


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def new_db(request: pytest.FixtureRequest) -> Opener:
    """Opens a new, empty wallet database per call, on each backend in turn."""
    opener: Opener = request.getfixturevalue(f"{request.param}_opener")
    return opener


def unsealed(db: Database) -> int:
    with raw_connect(db) as conn:
        row = conn.one("SELECT COUNT(*) FROM usage_buckets WHERE mac IS NULL")
    assert row is not None
    return int(row[0])


def run(db: Database, agents: list[str], steps: list[Any], keyed: bool) -> None:
    now = NOW
    ids: list[tuple[str, str]] = []
    for i, step in enumerate(steps):
        agent = agents[i % len(agents)]
        kind = step[0]
        with db.write() as uow:
            if kind == "insert":
                _, status, spend, offset = step
                row = tx_row(agent, now + offset if offset < 0 else now, status, spend)
                uow.transactions.add(row)
                ids.append((row.id, agent))
            elif kind == "deny":
                row = tx_row(agent, now, "FAILED", step[1], error="POLICY_DENIED")
                uow.transactions.add(row)
                ids.append((row.id, agent))
            elif kind in ("status", "spend", "move") and ids:
                tx_id, _owner = ids[step[1] % len(ids)]
                if kind == "status":
                    fields = {} if step[3] is None else {"error": step[3]}
                    uow.transactions.cas_status(tx_id, STATUSES, step[2], **fields)
                elif kind == "spend":
                    uow.transactions.update_fields(tx_id, spend=stored_spend(step[2]))
                else:
                    uow.transactions.update_fields(tx_id, created_at=now - step[1] % WEEK)
            elif kind == "audit":
                tx_id = ids[-1][0] if step[2] and ids else None
                uow.audit.append(step[1], actor="agent", now=now, agent_id=agent, tx_id=tx_id)
            elif kind == "clock":
                now += step[1]
            elif kind == "check":
                exclude = ids[-1][0] if ids and i % 2 else ""
                for who in agents:
                    check(uow, who, now, set(step[1]), exclude)
            uow.commit()
        if kind == "check":
            with db.read() as uow:
                for who in agents:
                    check(uow, who, now, set(step[1]))
    for who in agents:
        with db.read() as uow:
            check(uow, who, now, {60, 3600})
        with db.write() as uow:
            check(uow, who, now, {1})
            uow.commit()
    if keyed:
        # every bucket the wallet wrote is sealed, and verifies
        assert unsealed(db) == 0


def _agree(db: Database, steps: list[Any], keyed: bool) -> None:
    try:
        if keyed:
            db.integrity = make_integrity()
        agents = [add_agent(db), add_agent(db)]
        run(db, agents, [*steps, ("check", {60})], keyed)
    finally:
        db.close()


HISTORIES = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(HISTORIES, max_examples=60)
@given(steps=st.lists(ops, min_size=1, max_size=40), keyed=st.booleans())
def test_buckets_agree_with_the_rows(sqlite_opener: Opener, steps: list[Any], keyed: bool) -> None:
    """Random histories: bucket-based usage equals the row-by-row computation, always."""
    _agree(sqlite_opener(), steps, keyed)


# fewer examples: a fresh schema and its migrations per history (the trigger arithmetic
# itself is compared with SQLite's over many more in test_usage_triggers_dialects.py)
@settings(HISTORIES, max_examples=30)
@given(steps=st.lists(ops, min_size=1, max_size=40), keyed=st.booleans())
def test_buckets_agree_with_the_rows_on_postgresql(
    postgresql_opener: Opener, steps: list[Any], keyed: bool
) -> None:
    """The same random histories on PostgreSQL (plpgsql triggers, READ COMMITTED writes,
    REPEATABLE READ reads)."""
    _agree(postgresql_opener(), steps, keyed)


def test_nearly_json_spend_counts_nowhere(new_db: Opener) -> None:
    """Spend texts Python's parser would take but the database's JSON refuses (NaN,
    Infinity) count neither in the buckets nor in the rows, whole hours and edge hours."""
    db = new_db()
    try:
        agent = add_agent(db)
        with db.write() as uow:
            for i, doc in enumerate(NOT_JSON_BUT_NEARLY * 2):
                uow.transactions.add(tx_row(agent, NOW - 3 * 3600 * (i % 3), "CONFIRMED", doc))
            uow.transactions.add(tx_row(agent, NOW - 7200, "CONFIRMED", {"native": "7"}))
            uow.commit()
        with db.read() as uow:
            for at in (NOW, NOW + 1800, NOW + 7 * 3600):
                check(uow, agent, at, {60, 3600})
            # "\u0000" is JSON to SQLite (that row is odd: read from its rows), not to jsonb
            want = 7 + (10 if db.dialect == "sqlite" else 0)
            assert load_usage(uow, agent, NOW, set()).spent["native"].day == want
    finally:
        db.close()


# --------------------------------------------------------------------------- window edges

HOUR = usage_db.BUCKET
# Rows around the week's and the day's first hours and the current one: (offset from NOW,
# status, spend, denied).
edge_rows = st.lists(
    st.tuples(
        st.sampled_from([-WEEK, -DAY, 0]).flatmap(
            lambda base: st.integers(base - HOUR - 5, base + 2 * HOUR + 5)
        ),
        st.sampled_from(STATUSES),
        spends,
        st.booleans(),
    ),
    max_size=60,
)


@settings(HISTORIES, max_examples=40)
@given(
    rows=edge_rows,
    refusals=st.lists(st.integers(-WEEK - HOUR, 2 * HOUR), max_size=8),
    nows=st.lists(st.integers(0, 2 * HOUR), min_size=1, max_size=6),
    keyed=st.booleans(),
)
def test_window_edges_agree_with_the_rows(
    sqlite_opener: Opener,
    rows: list[Any],
    refusals: list[int],
    nows: list[int],
    keyed: bool,
) -> None:
    """Every position of the windows' starts inside their first hour (the hour counted whole
    less its rows before the window, or its rows inside the window, whichever side is
    shorter), with the rows of those hours of every kind: the same Usage as the rows."""
    _edges_agree(sqlite_opener(), rows, refusals, nows, keyed)


@settings(HISTORIES, max_examples=15)
@given(
    rows=edge_rows,
    refusals=st.lists(st.integers(-WEEK - HOUR, 2 * HOUR), max_size=8),
    nows=st.lists(st.integers(0, 2 * HOUR), min_size=1, max_size=4),
    keyed=st.booleans(),
)
def test_window_edges_agree_with_the_rows_on_postgresql(
    postgresql_opener: Opener,
    rows: list[Any],
    refusals: list[int],
    nows: list[int],
    keyed: bool,
) -> None:
    """The same on PostgreSQL."""
    _edges_agree(postgresql_opener(), rows, refusals, nows, keyed)


def _edges_agree(
    db: Database, rows: list[Any], refusals: list[int], nows: list[int], keyed: bool
) -> None:
    try:
        if keyed:
            db.integrity = make_integrity()
        agent = add_agent(db)
        ids = []
        with db.write() as uow:
            for offset, status, spend, denied in rows:
                error = "POLICY_DENIED" if denied else None
                row = tx_row(agent, NOW + offset, status, spend, error)
                uow.transactions.add(row)
                ids.append(row.id)
            for offset in refusals:
                uow.audit.append(
                    AuditEvent.REQUEST_REFUSED, actor="agent", now=NOW + offset, agent_id=agent
                )
            uow.commit()
        windows = {60, 1800, 3599, 3600, 5400}
        for i, at in enumerate(sorted(nows)):
            exclude = ids[i % len(ids)] if ids and i % 2 else ""
            with db.read() as uow:
                check(uow, agent, NOW + at, windows, exclude)
            with db.write() as uow:
                check(uow, agent, NOW + at, windows)
                uow.commit()
    finally:
        db.close()


# Several adjacent hours read from their rows (each holds a row the sums cannot stand for),
# next to the windows' starts: ranges of rows spanning hours, with several windows starting
# inside them, counted by the database per hour and position, many rows a second. Rows are
# placed around a window's start at one of the times checked (``anchor``: which time,
# ``start``: which window: the current hour, the day, the week or a policy window), and the
# times include the second before, at and after an hour's start (NOW is 1600 s into one).
amount_spends = st.dictionaries(
    st.sampled_from(["native", TOKEN, EVM_TOKEN, EVM_TOKEN.lower()]),
    amounts.map(str),
    min_size=1,
    max_size=3,
)
dense_rows = st.lists(
    st.tuples(
        st.integers(0, 3),  # anchor
        st.integers(0, 7),  # start
        st.one_of(st.integers(-2 * HOUR, 2 * HOUR), st.integers(-2, 2)),  # from that start
        st.sampled_from(STATUSES),
        st.one_of(amount_spends, spends),
        st.booleans(),  # denied
        st.integers(1, 4),  # rows in that second
    ),
    max_size=40,
)
dense_nows = st.lists(
    st.one_of(st.integers(0, 2 * HOUR), st.sampled_from([1999, 2000, 2001, 5599, 5600, 5601])),
    min_size=1,
    max_size=4,
)
dense_windows = st.sets(
    st.one_of(st.integers(1, 5 * HOUR), st.sampled_from([HOUR - 1, HOUR, HOUR + 1, DAY - 1])),
    min_size=1,
    max_size=5,
)

#: A dense history's parts, as the tests below draw them.
DENSE_HISTORY: dict[str, Any] = {
    "rows": dense_rows,
    "odd_hours": st.sets(st.integers(-4, 1), max_size=4),
    "refusals": st.lists(st.tuples(st.integers(-4 * HOUR, HOUR), st.booleans()), max_size=10),
    "nows": dense_nows,
    "windows": dense_windows,
}


@settings(HISTORIES, max_examples=60)
@given(
    **DENSE_HISTORY,
    keyed=st.booleans(),
)
def test_hours_read_from_rows_agree_with_the_rows(
    sqlite_opener: Opener,
    rows: list[Any],
    odd_hours: set[int],
    refusals: list[tuple[int, bool]],
    nows: list[int],
    windows: set[int],
    keyed: bool,
) -> None:
    """Hours read from their rows next to each other and to windows of any length starting
    inside them, with many rows a second of every kind (denied, failed, cancelled, several
    assets, amounts beyond 2**64) around the windows' starts, refusals and dry runs: the
    same Usage as the rows."""
    _dense_agree(sqlite_opener(), rows, odd_hours, refusals, nows, windows, keyed)


@settings(HISTORIES, max_examples=12)
@given(
    **DENSE_HISTORY,
    keyed=st.booleans(),
)
def test_hours_read_from_rows_agree_with_the_rows_on_postgresql(
    postgresql_opener: Opener,
    rows: list[Any],
    odd_hours: set[int],
    refusals: list[tuple[int, bool]],
    nows: list[int],
    windows: set[int],
    keyed: bool,
) -> None:
    """The same on PostgreSQL."""
    _dense_agree(postgresql_opener(), rows, odd_hours, refusals, nows, windows, keyed)


def test_rows_next_to_windows_starting_on_the_hour_agree_with_the_rows(new_db: Opener) -> None:
    """Windows starting the second before, at and after an hour's first second (the hour
    counted whole less its rows before the window, or its rows inside it), with spending,
    denied and refused rows the second before, at and after each start: the same Usage."""
    rows = [
        (anchor, start, delta, status, {"native": str(2**70 + delta), TOKEN: "3"}, denied, 1)
        for anchor in range(3)
        for start in range(8)
        for delta in (-1, 0, 1)
        for status, denied in (("CONFIRMED", False), ("FAILED", True))
    ]
    refusals = [
        (at - back + d, d > 0) for at in (2000, 5600) for back in (HOUR, DAY) for d in (-1, 0, 1)
    ]
    for keyed, odd_hours in ((False, set()), (True, {-1, 0})):
        windows = {60, HOUR, HOUR + 1}
        _dense_agree(new_db(), rows, odd_hours, refusals, [1999, 2000, 2001], windows, keyed)


def _dense_agree(
    db: Database,
    rows: list[Any],
    odd_hours: set[int],
    refusals: list[tuple[int, bool]],
    nows: list[int],
    windows: set[int],
    keyed: bool,
) -> None:
    starts = [0, 0, DAY, DAY, WEEK, *sorted(windows)]
    try:
        if keyed:
            db.integrity = make_integrity()
        agent = add_agent(db)
        ids = []
        with db.write() as uow:
            for anchor, start, delta, status, spend, denied, copies in rows:
                at = NOW + nows[anchor % len(nows)] - starts[start % len(starts)] + delta
                for _ in range(copies):
                    error = "POLICY_DENIED" if denied else None
                    row = tx_row(agent, at, status, spend, error)
                    uow.transactions.add(row)
                    ids.append(row.id)
            for hour in odd_hours:  # no spend column: the hour is read from its rows
                at = usage_db.bucket_start(NOW) + hour * HOUR + 7
                uow.transactions.add(tx_row(agent, at, "CONFIRMED", None))
            for offset, dry_run in refusals:
                event = AuditEvent.DRY_RUN if dry_run else AuditEvent.REQUEST_REFUSED
                uow.audit.append(event, actor="agent", now=NOW + offset, agent_id=agent)
            uow.commit()
        for i, at in enumerate(sorted(nows)):
            exclude = ids[i % len(ids)] if ids and i % 2 else ""
            with db.read() as uow:
                check(uow, agent, NOW + at, windows, exclude)
            with db.write() as uow:
                check(uow, agent, NOW + at, windows)
                uow.commit()
    finally:
        db.close()


def test_missing_bucket_rows_never_give_negative_usage(new_db: Opener) -> None:
    """A window starting early in an hour counts that hour whole less its rows before the
    window. With the hour's counts row deleted (behind the wallet's back) that would go
    below zero: the rows inside the window are read instead, with and without the key."""
    for keyed in (False, True):
        db = new_db()
        try:
            if keyed:
                db.integrity = make_integrity()
            agent = add_agent(db)
            hour = usage_db.bucket_start(NOW - DAY) + HOUR  # a whole hour inside the day
            with db.write() as uow:
                for i in range(30):
                    spend = {"native": str(10**18 + i)}
                    error = "POLICY_DENIED" if i % 4 == 0 else None
                    uow.transactions.add(
                        tx_row(agent, hour + 100 * i + 50, "CONFIRMED", spend, error)
                    )
                uow.commit()
            with db.write() as uow:
                uow.commit()  # sealed (keyed)
            at = hour + 700 + DAY  # the day starts 700 s into that hour: 7 rows before it
            _edit(db, "DELETE FROM usage_buckets WHERE start = ? AND kind = 0", hour)
            with db.read() as uow:
                got = load_usage(uow, agent, at, {60})
                want = _scan_usage(uow, agent, at, [60, DAY, WEEK], "")
            assert got.requests[DAY] == want.requests[DAY] == 23
            assert got.denials[DAY] == want.denials[DAY] == 6
            assert got.transactions[DAY] == 17
            assert got.spent == want.spent
            assert all(v >= 0 for v in got.requests.values())
            _edit(db, "DELETE FROM usage_buckets WHERE start = ?", hour)
            with db.read() as uow:
                got = load_usage(uow, agent, at, {60})
            assert got.requests[DAY] == 23  # the whole week's count is the bucket's: gone
            assert all(u.day >= 0 and u.week >= 0 for u in got.spent.values())
        finally:
            db.close()


# --------------------------------------------------------------------------- tamper evidence


def _history(db: Database, agent: str, now: int) -> list[str]:
    """A day of confirmed, denied and queued rows plus refusals, written by the wallet."""
    ids = []
    with db.write() as uow:
        for i in range(48):
            status = ("CONFIRMED", "QUEUED", "FAILED")[i % 3]
            error = "POLICY_DENIED" if i % 7 == 0 else None
            row = tx_row(agent, now - i * 1800, status, {"native": str(10**18 + i)}, error)
            uow.transactions.add(row)
            ids.append(row.id)
            if i % 5 == 0:
                uow.audit.append(
                    AuditEvent.REQUEST_REFUSED, actor="agent", now=now - i * 1800, agent_id=agent
                )
        uow.commit()
    return ids


def _edit(db: Database, sql: str, *params: Any) -> int:
    """A raw edit behind the wallet's back (a thief with write access to the database)."""
    with raw_connect(db) as conn:
        return int(conn.execute(sql, params).rowcount)


def test_an_edited_bucket_does_not_lower_usage_with_the_key(new_db: Opener) -> None:
    """A raw edit that zeroes buckets (or forges a MAC) is read from the rows instead,
    and the next write unit of work seals the true sums again."""
    db = new_db()
    try:
        db.integrity = make_integrity()
        agent = add_agent(db)
        _history(db, agent, NOW)
        with db.write() as uow:  # sealed by the first keyed commit
            uow.commit()
        with db.read() as uow:
            before = load_usage(uow, agent, NOW, {3600})
        assert before.spent["native"].day > 10**19
        assert _edit(db, "UPDATE usage_buckets SET s2 = 0, requests = 0, refused = 0") > 0
        assert _edit(db, "UPDATE usage_buckets SET mac = 'ff' || substr(mac, 3)") > 0
        with db.read() as uow:
            assert load_usage(uow, agent, NOW, {3600}) == before
            check(uow, agent, NOW, {3600})
        with db.write() as uow:
            assert load_usage(uow, agent, NOW, {3600}) == before
            uow.commit()
        assert unsealed(db) == 0
        with raw_connect(db) as conn:
            sums = conn.one("SELECT SUM(s2) FROM usage_buckets WHERE kind = 1")
        assert sums is not None and sums[0] > 0  # repaired from the rows
        with db.read() as uow:
            assert load_usage(uow, agent, NOW, {3600}) == before
    finally:
        db.close()


def test_a_keyed_writer_never_seals_an_edited_bucket(new_db: Opener) -> None:
    """An edit followed by a wallet write to the same bucket (a cancellation that reads no
    usage first) is recomputed from the rows before it is sealed, not laundered."""
    db = new_db()
    try:
        db.integrity = make_integrity()
        agent = add_agent(db)
        ids = _history(db, agent, NOW)
        with db.write() as uow:
            uow.commit()
        with db.read() as uow:
            before = load_usage(uow, agent, NOW, set())
        # lower the newest bucket, and keep its (now wrong) MAC
        _edit(db, "UPDATE usage_buckets SET s2 = 0 WHERE start = ?", usage_db.bucket_start(NOW))
        with db.write() as uow:  # cancel the queued row of that bucket
            assert uow.transactions.cas_status(ids[1], "QUEUED", "CANCELLED")
            uow.commit()
        with db.read() as uow:
            after = load_usage(uow, agent, NOW, set())
            check(uow, agent, NOW, set())
        assert after.spent["native"].day == before.spent["native"].day - (10**18 + 1)
        assert unsealed(db) == 0
        db.integrity = None  # even a reader without the key now sees the true sums
        with db.read() as uow:
            assert load_usage(uow, agent, NOW, set()) == after
    finally:
        db.close()


def test_without_the_key_buckets_are_trusted_as_stored(new_db: Opener) -> None:
    """A bare database (no keystore) has nothing to check a bucket against: it reads them as
    stored, as it reads every other row (see docs/design.md, threat model)."""
    db = new_db()
    try:
        agent = add_agent(db)
        _history(db, agent, NOW)
        _edit(db, "UPDATE usage_buckets SET s2 = 0 WHERE kind = 1")
        with db.read() as uow:
            usage = load_usage(uow, agent, NOW - 3601, set())
        assert usage.spent["native"].week < 10**18 * 3
    finally:
        db.close()


# --------------------------------------------------------------------------- migration 0009


@pytest.fixture(params=["sqlite", "postgresql"])
def old_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at revision 0007 (before the buckets): an SQLite path or a schema URL."""
    from waiaas.db import migrate
    from waiaas.db.engine import make_engine, make_pg_engine, parse_target

    if request.param == "sqlite":
        path = tmp_path / "old.db"
        engine = make_engine(path)
        target = str(path)
        name = ""
    else:
        server = request.getfixturevalue("postgres_url")
        name = create_schema(server, prefix="usage")
        target = schema_url(server, name)
        engine = make_pg_engine(parse_target(target).url)  # type: ignore[arg-type]
    try:
        migrate.upgrade(engine, target, target="0007")
    finally:
        engine.dispose()
    try:
        yield target
    finally:
        if name:
            drop_schema(request.getfixturevalue("postgres_url"), name)


def _old_raw(target: str) -> RawDb:
    if target.startswith("postgresql"):
        import psycopg

        from tests.support.pg_schema import libpq

        return RawDb(psycopg.connect(libpq(target), autocommit=True), "postgresql")
    return raw_connect(target)


def test_migration_fills_the_buckets_from_existing_rows(old_target: str) -> None:
    """A database at 0007 with rows of every kind (denied, legacy without spend, huge amounts,
    refusals, dry runs) gets buckets equal to the rows when upgraded, sealed on first write."""
    conn = _old_raw(old_target)
    agent = "agent-1"
    conn.execute(
        "INSERT INTO agents (id, name, chain, network, public_key, status, created_at, "
        "updated_at) VALUES (?, 'a', 'solana', 'devnet', 'pk', 'ACTIVE', 0, 0)",
        (agent,),
    )
    rows = []
    for i in range(400):
        status = STATUSES[i % len(STATUSES)]
        error = "POLICY_DENIED" if i % 11 == 0 else ("reverted" if status == "FAILED" else None)
        spend: Any = {"native": str((2**255) + i), TOKEN: str(i)}
        if i % 13 == 0:
            spend = None
        elif i % 17 == 0:
            spend = {"native": "9" * 90}
        row = tx_row(agent, NOW - i * 1500, status, spend, error)
        rows.append(
            (
                row.id,
                agent,
                "solana",
                "TRANSFER",
                "7",
                status,
                row.created_at,
                error,
                row.metadata_json,
                row.spend,
            )
        )
    for values in rows:
        conn.execute(
            "INSERT INTO transactions (id, agent_id, chain, type, amount, status, created_at, "
            "error, metadata, spend) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
    for i, event in enumerate(["REQUEST_REFUSED", "DRY_RUN", "POLICY_VIOLATION"] * 20):
        conn.execute(
            "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, details) "
            "VALUES (?, ?, 'agent', ?, '{}')",
            (NOW - i * 4000, event, agent),
        )
    conn.close()
    db = Database.open(old_target)
    try:
        windows = {60, 3600, 7200}
        with db.read() as uow:
            check(uow, agent, NOW, windows)
            check(uow, agent, NOW - 5 * 3600 - 17, windows, rows[3][0])
        db.integrity = make_integrity()
        with db.read() as uow:  # not sealed yet: read from the rows
            check(uow, agent, NOW, windows)
        with db.write() as uow:
            check(uow, agent, NOW, windows)
            uow.commit()
        with db.read() as uow:
            check(uow, agent, NOW, windows)
            check(uow, agent, NOW + 2 * DAY, windows)
    finally:
        db.close()


def test_migration_0009_downgrades_and_upgrades_on_postgresql(postgres_url: str) -> None:
    """Downgrading 0009 on PostgreSQL drops the table, triggers and functions it created;
    upgrading again recreates them and backfills the rows written in between."""
    from alembic import command

    from waiaas.db import migrate
    from waiaas.db.engine import make_pg_engine, parse_target

    name = create_schema(postgres_url, prefix="usage")
    target = schema_url(postgres_url, name)
    try:
        functions = (
            "SELECT proname FROM pg_proc WHERE pronamespace = to_regnamespace(?)::oid "
            "AND (proname LIKE 'usage%%' OR proname LIKE 'waiaas%%')"
        )
        db = Database.open(target)
        agent = add_agent(db)
        with raw_connect(db) as conn:
            assert len(conn.all(functions, (name,))) == 7
        db.close()
        engine = make_pg_engine(parse_target(target).url)  # type: ignore[arg-type]
        try:
            with engine.connect() as sa_conn, sa_conn.begin():
                cfg = migrate.alembic_config()
                cfg.attributes["connection"] = sa_conn
                command.downgrade(cfg, "0008")
        finally:
            engine.dispose()
        with _old_raw(target) as conn:
            assert conn.all(functions, (name,)) == []
            assert conn.one("SELECT to_regclass('usage_buckets')") == (None,)
            conn.execute(
                "INSERT INTO transactions (id, agent_id, chain, type, amount, status, "
                "created_at, spend) VALUES ('t1', ?, 'solana', 'TRANSFER', '7', 'CONFIRMED', "
                '?, \'{"native": "5"}\')',
                (agent, NOW),
            )
        db = Database.open(target)
        try:
            with db.read() as uow:
                check(uow, agent, NOW, {3600})
                assert load_usage(uow, agent, NOW, set()).spent["native"].day == 5
            with raw_connect(db) as conn:
                assert conn.one("SELECT s0 FROM usage_buckets WHERE kind = 1") == (5,)
        finally:
            db.close()
    finally:
        drop_schema(postgres_url, name)


@pytest.mark.sqlite_only  # PostgreSQL's created_at is a BIGINT
def test_fractional_times_written_behind_the_wallets_back(sqlite_opener: Opener) -> None:
    """A raw edit storing a REAL ``created_at`` inside a window's first hour: ``load_usage``
    (with the integrity key too) counts what the rows say, it does not fail."""
    for keyed in (False, True):
        db = sqlite_opener()
        try:
            if keyed:
                db.integrity = make_integrity()
            agent = add_agent(db)
            at = usage_db.bucket_start(NOW) + 1234
            with db.write() as uow:
                for i in range(40):
                    spend = {"native": str(2**70 + i)}
                    uow.transactions.add(tx_row(agent, at - 61 + i, "CONFIRMED", spend))
                uow.commit()
            _edit(
                db,
                "UPDATE transactions SET created_at = created_at + 0.5 WHERE created_at IN (?, ?)",
                at - 61,
                at - 40,
            )
            for step in (-1, 0, 1):
                with db.read() as uow:
                    check(uow, agent, at + step, {60, 61, DAY, WEEK})
                with db.write() as uow:
                    check(uow, agent, at + step, {60, DAY})
                    uow.commit()
        finally:
            db.close()


# --------------------------------------------------------------------------- segments
# A window's first hour is counted by segments (each a range of one hour and one position,
# read from idx_transactions_agent_created alone) or, for an interval with many of them, per
# group by the database: both must give the rows' answer, with and without an excluded
# transaction, at every edge.

LAYOUTS = {
    "grouped": (0, 0),  # every interval counted per group
    "default": (policies._SEGMENTS_PER_INTERVAL, policies._SEGMENTS_MAX),
    "segments": (10**6, 10**6),  # every interval by segments, however many
}


def _layout(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    per_interval, most = LAYOUTS[name]
    monkeypatch.setattr(policies, "_SEGMENTS_PER_INTERVAL", per_interval)
    monkeypatch.setattr(policies, "_SEGMENTS_MAX", most)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_segments_and_groups_agree_with_the_rows_at_every_edge(
    new_db: Opener, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """Rows the second before, at and after every window's start and every hour's first
    second (the times put windows' starts on an hour's first second too), denied and
    refused rows among them, hours read from their rows next to them, an excluded
    transaction every other time: each way of counting the edges gives the rows' Usage."""
    _layout(monkeypatch, layout)
    rows = [
        (anchor, start, delta, status, {"native": str(2**70 + delta)}, denied, 2)
        for anchor in range(3)
        for start in range(8)
        for delta in (-1, 0, 1)
        for status, denied in (("CONFIRMED", False), ("FAILED", True), ("QUEUED", False))
    ]
    refusals = [
        (at - back + d, d > 0) for at in (2000, 5600) for back in (HOUR, DAY) for d in (-1, 0, 1)
    ]
    for keyed, odd_hours in ((False, set()), (True, {-1, 0}), (False, {-2})):
        windows = {60, HOUR, HOUR + 1, 2 * HOUR + 1, DAY - 1}
        nows = [1999, 2000, 2001, 5600]
        _dense_agree(new_db(), rows, odd_hours, refusals, nows, windows, keyed)


@settings(HISTORIES, max_examples=20)
@given(
    **DENSE_HISTORY,
    layout=st.sampled_from(sorted(LAYOUTS)),
)
def test_random_edges_agree_with_the_rows_in_every_layout(
    sqlite_opener: Opener,
    rows: list[Any],
    odd_hours: set[int],
    refusals: list[tuple[int, bool]],
    nows: list[int],
    windows: set[int],
    layout: str,
) -> None:
    """The random dense histories above, counted by segments only, per group only, or both."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _layout(monkeypatch, layout)
        _dense_agree(sqlite_opener(), rows, odd_hours, refusals, nows, windows, False)


@pytest.mark.sqlite_only  # PostgreSQL's created_at is a BIGINT
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_fractional_times_next_to_every_edge(
    sqlite_opener: Opener, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """REAL ``created_at`` values half a second before and after a window's start and an
    hour's first second (raw edits): each is counted in the hour and on the side of each
    window its value is in, as the rows say, by segments and per group alike."""
    _layout(monkeypatch, layout)
    hour = usage_db.bucket_start(NOW)
    at = hour + 1234
    for keyed in (False, True):
        db = sqlite_opener()
        try:
            if keyed:
                db.integrity = make_integrity()
            agent = add_agent(db)
            ids = []
            with db.write() as uow:
                for base in (at - 60, at - DAY, hour, hour + HOUR - DAY):
                    for d in (-2, -1, 0, 1):
                        denied = d == 0
                        error = "POLICY_DENIED" if denied else None
                        status = "FAILED" if denied else "CONFIRMED"
                        spend = {"native": str(2**65 + d)}
                        row = tx_row(agent, base + d, status, spend, error)
                        uow.transactions.add(row)
                        ids.append(row.id)
                uow.commit()
            # -1 -> -0.5 and 0 -> +0.5 around each point: either side of it
            _edit(
                db,
                "UPDATE transactions SET created_at = created_at + 0.5 WHERE created_at IN "
                "(?, ?, ?, ?, ?, ?, ?, ?)",
                *(b + d for b in (at - 60, at - DAY, hour, hour + HOUR - DAY) for d in (-1, 0)),
            )
            for step, exclude in ((0, ""), (0, ids[5]), (-1, ""), (1, ids[9])):
                with db.read() as uow:
                    check(uow, agent, at + step, {60, 61, HOUR, DAY, WEEK}, exclude)
                with db.write() as uow:
                    check(uow, agent, at + step, {60, DAY}, exclude)
                    uow.commit()
        finally:
            db.close()


def _denials_edit(db: Database, agent: str, since: int) -> int:
    return _edit(
        db,
        "UPDATE transactions SET error = NULL WHERE agent_id = ? AND created_at > ? "
        "AND error = 'POLICY_DENIED'",
        agent,
        since,
    )


@pytest.mark.parametrize("keyed", [False, True])
def test_a_denial_edited_into_a_success_counts_as_the_rows_say(
    new_db: Opener, keyed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A thief with write access clears ``error`` on denied rows (a denial turned into a
    success), in the minute a RATE_LIMIT reads from the index and in whole hours read from
    the buckets. Every request still counts (requests never drop); denials drop by exactly
    the rows edited and no more, as the rows themselves say (the index holds what the table
    holds): the reads agree with the row-by-row computation. With the key, a bucket whose
    MAC was put back over the edited sums is noticed (warning) and counted from its rows."""
    db = new_db()
    try:
        if keyed:
            db.integrity = make_integrity()
        agent = add_agent(db)
        at = usage_db.bucket_start(NOW) + 1800
        with db.write() as uow:
            for i in range(120):  # the last minute, every third a denial
                error = "POLICY_DENIED" if i % 3 == 0 else None
                status = "FAILED" if error else "CONFIRMED"
                row = tx_row(agent, at - 59 + i // 2, status, {"native": "5"}, error)
                uow.transactions.add(row)
            for i in range(40):  # whole hours of the day
                error = "POLICY_DENIED" if i % 2 == 0 else None
                uow.transactions.add(tx_row(agent, at - 3 * HOUR - i * 60, "FAILED", None, error))
            uow.commit()
        with db.write() as uow:
            uow.commit()  # sealed (keyed)
        windows = {60, DAY}
        with db.read() as uow:
            before = load_usage(uow, agent, at, windows)
        assert (before.requests[60], before.denials[60]) == (120, 40)
        assert (before.requests[DAY], before.denials[DAY]) == (160, 60)
        with raw_connect(db) as conn:
            macs = conn.all("SELECT start, kind, asset, mac FROM usage_buckets")
        assert _denials_edit(db, agent, at - 60) == 40
        assert _denials_edit(db, agent, at - DAY) == 20
        if keyed:  # the bucket rows' MACs put back over the sums the edit changed
            for start, kind, asset, mac in macs:
                _edit(
                    db,
                    "UPDATE usage_buckets SET mac = ? WHERE start = ? AND kind = ? AND asset = ?",
                    mac,
                    start,
                    kind,
                    asset,
                )
        caplog.clear()
        with db.read() as uow:
            after = load_usage(uow, agent, at, windows)
            check(uow, agent, at, windows)
            check(uow, agent, at, windows, exclude="")
        assert after.requests == before.requests
        assert after.denials[60] == before.denials[60] - 40
        assert after.denials[DAY] == before.denials[DAY] - 60
        assert after.transactions[DAY] == before.transactions[DAY] + 60
        assert after.spent == before.spent  # FAILED rows spend nothing, edited or not
        if keyed:
            assert "do not verify" in caplog.text
            with db.write() as uow:
                check(uow, agent, at, windows)
                uow.commit()
            assert unsealed(db) == 0
    finally:
        db.close()


@pytest.mark.postgresql_only
def test_postgresql_counts_the_edges_through_the_agent_index(
    postgresql_opener: Opener,
) -> None:
    """PostgreSQL (no ``INDEXED BY``) reads each segment's transaction counts by an index
    range, never the whole table, with several agents' rows."""
    from waiaas.db import portable

    db = postgresql_opener()
    try:
        agents = [add_agent(db) for _ in range(4)]
        with db.write() as uow:
            for i in range(2000):
                error = "POLICY_DENIED" if i % 5 == 0 else None
                row = tx_row(agents[i % 4], NOW - 3000 + i, "CONFIRMED", {"native": "1"}, error)
                uow.transactions.add(row)
            uow.commit()
        with raw_connect(db) as conn:
            conn.execute("ANALYZE transactions")
        cuts = [NOW - 60, NOW - DAY, NOW - WEEK]
        params: dict[str, Any] = {"agent": agents[1], "denied": "POLICY_DENIED", "base": 0}
        params.update({f"cut{k}": c for k, c in enumerate(cuts)})
        layout, _ = policies._layout([(NOW - 60, NOW + 1), (NOW - 1900, NOW - 1200)], cuts, params)
        assert None not in layout
        sql = policies._edges_sql(layout, (False, False), 3, "postgresql")
        with db.read() as uow:
            plan = " | ".join(
                str(r[0]) for r in portable.raw(uow).execute("EXPLAIN " + sql, params)
            )
        # each segment (the minute; two of the earlier interval, split at an hour's start)
        # is a range read of an index: the agent's (the minute, index-only: error is in it)
        # or, where the planner deems the time range narrower, idx_transactions_created_at
        assert plan.count("Index Only Scan using idx_transactions_agent_created") >= 1, plan
        assert len(re.findall(r"Index (Only )?Scan using \w+ on transactions", plan)) == 3, plan
        assert "Seq Scan" not in plan, plan
    finally:
        db.close()


@pytest.mark.parametrize("failed_last", [False, True])
def test_consecutive_failures_in_the_second_of_a_busy_confirmation(
    new_db: Opener, failed_last: bool
) -> None:
    """An agent confirming many transactions in one second with FAILED ones among them (by
    id, before and after the last CONFIRMED one), and FAILED ones later: the count equals
    the row-by-row reference's, with and without an excluded transaction, though only the
    FAILED rows and that second's CONFIRMED ones are read."""
    db = new_db()
    try:
        agent = add_agent(db)
        ids: list[str] = []
        with db.write() as uow:
            for i in range(60):  # ids are time-ordered: later rows sort after earlier ones
                status = "FAILED" if i % 7 == 3 else "CONFIRMED"
                if i == 59:
                    status = "FAILED" if failed_last else "CONFIRMED"
                error = "POLICY_DENIED" if i == 10 else ("reverted" if status == "FAILED" else None)
                row = tx_row(agent, NOW, "FAILED" if error else status, {"native": "1"}, error)
                uow.transactions.add(row)
                ids.append(row.id)
            for offset in (1, 2):
                later = tx_row(agent, NOW + offset, "FAILED", {"native": "1"}, "reverted")
                uow.transactions.add(later)
                ids.append(later.id)
            uow.commit()
        with db.read() as uow:
            got = load_usage(uow, agent, NOW + 5, {60}).consecutive_failures
            assert got == (3 if failed_last else 2)
            for exclude in ("", ids[58], ids[59], ids[-1]):
                check(uow, agent, NOW + 5, {60}, exclude)
    finally:
        db.close()
