"""The kill switch end to end: one atomic stop of every agent, session and queued
transaction, persisted across restarts, and an audited, explicit release."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    TIER_AMOUNTS,
    EvmOwner,
    SolanaOwner,
    all_audit,
    new_agent,
    recipient,
)
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    KillSwitchActiveError,
    StateError,
)
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock, local_chains, local_wallet
from waiaas.types import KillSwitchRelease, KillSwitchSummary, Transfer
from waiaas.wallet import Wallet


@dataclass
class Busy:
    """What :func:`_busy_wallet` created."""

    agents: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)


def _busy_wallet(wallet: Wallet) -> Busy:
    """One owned agent per chain with a session, a confirmed, a DELAY and an APPROVAL each."""
    out = Busy()
    for chain in ("solana", "evm"):
        owner = SolanaOwner() if chain == "solana" else EvmOwner()
        agent = new_agent(wallet, chain, owner=owner)
        issued = wallet.issue_session(agent.id)
        out.agents.append(agent.id)
        out.sessions.append(issued.session_id)
        out.tokens.append(issued.token)
        dest = recipient(chain)
        for tier in ("INSTANT", "DELAY", "APPROVAL"):
            result = wallet.send(issued.token, Transfer(to=dest, amount=TIER_AMOUNTS[chain][tier]))
            (out.done if tier == "INSTANT" else out.queued).append(result.id)
    return out


def test_activation_stops_everything_at_once(wallet: Wallet, notifier: RecordingNotifier) -> None:
    """Activation suspends every agent, revokes every session, cancels every queued
    transaction, writes one critical KILL_SWITCH_ACTIVATED row (same timestamp as the rest)
    and notifies; confirmed history is untouched."""
    state = _busy_wallet(wallet)
    already = new_agent(wallet, "solana", funds=0, name="already-suspended")
    wallet.suspend_agent(already.id, reason="owner did it")
    audit_before = len(all_audit(wallet))
    summary = wallet.kill_switch("compromised host")
    assert isinstance(summary, KillSwitchSummary)
    assert summary.agents_suspended == 2
    assert summary.sessions_revoked == 2
    assert summary.transactions_cancelled == 4
    assert sorted(summary.cancelled_ids) == sorted(state.queued)
    assert sorted(summary.suspended_ids) == sorted(state.agents)
    assert sorted(summary.revoked_ids) == sorted(state.sessions)
    assert (summary.reason, summary.activated_at) == ("compromised host", wallet.clock.now())
    assert summary["agents_suspended"] == 2  # mapping-style access, as the dict it replaces
    for agent_id in state.agents:
        agent = wallet.get_agent(agent_id)
        assert agent.status == "SUSPENDED"
    assert wallet.get_agent(already.id).suspension_reason == "owner did it"
    for session_id in state.sessions:
        assert wallet.get_session(session_id).status == "revoked"
    for tx_id in state.queued:
        assert wallet.get_transaction(tx_id).status == "CANCELLED"
    for tx_id in state.done:
        assert wallet.get_transaction(tx_id).status == "CONFIRMED"
    added = all_audit(wallet)[audit_before:]
    activated = [e for e in added if e.event_type == "KILL_SWITCH_ACTIVATED"]
    assert len(activated) == 1
    assert activated[0].severity == "critical"
    assert activated[0].details["reason"] == "compromised host"
    assert {e.timestamp for e in added} == {wallet.clock.now()}
    assert sorted(e.event_type for e in added) == sorted(
        ["KILL_SWITCH_ACTIVATED"]
        + ["AGENT_SUSPENDED"] * 2
        + ["SESSION_REVOKED"] * 2
        + ["TX_CANCELLED"] * 4
    )
    assert "KILL_SWITCH_ACTIVATED" in [e.event_type for e in notifier.events]
    state_now = wallet.kill_switch_state()
    assert state_now.active and state_now.reason == "compromised host"
    with pytest.raises(StateError):
        wallet.kill_switch("again")


def test_new_work_is_refused_while_active(wallet: Wallet) -> None:
    """While active: sends (even with a fresh-looking token), new sessions and resuming an
    agent are refused with KillSwitchActiveError."""
    state = _busy_wallet(wallet)
    wallet.kill_switch("stop")
    token = state.tokens[0]
    with pytest.raises(KillSwitchActiveError):
        wallet.send(token, Transfer(to=recipient("solana"), amount=1))
    with pytest.raises(KillSwitchActiveError):
        wallet.issue_session(state.agents[0])
    with pytest.raises(KillSwitchActiveError):
        wallet.resume_agent(state.agents[0])
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(wallet.config.delay_seconds)
    wallet.process_due()
    assert {wallet.get_transaction(t).status for t in state.queued} == {"CANCELLED"}


def test_kill_switch_survives_a_restart(tmp_path: Path) -> None:
    """The active state is persisted: after close and reopen it is still active and sends
    are still refused, until release_kill_switch()."""
    clock = FrozenClock()
    chains = local_chains()
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        agent = new_agent(wallet, "solana")
        token = wallet.issue_session(agent.id).token
        wallet.kill_switch("leaving for the weekend")
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        state = wallet.kill_switch_state()
        assert state.active and state.reason == "leaving for the weekend"
        with pytest.raises(KillSwitchActiveError):
            wallet.send(token, Transfer(to=recipient("solana"), amount=1))
        assert wallet.get_agent(agent.id).status == "SUSPENDED"
        wallet.release_kill_switch()
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        assert not wallet.kill_switch_state().active


def test_recover_is_audited_and_keeps_agents_suspended(wallet: Wallet) -> None:
    """release_kill_switch() turns the switch off (KILL_SWITCH_RECOVERED audited); agents
    stay suspended and the old sessions stay revoked; a resumed agent needs a new session."""
    state = _busy_wallet(wallet)
    wallet.kill_switch("stop")
    summary = wallet.release_kill_switch()
    assert isinstance(summary, KillSwitchRelease)
    assert (summary.agents_resumed, summary.resumed_ids) == (0, ())
    assert summary.released_at == wallet.clock.now()
    assert not wallet.kill_switch_state().active
    rows = [e for e in all_audit(wallet) if e.event_type == "KILL_SWITCH_RECOVERED"]
    assert len(rows) == 1 and rows[0].actor == "owner"
    agent_id = state.agents[0]
    assert wallet.get_agent(agent_id).status == "SUSPENDED"
    wallet.resume_agent(agent_id)
    with pytest.raises(AuthError):
        wallet.send(state.tokens[0], Transfer(to=recipient("solana"), amount=1))
    fresh = wallet.issue_session(agent_id).token
    result = wallet.send(
        fresh, Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["INSTANT"])
    )
    assert result.status == "CONFIRMED"
    with pytest.raises(StateError):
        wallet.release_kill_switch()


def test_recover_resume_agents_only_resumes_what_it_suspended(wallet: Wallet) -> None:
    """release_kill_switch(resume_agents=True) resumes the agents the kill switch suspended,
    but not one the owner had suspended before (nor one auto-stopped)."""
    state = _busy_wallet(wallet)
    manual = new_agent(wallet, "evm", funds=0, name="manual")
    wallet.suspend_agent(manual.id, reason="owner")
    terminated = new_agent(wallet, "evm", funds=0, name="gone")
    wallet.terminate_agent(terminated.id)
    wallet.kill_switch("stop")
    summary = wallet.release_kill_switch(resume_agents=True)
    assert summary.agents_resumed == 2
    assert sorted(summary.resumed_ids) == sorted(state.agents)
    for agent_id in state.agents:
        assert wallet.get_agent(agent_id).status == "ACTIVE"
    assert wallet.get_agent(manual.id).status == "SUSPENDED"
    assert wallet.get_agent(terminated.id).status == "TERMINATED"
    resumed = [e.agent_id for e in all_audit(wallet) if e.event_type == "AGENT_RESUMED"]
    assert set(resumed) == set(state.agents) and len(resumed) == len(state.agents)


def test_nothing_is_signed_after_activation_under_concurrent_sends(wallet: Wallet) -> None:
    """While agents send from other threads, the kill switch is pressed: after its audit row
    no transaction is ever signed, and every transaction ends CONFIRMED or CANCELLED (none
    left half-way, none FAILED by the race; the local chain's own stale blockhashes aside)."""
    agents = [new_agent(wallet, "solana", name=f"busy-{i}") for i in range(3)]
    tokens = [wallet.issue_session(a.id).token for a in agents]
    started = threading.Barrier(len(tokens) + 1)
    stopped: list[str] = []

    def run(token: str, index: int) -> None:
        started.wait(timeout=30)
        for n in range(10_000):
            try:
                wallet.send(token, Transfer(to=recipient("solana"), amount=10**6 + n))
            except (KillSwitchActiveError, AuthError, AgentNotActiveError) as exc:
                stopped.append(type(exc).__name__)
                return

    threads = [threading.Thread(target=run, args=(t, i)) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    started.wait(timeout=30)
    while len(wallet.list_transactions(limit=1000)) < 6:
        time.sleep(0.01)
    wallet.kill_switch("runaway agents")
    for thread in threads:
        thread.join(timeout=60)
    assert len(stopped) == len(tokens)
    activated = next(e for e in all_audit(wallet) if e.event_type == "KILL_SWITCH_ACTIVATED")
    signed_after = [e for e in all_audit(wallet, event_types=["TX_SIGNED"]) if e.id > activated.id]
    assert signed_after == []
    txs = wallet.list_transactions(limit=1000)
    statuses = {t.status for t in txs}
    assert statuses <= {"CONFIRMED", "CANCELLED", "FAILED"}
    assert "CONFIRMED" in statuses
    # FAILED only by the local chain itself: three threads landing transactions expire each
    # other's LiteSVM blockhash, and a stale transaction is rebuilt at most three times; never
    # by the race.
    assert all((t.error or "").startswith("CHAIN_STALE") for t in txs if t.status == "FAILED")


def test_summaries_are_typed_json_friendly_and_render(wallet: Wallet) -> None:
    """Both results are frozen, JSON-able (``to_dict``), short in ``repr`` and render as HTML
    with the key figures; an unknown key is a KeyError, not a silent None."""
    state = _busy_wallet(wallet)
    summary = wallet.kill_switch("drill")
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["agents_suspended"] == 2 and sorted(data["cancelled_ids"]) == sorted(state.queued)
    assert KillSwitchSummary.model_validate(data) == summary  # round-trips
    with pytest.raises(ValueError):
        summary.agents_suspended = 0  # type: ignore[misc]
    with pytest.raises(KeyError):
        summary["nope"]
    text = repr(summary)
    assert text.startswith("KillSwitchSummary(") and "agents_suspended=2" in text
    assert state.queued[0] not in text and len(text) < 200  # ids only in the fields
    html = summary._repr_html_()
    assert "Kill switch activated" in html and "drill" in html and "transactions cancelled" in html
    release = wallet.release_kill_switch(resume_agents=True)
    assert json.loads(json.dumps(release.to_dict()))["agents_resumed"] == 2
    assert "agents_resumed=2" in repr(release) and "Kill switch released" in release._repr_html_()
    assert release.activated_at == summary.activated_at


def test_recover_is_a_deprecated_alias(wallet: Wallet) -> None:
    """``Wallet.recover`` still releases the kill switch but warns (DeprecationWarning), and
    refuses as the new name does when there is nothing to release."""
    state = _busy_wallet(wallet)
    wallet.kill_switch("stop")
    with pytest.warns(DeprecationWarning, match="release_kill_switch"):
        release = wallet.recover(resume_agents=True)
    assert isinstance(release, KillSwitchRelease) and release.agents_resumed == 2
    assert not wallet.kill_switch_state().active
    assert wallet.get_agent(state.agents[0]).status == "ACTIVE"
    with pytest.warns(DeprecationWarning), pytest.raises(StateError):
        wallet.recover()
