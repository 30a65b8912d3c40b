"""The agent state machine (CORE-02 §2.1), declared once, and its audited compare-and-swap.

::

    CREATING ──► ACTIVE ◄──► SUSPENDED          (owner by hand, kill switch, AUTO_STOP)
       │            │            │
       ├────────────┴────────────┴──► TERMINATING ──► TERMINATED
       └──► TERMINATED                  (recovery: creation interrupted before the key was stored)

:data:`ALLOWED` says which moves exist and which actors may make them; every writer (creation,
suspension by the owner, the kill switch, AUTO_STOP, resumption, termination, crash recovery)
goes through :func:`move`, which checks the table, changes the status with
``UPDATE ... WHERE status IN (<expected>)`` and appends the move's audit row in the same
database transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from waiaas.db.uow import UnitOfWork
from waiaas.errors import InvalidTransitionError, StateError
from waiaas.types import AgentStatus, AuditEvent

__all__ = ["ALLOWED", "EVENTS", "can_move", "move", "require_move"]

A = AgentStatus
_OWNER = frozenset({"owner"})
_SYSTEM = frozenset({"system"})
_ANYONE = frozenset({"owner", "system"})

ALLOWED: Mapping[tuple[AgentStatus, AgentStatus], frozenset[str]] = {
    (A.CREATING, A.ACTIVE): _SYSTEM,  # the key is sealed (or was, before a crash)
    (A.CREATING, A.TERMINATED): _SYSTEM,  # recovery: no key was ever stored
    (A.ACTIVE, A.SUSPENDED): _ANYONE,  # the owner (by hand, kill switch) or AUTO_STOP
    (A.SUSPENDED, A.ACTIVE): _OWNER,  # resume, kill switch release with resume_agents
    (A.CREATING, A.TERMINATING): _OWNER,
    (A.ACTIVE, A.TERMINATING): _OWNER,
    (A.SUSPENDED, A.TERMINATING): _OWNER,
    (A.TERMINATING, A.TERMINATED): _ANYONE,  # the owner, or recovery finishing it
}
"""Every allowed ``(from, to)`` move and the actors (audit ``actor`` kinds) that may make it."""

EVENTS: Mapping[AgentStatus, AuditEvent | None] = {
    A.ACTIVE: AuditEvent.AGENT_ACTIVATED,  # from CREATING; AGENT_RESUMED from SUSPENDED
    A.SUSPENDED: AuditEvent.AGENT_SUSPENDED,
    A.TERMINATING: None,  # an intent; AGENT_TERMINATED is written when it is done
    A.TERMINATED: AuditEvent.AGENT_TERMINATED,
}
"""The audit event each target status writes."""


def can_move(current: AgentStatus | str, target: AgentStatus | str, actor: str) -> bool:
    """Whether the table allows ``actor`` (``"owner"``, ``"system"``) to move ``current ->
    target``."""
    actors = ALLOWED.get((AgentStatus(current), AgentStatus(target)))
    return actors is not None and actor.split(":", 1)[0] in actors


def _event(expected: list[AgentStatus], target: AgentStatus) -> AuditEvent | None:
    if target == A.ACTIVE and A.SUSPENDED in expected:
        return AuditEvent.AGENT_RESUMED
    return EVENTS[target]


def move(
    uow: UnitOfWork,
    agent_id: str,
    expected: Iterable[AgentStatus | str],
    target: AgentStatus | str,
    *,
    actor: str,
    now: int,
    details: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move ``agent_id`` from one of ``expected`` to ``target`` and append its audit row
    (AGENT_ACTIVATED / AGENT_RESUMED / AGENT_SUSPENDED / AGENT_TERMINATED, with ``details``),
    in ``uow`` (the caller commits). ``fields`` are other columns written with the status.

    Returns:
        ``False`` when the agent was in none of ``expected`` (another writer got there first,
        or it is missing): nothing was written.

    Raises:
        InvalidTransitionError: the table does not allow one of the moves for ``actor``
            (a programming error, never a race).
    """
    states = [AgentStatus(s) for s in expected]
    goal = AgentStatus(target)
    for state in states:
        if not can_move(state, goal, actor):
            raise InvalidTransitionError("agent", agent_id, f"{state} (by {actor})", goal)
    moved = uow.agents.cas_status(
        agent_id, [s.value for s in states], goal.value, updated_at=now, **fields
    )
    event = _event(states, goal)
    if moved and event is not None:
        uow.audit.append(event, actor=actor, now=now, agent_id=agent_id, details=details)
    return moved


def require_move(
    uow: UnitOfWork,
    agent_id: str,
    expected: Iterable[AgentStatus | str],
    target: AgentStatus | str,
    *,
    actor: str,
    now: int,
    details: Mapping[str, Any] | None = None,
    **fields: Any,
) -> None:
    """:func:`move`, raising :class:`StateError` (naming the status the agent had) when the
    agent was in none of ``expected``."""
    states = [AgentStatus(s) for s in expected]
    if not move(uow, agent_id, states, target, actor=actor, now=now, details=details, **fields):
        row = uow.agents.get(agent_id)
        found = row.status if row is not None else "missing"
        raise StateError(
            f"agent {agent_id} is {found}, not {' or '.join(states)}", agent_id=agent_id
        )
