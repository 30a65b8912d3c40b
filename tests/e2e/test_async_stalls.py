"""AsyncWallet never blocks the event loop: the loop's longest stall during ``open`` and 50
concurrent sends is at most 20 ms.

What is measured (tests/support/loop_probe.py): a 1 ms heartbeat on the loop records how late
each beat wakes up, and each gap is attributed. The bound applies to the part of a gap this
process causes (``own``: CPU burnt by its threads while the loop waited — Python code holding
the GIL, a C extension that does not release it, a garbage collection — or the loop's own
work), which on a machine with a free core is the whole gap. On the shared 2-core machines
the suite runs on, other processes can keep this process off the CPU for tens of ms; that
time is the scheduler's and is excluded (the loop thread's run-queue wait, and time in which
the process burnt no CPU at all). Since a loop blocked in I/O burns no CPU either, the same
run also proves that no waiaas code but the asyncio layer (``waiaas/aio.py``) ran on the
loop's thread. The wall-clock maxima are recorded as test properties.

Chains: the guarantee is about waiaas, so the chains run out of process as real ones do: an
anvil node (EVM) and the LiteSVM JSON-RPC test server in a child process (Solana). The
in-process test chains (py-evm, LiteSVM) are CPU-bound Python / Rust sharing this process's
GIL; benchmarks/bench_agents.py reports their figures, they are not part of the bound.

The maximum over the whole run (open, setup, 50 sends, close) is asserted. Retry policy, for
the noisy machine only: when that maximum is over the bound *and* the machine is busy
(1-minute load average at or above half its CPU count: the suite itself keeps one core
busy), the run is repeated once with a fresh wallet and the second run must pass. Why: with
the cores taken, the GIL's hand-offs between this process's threads depend on which of them
the scheduler runs first, so the loop can lose several turns in a row to the pool's threads
while the process burns a full core (seen: single beats of 30-40 ms in CI runs on a shared
2-core machine, and one in about twenty runs at a load of 7; the same runs' maxima are
otherwise 3-17 ms). On an idle machine there is no retry. Every other assertion (no wallet
code on the loop, no full collection, every send answered) holds for the run judged.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chains.anvil import anvil_node
from tests.chains.solana_rpc_server import solana_rpc_process
from tests.support.loop_probe import LoopStallProbe, open_and_send
from waiaas import AsyncWallet, InvalidInputError, TxStatus
from waiaas.chains.base import ChainAdapter
from waiaas.testing import TEST_PASSWORD, fast_config

BOUND = 0.020
PHASES = ("open", "setup", "sends", "close")


@pytest.fixture(autouse=True)
def _collected_heap() -> Iterator[None]:
    """Start from a collected heap (a freeze would keep earlier tests' garbage forever) and
    hand the rest of the session an unfrozen one."""
    gc.collect()
    yield
    gc.unfreeze()


@pytest.fixture(params=["evm-anvil", "solana-rpc"])
def remote_chain(request: pytest.FixtureRequest) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(chain, factory of adapters) on a chain in another process."""
    from waiaas.chains.evm import EvmAdapter
    from waiaas.chains.solana import LocalSolanaAdapter

    if request.param == "evm-anvil":
        request.applymarker(pytest.mark.anvil)
        with anvil_node(31337) as node:
            yield "evm", lambda: [EvmAdapter.anvil(node.url, chain_id=31337, network="local")]
    else:
        with solana_rpc_process() as url:
            yield "solana", lambda: [LocalSolanaAdapter.rpc(url, network="localnet")]


def _busy() -> bool:
    """Whether the machine is busy (1-minute load average >= half its CPU count)."""
    return os.getloadavg()[0] * 2 >= (os.cpu_count() or 1)


def _explain(probe: LoopStallProbe) -> str:
    worst = probe.worst(PHASES)
    gcs = [(g.generation, round(g.duration * 1000, 1), g.thread) for g in probe.gcs_during(worst)]
    return (
        f"worst beat in {worst.phase}: gap {worst.gap * 1000:.1f} ms, run-queue wait "
        f"{worst.rq_wait * 1000:.1f} ms, process CPU {worst.cpu * 1000:.1f} ms, gcs {gcs}; "
        f"summary {probe.summary()}"
    )


def test_the_loop_never_stalls_over_20_ms_during_open_and_50_concurrent_sends(
    tmp_path: Path, remote_chain: tuple[str, Callable[[], Any]], record_property: Any
) -> None:
    """AsyncWallet.open (adapters built in the pool) then 50 concurrent sends through an
    AsyncAgentHandle, then close: every send returns a result, and no beat of the loop is held up
    more than 20 ms by this process; no full collection walks the heap while it runs."""
    chain, chains = remote_chain
    probe, outcomes = asyncio.run(open_and_send(tmp_path / "w.db", chains, chain, 50))
    if probe.worst(PHASES).own > BOUND and _busy():
        record_property("first_run", _explain(probe))
        gc.collect()
        gc.unfreeze()
        probe, outcomes = asyncio.run(open_and_send(tmp_path / "w2.db", chains, chain, 50))
    summary = probe.summary()
    for phase in PHASES:
        record_property(f"{phase}_max_ms", summary[phase]["max_ms"])
        record_property(f"{phase}_own_max_ms", summary[phase]["own_max_ms"])
    # Every send returned a result; under load a few may still be in flight (the background
    # confirms them), none failed.
    statuses = [getattr(o, "status", o) for o in outcomes]
    in_flight = {TxStatus.CONFIRMED, TxStatus.SUBMITTED, TxStatus.EXECUTING}
    assert all(s in in_flight for s in statuses), statuses
    assert statuses.count(TxStatus.CONFIRMED) >= 25, statuses
    assert sum(len([b for b in probe.beats if b.phase == p]) for p in PHASES) > 100
    assert probe.worst(PHASES).own <= BOUND, _explain(probe)
    # ``own`` sees CPU, not a thread blocked in I/O: the loop never ran wallet code at all.
    assert probe.loop_calls == [], sorted(set(probe.loop_calls))
    # A full collection is what walks the heap; a young collection's wall time only says how
    # busy the machine was (a shared box preempts it), so it is not judged.
    full_gcs = [g for g in probe.gcs if g.generation == 2]
    assert full_gcs == [], full_gcs


def test_the_probe_sees_a_thread_holding_the_gil_and_a_full_collection() -> None:
    """The measurement above is not blind: a C call that keeps the GIL for ~50 ms in a worker
    thread shows up as a stall of this process, a full collection is timestamped, and wallet
    code called on the loop's thread is caught."""

    def hold_the_gil() -> int:
        return sum(range(3_000_000))  # one C call: the GIL is never released

    import waiaas
    from waiaas.testing import FrozenClock

    async def scenario() -> LoopStallProbe:
        async with LoopStallProbe(watch=(str(Path(waiaas.__file__).parent), ("aio.py",))) as probe:
            FrozenClock().now()  # wallet code on the loop's thread
            probe.phase("held")
            start = time.perf_counter()
            while time.perf_counter() - start < 0.3:
                await asyncio.to_thread(hold_the_gil)
            probe.phase("gc")
            await asyncio.to_thread(gc.collect)
            await asyncio.sleep(0.01)
        return probe

    probe = asyncio.run(scenario())
    assert probe.worst(("held",)).own >= 0.015, probe.summary()
    assert any(g.generation == 2 and g.thread != "MainThread" for g in probe.gcs)
    assert any(call.startswith("testing.py:now <- ") for call in probe.loop_calls)


def test_open_pauses_collection_then_freezes_the_heap_and_restores_gc(tmp_path: Path) -> None:
    """While AsyncWallet.open runs, automatic collection is off; afterwards the heap built so
    far is frozen and collection is on again. A host that had disabled gc keeps it disabled;
    freeze_gc=False leaves gc alone; a failed open restores gc too."""
    seen: list[bool] = []

    def chains() -> list[ChainAdapter]:
        seen.append(gc.isenabled())
        return []

    async def scenario() -> None:
        gc.unfreeze()
        wallet = await AsyncWallet.open(
            tmp_path / "a.db", password=TEST_PASSWORD, chains=chains, config=fast_config()
        )
        assert seen == [False]
        assert gc.isenabled() and gc.get_freeze_count() > 0
        await wallet.close()

        gc.unfreeze()
        wallet = await AsyncWallet.open(
            tmp_path / "a.db",
            password=TEST_PASSWORD,
            chains=chains,
            config=fast_config(),
            freeze_gc=False,
        )
        assert seen == [False, True]
        assert gc.isenabled() and gc.get_freeze_count() == 0
        await wallet.close()

        gc.disable()
        try:
            wallet = await AsyncWallet.open(
                tmp_path / "a.db", password=TEST_PASSWORD, chains=chains, config=fast_config()
            )
            assert not gc.isenabled()
            await wallet.close()
        finally:
            gc.enable()

        from waiaas import WrongPasswordError

        with pytest.raises(WrongPasswordError):
            await AsyncWallet.open(tmp_path / "a.db", password="wrong", config=fast_config())
        assert gc.isenabled()
        with pytest.raises(InvalidInputError, match="freeze_gc"):
            await AsyncWallet.open(
                tmp_path / "a.db",
                password=TEST_PASSWORD,
                freeze_gc="yes",  # type: ignore[arg-type]
            )

    asyncio.run(scenario())


def test_concurrent_opens_keep_collection_off_until_the_last_one_ends(tmp_path: Path) -> None:
    """Two opens at once: collection stays off until both are done, then comes back on."""
    release = threading.Event()
    seen: list[bool] = []

    def slow_chains() -> list[ChainAdapter]:
        release.wait(10)
        seen.append(gc.isenabled())
        return []

    async def scenario() -> None:
        first = asyncio.create_task(
            AsyncWallet.open(
                tmp_path / "a.db", password=TEST_PASSWORD, chains=slow_chains, config=fast_config()
            )
        )
        second = await AsyncWallet.open(
            tmp_path / "b.db", password=TEST_PASSWORD, config=fast_config()
        )
        assert not gc.isenabled()  # the first open still runs
        release.set()
        wallet = await first
        assert seen == [False] and gc.isenabled()
        await second.close()
        await wallet.close()

    asyncio.run(scenario())


def test_a_cancelled_open_closes_the_wallet_it_opens_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling the task awaiting open returns at once; the open completes in the pool and
    the wallet it produced is closed there, off the loop (its background thread stops)."""
    from waiaas import Wallet

    release = threading.Event()
    closed: list[tuple[Wallet, bool]] = []
    original_close = Wallet.close
    loop_thread = threading.get_ident()

    def recording_close(wallet: Wallet) -> None:
        original_close(wallet)
        closed.append((wallet, threading.get_ident() == loop_thread))

    monkeypatch.setattr(Wallet, "close", recording_close)

    def slow_chains() -> list[ChainAdapter]:
        release.wait(10)
        return []

    async def scenario() -> None:
        task = asyncio.create_task(
            AsyncWallet.open(
                tmp_path / "a.db", password=TEST_PASSWORD, chains=slow_chains, config=fast_config()
            )
        )
        await asyncio.sleep(0.05)
        task.cancel()
        start = time.perf_counter()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - start < 1.0
        assert gc.isenabled()
        release.set()
        deadline = time.monotonic() + 20
        while not closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [(wallet, on_loop)] = closed
        assert not on_loop
        assert wallet._runner.thread is None
        again = await AsyncWallet.open(tmp_path / "a.db", password=TEST_PASSWORD)
        await again.close()

    asyncio.run(scenario())
