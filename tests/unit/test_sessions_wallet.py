"""Session constraints through the real pipeline: a Wallet on the in-process Solana chain.

These check the seams between sessions and the pipeline: usage is charged in the request's
transaction, a refused request leaves nothing behind, and a transaction that fails on chain
or is cancelled gives its amount back (but not its count).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from waiaas.errors import AuthError, ConstraintViolationError, TokenRevokedError
from waiaas.keystore.keys import b58encode
from waiaas.testing import FrozenClock, fund, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet

SOL = 10**9


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    with local_wallet(tmp_path, clock=FrozenClock()) as w:
        yield w


def dest() -> str:
    return b58encode(os.urandom(32))


def test_constraints_hold_through_the_pipeline(wallet: Wallet) -> None:
    """Three 0.01 SOL transfers and their 5,000-lamport fees fit the session's total; the
    fourth is refused, unrecorded."""
    agent = wallet.create_agent("a", "solana")
    fund(wallet, agent.id, SOL)
    total = 3 * (SOL // 100 + 5_000)
    issued = wallet.issue_session(
        agent.id, constraints={"max_total_amount": total, "max_tx_count": 10}
    )
    to = dest()
    for _ in range(3):
        assert wallet.send(issued.token, Transfer(to=to, amount=SOL // 100)).status == "CONFIRMED"
    before = len(wallet.list_transactions(agent_id=agent.id))
    with pytest.raises(ConstraintViolationError) as exc:
        wallet.send(issued.token, Transfer(to=to, amount=1))
    assert exc.value.constraint == "max_total_amount"
    assert len(wallet.list_transactions(agent_id=agent.id)) == before
    usage = wallet.get_session(issued.session_id).usage
    assert (usage.tx_count, usage.totals) == (3, {"native": total})


def test_failed_transaction_gives_the_amount_back(wallet: Wallet) -> None:
    """A transfer the chain refuses (insufficient funds) releases its amount, not its count."""
    agent = wallet.create_agent("a", "solana")
    fund(wallet, agent.id, SOL // 20)
    issued = wallet.issue_session(agent.id, constraints={"max_total_amount": SOL // 10})
    result = wallet.send(issued.token, Transfer(to=dest(), amount=9 * SOL // 100))
    assert result.status == "FAILED"
    usage = wallet.get_session(issued.session_id).usage
    assert (usage.tx_count, usage.totals) == (1, {})
    ok = wallet.send(issued.token, Transfer(to=dest(), amount=SOL // 100))
    assert ok.status == "CONFIRMED"


def test_cancelled_delay_gives_the_amount_back(wallet: Wallet) -> None:
    """A DELAY-tier transfer holds its amount while queued; cancelling releases it."""
    agent = wallet.create_agent("a", "solana")
    fund(wallet, agent.id, 5 * SOL)
    issued = wallet.issue_session(agent.id, constraints={"max_total_amount": 3 * SOL})
    queued = wallet.send(issued.token, Transfer(to=dest(), amount=2 * SOL))
    assert queued.status == "QUEUED"
    # the amount and its network fee
    assert wallet.get_session(issued.session_id).usage.totals == {"native": 2 * SOL + 5_000}
    with pytest.raises(ConstraintViolationError):
        wallet.send(issued.token, Transfer(to=dest(), amount=2 * SOL))
    wallet.cancel(queued.id, token=issued.token)
    usage = wallet.get_session(issued.session_id).usage
    assert (usage.tx_count, usage.totals) == (1, {})
    assert wallet.send(issued.token, Transfer(to=dest(), amount=2 * SOL)).status == "QUEUED"


def test_refused_tokens_are_audited_by_the_pipeline(wallet: Wallet) -> None:
    """A revoked or forged token at send() is refused and leaves an AUTH_FAILED row."""
    agent = wallet.create_agent("a", "solana")
    issued = wallet.issue_session(agent.id)
    wallet.revoke_session(issued.session_id)
    with pytest.raises(TokenRevokedError):
        wallet.send(issued.token, Transfer(to=dest(), amount=1))
    with pytest.raises(AuthError):
        wallet.send("x.y.z", Transfer(to=dest(), amount=1))
    failures = wallet.audit(event_types=["AUTH_FAILED"]).entries
    assert {e.session_id for e in failures} == {issued.session_id, None}
    assert all(issued.token not in repr(e) for e in failures)
