"""Admission cost against the send rate: ``load_usage`` with N rows packed in the last minute.

Run ``python benchmarks/bench_usage_rate.py [--baseline-tree PATH] [--quick]``. An agent
under a RATE_LIMIT of 60 s has N transaction rows (N = 100, 1,000, 10,000: 1.7 to 167 sends
a second) in its last minute, on a real SQLite file with the wallet's integrity key (bucket
MACs sealed and verified, as in ``Wallet``). Each sample is one admission-like unit of work:
``BEGIN IMMEDIATE``, ``load_usage`` for the 60 s window (plus the day and the week, as
always), commit. The window's start moves through the minute across samples (``now`` goes
from the last row's second to 29 s after it), so it falls at every offset inside its
minute and hour. Prints one JSON object per line:

* ``environment``: Python, SQLite and machine facts.
* ``usage_rate``: per tree and N, p50 / p99 of ``load_usage`` and of the whole unit of work
  (with the commit), medians over the rounds.
* ``usage_rate_ratio``: per tree, the p50 at the largest N over the p50 at the smallest (1.0:
  the cost does not follow the send rate).

``--baseline-tree`` names another checkout (for instance the main branch at an earlier
commit): each round runs both trees in turn, alternating which goes first, each in its own
process with its own ``src`` first on the path, and reports both, the baseline marked.
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

HERE = Path(__file__).resolve().parents[1]
NOW = 1_780_001_000  # 1,000 s into an hour (the window's start moves 29 s from there)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def child(src: str, sizes: list[int], samples: int, workdir: Path) -> None:
    """One round in this process: for each size, a fresh file, N rows, ``samples`` units."""
    sys.path.insert(0, src)
    from waiaas.db import Database
    from waiaas.db.tables import AgentRow, TransactionRow
    from waiaas.ids import new_id
    from waiaas.integrity import Integrity
    from waiaas.services.policies import load_usage

    for size in sizes:
        db = Database.open(workdir / f"rate-{size}-{new_id()}.db")
        db.integrity = Integrity(
            mac_key=os.urandom(32),
            signing_seed=os.urandom(32),
            wallet_id="bench",
            anchor=(0, "0" * 64),
            head_path=None,
            checkpoint_rows=10**9,
        )
        agent = new_id()
        with db.write() as uow:
            uow.agents.add(
                AgentRow(
                    id=agent,
                    name="rate",
                    chain="solana",
                    network="devnet",
                    public_key=f"pk-{agent}",
                    status="ACTIVE",
                    created_at=NOW - 3600,
                    updated_at=NOW - 3600,
                )
            )
            for i in range(size):
                uow.transactions.add(
                    TransactionRow(
                        id=new_id(),
                        agent_id=agent,
                        chain="solana",
                        type="TRANSFER",
                        amount="1000",
                        status="CONFIRMED",
                        created_at=NOW - 59 + (i * 60) // size,
                        spend=json.dumps({"native": str(1_000 + i % 1_000)}),
                    )
                )
            uow.commit()
        with db.write() as uow:  # the first keyed commit seals every bucket
            load_usage(uow, agent, NOW, {60})
            uow.commit()
        load_ms: list[float] = []
        unit_ms: list[float] = []
        for j in range(samples):
            at = NOW + j % 30
            start = time.perf_counter()
            with db.write() as uow:
                t0 = time.perf_counter()
                usage = load_usage(uow, agent, at, {60})
                load_ms.append((time.perf_counter() - t0) * 1000)
                uow.commit()
            unit_ms.append((time.perf_counter() - start) * 1000)
            assert usage.requests[60] > 0
        db.close()
        print(
            json.dumps(
                {
                    "size": size,
                    "load_p50": statistics.median(load_ms),
                    "load_p99": percentile(load_ms, 99),
                    "unit_p50": statistics.median(unit_ms),
                    "unit_p99": percentile(unit_ms, 99),
                }
            ),
            flush=True,
        )


def run_tree(tree: Path, sizes: list[int], samples: int, workdir: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(tree / "src"),
            "--sizes",
            ",".join(map(str, sizes)),
            "--samples",
            str(samples),
            "--dir",
            str(workdir),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree / "src")},
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--samples", type=int, default=120, help="units of work per size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.samples, args.rounds = "100,1000", 20, 1
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.child:
        child(args.child, sizes, args.samples, args.dir)
        return
    emit(
        bench="environment",
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    trees = [("this", HERE)]
    if args.baseline_tree is not None:
        trees.append(("baseline", args.baseline_tree.resolve()))
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="waiaas-bench-usage-rate-") as tmp:
        workdir = args.dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for r in range(args.rounds):
            for label, tree in trees if r % 2 == 0 else trees[::-1]:
                for result in run_tree(tree, sizes, args.samples, workdir):
                    found.setdefault((label, result["size"]), []).append(result)
    for label, tree in trees:
        p50: dict[int, float] = {}
        for size in sizes:
            rounds = found[(label, size)]
            p50[size] = statistics.median(x["load_p50"] for x in rounds)
            emit(
                bench="usage_rate",
                tree=str(tree),
                baseline=label == "baseline",
                rows_in_last_minute=size,
                window_s=60,
                rounds=len(rounds),
                load_usage_p50_ms=round(p50[size], 3),
                load_usage_p99_ms=round(statistics.median(x["load_p99"] for x in rounds), 3),
                unit_p50_ms=round(statistics.median(x["unit_p50"] for x in rounds), 3),
                unit_p99_ms=round(statistics.median(x["unit_p99"] for x in rounds), 3),
            )
        emit(
            bench="usage_rate_ratio",
            tree=str(tree),
            baseline=label == "baseline",
            rows=f"{max(sizes)} / {min(sizes)}",
            load_usage_p50_ratio=round(p50[max(sizes)] / p50[min(sizes)], 3),
        )


if __name__ == "__main__":
    main()
