"""The units of work of a warm INSTANT ``wallet.send`` run on plain DB-API: no ORM session
and no SQLAlchemy ``Connection`` is built for them, and every guard holds: a failure before
the commit leaves nothing written and the next send works, and a session revoked or an
agent suspended by another writer is seen by the very next send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import waiaas.db.uow as uow_module
from tests.e2e.conftest import TIER_AMOUNTS, new_agent, recipient, row_counts
from tests.support.rawdb import raw_connect
from waiaas.db import usage
from waiaas.errors import AgentNotActiveError, TokenRevokedError
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    with local_wallet(tmp_path, clock=FrozenClock()) as w:
        yield w


def _warm(wallet: Wallet, chain: str) -> tuple[str, str, int]:
    """A funded agent that sent twice (its token remembered): (agent id, token, amount)."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    amount = TIER_AMOUNTS[chain]["INSTANT"]
    for _ in range(2):
        assert wallet.send(token, Transfer(to=recipient(chain), amount=amount)).status == (
            "CONFIRMED"
        )
    return agent.id, token, amount


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_a_warm_send_builds_no_orm_session_nor_connection(
    wallet: Wallet, monkeypatch: pytest.MonkeyPatch, chain: str
) -> None:
    """Neither unit of work of a warm send builds an ORM session; with the keystore on
    files (SQLite's default) neither builds a SQLAlchemy ``Connection`` either."""
    _agent_id, token, amount = _warm(wallet, chain)
    built: list[str] = []
    for name in ("Connection", "Session"):
        real = getattr(uow_module, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            built.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(uow_module, name, counting)
    for _ in range(2):
        result = wallet.send(token, Transfer(to=recipient(chain), amount=amount))
        assert result.status == "CONFIRMED", result.error
    if wallet._db.is_postgresql:
        # the database keystore's head row is written by a Core statement at each commit
        assert "Session" not in built
    else:
        assert built == []


def test_a_failure_before_the_admission_commit_writes_nothing(
    wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error raised inside admission's unit of work after all its statements ran (the
    usage buckets sealed, just before COMMIT) leaves no row and no audit entry behind, and
    the next send, on the same pooled connections, goes through."""
    _agent_id, token, amount = _warm(wallet, "solana")
    before = row_counts(wallet)
    real = usage.reseal

    def reseal_then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise RuntimeError("injected before COMMIT")

    monkeypatch.setattr(usage, "reseal", reseal_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        wallet.send(token, Transfer(to=recipient("solana"), amount=amount))
    monkeypatch.setattr(usage, "reseal", real)
    assert row_counts(wallet) == before
    assert wallet._db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    result = wallet.send(token, Transfer(to=recipient("solana"), amount=amount))
    assert result.status == "CONFIRMED", result.error


@pytest.mark.parametrize("change", ["revoke", "suspend"])
def test_a_change_by_another_writer_is_seen_by_the_next_send(wallet: Wallet, change: str) -> None:
    """The remembered token and the agent row read with it are checked against the rows
    as they are now: a revocation or suspension written by another connection (another
    process) refuses the very next send, and nothing is sent."""
    agent_id, token, amount = _warm(wallet, "solana")
    with raw_connect(wallet) as other:
        if change == "revoke":
            other.execute("UPDATE sessions SET revoked_at = 1 WHERE agent_id = ?", (agent_id,))
        else:
            other.execute("UPDATE agents SET status = 'SUSPENDED' WHERE id = ?", (agent_id,))
        sent = other.one("SELECT COUNT(*) FROM transactions WHERE agent_id = ?", (agent_id,))
    expected = TokenRevokedError if change == "revoke" else AgentNotActiveError
    with pytest.raises(expected):
        wallet.send(token, Transfer(to=recipient("solana"), amount=amount))
    with raw_connect(wallet) as other:
        after = other.one("SELECT COUNT(*) FROM transactions WHERE agent_id = ?", (agent_id,))
    assert after == sent
