"""The kill switch: persisted, atomic, audited.

Activation, in one database transaction: the state row says active; every ACTIVE agent is
SUSPENDED; every live session is revoked; every PENDING or QUEUED transaction is CANCELLED;
a critical KILL_SWITCH_ACTIVATED audit row is written. Transactions already signed
(EXECUTING / SUBMITTED) cannot be recalled from the chain; they are reconciled as usual.

Release is explicit (``Wallet.release_kill_switch()``) and audited. Agents stay suspended
unless ``resume_agents=True``, which resumes only those the kill switch suspended.
"""

from __future__ import annotations

from typing import Any

from waiaas.db.uow import UnitOfWork
from waiaas.errors import KillSwitchActiveError, StateError
from waiaas.pipeline import agent_states, states
from waiaas.types import AgentStatus, AuditEvent, KillSwitchState, Severity

__all__ = ["KILL_SWITCH_REASON", "activate", "ensure_inactive", "is_active", "recover", "state"]

KEY = "kill_switch"
KILL_SWITCH_REASON = "kill switch"


def state(uow: UnitOfWork) -> KillSwitchState:
    """The persisted kill-switch state."""
    value = uow.state.get(KEY)
    if not value:
        return KillSwitchState(active=False)
    return KillSwitchState.model_validate(value)


def is_active(uow: UnitOfWork) -> bool:
    """Whether the kill switch is on."""
    return state(uow).active


def ensure_inactive(uow: UnitOfWork) -> None:
    """Raise :class:`KillSwitchActiveError` when the kill switch is on."""
    if is_active(uow):
        raise KillSwitchActiveError()


def activate(uow: UnitOfWork, *, actor: str, reason: str, now: int) -> dict[str, Any]:
    """Turn the kill switch on inside ``uow`` (the caller commits). Returns what it stopped.

    Raises:
        StateError: it is already active.
    """
    if is_active(uow):
        raise StateError("the kill switch is already active")
    uow.state.put(
        KEY,
        KillSwitchState(active=True, activated_at=now, reason=reason, actor=actor).model_dump(),
        now=now,
    )
    suspended = []
    for agent in uow.agents.list(status="ACTIVE"):
        if agent_states.move(
            uow,
            agent.id,
            [AgentStatus.ACTIVE],
            AgentStatus.SUSPENDED,
            actor=actor,
            now=now,
            details={"reason": KILL_SWITCH_REASON},
            suspended_at=now,
            suspension_reason=KILL_SWITCH_REASON,
        ):
            suspended.append(agent.id)
    revoked = []
    for session in uow.sessions.live(now):
        if uow.sessions.revoke(session.id, now):
            revoked.append(session.id)
            uow.audit.append(
                AuditEvent.SESSION_REVOKED,
                actor=actor,
                now=now,
                agent_id=session.agent_id,
                session_id=session.id,
                details={"reason": KILL_SWITCH_REASON},
            )
    cancelled = []
    for row in uow.transactions.with_status(["PENDING", "QUEUED"], limit=1_000_000):
        if states.cancel_found(
            uow, row, actor=actor, now=now, code="KILL_SWITCH", reason=KILL_SWITCH_REASON
        ):
            cancelled.append(row.id)
    summary = {
        "reason": reason,
        "agents_suspended": len(suspended),
        "sessions_revoked": len(revoked),
        "transactions_cancelled": len(cancelled),
    }
    uow.audit.append(
        AuditEvent.KILL_SWITCH_ACTIVATED,
        actor=actor,
        now=now,
        details=summary,
        severity=Severity.CRITICAL,
    )
    return {
        **summary,
        "cancelled_ids": cancelled,
        "suspended_ids": suspended,
        "revoked_ids": revoked,
    }


def recover(uow: UnitOfWork, *, actor: str, now: int, resume_agents: bool) -> dict[str, Any]:
    """Turn the kill switch off inside ``uow`` (the caller commits).

    Raises:
        StateError: it is not active.
    """
    current = state(uow)
    if not current.active:
        raise StateError("the kill switch is not active")
    uow.state.put(KEY, KillSwitchState(active=False).model_dump(), now=now)
    resumed = []
    if resume_agents:
        for agent in uow.agents.list(status="SUSPENDED"):
            if agent.suspension_reason == KILL_SWITCH_REASON and agent_states.move(
                uow,
                agent.id,
                [AgentStatus.SUSPENDED],
                AgentStatus.ACTIVE,
                actor=actor,
                now=now,
                details={"reason": "kill switch recovered"},
                suspended_at=None,
                suspension_reason=None,
            ):
                resumed.append(agent.id)
                from waiaas.pipeline.gate import restart_auto_stop

                restart_auto_stop(uow, agent.id, now)
    summary = {"activated_at": current.activated_at, "agents_resumed": len(resumed)}
    uow.audit.append(AuditEvent.KILL_SWITCH_RECOVERED, actor=actor, now=now, details=summary)
    return {**summary, "resumed_ids": resumed}
