"""Keystore backends: a key's use and a key's creation in files, in SQLite, in PostgreSQL.

``use_key`` is on the path of every signature: the file backend reads one small file, the
database backend one row (``Database.fetch_one``: a plain connection, one statement). The
baseline is the file backend measured in the same run; each figure is the median of
several batches, with its ratio to the baseline. ``add_key`` (one write transaction, or one
atomic file write) is measured the same way, and ``change_password`` with 50 keys
(re-sealing every record; the KDF at the minimum limits, so the figure is the rewrite).

PostgreSQL is measured when ``--postgres URL`` (or ``$WAIAAS_TEST_POSTGRES_URL``) names a
server; each run uses a fresh schema and drops it.

    PYTHONPATH=src python benchmarks/bench_keystore_backends.py [--n 2000] [--postgres URL]

Prints one JSON object per line. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from waiaas.config import KdfLimits
from waiaas.db import Database
from waiaas.keystore import Keystore, generate_keypair

PASSWORD = "benchmark master password"


def emit(**fields: object) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def per_op_us(op: Callable[[], object], count: int, batches: int = 5) -> float:
    """Median microseconds per call over ``batches`` batches (after one warm-up batch)."""
    for _ in range(max(1, count // 10)):
        op()
    rates: list[float] = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(count):
            op()
        rates.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(rates)


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy import make_url

    name = f"bench_ks_{secrets.token_hex(4)}"
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        parsed = make_url(url)
        query = {**parsed.query, "options": f"-csearch_path={name}"}
        yield parsed.set(query=query).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def measure(name: str, target: Path | Database, n: int) -> dict[str, float]:
    ks = Keystore.create(target, PASSWORD, kdf=KdfLimits.minimum())
    for i in range(50):
        ks.add_key(f"agent-{i}", "solana", *generate_keypair("solana"))

    def use() -> None:
        with ks.use_key("agent-7"):
            pass

    counter = iter(range(10**9))

    def add() -> None:
        ks.add_key(f"extra-{next(counter)}", "solana", *generate_keypair("solana"))

    def change() -> None:
        ks.change_password(PASSWORD, PASSWORD)

    figures = {
        "use_key_us": per_op_us(use, n),
        "add_key_us": per_op_us(add, max(10, n // 20)),
        "change_password_50_keys_ms": per_op_us(change, 3, batches=3) / 1000,
    }
    ks.lock()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("WAIAAS_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        base = Path(home)
        results = {"file": measure("file", base / "ks", args.n)}
        db = Database.open(base / "wallet.db")
        try:
            results["sqlite"] = measure("sqlite", db, args.n)
        finally:
            db.close()
        if args.postgres:
            with postgres_schema(args.postgres) as url:
                pg = Database.open(url)
                try:
                    results["postgresql"] = measure("postgresql", pg, args.n)
                finally:
                    pg.close()
    baseline = results["file"]
    for backend, figures in results.items():
        emit(
            bench="keystore_backends",
            backend=backend,
            baseline="file",
            **{k: round(v, 1) for k, v in figures.items()},
            **{
                k.replace("_us", "_ratio").replace("_ms", "_ratio"): round(v / baseline[k], 2)
                for k, v in figures.items()
            },
        )


if __name__ == "__main__":
    main()
