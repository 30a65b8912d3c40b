"""PostgreSQL failures become the same waiaas errors as SQLite's: constraint violations,
read-only transactions, dropped connections, lock waits; and the SQLSTATE table itself, with
psycopg's own exception classes."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.errors as pe
import pytest
from sqlalchemy import make_url

from tests.support.pg_schema import libpq, pg_server, pg_url
from waiaas.db import Database
from waiaas.db.faults import translate
from waiaas.errors import (
    DatabaseAuthError,
    DatabaseCorruptError,
    DatabaseLockedError,
    DatabaseMissingError,
    DatabaseReadOnlyError,
    DiskFullError,
    StorageError,
    StorageIOError,
)

__all__ = ["pg_server", "pg_url"]

ROOT = Path(__file__).resolve().parents[2]

# wallet_state rows besides the generation counters every database has (migration 0012)
_OWN = "key NOT IN ('generation:policies', 'generation:channels')"


def _with_query(url: str, **params: str) -> str:
    parsed = make_url(url)
    query = dict(parsed.query)
    for key, value in params.items():
        query[key] = f"{query[key]} {value}" if key in query else value
    return parsed.set(query=query).render_as_string(hide_password=False)


@pytest.fixture
def tagged(pg_url: str) -> Iterator[tuple[Database, str]]:
    """A database whose connections carry a unique application_name (to find them)."""
    tag = f"waiaas_faults_{secrets.token_hex(4)}"
    db = Database.open(_with_query(pg_url, application_name=tag))
    try:
        yield db, tag
    finally:
        db.close()


def _terminate(url: str, tag: str) -> int:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (tag,),
        ).fetchall()
    return len(rows)


# --------------------------------------------------------------------------- SQLSTATE table


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (pe.ReadOnlySqlTransaction, DatabaseReadOnlyError),
        (pe.DiskFull, DiskFullError),
        (pe.DeadlockDetected, DatabaseLockedError),
        (pe.SerializationFailure, DatabaseLockedError),
        (pe.LockNotAvailable, DatabaseLockedError),
        (pe.DataCorrupted, DatabaseCorruptError),
        (pe.IndexCorrupted, DatabaseCorruptError),
        (pe.AdminShutdown, StorageIOError),
        (pe.ConnectionFailure, StorageIOError),
        (pe.TooManyConnections, StorageIOError),
        (pe.InvalidPassword, DatabaseAuthError),
        (pe.InvalidCatalogName, DatabaseMissingError),
        (pe.UniqueViolation, StorageError),
        (pe.CheckViolation, StorageError),
        (pe.ForeignKeyViolation, StorageError),
        (pe.RaiseException, StorageError),
    ],
)
def test_sqlstate_mapping(error: type[psycopg.Error], expected: type[StorageError]) -> None:
    found = translate(error("boom"), operation="write", path="postgresql+psycopg://u:***@h/d")
    assert type(found) is expected
    assert found.path == "postgresql+psycopg://u:***@h/d"


# --------------------------------------------------------------------------- on the server


def _agent_sql(agent_id: str, status: str = "ACTIVE") -> str:
    return (
        "INSERT INTO agents (id, name, chain, network, public_key, status, created_at, "
        f"updated_at) VALUES ('{agent_id}', 'n', 'solana', 'devnet', 'pk-{agent_id}', "
        f"'{status}', 1, 1)"
    )


def test_constraint_violations_are_storage_errors_and_roll_back(pg_url: str) -> None:
    db = Database.open(pg_url)
    try:
        with db.write() as uow:
            uow.session.connection().exec_driver_sql(_agent_sql("a1"))
            uow.commit()
        for statement in (
            _agent_sql("a1"),  # unique (primary key)
            _agent_sql("a2", status="BOGUS"),  # check
            "INSERT INTO sessions (id, agent_id, token_hash, expires_at, created_at) "
            "VALUES ('s', 'nobody', 'h', 1, 1)",  # foreign key
        ):
            with pytest.raises(StorageError) as info, db.write() as uow:
                uow.session.connection().exec_driver_sql(_agent_sql("a3"))
                uow.session.connection().exec_driver_sql(statement)
            assert type(info.value) is StorageError
            assert info.value.operation == "write"
        assert db.fetch_one("SELECT count(*) FROM agents") == (1,)  # a3 rolled back each time
    finally:
        db.close()


def test_read_only_server_session(pg_url: str) -> None:
    Database.open(pg_url).close()  # the schema exists
    ro = Database.open(_with_query(pg_url, options="-cdefault_transaction_read_only=on"))
    try:
        with pytest.raises(DatabaseReadOnlyError), ro.write() as uow:
            uow.state.put("k", {}, now=1)
            uow.commit()
    finally:
        ro.close()


def test_a_dropped_connection_mid_transaction(tagged: tuple[Database, str], pg_url: str) -> None:
    db, tag = tagged
    with pytest.raises(StorageIOError), db.write() as uow:
        uow.state.put("before", {}, now=1)
        uow.session.flush()
        assert _terminate(pg_url, tag) >= 1
        uow.state.put("after", {}, now=1)
        uow.commit()
    # The pool threw the dead connection away: the next unit of work works, and nothing of
    # the interrupted one was kept.
    with db.write() as uow:
        uow.state.put("next", {}, now=1)
        uow.commit()
    assert db.fetch_one(f"SELECT string_agg(key, ',') FROM wallet_state WHERE {_OWN}") == ("next",)


def test_pooled_connections_dropped_while_idle(tagged: tuple[Database, str], pg_url: str) -> None:
    """A server restart (or an idle timeout) kills the pool's idle connections: the next
    unit of work reconnects instead of failing."""
    db, tag = tagged
    with db.write() as uow:
        uow.state.put("one", {}, now=1)
        uow.commit()
    assert db.fetch_one("SELECT 1") == (1,)
    assert _terminate(pg_url, tag) >= 1
    with db.write() as uow:
        uow.state.put("two", {}, now=1)
        uow.commit()
    with db.read() as uow:
        assert uow.fetch_one(f"SELECT count(*) FROM wallet_state WHERE {_OWN}") == (2,)
    # the idle fetch_one reader was dropped too: replaced on use
    assert db.fetch_one(f"SELECT count(*) FROM wallet_state WHERE {_OWN}") == (2,)


def test_deadlock_inside_units_of_work_is_database_locked(pg_url: str) -> None:
    """Two units of work of two agents lock rows in opposite orders: PostgreSQL breaks the
    cycle, and the victim gets DatabaseLockedError (its work rolled back)."""
    db = Database.open(pg_url)
    try:
        with db.write() as uow:
            uow.session.connection().exec_driver_sql(_agent_sql("x"))
            uow.session.connection().exec_driver_sql(_agent_sql("y"))
            uow.commit()
        barrier = threading.Barrier(2, timeout=30)
        errors: list[BaseException] = []

        def run(agent: str, first: str, second: str) -> None:
            try:
                with db.write(agent_id=agent) as uow:
                    conn = uow.session.connection()
                    conn.exec_driver_sql(f"UPDATE agents SET name = 'a' WHERE id = '{first}'")
                    barrier.wait()
                    conn.exec_driver_sql(f"UPDATE agents SET name = 'b' WHERE id = '{second}'")
                    uow.commit()
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=("x", "x", "y")),
            threading.Thread(target=run, args=("y", "y", "x")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(errors) == 1 and isinstance(errors[0], DatabaseLockedError), errors
    finally:
        db.close()


_HOLDER = """
import sys
from pathlib import Path
from waiaas.db import Database
db = Database.open(sys.argv[1])
with db.write(agent_id=sys.argv[2]) as uow:
    print("in", flush=True)
    sys.stdin.readline()
    uow.state.put("holder", {}, now=1)
    uow.commit()
db.close()
"""


def test_agent_locks_across_processes(pg_url: str) -> None:
    """Another process holds agent A: this one writes for agent B at once, and its own
    unit of work for A queues (seen in pg_locks) until the holder commits."""
    Database.open(pg_url).close()
    env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, pg_url, "agent-a"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    db = Database.open(pg_url)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "in"
        with db.write(agent_id="agent-b") as uow:  # not blocked by the other process
            uow.state.put("b", {}, now=1)
            uow.commit()
        done = threading.Event()

        def same_agent() -> None:
            with db.write(agent_id="agent-a") as uow:
                uow.state.put("a", {}, now=1)
                uow.commit()
            done.set()

        t = threading.Thread(target=same_agent)
        t.start()
        with psycopg.connect(libpq(pg_url), autocommit=True) as watch:
            for _ in range(6000):
                row = watch.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).fetchone()
                if row is not None and row[0] >= 1:
                    break
                threading.Event().wait(0.005)
            else:
                raise AssertionError("the second writer of agent A never waited")
        assert not done.is_set()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(60) == 0
        t.join(60)
        assert done.is_set()
        assert db.fetch_one(f"SELECT count(*) FROM wallet_state WHERE {_OWN}") == (3,)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()
        db.close()
