"""Audit chain benchmark: what tamper evidence costs per audit row, per send, to verify, on open.

Run ``python benchmarks/bench_audit_chain.py [--rows 1000000 --appends 2000 --sends 40]``.
Prints one JSON object per line; every figure has a baseline measured in the same run:

* ``append``: one audit row per unit of work (``BEGIN IMMEDIATE`` ... ``COMMIT``), median
  microseconds per row, for: the repository with the chain hashing switched off (baseline),
  the repository without keys (hash chain only), and the repository with the wallet's keys
  (hash chain + HMAC + head record in the keystore directory after the commit), plus plain
  ``sqlite3`` inserting the same row as a reference. ``ratio`` = keyed / baseline.
* ``send``: median milliseconds of ``Wallet.send`` (an INSTANT transfer on LiteSVM, through
  the whole pipeline) with the integrity keys detached (no MACs, no checks) and attached.
* ``verify``: rows per second of a full chain walk (hash + MAC + link per row) over
  ``--rows`` rows, against a plain ``SELECT`` of the same rows (baseline).
* ``open``: the open-time verification (rows since the newest signed checkpoint, plus the
  recorded head) on that ``--rows`` log with the newest checkpoint ``checkpoint_rows`` rows
  behind the head (``WalletConfig.audit_checkpoint_rows``: the worst case with the default),
  against ``Database.open`` of the same file (baseline) and against a walk of the whole log
  (what open would cost without checkpoints).

Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from waiaas.config import WalletConfig
from waiaas.db import Database
from waiaas.db.chain import AUDIT_COLUMNS, GENESIS_BYTES, row_digest
from waiaas.integrity import Integrity, verify_recent, walk_chain
from waiaas.types import AuditEvent

NOW = 1_760_000_000


def emit(**fields: object) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def median_us(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e6, 2)


def integrity(head_path: Path | None) -> Integrity:
    return Integrity(
        mac_key=os.urandom(32),
        signing_seed=os.urandom(32),
        wallet_id="bench",
        anchor=None,
        head_path=head_path,
        checkpoint_rows=WalletConfig().audit_checkpoint_rows,
    )


DETAILS = {
    "type": "TRANSFER",
    "amount": "1000000",
    "to": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
}


def bench_append(workdir: Path, n: int) -> None:
    # baseline: plain sqlite3, same schema and PRAGMAs (the file Database.open created)
    base_path = workdir / "append-base.db"
    Database.open(base_path).close()
    conn = sqlite3.connect(base_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    details = json.dumps(DETAILS, separators=(",", ":"), sort_keys=True)
    base: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, details, severity)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (NOW, "TX_REQUESTED", "agent:a", "a", details, "info"),
        )
        conn.execute("COMMIT")
        base.append(time.perf_counter() - t)
    conn.close()

    def through_repository(path: Path, integ: Integrity | None) -> list[float]:
        db = Database.open(path)
        db.integrity = integ
        out: list[float] = []
        for _ in range(n):
            t = time.perf_counter()
            with db.write() as uow:
                uow.audit.append(
                    AuditEvent.TX_REQUESTED, actor="agent:a", now=NOW, agent_id="a", details=DETAILS
                )
                uow.commit()
            out.append(time.perf_counter() - t)
        db.close()
        return out

    import waiaas.db.repositories as repositories

    real_hash = repositories.row_digest
    repositories.row_digest = lambda prev, values: prev  # the same path without the chain
    try:
        unchained = through_repository(workdir / "append-plain.db", None)
    finally:
        repositories.row_digest = real_hash
    chained = through_repository(workdir / "append-chain.db", None)
    keyed = through_repository(workdir / "append-keyed.db", integrity(workdir / "audit-head"))
    emit(
        bench="append",
        rows=n,
        raw_sqlite3_us=median_us(base),
        baseline_repository_no_chain_us=median_us(unchained),
        chain_only_us=median_us(chained),
        chain_mac_head_us=median_us(keyed),
        added_per_row_us=round(median_us(keyed) - median_us(unchained), 2),
        ratio=round(statistics.median(keyed) / statistics.median(unchained), 3),
    )


def bench_send(workdir: Path, n: int) -> None:
    from waiaas.testing import fund, local_chains, local_wallet
    from waiaas.types import Transfer

    (workdir / "send").mkdir()
    with local_wallet(workdir / "send", chains=local_chains()) as w:
        agent = w.create_agent("bench", "solana")
        fund(w, agent.id, 10**12)
        token = w.issue_session(agent.id, ttl=86_400).token
        keys = w._db.integrity
        to = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
        times: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(2 * n):
            mode = "off" if i % 2 == 0 else "on"
            w._db.integrity = None if mode == "off" else keys
            t = time.perf_counter()
            w.send(token, Transfer(to=to, amount=1_000 + i))
            times[mode].append(time.perf_counter() - t)
        w._db.integrity = keys
    emit(
        bench="send",
        sends_each=n,
        baseline_no_integrity_ms=round(statistics.median(times["off"]) * 1e3, 3),
        with_integrity_ms=round(statistics.median(times["on"]) * 1e3, 3),
        ratio=round(statistics.median(times["on"]) / statistics.median(times["off"]), 3),
    )


def build_log(path: Path, rows: int, integ: Integrity) -> tuple[int, str]:
    """``rows`` chained, MAC'd audit rows written straight into a fresh database."""
    Database.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    details = json.dumps(DETAILS, separators=(",", ":"), sort_keys=True)
    prev = GENESIS_BYTES
    batch: list[tuple[object, ...]] = []
    conn.execute("BEGIN")
    for i in range(rows):
        values = (
            NOW + i // 10,
            "TX_REQUESTED",
            "agent:a",
            "a",
            None,
            f"t{i}",
            details,
            "info",
            None,
        )
        h = row_digest(prev, values)
        batch.append((*values, prev, h, integ.audit_mac_bytes(h)))
        prev = h
        if len(batch) == 10_000:
            conn.executemany(_INSERT, batch)
            batch.clear()
    if batch:
        conn.executemany(_INSERT, batch)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return rows, prev.hex()


_INSERT = (
    f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash, mac) "
    f"VALUES ({', '.join('?' * (len(AUDIT_COLUMNS) + 3))})"
)


def bench_verify_and_open(workdir: Path, rows: int) -> None:
    path = workdir / "log.db"
    integ = integrity(workdir / "audit-head")
    t = time.perf_counter()
    head = build_log(path, rows, integ)
    emit(bench="build", rows=rows, seconds=round(time.perf_counter() - t, 1))

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    t = time.perf_counter()
    count = sum(
        1
        for _ in conn.execute(
            f"SELECT id, {', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash, mac "
            "FROM audit_log ORDER BY id"
        )
    )
    select_s = time.perf_counter() - t
    t = time.perf_counter()
    walk = walk_chain(conn, integ._mac_key)
    walk_s = time.perf_counter() - t
    conn.close()
    assert walk.broken is None and walk.rows == count == rows
    emit(
        bench="verify",
        rows=rows,
        baseline_select_rows_per_s=round(rows / select_s),
        verify_rows_per_s=round(rows / walk_s),
        verify_seconds=round(walk_s, 2),
        ratio=round(walk_s / select_s, 2),
    )

    # the newest checkpoint `checkpoint_rows` behind the head: the most open ever re-walks
    behind = integ.checkpoint_rows
    conn = sqlite3.connect(path)
    seq = rows - behind
    digest = conn.execute("SELECT row_hash FROM audit_log WHERE id = ?", (seq,)).fetchone()[0].hex()
    conn.execute(
        "INSERT INTO audit_checkpoints (seq, head_hash, created_at, wallet_id, public_key,"
        " signature) VALUES (?, ?, ?, ?, ?, ?)",
        (
            seq,
            digest,
            NOW,
            integ.wallet_id,
            integ.public_key,
            integ.sign_checkpoint(seq, digest, NOW),
        ),
    )
    conn.commit()
    conn.close()
    integ.record_head(*head)
    opens: list[float] = []
    verifies: list[float] = []
    for _ in range(5):
        t = time.perf_counter()
        db = Database.open(path)
        opens.append(time.perf_counter() - t)
        t = time.perf_counter()
        report = verify_recent(db, integ)
        verifies.append(time.perf_counter() - t)
        db.close()
        assert report["ok"], report
    emit(
        bench="open",
        rows=rows,
        rows_since_checkpoint=behind,
        baseline_database_open_ms=round(statistics.median(opens) * 1e3, 2),
        open_verification_ms=round(statistics.median(verifies) * 1e3, 2),
        full_walk_ms=round(walk_s * 1e3, 1),
        ratio_to_open=round(statistics.median(verifies) / statistics.median(opens), 2),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--sends", type=int, default=40)
    args = parser.parse_args(argv)
    emit(
        bench="environment",
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench_append(work, args.appends)
        bench_send(work, args.sends)
        bench_verify_and_open(work, args.rows)


if __name__ == "__main__":
    main()
