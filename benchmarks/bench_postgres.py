"""PostgreSQL vs SQLite: INSTANT send throughput with several processes, and the admission
latency of one agent while another is hammered.

Run ``python benchmarks/bench_postgres.py`` (``--quick`` for a smoke run). The PostgreSQL
server is ``$WAIAAS_TEST_POSTGRES_URL`` when set, else a private one started from Debian's
binaries (as the tests do) and deleted at the end; the SQLite wallet is a file in a
temporary directory: both measured in the same run, on the same machine.

Every worker is a process of its own (``--worker``) with its own in-process Solana chain
(LiteSVM), so the chain is never the shared bottleneck: what the processes share is the
database. Prints one JSON object per line:

* ``throughput``: ``backend``, ``processes`` (1, 4, 8), each process sending ``--txs``
  INSTANT transfers for an agent of its own, one after the other: ``tx_per_s`` (all sends /
  wall time from the common start to the last finish) and the median send latency.
* ``throughput_summary``: for each process count, ``pg_over_sqlite`` = PostgreSQL tx/s /
  SQLite tx/s, and each backend's ``scaling`` = tx/s with N processes / tx/s with 1.
* ``admission``: ``backend``, ``case`` = ``alone`` (agent B's admissions, nobody else
  working: the baseline) or ``contended`` (while ``--hammers`` processes hammer agent A with
  admissions): B's admission latency p50 / p90 in ms. The requests are DELAY-tier, so a send
  is admission only (session, policy, tier, the queued row), all database work.
  ``a_lock_held``: while one process keeps agent A's write unit of work open 50 ms at a time
  (almost no CPU: the lock alone).
* ``admission_summary``: ``p50_ratio`` = contended p50 / alone p50, ``held_p50_ratio`` =
  a_lock_held p50 / alone p50, per backend. On PostgreSQL different agents take different
  locks, so B does not queue behind A: ``held_p50_ratio`` stays near 1, and ``p50_ratio``
  measures only the CPU the hammers take on this machine; on SQLite every write waits for
  the one lock (up to 50 ms per admission when A's lock is held).

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from waiaas import Transfer, Wallet  # noqa: E402
from waiaas.config import WalletConfig  # noqa: E402
from waiaas.testing import TEST_PASSWORD, fast_config, fund, local_chains  # noqa: E402

SOL = 10**9
INSTANT = SOL // 1000  # far under the INSTANT threshold
DELAY = SOL // 1000  # with instant_max = notify_max = 0: DELAY tier, admission only (queued)
FUNDS = 10**5 * SOL


def emit(kind: str, **data: Any) -> None:
    print(json.dumps({"kind": kind, **data}), flush=True)


def _config(target: str) -> WalletConfig:
    config = fast_config()
    if target.startswith("postgresql") and "keystore_backend" not in WalletConfig.model_fields:
        # before the database keystore: a directory of this wallet's in the run's temporary one
        name = "ks-" + hashlib.sha256(target.encode()).hexdigest()[:16]
        keystore = str(Path(os.environ["BENCH_TMP"]) / name)
        config = config.model_copy(update={"keystore_dir": keystore})
    return config


def _open(target: str) -> Wallet:
    return Wallet.open(
        target if target.startswith("postgresql") else Path(target),
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=_config(target),
        background=False,
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------- worker


def holder(spec: dict[str, Any]) -> None:
    """One process holding agent A's write unit of work ``hold`` s out of every ``hold`` +
    1 ms (what a slow step of A under its lock looks like), for ``seconds``."""
    from waiaas.db import Database

    target = spec["target"]
    db = Database.open(target if target.startswith("postgresql") else Path(target))
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        end = time.perf_counter() + float(spec["seconds"])
        rounds = 0
        while time.perf_counter() < end:
            with db.write(agent_id=spec["agent_id"]) as uow:
                time.sleep(float(spec["hold"]))
                uow.commit()
            rounds += 1
            time.sleep(0.001)
        print(json.dumps({"ms": [], "rounds": rounds, "end": time.time()}), flush=True)
    finally:
        db.close()


def worker(spec: dict[str, Any]) -> None:
    """One process: open the wallet, fund the agent on its own chain, say ready, wait for
    ``go`` on stdin, send, print the latencies."""
    if spec.get("mode") == "holder":
        holder(spec)
        return
    wallet = _open(spec["target"])
    try:
        fund(wallet, spec["agent_id"], FUNDS)
        adapter = wallet.chain_adapter(spec["agent_id"])
        _s, dest = adapter.generate_secret()
        adapter.fund(dest, SOL)  # type: ignore[attr-defined]
        amount = int(spec["amount"])
        print("ready", flush=True)
        sys.stdin.readline()
        latencies: list[float] = []
        started = time.perf_counter()
        deadline = started + float(spec.get("seconds", 1e9))
        n = 0
        while n < int(spec["count"]) and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            result = wallet.send(spec["token"], Transfer(to=dest, amount=amount + n))
            latencies.append((time.perf_counter() - t0) * 1000)
            if result.status not in spec["expect"]:
                raise SystemExit(f"unexpected {result.status}: {result.error}")
            n += 1
        print(json.dumps({"ms": latencies, "end": time.time()}), flush=True)
    finally:
        wallet.close()


# ---------------------------------------------------------------------------- parent


@contextmanager
def postgres_url() -> Iterator[str]:
    """``$WAIAAS_TEST_POSTGRES_URL``, or a private server for the run."""
    from tests.support import postgres

    try:
        yield postgres.server_url()
    finally:
        postgres.stop_server()


def _new_target(backend: str, tmp: Path, pg: str) -> str:
    if backend == "sqlite":
        return str(tmp / f"w-{os.urandom(4).hex()}.db")
    from tests.support.pg_redirect import ensure_schema, url_with_schema

    schema = "bench_" + os.urandom(6).hex()
    ensure_schema(schema)
    return url_with_schema(pg, schema)


def _spawn(spec: dict[str, Any], tmp: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "BENCH_TMP": str(tmp),
    }
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _agents(target: str, names: list[str], *, delay: bool = False) -> list[tuple[str, str]]:
    """Create one Solana agent per name (``delay``: every send of theirs is DELAY tier);
    their (id, session token)."""
    wallet = _open(target)
    try:
        out = []
        for name in names:
            agent = wallet.create_agent(name, "solana")
            if delay:
                wallet.add_policy(
                    "SPENDING_LIMIT",
                    {"instant_max": "0", "notify_max": "0", "delay_max": str(10**30)},
                    agent_id=agent.id,
                )
            out.append((agent.id, wallet.issue_session(agent.id, ttl=86_400).token))
        return out
    finally:
        wallet.close()


def _run_together(specs: list[dict[str, Any]], tmp: Path) -> tuple[list[dict[str, Any]], float]:
    """Start every worker, wait until all are ready, release them at once; their results
    and the wall time from the release to the last finish."""
    procs = [_spawn(spec, tmp) for spec in specs]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"a worker failed to start: {line!r}")
    start = time.time()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"a worker failed ({proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results, max(r["end"] for r in results) - start


def throughput(backend: str, processes: int, txs: int, tmp: Path, pg: str) -> float:
    env_target = _new_target(backend, tmp, pg)
    agents = _agents(env_target, [f"p{i}" for i in range(processes)])
    specs = [
        {
            "target": env_target,
            "agent_id": agent_id,
            "token": token,
            "amount": INSTANT,
            "count": txs,
            "expect": ["CONFIRMED"],
        }
        for agent_id, token in agents
    ]
    results, wall = _run_together(specs, tmp)
    sends = sum(len(r["ms"]) for r in results)
    rate = sends / wall
    emit(
        "throughput",
        backend=backend,
        processes=processes,
        sends=sends,
        wall_s=round(wall, 2),
        tx_per_s=round(rate, 1),
        median_send_ms=round(statistics.median(ms for r in results for ms in r["ms"]), 2),
    )
    return rate


def admission(backend: str, hammers: int, txs: int, tmp: Path, pg: str) -> dict[str, float]:
    target = _new_target(backend, tmp, pg)
    (a_id, a_token), (b_id, b_token) = _agents(target, ["a", "b"], delay=True)
    b_spec = {
        "target": target,
        "agent_id": b_id,
        "token": b_token,
        "amount": DELAY,
        "count": txs,
        "expect": ["QUEUED"],
    }
    [alone], _ = _run_together([b_spec], tmp)
    a_spec = {
        **b_spec,
        "agent_id": a_id,
        "token": a_token,
        "count": 10**9,
        "seconds": 0.0,  # set below: as long as B takes, with room
    }
    # the hammers run well past B's measured sends (B's own time under contention, bounded)
    a_spec["seconds"] = max(5.0, 4 * sum(alone["ms"]) / 1000)
    results, _ = _run_together([b_spec] + [a_spec] * hammers, tmp)
    contended, a_results = results[0], results[1:]
    hold = {
        "target": target,
        "agent_id": a_id,
        "mode": "holder",
        "hold": 0.05,
        "seconds": a_spec["seconds"],
    }
    [held, holding], _ = _run_together([b_spec, hold], tmp)
    out = {}
    for case, ms, extra in (
        ("alone", alone["ms"], {}),
        ("contended", contended["ms"], {"a_admissions": sum(len(r["ms"]) for r in a_results)}),
        ("a_lock_held", held["ms"], {"a_hold_ms": 50, "a_rounds": holding["rounds"]}),
    ):
        p50 = statistics.median(ms)
        out[case] = p50
        emit(
            "admission",
            backend=backend,
            case=case,
            hammers=hammers if case == "contended" else 0,
            txs=len(ms),
            p50_ms=round(p50, 2),
            p90_ms=round(_percentile(ms, 0.9), 2),
            **extra,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--txs", type=int, default=40, help="sends per process")
    parser.add_argument("--hammers", type=int, default=4, help="processes hammering agent A")
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated (default: both)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    txs = 8 if args.quick else args.txs
    backends = [b for b in ("sqlite", "postgresql") if b in args.backends.split(",")]
    counts = [1, 4] if args.quick else [1, 4, 8]
    emit(
        "environment",
        python=platform.python_version(),
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    with postgres_url() as pg, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        os.environ["BENCH_TMP"] = tmpdir
        rates: dict[tuple[str, int], float] = {}
        for n in counts:
            for backend in backends:
                rates[backend, n] = throughput(backend, n, txs, tmp, pg)
        for n in counts if len(backends) == 2 else []:
            emit(
                "throughput_summary",
                processes=n,
                pg_over_sqlite=round(rates["postgresql", n] / rates["sqlite", n], 2),
                scaling_sqlite=round(rates["sqlite", n] / rates["sqlite", 1], 2),
                scaling_postgresql=round(rates["postgresql", n] / rates["postgresql", 1], 2),
            )
        for backend in backends:
            p50 = admission(backend, args.hammers, txs * 2, tmp, pg)
            emit(
                "admission_summary",
                backend=backend,
                hammers=args.hammers,
                p50_ratio=round(p50["contended"] / p50["alone"], 2),
                held_p50_ratio=round(p50["a_lock_held"] / p50["alone"], 2),
            )


if __name__ == "__main__":
    main()
