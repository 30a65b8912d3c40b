"""Notifications from the pipeline: they go out only after the change they describe has
committed, and a notifier that raises or stalls never changes what happens to a transaction."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    TIER_AMOUNTS,
    ProbeNotifier,
    RaisingNotifier,
    drive_every_path,
    new_agent,
    recipient,
)
from tests.support.rawdb import raw_connect
from waiaas.errors import ConstraintViolationError
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet

# TX_REQUESTED (a NOTIFY request): PENDING, or SUBMITTED when admission recorded the bytes it
# signed before its lock (the presigned path) in the same commit.
REQUESTED_STATUSES = ("PENDING", "SUBMITTED")
STATUS_OF_EVENT = {
    "TX_REQUESTED": "PENDING",
    "TX_QUEUED": "QUEUED",
    "TX_CONFIRMED": "CONFIRMED",
    "TX_FAILED": "FAILED",
    "TX_CANCELLED": "CANCELLED",
    "TX_REJECTED": "CANCELLED",
    "TX_EXPIRED": "EXPIRED",
    "POLICY_VIOLATION": "FAILED",
}


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[tuple[Wallet, ProbeNotifier]]:
    """A wallet whose notifier checks, from its own connection, what is committed."""
    notifier = ProbeNotifier()
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=notifier) as wallet:
        notifier.target = wallet
        yield wallet, notifier


def test_events_arrive_only_after_commit(probe: tuple[Wallet, ProbeNotifier], chain: str) -> None:
    """For every transaction event, a separate connection opened inside notify() already
    sees the row in the status the event announces: the change was committed first."""
    wallet, notifier = probe
    ids = drive_every_path(wallet, chain)
    seen = [(kind, tx, status) for kind, tx, status in notifier.seen if kind in STATUS_OF_EVENT]
    kinds = {kind for kind, _tx, _status in seen}
    assert {
        "TX_REQUESTED",
        "TX_QUEUED",
        "TX_CONFIRMED",
        "TX_FAILED",
        "TX_CANCELLED",
        "TX_REJECTED",
        "TX_EXPIRED",
        "POLICY_VIOLATION",
    } <= kinds
    for kind, tx_id, status in seen:
        if kind == "TX_REQUESTED":
            assert status in REQUESTED_STATUSES, (kind, tx_id, status)
        else:
            assert status == STATUS_OF_EVENT[kind], (kind, tx_id)
    assert set(ids.values()) <= {tx for _kind, tx, _status in seen}


def test_refused_requests_do_not_notify_transactions(
    wallet: Wallet, notifier: RecordingNotifier
) -> None:
    """A request refused before it was recorded (session constraint, rolled back) produces
    no transaction notification."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id, constraints={"max_amount_per_tx": 10}).token
    notifier.clear()
    with pytest.raises(ConstraintViolationError):
        wallet.send(
            token, Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["NOTIFY"])
        )
    assert [e for e in notifier.events if e.tx_id is not None] == []
    assert wallet.list_transactions(agent_id=agent.id) == []


def test_raising_notifier_never_affects_transactions(tmp_path: Path, chain: str) -> None:
    """With a notifier that raises on every event, every path ends exactly as it would with a
    working one."""
    raising = RaisingNotifier()
    with local_wallet(tmp_path, name="a.db", clock=FrozenClock(), notifier=raising) as broken:
        broken_ids = drive_every_path(broken, chain)
        broken_status = {k: broken.get_transaction(v).status for k, v in broken_ids.items()}
        broken.kill_switch("still works")
        assert broken.kill_switch_state().active
    with local_wallet(
        tmp_path, name="b.db", clock=FrozenClock(), notifier=RecordingNotifier()
    ) as ok:
        ok_ids = drive_every_path(ok, chain)
        ok_status = {k: ok.get_transaction(v).status for k, v in ok_ids.items()}
    assert raising.calls > 10
    assert broken_status == ok_status
    assert broken_status == {
        "instant": "CONFIRMED",
        "notify": "CONFIRMED",
        "delay": "FAILED",
        "cancelled": "CANCELLED",
        "approved": "CONFIRMED",
        "rejected": "CANCELLED",
        "expired": "EXPIRED",
        "denied": "FAILED",
    }


class _StallingNotifier(RecordingNotifier):
    """Blocks inside notify() on TX_CONFIRMED until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def notify(self, event: Any) -> None:
        if event.event_type == "TX_CONFIRMED":
            self.entered.set()
            self.release.wait(timeout=30)
        super().notify(event)


def test_stalling_notifier_holds_no_lock_and_changes_nothing(tmp_path: Path) -> None:
    """While a notifier stalls inside notify(), the transaction is already CONFIRMED in the
    file and the database is free for other writers; when it returns, the result is the same
    as without it."""
    notifier = _StallingNotifier()
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=notifier) as wallet:
        agent = new_agent(wallet, "evm")
        token = wallet.issue_session(agent.id).token
        dest = recipient("evm")
        results: list[Any] = []
        worker = threading.Thread(
            target=lambda: results.append(
                wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS["evm"]["INSTANT"]))
            )
        )
        worker.start()
        try:
            assert notifier.entered.wait(timeout=30)
            with raw_connect(wallet) as con:
                statuses = [r[0] for r in con.all("SELECT status FROM transactions")]
                assert statuses == ["CONFIRMED"]
                if con.dialect == "sqlite":
                    con.execute("BEGIN IMMEDIATE")  # no write lock is held by the stalled send
                    con.execute("ROLLBACK")
                else:  # no row lock either: another writer could take the row at once
                    con.execute("BEGIN")
                    con.execute("SELECT id FROM transactions FOR UPDATE NOWAIT")
                    con.execute("ROLLBACK")
            assert wallet.list_agents()[0].status == "ACTIVE"
        finally:
            notifier.release.set()
            worker.join(timeout=60)
        assert [r.status for r in results] == ["CONFIRMED"]
        assert wallet.balance(agent.id) < 10 * 10**18 - TIER_AMOUNTS["evm"]["INSTANT"]
