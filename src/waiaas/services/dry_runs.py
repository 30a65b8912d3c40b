"""Dry runs: what ``send`` would decide for a request now, without sending it.

:func:`dry_run` takes the request through the same gate as ``send`` (normalised for the
agent's chain, built, judged on its decoded effects). The owner or operator (``agent_id``)
gets the full explanation and nothing is written; the agent itself (``token``) gets a
redacted one, and its dry run is recorded (a ``DRY_RUN`` audit row, counted by RATE_LIMIT).
The public documentation is on ``Wallet.dry_run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waiaas._validate import check_id
from waiaas.db import Database
from waiaas.errors import AgentNotActiveError, AuthError, InvalidInputError, NotFoundError
from waiaas.pipeline.engine import Pipeline
from waiaas.pipeline.requests import normalize_request, parse_request
from waiaas.policy import Explanation
from waiaas.services.agents import AgentService
from waiaas.sessions import SessionManager
from waiaas.types import AuditEvent, Request

__all__ = ["dry_run"]


def _verify(db: Database, sessions: SessionManager, token: str, now: int) -> tuple[str, str | None]:
    """The agent and session behind ``token`` (a refusal is recorded, then raised)."""
    try:
        with db.read() as uow:
            verified = sessions.verify_in(uow, token, now)
            return verified.agent_id, verified.session_id
    except (AuthError, AgentNotActiveError) as exc:
        sessions.record_failure(exc, now=now)
        raise


def dry_run(
    db: Database,
    sessions: SessionManager,
    pipeline: Pipeline,
    agents: AgentService,
    now: int,
    request: Request | Mapping[str, Any],
    *,
    agent_id: str | None = None,
    token: str | None = None,
) -> Explanation:
    """What ``send`` would decide for ``request`` (see ``Wallet.dry_run``)."""
    from waiaas.policy.explain import redact_for_agent

    session_id: str | None = None
    if token is not None:
        agent_id, session_id = _verify(db, sessions, token, now)
    try:
        req = parse_request(request)
    except InvalidInputError as exc:
        if token is not None and agent_id is not None:
            pipeline.record_refusal(agent_id, session_id, "malformed", exc, now)
        raise
    if agent_id is None:
        raise InvalidInputError("give agent_id or token", field="agent_id")
    agent_id = check_id(agent_id, "agent_id")
    try:
        result, req = _explain(db, pipeline, agents, agent_id, req, now)
    except _Refused as refused:
        if token is not None:  # counted as send counts it
            pipeline.record_refusal(agent_id, session_id, "guard", refused.error, now)
        raise refused.error from None
    if token is None:
        return result  # the owner or operator: the full explanation
    # The agent itself: a compact DRY_RUN row (RATE_LIMIT counts it) and a redacted view.
    with db.write(agent_id=agent_id) as uow:
        uow.audit.append(
            AuditEvent.DRY_RUN,
            actor=f"agent:{agent_id}",
            now=now,
            agent_id=agent_id,
            session_id=session_id,
            details={
                "type": str(req.type),
                "allowed": result.decision.allowed,
                "tier": str(result.decision.tier),
            },
        )
        uow.commit()
    return redact_for_agent(result)


class _Refused(Exception):
    """A guard of the agent's chain refused the request (carried out of the read)."""

    def __init__(self, error: InvalidInputError) -> None:
        super().__init__(str(error))
        self.error = error


def _explain(
    db: Database,
    pipeline: Pipeline,
    agents: AgentService,
    agent_id: str,
    req: Request,
    now: int,
) -> tuple[Explanation, Request]:
    """The gate's explanation for ``req`` (normalised for the agent's chain)."""
    from waiaas.pipeline import plans

    with db.read() as uow:
        agent = uow.agents.get(agent_id)
        if agent is None:
            raise NotFoundError("agent", agent_id)
        adapter = agents.adapter(agent.chain, agent.network)
        try:
            req = normalize_request(adapter, req)
        except InvalidInputError as exc:
            raise _Refused(exc) from None  # a guard, an address or network the chain refuses
        prepared = plans.prepare_or_defer(adapter, req, agent.public_key)
        result: Explanation = pipeline.gate.explain(
            uow,
            agent,
            req,
            now,
            adapter=adapter,
            effects=prepared.effects,
            calldata=prepared.calldata,
            fee=prepared.fee,
        )
    return result, req
