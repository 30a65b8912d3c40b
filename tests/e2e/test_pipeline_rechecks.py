"""Re-checks before a queued transaction executes: the kill switch, the agent's status, the
session and deny rules are looked at again when the cooldown ends (or the owner approves),
and the transaction that executes is the one stored in the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    FUNDING,
    TIER_AMOUNTS,
    SolanaOwner,
    events_of,
    new_agent,
    recipient,
)
from waiaas.pipeline import killswitch
from waiaas.testing import TEST_PASSWORD, FrozenClock, local_chains, local_wallet
from waiaas.types import KillSwitchState, Transfer
from waiaas.wallet import Wallet


def _queue_delay(wallet: Wallet, chain: str = "solana", **session: object) -> tuple[str, str, str]:
    agent = new_agent(wallet, chain)
    issued = wallet.issue_session(agent.id, **session)  # type: ignore[arg-type]
    dest = recipient(chain)
    queued = wallet.send(issued.token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["DELAY"]))
    assert (queued.status, queued.tier) == ("QUEUED", "DELAY")
    return queued.id, issued.session_id, dest


def _due(wallet: Wallet) -> None:
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(wallet.config.delay_seconds)
    wallet.process_due()


def _received(wallet: Wallet, chain: str, dest: str) -> int:
    network = "localnet" if chain == "solana" else "local"
    return wallet.network_adapter(chain, network).get_balance(dest)


def test_kill_switch_cancels_a_queued_transaction(wallet: Wallet) -> None:
    """The kill switch cancels a DELAY in its cooldown; recovering does not revive it."""
    tx_id, _session, dest = _queue_delay(wallet)
    wallet.kill_switch("stop")
    assert wallet.get_transaction(tx_id).status == "CANCELLED"
    wallet.release_kill_switch(resume_agents=True)
    _due(wallet)
    assert wallet.get_transaction(tx_id).status == "CANCELLED"
    assert _received(wallet, "solana", dest) == 0


def test_kill_switch_recheck_catches_what_the_sweep_missed(wallet: Wallet) -> None:
    """Even a QUEUED transaction that escaped the activation sweep (the switch turned on by
    another process after the due list was read) is cancelled by the re-check."""
    tx_id, _session, dest = _queue_delay(wallet)
    with wallet._db.write() as uow:
        state = KillSwitchState(active=True, activated_at=wallet.clock.now(), reason="x")
        uow.state.put(killswitch.KEY, state.model_dump(), now=wallet.clock.now())
        uow.commit()
    _due(wallet)
    tx = wallet.get_transaction(tx_id)
    assert tx.status == "CANCELLED"
    assert tx.error is not None and tx.error.startswith("KILL_SWITCH_ACTIVE")
    assert _received(wallet, "solana", dest) == 0


def test_suspended_agent_cancels_its_queued_transaction(wallet: Wallet, chain: str) -> None:
    """An agent suspended during the cooldown: its queued transaction is CANCELLED at once,
    not sent, and resuming the agent does not bring it back."""
    tx_id, _session, dest = _queue_delay(wallet, chain)
    agent_id = wallet.get_transaction(tx_id).agent_id
    wallet.suspend_agent(agent_id)
    tx = wallet.get_transaction(tx_id)
    assert tx.status == "CANCELLED"
    assert tx.error is not None and tx.error.startswith("AGENT_SUSPENDED")
    _due(wallet)
    wallet.resume_agent(agent_id)
    wallet.process_due()
    assert wallet.get_transaction(tx_id).status == "CANCELLED"
    assert _received(wallet, chain, dest) == 0
    assert events_of(wallet, tx_id)[-1] == "TX_CANCELLED"


def test_revoked_session_cancels_its_queued_transaction(wallet: Wallet) -> None:
    """The session that asked was revoked during the cooldown: CANCELLED."""
    tx_id, session_id, dest = _queue_delay(wallet)
    wallet.revoke_session(session_id)
    _due(wallet)
    tx = wallet.get_transaction(tx_id)
    assert tx.status == "CANCELLED"
    assert tx.error is not None and tx.error.startswith("SESSION_ENDED")
    assert _received(wallet, "solana", dest) == 0


def test_expired_session_cancels_its_queued_transaction(wallet: Wallet) -> None:
    """The session expired before the cooldown ended: CANCELLED."""
    tx_id, _session, dest = _queue_delay(wallet, ttl=60)
    _due(wallet)
    assert wallet.get_transaction(tx_id).status == "CANCELLED"
    assert _received(wallet, "solana", dest) == 0


def test_deny_rule_added_during_cooldown_fails_it(wallet: Wallet, chain: str) -> None:
    """A blacklist added during the cooldown refuses the recipient at execution time:
    FAILED with POLICY_DENIED, audited, nothing sent; the session's charge is given back."""
    tx_id, session_id, dest = _queue_delay(wallet, chain)
    agent_id = wallet.get_transaction(tx_id).agent_id
    counted = (wallet.get_transaction(tx_id).spend or {})["native"]  # the amount and its fee
    assert counted > TIER_AMOUNTS[chain]["DELAY"]
    assert wallet.get_session(session_id).usage.total() == counted
    wallet.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [dest], "mode": "blacklist"}, agent_id=agent_id
    )
    _due(wallet)
    tx = wallet.get_transaction(tx_id)
    assert tx.status == "FAILED"
    assert tx.error is not None and tx.error.startswith("POLICY_DENIED")
    assert events_of(wallet, tx_id)[-1] == "TX_FAILED"
    assert _received(wallet, chain, dest) == 0
    assert wallet.get_session(session_id).usage.total() == 0


def test_budget_recheck_does_not_count_the_transaction_twice(wallet: Wallet) -> None:
    """A queued transaction that exactly fills a daily budget (its amount and its 5,000-lamport
    network fee) still fits when re-checked (it is left out of its own usage)."""
    agent = new_agent(wallet, "solana")
    amount = TIER_AMOUNTS["solana"]["DELAY"]
    wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "daily_total": str(amount + 5_000),
            "daily_delay_max": str(amount + 5_000),  # the velocity tier counts the fee too
            "instant_max": "0",
            "notify_max": "0",
            "delay_max": str(amount),
        },
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    queued = wallet.send(token, Transfer(to=recipient("solana"), amount=amount))
    assert queued.tier == "DELAY"
    _due(wallet)
    assert wallet.get_transaction(queued.id).status == "CONFIRMED"


def test_approved_transaction_is_rechecked(wallet: Wallet) -> None:
    """The owner approves, then the agent is suspended before the transaction executes (in
    another process, say): the re-check before signing CANCELS it instead of sending it."""
    owner = SolanaOwner()
    agent = new_agent(wallet, "solana", owner=owner)
    token = wallet.issue_session(agent.id).token
    dest = recipient("solana")
    queued = wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS["solana"]["APPROVAL"]))
    message = wallet.approval_message(queued.id)
    # the agent's status changes under the approval (as another process would do it)
    with wallet._db.write() as uow:
        uow.agents.cas_status(agent.id, ["ACTIVE"], "SUSPENDED", updated_at=wallet.clock.now())
        uow.commit()
    result = wallet.approve(queued.id, owner.sign(message))
    assert result.status == "CANCELLED"
    assert events_of(wallet, queued.id)[-2:] == ["TX_APPROVED", "TX_CANCELLED"]
    assert _received(wallet, "solana", dest) == 0


def test_queued_transaction_executes_the_stored_request(tmp_path: Path, chain: str) -> None:
    """What executes after the cooldown is the request stored in the database: the wallet is
    closed and reopened (nothing survives in memory) and the exact amount reaches the exact
    recipient."""
    clock = FrozenClock()
    chains = local_chains()
    amount = TIER_AMOUNTS[chain]["DELAY"] + 12_345
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        agent = new_agent(wallet, chain)
        token = wallet.issue_session(agent.id).token
        dest = recipient(chain)
        queued = wallet.send(token, Transfer(to=dest, amount=amount, memo="rent"))
        assert queued.status == "QUEUED"
        stored = queued.request
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        clock.advance(wallet.config.delay_seconds)
        tx = wallet.get_transaction(queued.id)
        assert tx.status == "QUEUED" and tx.request == stored
        assert wallet.process_due()["delays"] == 1
        done = wallet.get_transaction(queued.id)
        assert done.status == "CONFIRMED"
        assert (done.amount, done.to_address, done.request) == (amount, dest, stored)
        assert _received(wallet, chain, dest) == amount
        assert wallet.balance(agent.id) < FUNDING[chain] - amount


def test_renewed_session_still_executes_its_queued_transaction(wallet: Wallet) -> None:
    """Renewing the session during the cooldown keeps it alive: the transaction executes."""
    agent = new_agent(wallet, "solana")
    issued = wallet.issue_session(agent.id, ttl=600)
    dest = recipient("solana")
    queued = wallet.send(issued.token, Transfer(to=dest, amount=TIER_AMOUNTS["solana"]["DELAY"]))
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(500)
    wallet.renew_session(issued.token)
    clock.advance(wallet.config.delay_seconds - 500)
    wallet.process_due()
    assert wallet.get_transaction(queued.id).status == "CONFIRMED"
    assert _received(wallet, "solana", dest) == TIER_AMOUNTS["solana"]["DELAY"]


def test_time_restriction_reached_during_cooldown_fails_it(wallet: Wallet) -> None:
    """A request made inside the allowed hours whose cooldown ends outside them is refused
    when it is due (the time rule is evaluated again at execution time)."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    clock.set(1_700_000_000 - 1_700_000_000 % 86_400 + 16 * 3600 + 50 * 60)  # 16:50 UTC
    agent = new_agent(wallet, "evm")
    wallet.add_policy(
        "TIME_RESTRICTION", {"allowed_hours": {"start": 9, "end": 17}}, agent_id=agent.id
    )
    token = wallet.issue_session(agent.id).token
    dest = recipient("evm")
    queued = wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS["evm"]["DELAY"]))
    assert queued.status == "QUEUED"
    clock.advance(wallet.config.delay_seconds)  # 17:05 UTC
    wallet.process_due()
    tx = wallet.get_transaction(queued.id)
    assert tx.status == "FAILED"
    assert tx.error is not None and tx.error.startswith("POLICY_DENIED")
    assert _received(wallet, "evm", dest) == 0


def test_locked_keystore_leaves_due_work_queued_until_unlocked(wallet: Wallet) -> None:
    """While the keystore is locked nothing is signed: a due DELAY stays QUEUED; after
    unlock the next pass executes it."""
    tx_id, _session, dest = _queue_delay(wallet)
    wallet.lock()
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(wallet.config.delay_seconds)
    counts = wallet.process_due()  # the pass goes on: polling and the session sweep still run
    assert counts["locked"] == 1 and counts["delays"] == 0
    assert wallet.get_transaction(tx_id).status == "QUEUED"
    assert _received(wallet, "solana", dest) == 0
    wallet.unlock(TEST_PASSWORD)
    wallet.process_due()
    assert wallet.get_transaction(tx_id).status == "CONFIRMED"


def test_send_while_locked_is_refused_and_records_nothing(wallet: Wallet) -> None:
    """A locked keystore refuses a request up front: no row, no charge, nothing moved."""
    from waiaas.errors import KeystoreLockedError

    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    wallet.lock()
    with pytest.raises(KeystoreLockedError):
        wallet.send(token, Transfer(to=recipient("solana"), amount=10**7))
    assert wallet.list_transactions(agent_id=agent.id) == []
    wallet.unlock(TEST_PASSWORD)
    assert wallet.send(token, Transfer(to=recipient("solana"), amount=10**7)).status == "CONFIRMED"


def test_locked_between_admission_and_signing_fails_the_request(tmp_path: Path) -> None:
    """If the keystore is locked after admission, the agent gets the error and the request
    is FAILED, so it can never execute later behind the agent's back."""
    from waiaas.errors import KeystoreLockedError
    from waiaas.pipeline.engine import PipelineHooks

    holder: list[Wallet] = []

    def lock_after_admission(stage: str, tx_id: str) -> None:
        if stage == "admitted":
            holder[0]._keystore.lock()

    with local_wallet(
        tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=lock_after_admission)
    ) as w:
        w._pipeline.presign = False  # the claim path: admission leaves the row PENDING
        holder.append(w)
        agent = new_agent(w, "solana")
        token = w.issue_session(agent.id).token
        dest = recipient("solana")
        with pytest.raises(KeystoreLockedError):
            w.send(token, Transfer(to=dest, amount=10**7))
        (tx,) = w.list_transactions(agent_id=agent.id)
        assert tx.status == "FAILED" and tx.error is not None
        assert tx.error.startswith("KEYSTORE_LOCKED")
        w.unlock(TEST_PASSWORD)
        w.process_due()
        assert w.get_transaction(tx.id).status == "FAILED"
        assert _received(w, "solana", dest) == 0


class _Interrupted(Exception):
    """Raised by a stage hook to stop a request right after it was admitted."""


def _interrupted_wallet(tmp_path: Path) -> tuple[Any, dict[str, bool]]:
    from waiaas.pipeline.engine import PipelineHooks

    switch = {"on": True}

    def stop_after_admission(stage: str, tx_id: str) -> None:
        if stage == "admitted" and switch["on"]:
            raise _Interrupted(tx_id)

    hooks = PipelineHooks(on_stage=stop_after_admission)
    return local_wallet(tmp_path, clock=FrozenClock(), hooks=hooks), switch


def test_resumed_pending_transaction_is_rechecked(tmp_path: Path) -> None:
    """An INSTANT request interrupted after admission is resumed by process_due(); if its
    session was revoked meanwhile it is CANCELLED, and if a deny rule now refuses it, it is
    FAILED, instead of being sent on the strength of the old decision."""
    context, switch = _interrupted_wallet(tmp_path)
    with context as wallet:
        wallet._pipeline.presign = False  # the claim path: admission leaves the row PENDING
        agent = new_agent(wallet, "solana")
        revoked = wallet.issue_session(agent.id)
        kept = wallet.issue_session(agent.id)
        dest = recipient("solana")
        amount = TIER_AMOUNTS["solana"]["INSTANT"]
        ids: list[str] = []
        for issued in (revoked, kept):
            with pytest.raises(_Interrupted) as info:
                wallet.send(issued.token, Transfer(to=dest, amount=amount + len(ids)))
            ids.append(str(info.value))
        assert {wallet.get_transaction(i).status for i in ids} == {"PENDING"}
        wallet.revoke_session(revoked.session_id)
        wallet.add_policy("SPENDING_LIMIT", {"per_transaction": str(amount)}, agent_id=agent.id)
        switch["on"] = False
        assert wallet.process_due()["resumed"] == 2
        first, second = (wallet.get_transaction(i) for i in ids)
        assert first.status == "CANCELLED"
        assert first.error is not None and first.error.startswith("SESSION_ENDED")
        assert second.status == "FAILED"
        assert second.error is not None and second.error.startswith("POLICY_DENIED")
        assert _received(wallet, "solana", dest) == 0


def test_resumed_pending_transaction_executes_when_still_allowed(tmp_path: Path) -> None:
    """An interrupted INSTANT request that is still allowed executes once when resumed."""
    context, switch = _interrupted_wallet(tmp_path)
    with context as wallet:
        wallet._pipeline.presign = False  # the claim path: admission leaves the row PENDING
        agent = new_agent(wallet, "evm")
        token = wallet.issue_session(agent.id).token
        dest = recipient("evm")
        with pytest.raises(_Interrupted) as info:
            wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS["evm"]["INSTANT"]))
        switch["on"] = False
        wallet.process_due()
        assert wallet.get_transaction(str(info.value)).status == "CONFIRMED"
        wallet.process_due()
        assert _received(wallet, "evm", dest) == TIER_AMOUNTS["evm"]["INSTANT"]
