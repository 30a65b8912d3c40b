"""Abuse resistance, tried as an attacker would (issue items, one test each): AUTO_STOP after a
resumption, suspension leaks, a replaced owner, and world-readable files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SOL, EvmOwner, SolanaOwner, all_audit, new_agent, recipient
from waiaas.errors import ApprovalError, AuthError, PolicyDeniedError
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import AuditEvent, Transfer
from waiaas.wallet import Wallet


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on fresh local chains, frozen clock."""
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RecordingNotifier()) as w:
        yield w


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- item 3


def test_auto_stop_after_a_resumption_does_not_fire_on_an_allowed_request(
    wallet: Wallet,
) -> None:
    """max_denials=3: the third denial suspends (AUTO_STOP_TRIGGERED row). After the owner
    resumes, an allowed request executes and the agent stays ACTIVE; the counter restarted,
    so it takes three new denials, not one, to suspend it again."""
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    friend = recipient("solana")
    wallet.add_policy("ALLOWED_ADDRESSES", {"addresses": [friend]}, agent_id=agent.id)
    wallet.add_policy(
        "AUTO_STOP",
        {"trigger": "max_denials", "threshold": 3, "window_seconds": 3600},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    for _ in range(3):
        with pytest.raises(PolicyDeniedError):
            wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    assert wallet.get_agent(agent.id).status == "SUSPENDED"
    stops = [
        e for e in all_audit(wallet, agent_id=agent.id) if e.event_type == "AUTO_STOP_TRIGGERED"
    ]
    assert len(stops) == 1
    wallet.resume_agent(agent.id)
    token = wallet.issue_session(agent.id).token
    result = wallet.send(token, Transfer(to=friend, amount=SOL // 100))
    assert result.status == "CONFIRMED"
    assert wallet.get_agent(agent.id).status == "ACTIVE"
    for attempt in range(3):
        assert wallet.get_agent(agent.id).status == "ACTIVE", attempt
        with pytest.raises(PolicyDeniedError):
            wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    assert wallet.get_agent(agent.id).status == "SUSPENDED"
    stops = [
        e for e in all_audit(wallet, agent_id=agent.id) if e.event_type == "AUTO_STOP_TRIGGERED"
    ]
    assert len(stops) == 2
    with pytest.raises(AuthError):  # the suspension revoked the session as well
        wallet.send(token, Transfer(to=friend, amount=1))


def test_max_transactions_restarts_after_a_resumption(wallet: Wallet) -> None:
    """max_transactions=2: the third request is denied and suspends; after resuming, the
    next request runs (it would otherwise be denied again at once)."""
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    wallet.add_policy(
        "AUTO_STOP",
        {"trigger": "max_transactions", "threshold": 2, "window_seconds": 3600},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    for _ in range(2):
        wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    assert wallet.get_agent(agent.id).status == "SUSPENDED"
    wallet.resume_agent(agent.id)
    token = wallet.issue_session(agent.id).token
    assert wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100)).status == (
        "CONFIRMED"
    )
    assert wallet.get_agent(agent.id).status == "ACTIVE"


# --------------------------------------------------------------------------- item 7


@pytest.mark.sqlite_only  # file modes of the database, WAL, backup and keystore files
def test_database_wal_shm_backup_and_keystore_are_private(tmp_path: Path) -> None:
    """Under a permissive umask, the database, its -wal and -shm, backups and the keystore's
    files are 0600 and the keystore directory 0700."""
    old = os.umask(0o022)
    try:
        with local_wallet(tmp_path, clock=FrozenClock()) as w:
            agent = new_agent(w, "solana", funds=SOL)
            w.issue_session(agent.id)
            db = w.path
            wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
            assert wal.exists() and shm.exists()
            assert _mode(db) == 0o600
            assert _mode(wal) == 0o600
            assert _mode(shm) == 0o600
            backup = w.backup(tmp_path)
            assert _mode(backup) == 0o600
            created = w.audit(event_types=[AuditEvent.BACKUP_CREATED]).entries
            assert created[0].details["path"] == str(backup)
            keystore = Path(f"{db}.keystore")
            assert _mode(keystore) == 0o700
            for path in keystore.rglob("*"):
                assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- item 4


def test_suspension_cancels_a_queued_delay_so_a_quick_resume_cannot_release_it(
    wallet: Wallet,
) -> None:
    """A DELAY queued before suspend_agent is cancelled (budget released, TX_CANCELLED row):
    resuming before the cooldown ends does not let it execute."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, "solana", funds=20 * SOL)
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"daily_total": str(3 * SOL), "delay_max": str(5 * SOL)},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    queued = wallet.send(token, Transfer(to=recipient("solana"), amount=2 * SOL))
    assert queued.status == "QUEUED" and queued.tier == "DELAY"
    wallet.suspend_agent(agent.id, reason="investigating")
    wallet.resume_agent(agent.id)
    clock.advance(1000)  # past the 900 s cooldown
    wallet.process_due()
    tx = wallet.get_transaction(queued.id)
    assert tx.status == "CANCELLED" and tx.tx_hash is None
    cancelled = [e for e in all_audit(wallet, tx_id=queued.id) if e.event_type == "TX_CANCELLED"]
    assert cancelled and cancelled[0].details["reason"] == "AGENT_SUSPENDED"
    # the 2 SOL went back into the daily budget: another 2 SOL fits under 3 SOL
    fresh = wallet.issue_session(agent.id).token
    assert wallet.send(fresh, Transfer(to=recipient("solana"), amount=2 * SOL)).status == "QUEUED"


def test_resume_after_auto_stop_does_not_revive_the_abusing_session(wallet: Wallet) -> None:
    """AUTO_STOP revokes the agent's sessions (SESSION_REVOKED rows); after resume_agent the
    old token stays refused (AUTH_FAILED row) and only a new session works."""
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    wallet.add_policy("SPENDING_LIMIT", {"per_transaction": str(SOL // 10)}, agent_id=agent.id)
    wallet.add_policy(
        "AUTO_STOP",
        {"trigger": "max_denials", "threshold": 2, "window_seconds": 3600},
        agent_id=agent.id,
    )
    abusing = wallet.issue_session(agent.id)
    for _ in range(2):
        with pytest.raises(PolicyDeniedError):
            wallet.send(abusing.token, Transfer(to=recipient("solana"), amount=SOL))
    assert wallet.get_agent(agent.id).status == "SUSPENDED"
    revoked = [e for e in all_audit(wallet, agent_id=agent.id) if e.event_type == "SESSION_REVOKED"]
    assert [e.session_id for e in revoked] == [abusing.session_id]
    wallet.resume_agent(agent.id)
    with pytest.raises(AuthError):
        wallet.send(abusing.token, Transfer(to=recipient("solana"), amount=SOL // 100))
    failures = [e for e in all_audit(wallet) if e.event_type == "AUTH_FAILED"]
    assert failures
    fresh = wallet.issue_session(agent.id).token
    assert wallet.send(fresh, Transfer(to=recipient("solana"), amount=SOL // 100)).status == (
        "CONFIRMED"
    )


# --------------------------------------------------------------------------- item 5


def test_a_replaced_owner_can_no_longer_approve_and_the_new_one_can(wallet: Wallet) -> None:
    """set_owner(new) invalidates the pending approval (APPROVAL_INVALIDATED row): the old
    owner's signature, over the old message or the new one, is refused; the new owner signs
    the fresh message and the transfer executes."""
    old_owner, new_owner = EvmOwner(), SolanaOwner()
    agent = new_agent(wallet, "solana", owner=old_owner, funds=50 * SOL)
    token = wallet.issue_session(agent.id).token
    queued = wallet.send(token, Transfer(to=recipient("solana"), amount=11 * SOL))
    assert queued.tier == "APPROVAL"
    old_message = wallet.approval_message(queued.id)
    stolen = old_owner.sign(old_message)
    wallet.set_owner(agent.id, new_owner.address)
    new_message = wallet.approval_message(queued.id)
    assert new_message != old_message and new_owner.address in new_message
    with pytest.raises(ApprovalError):
        wallet.approve(queued.id, stolen)
    with pytest.raises(ApprovalError):
        wallet.approve(queued.id, old_owner.sign(new_message))
    assert wallet.get_transaction(queued.id).status == "QUEUED"
    invalidated = [
        e for e in all_audit(wallet, tx_id=queued.id) if e.event_type == "APPROVAL_INVALIDATED"
    ]
    assert invalidated and invalidated[0].details["owner"] == new_owner.address
    done = wallet.approve(queued.id, new_owner.sign(new_message))
    assert done.status == "CONFIRMED"


def test_removing_the_owner_cancels_waiting_approvals(wallet: Wallet) -> None:
    """set_owner(None): nobody could approve, so waiting transactions are cancelled."""
    owner = EvmOwner()
    agent = new_agent(wallet, "solana", owner=owner, funds=50 * SOL)
    token = wallet.issue_session(agent.id).token
    queued = wallet.send(token, Transfer(to=recipient("solana"), amount=11 * SOL))
    message = wallet.approval_message(queued.id)
    wallet.set_owner(agent.id, None)
    assert wallet.get_transaction(queued.id).status == "CANCELLED"
    with pytest.raises(ApprovalError):
        wallet.approve(queued.id, owner.sign(message))


# --------------------------------------------------------------------------- item 1


def test_splitting_does_not_keep_small_transfers_instant(wallet: Wallet) -> None:
    """4 SOL as 40 x 0.1 SOL to one recipient within an hour (shipped thresholds, no policy):
    the first nine stay INSTANT (the day's total holds their network fees too, so the tenth
    crosses 1 SOL), the rest are NOTIFY by the velocity tier, and each one's TX_REQUESTED
    audit row records the tier it got."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    token = wallet.issue_session(agent.id, ttl=86_400).token
    dest = recipient("solana")
    tiers = []
    for _ in range(40):
        clock.advance(90)
        tiers.append(wallet.send(token, Transfer(to=dest, amount=SOL // 10)).tier)
    assert tiers[:9] == ["INSTANT"] * 9
    assert set(tiers[9:]) == {"NOTIFY"}
    requested = [
        e.details["tier"]
        for e in all_audit(wallet, agent_id=agent.id)
        if e.event_type == "TX_REQUESTED"
    ]
    assert requested == tiers
