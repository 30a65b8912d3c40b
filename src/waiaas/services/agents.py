"""Agent lifecycle on the database and the keystore.

:class:`AgentService` creates agents (a key sealed in the keystore), reads them, suspends,
resumes and terminates them, changes their owner and rotates their key, and finishes what a
crash interrupted (creation, termination, a rotation). Every status change goes through
:func:`waiaas.pipeline.agent_states.move` (the agent state machine, declared once), which
writes its audit row in the same database transaction. ``Wallet`` delegates to it; the
public documentation of each operation is on the ``Wallet`` method of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable

from waiaas._validate import check_encodable, check_id, shown
from waiaas.chains.base import ChainAdapter
from waiaas.clock import Clock
from waiaas.db import Database
from waiaas.db.tables import AgentRow
from waiaas.errors import InvalidInputError, NotFoundError, StateError, WaiaasError
from waiaas.ids import new_id
from waiaas.keystore import Keystore
from waiaas.pipeline import agent_states, approvals, killswitch, states
from waiaas.pipeline.engine import Pipeline
from waiaas.pipeline.gate import restart_auto_stop
from waiaas.sessions import SessionManager
from waiaas.types import (
    AgentInfo,
    AgentList,
    AgentStatus,
    AuditEvent,
    KillSwitchRelease,
    KillSwitchSummary,
    Severity,
    TxStatus,
)

__all__ = ["AgentService", "agent_info"]

A = AgentStatus
_TERMINATED = "agent terminated"
_INTERRUPTED = "creation interrupted before the key was stored"


def agent_info(row: AgentRow) -> AgentInfo:
    """The public view of an agent row."""
    return AgentInfo(
        id=row.id,
        name=row.name,
        chain=row.chain,
        network=row.network,
        public_key=row.public_key,
        status=AgentStatus(row.status),
        owner_address=row.owner_address,
        created_at=row.created_at,
        updated_at=row.updated_at,
        suspended_at=row.suspended_at,
        suspension_reason=row.suspension_reason,
    )


def _plain(text: str) -> str:
    """``text`` for a message: printable ASCII, other characters escaped."""
    return "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in text)


def _check_text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{field} must be a non-empty string", field=field)
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise InvalidInputError(
            f"{field} must be at most {limit} printable characters", field=field
        )
    return check_encodable(value, field).strip()


class AgentService:
    """Create, read, suspend, resume and terminate agents; set owners; rotate keys.

    Args:
        db: the opened :class:`~waiaas.db.Database`.
        keystore: the unlocked :class:`~waiaas.keystore.Keystore` holding the agents' keys.
        clock: the time source.
        sessions: revokes an agent's sessions when it is terminated.
        pipeline: the chain adapters, and what suspension and an owner change do to
            queued transactions (with the notifications they send).

    Example::

        service = AgentService(db, keystore, clock, sessions, pipeline)
        agent = service.create("trader", "solana")
        service.suspend(agent.id, reason="investigating")
    """

    def __init__(
        self,
        db: Database,
        keystore: Keystore,
        clock: Clock,
        sessions: SessionManager,
        pipeline: Pipeline,
    ) -> None:
        self._db = db
        self._keystore = keystore
        self._clock = clock
        self._sessions = sessions
        self._pipeline = pipeline

    def __repr__(self) -> str:
        return f"AgentService({self._db!r})"

    # ------------------------------------------------------------------ reads

    def row(self, agent_id: str) -> AgentRow:
        """The agent's row. Raises :class:`NotFoundError` / :class:`InvalidInputError`."""
        check_id(agent_id, "agent_id")
        with self._db.read() as uow:
            row = uow.agents.get(agent_id)
        if row is None:
            raise NotFoundError("agent", agent_id)
        return row

    def get(self, agent_id: str) -> AgentInfo:
        """The agent with id ``agent_id`` (see ``Wallet.get_agent``)."""
        return agent_info(self.row(agent_id))

    def list(self, *, status: AgentStatus | str | None = None) -> AgentList:
        """All agents, oldest first, optionally only those in ``status``."""
        if status is not None:
            try:
                status = AgentStatus(status)
            except ValueError:
                raise InvalidInputError(
                    f"unknown agent status {shown(status)}", field="status"
                ) from None
        with self._db.read() as uow:
            rows = uow.agents.list(status=status)
        return AgentList(agent_info(r) for r in rows)

    def adapter(self, chain: object, network: str | None) -> ChainAdapter:
        """The one configured adapter for ``chain`` (and ``network``, needed when several
        networks of the chain are configured)."""
        if not isinstance(chain, str) or not chain or len(chain) > 64:
            raise InvalidInputError("chain must be a non-empty string", field="chain")
        if network is not None and (not isinstance(network, str) or len(network) > 64):
            raise InvalidInputError("network must be a network name", field="network")
        adapters = self._pipeline.adapters
        candidates = [a for (c, n), a in adapters.items() if c == chain and network in (None, n)]
        if not candidates:
            known = ", ".join(f"{c}/{n}" for c, n in adapters) or "none"
            raise InvalidInputError(
                f"no chain adapter for {_plain(chain)}/{_plain(network) if network else '*'} "
                f"(configured: {known})",
                field="chain",
            )
        if len(candidates) > 1:
            raise InvalidInputError(
                f"several {chain} networks are configured; name the network", field="network"
            )
        return candidates[0]

    def chain_adapter(self, agent_id: str) -> ChainAdapter:
        """The adapter the agent's transactions go through (see ``Wallet.chain_adapter``)."""
        row = self.row(agent_id)
        return self._pipeline.adapter_for(row.chain, row.network)

    def balance(self, agent_id: str, token: str | None = None) -> int:
        """The agent's native (or ``token``) balance in base units (see ``Wallet.balance``)."""
        agent = self.row(agent_id)
        adapter = self.adapter(agent.chain, agent.network)
        if token is None:
            return adapter.get_balance(agent.public_key)
        return adapter.get_token_balance(agent.public_key, adapter.validate_address(token))

    # ------------------------------------------------------------------ lifecycle

    def create(
        self, name: str, chain: str, network: str | None, owner_address: str | None
    ) -> AgentInfo:
        """A new agent: CREATING, its key sealed, then ACTIVE (see ``Wallet.create_agent``)."""
        name = _check_text(name, "name", 200)
        adapter = self.adapter(chain, network)
        owner = (
            approvals.validate_owner_address(owner_address) if owner_address is not None else None
        )
        secret, public_key = adapter.generate_secret()
        now = self._clock.now()
        row = AgentRow(
            id=new_id(),
            name=name,
            chain=adapter.chain,
            network=adapter.network,
            public_key=public_key,
            status=A.CREATING.value,
            owner_address=owner,
            created_at=now,
            updated_at=now,
        )
        with self._db.write(agent_id=row.id) as uow:
            uow.agents.add(row)
            uow.audit.append(
                AuditEvent.AGENT_CREATED,
                actor="owner",
                now=now,
                agent_id=row.id,
                details={
                    "name": name,
                    "chain": adapter.chain,
                    "network": adapter.network,
                    "public_key": public_key,
                    "owner_address": owner,
                },
            )
            uow.commit()
        self._keystore.add_key(row.id, adapter.chain, secret, public_key)
        del secret
        with self._db.write(agent_id=row.id) as uow:
            agent_states.move(uow, row.id, [A.CREATING], A.ACTIVE, actor="system", now=now)
            uow.commit()
        return self.get(row.id)

    def suspend(self, agent_id: str, reason: str) -> AgentInfo:
        """ACTIVE -> SUSPENDED by the owner; sessions revoked, queued transactions cancelled."""
        reason = _check_text(reason, "reason", 500)
        self.row(agent_id)
        now = self._clock.now()
        with self._db.write(agent_id=agent_id) as uow:
            agent_states.require_move(
                uow,
                agent_id,
                [A.ACTIVE],
                A.SUSPENDED,
                actor="owner",
                now=now,
                details={"reason": reason},
                suspended_at=now,
                suspension_reason=reason,
            )
            _counts, outbox = self._pipeline.contain_suspended(
                uow, agent_id, actor="owner", reason=reason, now=now
            )
            uow.commit()
        self._pipeline.publish_events(outbox)
        self._pipeline.publish(AuditEvent.AGENT_SUSPENDED, agent_id=agent_id, reason=reason)
        return self.get(agent_id)

    def resume(self, agent_id: str) -> AgentInfo:
        """SUSPENDED -> ACTIVE by the owner, not while the kill switch is on."""
        self.row(agent_id)
        now = self._clock.now()
        with self._db.write(agent_id=agent_id) as uow:
            killswitch.ensure_inactive(uow)
            agent_states.require_move(
                uow,
                agent_id,
                [A.SUSPENDED],
                A.ACTIVE,
                actor="owner",
                now=now,
                suspended_at=None,
                suspension_reason=None,
            )
            restart_auto_stop(uow, agent_id, now)
            uow.commit()
        return self.get(agent_id)

    def terminate(self, agent_id: str) -> AgentInfo:
        """-> TERMINATING, then everything termination does, then TERMINATED."""
        self.row(agent_id)
        now = self._clock.now()
        live = [A.CREATING, A.ACTIVE, A.SUSPENDED]
        with self._db.write(agent_id=agent_id) as uow:
            if not agent_states.move(uow, agent_id, live, A.TERMINATING, actor="owner", now=now):
                raise StateError(f"agent {agent_id} is already terminated", agent_id=agent_id)
            uow.commit()
        return self._finish_termination(agent_id, actor="owner")

    def _finish_termination(self, agent_id: str, *, actor: str) -> AgentInfo:
        now = self._clock.now()
        with self._db.write(agent_id=agent_id) as uow:
            revoked = self._sessions.revoke_all_for_agent(uow, agent_id, now, "agent terminated")
            cancelled = 0
            for row in uow.transactions.active_for_agent(agent_id):
                if row.status in (TxStatus.PENDING, TxStatus.QUEUED) and states.cancel_found(
                    uow, row, actor=actor, now=now, code="AGENT_TERMINATED", reason=_TERMINATED
                ):
                    cancelled += 1
            agent_states.move(
                uow,
                agent_id,
                [A.TERMINATING],
                A.TERMINATED,
                actor=actor,
                now=now,
                details={"sessions_revoked": revoked, "transactions_cancelled": cancelled},
            )
            uow.commit()
        if self._keystore.has_key(agent_id):
            self._keystore.remove_key(agent_id)
        return self.get(agent_id)

    def set_owner(self, agent_id: str, owner_address: str | None) -> AgentInfo:
        """Set or clear the owner; pending approvals are re-issued or cancelled."""
        self.row(agent_id)
        owner = (
            approvals.validate_owner_address(owner_address) if owner_address is not None else None
        )
        now = self._clock.now()
        with self._db.write(agent_id=agent_id) as uow:
            previous = uow.agents.get(agent_id)
            before = previous.owner_address if previous is not None else None
            uow.agents.update_fields(agent_id, owner_address=owner, updated_at=now)
            touched, outbox = (
                self._pipeline.reset_approvals(uow, agent_id, owner, now=now)
                if before != owner
                else ([], None)
            )
            uow.audit.append(
                AuditEvent.AGENT_OWNER_SET,
                actor="owner",
                now=now,
                agent_id=agent_id,
                details={"owner_address": owner, "approvals_invalidated": touched},
            )
            uow.commit()
        if outbox is not None:
            self._pipeline.publish_events(outbox)
        return self.get(agent_id)

    def rotate_key(self, agent_id: str) -> AgentInfo:
        """A new key for the agent, the old one archived (KEY_ROTATED)."""
        agent = self.row(agent_id)
        if agent.status in (A.TERMINATING, A.TERMINATED):
            raise StateError(f"agent {agent_id} is {agent.status}", agent_id=agent_id)
        adapter = self.adapter(agent.chain, agent.network)
        now = self._clock.now()
        try:
            with self._db.write(agent_id=agent_id) as uow:
                if uow.transactions.active_for_agent(agent_id):
                    raise StateError(
                        "the agent has transactions in flight; rotate later", agent_id=agent_id
                    )
                secret, public_key = adapter.generate_secret()
                rotation = self._keystore.rotate_key(agent_id, secret, public_key)
                del secret
                uow.agents.update_fields(agent_id, public_key=public_key, updated_at=now)
                uow.audit.append(
                    AuditEvent.KEY_ROTATED,
                    actor="owner",
                    now=now,
                    agent_id=agent_id,
                    details={
                        "old_public_key": rotation.old_public_key,
                        "new_public_key": rotation.new_public_key,
                    },
                )
                uow.commit()
        except WaiaasError:
            self.reconcile_keys([agent_id])  # the keystore may have rotated already
            raise
        return self.get(agent_id)

    # ------------------------------------------------------------------ kill switch

    def kill_switch(self, reason: str) -> KillSwitchSummary:
        """Suspend every agent, revoke every session, cancel every PENDING/QUEUED
        transaction, atomically (see ``Wallet.kill_switch``)."""
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError("reason must be a non-empty string", field="reason")
        now = self._clock.now()
        with self._db.write() as uow:
            summary = killswitch.activate(uow, actor="owner", reason=reason, now=now)
            uow.commit()
        self._pipeline.publish(
            AuditEvent.KILL_SWITCH_ACTIVATED, reason=reason, severity=Severity.CRITICAL
        )
        return KillSwitchSummary(
            reason=reason,
            activated_at=now,
            agents_suspended=summary["agents_suspended"],
            sessions_revoked=summary["sessions_revoked"],
            transactions_cancelled=summary["transactions_cancelled"],
            suspended_ids=tuple(summary.get("suspended_ids", ())),
            revoked_ids=tuple(summary.get("revoked_ids", ())),
            cancelled_ids=tuple(summary.get("cancelled_ids", ())),
        )

    def release_kill_switch(self, *, resume_agents: bool) -> KillSwitchRelease:
        """Turn the kill switch off (see ``Wallet.release_kill_switch``)."""
        now = self._clock.now()
        with self._db.write() as uow:
            summary = killswitch.recover(
                uow, actor="owner", now=now, resume_agents=bool(resume_agents)
            )
            uow.commit()
        self._pipeline.publish(AuditEvent.KILL_SWITCH_RECOVERED)
        return KillSwitchRelease(
            activated_at=summary.get("activated_at"),
            released_at=now,
            agents_resumed=summary["agents_resumed"],
            resumed_ids=tuple(summary.get("resumed_ids", ())),
        )

    # ------------------------------------------------------------------ recovery

    def recover(self) -> None:
        """Finish what a crash interrupted: creations (ACTIVE when the key was stored, else
        TERMINATED), terminations, and key rotations the database did not record."""
        now = self._clock.now()
        with self._db.write() as uow:
            for agent in uow.agents.list(status=A.CREATING):
                stored = self._keystore.has_key(agent.id)
                agent_states.move(
                    uow,
                    agent.id,
                    [A.CREATING],
                    A.ACTIVE if stored else A.TERMINATED,
                    actor="system",
                    now=now,
                    details={"recovered": True} if stored else {"reason": "creation interrupted"},
                    **({} if stored else {"suspension_reason": _INTERRUPTED}),
                )
            uow.commit()
        with self._db.read() as uow:
            terminating = uow.agents.list(status=A.TERMINATING)
        for agent in terminating:
            self._finish_termination(agent.id, actor="system")
        self.reconcile_keys()

    def reconcile_keys(self, agent_ids: Iterable[str] | None = None) -> None:
        """The keystore is the truth about an agent's key: a rotation whose database write
        did not commit (crash) is recorded now, with a KEY_ROTATED row."""
        wanted = set(agent_ids) if agent_ids is not None else None
        now = self._clock.now()
        with self._db.write() as uow:
            for agent in uow.agents.list():
                if wanted is not None and agent.id not in wanted:
                    continue
                if agent.status == A.TERMINATED or not self._keystore.has_key(agent.id):
                    continue
                current = self._keystore.public_key(agent.id)
                if current == agent.public_key:
                    continue
                uow.agents.update_fields(agent.id, public_key=current, updated_at=now)
                uow.audit.append(
                    AuditEvent.KEY_ROTATED,
                    actor="system",
                    now=now,
                    agent_id=agent.id,
                    details={
                        "old_public_key": agent.public_key,
                        "new_public_key": current,
                        "recovered": True,
                    },
                )
            uow.commit()
