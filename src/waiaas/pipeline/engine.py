"""The transaction pipeline: the imperative shell around the pure policy core.

::

    send(token, request)
      stage 1  one BEGIN IMMEDIATE unit of work:
               kill switch -> session verify -> agent ACTIVE -> session constraints
               -> policy evaluate (usage from the DB) -> insert the row (PENDING) + TX_REQUESTED
               -> denied: FAILED + POLICY_VIOLATION | DELAY / APPROVAL: QUEUED + TX_QUEUED
      stage 2  (INSTANT / NOTIFY at once; DELAY after the cooldown; APPROVAL once signed)
               no lock: build a deferred plan, read the node's pending nonce, warm caches
               claim, one short unit of work: re-check (kill switch, agent; queued / resumed
               ones: session and the whole decision again, a stricter tier moves them to
               its path) -> reserve the nonce -> EXECUTING with a claim token (TX_EXECUTING)
               no lock: build -> plan check -> simulate -> sign (the claim is held)
               record, one short unit of work: the claim is still ours (CAS) -> signed
               bytes + hash stored (TX_SIGNED)
      stage 3  one unit of work: kill switch + agent status -> SUBMITTED (the last check)
               -> submit (transient: retry with backoff; stale: rebuild once; permanent:
               FAILED) -> wait for confirmation -> CONFIRMED / FAILED
    notifications go out after each commit and can never fail a transaction.

No chain call, key use or sleep happens while the write lock is held: each unit of work
reads and writes the database only. Bytes are sent only after they are recorded, so a claim
without recorded bytes proves nothing was sent: a claim whose process died is released
(back to PENDING / QUEUED) and the transaction is signed afresh.

Every status change is a compare-and-swap written with its audit row in the same database
transaction (:func:`waiaas.pipeline.states.transition`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from waiaas.chains.base import (
    ChainAdapter,
    ChainTxState,
    ChainTxStatus,
    SignedTx,
    SupportsNonces,
)
from waiaas.clock import Clock
from waiaas.config import WalletConfig
from waiaas.db import Database, UnitOfWork
from waiaas.db.faults import stored_json
from waiaas.db.tables import AgentRow, ApprovalRow, TransactionRow
from waiaas.errors import (
    AgentNotActiveError,
    ApprovalError,
    AuthError,
    ChainError,
    ChainErrorKind,
    ConstraintViolationError,
    InvalidInputError,
    InvalidTransitionError,
    KeyMissingError,
    KeystoreError,
    KeystoreLockedError,
    NotFoundError,
    PolicyDeniedError,
    StateError,
    StorageError,
    TamperDetectedError,
    TransientChainError,
    WaiaasError,
)
from waiaas.ids import new_id
from waiaas.pipeline import agent_states, approvals, killswitch, plans, records
from waiaas.pipeline.gate import agent_context as approvals_context
from waiaas.pipeline.ports import GatePort, SessionPort
from waiaas.pipeline.report import DueProblem, DueReport
from waiaas.pipeline.requests import (
    normalize_request,
    parse_request,
    summary,
)
from waiaas.pipeline.states import BORN, transition
from waiaas.policy.evaluate import applicable
from waiaas.policy.explain import agent_denial, deciding_reasons, next_allowed_time
from waiaas.policy.rules import TimeRestrictionRules
from waiaas.types import AuditEvent, Request, Severity, Tier, TxStatus

__all__ = ["Pipeline", "PipelineHooks"]

_DUPLICATE_ATTEMPTS = 6
# Errors that end a transaction as FAILED without being an on-chain failure of the agent.
_NOT_FAILURES = frozenset(
    {
        "POLICY_DENIED",
        "KEYSTORE_LOCKED",
        "REJUDGED",
        "SESSION_ENDED",
        "TAMPER_DETECTED",
        "AGENT_SUSPENDED",
        "OWNER_REMOVED",
        "KEY_MISSING",
        "NOT_LANDED",
    }
)
_ENDED: Literal["ended"] = "ended"
_SCAN_LIMIT = 1_000_000  # process_due looks at every queued row, as the kill switch does
_AGENT_OF_TX = "SELECT agent_id FROM transactions WHERE id = ?"

log = logging.getLogger("waiaas.pipeline")

S = TxStatus
E = AuditEvent


class KeySource(Protocol):
    """What the pipeline needs from the keystore: a key for one call."""

    @property
    def locked(self) -> bool:
        """Whether keys cannot be used now."""
        ...

    def use_key(self, key_id: str) -> Any:
        """Context manager yielding the secret bytes of ``key_id``."""
        ...


class EventSink(Protocol):
    """Where events go after commit (a Notifier)."""

    def notify(self, event: Any) -> None:
        """Deliver (or enqueue) one event; must not raise."""
        ...


@dataclass
class PipelineHooks:
    """Test hooks: ``on_stage(name, tx_id)`` runs at each stage boundary.

    Stages: ``admitted`` (the request's row is committed), ``claimed`` (EXECUTING with a
    claim committed, nothing signed yet), ``signed`` (EXECUTING with the
    signed bytes committed, nothing sent yet), ``recorded`` (cleared for broadcast:
    SUBMITTED committed, nothing sent yet), ``submitted`` (sent, before waiting for
    confirmation) and ``approved`` (the owner's approval committed, before execution).
    Crash tests kill the process at each of them; production code leaves the hook empty.
    """

    on_stage: Callable[[str, str], None] | None = None

    def stage(self, name: str, tx_id: str) -> None:
        if self.on_stage is not None:
            self.on_stage(name, tx_id)


@dataclass
class _Outbox:
    """Events gathered inside a unit of work, sent only after it commits."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, event: AuditEvent, **data: Any) -> None:
        self.events.append({"event": event, **data})


@dataclass(frozen=True)
class _Escalation:
    """A re-judged transaction now needs a stricter tier than the one it went through."""

    current: Tier
    tier: Tier
    decision: Any


class Pipeline:
    """Runs requests through policy, tiers, approval, signing, submission and confirmation."""

    def __init__(
        self,
        *,
        db: Database,
        keys: KeySource,
        adapters: Mapping[tuple[str, str], ChainAdapter],
        sessions: SessionPort,
        gate: GatePort,
        clock: Clock,
        config: WalletConfig,
        notifier: EventSink | None = None,
        hooks: PipelineHooks | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self.keys = keys
        self.adapters = dict(adapters)
        self.sessions = sessions
        self.gate = gate
        self.clock = clock
        self.config = config
        self.notifier = notifier
        self.hooks = hooks or PipelineHooks()
        self._sleep = sleep
        #: Sign INSTANT/NOTIFY requests before admission's lock and record the bytes in the
        #: admission commit (see :meth:`_presign`); ``False`` sends every request through
        #: the claim path (tests of that path's crash points turn it off).
        self.presign = True

    # ================================================================== helpers

    def adapter_for(self, chain: str, network: str) -> ChainAdapter:
        """The adapter agents on ``chain``/``network`` use.

        Raises:
            InvalidInputError: no adapter was given to ``Wallet.open`` for that network.
        """
        adapter = self.adapters.get((chain, network))
        if adapter is None:
            known = ", ".join(f"{c}/{n}" for c, n in self.adapters) or "none"
            raise InvalidInputError(
                f"no chain adapter for {chain}/{network} (configured: {known})", field="chain"
            )
        return adapter

    def _publish(self, outbox: _Outbox) -> None:
        if self.notifier is None or not outbox.events:
            return
        for event in outbox.events:
            try:
                self.notifier.notify(event)
            except Exception:  # a notifier must never affect a transaction
                log.exception("notifier failed for %s", event.get("event"))

    def publish(self, event: AuditEvent, **data: Any) -> None:
        """Send one event to the notifier now (the caller has committed)."""
        outbox = _Outbox()
        outbox.add(event, **data)
        self._publish(outbox)

    @staticmethod
    def _meta(row: TransactionRow) -> dict[str, Any]:
        return dict(
            stored_json(row.metadata_json, table="transactions", column="metadata", default={})
        )

    def _actor(self, agent_id: str) -> str:
        return f"agent:{agent_id}"

    # ================================================================== status changes

    @staticmethod
    def _move(
        uow: UnitOfWork,
        row: TransactionRow,
        target: TxStatus,
        *,
        event: AuditEvent | None,
        actor: str,
        now: int,
        details: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """Compare-and-swap ``row`` from its current status to ``target`` with its audit row."""
        transition(
            uow,
            row.id,
            TxStatus(row.status),
            target,
            event=event,
            actor=actor,
            now=now,
            agent_id=row.agent_id,
            session_id=row.session_id,
            details=details,
            **fields,
        )

    def _end(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        target: TxStatus,
        *,
        code: str,
        message: str,
        actor: str,
        now: int,
        outbox: _Outbox,
        details: Mapping[str, Any] | None = None,
        notify: AuditEvent | None = None,
        meta_updates: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """End ``row`` as FAILED, CANCELLED or EXPIRED: record why, give back the session's
        charge, queue the notification (``notify`` overrides the event sent) and, for an
        on-chain or build failure, check the AUTO_STOP consecutive-failure trigger."""
        event = {S.FAILED: E.TX_FAILED, S.CANCELLED: E.TX_CANCELLED, S.EXPIRED: E.TX_EXPIRED}[
            target
        ]
        meta = self._meta(row)
        meta.update(meta_updates or {})
        meta["error"] = {"code": code, "message": message}
        self._move(
            uow,
            row,
            target,
            event=event,
            actor=actor,
            now=now,
            details=details if details is not None else {"reason": code, "message": message},
            error=code,
            metadata=meta,
            **fields,
        )
        self._release(uow, row, meta)
        outbox.add(notify or event, tx_id=row.id, agent_id=row.agent_id, reason=code)
        if target == S.FAILED and code not in _NOT_FAILURES:
            agent = uow.agents.get(row.agent_id)
            if agent is not None:
                self._check_auto_stop_after_failure(uow, agent, now, outbox)

    # ================================================================== units of work

    def _agent_of(self, tx_id: str) -> str | None:
        """The agent of transaction ``tx_id``, for its unit of work's lock; ``None`` on
        SQLite (one writer at a time: no lock to choose) or when there is no such row."""
        if self.db.dialect == "sqlite":
            return None
        found = self.db.fetch_one(_AGENT_OF_TX, (tx_id,))
        return None if found is None else str(found[0])

    @contextlib.contextmanager
    def _tx_write(self, tx_id: str | None, agent_id: str | None = None) -> Iterator[UnitOfWork]:
        """A write unit of work for one transaction, locked to its agent (PostgreSQL: other
        agents' units run in parallel, see ``Database.write``).

        ``agent_id`` is the transaction's agent when the caller knows it, else it is read
        first (a transaction never changes agents). Without a row the unit is global. A row
        found under another agent than the one locked is refused (StorageError): it would
        be written without its agent's lock.
        """
        if agent_id is None and tx_id is not None:
            agent_id = self._agent_of(tx_id)
        with self.db.write(agent_id=agent_id) as uow:
            if agent_id is not None and tx_id is not None and self.db.dialect != "sqlite":
                row = uow.transactions.get(tx_id)
                if row is not None and row.agent_id != agent_id:
                    raise StorageError(
                        f"transaction {tx_id} belongs to another agent than the one locked"
                    )
            yield uow

    def _by_agent(self, tx_ids: Sequence[str]) -> dict[str | None, list[str]]:
        """``tx_ids`` grouped by their agent, one write unit of work per group (PostgreSQL);
        on SQLite one group (one ``BEGIN IMMEDIATE`` for all)."""
        if self.db.dialect == "sqlite" or not tx_ids:
            return {None: list(tx_ids)} if tx_ids else {}
        groups: dict[str | None, list[str]] = {}
        for tx_id in tx_ids:
            groups.setdefault(self._agent_of(tx_id), []).append(tx_id)
        return groups

    # ================================================================== stage 1

    def send(self, token: str, request: Request | Mapping[str, Any]) -> TransactionRow:
        """Accept a request from an agent's session token; run it as far as its tier allows.

        Returns the transaction row (the facade turns it into a public result).

        Raises:
            InvalidInputError / InvalidAddressError: the request is malformed.
            AuthError (and subclasses): the token was refused.
            KillSwitchActiveError, AgentNotActiveError: nothing may move now.
            ConstraintViolationError: a session constraint refused it.
            PolicyDeniedError: a policy denied it (the denial is recorded, ``tx_id`` set).
        """
        if not isinstance(token, str) or not token:
            raise InvalidInputError("token must be a non-empty string", field="token")
        try:
            req = parse_request(request)
        except InvalidInputError as exc:
            self._refuse_malformed(token, exc)
            raise
        if self.keys.locked:
            # Refuse before anything is recorded: an admitted request that cannot be signed
            # now would surprise the agent by executing later.
            raise KeystoreLockedError("the keystore is locked; nothing can be signed now")
        now = self.clock.now()
        outbox = _Outbox()
        denied: PolicyDeniedError | None = None
        agent_id: str | None = None
        presigned: _Presigned | None = None
        # What needs the chain (building the plan, token reads) happens before the write lock.
        early = self._prepare_unlocked(token, req, now)
        try:
            with self.db.write(agent_id=early.agent_id if early is not None else None) as uow:
                killswitch.ensure_inactive(uow)
                verified = self.sessions.verify_in(uow, token, now)
                agent_id = verified.agent_id
                if early is not None and agent_id != early.agent_id:
                    # locked for another agent (a session row edited meanwhile): refuse
                    raise StorageError("the session's agent changed during admission")
                agent = uow.agents.get(verified.agent_id)
                if agent is None:
                    raise NotFoundError("agent", verified.agent_id)
                if agent.status != "ACTIVE":
                    raise AgentNotActiveError(agent.id, agent.status, agent.suspension_reason)
                adapter = self.adapter_for(agent.chain, agent.network)
                req = normalize_request(adapter, req)
                prepared = early.for_(agent, req) if early is not None else None
                if prepared is not None and early is not None:
                    presigned = early.presigned
                if prepared is None:  # not prepared above (rare): build it here
                    prepared = plans.prepare_or_defer(adapter, req, agent.public_key)
                row, denied = self._admit(
                    uow, agent, verified, req, now, outbox, prepared, presigned=presigned
                )
                if denied is None and uow.integrity is not None and row.integrity is None:
                    from waiaas.integrity import tx_mac

                    uow.transactions.update_fields(row.id, integrity=tx_mac(uow.integrity, row))
                uow.commit()
        except TamperDetectedError as exc:
            self._refuse_tampered(exc, agent_id=agent_id, tx_id=None, now=now)
            raise
        except (AuthError, AgentNotActiveError) as exc:
            self._record_auth_failure(exc, now)
            raise
        except ConstraintViolationError as exc:
            self._record_constraint_violation(exc, agent_id, now)
            raise
        except InvalidInputError as exc:
            # a guard (a disguised transfer), an address or network the agent's chain refuses
            if agent_id is not None:
                self.record_refusal(agent_id, None, "guard", exc, now)
            raise
        self._publish(outbox)
        if denied is not None:
            raise denied
        self.hooks.stage("admitted", row.id)
        if row.status == S.SUBMITTED and presigned is not None:
            # The bytes were recorded and cleared for broadcast in the admission commit.
            self.hooks.stage("recorded", row.id)
            return self._submit_stage(row.id, presigned.signed, row, fresh=True, cleared=True)
        if row.status == S.PENDING:
            try:
                return self.execute(row.id)
            except KeystoreError as exc:
                # Locked between admission and signing: the agent is told it failed, so it
                # must not execute later behind its back (a retry would pay twice).
                self._fail(row.id, exc, expected=(S.PENDING,))
                raise
        return row

    def _prepare_unlocked(self, token: str, req: Request, now: int) -> _Early | None:
        """Before admission's write lock: find the token's agent (a read, nothing written),
        normalise the request (token decimals are read from the chain and cached) and build
        its plan. ``None`` when the token or the agent does not check out: admission then
        refuses it under the lock with the right error and audit row."""
        try:
            with self.db.read() as uow:
                verified = self.sessions.verify_in(uow, token, now)
                agent = uow.agents.get(verified.agent_id)
                stopped = self.presign and killswitch.is_active(uow)
            if agent is None or agent.status != "ACTIVE":
                return None
            adapter = self.adapters.get((agent.chain, agent.network))
            if adapter is None:
                return None
            normalized = normalize_request(adapter, req)
            # Bytes signed here carry the nonce the node expects next (the one the claim
            # path would reserve first); admission records them only if no in-flight row
            # holds it. Without presigning the nonce is chosen at the claim.
            hint = None
            if self.presign and not stopped and isinstance(adapter, SupportsNonces):
                hint = adapter.pending_nonce(agent.public_key)
            prepared = plans.prepare_or_defer(adapter, normalized, agent.public_key, nonce=hint)
        except WaiaasError:
            return None
        _warm_decimals(adapter, normalized, prepared.effects)
        presigned = None
        if self.presign and not stopped:
            presigned = self._presign(adapter, agent, prepared)
        return _Early(agent.id, agent.public_key, normalized, prepared, presigned)

    def _presign(
        self, adapter: ChainAdapter, agent: AgentRow, prepared: plans.Prepared
    ) -> _Presigned | None:
        """Sign the transaction whose plan admission is about to judge, before its lock:
        the very transaction the plan, its digest and its effects were read from, with the
        fee judged held (:func:`plans.hold_fee`) and its simulation checked against those
        effects, as the claim path does before it signs.

        The bytes stay in memory. Admission records them (with SUBMITTED, in its own commit)
        only when it judged them INSTANT or NOTIFY under the lock, with the kill switch off,
        the agent active, no other transaction of the agent being signed, the nonce still
        free and no live twin of the bytes; otherwise they are dropped unsent and the claim
        path builds, checks and signs after admission as before. ``None`` when they cannot
        be signed here (no plan, a locked keystore, a refused simulation, a node error):
        the claim path then meets the same condition and records it.
        """
        unsigned = prepared.unsigned
        if unsigned is None or prepared.plan is None or self.keys.locked:
            return None
        judged = {"network_fee": plans.fee_to_json(prepared.fee)} if prepared.fee else {}
        try:
            unsigned = plans.hold_fee(adapter, unsigned, judged)
            simulation = plans.check_simulation(
                adapter, unsigned, prepared.effects, required=self.config.require_simulation
            )
            with self.keys.use_key(agent.id) as secret:
                signed: SignedTx = adapter.sign(unsigned, secret)
            # A transaction of the agent that landed meanwhile (it left the in-flight rows
            # admission checks) may have used the nonce: the node says.
            if (
                signed.nonce is not None
                and isinstance(adapter, SupportsNonces)
                and adapter.pending_nonce(agent.public_key) > signed.nonce
            ):
                return None
        except WaiaasError:
            return None
        return _Presigned(signed, simulation)

    def _take_presigned(
        self, uow: UnitOfWork, agent: AgentRow, row: TransactionRow, presigned: _Presigned
    ) -> SignedTx | None:
        """Inside admission's write: whether the bytes signed before the lock may be
        recorded with the request (the conditions the claim path checks before it signs)."""
        busy = uow.fetch_one(_EXECUTING_OF_AGENT, (agent.id, S.EXECUTING.value))
        if busy is not None:
            return None  # one signing at a time per agent: the claim path waits its turn
        signed = presigned.signed
        if signed.nonce is not None and signed.nonce != self._reserve_nonce(
            uow, agent, exclude=row.id, hint=signed.nonce
        ):
            return None  # the nonce is another in-flight transaction's
        if uow.fetch_one(_ROW_OF_HASH, (signed.tx_hash,)) is not None:
            try:
                self._take_hash(uow, row, signed)
            except _DuplicateBytes:
                return None
        return signed

    def _verify_stored(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        agent: AgentRow,
        approval: ApprovalRow | None = None,
    ) -> None:
        """The stored request and plan, the owner binding and the approval (with the owner's
        decision on it) carry their MACs. Without ``approval``, an APPROVAL transaction's
        latest approval is checked (before signing: a forged ``approved_at`` is refused)."""
        if uow.integrity is None:
            return
        from waiaas import integrity

        integrity.check_tx(uow.integrity, row)
        integrity.check_agent(uow.integrity, agent)
        if approval is None and row.tier == Tier.APPROVAL:
            approval = uow.approvals.for_tx(row.id)
        if approval is not None:
            integrity.check_approval(uow.integrity, approval)

    def _refuse_tampered(
        self, exc: TamperDetectedError, *, agent_id: str | None, tx_id: str | None, now: int
    ) -> None:
        """In a unit of work of its own (the refused one rolled back): a critical
        TAMPER_DETECTED row, the transaction (if still open) FAILED, and a notification."""
        outbox = _Outbox()
        with self._tx_write(tx_id, agent_id) as uow:
            row = uow.transactions.get(tx_id) if tx_id is not None else None
            if row is not None:
                agent_id = row.agent_id
            uow.audit.append(
                E.TAMPER_DETECTED,
                actor="system",
                now=now,
                agent_id=agent_id,
                tx_id=tx_id,
                details={
                    "entity": exc.entity,
                    "entity_id": exc.entity_id,
                    "problem": exc.problem,
                    "message": exc.message,
                },
            )
            if row is not None and row.status in (S.PENDING, S.QUEUED):
                self._end(
                    uow,
                    row,
                    S.FAILED,
                    code="TAMPER_DETECTED",
                    message=exc.message,
                    actor="system",
                    now=now,
                    outbox=outbox,
                )
            uow.commit()
        outbox.add(
            E.TAMPER_DETECTED,
            tx_id=tx_id,
            agent_id=agent_id,
            severity="critical",
            reason=exc.message,
        )
        self._publish(outbox)

    def _refuse_malformed(self, token: str, exc: InvalidInputError) -> None:
        """A malformed request under a valid token is recorded against its agent; under an
        invalid token nothing is (the token check records AUTH_FAILED on the real path)."""
        now = self.clock.now()
        try:
            with self.db.read() as uow:
                verified = self.sessions.verify_in(uow, token, now)
        except (AuthError, AgentNotActiveError, WaiaasError):
            return
        self.record_refusal(verified.agent_id, verified.session_id, "malformed", exc, now)

    def record_refusal(
        self, agent_id: str, session_id: str | None, kind: str, exc: WaiaasError, now: int
    ) -> None:
        """A refused request that leaves no transaction row: one REQUEST_REFUSED row (which
        RATE_LIMIT and AUTO_STOP max_denials count), and the max_denials check."""
        outbox = _Outbox()
        with self.db.write(agent_id=agent_id) as uow:
            uow.audit.append(
                E.REQUEST_REFUSED,
                actor=self._actor(agent_id),
                now=now,
                agent_id=agent_id,
                session_id=session_id,
                details={
                    "kind": kind,
                    "code": exc.code,
                    "field": getattr(exc, "field", None),
                    "message": exc.message[:300],
                },
            )
            tampered = self._auto_stop_after_refusal(uow, agent_id, now, outbox)
            uow.commit()
        self._publish(outbox)
        if tampered is not None:
            self._refuse_tampered(tampered, agent_id=agent_id, tx_id=None, now=now)
            raise tampered

    def _auto_stop_after_refusal(
        self, uow: UnitOfWork, agent_id: str, now: int, outbox: _Outbox
    ) -> TamperDetectedError | None:
        """The max_denials check after a refusal. A policy or resume mark that fails its MAC
        is returned (nothing was written for it): the caller commits the refusal, then
        records the tampering and raises it."""
        agent = uow.agents.get(agent_id)
        if agent is None or agent.status != "ACTIVE":
            return None
        try:
            reason = self.gate.refusal_auto_stop_reason(uow, agent, now)
        except TamperDetectedError as exc:
            return exc
        if reason:
            self._suspend_for_auto_stop(uow, agent, reason, now, outbox)
        return None

    def _record_auth_failure(self, exc: AuthError | AgentNotActiveError, now: int) -> None:
        """AUTH_FAILED must be recorded even though the request's unit of work rolled back."""
        self.sessions.record_failure(exc, now=now)

    def _record_constraint_violation(
        self, exc: ConstraintViolationError, agent_id: str | None, now: int
    ) -> None:
        """A request refused by its session's constraints leaves no transaction (its unit of
        work rolled back), but the attempt is recorded: POLICY_VIOLATION naming the constraint,
        in its own transaction, and the owner is notified."""
        constraint = str(getattr(exc, "constraint", ""))
        session_id = getattr(exc, "session_id", None)
        details = {"source": "session", "constraint": constraint, "message": exc.message}
        outbox = _Outbox()
        with self.db.write(agent_id=agent_id) as uow:
            uow.audit.append(
                E.POLICY_VIOLATION,
                actor=self._actor(agent_id) if agent_id else "agent",
                now=now,
                agent_id=agent_id,
                session_id=session_id,
                details=details,
            )
            tampered = None
            if agent_id is not None:  # it counts toward RATE_LIMIT and AUTO_STOP max_denials
                tampered = self._auto_stop_after_refusal(uow, agent_id, now, outbox)
            uow.commit()
        reasons = [{"type": "SESSION_CONSTRAINT", "effect": "deny", "message": exc.message}]
        outbox.add(E.POLICY_VIOLATION, agent_id=agent_id, reasons=reasons)
        self._publish(outbox)
        if tampered is not None:
            self._refuse_tampered(tampered, agent_id=agent_id, tx_id=None, now=now)
            raise tampered

    def _admit(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        verified: Any,
        req: Request,
        now: int,
        outbox: _Outbox,
        prepared: plans.Prepared | None = None,
        *,
        presigned: _Presigned | None = None,
    ) -> tuple[TransactionRow, PolicyDeniedError | None]:
        amount, to, asset = summary(req)
        prepared = prepared or plans.Prepared(None, None, None)
        adapter = self.adapter_for(agent.chain, agent.network)
        decision = self.gate.evaluate(
            uow,
            agent,
            req,
            now,
            adapter=adapter,
            effects=prepared.effects,
            calldata=prepared.calldata,
            fee=prepared.fee,
        )
        spent = dict(decision.spend)
        tx_id = new_id()
        meta: dict[str, Any] = {
            "network": agent.network,
            "request": req.model_dump(mode="json"),
            "asset": asset,
            **prepared.meta(),
            "decision": records.stored_decision(decision),
        }
        row = TransactionRow(
            id=tx_id,
            agent_id=agent.id,
            session_id=verified.session_id,
            chain=agent.chain,
            type=req.type,
            amount=None if amount is None else str(amount),
            to_address=to,
            status=S.PENDING,
            tier=None,
            created_at=now,
            metadata_json=json.dumps(meta, separators=(",", ":")),
            spend=json.dumps({k: str(v) for k, v in spent.items()}, separators=(",", ":")),
        )
        actor = self._actor(agent.id)
        common = {"agent_id": agent.id, "session_id": verified.session_id, "tx_id": tx_id}
        tier = Tier(decision.tier) if decision.allowed else None
        reasons: list[dict[str, Any]] = [] if decision.allowed else _deny_reasons(decision)
        if tier == Tier.APPROVAL and agent.owner_address is None:
            if self.config.no_owner_approval == "delay":
                tier = Tier.DELAY
                meta["approval_downgraded"] = "agent has no owner; APPROVAL became DELAY"
            else:
                tier = None
                reasons = [
                    {
                        "type": "APPROVAL",
                        "effect": "deny",
                        "message": "this request needs the owner's approval, but the agent has no "
                        "owner address (set one, or WalletConfig(no_owner_approval='delay'))",
                    }
                ]
        if tier is None:
            # Hard caps before "needs the owner", none twice: for the owner's record (the
            # audit row, TransactionInfo.error) the full reasons; the agent gets less below.
            reasons = [r.model_dump(mode="json") for r in deciding_reasons(reasons)]
            message = "; ".join(str(r.get("message", "")) for r in reasons) or "denied by policy"
            row.status = S.FAILED
            row.error = "POLICY_DENIED"
            meta["error"] = {"code": "POLICY_DENIED", "message": f"denied by policy: {message}"}
            row.metadata_json = json.dumps(meta, separators=(",", ":"))
            uow.transactions.add(row)
            uow.audit.append(
                E.TX_REQUESTED,
                actor=actor,
                now=now,
                **common,
                details={
                    "type": req.type,
                    "amount": row.amount,
                    "asset": asset,
                    "to": to,
                    **({"plan_digest": prepared.digest} if prepared.digest else {}),
                },
            )
            uow.audit.append(
                E.POLICY_VIOLATION,
                actor=actor,
                now=now,
                **common,
                details={"reasons": reasons},
            )
            outbox.add(E.POLICY_VIOLATION, tx_id=tx_id, agent_id=agent.id, reasons=reasons)
            self._maybe_auto_stop(uow, agent, decision, now, outbox)
            return row, self._agent_denial(uow, agent, decision, reasons, now, tx_id)
        # Session constraints and usage stats, in the same unit of work as the request.
        self.sessions.enforce_and_record(
            uow, verified, req, network=agent.network, now=now, spend=spent, fees=decision.fees
        )
        row.tier = tier.value
        signed: SignedTx | None = None
        if presigned is not None and tier in (Tier.INSTANT, Tier.NOTIFY):
            signed = self._take_presigned(uow, agent, row, presigned)
        if signed is not None and presigned is not None:
            # Recorded and cleared for broadcast in this commit: PENDING -> SUBMITTED.
            row.status = S.SUBMITTED
            row.tx_hash = signed.tx_hash
            meta["simulation"] = presigned.simulation
            meta["signed"] = _signed_json(signed)
        if tier not in (Tier.DELAY, Tier.APPROVAL):
            row.metadata_json = json.dumps(meta, separators=(",", ":"))
            if uow.integrity is not None:
                from waiaas.integrity import tx_mac

                row.integrity = tx_mac(uow.integrity, row)
        assert row.status in BORN
        uow.transactions.add(row)
        uow.audit.append(
            E.TX_REQUESTED,
            actor=actor,
            now=now,
            **common,
            details={
                "type": req.type,
                "amount": row.amount,
                "asset": asset,
                "to": to,
                "tier": tier.value,
                **({"plan_digest": prepared.digest} if prepared.digest else {}),
            },
        )
        if signed is not None:
            # The same record as the claim path's: the bytes (TX_SIGNED, with their hash),
            # then their clearing for broadcast (TX_SUBMITTED), in one commit.
            uow.audit.append(
                E.TX_SIGNED,
                actor="system",
                now=now,
                **common,
                # the bytes are recorded while the row is still (logically) PENDING
                details={
                    "tx_hash": signed.tx_hash,
                    "nonce": signed.nonce,
                    "from": S.PENDING.value,
                    "to": S.PENDING.value,
                },
            )
            uow.audit.append(
                E.TX_SUBMITTED,
                actor="system",
                now=now,
                **common,
                details={"from": S.PENDING.value},  # "to": SUBMITTED, implied
            )
        if tier in (Tier.DELAY, Tier.APPROVAL):
            extra: dict[str, Any] = {}
            if tier == Tier.DELAY:
                delay = decision.delay_seconds
                meta["execute_after"] = now + (
                    delay if delay is not None else self.config.delay_seconds
                )
                extra["execute_after"] = meta["execute_after"]
            else:
                timeout = decision.approval_timeout or self.config.approval_timeout
                approval = ApprovalRow(
                    id=new_id(),
                    tx_id=tx_id,
                    required_by=now + timeout,
                    expires_at=now + timeout,
                    created_at=now,
                )
                uow.approvals.add(approval)
                meta["approval"] = self._approval_meta(uow, agent, approval, meta)
                extra["approval_expires_at"] = approval.expires_at
            self._move(
                uow,
                row,
                S.QUEUED,
                event=E.TX_QUEUED,
                actor=actor,
                now=now,
                details={"tier": tier.value, **extra},
                queued_at=now,
                metadata=meta,
            )
            row.status = S.QUEUED
            row.queued_at = now
            outbox.add(E.TX_QUEUED, tx_id=tx_id, agent_id=agent.id, tier=tier.value, **extra)
            row.metadata_json = json.dumps(meta, separators=(",", ":"))
        if tier == Tier.NOTIFY:
            outbox.add(E.TX_REQUESTED, tx_id=tx_id, agent_id=agent.id, tier=tier.value)
        return row, None

    def _agent_denial(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        decision: Any,
        reasons: Sequence[Mapping[str, Any]],
        now: int,
        tx_id: str,
    ) -> PolicyDeniedError:
        """The denial raised to the session holder: redacted as for agents' dry runs (the
        outcome and the one deciding figure; no list contents, other thresholds or rule ids).
        The full decision stays in the row and the POLICY_VIOLATION audit row."""
        next_at: int | None = None
        ordered = deciding_reasons(reasons)
        if ordered and ordered[0].type == "TIME_RESTRICTION":
            rules = [
                s.rules
                for s in applicable(self.gate.policies(uow, agent.id), approvals_context(agent))
                if isinstance(s.rules, TimeRestrictionRules)
            ]
            next_at = next_allowed_time(rules, now)
        shown = agent_denial(decision, ordered, chain=agent.chain, next_allowed_at=next_at)
        return PolicyDeniedError(
            f"denied by policy: {shown.message}",
            rule=shown.rule,
            figure=dict(shown.figure) if shown.figure else None,
            next=shown.next,
            reasons=[dict(r) for r in shown.reasons],
            tx_id=tx_id,
        )

    # ================================================================== stage 2

    def execute(self, tx_id: str, *, recheck: bool = False) -> TransactionRow:
        """Sign and submit a PENDING (INSTANT/NOTIFY) or due QUEUED transaction, then confirm.

        A QUEUED transaction, or a PENDING one resumed later (``recheck=True``: a crash or
        an error interrupted it after admission), has its session and deny rules checked
        again first; the kill switch and the agent's status are always checked.

        Safe to call from several threads or processes at once: only one wins the
        compare-and-swap into EXECUTING; the others return the row as it is.
        """
        return self._run(tx_id, recheck=recheck)[0]

    def _run(self, tx_id: str, *, recheck: bool = False) -> tuple[TransactionRow, bool]:
        """:meth:`execute`, also saying whether this call won the transaction (moved it to
        EXECUTING and on) rather than finding it taken, ended or refused."""
        claim: _Claim | _Busy | Literal["ended"] | None = None
        attempt = 0
        waited = _AgentWait()
        while attempt <= self.config.max_retries:
            try:
                claim = self._claim_stage(tx_id, recheck=recheck)
                if isinstance(claim, _Busy):
                    # Another transaction of the agent is being signed (one at a time per
                    # agent, as one nonce and one balance): wait, with no lock held.
                    if claim.stale:
                        self._release_claim(claim.tx_id, None, reason="stale claim")
                    elif not waited.wait():
                        log.warning("%s waits for %s of the same agent", tx_id, claim.tx_id)
                        return self.get_row(tx_id), False  # process_due resumes it
                    continue
                break
            except KeyMissingError as exc:
                # Permanent for this transaction: fail it (its budget is released) so the
                # agent's other work and every other agent carry on.
                self._fail(tx_id, exc, expected=(S.PENDING, S.QUEUED))
                return self.get_row(tx_id), False
            except KeystoreError:
                raise  # e.g. locked: leave the transaction where it is; process_due resumes it
            except ChainError as exc:
                if exc.kind == ChainErrorKind.TRANSIENT and attempt < self.config.max_retries:
                    self._sleep(self.config.retry_base_delay * (2**attempt))
                    attempt += 1
                    continue
                self._fail(tx_id, exc, expected=(S.PENDING, S.QUEUED))
                return self.get_row(tx_id), False
            except InvalidTransitionError:
                return self.get_row(tx_id), False  # another worker moved it first
            except (InvalidInputError, StateError) as exc:
                # the request cannot be built on this chain (checked again at build time)
                self._fail(tx_id, exc, expected=(S.PENDING, S.QUEUED))
                return self.get_row(tx_id), False
        if claim is None or isinstance(claim, _Busy):
            return self.get_row(tx_id), False
        if claim == _ENDED:
            return self.get_row(tx_id), True  # this call ended it: work it won
        try:
            self.hooks.stage("claimed", tx_id)
            stage = self._sign_claimed(claim, retries_left=self.config.max_retries - attempt)
        finally:
            _LIVE_CLAIMS.discard(claim.token)
        if stage is None:
            return self.get_row(tx_id), False
        if stage == _ENDED:
            return self.get_row(tx_id), True
        signed, row = stage
        self.hooks.stage("signed", tx_id)
        return self._submit_stage(tx_id, signed, row, fresh=True), True

    def get_row(self, tx_id: str) -> TransactionRow:
        with self.db.read() as uow:
            row = uow.transactions.get(tx_id)
        if row is None:
            raise NotFoundError("transaction", tx_id)
        return row

    def _claim_stage(
        self, tx_id: str, *, recheck: bool = False
    ) -> _Claim | _Busy | Literal["ended"] | None:
        """Re-check and claim ``tx_id`` for signing. ``None``: another worker took it (or it
        is final); ``"ended"``: this call ended it (a re-check refused it); a
        :class:`_Busy`: another transaction of the agent holds a claim (nothing written)."""
        now = self.clock.now()
        try:
            return self._claim_unit(tx_id, now, recheck=recheck)
        except TamperDetectedError as exc:
            self._refuse_tampered(exc, agent_id=None, tx_id=tx_id, now=now)
            raise

    def _claim_unit(
        self, tx_id: str, now: int, *, recheck: bool
    ) -> _Claim | _Busy | Literal["ended"] | None:
        # Outside the write lock: everything that asks the chain.
        with self.db.read() as uow:
            found = uow.transactions.get(tx_id)
            if found is None:
                raise NotFoundError("transaction", tx_id)
            if found.status not in (S.PENDING, S.QUEUED):
                return None  # another worker took it, or it is final
            reader = uow.agents.get(found.agent_id)
        assert reader is not None
        adapter = self.adapters.get((reader.chain, reader.network))
        prepared: plans.Prepared | None = None
        hint: int | None = None
        if adapter is not None:
            found_meta = self._meta(found)
            req = parse_request(found_meta["request"])
            effects = plans.stored_effects(found_meta)
            if plans.needs_plan(adapter, found_meta):
                # A request that could not be built at admission (funds, a node hiccup) is
                # built now and judged on its effects (in the claim) before anything is signed.
                prepared = plans.prepare(adapter, req, reader.public_key)
                effects = prepared.effects
            _warm_decimals(adapter, req, effects)
            if isinstance(adapter, SupportsNonces):
                hint = adapter.pending_nonce(reader.public_key)
        # The claim: one short unit of work, database only.
        outbox = _Outbox()
        with self._tx_write(tx_id, found.agent_id) as uow:
            row = uow.transactions.get(tx_id)
            if row is None:
                raise NotFoundError("transaction", tx_id)
            if TxStatus(row.status) not in (S.PENDING, S.QUEUED):
                return None  # another worker took it, or it is final
            agent = uow.agents.get(row.agent_id)
            assert agent is not None
            self._verify_stored(uow, row, agent)
            meta = self._meta(row)
            late = adapter is not None and plans.needs_plan(adapter, meta)
            if late:
                if prepared is None or agent.public_key != reader.public_key:
                    return None  # changed under us (another worker escalated it): look again
                meta.update(prepared.meta())
                meta.pop("plan_deferred", None)
            problem = self._recheck(uow, row, agent, meta, now, full=recheck or late)
            if isinstance(problem, _Escalation):
                self._escalate(uow, row, agent, meta, problem, now, outbox)
                if problem.tier != Tier.NOTIFY:
                    uow.commit()
                    self._publish(outbox)
                    return None
                problem = None
            if problem is not None:
                target, code, message = problem
                self._end(
                    uow,
                    row,
                    target,
                    code=code,
                    message=message,
                    actor="system",
                    now=now,
                    outbox=outbox,
                )
                uow.commit()
                self._publish(outbox)
                return _ENDED
            if adapter is None:
                # This process has no adapter for the agent's network (an operator's CLI,
                # an approval page without --rpc): leave the transaction as it is for a
                # wallet process that has one. Nothing was changed in this unit of work.
                log.info("no adapter for %s/%s here; %s waits", agent.chain, agent.network, tx_id)
                return None
            busy = self._other_claim(uow, agent.id, exclude=row.id)
            if busy is not None:
                return busy  # nothing is written: the unit of work rolls back
            nonce: int | None = None
            if hint is not None:
                nonce = self._reserve_nonce(uow, agent, exclude=row.id, hint=hint)
            token = new_id()
            meta["claim"] = _claim_record(token, row.status, nonce)
            _LIVE_CLAIMS.add(token)  # before the commit: this process never finds it stale
            try:
                self._move(
                    uow,
                    row,
                    S.EXECUTING,
                    event=E.TX_EXECUTING,
                    actor="system",
                    now=now,
                    details={"nonce": nonce} if nonce is not None else {},
                    metadata=meta,
                )
                if late:
                    self._seal_tx(uow, row.id)  # the plan built now is sealed with the row
                uow.commit()
            except BaseException:
                _LIVE_CLAIMS.discard(token)
                raise
        self._publish(outbox)
        return _Claim(
            token=token, tx_id=tx_id, agent=agent, adapter=adapter, meta=meta, nonce=nonce
        )

    def _sign_claimed(
        self, claim: _Claim, *, retries_left: int
    ) -> tuple[SignedTx, TransactionRow] | Literal["ended"] | None:
        """Build, check, simulate and sign a claimed transaction with no database transaction
        open, then record the signed bytes (:meth:`_record_signed`). Returns the bytes and the
        row; ``"ended"`` when a stop cancelled it; ``None`` when it failed here or the claim
        was lost (the bytes signed for it are then dropped: never recorded, so never sent)."""
        tx_id = claim.tx_id
        duplicates = 0
        attempt = 0
        try:
            while True:
                try:
                    signed, simulation = self._build_sign(
                        claim.adapter, claim.agent, claim.meta, nonce=self._checked_nonce(claim)
                    )
                    return self._record_signed(claim, signed, simulation)
                except _DuplicateBytes:
                    # Byte-identical to another live transaction (same recent blockhash): wait
                    # for a new blockhash, here where no lock is held, and build again.
                    duplicates += 1
                    if duplicates >= _DUPLICATE_ATTEMPTS:
                        raise TransientChainError(
                            "the transaction is byte-identical to another one in flight; "
                            "no new blockhash yet",
                            chain=claim.agent.chain,
                        ) from None
                    self._sleep(0.1 * duplicates)
                except ChainError as exc:
                    if exc.kind == ChainErrorKind.TRANSIENT and attempt < retries_left:
                        self._sleep(self.config.retry_base_delay * (2**attempt))
                        attempt += 1
                        continue
                    raise
        except _ClaimLost:
            return None
        except KeyMissingError as exc:
            self._fail(tx_id, exc, expected=(S.EXECUTING,), claim=claim.token)
            return None
        except KeystoreError:
            # e.g. locked: the transaction goes back to where it was; process_due resumes it
            self._release_claim(tx_id, claim.token, reason="keystore")
            raise
        except (ChainError, InvalidInputError, StateError) as exc:
            # the request cannot be built on this chain, or its plan or simulation refused it
            self._fail(tx_id, exc, expected=(S.EXECUTING,), claim=claim.token)
            return None
        except BaseException:
            # Anything else (a storage fault, an adapter's bug): give the claim back so that
            # a later pass can try again; if even that fails, the claim is found stale.
            with contextlib.suppress(Exception):
                self._release_claim(tx_id, claim.token, reason="error")
            raise

    def _build_sign(
        self,
        adapter: ChainAdapter,
        agent: AgentRow,
        meta: Mapping[str, Any],
        *,
        nonce: int | None,
    ) -> tuple[SignedTx, str]:
        """Build, check against the judged plan, simulate and sign (no database access).
        Returns the signed transaction and the simulation verdict."""
        req = parse_request(meta["request"])
        unsigned = adapter.build(req, agent.public_key, nonce=nonce)
        # The built transaction must be the judged (and approved) plan, at no higher a fee
        # than the one judged, and simulating it may show no outflow its effects do not
        # explain: then it is signed.
        plans.check_built(adapter, unsigned, meta)
        unsigned = plans.hold_fee(adapter, unsigned, meta)
        simulation = plans.check_simulation(
            adapter, unsigned, plans.stored_effects(meta), required=self.config.require_simulation
        )
        try:
            with self.keys.use_key(agent.id) as secret:
                signed: SignedTx = adapter.sign(unsigned, secret)
        except NotFoundError as exc:
            raise KeyMissingError(agent.id) from exc
        return signed, simulation

    def _record_signed(
        self, claim: _Claim, signed: SignedTx, simulation: str
    ) -> tuple[SignedTx, TransactionRow] | Literal["ended"]:
        """The second short unit of work: if the claim is still ours (compare-and-swap on
        its token), store the signed bytes and their hash (TX_SIGNED); they are sent only
        after :meth:`_clear_for_broadcast`. When the kill switch or a suspension came while
        they were being signed, the transaction is CANCELLED instead (``"ended"``) and the
        bytes are dropped: nothing is signed after a stop.

        Raises:
            _ClaimLost: the claim is gone (released as stale, the transaction ended).
            _DuplicateBytes: the bytes are another live transaction's (nothing written).
        """
        now = self.clock.now()
        outbox = _Outbox()
        with self._tx_write(claim.tx_id, claim.agent.id) as uow:
            row = uow.transactions.get(claim.tx_id)
            if row is None or not _holds(self._meta(row), row, claim.token):
                raise _ClaimLost(claim.tx_id)
            agent = uow.agents.get(row.agent_id)
            stop: tuple[str, str] | None = None
            if killswitch.is_active(uow):
                stop = ("KILL_SWITCH_ACTIVE", "the kill switch is active")
            elif agent is None or agent.status != "ACTIVE":
                stop = ("AGENT_NOT_ACTIVE", f"agent is {agent.status if agent else 'missing'}")
            if stop is not None:
                # Stopped while it was being signed: nothing is recorded after the stop.
                code, message = stop
                self._end(
                    uow,
                    row,
                    S.CANCELLED,
                    code=code,
                    message=message + "; nothing was signed or sent",
                    actor="system",
                    now=now,
                    outbox=outbox,
                )
                uow.commit()
                self._publish(outbox)
                return _ENDED
            self._take_hash(uow, row, signed)
            meta = self._meta(row)
            meta.pop("claim", None)
            meta["simulation"] = simulation
            meta["signed"] = _signed_json(signed)
            self._move(
                uow,
                row,
                S.EXECUTING,
                event=E.TX_SIGNED,
                actor="system",
                now=now,
                details={"tx_hash": signed.tx_hash, "nonce": signed.nonce},
                tx_hash=signed.tx_hash,
                metadata=meta,
            )
            uow.commit()
        return signed, row

    def _take_hash(self, uow: UnitOfWork, row: TransactionRow, signed: SignedTx) -> None:
        """Inside a write: make ``signed.tx_hash`` this row's. Identical bytes of a request
        that ended without landing are not a duplicate: the hash moves here (the old row
        keeps it in its metadata); the chain runs one signature at most once, so the two can
        never both pay.

        Raises:
            _DuplicateBytes: the bytes are another live transaction's.
        """
        other = uow.transactions.by_hash(signed.tx_hash)
        if other is None or other.id == row.id:
            return
        if other.status in (S.FAILED, S.CANCELLED, S.EXPIRED) and other.executed_at is None:
            released = self._meta(other)
            released["released_hash"] = other.tx_hash
            uow.transactions.update_fields(other.id, tx_hash=None, metadata=released)
            return
        # Byte-identical to another live request's transaction (same content, same recent
        # blockhash): the chain would drop one of them.
        raise _DuplicateBytes(other.id)

    def _checked_nonce(self, claim: _Claim) -> int | None:
        """The claim's nonce, once the node confirms it is still unused.

        The nonce was reserved in the claim from a pending count read before the lock; a
        transaction of the same agent that landed in between may have used it. The node is
        asked again now that no other wallet process can take the reserved nonce: when its
        pending count has passed it, a new nonce is reserved (a short write) and checked.
        """
        if claim.nonce is None or not isinstance(claim.adapter, SupportsNonces):
            return claim.nonce
        for _ in range(_NONCE_ATTEMPTS):
            pending = claim.adapter.pending_nonce(claim.agent.public_key)
            if pending <= claim.nonce:
                return claim.nonce
            with self._tx_write(claim.tx_id, claim.agent.id) as uow:
                row = uow.transactions.get(claim.tx_id)
                meta = self._meta(row) if row is not None else {}
                if row is None or not _holds(meta, row, claim.token):
                    raise _ClaimLost(claim.tx_id)
                nonce = self._reserve_nonce(uow, claim.agent, exclude=row.id, hint=pending)
                meta["claim"]["nonce"] = nonce
                uow.transactions.update_fields(row.id, metadata=meta)
                uow.commit()
            claim.nonce = nonce
            claim.meta["claim"] = meta["claim"]
        raise TransientChainError(
            "the account's nonce kept moving while a transaction was prepared",
            chain=claim.agent.chain,
        )

    def _other_claim(self, uow: UnitOfWork, agent_id: str, *, exclude: str) -> _Busy | None:
        """Another transaction of the agent claimed for signing (nothing recorded yet), if any.

        An agent signs one transaction at a time, as it did under the global write lock:
        its nonces are reserved in order and its simulations see no sibling half-way.
        Different agents sign in parallel."""
        for other in uow.transactions.active_for_agent(agent_id):
            if other.id == exclude or other.status != S.EXECUTING:
                continue
            meta = self._meta(other)
            if _is_claim(meta, other):
                return _Busy(other.id, stale=_claim_is_stale(meta["claim"]))
        return None

    def _reserve_nonce(self, uow: UnitOfWork, agent: AgentRow, *, exclude: str, hint: int) -> int:
        """The lowest nonce >= ``hint`` (the node's pending count) that no in-flight row
        holds, signed or claimed.

        Runs inside BEGIN IMMEDIATE, so two processes never pick the same nonce; filling gaps
        left by failed submissions keeps later transactions from waiting forever.
        """
        taken: set[int] = set()
        for other in uow.transactions.active_for_agent(agent.id):
            if other.id == exclude or other.status not in (S.EXECUTING, S.SUBMITTED):
                continue
            meta = self._meta(other)
            held = (meta.get("signed") or {}).get("nonce")
            if held is None:
                held = (meta.get("claim") or {}).get("nonce")
            if held is not None:
                taken.add(int(held))
        nonce = hint
        while nonce in taken:
            nonce += 1
        return nonce

    def _release_claim(self, tx_id: str, token: str | None, *, reason: str) -> bool:
        """Give a claim back: EXECUTING with no recorded bytes returns to PENDING / QUEUED
        (TX_RECOVERED). ``token``: only that claim; ``None``: only a stale one (its process
        is gone or its lease ran out, checked again under the lock). Returns whether it was
        released. Nothing was sent for it: bytes leave only after they are recorded."""
        now = self.clock.now()
        with self._tx_write(tx_id) as uow:
            row = uow.transactions.get(tx_id)
            if row is None:
                return False
            meta = self._meta(row)
            claim = meta.get("claim")
            if not isinstance(claim, dict) or row.status != S.EXECUTING or meta.get("signed"):
                return False
            if token is None and not _claim_is_stale(claim):
                return False
            if token is not None and claim.get("token") != token:
                return False
            back = S.QUEUED if claim.get("from") == S.QUEUED else S.PENDING
            meta.pop("claim")
            self._move(
                uow,
                row,
                back,
                event=E.TX_RECOVERED,
                actor="system",
                now=now,
                details={"action": "claim released", "reason": reason},
                metadata=meta,
            )
            uow.commit()
        return True

    def _recheck(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        agent: AgentRow,
        meta: Mapping[str, Any],
        now: int,
        *,
        full: bool = False,
    ) -> tuple[TxStatus, str, str] | _Escalation | None:
        """Before a transaction executes: kill switch, agent, and (for a QUEUED one, or when
        ``full``) the session and the whole policy decision again, tier included.

        Returns what ends the transaction ``(status, code, message)``, an
        :class:`_Escalation` when the decision now asks for a stricter tier than the one
        the transaction went through (it must take that tier's path first), or ``None``.
        """
        if killswitch.is_active(uow):
            return S.CANCELLED, "KILL_SWITCH_ACTIVE", "the kill switch is active"
        if agent.status != "ACTIVE":
            return S.CANCELLED, "AGENT_NOT_ACTIVE", f"agent is {agent.status}"
        if full or row.status == S.QUEUED:
            session = uow.sessions.get(row.session_id) if row.session_id else None
            if row.session_id is not None and (
                session is None or session.revoked_at is not None or session.expires_at <= now
            ):
                return S.CANCELLED, "SESSION_ENDED", "the session was revoked or expired"
            req = parse_request(meta["request"])
            stored = plans.stored_plan(meta)
            decision = self.gate.evaluate(
                uow,
                agent,
                req,
                now,
                exclude_tx_id=row.id,
                adapter=self.adapters.get((agent.chain, agent.network)),
                effects=stored.effects,
                calldata=stored.calldata,
                fee=stored.fee,
            )
            if not decision.allowed:
                reasons = _deny_reasons(decision)
                message = "; ".join(r.get("message", "") for r in reasons)
                return S.FAILED, "POLICY_DENIED", message or "denied by policy on re-check"
            tier = Tier(decision.tier)
            current = Tier(row.tier) if row.tier else Tier.INSTANT
            if tier.rank > current.rank and not (
                current == Tier.APPROVAL and self._approved(uow, row)
            ):
                return _Escalation(current, tier, decision)
        return None

    @staticmethod
    def _approved(uow: UnitOfWork, row: TransactionRow) -> bool:
        approval = uow.approvals.for_tx(row.id)
        return approval is not None and approval.approved_at is not None

    def _escalate(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        agent: AgentRow,
        meta: dict[str, Any],
        esc: _Escalation,
        now: int,
        outbox: _Outbox,
    ) -> None:
        """Move a transaction whose re-judged tier is stricter onto that tier's path.

        NOTIFY: it executes as NOTIFY (the caller goes on). DELAY: it is QUEUED again with
        a new cooldown. APPROVAL: it waits for the owner's signature (a new approval
        request). The tier change is audited (TX_QUEUED with ``escalated_from``).
        """
        self._escalate_unit(uow, row, agent, meta, esc, now, outbox)
        # The tier (and the DELAY release time or the approving owner) changed here, by the
        # engine, after _verify_stored checked the row: seal the new content.
        self._seal_tx(uow, row.id)

    def _seal_tx(self, uow: UnitOfWork, tx_id: str) -> None:
        if uow.integrity is None:
            return
        from waiaas.integrity import tx_mac

        current = uow.transactions.get(tx_id)
        if current is not None:
            uow.transactions.update_fields(tx_id, integrity=tx_mac(uow.integrity, current))

    def _escalate_unit(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        agent: AgentRow,
        meta: dict[str, Any],
        esc: _Escalation,
        now: int,
        outbox: _Outbox,
    ) -> None:
        decision = esc.decision
        meta["rejudged"] = {
            "at": now,
            "from": esc.current.value,
            "to": esc.tier.value,
            "decision": decision.model_dump(mode="json", exclude_defaults=True),
        }
        details: dict[str, Any] = {"tier": esc.tier.value, "escalated_from": esc.current.value}
        if esc.tier == Tier.DELAY:
            delay = decision.delay_seconds
            meta["execute_after"] = now + (
                delay if delay is not None else self.config.delay_seconds
            )
            details["execute_after"] = meta["execute_after"]
        elif esc.tier == Tier.APPROVAL:
            timeout = decision.approval_timeout or self.config.approval_timeout
            approval = ApprovalRow(
                id=new_id(),
                tx_id=row.id,
                required_by=now + timeout,
                expires_at=now + timeout,
                created_at=now,
            )
            uow.approvals.add(approval)
            meta["approval"] = self._approval_meta(uow, agent, approval, meta)
            details["approval_expires_at"] = approval.expires_at
        if row.status == S.PENDING and esc.tier in (Tier.DELAY, Tier.APPROVAL):
            self._move(
                uow,
                row,
                S.QUEUED,
                event=E.TX_QUEUED,
                actor="system",
                now=now,
                details=details,
                queued_at=now,
                tier=esc.tier.value,
                metadata=meta,
            )
        else:
            if not uow.transactions.cas_status(
                row.id, row.status, row.status, tier=esc.tier.value, metadata=meta
            ):
                raise InvalidTransitionError("transaction", row.id, row.status, row.status)
            row.tier = esc.tier.value
            row.metadata_json = json.dumps(meta, separators=(",", ":"))
            if esc.tier == Tier.NOTIFY:  # executes now; the owner is told
                outbox.add(E.TX_REQUESTED, tx_id=row.id, agent_id=row.agent_id, tier="NOTIFY")
                return
            uow.audit.append(
                E.TX_QUEUED,
                actor="system",
                now=now,
                agent_id=row.agent_id,
                session_id=row.session_id,
                tx_id=row.id,
                details={"from": row.status, "to": row.status, **details},
            )
        outbox.add(E.TX_QUEUED, tx_id=row.id, agent_id=row.agent_id, **details)

    # ================================================================== stage 3

    def _submit_stage(
        self,
        tx_id: str,
        signed: SignedTx,
        row: TransactionRow | None = None,
        *,
        recovering: bool = False,
        fresh: bool = False,
        cleared: bool = False,
    ) -> TransactionRow:
        """Clear ``signed`` for broadcast, send it (retrying, rebuilding once if stale),
        confirm.

        Before every broadcast one write transaction checks the kill switch and the agent's
        status and moves the row EXECUTING -> SUBMITTED (:meth:`_clear_for_broadcast`):
        bytes are sent only after that commit, so a kill switch that committed first stops
        them, and one that commits later finds them already on their way.

        ``row`` is the transaction as the caller last read it (only its agent, session and
        chain are used); it is read here when not given. ``recovering``: the bytes may have
        been sent before (a crash, a restart), so a stop holds them instead of cancelling.
        ``fresh`` says these bytes were just signed and never sent: a stale refusal of their
        first sending proves they did not land. Bytes that may have been sent before (a retry
        after a timeout, a resend after a crash) are only replaced when the chain proves
        their absence (DROPPED). ``cleared``: the caller's commit already recorded the
        bytes and moved the row to SUBMITTED with these checks (admission of presigned
        bytes), so the first sending needs no clearing unit of work.
        """
        if row is None:
            row = self.get_row(tx_id)
        network = str(self._meta(row).get("network") or "")
        adapter = self.adapters.get((row.chain, network))
        if adapter is None:
            with self.db.read() as uow:
                agent = uow.agents.get(row.agent_id)
            assert agent is not None
            adapter = self.adapter_for(agent.chain, agent.network)
        attempt = 0
        recorded = False
        while True:
            if cleared:
                cleared = False  # once: a retry is cleared again, as bytes that may be out
                recorded = True
            elif not self._clear_for_broadcast(tx_id, recovering=recovering or recorded):
                return self.get_row(tx_id)
            if not recorded:
                self.hooks.stage("recorded", tx_id)
                recorded = True
            try:
                adapter.submit(signed)
                break
            except ChainError as exc:
                if exc.kind == ChainErrorKind.TRANSIENT and attempt < self.config.max_retries:
                    fresh = False  # the node may have received the bytes before failing
                    self._audit_retry(row, exc, attempt)
                    self._sleep(self.config.retry_base_delay * (2**attempt))
                    attempt += 1
                    continue
                if exc.kind == ChainErrorKind.STALE:
                    if not fresh and not self._proven_absent(adapter, tx_id, signed):
                        return self.get_row(tx_id)
                    rebuilt = self._rebuild_once(tx_id, exc)
                    if rebuilt is not None:
                        signed = rebuilt
                        recorded = False
                        fresh = True
                        continue
                    return self.get_row(tx_id)
                if not fresh:
                    # A refusal of bytes sent before says nothing about the earlier sending.
                    self._apply_or_park(adapter, tx_id, signed)
                    return self.get_row(tx_id)
                self._fail(tx_id, exc, expected=(S.EXECUTING, S.SUBMITTED))
                return self.get_row(tx_id)
        self.hooks.stage("submitted", tx_id)
        if self.config.confirm_timeout <= 0:
            return self.get_row(tx_id)
        status = adapter.wait_for_confirmation(signed, timeout=self.config.confirm_timeout)
        final = self.apply_chain_status(tx_id, status)
        return final if final is not None else self.get_row(tx_id)

    def _clear_for_broadcast(self, tx_id: str, *, recovering: bool) -> bool:
        """The last step before bytes leave: in one write transaction, check the kill switch
        and the agent's status and move EXECUTING -> SUBMITTED (TX_SUBMITTED).

        Returns whether the bytes may be sent now. When something stops them: a fresh
        EXECUTING row (nothing was sent) is CANCELLED; a row whose bytes may already have
        been sent (``recovering``, or already SUBMITTED) is held as it is, with one
        TX_RECOVERED audit row, until ``recover()`` and a full re-check clear it.
        """
        now = self.clock.now()
        outbox = _Outbox()
        with self._tx_write(tx_id) as uow:
            row = uow.transactions.get(tx_id)
            if row is None or row.status not in (S.EXECUTING, S.SUBMITTED):
                return False
            agent = uow.agents.get(row.agent_id)
            stop: tuple[str, str] | None = None
            if killswitch.is_active(uow):
                stop = ("KILL_SWITCH_ACTIVE", "the kill switch is active")
            elif agent is None or agent.status != "ACTIVE":
                status = agent.status if agent is not None else "missing"
                stop = ("AGENT_NOT_ACTIVE", f"agent is {status}")
            if stop is not None:
                code, message = stop
                meta = self._meta(row)
                if row.status == S.EXECUTING and not recovering:
                    self._end(
                        uow,
                        row,
                        S.CANCELLED,
                        code=code,
                        message=message + "; the signed bytes were never sent",
                        actor="system",
                        now=now,
                        outbox=outbox,
                    )
                elif meta.get("held") != code:
                    meta["held"] = code
                    uow.transactions.update_fields(tx_id, metadata=meta)
                    uow.audit.append(
                        E.TX_RECOVERED,
                        actor="system",
                        now=now,
                        agent_id=row.agent_id,
                        tx_id=row.id,
                        details={"status": row.status, "action": "held", "reason": code},
                    )
                uow.commit()
                self._publish(outbox)
                return False
            if row.status == S.EXECUTING:
                self._move(
                    uow,
                    row,
                    S.SUBMITTED,
                    event=E.TX_SUBMITTED,
                    actor="system",
                    now=now,
                )
            uow.commit()
        return True

    def _audit_retry(self, row: TransactionRow, exc: ChainError, attempt: int) -> None:
        with self.db.write(agent_id=row.agent_id) as uow:
            uow.audit.append(
                E.TX_RETRY,
                actor="system",
                now=self.clock.now(),
                agent_id=row.agent_id,
                tx_id=row.id,
                details={"attempt": attempt + 1, "error": exc.code, "message": exc.message},
            )
            uow.commit()

    def _proven_absent(self, adapter: ChainAdapter, tx_id: str, signed: SignedTx) -> bool:
        """Whether the chain proves ``signed`` never landed (DROPPED). Any other answer is
        recorded (CONFIRMED / FAILED applied; UNKNOWN reported for the operator)."""
        try:
            status = adapter.get_status(signed)
        except ChainError as exc:
            log.warning("status of %s unavailable (will retry): %s", tx_id, exc)
            return False
        if status.state == ChainTxState.DROPPED:
            return True
        if status.state == ChainTxState.UNKNOWN:
            self._mark_unresolved(tx_id, status)
        elif status.state in (ChainTxState.CONFIRMED, ChainTxState.FAILED):
            self.apply_chain_status(tx_id, status)
        return False

    def _apply_or_park(self, adapter: ChainAdapter, tx_id: str, signed: SignedTx) -> None:
        try:
            status = adapter.get_status(signed)
        except ChainError as exc:
            log.warning("status of %s unavailable (will retry): %s", tx_id, exc)
            return
        self.apply_chain_status(tx_id, status)

    def _mark_unresolved(self, tx_id: str, status: ChainTxStatus) -> None:
        """The chain cannot say whether ``tx_id`` landed: keep it SUBMITTED, never replace
        it, and report it once (TX_UNRESOLVED, critical, and a notification) for the
        operator to settle with :meth:`resolve`."""
        now = self.clock.now()
        outbox = _Outbox()
        reason = status.error.message if status.error is not None else "no proof of absence"
        with self._tx_write(tx_id) as uow:
            row = uow.transactions.get(tx_id)
            if row is None or row.status not in (S.EXECUTING, S.SUBMITTED):
                return
            meta = self._meta(row)
            if meta.get("unresolved"):
                return
            meta["unresolved"] = {"since": now, "reason": reason}
            details = {"tx_hash": row.tx_hash, "reason": reason}
            if row.status == S.EXECUTING:
                # The bytes may have been sent: from here on it is SUBMITTED.
                self._move(
                    uow,
                    row,
                    S.SUBMITTED,
                    event=E.TX_SUBMITTED,
                    actor="system",
                    now=now,
                    details={"recovered": True},
                    metadata=meta,
                )
            else:
                uow.transactions.update_fields(
                    tx_id, metadata_json=json.dumps(meta, separators=(",", ":"))
                )
            uow.audit.append(
                E.TX_UNRESOLVED,
                actor="system",
                now=now,
                agent_id=row.agent_id,
                tx_id=tx_id,
                details=details,
            )
            outbox.add(
                E.TX_UNRESOLVED,
                tx_id=tx_id,
                agent_id=row.agent_id,
                reason=reason,
                severity=Severity.CRITICAL,
            )
            uow.commit()
        self._publish(outbox)

    def _rebuild_once(self, tx_id: str, exc: ChainError) -> SignedTx | None:
        """A stale transaction (blockhash expired, nonce used) is rebuilt and signed once.

        Only bytes that can no longer land are replaced, so nothing is ever sent twice. The
        new bytes are built and signed with no database transaction open, then recorded in
        one short write that checks the row still carries the old bytes (compare-and-swap on
        the hash): of two workers rebuilding at once, one records, the other's bytes are
        dropped unsent.
        """
        row = self.get_row(tx_id)
        if row.status not in (S.EXECUTING, S.SUBMITTED):
            return None
        meta = self._meta(row)
        old_hash = row.tx_hash
        if meta.get("rebuilt"):
            self._fail(tx_id, exc, expected=(S.EXECUTING, S.SUBMITTED), tx_hash=old_hash)
            return None
        with self.db.read() as uow:
            agent = uow.agents.get(row.agent_id)
        assert agent is not None
        adapter = self.adapter_for(agent.chain, agent.network)
        previous = meta.get("signed", {})
        nonce = previous.get("nonce")
        try:
            # EVM: the replacement reuses the nonce, so at most one of the two can land.
            signed, simulation = self._build_sign(
                adapter, agent, meta, nonce=None if nonce is None else int(nonce)
            )
        except (ChainError, InvalidInputError, StateError) as build_exc:
            self._fail(tx_id, build_exc, expected=(S.EXECUTING, S.SUBMITTED), tx_hash=old_hash)
            return None
        now = self.clock.now()
        with self._tx_write(tx_id) as uow:
            current = uow.transactions.get(tx_id)
            if current is None or current.status not in (S.EXECUTING, S.SUBMITTED):
                return None
            meta = self._meta(current)
            if current.tx_hash != old_hash or meta.get("rebuilt"):
                return None  # another worker rebuilt it first: these bytes are dropped
            try:
                self._take_hash(uow, current, signed)
            except _DuplicateBytes:
                duplicate = True
            else:
                duplicate = False
                meta["rebuilt"] = True
                meta["replaced"] = previous
                meta["simulation"] = simulation
                meta["signed"] = _signed_json(signed)
                self._move(
                    uow,
                    current,
                    S.EXECUTING,
                    event=E.TX_RETRY,
                    actor="system",
                    now=now,
                    details={
                        "rebuilt": True,
                        "reason": exc.code,
                        "old_hash": previous.get("hash"),
                        "tx_hash": signed.tx_hash,
                    },
                    tx_hash=signed.tx_hash,
                    metadata=meta,
                )
                uow.commit()
        if duplicate:
            self._fail(
                tx_id,
                TransientChainError(
                    "the rebuilt transaction is byte-identical to another one in flight",
                    chain=agent.chain,
                ),
                expected=(S.EXECUTING, S.SUBMITTED),
                tx_hash=old_hash,
            )
            return None
        return signed

    def apply_chain_status(self, tx_id: str, status: ChainTxStatus) -> TransactionRow | None:
        """Record what the chain says about a submitted transaction.

        Returns the row as this call committed it (CONFIRMED / FAILED), else ``None``
        (nothing final to record, or another writer got there first)."""
        now = self.clock.now()
        outbox = _Outbox()
        if status.state in (ChainTxState.PENDING, ChainTxState.NOT_FOUND):
            return None
        if status.state == ChainTxState.UNKNOWN:
            self._mark_unresolved(tx_id, status)
            return None
        if status.state == ChainTxState.DROPPED:
            from waiaas.errors import StaleTransactionError

            signed = self._rebuild_once(
                tx_id, StaleTransactionError("the transaction can no longer land")
            )
            if signed is not None:
                return self._submit_stage(tx_id, signed, fresh=True)
            return None
        with self._tx_write(tx_id) as uow:
            row = uow.transactions.get(tx_id)
            if row is None or row.status not in (S.SUBMITTED, S.EXECUTING):
                return None
            meta = self._meta(row)
            if status.fee is not None:
                meta["fee"] = str(status.fee)
            if status.state == ChainTxState.CONFIRMED:
                self._move(
                    uow,
                    row,
                    S.CONFIRMED,
                    event=E.TX_CONFIRMED,
                    actor="system",
                    now=now,
                    details={"fee": meta.get("fee"), "block": status.block},
                    executed_at=now,
                    metadata=meta,
                )
                outbox.add(E.TX_CONFIRMED, tx_id=tx_id, agent_id=row.agent_id)
            else:
                err = status.error
                code = err.code if err is not None else "CHAIN_FAILED"
                message = err.message if err is not None else "the transaction failed on chain"
                self._end(
                    uow,
                    row,
                    S.FAILED,
                    code=code,
                    message=message,
                    actor="system",
                    now=now,
                    outbox=outbox,
                    details={"error": code, "message": message},
                    executed_at=now,
                    meta_updates={"fee": meta["fee"]} if "fee" in meta else {},
                )
            final = uow.transactions.get(tx_id)  # the session's row, as moved above
            uow.commit()
        self._publish(outbox)
        return final

    # ================================================================== failure paths

    def _fail(
        self,
        tx_id: str,
        exc: WaiaasError,
        *,
        expected: Sequence[TxStatus],
        claim: str | None = None,
        tx_hash: str | None = None,
    ) -> None:
        """Fail ``tx_id`` with ``exc`` if it is in one of the ``expected`` statuses (and, with
        ``claim``, still held by that claim with no recorded bytes; with ``tx_hash``, still
        carrying those bytes)."""
        now = self.clock.now()
        outbox = _Outbox()
        with self._tx_write(tx_id) as uow:
            row = uow.transactions.get(tx_id)
            if row is None or row.status not in expected:
                return
            if claim is not None and not _holds(self._meta(row), row, claim):
                return
            if tx_hash is not None and row.tx_hash != tx_hash:
                return
            self._end(
                uow,
                row,
                S.FAILED,
                code=exc.code,
                message=exc.message,
                actor="system",
                now=now,
                outbox=outbox,
                details={
                    "error": exc.code,
                    "message": exc.message,
                    "kind": str(getattr(exc, "kind", "")),
                },
            )
            uow.commit()
        self._publish(outbox)

    def _release(self, uow: UnitOfWork, row: TransactionRow, meta: Mapping[str, Any]) -> None:
        """FAILED / CANCELLED / EXPIRED give back the session's reserved totals.

        Policy budgets need nothing: they only count in-flight and confirmed rows.
        """
        if row.session_id is None:
            return
        spent = (
            stored_json(row.spend, table="transactions", column="spend")
            if row.spend
            else meta.get("spend") or {}
        )
        for asset, amount in spent.items():
            self.sessions.release(uow, row.session_id, asset, int(amount))

    def _maybe_auto_stop(
        self, uow: UnitOfWork, agent: AgentRow, decision: Any, now: int, outbox: _Outbox
    ) -> None:
        reason = getattr(decision, "auto_stop", None)
        if reason:
            self._suspend_for_auto_stop(
                uow, agent, str(getattr(reason, "message", reason)), now, outbox
            )

    def _check_auto_stop_after_failure(
        self, uow: UnitOfWork, agent: AgentRow, now: int, outbox: _Outbox
    ) -> None:
        try:
            reason = self.gate.auto_stop_reason(uow, agent, now)
        except TamperDetectedError as exc:
            # The counters (a policy, the resume mark) cannot be trusted: the failure is still
            # recorded, the tampering too, and the agent stops (fail closed).
            uow.audit.append(
                E.TAMPER_DETECTED,
                actor="system",
                now=now,
                agent_id=agent.id,
                details={
                    "entity": exc.entity,
                    "entity_id": exc.entity_id,
                    "problem": exc.problem,
                    "message": exc.message,
                },
            )
            outbox.add(
                E.TAMPER_DETECTED, agent_id=agent.id, severity="critical", reason=exc.message
            )
            reason = f"tamper detected: {exc.message}"
        if reason:
            self._suspend_for_auto_stop(uow, agent, reason, now, outbox)

    def _suspend_for_auto_stop(
        self, uow: UnitOfWork, agent: AgentRow, reason: str, now: int, outbox: _Outbox
    ) -> None:
        reason = reason.removeprefix("auto-stop:").strip()
        current = uow.agents.get(agent.id)  # inside the write lock: the move below cannot race
        if current is None or not agent_states.can_move(current.status, "SUSPENDED", "system"):
            return
        uow.audit.append(
            E.AUTO_STOP_TRIGGERED,
            actor="system",
            now=now,
            agent_id=agent.id,
            details={"reason": reason},
        )
        agent_states.require_move(
            uow,
            agent.id,
            [current.status],
            "SUSPENDED",
            actor="system",
            now=now,
            details={"reason": f"auto-stop: {reason}"},
            suspended_at=now,
            suspension_reason=f"auto-stop: {reason}",
        )
        self.contain_suspended(
            uow, agent.id, actor="system", reason=f"auto-stop: {reason}", now=now, outbox=outbox
        )
        outbox.add(
            E.AUTO_STOP_TRIGGERED, agent_id=agent.id, reason=reason, severity=Severity.CRITICAL
        )
        outbox.add(E.AGENT_SUSPENDED, agent_id=agent.id, reason=f"auto-stop: {reason}")

    def contain_suspended(
        self,
        uow: UnitOfWork,
        agent_id: str,
        *,
        actor: str,
        reason: str,
        now: int,
        outbox: _Outbox | None = None,
    ) -> tuple[dict[str, int], _Outbox]:
        """What suspending an agent does besides its status (the caller changed it, in
        ``uow``): revoke every live session (a resumption never revives one: the owner issues
        new ones) and cancel its QUEUED (DELAY and APPROVAL) transactions, budget released,
        each with its audit row. Returns the counts and the events to publish after commit.
        """
        outbox = outbox if outbox is not None else _Outbox()
        revoked = self.sessions.revoke_all_for_agent(uow, agent_id, now, reason, actor=actor)
        cancelled = 0
        for row in uow.transactions.active_for_agent(agent_id):
            if row.status != S.QUEUED:
                continue  # PENDING/EXECUTING ones re-check the agent's status before signing
            self._end(
                uow,
                row,
                S.CANCELLED,
                code="AGENT_SUSPENDED",
                message=f"the agent was suspended ({reason})",
                actor=actor,
                now=now,
                outbox=outbox,
                details={"reason": "AGENT_SUSPENDED"},
            )
            cancelled += 1
        return {"sessions_revoked": revoked, "transactions_cancelled": cancelled}, outbox

    def reset_approvals(
        self, uow: UnitOfWork, agent_id: str, owner: str | None, *, now: int
    ) -> tuple[list[str], _Outbox]:
        """After the owner changed: every pending approval of the agent is invalidated.

        With a new owner, each QUEUED APPROVAL transaction gets a fresh approval (new id,
        hence a new message and nonce, same expiry) addressed to the new owner: signatures
        over the old message, by the old owner, are refused. With no owner, they are
        cancelled (nobody could approve them). Returns the transaction ids concerned.
        """
        outbox = _Outbox()
        touched: list[str] = []
        for row in uow.transactions.active_for_agent(agent_id):
            if row.status != S.QUEUED or row.tier != Tier.APPROVAL:
                continue
            old = uow.approvals.for_tx(row.id)
            if old is None or old.approved_at is not None or old.rejected_at is not None:
                continue
            touched.append(row.id)
            if owner is None:
                self._end(
                    uow,
                    row,
                    S.CANCELLED,
                    code="OWNER_REMOVED",
                    message="the agent's owner was removed; nobody can approve this",
                    actor="owner",
                    now=now,
                    outbox=outbox,
                )
                continue
            uow.session.delete(old)
            uow.session.flush()
            fresh = ApprovalRow(
                id=new_id(),
                tx_id=row.id,
                required_by=old.required_by,
                expires_at=old.expires_at,
                created_at=now,
            )
            uow.approvals.add(fresh)
            meta = self._meta(row)
            previous = (meta.get("approval") or {}).get("owner")
            # Keep what the approval request fixed (SIWE domain / URI, chain id, the text of
            # every effect); only the request id, the owner and the expiry are new.
            kept = {
                k: v for k, v in (meta.get("approval") or {}).items() if k not in ("plan_digest",)
            }
            meta["approval"] = {
                **kept,
                "id": fresh.id,
                "owner": owner,
                "expires_at": fresh.expires_at,
            }
            row.metadata_json = json.dumps(meta, separators=(",", ":"))
            fields: dict[str, Any] = {"metadata": meta}
            if uow.integrity is not None:
                from waiaas.integrity import tx_mac

                fields["integrity"] = tx_mac(uow.integrity, row)
            uow.transactions.update_fields(row.id, **fields)
            uow.audit.append(
                E.APPROVAL_INVALIDATED,
                actor="owner",
                now=now,
                agent_id=agent_id,
                session_id=row.session_id,
                tx_id=row.id,
                details={
                    "old_approval_id": old.id,
                    "old_owner": previous,
                    "approval_id": fresh.id,
                    "owner": owner,
                },
            )
            outbox.add(
                E.APPROVAL_INVALIDATED, tx_id=row.id, agent_id=agent_id, reason="owner changed"
            )
        return touched, outbox

    def publish_events(self, outbox: _Outbox) -> None:
        """Send events gathered in a committed unit of work (see :meth:`contain_suspended`)."""
        self._publish(outbox)

    # ================================================================== owner & operator

    def resolve(self, tx_id: str, *, landed: bool, evidence: str) -> TransactionRow:
        """Settle an unresolved transaction (TX_UNRESOLVED) with the operator's evidence.

        The chain is asked first: when it now knows the transaction, its answer is recorded
        and the operator's claim is refused. Otherwise ``landed=True`` records it CONFIRMED,
        ``landed=False`` records it FAILED (``NOT_LANDED``, its budget released; the agent
        may send the same request again). Either way a TX_RESOLVED row keeps the evidence.

        Raises:
            NotFoundError: no such transaction.
            StateError: it is not an unresolved SUBMITTED transaction, or the chain knows it.
        """
        row = self.get_row(tx_id)
        meta = self._meta(row)
        if row.status not in (S.EXECUTING, S.SUBMITTED) or not meta.get("unresolved"):
            raise StateError(
                f"transaction {tx_id} is {row.status}, not an unresolved submitted transaction",
                tx_id=tx_id,
            )
        stored = meta.get("signed")
        adapter = self.adapters.get((row.chain, str(meta.get("network") or "")))
        if stored and adapter is not None:
            try:
                status = adapter.get_status(_signed_from_json(row.chain, stored))
            except ChainError as exc:
                log.warning("status of %s unavailable; trusting the operator: %s", tx_id, exc)
            else:
                if status.state in (ChainTxState.CONFIRMED, ChainTxState.FAILED):
                    self.apply_chain_status(tx_id, status)
                    raise StateError(
                        f"the chain knows transaction {tx_id}: it is {status.state.value}; "
                        "recorded as the chain says",
                        tx_id=tx_id,
                    )
                if status.state == ChainTxState.PENDING:
                    raise StateError(
                        f"transaction {tx_id} is pending on chain; wait for it", tx_id=tx_id
                    )
        now = self.clock.now()
        outbox = _Outbox()
        with self._tx_write(tx_id, row.agent_id) as uow:
            current = uow.transactions.get(tx_id)
            if current is None or current.status != row.status:
                raise InvalidTransitionError(
                    "transaction", tx_id, current.status if current else "missing", "resolved"
                )
            uow.audit.append(
                E.TX_RESOLVED,
                actor="operator",
                now=now,
                agent_id=row.agent_id,
                tx_id=tx_id,
                details={"landed": landed, "evidence": evidence, "tx_hash": row.tx_hash},
            )
            if landed:
                meta = self._meta(current)
                meta["resolved"] = {"landed": True, "evidence": evidence, "at": now}
                self._move(
                    uow,
                    current,
                    S.CONFIRMED,
                    event=E.TX_CONFIRMED,
                    actor="operator",
                    now=now,
                    details={"resolved": True},
                    executed_at=now,
                    metadata=meta,
                )
                outbox.add(E.TX_CONFIRMED, tx_id=tx_id, agent_id=row.agent_id)
            else:
                self._end(
                    uow,
                    current,
                    S.FAILED,
                    code="NOT_LANDED",
                    message="the operator established that it never landed",
                    actor="operator",
                    now=now,
                    outbox=outbox,
                    meta_updates={"resolved": {"landed": False, "evidence": evidence, "at": now}},
                )
            uow.commit()
        self._publish(outbox)
        return self.get_row(tx_id)

    def cancel(self, tx_id: str, *, actor: str, token: str | None = None) -> TransactionRow:
        """Cancel a PENDING or QUEUED transaction (DELAY cooldown, APPROVAL wait).

        With ``token``, the agent cancels its own transaction through its session.

        Raises:
            NotFoundError, AuthError, StateError (already executing or final).
        """
        now = self.clock.now()
        outbox = _Outbox()
        try:
            with self._tx_write(tx_id) as uow:
                row = uow.transactions.get(tx_id)
                if row is None:
                    raise NotFoundError("transaction", tx_id)
                if token is not None:
                    verified = self.sessions.verify_in(uow, token, now)
                    if verified.agent_id != row.agent_id:
                        raise AuthError(
                            "the session belongs to another agent", session_id=verified.session_id
                        )
                    actor = self._actor(row.agent_id)
                if row.status not in (S.PENDING, S.QUEUED):
                    raise StateError(
                        f"transaction {tx_id} is {row.status}; only PENDING or QUEUED "
                        "transactions can be cancelled",
                        tx_id=tx_id,
                        status=row.status,
                    )
                self._end(
                    uow,
                    row,
                    S.CANCELLED,
                    code="CANCELLED",
                    message=f"cancelled by {actor}",
                    actor=actor,
                    now=now,
                    outbox=outbox,
                    details={"by": actor},
                )
                uow.commit()
        except AuthError as exc:
            self._record_auth_failure(exc, now)
            raise
        self._publish(outbox)
        return self.get_row(tx_id)

    def approval_request(self, tx_id: str) -> approvals.ApprovalRequest:
        """The facts the owner's approval message names, for a QUEUED APPROVAL transaction."""
        with self.db.read() as uow:
            row, approval, agent = self._approval_parts(uow, tx_id)
        return self._approval_request(row, approval, agent)

    def _approval_parts(
        self, uow: UnitOfWork, tx_id: str
    ) -> tuple[TransactionRow, ApprovalRow, AgentRow]:
        row = uow.transactions.get(tx_id)
        if row is None:
            raise NotFoundError("transaction", tx_id)
        approval = uow.approvals.for_tx(tx_id)
        if approval is None or row.tier != Tier.APPROVAL:
            raise ApprovalError(
                f"transaction {tx_id} is not waiting for an owner approval",
                tx_id=tx_id,
                reason="not_awaiting_approval",
            )
        agent = uow.agents.get(row.agent_id)
        assert agent is not None
        return row, approval, agent

    def _approval_request(
        self, row: TransactionRow, approval: ApprovalRow, agent: AgentRow
    ) -> approvals.ApprovalRequest:
        meta = self._meta(row)
        stored = meta.get("approval") or {}
        owner = stored.get("owner") or agent.owner_address
        if owner is None:
            raise ApprovalError("the agent has no owner", tx_id=row.id, reason="no_owner")
        # The chain id is stored at queue time, so an operator process without the chain
        # adapter (the CLI) can still print, check and record the owner's decision.
        chain_id = stored.get("chain_id") if "chain_id" in stored else None
        if "chain_id" not in stored:
            chain_id = _chain_id(self.adapter_for(agent.chain, agent.network))
        # The effects' text is fixed at queue time too: the message must read the same in
        # every process (decimals and symbols could change, an adapter could be missing).
        lines = tuple(str(x) for x in stored.get("effects_text") or ())
        amount_text = stored.get("amount_text")
        fee_text = stored.get("fee_text")
        return approvals.ApprovalRequest(
            tx_id=row.id,
            approval_id=approval.id,
            agent_id=agent.id,
            agent_name=agent.name,
            chain=agent.chain,
            network=agent.network,
            tx_type=row.type,
            to=row.to_address,
            amount=row.amount,
            asset=str(meta.get("asset", "native")),
            tier=str(row.tier),
            owner_address=owner,
            issued_at=approval.created_at,
            expires_at=approval.expires_at,
            chain_id=chain_id if isinstance(chain_id, int) else None,
            domain=str(stored.get("domain") or approvals.DOMAIN),
            uri=str(stored.get("uri") or approvals.URI),
            effects=lines,
            plan_digest=meta.get("plan_digest"),
            amount_text=amount_text if isinstance(amount_text, str) else None,
            fee_text=fee_text if isinstance(fee_text, str) else None,
        )

    def _approval_meta(
        self, uow: UnitOfWork, agent: AgentRow, approval: ApprovalRow, meta: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What an approval request fixes when it is created: owner, expiry, SIWE domain and
        URI, chain id, the human text of every effect of the plan, of the amount and of the
        network fee (so the message the owner signs reads the same in every process)."""
        from waiaas.chains.families import native_asset_for
        from waiaas.plan import describe_effects
        from waiaas.plan.describe import _symbol, format_units
        from waiaas.web.display import describe_fee

        adapter = self.adapter_for(agent.chain, agent.network)
        # the native coin as the adapter names it (a third-party chain's too)
        coin = native_asset_for(agent.chain, [adapter])
        native = (coin.decimals, coin.symbol) if coin is not None else None
        effects = plans.stored_effects(meta)
        out: dict[str, Any] = {
            "id": approval.id,
            "owner": agent.owner_address,
            "expires_at": approval.expires_at,
            "domain": self.config.siwe_domain(),
            "uri": self.config.siwe_uri(),
            "chain_id": _chain_id(adapter),
        }
        request = meta.get("request") or {}
        asset = str(meta.get("asset", "native"))
        tokens = {t for e in effects or () if isinstance(t := getattr(e, "token", None), str)}
        if asset != "native":
            tokens.add(asset)
        info = self._token_info(uow, agent, adapter, tokens)
        if effects is not None:
            out["effects_text"] = describe_effects(
                effects, chain=agent.chain, token_info=info, native=native
            )
        amount = request.get("amount") if isinstance(request, Mapping) else None
        if isinstance(amount, str) and amount.isdigit():
            token = info(asset) if asset != "native" else None
            if asset == "native" and native is not None:
                out["amount_text"] = f"{format_units(int(amount), native[0])} {native[1]}"
            elif token is not None:
                out["amount_text"] = (
                    f"{format_units(int(amount), token[0])} {_symbol(token[1])} (token {asset})"
                )
        fee = describe_fee(agent.chain, meta.get("network_fee"), meta.get("effects"))
        if fee is not None:
            out["fee_text"] = fee.text.removeprefix("network fee: ")
        return out

    def _token_info(
        self, uow: UnitOfWork, agent: AgentRow, adapter: ChainAdapter, tokens: set[str]
    ) -> Callable[[str], tuple[int, str] | None]:
        """Decimals and symbol of ``tokens`` for people: decimals from the chain (else
        ALLOWED_TOKENS), symbols from ALLOWED_TOKENS entries (else ``tokens``)."""
        from waiaas.policy.model import normalize_asset_key
        from waiaas.policy.rules import AllowedTokensRules

        symbols: dict[str, str] = {}
        specs = self.gate.policies(uow, agent.id)
        for spec in specs:
            if isinstance(spec.rules, AllowedTokensRules):
                for entry in spec.rules.tokens:
                    if entry.symbol:
                        symbols.setdefault(normalize_asset_key(entry.address), entry.symbol)
        decimals = self.gate.token_decimals(approvals_context(agent), tokens, specs, adapter)

        def info(token: str) -> tuple[int, str] | None:
            key = normalize_asset_key(token)
            places = decimals.get(key)
            if places is None:
                return None
            return places, symbols.get(key, "tokens")

        return info

    def decide(self, tx_id: str, signature: str, *, approve: bool) -> TransactionRow:
        """Apply the owner's signed approval (then execute) or rejection (then cancel).

        Raises:
            ApprovalError: wrong signer, another transaction's or action's signature, replay,
                expired, or the transaction is not waiting for approval.
        """
        now = self.clock.now()
        action: approvals.Action = "approve" if approve else "reject"
        outbox = _Outbox()
        try:
            with self.db.read() as uow:
                row, approval, agent = self._approval_parts(uow, tx_id)
                if row.status == S.QUEUED:
                    self._verify_stored(uow, row, agent, approval)
        except TamperDetectedError as exc:
            self._refuse_tampered(exc, agent_id=None, tx_id=tx_id, now=now)
            raise
        refusal: ApprovalError | None = None
        with self._tx_write(tx_id) as uow:
            row, approval, agent = self._approval_parts(uow, tx_id)
            req = self._approval_request(row, approval, agent)
            if approval.approved_at is not None or approval.rejected_at is not None:
                refusal = ApprovalError(
                    "this approval was already decided; a signature counts once",
                    tx_id=tx_id,
                    reason="already_decided",
                )
            elif row.status != S.QUEUED:
                refusal = ApprovalError(
                    f"transaction is {row.status}", tx_id=tx_id, reason="not_queued"
                )
            elif now >= approval.expires_at:  # SIWE: not valid at the expiration time
                self._expire(uow, row, approval, now, outbox)
                refusal = ApprovalError(
                    "the approval window has expired", tx_id=tx_id, reason="expired"
                )
            else:
                try:
                    approvals.verify_signature(
                        approvals.build_message(req, action),
                        signature,
                        req.owner_address,
                        tx_id=tx_id,
                    )
                    if approve and req.plan_digest is not None:
                        # The approval binds to the digest the owner read; execution
                        # refuses any other plan.
                        meta = self._meta(row)
                        meta.setdefault("approval", {})["plan_digest"] = req.plan_digest
                        uow.transactions.update_fields(tx_id, metadata=meta)
                        self._seal_tx(uow, tx_id)  # the approved digest is sealed too
                except ApprovalError as exc:
                    refusal = exc
            if refusal is not None:
                uow.audit.append(
                    E.AUTH_FAILED,
                    actor="owner",
                    now=now,
                    agent_id=row.agent_id,
                    tx_id=tx_id,
                    details={"action": action, "reason": refusal.reason},
                )
                uow.commit()
            else:
                if not uow.approvals.decide(
                    approval.id, approved=approve, now=now, signature=signature
                ):
                    raise ApprovalError(
                        "this approval was already decided", tx_id=tx_id, reason="already_decided"
                    )
                uow.audit.append(
                    E.TX_APPROVED if approve else E.TX_REJECTED,
                    actor="owner",
                    now=now,
                    agent_id=row.agent_id,
                    tx_id=tx_id,
                    details={"owner": req.owner_address, "approval_id": approval.id},
                )
                if not approve:
                    self._end(
                        uow,
                        row,
                        S.CANCELLED,
                        code="REJECTED",
                        message="rejected by the owner",
                        actor="owner",
                        now=now,
                        outbox=outbox,
                        details={"by": "owner", "reason": "REJECTED"},
                        notify=E.TX_REJECTED,
                    )
                uow.commit()
        self._publish(outbox)
        if refusal is not None:
            raise refusal
        if approve:
            self.hooks.stage("approved", tx_id)
            return self.execute(tx_id)
        return self.get_row(tx_id)

    def _expire(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        approval: ApprovalRow,
        now: int,
        outbox: _Outbox,
    ) -> None:
        self._end(
            uow,
            row,
            S.EXPIRED,
            code="APPROVAL_EXPIRED",
            message="the owner did not approve in time",
            actor="system",
            now=now,
            outbox=outbox,
            details={"approval_id": approval.id, "expired_at": approval.expires_at},
        )

    # ================================================================== due work & recovery

    def process_due(self) -> DueReport:
        """One pass of due work; returns a :class:`DueReport` of what this call did.

        Unapproved APPROVALs past expiry become EXPIRED; due DELAYs execute; approved ones
        whose execution was interrupted resume; SUBMITTED transactions are polled; orphaned
        PENDING INSTANT/NOTIFY rows (a crash between admission and signing) execute; expired
        sessions are swept. Every queued row is looked at, so work that is due is never
        starved by work that is not. Transactions of a chain whose adapter this wallet was
        opened without are left as they are (counted in ``no_adapter``), never failed.

        Each transaction is handled on its own: a failure (a missing key, an adapter that
        raises, a node that is down) fails or parks that one transaction, is listed in
        ``problems`` with its code, and the pass goes on. Counts include only work this call
        won, so two concurrent passes never both count the same DELAY.
        """
        now = self.clock.now()
        counts = {
            "delays": 0,
            "expired": 0,
            "approved": 0,
            "polled": 0,
            "resumed": 0,
            "no_adapter": 0,
            "locked": 0,
        }
        problems: list[DueProblem] = []
        with self.db.read() as uow:
            networks = {agent.id: (agent.chain, agent.network) for agent in uow.agents.list()}
            queued = uow.transactions.with_status([S.QUEUED], limit=_SCAN_LIMIT)
            pending = uow.transactions.with_status([S.PENDING], limit=_SCAN_LIMIT)
            submitted = uow.transactions.with_status([S.SUBMITTED, S.EXECUTING], limit=_SCAN_LIMIT)
            waiting = {
                row.id: approval
                for row in queued
                if row.tier == Tier.APPROVAL
                and (approval := uow.approvals.for_tx(row.id)) is not None
            }
        expired = self._expire_due(
            [
                tx_id
                for tx_id, a in waiting.items()
                if a.approved_at is None and a.rejected_at is None and a.expires_at <= now
            ],
            now,
        )
        counts["expired"] = len(expired)

        def runnable(row: TransactionRow) -> bool:
            if networks.get(row.agent_id) not in self.adapters:
                counts["no_adapter"] += 1
                return False
            if self.keys.locked:
                counts["locked"] += 1  # resumed once the keystore is unlocked
                return False
            return True

        def run(row: TransactionRow, kind: str, *, recheck: bool = False) -> None:
            if not runnable(row):
                return
            won = self._execute_due(row, problems, recheck=recheck)
            if won:
                counts[kind] += 1

        for row in queued:
            if row.id in expired:
                continue
            approval = waiting.get(row.id)
            if row.tier == Tier.DELAY and int(self._meta(row).get("execute_after", 0)) <= now:
                run(row, "delays")
            elif approval is not None and approval.approved_at is not None:
                run(row, "approved")
        for row in pending:
            run(row, "resumed", recheck=True)
        for row in submitted:
            if not runnable(row):
                continue
            if _is_claim(self._meta(row), row):
                # Claimed for signing, nothing recorded: a live worker is on it, or its
                # process died; then the claim is released and the transaction runs anew.
                released = self._release_claim(row.id, None, reason="stale claim")
                if released and self._execute_due(row, problems, recheck=True):
                    counts["resumed"] += 1
                continue
            try:
                self.reconcile(row.id)
            except (WaiaasError, InvalidTransitionError) as exc:
                log.warning("could not reconcile %s (will retry): %s", row.id, exc)
                problems.append(_problem(row, exc, parked=True))
            except Exception as exc:  # one adapter's bug never stops the pass for others
                log.exception("reconciling %s failed (will retry)", row.id)
                problems.append(_problem(row, exc, parked=True))
            counts["polled"] += 1
        if counts["no_adapter"]:
            log.warning(
                "%d transaction(s) wait for a chain adapter this wallet was opened without",
                counts["no_adapter"],
            )
        sessions = int(self.sessions.sweep_expired(now))
        return DueReport(sessions=sessions, problems=tuple(problems), **counts)

    def _execute_due(
        self, row: TransactionRow, problems: list[DueProblem], *, recheck: bool = False
    ) -> bool:
        """Execute one due transaction for ``process_due``; return whether this call won it.

        A failure of this one never stops the pass: a locked keystore (or a password changed
        elsewhere) leaves it for a later pass; any other error parks it and is reported.
        """
        tx_id = row.id
        try:
            after, won = self._run(tx_id, recheck=recheck)
        except KeystoreError as exc:
            log.warning("transaction %s waits for the keystore: %s", tx_id, exc)
            problems.append(_problem(row, exc, parked=True))
            return False
        except TamperDetectedError as exc:  # refused, recorded and notified already
            log.critical("transaction %s refused: %s", tx_id, exc)
            problems.append(_problem(row, exc, parked=False))
            return False
        except WaiaasError as exc:
            log.warning("transaction %s could not execute (will retry): %s", tx_id, exc)
            problems.append(_problem(row, exc, parked=True))
            return False
        except Exception as exc:  # an adapter's bug must not stop the pass for other agents
            log.exception("transaction %s failed unexpectedly (will retry)", tx_id)
            problems.append(_problem(row, exc, parked=True))
            return False
        if after.status == S.FAILED:
            err = self._meta(after).get("error") or {}
            if isinstance(err, dict) and err.get("code"):
                problems.append(
                    DueProblem(
                        tx_id=tx_id,
                        agent_id=row.agent_id,
                        code=str(err.get("code")),
                        message=str(err.get("message", "")),
                        parked=False,
                    )
                )
        return won

    def _expire_due(self, tx_ids: Sequence[str], now: int) -> set[str]:
        """Expire the QUEUED APPROVAL transactions ``tx_ids`` whose owner never decided
        (checked again under the write lock); return the ids expired."""
        if not tx_ids:
            return set()
        done: set[str] = set()
        outbox = _Outbox()
        for agent_id, ids in self._by_agent(tx_ids).items():
            with self.db.write(agent_id=agent_id) as uow:
                for tx_id in ids:
                    row = uow.transactions.get(tx_id)
                    approval = uow.approvals.for_tx(tx_id)
                    if (
                        row is not None
                        and (agent_id is None or row.agent_id == agent_id)
                        and approval is not None
                        and row.status == S.QUEUED
                        and approval.approved_at is None
                        and approval.rejected_at is None
                        and approval.expires_at <= now
                    ):
                        self._expire(uow, row, approval, now, outbox)
                        done.add(tx_id)
                uow.commit()
        self._publish(outbox)
        return done

    def reconcile(self, tx_id: str, *, resend: bool = False) -> None:
        """Bring an EXECUTING or SUBMITTED transaction in line with the chain.

        Never signs the same request twice: stored bytes are asked about and re-sent as they
        are (only through :meth:`_clear_for_broadcast`, so never while the kill switch is on
        or the agent is not active); only bytes that can provably never land are rebuilt
        (once). Bytes held back by the kill switch or a suspension get the whole decision
        again (session, policies, tier) before they are sent. ``resend``: a SUBMITTED row
        the chain does not know is sent again too (on open: a crash may have come between
        recording SUBMITTED and sending).
        """
        row = self.get_row(tx_id)
        if row.status not in (S.EXECUTING, S.SUBMITTED):
            return
        meta = self._meta(row)
        stored = meta.get("signed")
        if not stored:
            if _is_claim(meta, row):  # claimed, nothing signed or sent: released if stale
                self._release_claim(tx_id, None, reason="stale claim")
            return
        signed = _signed_from_json(row.chain, stored)
        with self.db.read() as uow:
            agent = uow.agents.get(row.agent_id)
        assert agent is not None
        adapter = self.adapter_for(agent.chain, agent.network)
        try:
            status = adapter.get_status(signed)
        except ChainError as exc:
            log.warning("status of %s unavailable: %s", tx_id, exc)
            return
        if status.state == ChainTxState.NOT_FOUND and (
            row.status == S.EXECUTING or resend or meta.get("held")
        ):
            with self.db.read() as uow:
                stopped = killswitch.is_active(uow) or (
                    (current := uow.agents.get(row.agent_id)) is None or current.status != "ACTIVE"
                )
            if stopped:
                self._clear_for_broadcast(tx_id, recovering=True)  # holds it, audited once
                return
            if meta.get("held") and not self._rejudge_held(tx_id):
                return
            self._record_recovery(row, "resubmitting the stored signed bytes")
            self._submit_stage(tx_id, signed, recovering=True)
            return
        if row.status == S.EXECUTING and status.state == ChainTxState.PENDING:
            now = self.clock.now()
            with self._tx_write(tx_id, row.agent_id) as uow:
                self._move(
                    uow,
                    row,
                    S.SUBMITTED,
                    event=E.TX_SUBMITTED,
                    actor="system",
                    now=now,
                    details={"recovered": True},
                )
                uow.commit()
            return
        self.apply_chain_status(tx_id, status)

    def _rejudge_held(self, tx_id: str) -> bool:
        """Signed bytes held back by the kill switch or a suspension, not on the chain: once
        both are clear, judge them again in full. Returns whether they may be sent; a
        denial, an ended session or a stricter tier fails them (the agent sends anew)."""
        now = self.clock.now()
        outbox = _Outbox()
        with self._tx_write(tx_id) as uow:
            row = uow.transactions.get(tx_id)
            if row is None or row.status not in (S.EXECUTING, S.SUBMITTED):
                return False
            agent = uow.agents.get(row.agent_id)
            assert agent is not None
            if killswitch.is_active(uow) or agent.status != "ACTIVE":
                return False  # still held; nothing to write
            meta = self._meta(row)
            problem = self._recheck(uow, row, agent, meta, now, full=True)
            if problem is None:
                meta.pop("held", None)
                meta["rejudged_held"] = now
                uow.transactions.update_fields(tx_id, metadata=meta)
                uow.commit()
                return True
            if isinstance(problem, _Escalation):
                code = "REJUDGED"
                message = (
                    f"held signed bytes now need tier {problem.tier.value} (they went through "
                    f"{problem.current.value}); they were not sent: send the request again"
                )
            else:
                _target, code, message = problem
            self._end(
                uow,
                row,
                S.FAILED,
                code=code,
                message=message,
                actor="system",
                now=now,
                outbox=outbox,
            )
            uow.commit()
        self._publish(outbox)
        return False

    def _record_recovery(self, row: TransactionRow, what: str) -> None:
        with self.db.write(agent_id=row.agent_id) as uow:
            uow.audit.append(
                E.TX_RECOVERED,
                actor="system",
                now=self.clock.now(),
                agent_id=row.agent_id,
                tx_id=row.id,
                details={"status": row.status, "action": what},
            )
            uow.commit()

    def recover(self) -> dict[str, int]:
        """On open: reconcile EXECUTING / SUBMITTED rows with the chain and resume orphans."""
        with self.db.read() as uow:
            rows = uow.transactions.with_status([S.EXECUTING, S.SUBMITTED], limit=10_000)
        for row in rows:
            try:
                self.reconcile(row.id, resend=True)
            except (WaiaasError, InvalidTransitionError) as exc:
                log.warning("could not reconcile %s: %s", row.id, exc)
        return {"reconciled": len(rows)}


class _DuplicateBytes(Exception):
    """Signing produced the bytes of another live transaction (raised inside the write
    lock so the unit of work rolls back; the wait happens outside)."""


class _ClaimLost(Exception):
    """The claim this call signed under is gone (released as stale and taken by another
    worker, or the transaction ended): its bytes are dropped, never recorded nor sent."""


@dataclass
class _Claim:
    """A transaction this call moved to EXECUTING and may sign (held until recorded)."""

    token: str
    tx_id: str
    agent: AgentRow
    adapter: ChainAdapter
    meta: dict[str, Any]
    nonce: int | None


@dataclass(frozen=True)
class _Busy:
    """Another transaction of the same agent (``tx_id``) holds a signing claim."""

    tx_id: str
    stale: bool


class _AgentWait:
    """Backoff while another transaction of the agent is being signed (no lock is held)."""

    def __init__(self) -> None:
        self._deadline = time.monotonic() + _AGENT_WAIT_SECONDS
        self._delay = 0.005

    def wait(self) -> bool:
        """Sleep a little; ``False`` once the wait has lasted too long."""
        if time.monotonic() > self._deadline:
            return False
        time.sleep(self._delay)
        self._delay = min(self._delay * 2, 0.1)
        return True


#: Admission's checks before it records presigned bytes: any transaction of the agent being
#: signed (claimed, or signed and not yet cleared) sends this one to the claim path; bytes
#: whose hash a row already holds go through :meth:`Pipeline._take_hash`.
_EXECUTING_OF_AGENT = "SELECT 1 FROM transactions WHERE agent_id = ? AND status = ? LIMIT 1"
_ROW_OF_HASH = "SELECT 1 FROM transactions WHERE tx_hash = ?"


@dataclass(frozen=True)
class _Presigned:
    """Bytes signed before admission's lock for the plan it judges (:meth:`Pipeline._presign`);
    never stored or sent unless admission records them."""

    signed: SignedTx
    simulation: str

    def __repr__(self) -> str:
        return f"_Presigned({self.signed!r}, simulation={self.simulation!r})"


@dataclass(frozen=True)
class _Early:
    """What admission prepared before its write lock, for one agent and request."""

    agent_id: str
    public_key: str
    request: Request
    prepared: plans.Prepared
    presigned: _Presigned | None = None

    def for_(self, agent: AgentRow, request: Request) -> plans.Prepared | None:
        """The prepared plan, if it was built for this agent, key and request."""
        if (agent.id, agent.public_key) != (self.agent_id, self.public_key):
            return None
        return self.prepared if request == self.request else None


# ---------------------------------------------------------------------- claims

#: Claim tokens held by calls running in this process (a claim of this process whose
#: token is not here was left by a call that is gone).
_LIVE_CLAIMS: set[str] = set()
#: Seconds after which a claim whose process cannot be checked (another host, another
#: PID namespace) is taken as abandoned. Taking over a claim that is still being worked
#: on costs only work: its holder's bytes are never recorded, so never sent.
CLAIM_LEASE_SECONDS = 600
_NONCE_ATTEMPTS = 4
_AGENT_WAIT_SECONDS = 60.0  # as long as a unit of work waits for the write lock


@functools.cache
def _host() -> str:
    return socket.gethostname()


def _claim_record(token: str, status: str, nonce: int | None) -> dict[str, Any]:
    """The ``claim`` entry of a row's metadata: who holds it, since when, what it reserved."""
    return {
        "token": token,
        "from": str(status),
        "pid": os.getpid(),
        "host": _host(),
        "at": int(time.time()),
        "nonce": nonce,
    }


def _is_claim(meta: Mapping[str, Any], row: TransactionRow) -> bool:
    """Whether ``row`` is EXECUTING under a claim with no recorded bytes."""
    return row.status == S.EXECUTING and not meta.get("signed") and bool(meta.get("claim"))


def _holds(meta: Mapping[str, Any], row: TransactionRow, token: str) -> bool:
    """Whether ``row`` is EXECUTING under the claim ``token`` with no recorded bytes."""
    claim = meta.get("claim")
    return (
        row.status == S.EXECUTING
        and not meta.get("signed")
        and isinstance(claim, dict)
        and claim.get("token") == token
    )


def _claim_is_stale(claim: Mapping[str, Any]) -> bool:
    """Whether nobody works on ``claim`` any more: a call of this process that is gone, a
    process of this host that is gone, or (anywhere) a lease older than
    :data:`CLAIM_LEASE_SECONDS` of wall-clock time."""
    if claim.get("token") in _LIVE_CLAIMS:
        return False
    pid = claim.get("pid")
    if (
        isinstance(pid, int)
        and claim.get("host") == _host()
        and (pid == os.getpid() or not _process_alive(pid))
    ):
        return True
    at = claim.get("at")
    return not isinstance(at, int) or time.time() - at > CLAIM_LEASE_SECONDS


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not); unknown -> alive."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another user's process
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def _warm_decimals(adapter: ChainAdapter, req: Request, effects: Sequence[Any] | None) -> None:
    """Read (and so cache in the adapter) the decimals of every token the request and its
    effects name, so that judging them under the write lock asks the chain nothing."""
    reader = getattr(adapter, "token_decimals", None)
    if not callable(reader):
        return
    items = [req, *getattr(req, "requests", ())]
    tokens = {t for item in items if isinstance(t := getattr(item, "token", None), str)}
    tokens |= {t for e in effects or () if isinstance(t := getattr(e, "token", None), str)}
    for token in sorted(tokens):
        with contextlib.suppress(WaiaasError):
            reader(token)


def _problem(row: TransactionRow, exc: BaseException, *, parked: bool) -> DueProblem:
    if isinstance(exc, WaiaasError):
        code, message = exc.code, exc.message
    else:
        code, message = "INTERNAL_ERROR", f"{type(exc).__name__}: {str(exc)[:200]}"
    return DueProblem(
        tx_id=row.id, agent_id=row.agent_id, code=code, message=message, parked=parked
    )


# ---------------------------------------------------------------------- signed bytes


def _signed_json(signed: SignedTx) -> dict[str, Any]:
    return {
        "raw_b64": base64.b64encode(signed.raw).decode("ascii"),
        "hash": signed.tx_hash,
        "nonce": signed.nonce,
        "valid_until": signed.valid_until,
        "earliest_slot": signed.earliest_slot,
    }


def _signed_from_json(chain: str, data: Mapping[str, Any]) -> SignedTx:
    return SignedTx(
        chain=chain,
        raw=(
            base64.b64decode(str(data["raw_b64"]))
            if "raw_b64" in data
            else bytes.fromhex(str(data["raw"]))
        ),
        tx_hash=str(data["hash"]),
        nonce=None if data.get("nonce") is None else int(data["nonce"]),
        valid_until=None if data.get("valid_until") is None else int(data["valid_until"]),
        earliest_slot=(None if data.get("earliest_slot") is None else int(data["earliest_slot"])),
    )


def _deny_reasons(decision: Any) -> list[dict[str, Any]]:
    """The deny reasons of a policy decision as JSON-able dicts."""
    return [r.model_dump(mode="json") for r in decision.reasons if r.effect == "deny"]


def _chain_id(adapter: ChainAdapter) -> int | None:
    value = getattr(adapter, "chain_id", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
