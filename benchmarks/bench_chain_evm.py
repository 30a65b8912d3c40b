"""EVM adapter throughput against bare web3 on the same chain, in the same run.

For each backend (in-process eth-tester, and a real anvil node when installed) it measures
native transfers per second, one after another, through:

* ``adapter``: ``EvmAdapter.build`` (gas estimate, fee data, balance check, nonce allocation)
  + ``sign`` + ``submit`` + ``wait_for_confirmation``;
* ``web3``: the bare baseline a hand-written client would run: ``sign_transaction`` with
  fields computed locally (nonce counter, fixed fees, gas 21000) + ``send_raw_transaction``
  + ``wait_for_transaction_receipt(poll_latency=0.005)``, on a middleware-free ``Web3``;
* ``adapter-threads``: the adapter with 8 threads sending for one sender at once.

Each figure is the median of 3 runs on a fresh chain. Output: one JSON object per line;
the ``ratio`` lines give adapter / web3 throughput. Run::

    python benchmarks/bench_chain_evm.py [--txs 100]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "chains"))

from evm_fixtures import web3_for  # noqa: E402

from waiaas.chains.base import ChainTxState  # noqa: E402
from waiaas.chains.evm import EvmAdapter, EvmDevAdapter  # noqa: E402
from waiaas.chains.evm.addresses import to_checksum  # noqa: E402
from waiaas.types import Transfer  # noqa: E402

RUNS = 3
RECIPIENT = to_checksum("5a" * 20)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def adapter_run(adapter: EvmDevAdapter, txs: int) -> float:
    """Sequential build + sign + submit + confirm; returns tx/s."""
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**20)
    start = time.perf_counter()
    for i in range(txs):
        unsigned = adapter.build(Transfer(to=RECIPIENT, amount=1 + i), sender)
        signed = adapter.sign(unsigned, secret)
        adapter.submit(signed)
        status = adapter.wait_for_confirmation(signed)
        assert status.state is ChainTxState.CONFIRMED, status
    return txs / (time.perf_counter() - start)


def adapter_threads_run(adapter: EvmDevAdapter, txs: int, threads: int = 8) -> float:
    """The same, with ``threads`` threads sending for one sender concurrently."""
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**20)

    def one(i: int) -> None:
        unsigned = adapter.build(Transfer(to=RECIPIENT, amount=1 + i), sender)
        signed = adapter.sign(unsigned, secret)
        adapter.submit(signed)
        assert adapter.wait_for_confirmation(signed).state is ChainTxState.CONFIRMED

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(txs)))
    return txs / (time.perf_counter() - start)


def web3_run(adapter: EvmDevAdapter, txs: int) -> float:
    """Bare web3 on the same chain: locally computed fields, sign, send, wait for receipt."""
    from eth_account import Account

    w3 = web3_for(adapter)  # a middleware-free Web3 on the same chain
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**20)
    account = Account.from_key(secret)
    chain_id = adapter.chain_id
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    nonce = w3.eth.get_transaction_count(sender)
    start = time.perf_counter()
    for i in range(txs):
        tx = {
            "type": 2,
            "chainId": chain_id,
            "nonce": nonce + i,
            "to": RECIPIENT,
            "value": 1 + i,
            "gas": 21_000,
            "maxFeePerGas": 2 * base + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.005)
        assert receipt["status"] == 1
    return txs / (time.perf_counter() - start)


@contextlib.contextmanager
def tester_chain() -> Iterator[EvmDevAdapter]:
    with EvmAdapter.local() as adapter:
        yield adapter


def anvil_factory() -> Callable[[], contextlib.AbstractContextManager[EvmDevAdapter]] | None:
    from anvil import anvil_node, find_anvil

    binary = find_anvil()
    if binary is None:
        return None

    @contextlib.contextmanager
    def chain() -> Iterator[EvmDevAdapter]:
        with (
            anvil_node(31337, binary=binary) as node,
            EvmAdapter.anvil(node.url, chain_id=node.chain_id) as adapter,
        ):
            yield adapter

    return chain


def measure(
    backend: str,
    chain: Callable[[], contextlib.AbstractContextManager[EvmDevAdapter]],
    txs: int,
) -> None:
    results: dict[str, float] = {}
    for impl, run in (
        ("web3", web3_run),
        ("adapter", adapter_run),
        ("adapter-threads", adapter_threads_run),
    ):
        samples = []
        for _ in range(RUNS):
            with chain() as adapter:
                samples.append(run(adapter, txs))
        median = statistics.median(samples)
        results[impl] = median
        emit(
            bench="evm_native_transfer",
            backend=backend,
            impl=impl,
            txs_per_run=txs,
            tx_per_s=round(median, 1),
            ms_per_tx=round(1000 / median, 2),
            runs=[round(s, 1) for s in samples],
        )
    emit(
        bench="evm_native_transfer",
        backend=backend,
        ratio="adapter/web3",
        value=round(results["adapter"] / results["web3"], 3),
        threads_ratio=round(results["adapter-threads"] / results["web3"], 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=100, help="transactions per run")
    args = parser.parse_args()
    measure("eth-tester", tester_chain, args.txs)
    anvil = anvil_factory()
    if anvil is None:
        emit(bench="evm_native_transfer", backend="anvil", skipped="anvil binary not found")
    else:
        measure("anvil", anvil, args.txs)


if __name__ == "__main__":
    main()
