"""process_due() under load and misconfiguration: due work is never starved by work that
is not due, finished approvals do not clog expiry, and a wallet opened without one chain's
adapter leaves that chain's transactions alone instead of failing them."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import (
    TIER_AMOUNTS,
    SolanaOwner,
    events_of,
    new_agent,
    recipient,
)
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.solana import SolanaAdapter
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet


def _flood_approvals(wallet: Wallet, count: int, per_agent: int = 50) -> list[str]:
    """``count`` APPROVAL requests waiting for an owner (spread over agents)."""
    owner = SolanaOwner()
    dest = recipient("solana")
    ids: list[str] = []
    while len(ids) < count:
        agent = new_agent(wallet, "solana", owner=owner, funds=0, name=f"flood-{len(ids)}")
        token = wallet.issue_session(agent.id).token
        for i in range(min(per_agent, count - len(ids))):
            amount = TIER_AMOUNTS["solana"]["APPROVAL"] + i
            ids.append(wallet.send(token, Transfer(to=dest, amount=amount)).id)
    return ids


def test_due_delay_is_not_starved_by_a_thousand_waiting_approvals(wallet: Wallet) -> None:
    """A thousand older transactions waiting for an owner (not due) do not keep a due DELAY
    from executing in the next pass."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    _flood_approvals(wallet, 1000)
    agent = new_agent(wallet, "solana", name="patient")
    token = wallet.issue_session(agent.id).token
    dest = recipient("solana")
    delayed = wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS["solana"]["DELAY"]))
    clock.advance(wallet.config.delay_seconds)
    assert wallet.process_due()["delays"] == 1
    assert wallet.get_transaction(delayed.id).status == "CONFIRMED"


def test_finished_approvals_do_not_clog_expiry(wallet: Wallet) -> None:
    """Approvals whose transactions were cancelled (so never decided by the owner) do not
    keep later approvals from expiring once their windows are over."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    cancelled = _flood_approvals(wallet, 150)
    for tx_id in cancelled:
        wallet.cancel(tx_id)
    clock.advance(60)
    (late,) = _flood_approvals(wallet, 1)
    clock.advance(wallet.config.approval_timeout)
    assert wallet.process_due()["expired"] == 1
    assert wallet.get_transaction(late).status == "EXPIRED"
    assert {wallet.get_transaction(t).status for t in cancelled} == {"CANCELLED"}


def test_many_approvals_expire_in_one_pass(wallet: Wallet) -> None:
    """Hundreds of approvals whose windows closed together all expire in one pass."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    ids = _flood_approvals(wallet, 250)
    clock.advance(wallet.config.approval_timeout)
    assert wallet.process_due()["expired"] == 250
    assert {wallet.get_transaction(t).status for t in ids} == {"EXPIRED"}
    assert events_of(wallet, ids[-1])[-1] == "TX_EXPIRED"


def test_missing_adapter_leaves_that_chains_transactions_alone(tmp_path: Path) -> None:
    """A wallet reopened without the EVM adapter does not fail the EVM transactions that
    fall due; they execute once the adapter is back. Other chains' work goes on."""
    clock = FrozenClock()
    solana, evm = SolanaAdapter.local(), EvmAdapter.local()
    with local_wallet(tmp_path, clock=clock, chains=[solana, evm]) as wallet:
        evm_agent = new_agent(wallet, "evm")
        sol_agent = new_agent(wallet, "solana")
        evm_tx = wallet.send(
            wallet.issue_session(evm_agent.id, ttl=7200).token,
            Transfer(to=recipient("evm"), amount=TIER_AMOUNTS["evm"]["DELAY"]),
        )
        sol_tx = wallet.send(
            wallet.issue_session(sol_agent.id).token,
            Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["DELAY"]),
        )
    with local_wallet(tmp_path, clock=clock, chains=[solana]) as wallet:
        clock.advance(wallet.config.delay_seconds)
        wallet.process_due()
        assert wallet.get_transaction(evm_tx.id).status == "QUEUED"
        assert wallet.get_transaction(sol_tx.id).status == "CONFIRMED"
    with local_wallet(tmp_path, clock=clock, chains=[solana, evm]) as wallet:
        wallet.process_due()
        assert wallet.get_transaction(evm_tx.id).status == "CONFIRMED"
