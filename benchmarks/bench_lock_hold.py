"""Lock hold benchmark: another agent's send latency while one agent's chain is slow.

Run ``python benchmarks/bench_lock_hold.py`` (``--quick`` for a smoke run). One wallet on the
in-process chains (LiteSVM for Solana, eth-tester for EVM) with two agents on the same chain.
Agent A's chain calls at ``--point`` (``build``: every build, at admission and at signing;
``simulate``; ``submit``) sleep ``--stall`` seconds: a thread keeps A sending the whole time.
Agent B sends ``--txs`` INSTANT transfers one after the other and each send is timed.

Prints one JSON object per line:

* ``lock_hold`` with ``case`` = ``idle`` (A sends nothing: the baseline, same run, same
  wallet) and ``a_stalled`` (A is inside its slow call, or between two of them): B's send
  latency p50 / p90 / max in ms, and how many of A's sends finished meanwhile.
* ``lock_hold_summary``: ``p50_ratio`` = p50 with A stalled / p50 idle. Close to 1 means A's
  slow chain does not hold B up (before chain calls ran outside the write lock, B waited for
  the rest of A's stall, up to ``--stall`` seconds per send).

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from waiaas import Transfer, Wallet  # noqa: E402
from waiaas.chains.evm import EvmAdapter  # noqa: E402
from waiaas.chains.solana import SolanaAdapter  # noqa: E402
from waiaas.testing import TEST_PASSWORD, fast_config, fund  # noqa: E402

UNIT = {"solana": 10**6, "evm": 10**15}  # 0.001 SOL / ETH: INSTANT
FUNDS = {"solana": 10**13, "evm": 10**21}


def emit(kind: str, **data: Any) -> None:
    print(json.dumps({"kind": kind, **data}), flush=True)


class Slow:
    """Delegates to a real adapter; ``point`` calls made for ``sender`` sleep ``stall`` s."""

    def __init__(self, inner: Any, point: str, stall: float) -> None:
        self.inner = inner
        self.point = point
        self.stall = stall
        self.sender = ""
        self.inside = threading.Event()  # set once A was inside a slow call
        self.a_hashes: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def chain(self) -> str:
        return str(self.inner.chain)

    @property
    def network(self) -> str:
        return str(self.inner.network)

    def _maybe_stall(self, point: str, sender: str) -> None:
        if point == self.point and sender == self.sender:
            self.inside.set()
            time.sleep(self.stall)

    def build(self, request: Any, sender: str, *, nonce: int | None = None) -> Any:
        self._maybe_stall("build", sender)
        return self.inner.build(request, sender, nonce=nonce)

    def simulate_balance_changes(self, unsigned: Any, *, tokens: Any = ()) -> Any:
        self._maybe_stall("simulate", unsigned.sender)
        return self.inner.simulate_balance_changes(unsigned, tokens=tokens)

    def sign(self, unsigned: Any, secret: bytes) -> Any:
        signed = self.inner.sign(unsigned, secret)
        if unsigned.sender == self.sender:
            self.a_hashes.add(signed.tx_hash)
        return signed

    def submit(self, signed: Any) -> str:
        self._maybe_stall("submit", self.sender if signed.tx_hash in self.a_hashes else "")
        return str(self.inner.submit(signed))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _stats(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p90_ms": round(_percentile(ms, 0.9), 2),
        "max_ms": round(max(ms), 2),
    }


def run(chain: str, point: str, stall: float, txs: int) -> None:
    inner = SolanaAdapter.local() if chain == "solana" else EvmAdapter.local()
    slow = Slow(inner, point, stall)
    other = EvmAdapter.local() if chain == "solana" else SolanaAdapter.local()
    with tempfile.TemporaryDirectory() as tmp:
        wallet = Wallet.open(
            Path(tmp) / "w.db",
            password=TEST_PASSWORD,
            chains=[slow, other],  # type: ignore[list-item]
            config=fast_config(),
            background=False,
        )
        try:
            a = wallet.create_agent("a", chain)
            b = wallet.create_agent("b", chain)
            for agent in (a, b):
                fund(wallet, agent.id, FUNDS[chain])
            token_a = wallet.issue_session(a.id, ttl=86_400).token
            token_b = wallet.issue_session(b.id, ttl=86_400).token
            _s, dest = slow.generate_secret()
            if chain == "solana":
                slow.fund(dest, 10**9)
            slow.sender = a.public_key

            def b_sends() -> list[float]:
                out: list[float] = []
                for n in range(txs):
                    start = time.perf_counter()
                    result = wallet.send(token_b, Transfer(to=dest, amount=UNIT[chain] + n))
                    out.append((time.perf_counter() - start) * 1000)
                    assert result.status == "CONFIRMED", result.error
                return out

            idle = b_sends()
            stop = threading.Event()
            a_done: list[str] = []

            def a_loop() -> None:
                n = 0
                while not stop.is_set():
                    result = wallet.send(token_a, Transfer(to=dest, amount=UNIT[chain] + n))
                    a_done.append(str(result.status))
                    n += 1

            thread = threading.Thread(target=a_loop, daemon=True)
            thread.start()
            slow.inside.wait(60)
            stalled = b_sends()
            a_meanwhile = len(a_done)
            stop.set()
            thread.join(60 + 4 * stall)
        finally:
            wallet.close()
    common = {"chain": chain, "point": point, "stall_s": stall, "txs": txs}
    emit("lock_hold", case="idle", **common, **_stats(idle))
    emit("lock_hold", case="a_stalled", **common, a_sends_meanwhile=a_meanwhile, **_stats(stalled))
    emit(
        "lock_hold_summary",
        **common,
        p50_ratio=round(statistics.median(stalled) / statistics.median(idle), 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--txs", type=int, default=40)
    parser.add_argument("--stall", type=float, default=2.0)
    parser.add_argument("--point", choices=["build", "simulate", "submit"], default=None)
    args = parser.parse_args()
    txs, stall = (8, 0.5) if args.quick else (args.txs, args.stall)
    points = [args.point] if args.point else ["build", "simulate", "submit"]
    emit(
        "environment",
        python=platform.python_version(),
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    for chain in ("solana", "evm"):
        for point in points:
            run(chain, point, stall, txs)


if __name__ == "__main__":
    main()
