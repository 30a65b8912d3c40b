"""A probe of the event loop's stalls, for tests and benchmarks.

A coroutine sleeps 1 ms in a loop and records, for every beat, how late it woke up (the
*gap*: the time the loop could not run it beyond the 1 ms asked for). Each gap is also
attributed, so that a noisy machine can be told apart from this process:

* ``rq_wait``: the time the loop's own thread spent runnable but waiting for a CPU (Linux
  ``/proc/thread-self/schedstat``, second field; 0 where unavailable). That is the machine's
  scheduler, not this process: other processes had the cores.
* ``cpu``: the CPU time this whole process used during the gap (``time.process_time``, all
  threads). A thread of this process that holds the GIL (Python code, a C extension that does
  not release it, a garbage collection) burns CPU while the loop waits; a process that was
  merely descheduled burns none.
* ``gc``: the garbage collections that overlapped the gap (``gc.callbacks``), with their
  generation, duration and thread.

``own`` = ``min(gap - rq_wait, cpu)``, the part of the gap this process can be blamed for: on
a machine with a spare core it equals the gap; when other processes take the cores, the gap
grows by time in which neither the loop nor the thread holding the GIL was running at all.
``own`` cannot see the loop's thread *blocked* in I/O (that burns no CPU); hence ``watch``:
a profile hook on the loop's thread records every call into a given package's code (say
``waiaas`` but its asyncio layer), so a test can show the loop never ran any of it.

Example::

    async with LoopStallProbe() as probe:
        probe.phase("open")
        wallet = await AsyncWallet.open(...)
    probe.summary()["open"]["max_ms"]
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Beat", "GcEvent", "LoopStallProbe"]

_SCHEDSTAT = Path("/proc/thread-self/schedstat")
INTERVAL = 0.001


def _rq_wait() -> float:
    """Seconds this thread has spent waiting on a run queue (0.0 where not measurable)."""
    try:
        return int(_SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Beat:
    """One heartbeat: when it started (perf_counter), its gap, and the gap's attribution."""

    phase: str
    at: float
    gap: float
    rq_wait: float
    cpu: float

    @property
    def own(self) -> float:
        """The part of the gap this process can be blamed for (see the module docstring)."""
        return max(0.0, min(self.gap - self.rq_wait, self.cpu))


@dataclass(frozen=True)
class GcEvent:
    """One garbage collection: start (perf_counter), duration, generation, thread name."""

    at: float
    duration: float
    generation: int
    thread: str


@dataclass
class LoopStallProbe:
    """Heartbeat on the running loop plus garbage-collection timestamps (see module doc)."""

    watch: tuple[str, tuple[str, ...]] | None = None
    """(directory, file names allowed): calls into code under the directory made on the
    loop's thread are recorded in ``loop_calls``, except those in the allowed files."""
    beats: list[Beat] = field(default_factory=list)
    gcs: list[GcEvent] = field(default_factory=list)
    loop_calls: list[str] = field(default_factory=list)
    _phase: str = "start"
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    _gc_started: dict[int, float] = field(default_factory=dict)

    def phase(self, name: str) -> None:
        """Label the beats from now on (e.g. ``"open"``, ``"sends"``)."""
        self._phase = name

    def _on_gc(self, event: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        ident = threading.get_ident()
        if event == "start":
            self._gc_started[ident] = now
            return
        start = self._gc_started.pop(ident, now)
        name = threading.current_thread().name
        self.gcs.append(GcEvent(start, now - start, int(info["generation"]), name))

    async def _run(self, stop: asyncio.Event) -> None:
        last, last_cpu, last_rq = time.perf_counter(), time.process_time(), _rq_wait()
        while not stop.is_set():
            await asyncio.sleep(INTERVAL)
            now, cpu, rq = time.perf_counter(), time.process_time(), _rq_wait()
            gap = max(0.0, now - last - INTERVAL)
            self.beats.append(Beat(self._phase, last, gap, rq - last_rq, cpu - last_cpu))
            last, last_cpu, last_rq = now, cpu, rq

    def _on_call(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call" or self.watch is None:
            return
        directory, allowed = self.watch
        filename = frame.f_code.co_filename
        if filename.startswith(directory) and Path(filename).name not in allowed:
            caller = frame.f_back
            where = f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno}" if caller else "?"
            self.loop_calls.append(f"{Path(filename).name}:{frame.f_code.co_name} <- {where}")

    async def __aenter__(self) -> LoopStallProbe:
        gc.callbacks.append(self._on_gc)
        if self.watch is not None:
            sys.setprofile(self._on_call)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop))
        await asyncio.sleep(0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stop is not None and self._task is not None
        self._stop.set()
        await self._task
        gc.callbacks.remove(self._on_gc)
        if self.watch is not None:
            sys.setprofile(None)

    def worst(self, phases: tuple[str, ...] | None = None) -> Beat:
        """The beat with the largest gap this process is to blame for."""
        chosen = [b for b in self.beats if phases is None or b.phase in phases]
        return max(chosen, key=lambda b: b.own)

    def gcs_during(self, beat: Beat) -> list[GcEvent]:
        """The collections that overlapped ``beat``'s gap."""
        end = beat.at + INTERVAL + beat.gap
        return [g for g in self.gcs if g.at < end and g.at + g.duration > beat.at]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per phase: beats, p50/p99/max of the wall-clock gap and max of ``own`` (ms)."""
        out: dict[str, dict[str, float]] = {}
        for name in dict.fromkeys(b.phase for b in self.beats):
            beats = [b for b in self.beats if b.phase == name]
            gaps = sorted(b.gap for b in beats)
            out[name] = {
                "beats": len(beats),
                "p50_ms": round(gaps[len(gaps) // 2] * 1000, 2),
                "p99_ms": round(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))] * 1000, 2),
                "max_ms": round(gaps[-1] * 1000, 2),
                "own_max_ms": round(max(b.own for b in beats) * 1000, 2),
                "gc_max_ms": round(
                    max((g.duration for g in self.gcs if _in(g, beats)), default=0.0) * 1000, 2
                ),
            }
        return out


def _in(event: GcEvent, beats: list[Beat]) -> bool:
    return bool(beats) and beats[0].at <= event.at <= beats[-1].at + INTERVAL + beats[-1].gap


DEST = {
    "solana": "So11111111111111111111111111111111111111112",
    "evm": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
}
AMOUNT = {"solana": 10**6, "evm": 10**15}
FUNDS = {"solana": 10**12, "evm": 10**21}


async def open_and_send(
    path: Path,
    chains: Any,
    chain: str,
    txs: int,
    *,
    freeze_gc: bool = True,
    max_workers: int = 4,
    idle: float = 0.3,
) -> tuple[LoopStallProbe, list[Any]]:
    """Under a :class:`LoopStallProbe`: ``idle`` seconds of nothing, then ``AsyncWallet.open``
    (``chains`` as a factory, built in the pool), one funded agent, ``txs`` concurrent sends
    through an ``AsyncAgentHandle`` and ``close``. Phases: idle, open, setup, sends, close.
    The probe watches for waiaas code (other than ``waiaas/aio.py``) run on the loop.
    Returns the probe and the send outcomes (results, or the exceptions raised)."""
    import waiaas
    from waiaas import AsyncWallet, Transfer
    from waiaas.testing import TEST_PASSWORD, fast_config

    package = str(Path(waiaas.__file__).parent)
    config = fast_config()
    async with LoopStallProbe(watch=(package, ("aio.py",))) as probe:
        probe.phase("idle")
        await asyncio.sleep(idle)
        probe.phase("open")
        wallet = await AsyncWallet.open(
            path,
            password=TEST_PASSWORD,
            chains=chains,
            config=config,
            max_workers=max_workers,
            freeze_gc=freeze_gc,
        )
        try:
            probe.phase("setup")
            agent = await wallet.create_agent("stall", chain)

            def prepare() -> Transfer:  # the test's own sync calls, off the loop too
                adapter: Any = wallet.sync.network_adapter(agent.chain, agent.network)
                adapter.fund(agent.public_key, FUNDS[chain])
                return Transfer(to=DEST[chain], amount=AMOUNT[chain])

            request = await asyncio.to_thread(prepare)
            handle = await wallet.agent((await wallet.issue_session(agent.id)).token)
            probe.phase("sends")
            outcomes = await asyncio.gather(
                *(handle.send(request) for _ in range(txs)), return_exceptions=True
            )
        finally:
            probe.phase("close")
            await wallet.close()
        probe.phase("end")
    return probe, list(outcomes)


async def open_and_send_sync(
    path: Path, chains: Any, chain: str, txs: int, *, idle: float = 0.3
) -> tuple[LoopStallProbe, list[Any]]:
    """The baseline: the same scenario with the synchronous ``Wallet`` called directly in a
    coroutine (open, then the sends one after another), as without ``AsyncWallet``. After
    each blocking call the coroutine sleeps 2 ms, so that the beat it held up is recorded
    under the right phase."""
    from waiaas import Transfer, Wallet
    from waiaas.testing import TEST_PASSWORD, fast_config

    async with LoopStallProbe() as probe:
        probe.phase("idle")
        await asyncio.sleep(idle)
        probe.phase("open")
        wallet = Wallet.open(
            path, password=TEST_PASSWORD, chains=list(chains()), config=fast_config()
        )
        await asyncio.sleep(2 * INTERVAL)  # the beat that waited is recorded now
        try:
            probe.phase("setup")
            agent = wallet.create_agent("stall", chain)
            adapter: Any = wallet.network_adapter(agent.chain, agent.network)
            adapter.fund(agent.public_key, FUNDS[chain])
            handle = wallet.agent(wallet.issue_session(agent.id).token)
            request = Transfer(to=DEST[chain], amount=AMOUNT[chain])
            await asyncio.sleep(2 * INTERVAL)  # the beat that waited is recorded now
            probe.phase("sends")
            outcomes = []
            for _ in range(txs):
                outcomes.append(handle.send(request))
                await asyncio.sleep(2 * INTERVAL)  # the beat that waited is recorded now
        finally:
            probe.phase("close")
            wallet.close()
            await asyncio.sleep(2 * INTERVAL)  # the beat that waited is recorded now
        probe.phase("end")
    return probe, outcomes
