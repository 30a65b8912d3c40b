"""Policy engine benchmark: evaluate() latency, and usage loading against history size.

Run ``python benchmarks/bench_policy.py [--quick]``. Prints one JSON object per line:

* ``environment``: Python, SQLite and machine facts.
* ``baseline``: in the same run, the cost of ``evaluate`` with no policy at all, and the
  raw cost of ``pydantic`` validating the same request dict (``Transfer.model_validate``):
  the floor any policy check pays.
* ``evaluate``: p50 / p99 of ``evaluate`` with 1, 10 and 50 policies (a mix of every type,
  all applicable, all passing so that every rule is fully evaluated), with the ratio to the
  zero-policy baseline.
* ``usage``: p50 / p99 of ``load_usage`` + ``evaluate`` on a real SQLite file holding 1k,
  100k and 1M transactions of history (bulk loaded with raw ``executemany``). The agent's
  last 7 days always hold the same 1,000 rows; the rest is older, so a flat line shows the
  cost follows the window, not the history. ``load_s`` is the bulk-load time; the baseline
  is a bare ``sqlite3`` SELECT of the same window rows on the same file.
  ``evaluate_and_reserve`` is the pipeline's admission step: ``load_usage`` + ``evaluate`` +
  the insert of the new transaction row, in one ``BEGIN IMMEDIATE`` unit of work, committed.

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from waiaas.db import Database
from waiaas.db.tables import TransactionRow
from waiaas.ids import new_id
from waiaas.policy import (
    AgentContext,
    PolicySpec,
    compute_usage,
    evaluate,
    required_windows,
)
from waiaas.services.policies import load_usage
from waiaas.types import Transfer

NOW = 1_780_000_000
SOL = 10**9
DEST = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
OTHER = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
OWNER = "So11111111111111111111111111111111111111112"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
META = (
    '{"asset":"native","request":{"type":"TRANSFER","to":"' + DEST + '","amount":"%d"}}'
)  # the shape the pipeline writes, pre-rendered so the bulk load stays fast
SPEND = '{"native":"%d"}'  # the transactions.spend column


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, separators=(",", ":")), flush=True)


def timed(fn: Callable[[], object], n: int, warmup: int = 50) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples: list[int] = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return {
        "n": n,
        "p50_us": round(samples[n // 2] / 1000, 2),
        "p99_us": round(samples[min(n - 1, int(n * 0.99))] / 1000, 2),
        "mean_us": round(statistics.fmean(samples) / 1000, 2),
    }


def policy_mix(count: int) -> list[PolicySpec]:
    """``count`` applicable policies cycling through every type; all let the request pass."""
    templates: list[tuple[str, dict[str, Any]]] = [
        (
            "SPENDING_LIMIT",
            {
                "per_transaction": str(100 * SOL),
                "daily_total": str(10**6 * SOL),
                "instant_max": str(SOL),
                "notify_max": str(10 * SOL),
            },
        ),
        ("ALLOWED_ADDRESSES", {"addresses": [DEST, OTHER]}),
        ("TIME_RESTRICTION", {"allowed_days": [1, 2, 3, 4, 5, 6, 7], "timezone": "Europe/Berlin"}),
        ("AUTO_STOP", {"trigger": "max_transactions", "threshold": 10**6, "window_seconds": 300}),
        ("RATE_LIMIT", {"max_requests": 10**6, "window_seconds": 60}),
        ("ALLOWED_TOKENS", {"tokens": [TOKEN]}),
        ("CONTRACT_WHITELIST", {"contracts": [TOKEN]}),
        ("APPROVED_SPENDERS", {"spenders": [DEST]}),
        ("APPROVE_AMOUNT_LIMIT", {"max_amount": "1000"}),
        ("ALLOWED_NETWORKS", {"networks": ["devnet"]}),
        ("AUTO_STOP", {"trigger": "consecutive_failures", "threshold": 5}),
    ]
    specs = []
    for i in range(count):
        kind, rules = templates[i % len(templates)]
        specs.append(PolicySpec(id=f"p{i}", agent_id=None, type=kind, rules=rules, priority=i % 7))
    return specs


def bench_evaluate(n: int) -> None:
    agent = AgentContext(id="agent", chain="solana", network="devnet", owner_address=OWNER)
    request = Transfer(to=DEST, amount=SOL // 2)
    raw = {"type": "TRANSFER", "to": DEST, "amount": str(SOL // 2)}
    history = [(NOW - i * 600, "CONFIRMED", "native", SOL // 10) for i in range(50)]
    from waiaas.policy import UsageRow

    rows = [UsageRow(*h) for h in history]
    base_usage = compute_usage(rows, NOW, required_windows([]))
    zero = timed(lambda: evaluate(request, agent, [], base_usage, NOW), n)
    validate = timed(lambda: Transfer.model_validate(raw), n)
    emit({"bench": "baseline", "what": "evaluate, 0 policies", **zero})
    emit({"bench": "baseline", "what": "pydantic Transfer.model_validate(dict)", **validate})
    for count in (1, 10, 50):
        specs = policy_mix(count)
        usage = compute_usage(rows, NOW, required_windows(specs))
        decision = evaluate(request, agent, specs, usage, NOW)
        assert decision.allowed, decision.summary()
        result = timed(functools.partial(evaluate, request, agent, specs, usage, NOW), n)
        emit(
            {
                "bench": "evaluate",
                "policies": count,
                **result,
                "x_zero_policy_p50": round(result["p50_us"] / zero["p50_us"], 2),
                "x_validate_p50": round(result["p50_us"] / validate["p50_us"], 2),
            }
        )


def _b58(rng: random.Random) -> str:
    return "".join(rng.choice(B58) for _ in range(44))


def _bulk_load(path: Path, size: int, window_rows: int) -> tuple[str, float]:
    """Create ``path`` with one agent and ``size`` transactions; return (agent id, seconds)."""
    Database.open(path).close()  # create and migrate
    agent_id = new_id()
    rng = random.Random(size)
    start = time.perf_counter()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")  # bulk load only; WAL again below
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")
    con.execute(
        "INSERT INTO agents (id, name, chain, network, public_key, status, owner_address,"
        " created_at, updated_at) VALUES (?, 'bench', 'solana', 'devnet', ?, 'ACTIVE', ?, ?, ?)",
        (agent_id, _b58(rng), OWNER, NOW - 400 * 86_400, NOW),
    )

    def rows(count: int, lo: int, hi: int) -> Any:
        # Ascending timestamps (as a live wallet writes them): index inserts append.
        step = max((hi - lo) / max(count, 1), 1e-9)
        for i in range(count):
            amount = rng.randrange(1, SOL)
            status = "CONFIRMED" if rng.random() < 0.9 else "FAILED"
            error = None if status == "CONFIRMED" else "reverted"
            yield (
                new_id(),
                agent_id,
                "solana",
                "TRANSFER",
                str(amount),
                DEST,
                status,
                int(lo + i * step),
                error,
                META % amount,
                SPEND % amount,
            )

    sql = (
        "INSERT INTO transactions (id, agent_id, chain, type, amount, to_address, status,"
        " created_at, error, metadata, spend) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    recent = min(window_rows, size)
    con.executemany(sql, rows(size - recent, NOW - 400 * 86_400, NOW - 8 * 86_400))
    con.executemany(sql, rows(recent, NOW - 7 * 86_400 + 1, NOW))
    con.commit()
    con.execute("ANALYZE")
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return agent_id, time.perf_counter() - start


def _bench_history(path: Path, size: int, n: int, window_rows: int) -> None:
    agent_id, load_s = _bulk_load(path, size, window_rows)
    agent = AgentContext(id=agent_id, chain="solana", network="devnet", owner_address=OWNER)
    specs = policy_mix(10)
    windows = required_windows(specs)
    request = Transfer(to=DEST, amount=SOL // 2)
    db = Database.open(path)
    try:

        def step() -> None:
            with db.read() as uow:
                usage = load_usage(uow, agent_id, NOW, windows)
            evaluate(request, agent, specs, usage, NOW)

        def load_only() -> None:
            with db.read() as uow:
                load_usage(uow, agent_id, NOW, windows)

        def reserve() -> None:
            # evaluate_and_reserve: decision and the new row in one BEGIN IMMEDIATE unit.
            with db.write() as uow:
                usage = load_usage(uow, agent_id, NOW, windows)
                decision = evaluate(request, agent, specs, usage, NOW)
                uow.transactions.add(
                    TransactionRow(
                        id=new_id(),
                        agent_id=agent_id,
                        chain="solana",
                        type="TRANSFER",
                        amount=str(request.amount),
                        to_address=DEST,
                        status="PENDING" if decision.allowed else "FAILED",
                        tier=decision.tier.value if decision.allowed else None,
                        created_at=NOW,
                        metadata_json=META % request.amount,
                        spend=SPEND % request.amount,
                    )
                )
                uow.commit()

        both = timed(step, n, warmup=5)
        load = timed(load_only, n, warmup=5)
        reserved = timed(reserve, n, warmup=5)
    finally:
        db.close()
    raw_con = sqlite3.connect(path)
    try:
        args = (agent_id, NOW - max(windows))
        raw = timed(
            lambda: raw_con.execute(
                "SELECT id, created_at, status, error, metadata FROM transactions "
                "WHERE agent_id = ? AND created_at > ?",
                args,
            ).fetchall(),
            n,
            warmup=5,
        )
    finally:
        raw_con.close()
    emit(
        {
            "bench": "usage",
            "history_rows": size,
            "rows_in_7d_window": min(window_rows, size),
            "load_s": round(load_s, 2),
            "load_usage_p50_us": load["p50_us"],
            "load_usage_p99_us": load["p99_us"],
            "load_usage_plus_evaluate": both,
            "evaluate_and_reserve": reserved,
            "baseline_raw_sqlite3_window_select_p50_us": raw["p50_us"],
        }
    )


def bench_usage(sizes: list[int], n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"history-{size}.db"
            _bench_history(path, size, n, window_rows=1_000)
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, no 1M history")
    args = parser.parse_args()
    emit(
        {
            "bench": "environment",
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        }
    )
    bench_evaluate(500 if args.quick else 3000)
    sizes = [1_000, 100_000] if args.quick else [1_000, 100_000, 1_000_000]
    bench_usage(sizes, 30 if args.quick else 100)


if __name__ == "__main__":
    main()
