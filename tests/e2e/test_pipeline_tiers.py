"""The four tiers on both chains, end to end: INSTANT and NOTIFY execute at once, DELAY waits
for its cooldown (driven by a frozen clock) and can be cancelled meanwhile."""

from __future__ import annotations

import threading

import pytest

from tests.e2e.conftest import TIER_AMOUNTS, all_audit, events_of, new_agent, recipient
from waiaas.errors import AuthError, StateError
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock
from waiaas.types import TokenTransfer, Transfer
from waiaas.wallet import Wallet


def _balances(wallet: Wallet, agent_id: str, dest: str) -> tuple[int, int]:
    agent = wallet.get_agent(agent_id)
    adapter = wallet.network_adapter(agent.chain, agent.network)
    return adapter.get_balance(agent.public_key), adapter.get_balance(dest)


def test_instant_executes_with_exact_balance_deltas(wallet: Wallet, chain: str) -> None:
    """An INSTANT request is CONFIRMED at once; the recipient gains exactly the amount and
    the sender loses exactly the amount plus the recorded fee."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["INSTANT"]
    sender_before, dest_before = _balances(wallet, agent.id, dest)
    result = wallet.send(token, Transfer(to=dest, amount=amount))
    assert (result.status, result.tier) == ("CONFIRMED", "INSTANT")
    assert result.tx_hash
    assert result.fee is not None and result.fee > 0
    assert result.executed_at == wallet.clock.now()
    assert result.amount == amount and result.to_address == dest
    assert result.decision is not None and result.decision.allowed
    sender_after, dest_after = _balances(wallet, agent.id, dest)
    assert dest_after - dest_before == amount
    assert sender_before - sender_after == amount + result.fee
    assert wallet.get_transaction(result.id).status == "CONFIRMED"


def test_notify_executes_and_notifies_after_commit(
    wallet: Wallet, chain: str, notifier: RecordingNotifier
) -> None:
    """A NOTIFY request executes at once and the owner's notifier hears about it (with the
    agent, amount and tier), as well as about its confirmation."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["NOTIFY"]
    notifier.clear()
    result = wallet.send(token, Transfer(to=dest, amount=amount))
    assert (result.status, result.tier) == ("CONFIRMED", "NOTIFY")
    assert _balances(wallet, agent.id, dest)[1] == amount
    events = [e for e in notifier.events if e.tx_id == result.id]
    assert [e.event_type for e in events] == ["TX_REQUESTED", "TX_CONFIRMED"]
    first = events[0]
    assert first.tier == "NOTIFY"
    assert first.amount == amount
    assert first.agent_id == agent.id and first.agent_name == agent.name
    assert first.to_address == dest


def test_instant_does_not_notify_the_request(wallet: Wallet, notifier: RecordingNotifier) -> None:
    """An INSTANT request sends no 'requested' notification (only its confirmation)."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    notifier.clear()
    result = wallet.send(
        token, Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["INSTANT"])
    )
    assert [e.event_type for e in notifier.events if e.tx_id == result.id] == ["TX_CONFIRMED"]


def test_delay_waits_for_the_cooldown(wallet: Wallet, chain: str) -> None:
    """A DELAY request is QUEUED with execute_after = now + cooldown; process_due() does
    nothing before it, and executes it (exact amount) once the clock reaches it."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["DELAY"]
    result = wallet.send(token, Transfer(to=dest, amount=amount))
    assert (result.status, result.tier) == ("QUEUED", "DELAY")
    assert result.tx_hash is None
    assert result.queued_at == clock.now()
    assert result.execute_after == clock.now() + wallet.config.delay_seconds
    assert wallet.process_due()["delays"] == 0
    clock.advance(wallet.config.delay_seconds - 1)
    assert wallet.process_due()["delays"] == 0
    assert wallet.get_transaction(result.id).status == "QUEUED"
    assert _balances(wallet, agent.id, dest)[1] == 0
    clock.advance(1)
    assert wallet.process_due()["delays"] == 1
    done = wallet.get_transaction(result.id)
    assert done.status == "CONFIRMED"
    assert done.executed_at == clock.now()
    assert _balances(wallet, agent.id, dest)[1] == amount
    assert wallet.process_due()["delays"] == 0


def test_delay_uses_the_policy_cooldown(wallet: Wallet) -> None:
    """A SPENDING_LIMIT's delay_seconds sets the cooldown of the DELAY it assigns."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, "evm")
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"instant_max": "0", "notify_max": "0", "delay_max": str(10**18), "delay_seconds": 120},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    result = wallet.send(token, Transfer(to=recipient("evm"), amount=10**15))
    assert result.tier == "DELAY"
    assert result.execute_after == clock.now() + 120
    clock.advance(120)
    wallet.process_due()
    assert wallet.get_transaction(result.id).status == "CONFIRMED"


def test_operator_cancels_during_cooldown(wallet: Wallet, chain: str) -> None:
    """The operator cancels a DELAY during its cooldown: CANCELLED, audited, never sent."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    queued = wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["DELAY"]))
    cancelled = wallet.cancel(queued.id)
    assert cancelled.status == "CANCELLED"
    row = [e for e in all_audit(wallet, tx_id=queued.id) if e.event_type == "TX_CANCELLED"]
    assert len(row) == 1 and row[0].actor == "operator"
    clock.advance(wallet.config.delay_seconds + 10)
    wallet.process_due()
    assert wallet.get_transaction(queued.id).status == "CANCELLED"
    assert _balances(wallet, agent.id, dest)[1] == 0
    with pytest.raises(StateError):
        wallet.cancel(queued.id)


def test_agent_cancels_its_own_queued_transaction(wallet: Wallet) -> None:
    """The agent may cancel its own queued transaction with its session token."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    queued = wallet.send(
        token, Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["DELAY"])
    )
    assert wallet.cancel(queued.id, token=token).status == "CANCELLED"
    row = next(e for e in all_audit(wallet, tx_id=queued.id) if e.event_type == "TX_CANCELLED")
    assert row.actor == f"agent:{agent.id}"


def test_another_agents_token_cannot_cancel(wallet: Wallet) -> None:
    """Another agent's session token cannot cancel the transaction: AuthError, AUTH_FAILED
    audited, and the transaction stays QUEUED and still executes when due."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    victim = new_agent(wallet, "solana", name="victim")
    intruder = new_agent(wallet, "solana", name="intruder", funds=0)
    victim_token = wallet.issue_session(victim.id).token
    intruder_token = wallet.issue_session(intruder.id).token
    queued = wallet.send(
        victim_token, Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["DELAY"])
    )
    failures_before = len([e for e in all_audit(wallet) if e.event_type == "AUTH_FAILED"])
    with pytest.raises(AuthError):
        wallet.cancel(queued.id, token=intruder_token)
    failures = [e for e in all_audit(wallet) if e.event_type == "AUTH_FAILED"]
    assert len(failures) == failures_before + 1
    assert wallet.get_transaction(queued.id).status == "QUEUED"
    clock.advance(wallet.config.delay_seconds)
    wallet.process_due()
    assert wallet.get_transaction(queued.id).status == "CONFIRMED"
    assert "TX_CANCELLED" not in events_of(wallet, queued.id)


def test_cancel_with_a_forged_token_is_refused(wallet: Wallet) -> None:
    """A token that is not a session token cannot cancel anything."""
    agent = new_agent(wallet, "evm")
    token = wallet.issue_session(agent.id).token
    queued = wallet.send(token, Transfer(to=recipient("evm"), amount=TIER_AMOUNTS["evm"]["DELAY"]))
    head, body, _sig = token.split(".")
    with pytest.raises(AuthError):
        wallet.cancel(queued.id, token=f"{head}.{body}.AAAA")
    assert wallet.get_transaction(queued.id).status == "QUEUED"


def test_many_due_delays_execute_in_one_pass(wallet: Wallet, chain: str) -> None:
    """Several DELAYs that fall due together all execute in one process_due() pass (on EVM
    with consecutive nonces), each moving its exact amount."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, chain)
    base = TIER_AMOUNTS[chain]["DELAY"]
    bounds = wallet.config.tier_thresholds(chain)
    assert bounds is not None
    # five DELAY-sized requests in a day: keep their total DELAY (velocity tier)
    wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "instant_max": str(bounds.instant_max),
            "notify_max": str(bounds.notify_max),
            "delay_max": str(bounds.delay_max),
            "daily_delay_max": str(10 * base),
        },
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    ids = [wallet.send(token, Transfer(to=dest, amount=base + i)).id for i in range(5)]
    clock.advance(wallet.config.delay_seconds)
    assert wallet.process_due()["delays"] == 5
    assert {wallet.get_transaction(i).status for i in ids} == {"CONFIRMED"}
    assert _balances(wallet, agent.id, dest)[1] == sum(base + i for i in range(5))
    if chain == "evm":
        nonces = [
            e.details["nonce"]
            for i in ids
            for e in all_audit(wallet, tx_id=i)
            if e.event_type == "TX_SIGNED"
        ]
        assert sorted(nonces) == list(range(5))


def test_token_transfer_moves_exact_token_amounts(wallet: Wallet, chain: str) -> None:
    """A token transfer (SPL on Solana, ERC-20 on EVM) goes through the pipeline with the
    default tier for requests without a native amount, and moves exactly its amount."""
    agent = new_agent(wallet, chain)
    adapter = wallet.network_adapter(agent.chain, agent.network)
    mint = adapter.create_test_token(decimals=6)  # type: ignore[attr-defined]
    adapter.mint_test_token(mint, agent.public_key, 10**12)  # type: ignore[attr-defined]
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = 123_456_789
    result = wallet.send(token, TokenTransfer(token=mint, to=dest, amount=amount))
    assert (result.status, result.tier) == ("CONFIRMED", wallet.config.default_tier)
    assert result.asset == adapter.validate_address(mint)
    assert adapter.get_token_balance(dest, mint) == amount
    assert adapter.get_token_balance(agent.public_key, mint) == 10**12 - amount
    assert wallet.balance(agent.id, token=mint) == 10**12 - amount


def _race_cancel_and_due(wallet: Wallet, tx_id: str) -> str:
    """Run an operator cancel and process_due() at the same moment; return the cancel's
    outcome (``"cancelled"`` or ``"refused"``)."""
    barrier = threading.Barrier(2)
    outcome: list[str] = []

    def cancel() -> None:
        barrier.wait(timeout=30)
        try:
            wallet.cancel(tx_id)
            outcome.append("cancelled")
        except StateError:
            outcome.append("refused")

    def run_due() -> None:
        barrier.wait(timeout=30)
        wallet.process_due()

    threads = [threading.Thread(target=cancel), threading.Thread(target=run_due)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    (result,) = outcome
    return result


def test_cancel_racing_the_cooldown_end_has_one_winner(wallet: Wallet) -> None:
    """An operator cancel racing process_due() at the end of the cooldown: either the
    cancel wins (CANCELLED, nothing sent) or the execution wins (CONFIRMED, the cancel is
    refused with StateError) - never both, never neither."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id, ttl=86_400).token
    for round_ in range(4):
        dest = recipient("solana")
        amount = TIER_AMOUNTS["solana"]["DELAY"] + round_
        queued = wallet.send(token, Transfer(to=dest, amount=amount))
        clock.advance(wallet.config.delay_seconds)
        outcome = _race_cancel_and_due(wallet, queued.id)
        status = wallet.get_transaction(queued.id).status
        received = _balances(wallet, agent.id, dest)[1]
        if outcome == "cancelled":
            assert (status, received) == ("CANCELLED", 0)
        else:
            assert (status, received) == ("CONFIRMED", amount)
