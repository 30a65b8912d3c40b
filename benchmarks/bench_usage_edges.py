"""Usage reads at high send rates: ``load_usage`` with many rows in a window's first hour.

Run ``python benchmarks/bench_usage_edges.py [--rows 100,1000,10000] [--baseline SRC]``.

An agent with a 60 s RATE_LIMIT (plus the day and week windows every admission reads) and
``--rows`` transactions in the last minute (one in ten a policy denial, one refusal audit row
per ten transactions), plus a few hundred spending rows around the day's and the week's
starts. ``load_usage`` reads the current hour's rows inside the minute (or, when shorter,
counts the hour whole less its rows before the minute): its cost is the rows of that edge.

Prints one JSON object per line:

* ``environment``: SQLite, Python and machine facts.
* ``load_usage``: per row count, p50 / p90 of ``load_usage`` (ms, one read unit of work per
  call, only the call timed) and, in the same run, of ``_scan_usage`` (the row-by-row
  reference it is checked against); both give the same Usage (checked).
* with ``--baseline SRC`` (another tree's ``src``, e.g. a worktree of the previous commit):
  this tree and that one are run alternately, ``--rounds`` times each, in fresh processes;
  ``compare`` lines give, per row count, both medians of the per-round p50s and
  ``ratio`` = baseline / this tree.

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not os.environ.get("BENCH_USAGE_EDGES_CHILD"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from waiaas.db import Database
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.ids import new_id
from waiaas.policy.model import DAY, WEEK
from waiaas.services.policies import _scan_usage, load_usage
from waiaas.types import AuditEvent

HOUR = 3600
# 1,800 s into an hour: the minute's window starts inside the current hour's bucket
NOW = 1_760_000_000 - 1_760_000_000 % HOUR + 1800
WINDOWS = {60}
EDGE_ROWS = 200  # spending rows around the day's and the week's starts, each


def _tx(agent: str, created: int, i: int) -> TransactionRow:
    denied = i % 10 == 0
    return TransactionRow(
        id=new_id(),
        agent_id=agent,
        chain="solana",
        type="TRANSFER",
        amount=str(1000 + i),
        status="FAILED" if denied else "CONFIRMED",
        created_at=created,
        error="POLICY_DENIED" if denied else None,
        metadata_json=json.dumps({"request": {"type": "TRANSFER", "amount": str(1000 + i)}}),
        spend=json.dumps({"native": str(1000 + i)}),
    )


def build(path: Path, rows: int) -> str:
    """A wallet database with one agent and its rows; returns the agent id."""
    db = Database.open(path)
    try:
        agent = new_id()
        with db.write() as uow:
            uow.agents.add(
                AgentRow(
                    id=agent,
                    name="bench",
                    chain="solana",
                    network="devnet",
                    public_key=f"pk-{agent}",
                    status="ACTIVE",
                    created_at=NOW - 2 * WEEK,
                    updated_at=NOW - 2 * WEEK,
                )
            )
            uow.commit()
        with db.write() as uow:
            for back in (DAY, WEEK):  # around the day's / week's start, inside their edge hour
                for i in range(EDGE_ROWS):
                    uow.transactions.add(_tx(agent, NOW - back - 900 + 9 * i, i))
            for i in range(rows):  # the last minute, evenly
                uow.transactions.add(_tx(agent, NOW - 59 + (59 * i) // max(rows - 1, 1), i))
                if i % 10 == 5:
                    uow.audit.append(
                        AuditEvent.REQUEST_REFUSED,
                        actor="agent",
                        now=NOW - 59 + (59 * i) // max(rows - 1, 1),
                        agent_id=agent,
                    )
            uow.commit()
    finally:
        db.close()
    return agent


def _timed(db: Database, call: Any, calls: int) -> tuple[list[float], Any]:
    times = []
    result = None
    for _ in range(calls):
        with db.read() as uow:
            start = time.perf_counter()
            result = call(uow)
            times.append((time.perf_counter() - start) * 1000)
    return times, result


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def _run(
    path: Path, agent: str, rows: int, calls: int, ordered: list[int]
) -> tuple[list[float], list[float]]:
    db = Database.open(path)
    try:
        _timed(db, lambda uow: load_usage(uow, agent, NOW, WINDOWS), 5)  # warm
        fast, got = _timed(db, lambda uow: load_usage(uow, agent, NOW, WINDOWS), calls)
        scan, want = _timed(
            db, lambda uow: _scan_usage(uow, agent, NOW, ordered, ""), max(calls // 4, 5)
        )
    finally:
        db.close()
    assert got == want, (got, want)
    assert got.requests[60] == rows + (rows + 4) // 10
    return fast, scan


def measure(rows_list: list[int], calls: int) -> list[dict[str, Any]]:
    """``load_usage`` and ``_scan_usage`` timings per row count (this process's waiaas)."""
    found = []
    ordered = sorted(WINDOWS | {DAY, WEEK})
    with tempfile.TemporaryDirectory() as tmp:
        for rows in rows_list:
            path = Path(tmp) / f"usage-{rows}.db"
            agent = build(path, rows)
            fast, scan = _run(path, agent, rows, calls, ordered)
            found.append(
                {
                    "bench": "load_usage",
                    "rows_last_minute": rows,
                    "calls": calls,
                    "p50_ms": _pct(fast, 0.5),
                    "p90_ms": _pct(fast, 0.9),
                    "scan_p50_ms": _pct(scan, 0.5),
                    "ratio_scan_over_load": round(_pct(scan, 0.5) / _pct(fast, 0.5), 2),
                }
            )
    return found


def _child(src: str, rows: str, calls: int) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=src, BENCH_USAGE_EDGES_CHILD="1")
    out = subprocess.run(
        [sys.executable, __file__, "--rows", rows, "--calls", str(calls), "--json-only"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def compare(baseline: str, rows: str, calls: int, rounds: int) -> None:
    """Alternate this tree and ``baseline`` in fresh processes; print medians and ratios."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    runs: dict[str, list[list[dict[str, Any]]]] = {"base": [], "new": []}
    for _ in range(rounds):
        runs["base"].append(_child(baseline, rows, calls))
        runs["new"].append(_child(here, rows, calls))
    for k, count in enumerate(int(r) for r in rows.split(",")):
        base = statistics.median(run[k]["p50_ms"] for run in runs["base"])
        new = statistics.median(run[k]["p50_ms"] for run in runs["new"])
        print(
            json.dumps(
                {
                    "bench": "compare",
                    "rows_last_minute": count,
                    "rounds": rounds,
                    "base_p50_ms": round(base, 4),
                    "new_p50_ms": round(new, 4),
                    "base_p50s": [run[k]["p50_ms"] for run in runs["base"]],
                    "new_p50s": [run[k]["p50_ms"] for run in runs["new"]],
                    "ratio": round(base / new, 2),
                }
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100,1000,10000")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--baseline", help="another tree's src directory, run alternately")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        print(json.dumps({"bench": "environment", **_environment()}))
        compare(args.baseline, args.rows, args.calls, args.rounds)
        return
    if not args.json_only:
        print(json.dumps({"bench": "environment", **_environment()}))
    for line in measure([int(r) for r in args.rows.split(",")], args.calls):
        print(json.dumps(line), flush=True)


def _environment() -> dict[str, Any]:
    return {
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
