"""On PostgreSQL the write units of work of the wallet's operations lock one agent: another
agent's send runs while an agent's unit of work is open, and work on the same agent or on the
whole wallet waits for it (tests/unit/db/test_write_units.py lists which is which).

Waiting is observed on the server (an advisory lock not granted in ``pg_locks``), never by
timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import new_agent, recipient
from waiaas import Transfer, TxStatus, Wallet

pytestmark = pytest.mark.postgresql_only

_WAITING = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _waiters(wallet: Wallet) -> int:
    found = wallet._db.fetch_one(_WAITING)
    assert found is not None
    return int(found[0])


def _start(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _wait_until_blocked(wallet: Wallet, thread: threading.Thread, before: int) -> None:
    """Until the server shows one more advisory lock waiting (the thread's)."""
    deadline = time.monotonic() + 60
    while _waiters(wallet) <= before:
        assert thread.is_alive(), "the call finished instead of waiting for the lock"
        assert time.monotonic() < deadline, "the call never waited for the lock"
        time.sleep(0.02)


def test_other_agents_run_while_one_agent_is_locked(wallet: Wallet) -> None:
    a = new_agent(wallet, "solana", name="a")
    b = new_agent(wallet, "solana", name="b")
    token_b = wallet.issue_session(b.id).token
    to = recipient("solana")
    with wallet._db.write(agent_id=a.id):  # agent a's unit of work, held open
        base = _waiters(wallet)
        # another agent: admission, signing, recording and confirmation all go through
        thread, out = _start(lambda: wallet.send(token_b, Transfer(to=to, amount=10_000_000)))
        thread.join(120)
        assert not thread.is_alive() and "error" not in out, out
        assert out["result"].status == TxStatus.CONFIRMED, out["result"]
        # agent a's own operations wait for it ...
        same, same_out = _start(lambda: wallet.suspend_agent(a.id, reason="test"))
        _wait_until_blocked(wallet, same, base)
        assert "result" not in same_out
    same.join(120)
    assert "error" not in same_out, same_out
    assert wallet.get_agent(a.id).status == "SUSPENDED"


def test_wallet_wide_work_waits_for_every_agent(wallet: Wallet) -> None:
    a = new_agent(wallet, "solana", name="a")
    with wallet._db.write(agent_id=a.id):
        base = _waiters(wallet)
        # a global policy and the kill switch exclude every agent's unit of work
        thread, out = _start(
            lambda: wallet.add_policy("SPENDING_LIMIT", {"per_transaction": "1000000"})
        )
        _wait_until_blocked(wallet, thread, base)
        assert "result" not in out
    thread.join(120)
    assert "error" not in out, out
    with wallet._db.write(agent_id=a.id):
        base = _waiters(wallet)
        thread, out = _start(lambda: wallet.kill_switch("test"))
        _wait_until_blocked(wallet, thread, base)
    thread.join(120)
    assert "error" not in out, out
    assert wallet.get_agent(a.id).status == "SUSPENDED"
