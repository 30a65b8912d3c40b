"""Nonces stay distinct when one agent transacts from many threads, and failures leave no gap."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from evm_fixtures import EvmEnv

from waiaas.chains.base import ChainTxState, ChainTxStatus, SignedTx
from waiaas.chains.evm.nonces import NonceAllocator
from waiaas.errors import InsufficientFundsError, InvalidInputError
from waiaas.types import Transfer


def test_allocator_hands_out_distinct_nonces_across_threads() -> None:
    """64 threads allocating for one sender against a node that lags get 0..63 exactly."""
    nonces = NonceAllocator()
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(64)

    def work() -> None:
        start.wait()
        n = nonces.allocate("0xA", lambda: 0)
        with lock:
            got.append(n)

    threads = [threading.Thread(target=work) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(64))


def test_allocator_follows_the_node_and_reuses_released_nonces() -> None:
    """max(node, local); a released nonce is reused unless the node has used it meanwhile;
    a reserved nonce is never handed out again."""
    nonces = NonceAllocator()
    assert nonces.allocate("0xA", lambda: 5) == 5
    assert nonces.allocate("0xA", lambda: 5) == 6  # the node has not seen 5 yet
    assert nonces.allocate("0xA", lambda: 10) == 10  # another process sent 6..9
    nonces.release("0xA", 10)
    assert nonces.allocate("0xA", lambda: 10) == 10
    nonces.release("0xA", 10)
    assert nonces.allocate("0xA", lambda: 11) == 11  # 10 got used elsewhere: not reused
    nonces.release("0xA", 40)  # never handed out: ignored
    assert nonces.allocate("0xA", lambda: 0) == 12
    nonces.reserve("0xA", 20)
    assert nonces.allocate("0xA", lambda: 0) == 21
    assert nonces.peek("0xA") == 22
    assert nonces.allocate("0xB", lambda: 0) == 0  # senders are independent
    assert nonces.peek("0xC") is None


def _send_all(
    env: EvmEnv, secret: bytes, sender: str, count: int
) -> list[tuple[SignedTx, ChainTxStatus]]:
    adapter = env.adapter
    start = threading.Barrier(count)

    def one(i: int) -> tuple[SignedTx, ChainTxStatus]:
        recipient = "0x5e" + f"{i:038x}"
        start.wait()
        unsigned = adapter.build(Transfer(to=recipient, amount=1_000 + i), sender)
        signed = adapter.sign(unsigned, secret)
        adapter.submit(signed)
        return signed, adapter.wait_for_confirmation(signed, timeout=60)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_sends_from_one_sender_all_confirm(evm_env: EvmEnv) -> None:
    """16 threads build, sign and submit for one sender at once: 16 distinct nonces, all
    confirmed, and every balance exact. (On eth-tester, which has no mempool, out-of-order
    submissions wait in the backend's queue until the gap closes.)"""
    adapter = evm_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    results = _send_all(evm_env, secret, sender, 16)

    nonces = sorted(signed.nonce for signed, _ in results if signed.nonce is not None)
    assert nonces == list(range(16))
    assert all(status.state is ChainTxState.CONFIRMED for _, status in results)
    fees = sum(status.fee or 0 for _, status in results)
    sent = sum(1_000 + i for i in range(16))
    assert adapter.get_balance(sender) == 10**18 - sent - fees
    for i in range(16):
        assert adapter.get_balance("0x5e" + f"{i:038x}") == 1_000 + i
    assert adapter.pending_nonce(sender) == 16


def test_concurrent_senders_do_not_interfere(evm_env: EvmEnv) -> None:
    """Four senders, four threads each, at the same time: every sender's nonces are 0..3."""
    adapter = evm_env.adapter
    keys = [adapter.generate_secret() for _ in range(4)]
    for _, address in keys:
        adapter.fund(address, 10**17)
    start = threading.Barrier(16)

    def one(job: int) -> SignedTx:
        secret, sender = keys[job % 4]
        start.wait()
        unsigned = adapter.build(Transfer(to="0x" + "5a" * 20, amount=1), sender)
        signed = adapter.sign(unsigned, secret)
        adapter.submit(signed)
        assert adapter.wait_for_confirmation(signed, timeout=60).state is ChainTxState.CONFIRMED
        return signed

    with ThreadPoolExecutor(max_workers=16) as pool:
        signed = list(pool.map(one, range(16)))
    for index, (_, address) in enumerate(keys):
        mine = sorted(
            s.nonce for j, s in enumerate(signed) if j % 4 == index and s.nonce is not None
        )
        assert mine == [0, 1, 2, 3]
        assert adapter.pending_nonce(address) == 4
    assert adapter.get_balance("0x" + "5a" * 20) == 16


def test_a_refused_submission_gives_its_nonce_back(evm_env: EvmEnv) -> None:
    """A transaction refused for good (insufficient funds at submit) does not leave a gap:
    the next build reuses its nonce and confirms."""
    adapter = evm_env.adapter
    secret, sender = adapter.generate_secret()
    fund = 10**18
    adapter.fund(sender, fund)
    bob = "0x" + "6b" * 20
    first = adapter.build(Transfer(to=bob, amount=fund // 2), sender)
    second = adapter.build(Transfer(to=bob, amount=fund // 2 + 1), sender)
    assert (first.nonce, second.nonce) == (0, 1)
    first_signed = adapter.sign(first, secret)
    adapter.submit(first_signed)
    assert adapter.wait_for_confirmation(first_signed).state is ChainTxState.CONFIRMED

    with pytest.raises(InsufficientFundsError):
        adapter.submit(adapter.sign(second, secret))
    third = adapter.build(Transfer(to=bob, amount=1), sender)
    assert third.nonce == 1
    third_signed = adapter.sign(third, secret)
    adapter.submit(third_signed)
    assert adapter.wait_for_confirmation(third_signed).state is ChainTxState.CONFIRMED
    assert adapter.get_balance(bob) == fund // 2 + 1


def test_queued_out_of_order_submission_on_eth_tester(tester_env: EvmEnv) -> None:
    """On eth-tester a nonce ahead of the chain waits (PENDING) and lands once the gap closes."""
    adapter = tester_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    bob = "0x" + "7c" * 20
    first = adapter.sign(adapter.build(Transfer(to=bob, amount=1), sender), secret)
    second = adapter.sign(adapter.build(Transfer(to=bob, amount=2), sender), secret)
    assert adapter.submit(second) == second.tx_hash
    assert adapter.submit(second) == second.tx_hash  # idempotent while queued
    assert adapter.get_status(second).state is ChainTxState.PENDING
    assert adapter.wait_for_confirmation(second, timeout=0.05).state is ChainTxState.PENDING
    adapter.submit(first)
    assert adapter.get_status(first).state is ChainTxState.CONFIRMED
    assert adapter.get_status(second).state is ChainTxState.CONFIRMED
    assert adapter.get_balance(bob) == 3


def test_release_nonce_fills_the_gap(tester_env: EvmEnv) -> None:
    """A nonce allocated for a transaction that is dropped unsent is handed out again."""
    adapter = tester_env.adapter
    _, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    bob = "0x" + "7d" * 20
    adapter.build(Transfer(to=bob, amount=1), sender)
    dropped = adapter.build(Transfer(to=bob, amount=1), sender)
    assert dropped.nonce == 1
    adapter.release_nonce(sender, 1)
    assert adapter.build(Transfer(to=bob, amount=1), sender).nonce == 1
    assert adapter.build(Transfer(to=bob, amount=1), sender).nonce == 2
    with pytest.raises(InvalidInputError):
        adapter.release_nonce(sender, -1)
