"""Agent layer benchmark: the tool call's overhead, AsyncWallet throughput, event-loop stalls.

Run ``python benchmarks/bench_agents.py`` (``--quick`` for a smoke run). Prints one JSON object
per line:

* ``tool_overhead`` (``chain`` = ``solana`` on LiteSVM / ``evm`` on eth-tester): INSTANT
  transfers sent with ``Toolkit.call_json("send_transfer", {"to", "amount": "0.001"})`` (JSON
  arguments checked, whole units parsed, the asset resolved, the result rendered in whole
  units as JSON) against ``wallet.send(token, Transfer(...))`` with the same amount, **same
  wallet, same run**, the two loops alternating. Medians of ``--runs`` runs of ``--txs``
  transfers; ``overhead_ms_per_call`` = tool ms - direct ms per transfer.
* ``async_throughput``: ``--txs`` transfers as concurrent tasks on one ``AsyncWallet`` (pool of
  ``max_workers`` threads) against the same number sent sequentially with the sync ``Wallet``
  (the baseline, same run, fresh wallet and chain each). ``ratio`` = async tx/s / sync tx/s.
* ``loop_stall``: the event loop's longest gap beyond a 1 ms heartbeat (and its p99) while
  ``AsyncWallet.open`` runs (building the in-process chains in the pool) and then ``--txs``
  concurrent sends, against the same heartbeat on an idle loop in the same run (the machine's
  own scheduling noise). ``gc_freeze`` true: ``gc.freeze()`` was called after open. The
  target is <= 20 ms over the idle baseline.

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from waiaas import AsyncWallet, Transfer, Wallet  # noqa: E402
from waiaas.testing import TEST_PASSWORD, fast_config, fund, local_chains  # noqa: E402
from waiaas.tools import Toolkit  # noqa: E402

UNIT = {"solana": 10**6, "evm": 10**15}  # "0.001" SOL / ETH
FUNDS = {"solana": 10**12, "evm": 10**21}
DEST = {
    "solana": "So11111111111111111111111111111111111111112",
    "evm": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
}


def emit(kind: str, **data: Any) -> None:
    print(json.dumps({"kind": kind, **data}), flush=True)


def _wallet(directory: str, chain: str) -> tuple[Wallet, str]:
    wallet = Wallet.open(
        Path(directory) / "w.db",
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=fast_config(),
        background=False,
    )
    agent = wallet.create_agent("bench", chain)
    fund(wallet, agent.id, FUNDS[chain])
    return wallet, wallet.issue_session(agent.id, ttl=86_400).token


def tool_overhead(chain: str, txs: int, runs: int) -> None:
    direct: list[float] = []
    tool: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        wallet, token = _wallet(tmp, chain)
        kit = Toolkit(wallet.agent(token))
        request = Transfer(to=DEST[chain], amount=UNIT[chain])
        args = json.dumps({"to": DEST[chain], "amount": "0.001"})
        for run in range(runs):
            order = ["direct", "tool"] if run % 2 == 0 else ["tool", "direct"]
            for which in order:
                start = time.perf_counter()
                for _ in range(txs):
                    if which == "direct":
                        wallet.send(token, request)
                    else:
                        reply = kit.call_json("send_transfer", args)
                        assert '"CONFIRMED"' in reply, reply
                per_tx = (time.perf_counter() - start) / txs * 1000
                (direct if which == "direct" else tool).append(per_tx)
        wallet.close()
    d, t = statistics.median(direct), statistics.median(tool)
    emit(
        "tool_overhead",
        chain=chain,
        txs=txs,
        runs=runs,
        direct_ms_per_tx=round(d, 2),
        tool_ms_per_tx=round(t, 2),
        overhead_ms_per_call=round(t - d, 2),
        ratio=round(t / d, 3),
    )


async def _async_sends(path: Path, chain: str, txs: int, workers: int) -> float:
    wallet = await AsyncWallet.open(
        path,
        password=TEST_PASSWORD,
        chains=local_chains,
        config=fast_config(),
        background=False,
        max_workers=workers,
    )
    agent = await wallet.create_agent("bench", chain)
    await asyncio.to_thread(fund, wallet.sync, agent.id, FUNDS[chain])
    handle = await wallet.agent((await wallet.issue_session(agent.id, ttl=86_400)).token)
    request = Transfer(to=DEST[chain], amount=UNIT[chain])
    start = time.perf_counter()
    await asyncio.gather(*(handle.send(request) for _ in range(txs)))
    elapsed = time.perf_counter() - start
    await wallet.close()
    return txs / elapsed


def async_throughput(chain: str, txs: int, runs: int, workers: int) -> None:
    sync_rates: list[float] = []
    async_rates: list[float] = []
    for run in range(runs):
        order = ["sync", "async"] if run % 2 == 0 else ["async", "sync"]
        for which in order:
            with tempfile.TemporaryDirectory() as tmp:
                if which == "sync":
                    wallet, token = _wallet(tmp, chain)
                    request = Transfer(to=DEST[chain], amount=UNIT[chain])
                    start = time.perf_counter()
                    for _ in range(txs):
                        wallet.send(token, request)
                    sync_rates.append(txs / (time.perf_counter() - start))
                    wallet.close()
                else:
                    rate = asyncio.run(_async_sends(Path(tmp) / "w.db", chain, txs, workers))
                    async_rates.append(rate)
    s, a = statistics.median(sync_rates), statistics.median(async_rates)
    emit(
        "async_throughput",
        chain=chain,
        txs=txs,
        runs=runs,
        max_workers=workers,
        sync_tx_per_s=round(s, 1),
        async_tx_per_s=round(a, 1),
        ratio=round(a / s, 3),
    )


async def _heartbeat(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last - 0.001)
        last = now


def _summary(gaps: list[float]) -> dict[str, float]:
    ordered = sorted(gaps)
    return {
        "max_ms": round(ordered[-1] * 1000, 1),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 1),
    }


async def _stall(path: Path, chain: str, txs: int, freeze: bool) -> dict[str, Any]:
    gaps_idle: list[float] = []
    stop = asyncio.Event()
    beat = asyncio.create_task(_heartbeat(gaps_idle, stop))
    await asyncio.sleep(2.0)
    stop.set()
    await beat

    gaps_open: list[float] = []
    stop = asyncio.Event()
    beat = asyncio.create_task(_heartbeat(gaps_open, stop))
    wallet = await AsyncWallet.open(
        path, password=TEST_PASSWORD, chains=local_chains, config=fast_config(), background=False
    )
    stop.set()
    await beat
    if freeze:
        gc.collect()
        gc.freeze()
    agent = await wallet.create_agent("bench", chain)
    await asyncio.to_thread(fund, wallet.sync, agent.id, FUNDS[chain])
    handle = await wallet.agent((await wallet.issue_session(agent.id, ttl=86_400)).token)
    request = Transfer(to=DEST[chain], amount=UNIT[chain])

    gaps_send: list[float] = []
    stop = asyncio.Event()
    beat = asyncio.create_task(_heartbeat(gaps_send, stop))
    await asyncio.gather(*(handle.send(request) for _ in range(txs)))
    stop.set()
    await beat
    await wallet.close()
    if freeze:
        gc.unfreeze()
    return {
        "idle": _summary(gaps_idle),
        "open": _summary(gaps_open),
        "sends": _summary(gaps_send),
    }


def loop_stall(chain: str, txs: int) -> None:
    for freeze in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(_stall(Path(tmp) / "w.db", chain, txs, freeze))
        emit("loop_stall", chain=chain, txs=txs, gc_freeze=freeze, **result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--txs", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    txs, runs = (10, 1) if args.quick else (args.txs, args.runs)
    emit(
        "environment",
        python=platform.python_version(),
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    for chain in ("solana", "evm"):
        tool_overhead(chain, txs, runs)
    for chain in ("solana", "evm"):
        async_throughput(chain, txs, max(1, runs // 2) if not args.quick else 1, args.workers)
    for chain in ("solana", "evm"):
        loop_stall(chain, txs)


if __name__ == "__main__":
    main()
