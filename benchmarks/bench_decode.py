"""Plan decoding and balance simulation: their cost per send, against build + sign alone.

Run ``python benchmarks/bench_decode.py``. Prints one JSON object per line, per chain
(LiteSVM, eth-tester) and request kind (native transfer, token transfer):

* ``baseline``: measured in the same run on the same adapter: ``build`` + ``sign``, what a
  send costs before anything of issue 9 is added.
* ``decode``: ``build`` + ``plan_of`` + ``decode_plan`` (with the adapter's account lookup) +
  ``plan_digest`` + ``sign``.
* ``decode_simulate``: the above plus ``simulate_balance_changes``.

Figures are per-send microseconds, the median of 3 runs; ``ratio`` = per-send time / the
baseline's. Nothing is submitted, so every run sees the same chain state. Timings vary with
the machine; nothing here is asserted.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from waiaas.chains.evm import EvmAdapter  # noqa: E402
from waiaas.chains.solana import SolanaAdapter  # noqa: E402
from waiaas.plan import decode_plan, plan_digest  # noqa: E402
from waiaas.types import TokenTransfer, Transfer  # noqa: E402

RUNS = 3
N = {"solana": 150, "evm": 40}


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def per_send_us(step: Callable[[int], None], n: int) -> tuple[float, list[float]]:
    """Median microseconds per call of ``step`` over RUNS runs of ``n`` calls."""
    figures = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for i in range(n):
            step(i)
        figures.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(figures), [round(f, 1) for f in figures]


def measure(chain: str, adapter: Any, secret: bytes, sender: str, requests: dict[str, Any]) -> None:
    lookup = adapter.account_lookup()

    def baseline(request: Any) -> Callable[[int], None]:
        def step(i: int) -> None:
            adapter.sign(adapter.build(request(i), sender), secret)

        return step

    def decoded(request: Any, simulate: bool) -> Callable[[int], None]:
        def step(i: int) -> None:
            unsigned = adapter.build(request(i), sender)
            plan = adapter.plan_of(unsigned)
            decode_plan(plan, lookup=lookup)
            plan_digest(plan)
            if simulate:
                adapter.simulate_balance_changes(unsigned)
            adapter.sign(unsigned, secret)

        return step

    for kind, request in requests.items():
        n = N[chain]
        base, base_runs = per_send_us(baseline(request), n)
        emit(bench="decode", chain=chain, kind=kind, case="baseline", us_per_send=round(base, 1),
             runs=base_runs, n=n)  # fmt: skip
        for case, simulate in (("decode", False), ("decode_simulate", True)):
            value, runs = per_send_us(decoded(request, simulate), n)
            emit(bench="decode", chain=chain, kind=kind, case=case, us_per_send=round(value, 1),
                 runs=runs, n=n, ratio=round(value / base, 3))  # fmt: skip


def solana() -> None:
    with SolanaAdapter.local() as adapter:
        secret, sender = adapter.generate_secret()
        adapter.fund(sender, 100 * 10**9)
        token = adapter.create_test_token(6)
        adapter.mint_test_token(token, sender, 10**12)
        bob = adapter.generate_secret()[1]
        adapter.fund(bob, 10**9)
        adapter.mint_test_token(token, bob, 1)  # bob's token account exists
        measure(
            "solana",
            adapter,
            secret,
            sender,
            {
                "transfer": lambda i: Transfer(to=bob, amount=1_000_000 + i),
                "token_transfer": lambda i: TokenTransfer(token=token, to=bob, amount=1 + i),
            },
        )


def evm() -> None:
    with EvmAdapter.local() as adapter:
        secret, sender = adapter.generate_secret()
        adapter.fund(sender, 10**21)
        token = adapter.create_test_token(6)
        adapter.mint_test_token(token, sender, 10**12)
        bob = adapter.generate_secret()[1]
        measure(
            "evm",
            adapter,
            secret,
            sender,
            {
                "transfer": lambda i: Transfer(to=bob, amount=10**12 + i),
                "token_transfer": lambda i: TokenTransfer(token=token, to=bob, amount=1 + i),
            },
        )


if __name__ == "__main__":
    solana()
    evm()
