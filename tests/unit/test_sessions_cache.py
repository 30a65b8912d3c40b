"""Remembered verifications: a warm verify is exact, whoever changed the rows and from where.

``SessionManager`` remembers what the full check of a token established (the JWT part and
the parsed constraints) and re-reads the session and agent rows on every verify. Each test
warms a token up, changes something (in this process, on another connection, or in another
process), and checks that the very next verify sees it: with the same error, the same
``AUTH_FAILED`` row and the same values as a verify that never saw the token before.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

import waiaas
from tests.support import sessions as shared
from tests.support.rawdb import raw_connect, target_of
from tests.support.sessions import T0, FrozenClock, MemorySecretStore
from waiaas.config import WalletConfig
from waiaas.db import Database
from waiaas.db.tables import AgentRow, SessionRow
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    ConstraintViolationError,
    KeystoreLockedError,
    StorageError,
    TokenExpiredError,
    TokenRevokedError,
    WaiaasError,
)
from waiaas.ids import new_id
from waiaas.keystore.keys import b58encode
from waiaas.pipeline import killswitch
from waiaas.sessions import JWT_SECRET_NAME, SessionConstraints, SessionManager
from waiaas.types import MAX_AMOUNT, Transfer

migrated = shared.migrated
db = shared.db

DEST = b58encode(bytes(range(32)))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def store() -> MemorySecretStore:
    return MemorySecretStore()


@pytest.fixture
def mgr(db: Database, store: MemorySecretStore, clock: FrozenClock) -> SessionManager:
    return SessionManager(db, store, clock, WalletConfig(session_ttl=3600))


def add_agent(db: Database) -> str:
    agent_id = new_id()
    with db.write() as uow:
        uow.agents.add(
            AgentRow(
                id=agent_id,
                name="agent",
                chain="solana",
                network="devnet",
                public_key=b58encode(os.urandom(32)),
                status="ACTIVE",
                created_at=T0,
                updated_at=T0,
            )
        )
        uow.commit()
    return agent_id


class Reads:
    """Counts units of work and single-row reads on a database (instance attributes)."""

    def __init__(self, db: Database) -> None:
        self.units = 0
        self.rows = 0
        original_read, original_fetch = db.read, db.fetch_one

        def read() -> Any:
            self.units += 1
            return original_read()

        def fetch_one(sql: str, params: Any = ()) -> Any:
            self.rows += 1
            return original_fetch(sql, params)

        db.read = read  # type: ignore[method-assign]
        db.fetch_one = fetch_one  # type: ignore[method-assign]


def failures(db: Database) -> list[dict[str, Any]]:
    with db.read() as uow:
        rows = uow.audit.query(event_types=["AUTH_FAILED"], limit=1000)
    return [json.loads(r.details) for r in reversed(rows)]


@pytest.fixture
def warm(db: Database, mgr: SessionManager) -> Iterator[tuple[str, str, str, Reads]]:
    """(agent id, session id, token) of a session verified once; reads counted from then."""
    agent_id = add_agent(db)
    issued = mgr.issue(agent_id, constraints={"max_tx_count": 5})
    mgr.verify(issued.token)
    yield agent_id, issued.session_id, issued.token, Reads(db)


# --------------------------------------------------------------------------- the warm path


def test_a_warm_verify_is_one_row_read_and_no_unit_of_work(
    mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    """The second verify of a token reads one row and opens no unit of work."""
    agent_id, session_id, token, reads = warm
    for _ in range(3):
        verified = mgr.verify(token)
    assert (reads.units, reads.rows) == (0, 3)
    assert (verified.agent_id, verified.session_id) == (agent_id, session_id)
    assert verified.constraints == SessionConstraints(max_tx_count=5)
    assert (verified.chain, verified.network) == ("solana", "devnet")


def test_warm_and_cold_verifies_return_the_same_values(
    db: Database, store: MemorySecretStore, clock: FrozenClock, mgr: SessionManager
) -> None:
    """A remembered verification returns exactly what a fresh manager's first one does."""
    agent_id = add_agent(db)
    issued = mgr.issue(
        agent_id, constraints={"max_amount_per_tx": 7, "allowed_tx_types": ["TRANSFER"]}
    )
    first = mgr.verify(issued.token)
    again = mgr.verify(issued.token)
    fresh = SessionManager(db, store, clock, WalletConfig()).verify(issued.token)
    assert first == again == fresh


def test_verify_in_is_warm_too_and_reads_in_the_unit_of_work(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    """verify_in reuses the verification and reads through the caller's transaction: inside
    a write unit of work it sees that unit's own (uncommitted) revocation."""
    _agent_id, session_id, token, reads = warm
    with db.write() as uow:
        assert mgr.verify_in(uow, token, T0).session_id == session_id
        assert reads.rows == 0  # the unit of work's own connection, not a reader
        uow.sessions.revoke(session_id, T0)
        with pytest.raises(TokenRevokedError):
            mgr.verify_in(uow, token, T0)
    assert mgr.verify(token).session_id == session_id  # rolled back: still live


def test_usage_charged_is_seen_by_the_next_verify(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    """The usage returned is the row's as it is now, however often it changes."""
    _agent_id, _session_id, token, _reads = warm
    for n in range(1, 4):
        with db.write() as uow:
            verified = mgr.verify_in(uow, token, T0)
            mgr.enforce_and_record(
                uow, verified, Transfer(to=DEST, amount=10), network="devnet", now=T0
            )
            uow.commit()
        usage = mgr.verify(token).usage
        assert (usage.tx_count, usage.total()) == (n, 10 * n)


# --------------------------------------------------------------------------- same process


def test_revocation_is_seen_by_the_very_next_verify(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    _agent_id, session_id, token, _reads = warm
    mgr.revoke(session_id, actor="owner")
    with pytest.raises(TokenRevokedError):
        mgr.verify(token)
    assert failures(db)[-1]["reason"] == "session revoked"


def test_suspension_is_seen_by_the_very_next_verify(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    agent_id, _session_id, token, _reads = warm
    with db.write() as uow:
        uow.agents.cas_status(agent_id, ["ACTIVE"], "SUSPENDED", suspension_reason="owner")
        uow.commit()
    with pytest.raises(AgentNotActiveError):
        mgr.verify(token)
    assert failures(db)[-1]["reason"] == "agent is SUSPENDED"


def test_kill_switch_is_seen_by_the_very_next_verify(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    _agent_id, _session_id, token, _reads = warm
    with db.write() as uow:
        killswitch.activate(uow, actor="owner", reason="test", now=T0)
        uow.commit()
    with pytest.raises((TokenRevokedError, AgentNotActiveError)):
        mgr.verify(token)


def test_expiry_is_checked_against_now_on_every_verify(
    db: Database, mgr: SessionManager, clock: FrozenClock
) -> None:
    """A warm token is accepted until the second before it expires, refused at expiry."""
    issued = mgr.issue(add_agent(db), ttl=60)
    mgr.verify(issued.token)
    clock.t = T0 + 59
    assert mgr.verify(issued.token).expires_at == T0 + 60
    clock.t = T0 + 60
    with pytest.raises(TokenExpiredError):
        mgr.verify(issued.token)
    with pytest.raises(TokenExpiredError):
        mgr.verify(issued.token, now=T0 + 61)
    assert mgr.verify(issued.token, now=T0 + 1).session_id == issued.session_id  # given now


def test_row_expiry_shortened_in_the_database_is_seen(
    mgr: SessionManager, warm: tuple[str, str, str, Reads], run_sql: Callable[..., None]
) -> None:
    """The row's expiry counts even where it is earlier than the token's ``exp``."""
    _agent_id, session_id, token, _reads = warm
    run_sql("UPDATE sessions SET expires_at = ? WHERE id = ?", T0, session_id)
    with pytest.raises(TokenExpiredError):
        mgr.verify(token)


def test_renewal_refuses_the_old_token_at_once(
    mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    _agent_id, session_id, token, _reads = warm
    renewed = mgr.renew(token)
    with pytest.raises(TokenRevokedError, match="renewal"):
        mgr.verify(token)
    assert mgr.verify(renewed.token).session_id == session_id
    assert mgr.verify(renewed.token).usage.renewals == 1


def test_a_rolled_back_issuance_leaves_nothing_to_reuse(
    db: Database, store: MemorySecretStore, clock: FrozenClock, mgr: SessionManager
) -> None:
    """A verification made inside a transaction that rolls back is re-checked against the
    rows, which are not there: the token is refused."""
    agent_id = add_agent(db)
    mgr.issue(agent_id)  # the signing secret exists
    key = store.data[JWT_SECRET_NAME]
    session_id = new_id()
    token = jwt.encode(
        {"sub": agent_id, "sid": session_id, "iat": T0, "exp": T0 + 600, "jti": "x"},
        key,
        algorithm="HS256",
        headers={"typ": "JWT"},
    )
    with db.write() as uow:
        uow.sessions.add(
            SessionRow(
                id=session_id,
                agent_id=agent_id,
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                expires_at=T0 + 600,
                constraints="{}",
                usage_stats="{}",
                created_at=T0,
            )
        )
        assert mgr.verify_in(uow, token, T0).session_id == session_id
        # leaving without commit rolls the row back
    with pytest.raises(AuthError, match="unknown session"):
        mgr.verify(token)


def test_a_deleted_agent_takes_its_sessions_with_it(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    agent_id, _session_id, token, _reads = warm
    with db.write() as uow:
        uow.session.delete(uow.agents.get(agent_id))
        uow.commit()
    with pytest.raises(AuthError, match="unknown session"):
        mgr.verify(token)


def test_a_different_token_for_the_same_session_is_checked_in_full(
    mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    """Only the exact token verified is remembered: a changed signature is refused."""
    _agent_id, _session_id, token, _reads = warm
    head, body, sig = token.split(".")
    forged = f"{head}.{body}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    with pytest.raises(AuthError, match="bad signature"):
        mgr.verify(forged)
    for bad in (token + " ", token.upper(), token + "é", 42):
        with pytest.raises(AuthError):
            mgr.verify(bad)  # type: ignore[arg-type]


def test_forgetting_the_secret_forgets_every_verification(
    mgr: SessionManager, store: MemorySecretStore, warm: tuple[str, str, str, Reads]
) -> None:
    """After forget_secret (the keystore was locked) a verify needs the secret again."""
    _agent_id, _session_id, token, reads = warm

    def locked(name: str) -> bytes:
        raise KeystoreLockedError("locked")

    store.get_secret = locked  # type: ignore[method-assign]
    mgr.forget_secret()
    with pytest.raises(KeystoreLockedError):
        mgr.verify(token)
    assert reads.units == 1  # the full check ran


def test_unreadable_rows_written_meanwhile_are_reported(
    mgr: SessionManager, warm: tuple[str, str, str, Reads], run_sql: Callable[..., None]
) -> None:
    """Constraints or usage made unreadable after the token was verified: StorageError,
    as for a token never verified before."""
    _agent_id, session_id, token, _reads = warm
    run_sql("UPDATE sessions SET usage_stats = '{\"tx_count\": -1}' WHERE id = ?", session_id)
    with pytest.raises(StorageError, match="usage"):
        mgr.verify(token)
    run_sql(
        "UPDATE sessions SET usage_stats = '{}', constraints = '{\"max_tx_count\": \"x\"}' "
        "WHERE id = ?",
        session_id,
    )
    with pytest.raises(StorageError, match="constraints"):
        mgr.verify(token)


def test_the_number_of_remembered_tokens_is_bounded(
    db: Database, mgr: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the newest VERIFIED_CACHE_SIZE verifications are kept; older tokens still verify
    (in full)."""
    import waiaas.sessions as sessions_module

    monkeypatch.setattr(sessions_module, "VERIFIED_CACHE_SIZE", 3)
    agent_id = add_agent(db)
    tokens = [mgr.issue(agent_id).token for _ in range(5)]
    for token in tokens:
        mgr.verify(token)
    assert len(mgr._verified) == 3
    reads = Reads(db)
    mgr.verify(tokens[0])
    assert reads.units == 1
    mgr.verify(tokens[-1])
    assert reads.units == 1


def test_threads_verifying_while_another_revokes(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    """Once revoke() has returned, no verify that starts afterwards accepts the token."""
    _agent_id, session_id, token, _reads = warm
    revoked = threading.Event()
    late_accepts: list[int] = []
    stop = threading.Event()

    def verifier() -> None:
        while not stop.is_set():
            after = revoked.is_set()
            try:
                mgr.verify(token)
            except (TokenRevokedError, AuthError):
                continue
            if after:
                late_accepts.append(1)

    threads = [threading.Thread(target=verifier) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        mgr.revoke(session_id, actor="owner")
        revoked.set()
        threading.Event().wait(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert late_accepts == []


# --------------------------------------------------------------------------- other processes

WORKER = textwrap.dedent(
    """
    import json, sys
    from tests.support.rawdb import raw_connect
    from waiaas.config import WalletConfig
    from waiaas.db import Database
    from waiaas.pipeline import killswitch
    from waiaas.sessions import SessionManager

    class Store:
        def __init__(self, secret):
            self.secret = secret
        def put_secret(self, name, value):
            raise AssertionError("no new secret here")
        def get_secret(self, name):
            return self.secret

    class Clock:
        def now(self):
            return int(sys.argv[1])

    print("ready", flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op, path, out = cmd["op"], cmd["path"], "ok"
        db = Database.open(path)
        mgr = SessionManager(db, Store(bytes.fromhex(cmd["secret"])), Clock(), WalletConfig())
        try:
            if op == "revoke":
                mgr.revoke(cmd["session_id"], actor="other process")
            elif op == "renew":
                out = mgr.renew(cmd["token"]).token
            elif op == "kill":
                with db.write() as uow:
                    when = Clock().now()
                    killswitch.activate(uow, actor="owner", reason="test", now=when)
                    uow.commit()
            elif op == "sql":  # a writer that is not waiaas at all
                with raw_connect(path) as conn:
                    conn.execute(cmd["sql"], cmd["params"])
        except Exception as exc:  # reported to the test, which fails on it
            out = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            db.close()
        print(json.dumps(out), flush=True)
    """
)


class OtherProcess:
    """One Python process that changes a wallet file on request (started once per module)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(T0)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    [str(Path(waiaas.__file__).parents[1]), str(Path(__file__).parents[2])]
                ),
            },
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.path = ""
        self.secret = ""

    def __call__(self, **cmd: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"path": self.path, "secret": self.secret, **cmd}) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "the other process died"
        result = json.loads(answer)
        assert not (isinstance(result, dict) and "error" in result), result
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.close()
            assert self.proc.wait(timeout=30) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def other_process() -> Iterator[OtherProcess]:
    worker = OtherProcess()
    yield worker
    worker.close()


@pytest.fixture
def other(
    db: Database, store: MemorySecretStore, mgr: SessionManager, other_process: OtherProcess
) -> OtherProcess:
    """The other process, pointed at this test's wallet file and signing secret."""
    mgr.issue(add_agent(db))  # creates the signing secret (the other process renews)
    other_process.path = target_of(db)  # its file, or its PostgreSQL URL
    other_process.secret = store.data[JWT_SECRET_NAME].hex()
    return other_process


@pytest.fixture
def run_sql(db: Database) -> Callable[..., None]:
    """Run one statement on a plain connection (sqlite3 or psycopg): another writer."""

    def run(sql: str, *params: Any) -> None:
        with raw_connect(db) as conn:
            conn.execute(sql, params)

    return run


def test_another_process_revokes(db: Database, mgr: SessionManager, other: OtherProcess) -> None:
    agent_id = add_agent(db)
    issued = mgr.issue(agent_id)
    mgr.verify(issued.token)
    other(op="revoke", session_id=issued.session_id)
    with pytest.raises(TokenRevokedError):
        mgr.verify(issued.token)
    assert failures(db)[-1]["reason"] == "session revoked"


def test_another_process_suspends_the_agent_with_plain_sql(
    db: Database, mgr: SessionManager, other: OtherProcess
) -> None:
    agent_id = add_agent(db)
    issued = mgr.issue(agent_id)
    mgr.verify(issued.token)
    other(op="sql", sql="UPDATE agents SET status = 'SUSPENDED' WHERE id = ?", params=[agent_id])
    with pytest.raises(AgentNotActiveError):
        mgr.verify(issued.token)
    other(op="sql", sql="UPDATE agents SET status = 'ACTIVE' WHERE id = ?", params=[agent_id])
    assert mgr.verify(issued.token).agent_id == agent_id  # and back again


def test_another_process_activates_the_kill_switch(
    db: Database, mgr: SessionManager, other: OtherProcess
) -> None:
    issued = mgr.issue(add_agent(db))
    mgr.verify(issued.token)
    other(op="kill")
    with pytest.raises((TokenRevokedError, AgentNotActiveError)):
        mgr.verify(issued.token)


def test_another_process_renews_the_token(
    db: Database, mgr: SessionManager, other: OtherProcess
) -> None:
    issued = mgr.issue(add_agent(db))
    mgr.verify(issued.token)
    new_token = other(op="renew", token=issued.token)
    with pytest.raises(TokenRevokedError, match="renewal"):
        mgr.verify(issued.token)
    assert mgr.verify(new_token).session_id == issued.session_id


def test_another_process_changes_constraints_and_usage(
    db: Database, mgr: SessionManager, other: OtherProcess
) -> None:
    issued = mgr.issue(add_agent(db), constraints={"max_tx_count": 5})
    mgr.verify(issued.token)
    other(
        op="sql",
        sql="UPDATE sessions SET constraints = ?, usage_stats = ? WHERE id = ?",
        params=['{"max_tx_count": 2}', '{"tx_count": 1}', issued.session_id],
    )
    verified = mgr.verify(issued.token)
    assert verified.constraints.max_tx_count == 2
    assert verified.usage.tx_count == 1


def test_the_live_read_keeps_the_agent_row_in_the_unit_of_work(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    """A remembered token's live read returns the agent's row too: in the caller's unit of
    work ``uow.agents.get`` of it reads no more, and gives the row as stored, every column."""
    from sqlalchemy import event

    agent_id, _sid, token, _reads = warm
    with db.read() as uow:
        stored = uow.agents.get(agent_id)
        assert stored is not None
        expected = stored.model_dump()
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    with db.write() as uow:
        mgr.verify_in(uow, token, T0 + 1)
        event.listen(db.engine, "before_cursor_execute", before)
        try:
            agent = uow.agents.get(agent_id)
        finally:
            event.remove(db.engine, "before_cursor_execute", before)
        assert agent is not None and agent.model_dump() == expected
        assert seen == []
        uow.agents.update_fields(agent_id, status="SUSPENDED")  # still an ordinary row
        uow.commit()
    with db.read() as uow:
        again = uow.agents.get(agent_id)
        assert again is not None and again.status == "SUSPENDED"


def test_recall_in_reads_the_state_keys_with_the_live_row_and_never_refuses(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    """``recall_in`` of a remembered token: the session (as ``verify_in`` returns it) and
    the wallet_state keys in one statement of the unit of work. A revoked session, with the
    kill switch on, gives ``None`` and the keys still held (the caller refuses with the
    kill switch first); ``verify_in`` then raises the precise error. An unknown token only
    prefetches the keys."""
    _agent_id, session_id, token, _reads = warm
    with db.write() as uow:
        ran: list[str] = []
        fetch = uow.fetch_one

        def fetch_one(sql: str, params: Any = ()) -> Any:
            ran.append(sql)
            return fetch(sql, params)

        uow.fetch_one = fetch_one  # type: ignore[method-assign]
        live = mgr.recall_in(uow, token, T0, state=[killswitch.KEY, "other"])
        assert live == mgr.verify_in(uow, token, T0)
        assert live is not None and live.session_id == session_id
        assert len(ran) == 2 and "wallet_state" in ran[0] and "wallet_state" not in ran[1]
        assert uow.state.held(killswitch.KEY) == (True, None)
        assert uow.state.held("other") == (True, None)
    with db.write() as uow:
        killswitch.activate(uow, actor="owner", reason="test", now=T0)
        uow.commit()
    with db.write() as uow:
        assert mgr.recall_in(uow, token, T0, state=[killswitch.KEY]) is None
        assert uow.state.held(killswitch.KEY)[0] and killswitch.is_active(uow)
        with pytest.raises(TokenRevokedError):
            mgr.verify_in(uow, token, T0)
    with db.write() as uow:
        assert mgr.recall_in(uow, "not-a-token", T0, state=[killswitch.KEY]) is None
        assert killswitch.is_active(uow)


# --------------------------------------------------------------------------- usage written here


def _charge(db: Database, mgr: SessionManager, token: str, amount: int, *, commit: bool) -> Any:
    with db.write() as uow:
        verified = mgr.verify_in(uow, token, T0)
        usage = mgr.enforce_and_record(
            uow, verified, Transfer(to=DEST, amount=amount), network="devnet", now=T0
        )
        if commit:
            uow.commit()
    return usage


def test_usage_written_but_rolled_back_is_not_seen(
    db: Database, mgr: SessionManager, warm: tuple[str, str, str, Reads]
) -> None:
    """The usage a charge wrote is remembered with its text; a charge that rolled back left
    the row's old text, so the next verify sees the row's usage, and the session's
    max_tx_count (5) still counts only what committed."""
    _agent_id, _session_id, token, _reads = warm
    assert _charge(db, mgr, token, 10, commit=False).tx_count == 1
    assert mgr.verify(token).usage.tx_count == 0
    for n in range(1, 6):
        assert _charge(db, mgr, token, 10, commit=True).tx_count == n
        assert (mgr.verify(token).usage.tx_count, mgr.verify(token).usage.total()) == (n, 10 * n)
    with pytest.raises(ConstraintViolationError, match="max_tx_count"):
        _charge(db, mgr, token, 10, commit=True)


def test_usage_written_here_then_changed_elsewhere_is_read_again(
    db: Database,
    mgr: SessionManager,
    warm: tuple[str, str, str, Reads],
    run_sql: Callable[..., None],
) -> None:
    """After this manager's own charge, a usage another connection wrote is what the next
    verify returns (and charges on)."""
    _agent_id, session_id, token, _reads = warm
    _charge(db, mgr, token, 10, commit=True)
    other = '{"tx_count":4,"totals":{"native":"1000"}}'
    run_sql(f"UPDATE sessions SET usage_stats = '{other}' WHERE id = ?", session_id)
    usage = mgr.verify(token).usage
    assert (usage.tx_count, usage.total()) == (4, 1000)
    assert _charge(db, mgr, token, 10, commit=True).tx_count == 5


def test_a_usage_total_past_the_amount_range_is_not_remembered(
    db: Database,
    store: MemorySecretStore,
    clock: FrozenClock,
    mgr: SessionManager,
    warm: tuple[str, str, str, Reads],
) -> None:
    """A total charged past 2**256 - 1 is stored, and refused when read: this manager's next
    verify refuses it as a fresh manager's does, not with the total it wrote."""
    _agent_id, _session_id, token, _reads = warm
    _charge(db, mgr, token, MAX_AMOUNT, commit=True)
    _charge(db, mgr, token, MAX_AMOUNT, commit=True)
    fresh = SessionManager(db, store, clock, WalletConfig(session_ttl=3600))
    with pytest.raises(WaiaasError) as cold:
        fresh.verify(token)
    with pytest.raises(type(cold.value)):
        mgr.verify(token)
