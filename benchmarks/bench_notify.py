"""Notification benchmark: the cost of notify() on the caller, and delivery throughput.

Run ``python benchmarks/bench_notify.py``. Prints one JSON object per line:

* ``enqueue``: ``notify()`` calls per second on the calling thread (what the pipeline pays
  after each commit), against a baseline of ``queue.Queue.put_nowait`` of the same object;
  ``ratio`` = baseline / notify. The worker is kept busy on a stalled channel so nothing is
  delivered during the measurement.
* ``deliver``: events per second delivered end to end to a local ntfy emulator on 127.0.0.1
  (render + HTTP POST + response check + outcome recording), against a baseline of bare
  ``httpx.HTTPTransport`` POSTs of the same body to the same server; ``ratio`` = baseline /
  dispatcher. With ``db``: the channel comes from a real SQLite file and every outcome is
  written to it (``last_success_at``), as in production.

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import json
import logging
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.support.notify_server import NotifyServer, Stall
from waiaas.config import KdfLimits
from waiaas.db import Database
from waiaas.keystore import Keystore
from waiaas.notify import (
    ChannelService,
    NotificationDispatcher,
    NotificationEvent,
    RetryPolicy,
    StaticChannelSource,
    build_channel,
)
from waiaas.types import AuditEvent

EVENT = NotificationEvent(
    event_type=AuditEvent.TX_CONFIRMED,
    timestamp=1_760_000_000,
    agent_id="01a21000-0000-7000-8000-000000000000",
    agent_name="trader",
    amount=1_500_000_000,
    decimals=9,
    asset_symbol="SOL",
    chain="solana",
    network="devnet",
    to_address="9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
    tier="NOTIFY",
    tx_id="01a21000-0000-7000-8000-000000000001",
)


def emit(**fields: object) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def bench_enqueue(server: NotifyServer, count: int = 200_000) -> None:
    server.always("ntfy", Stall(30))
    channel = build_channel("NTFY", {"server_url": server.ntfy_base, "topic": "stall"})
    d = NotificationDispatcher(
        [channel], queue_size=count + 10, retry=RetryPolicy(timeout=20, max_retries=0)
    )
    d.notify(EVENT)
    server.wait_for(1, "ntfy")  # the worker is now blocked in the stalled request
    start = time.perf_counter()
    for _ in range(count):
        d.notify(EVENT)
    rate = count / (time.perf_counter() - start)
    q: queue.Queue[NotificationEvent] = queue.Queue(maxsize=count + 10)
    start = time.perf_counter()
    for _ in range(count):
        q.put_nowait(EVENT)
    base = count / (time.perf_counter() - start)
    d.close(timeout=0)
    server.always("ntfy", None)
    emit(
        bench="enqueue",
        calls=count,
        notify_per_s=round(rate),
        baseline_queue_put_per_s=round(base),
        ratio=round(base / rate, 2),
        notify_us=round(1e6 / rate, 3),
    )


def deliver_rate(channels: object, count: int) -> float:
    d = NotificationDispatcher(
        channels,  # type: ignore[arg-type]
        rate_limit_per_minute=10**9,
        queue_size=count + 10,
    )
    start = time.perf_counter()
    for _ in range(count):
        d.notify(EVENT)
    d.close()
    elapsed = time.perf_counter() - start
    assert d.stats.delivered == count, d.stats
    return count / elapsed


def baseline_rate(server: NotifyServer, count: int) -> float:
    channel = build_channel("NTFY", {"server_url": server.ntfy_base, "topic": "base"})
    request = channel.build_request(EVENT, now=1, delivery_id="x")
    with httpx.HTTPTransport() as transport:
        start = time.perf_counter()
        for _ in range(count):
            req = httpx.Request(
                "POST",
                request.url,
                headers=list(request.headers),
                content=request.body,
                extensions={"timeout": httpx.Timeout(10).as_dict()},
            )
            resp = transport.handle_request(req)
            resp.read()
            resp.close()
        return count / (time.perf_counter() - start)


def bench_deliver(server: NotifyServer, count: int = 2000, runs: int = 3) -> None:
    channel = build_channel("NTFY", {"server_url": server.ntfy_base, "topic": "bench"})
    memory = [deliver_rate(StaticChannelSource([channel]), count) for _ in range(runs)]
    base = [baseline_rate(server, count) for _ in range(runs)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(Path(tmp) / "bench.db")
        ks = Keystore.create(Path(tmp) / "ks", "bench password", kdf=KdfLimits.minimum())
        service = ChannelService(db, ks)
        service.add("NTFY", {"server_url": server.ntfy_base, "topic": "benchdb"})
        with_db = [deliver_rate(service.source(), count // 2) for _ in range(runs)]
        db.close()
    b, m, w = statistics.median(base), statistics.median(memory), statistics.median(with_db)
    emit(
        bench="deliver",
        events=count,
        baseline_http_per_s=round(b),
        dispatcher_memory_per_s=round(m),
        dispatcher_db_per_s=round(w),
        ratio_memory=round(b / m, 2),
        ratio_db=round(b / w, 2),
    )


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with NotifyServer() as server:
        bench_enqueue(server)
        bench_deliver(server)


if __name__ == "__main__":
    main()
