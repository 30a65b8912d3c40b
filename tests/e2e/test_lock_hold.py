"""No chain call or sleep under the write lock: while one agent's send waits on a slow
chain, the database stays free and another agent's send (another thread, another process)
completes before the slow call returns. The claim that replaces the lock keeps the pipeline
exact: a claim lost to a takeover never sends its bytes, a stop that comes while a
transaction is being signed cancels it, and a nonce read before the claim is checked after.

The chains are real (LiteSVM, eth-tester, and the LiteSVM-backed JSON-RPC test server); the
slowness is a wrapper that holds one call of one agent until the test lets it go.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from solders.litesvm import LiteSVM

from tests.chains.solana_rpc_server import SolanaRpcServer
from tests.e2e.conftest import (
    TIER_AMOUNTS,
    FlakyAdapter,
    all_audit,
    events_of,
    new_agent,
    signings,
)
from tests.e2e.test_crash_recovery import CHILD, child_env
from tests.support.rawdb import raw_connect
from waiaas import Transfer, TxStatus, Wallet
from waiaas.chains.base import BalanceChanges, ChainTxStatus, SignedTx, UnsignedTx
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.solana import SolanaAdapter
from waiaas.pipeline import engine
from waiaas.testing import TEST_PASSWORD, FrozenClock, fast_config, local_wallet
from waiaas.types import Request

WAIT = 120.0  # the longest a stalled call is held (a safety net; the tests release it)


@dataclass
class Stall:
    """Holds the first call at ``point`` made for ``sender`` (after ``skip`` such calls)
    until :attr:`release` is set; ``after``: hold it once the inner call has answered."""

    point: str = ""
    sender: str = ""
    skip: int = 0
    after: bool = False
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    returned: threading.Event = field(default_factory=threading.Event)
    hashes: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _hit(self, point: str, sender: str) -> bool:
        with self._lock:
            if self.entered.is_set() or point != self.point or sender != self.sender:
                return False
            if self.skip > 0:
                self.skip -= 1
                return False
            self.entered.set()
            return True

    @contextmanager
    def at(self, point: str, sender: str) -> Iterator[None]:
        hit = self._hit(point, sender)
        if hit and not self.after:
            self.release.wait(WAIT)
        yield
        if hit:
            if self.after:
                self.release.wait(WAIT)
            self.returned.set()

    def who(self, signed: SignedTx) -> str:
        return self.sender if signed.tx_hash in self.hashes else ""


@dataclass
class StallingAdapter(FlakyAdapter):
    """A real adapter whose calls for one agent can be held (:class:`Stall`)."""

    gate: Stall = field(default_factory=Stall)

    def build(self, request: Request, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        with self.gate.at("build", sender):
            unsigned: UnsignedTx = self.inner.build(request, sender, nonce=nonce)
        return unsigned

    def simulate_balance_changes(
        self, unsigned: UnsignedTx, *, tokens: Any = ()
    ) -> BalanceChanges | None:
        with self.gate.at("simulate", unsigned.sender):
            changes: BalanceChanges | None = self.inner.simulate_balance_changes(
                unsigned, tokens=tokens
            )
        return changes

    def __getattr__(self, name: str) -> Any:
        value = super().__getattr__(name)  # only what the real adapter has (no Solana nonces)
        if name == "exact_balance_changes":  # EVM: the check before signing of a plain transfer

            def exact_balance_changes(unsigned: UnsignedTx) -> BalanceChanges | None:
                with self.gate.at("simulate", unsigned.sender):
                    changes: BalanceChanges | None = value(unsigned)
                return changes

            return exact_balance_changes
        if name != "pending_nonce":
            return value

        def pending_nonce(address: str) -> int:
            with self.gate.at("pending_nonce", address):
                return int(value(address))

        return pending_nonce

    def sign(self, unsigned: UnsignedTx, secret: bytes) -> SignedTx:
        signed: SignedTx = self.inner.sign(unsigned, secret)
        if unsigned.sender == self.gate.sender:
            self.gate.hashes.add(signed.tx_hash)
        return signed

    def submit(self, signed: SignedTx) -> str:
        with self.gate.at("submit", self.gate.who(signed)):
            return super().submit(signed)

    def wait_for_confirmation(self, signed: SignedTx, timeout: float = 30.0) -> ChainTxStatus:
        with self.gate.at("confirm", self.gate.who(signed)):
            return super().wait_for_confirmation(signed, timeout=timeout)


def write_lock_is_free(wallet: Wallet) -> bool:
    """Whether another connection gets the global write lock at once (SQLite: busy timeout
    0; PostgreSQL: the wallet's global advisory lock, tried without waiting)."""
    with raw_connect(wallet) as raw:
        if raw.dialect == "postgresql":
            from waiaas.db.engine import lock_key

            database, schema = raw.one("SELECT current_database(), current_schema()") or ("", "")
            raw.execute("BEGIN")
            try:
                key = lock_key(database, schema, "global")
                return bool((raw.one("SELECT pg_try_advisory_xact_lock(?)", (key,)) or (0,))[0])
            finally:
                raw.execute("ROLLBACK")
    conn = sqlite3.connect(wallet.path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def dest_for(adapter: Any, chain: str) -> str:
    """A fresh recipient (on Solana funded, so a small transfer leaves it rent-exempt)."""
    _secret, address = adapter.generate_secret()
    if chain == "solana":
        adapter.fund(address, 1_000_000_000)
    return str(address)


class Sender(threading.Thread):
    """``wallet.send`` in a thread; ``result`` / ``error`` when it is done."""

    def __init__(self, wallet: Wallet, token: str, request: Transfer) -> None:
        super().__init__(daemon=True)
        self.args = (wallet, token, request)
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        wallet, token, request = self.args
        try:
            self.result = wallet.send(token, request)
        except BaseException as exc:  # reported by the test
            self.error = exc


POINTS = [
    ("solana", "build", 0),  # admission: the plan is built
    ("solana", "build", 1),  # signing: built again under the claim (the claim path)
    ("solana", "simulate", 0),
    ("solana", "submit", 0),
    ("solana", "confirm", 0),
    ("evm", "pending_nonce", 0),  # the node's pending count, before the claim
    ("evm", "build", 1),  # the claim path
    ("evm", "simulate", 0),
    ("evm", "submit", 0),
]


@pytest.mark.parametrize(("chain", "point", "skip"), POINTS)
def test_another_agent_sends_while_one_chain_call_stalls(
    tmp_path: Path, chain: str, point: str, skip: int
) -> None:
    """Agent A's send is held inside one chain call; meanwhile the write lock is free
    (BEGIN IMMEDIATE with busy_timeout 0 succeeds) and agent B's send, in another thread,
    is CONFIRMED before A's call returns. Then A confirms too; each recipient is paid once."""
    inner = SolanaAdapter.local() if chain == "solana" else EvmAdapter.local()
    slow = StallingAdapter(inner)
    other = EvmAdapter.local() if chain == "solana" else SolanaAdapter.local()
    amount = TIER_AMOUNTS[chain]["INSTANT"]
    with local_wallet(tmp_path, chains=[slow, other], clock=FrozenClock()) as w:
        w._pipeline.presign = (point, skip) != ("build", 1)  # a second build: the claim path
        a, b = new_agent(w, chain, name="a"), new_agent(w, chain, name="b")
        token_a, token_b = w.issue_session(a.id).token, w.issue_session(b.id).token
        dest_a, dest_b = dest_for(slow, chain), dest_for(slow, chain)
        before = slow.get_balance(dest_a), slow.get_balance(dest_b)
        slow.gate = Stall(point=point, sender=a.public_key, skip=skip)

        sender_a = Sender(w, token_a, Transfer(to=dest_a, amount=amount))
        sender_a.start()
        try:
            assert slow.gate.entered.wait(60), "A never reached the stalled call"
            assert write_lock_is_free(w)
            sender_b = Sender(w, token_b, Transfer(to=dest_b, amount=amount))
            sender_b.start()
            sender_b.join(60)
            assert not sender_b.is_alive(), "B was blocked by A's stalled chain call"
            assert sender_b.error is None, sender_b.error
            assert sender_b.result.status == TxStatus.CONFIRMED, sender_b.result.error
            assert not slow.gate.returned.is_set() and sender_a.is_alive()
        finally:
            slow.gate.release.set()
            sender_a.join(60)
        assert sender_a.error is None, sender_a.error
        assert sender_a.result.status == TxStatus.CONFIRMED, sender_a.result.error
        assert slow.get_balance(dest_a) - before[0] == amount
        assert slow.get_balance(dest_b) - before[1] == amount
        for tx in (sender_a.result, sender_b.result):
            assert len(signings(w, tx.id)) == 1


@pytest.fixture(scope="module")
def solana_url() -> Iterator[str]:
    """One LiteSVM-backed Solana JSON-RPC server for the module."""
    with SolanaRpcServer(LiteSVM()) as server:
        yield server.url


@pytest.mark.parametrize(("point", "skip"), [("build", 1), ("submit", 0)])
def test_another_process_sends_while_one_chain_call_stalls(
    tmp_path: Path, solana_url: str, point: str, skip: int
) -> None:
    """The same with agent B in another process on the same database file: the child
    opens the wallet, sends and exits with B CONFIRMED while A's call is still held."""
    from waiaas.chains.solana.adapter import LocalSolanaAdapter

    db = tmp_path / "wallet.db"
    rpc = LocalSolanaAdapter.rpc(solana_url, network="localnet")
    slow = StallingAdapter(rpc)
    amount = TIER_AMOUNTS["solana"]["INSTANT"]
    try:
        with Wallet.open(
            db,
            password=TEST_PASSWORD,
            chains=[slow],
            config=fast_config(confirm_timeout=20.0),
            background=False,
        ) as w:
            w._pipeline.presign = (point, skip) != ("build", 1)  # a second build: the claim path
            a, b = new_agent(w, "solana", name="a"), new_agent(w, "solana", name="b")
            token_a, token_b = w.issue_session(a.id).token, w.issue_session(b.id).token
            dest_a, dest_b = dest_for(slow, "solana"), dest_for(slow, "solana")
            slow.gate = Stall(point=point, sender=a.public_key, skip=skip)
            sender_a = Sender(w, token_a, Transfer(to=dest_a, amount=amount))
            sender_a.start()
            try:
                assert slow.gate.entered.wait(60), "A never reached the stalled call"
                assert write_lock_is_free(w)
                spec = {
                    "db": str(db),
                    "solana_url": solana_url,
                    "mode": "send",
                    "token": token_b,
                    "to": dest_b,
                    "amount": str(amount),
                }
                child = subprocess.run(
                    [sys.executable, str(CHILD), json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    timeout=90,
                    env=child_env(),
                    check=False,
                )
                assert child.returncode == 0, child.stderr[-3000:]
                result = json.loads(child.stdout.splitlines()[-1])
                assert result["status"] == "CONFIRMED"
                assert not slow.gate.returned.is_set() and sender_a.is_alive()
            finally:
                slow.gate.release.set()
                sender_a.join(60)
            assert sender_a.error is None, sender_a.error
            assert sender_a.result.status == TxStatus.CONFIRMED, sender_a.result.error
            assert slow.get_balance(dest_a) == 1_000_000_000 + amount
            assert slow.get_balance(dest_b) == 1_000_000_000 + amount
            assert len(signings(w, result["id"])) == 1
            assert len(signings(w, sender_a.result.id)) == 1
    finally:
        rpc.close()


def test_a_claim_taken_over_never_sends_its_bytes(tmp_path: Path) -> None:
    """A's send holds its claim inside simulation. The claim is then found abandoned (its
    call no longer listed as running) and process_due takes the transaction over, signs and
    confirms it. When A's call comes back, its claim is gone: its bytes are dropped unsent.
    The recipient is paid once, one TX_SIGNED, one submission."""
    slow = StallingAdapter(SolanaAdapter.local())
    amount = TIER_AMOUNTS["solana"]["INSTANT"]
    with local_wallet(tmp_path, chains=[slow, EvmAdapter.local()], clock=FrozenClock()) as w:
        w._pipeline.presign = False  # the claim path: simulated under a claim
        a = new_agent(w, "solana", name="a")
        token = w.issue_session(a.id).token
        dest = dest_for(slow, "solana")
        slow.gate = Stall(point="simulate", sender=a.public_key)
        sender = Sender(w, token, Transfer(to=dest, amount=amount))
        sender.start()
        try:
            assert slow.gate.entered.wait(60)
            with w._pipeline.db.read() as uow:
                (row,) = uow.transactions.with_status(["EXECUTING"])
            claim = json.loads(row.metadata_json or "{}")["claim"]
            # Process_due of a live call leaves its claim alone ...
            assert w.process_due().resumed == 0
            assert w.get_transaction(row.id).status == TxStatus.EXECUTING
            # ... a claim whose call is gone is released and the transaction runs anew.
            engine._LIVE_CLAIMS.discard(claim["token"])
            report = w.process_due()
            assert report.resumed == 1
            assert w.get_transaction(row.id).status == TxStatus.CONFIRMED
        finally:
            slow.gate.release.set()
            sender.join(60)
        assert sender.error is None, sender.error
        assert sender.result.status == TxStatus.CONFIRMED
        assert slow.get_balance(dest) == 1_000_000_000 + amount
        events = events_of(w, row.id)
        assert events.count("TX_SIGNED") == 1 and events.count("TX_CONFIRMED") == 1
        released = [e for e in all_audit(w, tx_id=row.id) if e.event_type == "TX_RECOVERED"]
        assert [e.details["action"] for e in released] == ["claim released"]
        assert len(slow.submitted) == 1  # A's own bytes never left


def test_kill_switch_during_signing_cancels_and_sends_nothing(tmp_path: Path) -> None:
    """The kill switch is pressed while A's transaction is being built under its claim (the
    press does not wait for the chain): the signed bytes are never recorded, the
    transaction is CANCELLED and nothing is submitted."""
    slow = StallingAdapter(SolanaAdapter.local())
    amount = TIER_AMOUNTS["solana"]["INSTANT"]
    with local_wallet(tmp_path, chains=[slow, EvmAdapter.local()], clock=FrozenClock()) as w:
        w._pipeline.presign = False  # the claim path: built again under the claim
        a = new_agent(w, "solana", name="a")
        token = w.issue_session(a.id).token
        dest = dest_for(slow, "solana")
        slow.gate = Stall(point="build", sender=a.public_key, skip=1)
        sender = Sender(w, token, Transfer(to=dest, amount=amount))
        sender.start()
        try:
            assert slow.gate.entered.wait(60)
            w.kill_switch("stop while signing")
            assert not slow.gate.returned.is_set()
        finally:
            slow.gate.release.set()
            sender.join(60)
        assert sender.error is None, sender.error
        result = sender.result
        assert result.status == TxStatus.CANCELLED
        assert result.error is not None and "KILL_SWITCH_ACTIVE" in result.error
        assert "TX_SIGNED" not in events_of(w, result.id)
        assert slow.submitted == [] and slow.get_balance(dest) == 1_000_000_000


def test_a_nonce_used_while_it_was_read_is_replaced(tmp_path: Path) -> None:
    """EVM: A's first send reads the node's pending count, then stalls before its claim;
    A's second send meanwhile claims, signs and confirms that very nonce. The first send's
    claim reserves the stale number, the node is asked again after the claim, and a fresh
    nonce is reserved: both confirm, with consecutive nonces and nothing stale."""
    slow = StallingAdapter(EvmAdapter.local())
    amount = TIER_AMOUNTS["evm"]["INSTANT"]
    with local_wallet(tmp_path, chains=[slow, SolanaAdapter.local()], clock=FrozenClock()) as w:
        a = new_agent(w, "evm", name="a")
        token = w.issue_session(a.id).token
        slow.gate = Stall(point="pending_nonce", sender=a.public_key, after=True)
        first = Sender(w, token, Transfer(to=dest_for(slow, "evm"), amount=amount))
        first.start()
        try:
            assert slow.gate.entered.wait(60)
            second = w.send(token, Transfer(to=dest_for(slow, "evm"), amount=amount))
            assert second.status == TxStatus.CONFIRMED
        finally:
            slow.gate.release.set()
            first.join(60)
        assert first.error is None, first.error
        assert first.result.status == TxStatus.CONFIRMED, first.result.error

        def nonce(tx_id: str) -> int:
            (signed,) = signings(w, tx_id)
            return int(signed["nonce"])

        assert (nonce(second.id), nonce(first.result.id)) == (0, 1)
        assert "TX_RETRY" not in events_of(w, first.result.id)  # never stale
        assert slow.pending_nonce(a.public_key) == 2


class _Crash(Exception):
    """Stands for the process dying at a stage boundary."""


def test_a_claim_left_behind_is_released_and_runs_once(tmp_path: Path) -> None:
    """EVM: a request that cannot be built at admission (no funds yet) gets its plan in
    its claim, sealed with the row. The call dies right after the claim: the claim stays
    (EXECUTING, nothing signed). process_due finds it abandoned, releases it (TX_RECOVERED)
    and runs the transaction: the stored plan verifies, one TX_SIGNED, paid once."""
    from waiaas.pipeline.engine import PipelineHooks
    from waiaas.testing import fund

    state: dict[str, Any] = {}

    def hook(stage: str, tx_id: str) -> None:
        if stage == "admitted":
            fund(state["w"], state["agent"], 10**18)  # funds arrive after admission
        elif stage == "claimed" and not state.get("crashed"):
            state["crashed"] = True
            raise _Crash

    amount = TIER_AMOUNTS["evm"]["INSTANT"]
    with local_wallet(tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=hook)) as w:
        a = new_agent(w, "evm", name="a", funds=0)
        state.update(w=w, agent=a.id)
        token = w.issue_session(a.id).token
        adapter = w.chain_adapter(a.id)
        dest = dest_for(adapter, "evm")
        with pytest.raises(_Crash):
            w.send(token, Transfer(to=dest, amount=amount))
        (row,) = w.list_transactions(agent_id=a.id)
        meta = json.loads(w._pipeline.get_row(row.id).metadata_json or "{}")
        assert row.status == TxStatus.EXECUTING and "claim" in meta and "signed" not in meta
        assert meta["plan_digest"]  # built in the claim, not at admission
        assert "plan_deferred" not in meta
        report = w.process_due()
        assert report.resumed == 1 and report.problems == ()
        tx = w.get_transaction(row.id)
        assert tx.status == TxStatus.CONFIRMED, tx.error
        assert adapter.get_balance(dest) == amount
        events = events_of(w, row.id)
        assert events.count("TX_EXECUTING") == 2 and events.count("TX_SIGNED") == 1
        assert "TX_RECOVERED" in events and "TAMPER_DETECTED" not in events
