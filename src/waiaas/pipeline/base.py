"""What every stage of the pipeline shares: its collaborators and the status-change helpers.

:class:`_PipelineBase` holds the collaborators (database, keys, adapters, sessions, gate, clock,
config, notifier, hooks) and the helpers each stage uses: compare-and-swap moves with their
audit rows, ending a transaction, per-agent write units of work, events sent after commit and
the AUTO_STOP failure trigger. The stages (:mod:`.admission`, :mod:`.execution`, :mod:`.owner`,
:mod:`.due`, :mod:`.recovery`) are mixins over it, joined in
:class:`waiaas.pipeline.engine.Pipeline`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from waiaas.chains.base import (
    ChainAdapter,
    ChainTxStatus,
    SignedTx,
)
from waiaas.clock import Clock
from waiaas.config import WalletConfig
from waiaas.db import Database, UnitOfWork
from waiaas.db.faults import stored_json
from waiaas.db.tables import AgentRow, ApprovalRow, TransactionRow
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    InvalidInputError,
    NotFoundError,
    StorageError,
    TamperDetectedError,
    WaiaasError,
)
from waiaas.ids import new_id
from waiaas.pipeline import agent_states
from waiaas.pipeline.claims import _holds
from waiaas.pipeline.inflight import InFlightView
from waiaas.pipeline.ports import GatePort, SessionPort
from waiaas.pipeline.states import transition
from waiaas.pipeline.txmeta import ApprovalMeta, TxMeta, as_meta
from waiaas.types import AuditEvent, Severity, TxStatus

if TYPE_CHECKING:
    from waiaas.pipeline.execution import _Escalation

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
    confirmation), ``approved`` (the owner's approval committed, before execution) and
    ``waiting`` (another executor took the row a send admitted; the send waits for its
    outcome).
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


class _PipelineBase:
    """The pipeline's collaborators and the helpers every stage shares."""

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
        # One presigning at a time per agent on nonce chains (admission's _presign_slot).
        self._presign_slots: dict[str, threading.RLock] = {}
        self._slots_guard = threading.Lock()
        # Agents' rows as admission's first read before the lock found them, by id; only
        # what never changes (id, chain, network, public key) is used (admission's _early_agent).
        self._agent_keys: dict[str, AgentRow] = {}
        # Whether each adapter has account nonces, by id (admission's _has_nonces).
        self._nonce_chains: dict[int, tuple[object, bool]] = {}
        # Agents this pipeline knows have no in-flight row (admission's _presign_nonce).
        self._in_flight = InFlightView()
        # PENDING rows a send of this pipeline admitted and runs itself, from before the
        # admission's commit until that send's run ended: due work leaves them to it.
        self._live_sends: set[str] = set()

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
    def _meta(row: TransactionRow) -> TxMeta:
        return as_meta(
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
        meta_updates: TxMeta | None = None,
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

    def get_row(self, tx_id: str) -> TransactionRow:
        with self.db.read() as uow:
            row = uow.transactions.get(tx_id)
        if row is None:
            raise NotFoundError("transaction", tx_id)
        return row

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

    def _release(self, uow: UnitOfWork, row: TransactionRow, meta: TxMeta) -> None:
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

    @staticmethod
    def _new_approval(
        uow: UnitOfWork, tx_id: str, expires_at: int, now: int, *, required_by: int | None = None
    ) -> ApprovalRow:
        """Open an approval request for ``tx_id`` in ``uow``: a new id, expiring at
        ``expires_at`` (the owner's signature is required by then unless ``required_by``
        says otherwise)."""
        approval = ApprovalRow(
            id=new_id(),
            tx_id=tx_id,
            required_by=expires_at if required_by is None else required_by,
            expires_at=expires_at,
            created_at=now,
        )
        uow.approvals.add(approval)
        return approval

    if TYPE_CHECKING:
        # One stage calls into another: each method is defined once, in its stage.

        def _verify_stored(
            self,
            uow: UnitOfWork,
            row: TransactionRow,
            agent: AgentRow,
            approval: ApprovalRow | None = None,
        ) -> None: ...

        def _refuse_tampered(
            self, exc: TamperDetectedError, *, agent_id: str | None, tx_id: str | None, now: int
        ) -> None: ...

        def _record_auth_failure(self, exc: AuthError | AgentNotActiveError, now: int) -> None: ...

        def execute(self, tx_id: str, *, recheck: bool = False) -> TransactionRow: ...

        def _run(self, tx_id: str, *, recheck: bool = False) -> tuple[TransactionRow, bool]: ...

        def _take_hash(self, uow: UnitOfWork, row: TransactionRow, signed: SignedTx) -> None: ...

        def _reserve_nonce(
            self, uow: UnitOfWork, agent: AgentRow, *, exclude: str, hint: int
        ) -> int: ...

        def _release_claim(self, tx_id: str, token: str | None, *, reason: str) -> bool: ...

        def _recheck(
            self,
            uow: UnitOfWork,
            row: TransactionRow,
            agent: AgentRow,
            meta: TxMeta,
            now: int,
            *,
            full: bool = False,
        ) -> tuple[TxStatus, str, str] | _Escalation | None: ...

        def _seal_tx(self, uow: UnitOfWork, tx_id: str) -> None: ...

        def _submit_stage(
            self,
            tx_id: str,
            signed: SignedTx,
            row: TransactionRow | None = None,
            *,
            recovering: bool = False,
            fresh: bool = False,
            cleared: bool = False,
        ) -> TransactionRow: ...

        def _clear_for_broadcast(self, tx_id: str, *, recovering: bool) -> bool: ...

        def apply_chain_status(
            self, tx_id: str, status: ChainTxStatus
        ) -> TransactionRow | None: ...

        def contain_suspended(
            self,
            uow: UnitOfWork,
            agent_id: str,
            *,
            actor: str,
            reason: str,
            now: int,
            outbox: _Outbox | None = None,
        ) -> tuple[dict[str, int], _Outbox]: ...

        def _approval_meta(
            self,
            uow: UnitOfWork,
            agent: AgentRow,
            approval: ApprovalRow,
            meta: TxMeta,
            row: TransactionRow,
        ) -> ApprovalMeta: ...

        def _expire(
            self,
            uow: UnitOfWork,
            row: TransactionRow,
            approval: ApprovalRow,
            now: int,
            outbox: _Outbox,
        ) -> None: ...

        def reconcile(self, tx_id: str, *, resend: bool = False) -> None: ...
