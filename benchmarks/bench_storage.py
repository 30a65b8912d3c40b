"""Storage benchmark (CORE-02): insert rate, the four §5.4 queries, bytes on disk per row.

Run ``python benchmarks/bench_storage.py [--audit-rows 1000000 --tx-rows 100000]``.
Prints one JSON object per line:

* ``environment``: SQLite, Python and machine facts.
* ``insert``: transaction + audit row pairs written through the repositories, one unit of
  work (``BEGIN IMMEDIATE`` ... ``COMMIT``) per pair and 100 pairs per unit of work, against
  plain ``sqlite3`` writing the same rows into a same-schema file (same PRAGMAs) in the same
  run: one transaction per pair, and one ``executemany`` transaction for all of them.
  ``rows_per_s`` counts both rows of a pair; ``ratio`` = baseline / repository. CORE-02 §5.4
  expects about 10,000 INSERT/s.
* ``load``: how long the bulk load of the query data set took (raw ``executemany``).
* ``query``: p50 / p99 latency of the four §5.4 queries called through the repository
  methods on ``--audit-rows`` audit rows and ``--tx-rows`` transactions (10 agents, as in
  the spec's sizing), side by side with the spec's expectation (< 1 ms, < 5 ms, < 50 ms,
  < 1 ms) and with the spec's SQL run directly on a ``sqlite3`` connection.
* ``size``: bytes on disk per transaction row and per audit row, indexes included (file
  size growth after VACUUM, divided by the rows added), with the table/index split
  from ``dbstat``, against CORE-02 §5.3's estimates (400 B and 300 B).

Rows are shaped like real ones: UUIDv7 ids, base58 addresses and signatures, decimal
amounts, small JSON documents. Timings vary with the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from waiaas.db import Database, UnitOfWork
from waiaas.db.engine import PRAGMAS
from waiaas.db.tables import AgentRow, PolicyRow, SessionRow, TransactionRow
from waiaas.ids import new_id

NOW = 1_760_000_000
YEAR = 365 * 86_400
N_AGENTS = 10  # CORE-02 §5.3's sizing assumption
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
EVENTS = ("TX_REQUESTED", "TX_SUBMITTED", "TX_CONFIRMED")  # ~3 audit rows per transaction
TX_COLUMNS = (
    "id",
    "agent_id",
    "session_id",
    "chain",
    "tx_hash",
    "type",
    "amount",
    "to_address",
    "status",
    "tier",
    "queued_at",
    "executed_at",
    "created_at",
    "error",
    "metadata",
)
AUDIT_COLUMNS = (
    "timestamp",
    "event_type",
    "actor",
    "agent_id",
    "session_id",
    "tx_id",
    "details",
    "severity",
    "ip_address",
)
SPEC_QUERY_MS = {
    "sessions.by_token_hash": 1.0,
    "transactions.active_for_agent": 5.0,
    "audit.agent_range": 50.0,
    "policies.for_agent": 1.0,
}
SPEC_SQL = {
    "sessions.by_token_hash": (
        "SELECT * FROM sessions WHERE token_hash = ? AND expires_at > ? AND revoked_at IS NULL"
    ),
    "transactions.active_for_agent": (
        "SELECT * FROM transactions WHERE agent_id = ? "
        "AND status IN ('PENDING', 'QUEUED', 'EXECUTING', 'SUBMITTED')"
    ),
    "audit.agent_range": (
        "SELECT * FROM audit_log WHERE agent_id = ? AND timestamp BETWEEN ? AND ? "
        "ORDER BY timestamp DESC LIMIT 100"
    ),
    "policies.for_agent": (
        "SELECT * FROM policies WHERE (agent_id = ? OR agent_id IS NULL) AND enabled = 1 "
        "ORDER BY priority DESC"
    ),
}


def emit(**fields: object) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def raw_connect(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection with the same seven PRAGMAs waiaas runs."""
    conn = sqlite3.connect(path, isolation_level=None)
    for name, value in PRAGMAS:
        conn.execute(f"PRAGMA {name} = {value}")
    return conn


def create_schema(path: Path) -> None:
    Database.open(path).close()


# --------------------------------------------------------------------------- row shapes


class Rows:
    """Deterministic generator of realistic rows."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def b58(self, n: int) -> str:
        return "".join(self.rng.choices(B58, k=n))

    def agents(self) -> list[AgentRow]:
        return [
            AgentRow(
                id=new_id(),
                name=f"agent-{i}",
                chain="solana",
                network="mainnet-beta",
                public_key=self.b58(44),
                status="ACTIVE",
                owner_address=self.b58(44),
                created_at=NOW - YEAR,
                updated_at=NOW - YEAR,
            )
            for i in range(N_AGENTS)
        ]

    def transaction(
        self, agent_id: str, session_id: str | None, ts: int, status: str
    ) -> dict[str, Any]:
        to, amount = self.b58(44), str(self.rng.randrange(1, 5 * 10**9))
        return {
            "id": new_id(),
            "agent_id": agent_id,
            "session_id": session_id,
            "chain": "solana",
            "tx_hash": self.b58(88) if status in ("SUBMITTED", "CONFIRMED") else None,
            "type": "TRANSFER",
            "amount": amount,
            "to_address": to,
            "status": status,
            "tier": "INSTANT",
            "queued_at": None,
            "executed_at": ts + 1,
            "created_at": ts,
            "error": None,
            "metadata": json.dumps(
                {"request": {"type": "TRANSFER", "to": to, "amount": amount}},
                separators=(",", ":"),
            ),
        }

    def audit(self, tx: dict[str, Any], event: str, ts: int) -> dict[str, Any]:
        return {
            "timestamp": ts,
            "event_type": event,
            "actor": f"agent:{tx['agent_id']}",
            "agent_id": tx["agent_id"],
            "session_id": tx["session_id"],
            "tx_id": tx["id"],
            "details": json.dumps(
                {"amount": tx["amount"], "to": tx["to_address"], "tier": "INSTANT"},
                separators=(",", ":"),
                sort_keys=True,
            ),
            "severity": "info",
            "ip_address": "127.0.0.1",
        }


def tuples(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in columns) for r in rows]


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def seed_agent_and_session(db: Database, gen: Rows) -> tuple[str, str]:
    agent = gen.agents()[0]
    with db.write() as uow:
        uow.agents.add(agent)
        session = uow.sessions.add(
            SessionRow(
                id=new_id(),
                agent_id=agent.id,
                token_hash=hashlib.sha256(new_id().encode()).hexdigest(),
                expires_at=NOW + 86_400,
                created_at=NOW,
            )
        )
        uow.commit()
    return agent.id, session.id


# --------------------------------------------------------------------------- inserts


def bench_inserts(workdir: Path, pairs: int) -> None:
    gen = Rows(1)
    rates: dict[str, float] = {}

    def pair_rows(agent_id: str, session_id: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for i in range(pairs):
            tx = gen.transaction(agent_id, session_id, NOW + i, "PENDING")
            out.append((tx, gen.audit(tx, "TX_REQUESTED", NOW + i)))
        return out

    def write_pair(uow: UnitOfWork, tx: dict[str, Any], audit: dict[str, Any]) -> None:
        fields = dict(tx)
        fields["metadata_json"] = fields.pop("metadata")
        uow.transactions.add(TransactionRow(**fields))
        uow.audit.append(
            audit["event_type"],
            actor=audit["actor"],
            now=audit["timestamp"],
            agent_id=audit["agent_id"],
            session_id=audit["session_id"],
            tx_id=audit["tx_id"],
            details=json.loads(audit["details"]),
            ip_address=audit["ip_address"],
        )

    for mode, batch in (("repository_uow_per_pair", 1), ("repository_100_pairs_per_uow", 100)):
        path = workdir / f"insert-{mode}.db"
        db = Database.open(path)
        agent_id, session_id = seed_agent_and_session(db, gen)
        data = pair_rows(agent_id, session_id)
        start = time.perf_counter()
        for i in range(0, pairs, batch):
            with db.write() as uow:
                for tx, audit in data[i : i + batch]:
                    write_pair(uow, tx, audit)
                uow.commit()
        rates[mode] = 2 * pairs / (time.perf_counter() - start)
        db.close()

    for mode in ("raw_transaction_per_pair", "raw_executemany"):
        path = workdir / f"insert-{mode}.db"
        db = Database.open(path)
        agent_id, session_id = seed_agent_and_session(db, gen)
        db.close()
        data = pair_rows(agent_id, session_id)
        tx_sql, audit_sql = (
            insert_sql("transactions", TX_COLUMNS),
            insert_sql("audit_log", AUDIT_COLUMNS),
        )
        conn = raw_connect(path)
        start = time.perf_counter()
        if mode == "raw_transaction_per_pair":
            for tx, audit in data:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(tx_sql, tuple(tx[c] for c in TX_COLUMNS))
                conn.execute(audit_sql, tuple(audit[c] for c in AUDIT_COLUMNS))
                conn.execute("COMMIT")
        else:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(tx_sql, tuples([t for t, _ in data], TX_COLUMNS))
            conn.executemany(audit_sql, tuples([a for _, a in data], AUDIT_COLUMNS))
            conn.execute("COMMIT")
        rates[mode] = 2 * pairs / (time.perf_counter() - start)
        conn.close()

    for mode, baseline in (
        ("repository_uow_per_pair", "raw_transaction_per_pair"),
        ("repository_100_pairs_per_uow", "raw_executemany"),
    ):
        emit(
            bench="insert",
            mode=mode,
            pairs=pairs,
            rows_per_s=round(rates[mode]),
            baseline=baseline,
            baseline_rows_per_s=round(rates[baseline]),
            ratio=round(rates[baseline] / rates[mode], 2),
            spec_expectation_rows_per_s=10_000,
        )
    emit(
        bench="insert",
        mode="raw_transaction_per_pair",
        pairs=pairs,
        rows_per_s=round(rates["raw_transaction_per_pair"]),
        baseline="raw_executemany",
        baseline_rows_per_s=round(rates["raw_executemany"]),
        ratio=round(rates["raw_executemany"] / rates["raw_transaction_per_pair"], 2),
        spec_expectation_rows_per_s=10_000,
    )


# --------------------------------------------------------------------------- queries


class DataSet:
    """What the query benchmark loaded, to draw realistic parameters from."""

    def __init__(self) -> None:
        self.agent_ids: list[str] = []
        self.token_hashes: list[str] = []
        self.first_ts = 0
        self.last_ts = 0


def bulk_load(path: Path, audit_rows: int, tx_rows: int, gen: Rows) -> DataSet:
    """Spread tx_rows transactions and audit_rows audit rows over a year, 10 agents."""
    ds = DataSet()
    create_schema(path)
    conn = raw_connect(path)
    # Setup only, not measured: no journal while loading; back to WAL (the file's mode) after.
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN IMMEDIATE")
    agents = gen.agents()
    ds.agent_ids = [a.id for a in agents]
    conn.executemany(
        "INSERT INTO agents (id, name, chain, network, public_key, status, owner_address,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                a.id,
                a.name,
                a.chain,
                a.network,
                a.public_key,
                a.status,
                a.owner_address,
                a.created_at,
                a.updated_at,
            )
            for a in agents
        ],
    )
    # sessions: 50 live (CORE-02 §5.3) and a year of expired ones
    sessions = []
    for i in range(5_000):
        live = i >= 4_950
        token_hash = hashlib.sha256(f"token-{i}".encode()).hexdigest()
        if live:
            ds.token_hashes.append(token_hash)
        created = NOW - YEAR + i * (YEAR // 5_000)
        sessions.append(
            (
                new_id(),
                gen.rng.choice(ds.agent_ids),
                token_hash,
                NOW + 86_400 if live else created + 86_400,
                '{"max_amount_per_tx":"1000000000"}',
                '{"tx_count":3}',
                None,
                created,
            )
        )
    conn.executemany(
        "INSERT INTO sessions (id, agent_id, token_hash, expires_at, constraints, usage_stats,"
        " revoked_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        sessions,
    )
    session_by_agent: dict[str, str] = {}
    for s in sessions:
        session_by_agent[s[1]] = s[0]
    for a in ds.agent_ids:
        session_by_agent.setdefault(a, sessions[-1][0])
    # policies: a few per agent, some global
    policies = [
        PolicyRow(
            id=new_id(),
            agent_id=None if i % 5 == 0 else ds.agent_ids[i % N_AGENTS],
            type=("SPENDING_LIMIT", "ALLOWED_ADDRESSES", "TIME_RESTRICTION", "AUTO_STOP")[i % 4],
            rules='{"instant_max":"1000000000","notify_max":"10000000000"}',
            priority=i % 3,
            enabled=0 if i % 11 == 0 else 1,
            created_at=NOW - YEAR,
            updated_at=NOW - YEAR,
        )
        for i in range(50)
    ]
    conn.executemany(
        "INSERT INTO policies (id, agent_id, type, rules, priority, enabled, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (p.id, p.agent_id, p.type, p.rules, p.priority, p.enabled, p.created_at, p.updated_at)
            for p in policies
        ],
    )
    # transactions and audit rows, in time order, in chunks (bounded memory)
    ds.first_ts, ds.last_ts = NOW - YEAR, NOW
    tx_sql, audit_sql = (
        insert_sql("transactions", TX_COLUMNS),
        insert_sql("audit_log", AUDIT_COLUMNS),
    )
    step = YEAR / max(tx_rows, 1)
    audit_per_tx = audit_rows / max(tx_rows, 1)
    audit_written = 0
    chunk_tx: list[tuple[Any, ...]] = []
    chunk_audit: list[tuple[Any, ...]] = []
    for i in range(tx_rows):
        ts = int(ds.first_ts + i * step)
        in_flight = i >= tx_rows - 200  # the newest few are still in flight
        status = (
            gen.rng.choice(("PENDING", "QUEUED", "SUBMITTED"))
            if in_flight
            else ("CONFIRMED" if gen.rng.random() < 0.97 else "FAILED")
        )
        agent = ds.agent_ids[gen.rng.randrange(N_AGENTS)]
        tx = gen.transaction(agent, session_by_agent[agent], ts, status)
        chunk_tx.append(tuple(tx[c] for c in TX_COLUMNS))
        want = round((i + 1) * audit_per_tx)
        for k in range(want - audit_written):
            row = gen.audit(tx, EVENTS[k % 3], ts + k)
            chunk_audit.append(tuple(row[c] for c in AUDIT_COLUMNS))
        audit_written = want
        if len(chunk_audit) >= 50_000:
            conn.executemany(tx_sql, chunk_tx)
            conn.executemany(audit_sql, chunk_audit)
            chunk_tx, chunk_audit = [], []
    conn.executemany(tx_sql, chunk_tx)
    conn.executemany(audit_sql, chunk_audit)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return ds


def percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49], q[98]


def timed(make_call: Callable[[], Callable[[], object]], n: int) -> list[float]:
    """Milliseconds of ``n`` calls; each call is built (parameters drawn) outside the timing."""
    out: list[float] = []
    for _ in range(n):
        call = make_call()
        start = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def bench_queries(workdir: Path, audit_rows: int, tx_rows: int, iterations: int) -> None:
    path = workdir / "queries.db"
    gen = Rows(2)
    start = time.perf_counter()
    ds = bulk_load(path, audit_rows, tx_rows, gen)
    emit(
        bench="load",
        audit_rows=audit_rows,
        tx_rows=tx_rows,
        seconds=round(time.perf_counter() - start, 1),
        file_mb=round(path.stat().st_size / 2**20, 1),
    )
    rng = random.Random(3)
    span = ds.last_ts - ds.first_ts
    # a window holding ~1000 of one agent's audit rows (the spec's "1000-row range scan")
    window = int(span * 1000 * N_AGENTS / max(audit_rows, 1))

    def params(name: str) -> tuple[Any, ...]:
        agent = rng.choice(ds.agent_ids)
        if name == "sessions.by_token_hash":
            return (rng.choice(ds.token_hashes), NOW)
        if name == "audit.agent_range":
            lo = rng.randrange(ds.first_ts, max(ds.first_ts + 1, ds.last_ts - window))
            return (agent, lo, lo + window)
        return (agent,)

    def repo_call(uow: UnitOfWork, name: str, p: tuple[Any, ...]) -> Callable[[], object]:
        if name == "sessions.by_token_hash":
            return lambda: uow.sessions.by_token_hash(*p)
        if name == "transactions.active_for_agent":
            return lambda: uow.transactions.active_for_agent(*p)
        if name == "audit.agent_range":
            return lambda: uow.audit.agent_range(*p)
        return lambda: uow.policies.for_agent(*p)

    db = Database.open(path)
    raw = raw_connect(path)
    try:
        for name, spec_ms in SPEC_QUERY_MS.items():
            n = iterations if name != "audit.agent_range" else max(iterations // 4, 100)
            with db.read() as uow:
                result: Any = repo_call(uow, name, params(name))()
                returned = int(result is not None) if name.startswith("sessions") else len(result)
                for _ in range(20):  # warm the page cache and the statement caches
                    repo_call(uow, name, params(name))()

                def repo_next(uow: UnitOfWork = uow, name: str = name) -> Callable[[], object]:
                    return repo_call(uow, name, params(name))

                repo = timed(repo_next, n)
            sql = SPEC_SQL[name]

            def raw_call(sql: str = sql, name: str = name) -> Callable[[], object]:
                p = params(name)
                return lambda: raw.execute(sql, p).fetchall()

            for _ in range(20):
                raw_call()()
            base = timed(raw_call, n)
            p50, p99 = percentiles(repo)
            b50, b99 = percentiles(base)
            emit(
                bench="query",
                query=name,
                audit_rows=audit_rows,
                tx_rows=tx_rows,
                calls=n,
                rows_returned_sample=returned,
                p50_ms=round(p50, 3),
                p99_ms=round(p99, 3),
                spec_expectation_ms=spec_ms,
                raw_sqlite_p50_ms=round(b50, 3),
                raw_sqlite_p99_ms=round(b99, 3),
            )
    finally:
        raw.close()
        db.close()


# --------------------------------------------------------------------------- size


def vacuum(conn: sqlite3.Connection) -> None:
    """VACUUM, then move it from the WAL into the main file so its size is final."""
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def bench_size(workdir: Path, tx_rows: int, audit_per_tx: int = 3) -> None:
    gen = Rows(4)
    path = workdir / "size.db"
    create_schema(path)
    conn = raw_connect(path)
    agents = gen.agents()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO agents (id, name, chain, network, public_key, status, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (a.id, a.name, a.chain, a.network, a.public_key, a.status, a.created_at, a.updated_at)
            for a in agents
        ],
    )
    conn.execute("COMMIT")
    vacuum(conn)
    with_agents = path.stat().st_size
    txs = [
        gen.transaction(agents[i % N_AGENTS].id, None, NOW + i, "CONFIRMED") for i in range(tx_rows)
    ]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert_sql("transactions", TX_COLUMNS), tuples(txs, TX_COLUMNS))
    conn.execute("COMMIT")
    vacuum(conn)
    with_tx = path.stat().st_size
    audits = [
        gen.audit(tx, EVENTS[k], tx["created_at"] + k) for tx in txs for k in range(audit_per_tx)
    ]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert_sql("audit_log", AUDIT_COLUMNS), tuples(audits, AUDIT_COLUMNS))
    conn.execute("COMMIT")
    vacuum(conn)
    with_audit = path.stat().st_size
    pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    indexes = dict(
        conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'").fetchall()
    )
    conn.close()

    def split(table: str, rows: int) -> tuple[float, float]:
        table_bytes = pages.get(table, 0)
        index_bytes = sum(v for k, v in pages.items() if indexes.get(k) == table)
        return round(table_bytes / rows, 1), round(index_bytes / rows, 1)

    for table, rows, delta, spec in (
        ("transactions", len(txs), with_tx - with_agents, 400),
        ("audit_log", len(audits), with_audit - with_tx, 300),
    ):
        table_b, index_b = split(table, rows)
        emit(
            bench="size",
            table=table,
            rows=rows,
            bytes_per_row=round(delta / rows, 1),
            table_bytes_per_row=table_b,
            index_bytes_per_row=index_b,
            spec_estimate_bytes_per_row=spec,
        )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--tx-rows", type=int, default=100_000)
    parser.add_argument("--insert-pairs", type=int, default=2_000)
    parser.add_argument("--query-calls", type=int, default=2_000)
    parser.add_argument("--size-tx-rows", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=None, help="keep the files here")
    args = parser.parse_args(argv)
    emit(
        bench="environment",
        sqlite=sqlite3.sqlite_version,
        python=platform.python_version(),
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    with tempfile.TemporaryDirectory(prefix="waiaas-bench-") as tmp:
        workdir = args.dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        bench_inserts(workdir, args.insert_pairs)
        bench_size(workdir, args.size_tx_rows)
        bench_queries(workdir, args.audit_rows, args.tx_rows, args.query_calls)


if __name__ == "__main__":
    main()
