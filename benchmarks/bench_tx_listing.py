"""Transaction listings and status scans at scale: the queries before and after migration 0015.

Run ``python benchmarks/bench_tx_listing.py [--rows 200000 --agents 10 --n 200]``.

A database at head is filled with ``--rows`` transactions of ``--agents`` agents (97 % of them
CONFIRMED, the rest spread over the other statuses, a few rows per second of ``created_at``),
written straight with ``executemany``. Each shape is then measured twice in the same run,
alternating, on the same file and connection:

* ``before``: the SQL ``TransactionRepository.list`` / ``with_status`` ran before this change
  (``ORDER BY id``, no partial-index term): it reads and sorts every row of the agent, or
  scans the table in id order until a page is full;
* ``after``: the SQL they run now (``ORDER BY created_at DESC, id DESC``; the term
  ``status <> 'CONFIRMED'`` that lets the partial indexes of migration 0015 serve a status
  other than CONFIRMED), captured from the repository itself.

Prints one JSON line per shape: p50 / p99 milliseconds of each and ``speedup`` = before p50 /
after p50; both return the same rows (checked, as sets: the order differs only where ids and
``created_at`` disagree). Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import event

from waiaas.db import Database
from waiaas.db.engine import PRAGMAS

OTHER = ("PENDING", "QUEUED", "EXECUTING", "SUBMITTED", "FAILED", "CANCELLED", "EXPIRED")
PAGE = 100


def emit(**fields: Any) -> None:
    print(json.dumps({"bench": "tx_listing", **fields}), flush=True)


def fill(path: Path, rows: int, agents: int, seed: int) -> list[str]:
    db = Database.open(path)
    db.close()
    rng = random.Random(seed)
    names = [f"01900000-0000-7000-8000-{i:012d}" for i in range(agents)]
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO agents (id, name, chain, network, public_key, status, created_at, "
        "updated_at) VALUES (?, ?, 'solana', 'devnet', ?, 'ACTIVE', 1, 1)",
        [(a, f"agent{i}", f"pk{i}") for i, a in enumerate(names)],
    )

    def row(i: int) -> tuple[Any, ...]:
        status = rng.choice(OTHER) if rng.random() < 0.03 else "CONFIRMED"
        tx_id = f"01{i:010x}-0000-7000-8000-{rng.getrandbits(48):012x}"
        return (tx_id, rng.choice(names), status, 1_700_000_000 + i // 4)

    conn.executemany(
        "INSERT INTO transactions (id, agent_id, chain, type, amount, status, created_at) "
        "VALUES (?, ?, 'solana', 'TRANSFER', '1', ?, ?)",
        (row(i) for i in range(rows)),
    )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return names


def captured(db: Database, call: Any) -> tuple[str, Any]:
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.read() as uow:
            call(uow)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    return seen[-1]


def before_sql(agent: bool, status: str | None, statuses: list[str] | None) -> str:
    if statuses is not None:
        marks = ", ".join("?" for _ in statuses)
        return f"SELECT * FROM transactions WHERE status IN ({marks}) ORDER BY id LIMIT 1000"
    where = []
    if agent:
        where.append("agent_id = ?")
    if status is not None:
        where.append("status = ?")
        if status in OTHER[:4]:
            where.append("status IN ('PENDING', 'QUEUED', 'EXECUTING', 'SUBMITTED')")
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    return f"SELECT * FROM transactions {clause}ORDER BY id DESC LIMIT {PAGE}"


def measure(conn: sqlite3.Connection, sql: str, params: Any, n: int) -> tuple[list[float], set]:
    samples, found = [], set()
    for _ in range(n):
        start = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        samples.append((time.perf_counter() - start) * 1000)
        found = {r[0] for r in rows}
    return samples, found


def q(samples: list[float], p: float) -> float:
    return round(sorted(samples)[min(len(samples) - 1, int(p * len(samples)))], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "listing.db"
    start = time.perf_counter()
    agents = fill(path, args.rows, args.agents, seed=11)
    emit(
        case="fill",
        rows=args.rows,
        agents=args.agents,
        seconds=round(time.perf_counter() - start, 1),
    )
    db = Database.open(path)
    conn = sqlite3.connect(path)
    for name, value in PRAGMAS:
        conn.execute(f"PRAGMA {name} = {value}")
    a = agents[3]
    shapes: dict[str, tuple[Any, tuple[Any, ...], bool, str | None, list[str] | None]] = {
        "agent_page": (lambda u: u.transactions.list(agent_id=a), (a,), True, None, None),
        "agent_failed": (
            lambda u: u.transactions.list(agent_id=a, status="FAILED"),
            (a, "FAILED"),
            True,
            "FAILED",
            None,
        ),
        "all_expired": (
            lambda u: u.transactions.list(status="EXPIRED"),
            ("EXPIRED",),
            False,
            "EXPIRED",
            None,
        ),
        "due_queued": (
            lambda u: u.transactions.with_status(["QUEUED"]),
            ("QUEUED",),
            False,
            None,
            ["QUEUED"],
        ),
        "recovery": (
            lambda u: u.transactions.with_status(["EXECUTING", "SUBMITTED"]),
            ("EXECUTING", "SUBMITTED"),
            False,
            None,
            ["EXECUTING", "SUBMITTED"],
        ),
    }
    for name, (call, old_params, agent, status, statuses) in shapes.items():
        new_sql, new_params = captured(db, call)
        old_sql = before_sql(agent, status, statuses)
        old: list[float] = []
        new: list[float] = []
        for _ in range(3):  # alternate
            s, old_rows = measure(conn, old_sql, old_params, args.n)
            old += s
            s, new_rows = measure(conn, new_sql, new_params, args.n)
            new += s
        if statuses is not None:
            assert old_rows == new_rows, name
        emit(
            case=name,
            before_p50_ms=q(old, 0.5),
            before_p99_ms=q(old, 0.99),
            after_p50_ms=q(new, 0.5),
            after_p99_ms=q(new, 0.99),
            speedup=round(statistics.median(old) / statistics.median(new), 1),
            rows_returned=len(new_rows),
        )
    conn.close()
    db.close()


if __name__ == "__main__":
    main()
