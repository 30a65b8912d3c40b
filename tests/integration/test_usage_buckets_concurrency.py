"""Usage buckets under concurrent writers on PostgreSQL (READ COMMITTED, no BEGIN IMMEDIATE).

Many threads insert transactions at once: through the wallet (``db.write(agent_id=...)``: one
agent's writers queue on its advisory lock, different agents run in parallel, each sealing
its buckets at commit) and through raw connections that take no lock at all (another
process, raw SQL), all starting the same new hour together so that the triggers'
``INSERT ... ON CONFLICT DO UPDATE`` race on the first row of a bucket. Afterwards every
bucket equals what the backfill computes from the rows, bucket-based usage equals the row
scan for every agent, and every bucket a keyed writer wrote is sealed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.pg_schema import create_schema, drop_schema, libpq, schema_url
from waiaas.db import Database
from waiaas.db import usage as usage_db
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.ids import new_id
from waiaas.integrity import Integrity
from waiaas.policy.model import DAY, WEEK
from waiaas.services.policies import _scan_usage, load_usage

NOW = 1_780_000_000
HOUR = NOW - NOW % 3600
THREADS = 8
ROUNDS = 6


@pytest.fixture
def pg_target(postgres_url: str) -> Iterator[str]:
    name = create_schema(postgres_url, prefix="usagecc")
    try:
        yield schema_url(postgres_url, name)
    finally:
        drop_schema(postgres_url, name)


def _integrity() -> Integrity:
    return Integrity(
        mac_key=os.urandom(32),
        signing_seed=os.urandom(32),
        wallet_id="test-wallet",
        anchor=(0, "0" * 64),
        head_path=None,
        checkpoint_rows=10**9,
    )


def _agent(db: Database) -> str:
    agent_id = new_id()
    with db.write() as uow:
        uow.agents.add(
            AgentRow(
                id=agent_id,
                name=f"agent-{agent_id[-6:]}",
                chain="solana",
                network="devnet",
                public_key=f"pk-{agent_id}",
                status="ACTIVE",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        uow.commit()
    return agent_id


def _spend(n: int) -> str:
    return json.dumps({"native": str(10**27 + 999_999_999 * n), "USDC": str(n)})


def _row(agent: str, created: int, n: int) -> TransactionRow:
    return TransactionRow(
        id=new_id(),
        agent_id=agent,
        chain="solana",
        type="TRANSFER",
        amount="7",
        status=("CONFIRMED", "QUEUED", "FAILED")[n % 3],
        error="POLICY_DENIED" if n % 5 == 0 else None,
        created_at=created,
        spend=_spend(n),
    )


def _run(workers: list[Any]) -> None:
    errors: list[BaseException] = []

    def guard(fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _recomputed(target: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the buckets as stored, the buckets the backfill computes from the rows) - non-zero."""
    cols = ", ".join(usage_db.COLUMNS[:-1])
    with psycopg.connect(libpq(target)) as conn:  # one transaction, rolled back
        stored = conn.execute(f"SELECT {cols} FROM usage_buckets").fetchall()
        conn.execute("DELETE FROM usage_buckets")
        for stmt in usage_db.pg_fill_sql():
            conn.execute(stmt)
        fresh = conn.execute(f"SELECT {cols} FROM usage_buckets").fetchall()
        conn.rollback()
    return (
        sorted(tuple(r) for r in stored if any(r[4:])),
        sorted(tuple(r) for r in fresh if any(r[4:])),
    )


def test_concurrent_writers_leave_buckets_equal_to_the_rows(pg_target: str) -> None:
    db = Database.open(pg_target)
    try:
        db.integrity = _integrity()
        shared = _agent(db)
        own = [_agent(db) for _ in range(THREADS // 2)]
        barrier = threading.Barrier(THREADS * 2)

        def wallet_writer(i: int) -> Any:
            agent = shared if i % 2 else own[i // 2]

            def work() -> None:
                for r in range(ROUNDS):
                    barrier.wait()  # every writer starts the new hour together
                    with db.write(agent_id=agent) as uow:
                        load_usage(uow, agent, HOUR + r * 3600, {3600})
                        uow.transactions.add(_row(agent, HOUR + r * 3600 + i, i + r))
                        uow.commit()

            return work

        def raw_writer(i: int) -> Any:
            def work() -> None:
                conn = psycopg.connect(libpq(pg_target), autocommit=True)
                try:
                    for r in range(ROUNDS):
                        barrier.wait()
                        for k in range(3):  # no advisory lock: only the triggers' upserts
                            row = _row(shared, HOUR + r * 3600 + k, i * 3 + k)
                            conn.execute(
                                "INSERT INTO transactions (id, agent_id, chain, type, amount, "
                                "status, error, created_at, spend) "
                                "VALUES (%s, %s, 'solana', 'TRANSFER', '7', %s, %s, %s, %s)",
                                (
                                    row.id,
                                    row.agent_id,
                                    row.status,
                                    row.error,
                                    row.created_at,
                                    row.spend,
                                ),
                            )
                finally:
                    conn.close()

            return work

        _run([wallet_writer(i) for i in range(THREADS)] + [raw_writer(i) for i in range(THREADS)])

        stored, fresh = _recomputed(pg_target)
        assert stored == fresh
        assert len(fresh) >= ROUNDS * 3  # counts and two assets per hour of the shared agent
        at = HOUR + ROUNDS * 3600
        for agent in (shared, *own):
            with db.write(agent_id=agent) as uow:  # seals what the raw writers left unsealed
                assert load_usage(uow, agent, at, {3600, 7200}) == _scan_usage(
                    uow, agent, at, sorted({3600, 7200, DAY, WEEK}), ""
                )
                uow.commit()
            with db.read() as uow:
                got = load_usage(uow, agent, at, {3600})
                assert got == _scan_usage(uow, agent, at, sorted({3600, DAY, WEEK}), "")
        with psycopg.connect(libpq(pg_target)) as conn:
            assert conn.execute(
                "SELECT COUNT(*) FROM usage_buckets WHERE mac IS NULL"
            ).fetchone() == (0,)
        requests = {r[0]: r[4] for r in fresh if r[2] == usage_db.COUNTS and r[1] == HOUR}
        assert requests[shared] == THREADS // 2 + THREADS * 3
    finally:
        db.close()


def test_parallel_writers_of_different_agents_seal_only_their_own(pg_target: str) -> None:
    """A keyed writer of one agent leaves another agent's bucket, that a writer is changing
    at that moment (its advisory lock held), alone; that writer seals it at its commit."""
    db = Database.open(pg_target)
    try:
        db.integrity = _integrity()
        a, b = _agent(db), _agent(db)
        inside = threading.Event()
        release = threading.Event()

        def slow_b() -> None:
            with db.write(agent_id=b) as uow:
                uow.transactions.add(_row(b, HOUR, 1))
                uow.session.flush()
                inside.set()
                assert release.wait(30)
                uow.commit()

        t = threading.Thread(target=slow_b)
        t.start()
        try:
            assert inside.wait(30)
            # raw, unsealed row of b committed by someone without the key
            with psycopg.connect(libpq(pg_target), autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, details) "
                    "VALUES (%s, 'REQUEST_REFUSED', 'agent', %s, '{}')",
                    (HOUR - 3600 + 5, b),  # an hour b's writer is not changing
                )
            with db.write(agent_id=a) as uow:  # must not wait for b, nor touch b's buckets
                uow.transactions.add(_row(a, HOUR, 2))
                uow.commit()
            with psycopg.connect(libpq(pg_target)) as conn:
                marks = conn.execute(
                    "SELECT agent_id, mac IS NULL FROM usage_buckets WHERE start = %s",
                    (HOUR - 3600,),
                ).fetchall()
            assert marks == [(b, True)]  # left for b's writer, which holds b's lock
        finally:
            release.set()
            t.join()
        stored, fresh = _recomputed(pg_target)
        assert stored == fresh
        with psycopg.connect(libpq(pg_target)) as conn:
            left = conn.execute("SELECT agent_id FROM usage_buckets WHERE mac IS NULL").fetchall()
        assert left == []  # b's writer resealed its bucket (the refusal included)
        for agent in (a, b):
            with db.read() as uow:
                assert load_usage(uow, agent, HOUR + 60, {60}) == _scan_usage(
                    uow, agent, HOUR + 60, sorted({60, DAY, WEEK}), ""
                )
    finally:
        db.close()
