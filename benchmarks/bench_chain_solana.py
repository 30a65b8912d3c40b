"""Solana adapter benchmark: build + sign + submit + confirm throughput, against bare LiteSVM.

Run ``python benchmarks/bench_chain_solana.py``. Prints one JSON object per line:

* ``bare_litesvm``: the baseline, measured in the same run: solders builds a System transfer
  (``MessageV0.try_compile``), signs it (``VersionedTransaction``) and LiteSVM executes it
  (``send_transaction``); distinct amounts, one blockhash, no reads, no checks.
* ``adapter_litesvm``: ``SolanaAdapter.local()``: ``build`` (address and amount validation,
  blockhash, fee), ``sign``, ``submit`` (preflight simulation, then send), and
  ``wait_for_confirmation`` (a status read). ``adapter_litesvm_no_preflight`` skips the
  simulation. ``adapter_litesvm_token`` does SPL ``transfer_checked`` (the mint and both token
  accounts are read during build) against a bare ``transfer_checked`` baseline.
* ``adapter_rpc``: ``SolanaAdapter.rpc()`` against the LiteSVM-backed JSON-RPC test server on
  127.0.0.1, five HTTP round trips per transaction (getLatestBlockhash, getFeeForMessage,
  sendTransaction, getSignatureStatuses, getTransaction).

Each figure is the median of 3 runs; ``ratio`` = adapter tx/s / baseline tx/s. Timings vary
with the machine; nothing here is asserted.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "chains"))

from solana_rpc_server import SolanaRpcServer  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.litesvm import LiteSVM  # noqa: E402
from solders.message import MessageV0  # noqa: E402
from solders.pubkey import Pubkey  # noqa: E402
from solders.system_program import TransferParams, transfer  # noqa: E402
from solders.transaction import VersionedTransaction  # noqa: E402

from waiaas.chains.base import ChainTxState  # noqa: E402
from waiaas.chains.solana import LocalSolanaAdapter, SolanaAdapter, spl  # noqa: E402
from waiaas.types import TokenTransfer, Transfer  # noqa: E402

RUNS = 3
SOL = 1_000_000_000


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def median_rate(run: Callable[[], tuple[int, float]]) -> tuple[float, list[float]]:
    rates = []
    for _ in range(RUNS):
        count, seconds = run()
        rates.append(count / seconds)
    return statistics.median(rates), [round(r, 1) for r in rates]


# --------------------------------------------------------------------------- baselines


def bare_transfers(n: int) -> tuple[int, float]:
    svm = LiteSVM()
    payer, dest = Keypair(), Keypair().pubkey()
    svm.airdrop(payer.pubkey(), 10_000 * SOL)
    blockhash = svm.latest_blockhash()
    start = time.perf_counter()
    for i in range(n):
        ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=dest, lamports=SOL + i))
        message = MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash)
        result = svm.send_transaction(VersionedTransaction(message, [payer]))
        assert not hasattr(result, "err"), result
    return n, time.perf_counter() - start


def bare_token_transfers(n: int) -> tuple[int, float]:
    adapter = SolanaAdapter.local()
    secret, me = adapter.generate_secret()
    adapter.fund(me, 100 * SOL)
    mint = adapter.create_test_token(6)
    bob = str(Keypair().pubkey())
    adapter.mint_test_token(mint, me, 10**15)
    adapter.mint_test_token(mint, bob, 1)
    svm = adapter._backend.svm  # type: ignore[attr-defined]
    owner = Keypair.from_seed(secret)
    mint_key = Pubkey.from_string(mint)
    source = spl.associated_token_address(owner.pubkey(), mint_key)
    dest = spl.associated_token_address(Pubkey.from_string(bob), mint_key)
    blockhash = adapter._backend.latest_blockhash().blockhash  # type: ignore[attr-defined]
    start = time.perf_counter()
    for i in range(n):
        ix = spl.transfer_checked(source, mint_key, dest, owner.pubkey(), 1 + i, 6)
        message = MessageV0.try_compile(owner.pubkey(), [ix], [], blockhash)
        result = svm.send_transaction(VersionedTransaction(message, [owner]))
        assert not hasattr(result, "err"), result
    return n, time.perf_counter() - start


# --------------------------------------------------------------------------- adapter


def adapter_run(adapter: LocalSolanaAdapter, n: int, token: bool = False) -> tuple[int, float]:
    secret, me = adapter.generate_secret()
    adapter.fund(me, 100 * SOL)
    bob = str(Keypair().pubkey())
    mint = None
    if token:
        mint = adapter.create_test_token(6)
        adapter.mint_test_token(mint, me, 10**15)
        adapter.mint_test_token(mint, bob, 1)
    start = time.perf_counter()
    for i in range(n):
        request = (
            TokenTransfer(token=mint, to=bob, amount=1 + i)
            if mint
            else Transfer(to=bob, amount=SOL // 1000 + i)
        )
        signed = adapter.sign(adapter.build(request, me), secret)
        adapter.submit(signed)
        status = adapter.wait_for_confirmation(signed, timeout=10)
        assert status.state == ChainTxState.CONFIRMED, status
    elapsed = time.perf_counter() - start
    adapter.close()
    return n, elapsed


def rpc_run(n: int) -> tuple[int, float]:
    with SolanaRpcServer() as server:
        adapter = LocalSolanaAdapter.rpc(server.url, network="localnet", timeout=10)
        return adapter_run(adapter, n)


def main() -> None:
    started = time.perf_counter()
    bare, bare_runs = median_rate(lambda: bare_transfers(2000))
    emit(bench="chain_solana", case="bare_litesvm", tx_per_s=round(bare, 1), runs=bare_runs, n=2000)

    cases: list[tuple[str, Callable[[], tuple[int, float]], int, float]] = [
        ("adapter_litesvm", lambda: adapter_run(SolanaAdapter.local(), 1000), 1000, bare),
        (
            "adapter_litesvm_no_preflight",
            lambda: adapter_run(SolanaAdapter.local(preflight=False), 1000),
            1000,
            bare,
        ),
        ("adapter_rpc", lambda: rpc_run(200), 200, bare),
    ]
    for name, run, n, baseline in cases:
        rate, runs = median_rate(run)
        emit(
            bench="chain_solana",
            case=name,
            tx_per_s=round(rate, 1),
            runs=runs,
            n=n,
            baseline="bare_litesvm",
            ratio=round(rate / baseline, 3),
        )

    bare_token, token_runs = median_rate(lambda: bare_token_transfers(1000))
    emit(
        bench="chain_solana",
        case="bare_litesvm_token",
        tx_per_s=round(bare_token, 1),
        runs=token_runs,
        n=1000,
    )
    rate, runs = median_rate(lambda: adapter_run(SolanaAdapter.local(), 500, token=True))
    emit(
        bench="chain_solana",
        case="adapter_litesvm_token",
        tx_per_s=round(rate, 1),
        runs=runs,
        n=500,
        baseline="bare_litesvm_token",
        ratio=round(rate / bare_token, 3),
    )
    emit(bench="chain_solana", case="total", seconds=round(time.perf_counter() - started, 1))


if __name__ == "__main__":
    main()
