"""Audit queries at 1M rows: p50 / p99 of every filter shape, against raw sqlite3 of the same SQL.

Run ``python benchmarks/bench_audit_queries.py [--rows 1000000 --agents 10 --n 300]``.

The data set is written straight into a database at revision 0007 (the indexes before
migration 0008), shaped like a live wallet's log: per request ``TX_REQUESTED`` then
``TX_SUBMITTED`` / ``TX_CONFIRMED`` (or a ``POLICY_VIOLATION``, a ``TX_FAILED``, a queue and
an approval), sessions issued, refused tokens, an occasional AUTO_STOP or kill switch; a year
of timestamps with a little clock skew between writers; UUID ids; hash-chain columns filled.
Then ``Database.open`` upgrades it to head (the ``migrate`` line times migration 0008) and
every filter shape is measured:

* ``raw``: the SQL and parameters ``AuditRepository.query`` runs (``audit_query``), executed
  and fetched on a plain ``sqlite3`` connection with the same PRAGMAs: the baseline.
* ``repository``: ``uow.audit.query(...)`` inside an open read unit of work (rows mapped to
  ``AuditRow`` objects), what ``Wallet.audit`` calls.
* ``unit_of_work``: ``with db.read() as uow: uow.audit.query(...)``, the whole read.

Wall-clock p50 / p99 and, as ``cpu_p50_ms`` / ``cpu_p99_ms``, the calling thread's CPU time
(``time.thread_time``): on a loaded machine the wall-clock tail is mostly the time the thread
waited for a core, which the CPU figures leave out.

Each shape is a page of 101 rows (``Wallet.audit``'s default ``limit`` + 1), first pages
and deep pages (a cursor from the middle of the matches), with parameters rotated between
calls (agents, windows, transactions, cursors) so no single cached path is measured. Each
line also names the index the plan reads and whether any step is a SCAN. Timings depend on
the machine and its load; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from waiaas.db import Database, migrate
from waiaas.db.engine import PRAGMAS, make_engine
from waiaas.db.repositories import audit_query

NOW = 1_760_000_000
YEAR = 365 * 86_400
DAY = 86_400
PAGE = 101
COLUMNS = (
    "timestamp",
    "event_type",
    "actor",
    "agent_id",
    "session_id",
    "tx_id",
    "details",
    "severity",
    "ip_address",
    "prev_hash",
    "row_hash",
    "mac",
)


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def raw_connect(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection with the same seven PRAGMAs waiaas runs."""
    conn = sqlite3.connect(path, isolation_level=None)
    for name, value in PRAGMAS:
        conn.execute(f"PRAGMA {name} = {value}")
    return conn


# --------------------------------------------------------------------------- data


def _events(rng: random.Random, tx: str) -> list[tuple[str, str, str | None]]:
    """The audit rows of one request (or one other event), as the pipeline writes them."""
    r = rng.random()
    if r < 0.005:
        return [("AUTH_FAILED", "warning", None)]
    if r < 0.008:
        return [("SESSION_ISSUED", "info", None)]
    if r < 0.0081:
        return [("AUTO_STOP_TRIGGERED", "critical", None), ("AGENT_SUSPENDED", "warning", None)]
    if r < 0.00812:
        return [("KILL_SWITCH_ACTIVATED", "critical", None)]
    if r < 0.04:
        return [("TX_REQUESTED", "info", tx), ("POLICY_VIOLATION", "warning", tx)]
    if r < 0.07:
        return [
            ("TX_REQUESTED", "info", tx),
            ("TX_SUBMITTED", "info", tx),
            ("TX_FAILED", "warning", tx),
        ]
    if r < 0.09:
        steps = ("TX_REQUESTED", "TX_QUEUED", "TX_APPROVED", "TX_SUBMITTED", "TX_CONFIRMED")
        return [(e, "info", tx) for e in steps]
    return [(e, "info", tx) for e in ("TX_REQUESTED", "TX_SUBMITTED", "TX_CONFIRMED")]


def build(path: Path, rows: int, agents: int, seed: int) -> dict[str, Any]:
    """A database at revision 0007 holding ``rows`` audit rows; returns facts for queries."""
    engine = make_engine(path)
    try:
        migrate.upgrade(engine, str(path), target="0007")
    finally:
        engine.dispose()
    rng = random.Random(seed)
    agent_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(agents)]
    step = YEAR / rows
    ts = float(NOW - YEAR)
    txs: list[str] = []
    sql = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    conn = raw_connect(path)
    written = 0
    started = time.perf_counter()
    conn.execute("BEGIN")
    while written < rows:
        batch: list[tuple[Any, ...]] = []
        while len(batch) < 10_000 and written + len(batch) < rows:
            agent = rng.choice(agent_ids)
            tx = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            session = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            for event, severity, tx_id in _events(rng, tx):
                ts += step
                stamp = int(ts) + rng.choice((0, 0, 0, -1, -2, 1))  # writers' clocks differ
                details = json.dumps({"amount": str(rng.randrange(10**9)), "tier": "INSTANT"})
                hashes = tuple(f"{rng.getrandbits(256):064x}" for _ in range(3))
                actor = f"agent:{agent}"
                row = (stamp, event, actor, agent, session, tx_id, details, severity, None)
                batch.append((*row, *hashes))
            if len(txs) < 5000 and rng.random() < 0.05:
                txs.append(tx)
        batch = batch[: rows - written]
        conn.executemany(sql, batch)
        written += len(batch)
    conn.execute("COMMIT")
    conn.close()
    return {"agents": agent_ids, "txs": txs, "load_s": round(time.perf_counter() - started, 1)}


# --------------------------------------------------------------------------- shapes


def shapes(facts: dict[str, Any]) -> dict[str, Callable[[random.Random], dict[str, Any]]]:
    """Each filter shape as a factory of query arguments (rotated per call)."""
    agents: list[str] = facts["agents"]
    txs: list[str] = facts["txs"]

    def window(rng: random.Random, days: int) -> tuple[int, int]:
        end = NOW - rng.randrange(0, YEAR - days * DAY)
        return end - days * DAY, end

    def agent(rng: random.Random) -> str:
        return rng.choice(agents)

    def rare_event(rng: random.Random) -> list[str]:
        return [rng.choice(["AUTH_FAILED", "TX_FAILED", "POLICY_VIOLATION", "SESSION_ISSUED"])]

    def w(rng: random.Random, days: int = 30) -> dict[str, int]:
        since, until = window(rng, days)
        return {"since": since, "until": until}

    return {
        "none": lambda rng: {},
        "agent": lambda rng: {"agent_id": agent(rng)},
        "agent+time": lambda rng: {"agent_id": agent(rng), **w(rng)},
        "time": lambda rng: w(rng),
        "since": lambda rng: {"since": window(rng, 60)[0]},
        "event(common)": lambda rng: {"event_types": ["TX_CONFIRMED"]},
        "event(rare)": lambda rng: {"event_types": rare_event(rng)},
        "events(2)": lambda rng: {"event_types": ["TX_FAILED", "AUTH_FAILED"]},
        "severity(warning)": lambda rng: {"severities": ["warning"]},
        "severity(warning,critical)": lambda rng: {"severities": ["warning", "critical"]},
        "severity(critical)": lambda rng: {"severities": ["critical"]},
        "severity(info)": lambda rng: {"severities": ["info"]},
        "tx_id": lambda rng: {"tx_id": rng.choice(txs)},
        "agent+event(common)": lambda rng: {
            "agent_id": agent(rng),
            "event_types": ["TX_CONFIRMED"],
        },
        "agent+event(rare)": lambda rng: {"agent_id": agent(rng), "event_types": rare_event(rng)},
        "agent+severity": lambda rng: {
            "agent_id": agent(rng),
            "severities": ["warning", "critical"],
        },
        "agent+time+event": lambda rng: {
            "agent_id": agent(rng),
            "event_types": rare_event(rng),
            **w(rng, 90),
        },
        "agent+time+severity": lambda rng: {
            "agent_id": agent(rng),
            "severities": ["warning"],
            **w(rng, 90),
        },
        "time+event": lambda rng: {"event_types": rare_event(rng), **w(rng)},
        "time+severity": lambda rng: {"severities": ["warning", "critical"], **w(rng)},
        "event+severity": lambda rng: {"event_types": ["TX_FAILED"], "severities": ["warning"]},
        "agent+event+severity": lambda rng: {
            "agent_id": agent(rng),
            "event_types": ["POLICY_VIOLATION"],
            "severities": ["warning"],
        },
        "tx_id+agent": lambda rng: {"tx_id": rng.choice(txs), "agent_id": agent(rng)},
    }


# --------------------------------------------------------------------------- timing


def _quantiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(statistics.median(samples), 3), "p99_ms": round(q[98], 3)}


def _plan(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> tuple[str, bool]:
    steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    index = next((s.split(" USING ")[1] for s in steps if " USING " in s), "?")
    scan = any(s.startswith("SCAN ") for s in steps)
    return index, scan


def measure(
    db: Database, raw: sqlite3.Connection, name: str, make: Any, n: int, deep: bool
) -> None:
    rng = random.Random(hash(name) & 0xFFFF)
    calls: list[dict[str, Any]] = []
    with db.read() as uow:
        for _ in range(400):
            if len(calls) >= 40:
                break
            kwargs = make(rng)
            if deep:
                # a cursor from the middle of the matches (a shape with few has none)
                found = uow.audit.query(**kwargs, limit=2000)
                if len(found) < 2:
                    continue
                kwargs["before_id"] = found[rng.randrange(len(found) // 2, len(found))].id
            calls.append(kwargs)
    if not calls:
        emit(bench="audit_query", shape=f"{name} +cursor", skipped="fewer than 2 matches")
        return
    statements = [audit_query(**c, limit=PAGE) for c in calls]
    timings: dict[str, list[float]] = {"raw": [], "repository": [], "unit_of_work": []}
    cpu: dict[str, list[float]] = {"raw": [], "repository": [], "unit_of_work": []}
    counts: list[int] = []

    def run_raw(i: int) -> None:
        sql, params = statements[i % len(statements)]
        counts.append(len(raw.execute(sql, params).fetchall()))

    with db.read() as uow:

        def run_repository(i: int) -> None:
            uow.audit.query(**calls[i % len(calls)], limit=PAGE)

        def run_unit(i: int) -> None:
            with db.read() as fresh:
                fresh.audit.query(**calls[i % len(calls)], limit=PAGE)

        for _ in range(3):  # interleaved rounds: load spikes hit all three alike
            for label, fn in (
                ("raw", run_raw),
                ("repository", run_repository),
                ("unit_of_work", run_unit),
            ):
                for i in range(min(20, n)):
                    fn(i)  # warm-up
                for i in range(n // 3):
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    fn(i)
                    cpu[label].append((time.thread_time() - start_cpu) * 1000)
                    timings[label].append((time.perf_counter() - start) * 1000)
    index, scan = _plan(raw, *statements[0])
    base, repo, unit = (
        {**_quantiles(timings[k]), **{f"cpu_{q}": v for q, v in _quantiles(cpu[k]).items()}}
        for k in ("raw", "repository", "unit_of_work")
    )
    emit(
        bench="audit_query",
        shape=name + (" +cursor" if deep else ""),
        index=index,
        scan=scan,
        rows_per_page=round(statistics.fmean(counts), 1),
        raw=base,
        repository=repo,
        unit_of_work=unit,
        ratio_p50=round(repo["p50_ms"] / base["p50_ms"], 2) if base["p50_ms"] else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=10, help="CORE-02 §5.3 sizes for 10")
    parser.add_argument("--n", type=int, default=300, help="timed calls per shape and path")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated shape names")
    args = parser.parse_args()
    emit(
        bench="environment",
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        machine=platform.machine(),
        cpus=os.cpu_count(),
        rows=args.rows,
        agents=args.agents,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.db"
        facts = build(path, args.rows, args.agents, args.seed)
        started = time.perf_counter()
        db = Database.open(path)
        emit(
            bench="migrate",
            to=migrate.head_revision(),
            rows=args.rows,
            load_s=facts["load_s"],
            upgrade_s=round(time.perf_counter() - started, 2),
        )
        raw = raw_connect(path)
        sizes = dict(
            raw.execute(
                "SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'idx_audit_log%' "
                "GROUP BY name ORDER BY name"
            ).fetchall()
        )
        emit(
            bench="audit_index_bytes_per_row",
            **{k: round(v / args.rows, 1) for k, v in sizes.items()},
            total=round(sum(sizes.values()) / args.rows, 1),
        )
        wanted = {s for s in args.only.split(",") if s}
        try:
            for name, make in shapes(facts).items():
                if wanted and name not in wanted:
                    continue
                for deep in (False, True):
                    measure(db, raw, name, make, args.n, deep)
        finally:
            raw.close()
            db.close()


if __name__ == "__main__":
    main()
