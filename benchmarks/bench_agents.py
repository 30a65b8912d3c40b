"""Agent layer benchmark: the tool call's overhead, AsyncWallet throughput, event-loop stalls.

Run ``python benchmarks/bench_agents.py`` (``--quick`` for a smoke run, ``--only stall`` for
the loop stalls alone). Prints one JSON object per line:

* ``tool_overhead`` (``chain`` = ``solana`` on LiteSVM / ``evm`` on eth-tester): INSTANT
  transfers sent with ``Toolkit.call_json("send_transfer", {"to", "amount": "0.001"})`` (JSON
  arguments checked, whole units parsed, the asset resolved, the result rendered in whole
  units as JSON) against ``wallet.send(token, Transfer(...))`` with the same amount, **same
  wallet, same run**, the two loops alternating. Medians of ``--runs`` runs of ``--txs``
  transfers; ``overhead_ms_per_call`` = tool ms - direct ms per transfer.
* ``async_throughput``: ``--txs`` transfers as concurrent tasks on one ``AsyncWallet`` (pool of
  ``max_workers`` threads) against the same number sent sequentially with the sync ``Wallet``
  (the baseline, same run, fresh wallet and chain each). ``ratio`` = async tx/s / sync tx/s.
* ``loop_stall`` (``backend`` = ``litesvm`` / ``eth-tester``, the in-process test chains;
  ``anvil`` and ``solana-rpc``, chains in another process: an anvil node, and the LiteSVM
  JSON-RPC test server in a child process): the event loop's stalls, measured by a 1 ms
  heartbeat (``tests/support/loop_probe.py``), while a wallet opens (the chain libraries are
  imported and the adapters built), one agent is set up, ``--txs`` (at most 50) transfers
  are sent and the wallet closes; each run in a fresh process. ``mode``: ``sync`` is the
  baseline, the synchronous ``Wallet`` called directly in a coroutine (open, then the sends
  one after another: the loop stalls for each whole call); ``async`` is ``AsyncWallet`` as
  shipped (concurrent sends; collection paused during open, then ``gc.freeze()``);
  ``async-no-freeze`` is ``AsyncWallet.open(freeze_gc=False)``. Per phase: the wall-clock
  gaps' p50 / p99 / max, ``own_max_ms`` (the largest gap with the time the machine kept this
  process off the CPU taken out; equal to the gap when a core is free; for ``sync`` read the
  wall-clock figures, since there the loop itself waits on I/O, which ``own`` does not see)
  and ``gc_max_ms`` (the longest garbage collection). The idle phase is the machine's own
  noise, same run.

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "chains"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

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


BACKENDS = ("litesvm", "eth-tester", "anvil", "solana-rpc")
MODES = ("sync", "async-no-freeze", "async")


@contextlib.contextmanager
def _backend(name: str) -> Iterator[tuple[str, Callable[[], list[Any]]] | None]:
    """(chain, adapters factory) for ``name``; None when it cannot run here (no anvil)."""
    from anvil import anvil_node, find_anvil
    from solana_rpc_server import solana_rpc_process

    from waiaas.chains.evm import EvmAdapter
    from waiaas.chains.solana import LocalSolanaAdapter, SolanaAdapter

    if name == "litesvm":
        yield "solana", lambda: [SolanaAdapter.local()]
    elif name == "eth-tester":
        yield "evm", lambda: [EvmAdapter.local()]
    elif name == "anvil":
        binary = find_anvil()
        if binary is None:
            yield None
            return
        with anvil_node(31337, binary=binary) as node:
            yield "evm", lambda: [EvmAdapter.anvil(node.url, chain_id=31337, network="local")]
    else:
        with solana_rpc_process() as url:
            yield "solana", lambda: [LocalSolanaAdapter.rpc(url, network="localnet")]


def stall_run(backend: str, mode: str, txs: int) -> None:
    """One loop-stall run, in this (fresh) process: prints one JSON line."""
    from loop_probe import open_and_send, open_and_send_sync

    with _backend(backend) as found, tempfile.TemporaryDirectory() as tmp:
        if found is None:
            print(json.dumps(None))
            return
        chain, chains = found
        path = Path(tmp) / "w.db"
        if mode == "sync":
            probe, outcomes = asyncio.run(open_and_send_sync(path, chains, chain, txs))
        else:
            run = open_and_send(path, chains, chain, txs, freeze_gc=mode == "async")
            probe, outcomes = asyncio.run(run)
    summary = probe.summary()
    summary.pop("end", None)
    statuses = sorted({str(getattr(o, "status", type(o).__name__)) for o in outcomes})
    print(json.dumps({"phases": summary, "statuses": statuses}))


def loop_stall(txs: int) -> None:
    for backend in BACKENDS:
        for mode in MODES:
            child = subprocess.run(
                [sys.executable, __file__, "--stall-run", backend, mode, "--txs", str(txs)],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            if result is None:
                emit("loop_stall", backend=backend, mode=mode, skipped="anvil not installed")
                continue
            emit("loop_stall", backend=backend, mode=mode, txs=txs, **result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--txs", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--stall-run", nargs=2, metavar=("BACKEND", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["tools", "throughput", "stall"], default=None)
    args = parser.parse_args()
    if args.stall_run:
        stall_run(args.stall_run[0], args.stall_run[1], args.txs)
        return
    txs, runs = (10, 1) if args.quick else (args.txs, args.runs)
    emit(
        "environment",
        python=platform.python_version(),
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    if args.only in (None, "tools"):
        for chain in ("solana", "evm"):
            tool_overhead(chain, txs, runs)
    if args.only in (None, "throughput"):
        for chain in ("solana", "evm"):
            throughput_runs = max(1, runs // 2) if not args.quick else 1
            async_throughput(chain, txs, throughput_runs, args.workers)
    if args.only in (None, "stall"):
        loop_stall(min(txs, 50))


if __name__ == "__main__":
    main()
