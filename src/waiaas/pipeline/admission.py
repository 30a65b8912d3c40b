"""Stage 1, admission: session, agent and policy checks in one unit of work that records the row.

INSTANT / NOTIFY requests may be signed before the write lock (:meth:`AdmissionStage._presign`)
and their bytes recorded in the admission commit; the rest go through the claim path of
:mod:`waiaas.pipeline.execution`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from waiaas.chains.base import (
    ChainAdapter,
    SignedTx,
    SupportsNonces,
)
from waiaas.config import WalletConfig
from waiaas.db import UnitOfWork
from waiaas.db.repositories import AUDIT_HEAD_COLUMNS
from waiaas.db.statements import built
from waiaas.db.tables import IN_FLIGHT, AgentRow, ApprovalRow, TransactionRow
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    ConstraintViolationError,
    InvalidInputError,
    KeystoreError,
    KeystoreLockedError,
    NotFoundError,
    PolicyDeniedError,
    StorageError,
    TamperDetectedError,
    WaiaasError,
)
from waiaas.ids import new_id
from waiaas.pipeline import killswitch, plans, records
from waiaas.pipeline.base import E, S, _Outbox, _PipelineBase
from waiaas.pipeline.claims import _AgentWait, _DuplicateBytes
from waiaas.pipeline.execution import (
    _deny_reasons,
    _warm_decimals,
)
from waiaas.pipeline.gate import agent_context as approvals_context
from waiaas.pipeline.gate import state_keys
from waiaas.pipeline.inflight import held_nonces, stored_metas
from waiaas.pipeline.requests import (
    NATIVE,
    normalize_request,
    parse_request,
    summary,
)
from waiaas.pipeline.states import BORN
from waiaas.pipeline.txmeta import TxMeta
from waiaas.policy.evaluate import applicable
from waiaas.policy.explain import agent_denial, deciding_reasons, next_allowed_time
from waiaas.policy.model import Decision
from waiaas.policy.rules import TimeRestrictionRules
from waiaas.types import Request, Tier, TxStatus

#: Admission's checks before it records presigned bytes: any transaction of the agent being
#: signed (claimed, or signed and not yet cleared) sends this one to the claim path; bytes
#: whose nonce an in-flight row (EXECUTING, SUBMITTED) of the agent holds are dropped; bytes
#: whose hash a row already holds go through :meth:`Pipeline._take_hash`.
#: All in one statement: (an EXECUTING row of the agent, a row holding the hash), each 1 or
#: NULL, the in-flight rows' metadata documents as one JSON array of their texts (their
#: nonces are read from them as :meth:`Pipeline._reserve_nonce` does), and the audit chain's
#: head, which admission's audit rows link to (read under its lock).
_BUSY_OR_TWIN = {
    dialect: (
        f"SELECT (SELECT 1 FROM transactions WHERE agent_id = ? AND status = ? AND {IN_FLIGHT} "
        "LIMIT 1), (SELECT 1 FROM transactions WHERE tx_hash = ? LIMIT 1), "
        f"(SELECT {aggregate}(metadata) FROM transactions "
        f"WHERE agent_id = ? AND status IN (?, ?) AND {IN_FLIGHT}), {AUDIT_HEAD_COLUMNS}"
    )
    for dialect, aggregate in (("sqlite", "json_group_array"), ("postgresql", "json_agg"))
}


@dataclass(frozen=True)
class _Presigned:
    """Bytes signed before admission's lock for the plan it judges (:meth:`Pipeline._presign`);
    never stored or sent unless admission records them."""

    signed: SignedTx
    simulation: str
    #: the adapter reads the judged plan back from the bytes: the row need not store it
    plan_in_bytes: bool = False

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


# How long a request waits for its agent's presigning slot. Taking turns costs each request
# the few ms of another's presigning and admission; a request that holds the slot longer
# (a node slow to answer) does not hold up the others: after this wait they skip presigning
# and sign from a claim instead.
_SLOT_WAIT = 1.0
# How many agents' rows admission keeps for the step before its lock (``_early_agent``).
_AGENT_KEYS = 4096


class _NonceSlot:
    """An agent's presigning slot, once taken (see ``_prepare_unlocked``): a context
    manager that releases it on exit, whatever admission did."""

    def __init__(self) -> None:
        self._lock: threading.RLock | None = None

    def take(self, lock: threading.RLock) -> bool:
        """Take ``lock``, waiting at most ``_SLOT_WAIT`` seconds; whether it was taken."""
        if not lock.acquire(timeout=_SLOT_WAIT):
            return False
        self._lock = lock
        return True

    def __enter__(self) -> _NonceSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class _LiveSend:
    """A PENDING row a send admitted and runs itself (see ``_run_admitted``): marked in
    the pipeline's live sends before the admission's commit, so due work in this process
    never resumes it under the send; unmarked here only if the admission fails."""

    def __init__(self, live: set[str]) -> None:
        self._live = live
        self._tx_id: str | None = None

    def mark(self, tx_id: str) -> None:
        self._tx_id = tx_id
        self._live.add(tx_id)

    def __enter__(self) -> _LiveSend:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self._tx_id is not None:
            self._live.discard(self._tx_id)  # nothing admitted (or unknown): due work decides


@dataclass(frozen=True)
class AdmissionPlan:
    """What admission makes of a policy decision for one agent (:func:`plan_admission`).

    Attributes:
        tier: the tier the request runs under; ``None`` when it is refused.
        status: the row's status once admission commits (before any presigned bytes):
            ``FAILED`` (refused), ``QUEUED`` (DELAY, APPROVAL) or ``PENDING``.
        reasons: when refused, the deny reasons as JSON dicts, deciding ones first.
        meta: what to add to the row's metadata (the refusal, an APPROVAL downgraded).
        execute_after: when a DELAY request may run.
        approval_expires_at: when an APPROVAL request's wait for the owner ends.
    """

    tier: Tier | None
    status: TxStatus
    reasons: list[dict[str, Any]] = field(default_factory=list)
    meta: TxMeta = field(default_factory=TxMeta)
    execute_after: int | None = None
    approval_expires_at: int | None = None


def plan_admission(
    decision: Decision, *, has_owner: bool, config: WalletConfig, now: int
) -> AdmissionPlan:
    """The tier, status and metadata admission records for ``decision`` (no I/O).

    An APPROVAL request of an agent with no owner is refused, or becomes DELAY under
    ``WalletConfig(no_owner_approval="delay")``; a refusal keeps the deny reasons in the
    order an agent should read them (hard caps before "needs the owner", none twice).
    """
    tier = Tier(decision.tier) if decision.allowed else None
    reasons: list[dict[str, Any]] = [] if decision.allowed else _deny_reasons(decision)
    meta: TxMeta = {}
    if tier == Tier.APPROVAL and not has_owner:
        if config.no_owner_approval == "delay":
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
        # audit row, TransactionInfo.error) the full reasons; the agent gets less.
        reasons = [r.model_dump(mode="json") for r in deciding_reasons(reasons)]
        message = "; ".join(str(r.get("message", "")) for r in reasons) or "denied by policy"
        meta["error"] = {"code": "POLICY_DENIED", "message": f"denied by policy: {message}"}
        return AdmissionPlan(None, S.FAILED, reasons, meta)
    if tier == Tier.DELAY:
        delay = decision.delay_seconds
        after = now + (delay if delay is not None else config.delay_seconds)
        return AdmissionPlan(tier, S.QUEUED, meta=meta, execute_after=after)
    if tier == Tier.APPROVAL:
        timeout = decision.approval_timeout or config.approval_timeout
        return AdmissionPlan(tier, S.QUEUED, meta=meta, approval_expires_at=now + timeout)
    return AdmissionPlan(tier, S.PENDING, meta=meta)


def _dumps(meta: Mapping[str, Any]) -> str:
    return json.dumps(meta, separators=(",", ":"))


def _new_row(
    agent: AgentRow,
    session_id: str | None,
    req: Request,
    prepared: plans.Prepared,
    decision: Decision,
    tx_id: str,
    now: int,
) -> tuple[TransactionRow, TxMeta]:
    """The row admission records for ``req`` (PENDING, no tier yet) and its metadata; the
    metadata is the caller's to extend and store (``row.metadata_json``, once final; no
    I/O)."""
    amount, to, asset = summary(req)
    meta: TxMeta = {"network": agent.network, **prepared.meta()}
    quote = meta.get("network_fee")
    meta["decision"] = records.stored_decision(decision, int(quote["amount"]) if quote else None)
    row = built(
        TransactionRow,
        {
            "id": tx_id,
            "agent_id": agent.id,
            "session_id": session_id,
            "chain": agent.chain,
            "type": req.type,
            "amount": None if amount is None else str(amount),
            "to_address": to,
            "status": S.PENDING,
            "tier": None,
            "created_at": now,
            "spend": _dumps({k: str(v) for k, v in decision.spend.items()}),
        },
    )
    # what the columns hold is not stored again (txmeta.request_of, effects_of and asset_of
    # read it back)
    request = records.compact_request(records.stored_request(req), row, asset)
    if request:
        meta["request"] = request
    if "effects" in meta:
        meta["effects"] = records.compact_effects(meta["effects"], row)
    if asset != NATIVE:
        meta["asset"] = asset
    return row, meta


def _common(row: TransactionRow) -> dict[str, Any]:
    """The agent, session and transaction admission's audit rows name."""
    return {"agent_id": row.agent_id, "session_id": row.session_id, "tx_id": row.id}


#: What TX_REQUESTED's details say of the request where the row is not sealed (a refusal,
#: a wallet without keys); a sealed row's columns and MAC keep them (:func:`_requested_details`).
REQUEST_SUMMARY = ("type", "amount", "asset", "to")


def _requested_details(
    req: Request,
    row: TransactionRow,
    prepared: plans.Prepared,
    tier: Tier | None,
    *,
    sealed: bool = False,
    signed: SignedTx | None = None,
) -> dict[str, Any]:
    """TX_REQUESTED's details: its tier (unless refused; a sealed row's INSTANT, the default,
    is left out); the request in short (:data:`REQUEST_SUMMARY`) and its plan's digest unless
    the row is ``sealed`` (its columns ``type``, ``amount``, ``to_address``, its metadata's
    ``asset`` and ``plan_digest`` never change once admitted and its MAC covers them: they
    are stored once, there, and the audit page puts them back,
    :func:`waiaas.services.queries.requested_details`); and, for
    bytes presigned at admission (``signed``: the row is born SUBMITTED in this commit),
    their ``tx_hash`` and ``nonce``: one audit row for the request, its move PENDING ->
    SUBMITTED and its signing (:func:`waiaas.pipeline.states.signing_record`)."""
    details: dict[str, Any] = {}
    if not sealed:
        _, to, asset = summary(req)
        details.update(type=req.type, amount=row.amount, asset=asset, to=to)
    if tier is not None and not (sealed and tier == Tier.INSTANT):
        details["tier"] = tier.value
    if prepared.digest and not sealed:
        details["plan_digest"] = prepared.digest
    if signed is not None:
        details["tx_hash"] = signed.tx_hash
        if signed.nonce is not None:
            details["nonce"] = signed.nonce
    return details


class AdmissionStage(_PipelineBase):
    """Stage 1: a request judged and recorded (signed at once when it may be)."""

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
        req = self._parse_send(token, request)
        now = self.clock.now()
        outbox = _Outbox()
        denied: PolicyDeniedError | None = None
        agent_id: str | None = None
        presigned: _Presigned | None = None
        # What needs the chain (building the plan, token reads) happens before the write lock.
        slot = _NonceSlot()
        try:
            early = self._prepare_unlocked(token, req, now, slot)
        except BaseException:
            slot.release()
            raise
        marked = _LiveSend(self._live_sends)
        try:
            with (
                slot,
                marked,
                self.db.write(agent_id=early.agent_id if early is not None else None) as uow,
            ):
                # what the checks below read of wallet_state and the session's live row,
                # in one statement (under the lock); the kill switch refuses first
                keys = state_keys(early.agent_id) if early is not None else ()
                live = self.sessions.recall_in(uow, token, now, state=(killswitch.KEY, *keys))
                killswitch.ensure_inactive(uow)
                verified = live or self.sessions.verify_in(uow, token, now)
                agent_id = verified.agent_id
                if early is not None and agent_id != early.agent_id:
                    # locked for another agent (a session row edited meanwhile): refuse
                    raise StorageError("the session's agent changed during admission")
                agent, req, prepared, presigned = self._plan_locked(uow, verified, req, early)
                row, denied = self._admit(
                    uow, agent, verified, req, now, outbox, prepared, presigned=presigned
                )
                if denied is None and uow.integrity is not None and row.integrity is None:
                    from waiaas.integrity import tx_mac

                    uow.transactions.update_fields(row.id, integrity=tx_mac(uow.integrity, row))
                if denied is None and row.status == S.PENDING:
                    marked.mark(row.id)  # before the commit: due work here leaves it to us
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
        if denied is not None:
            self._publish(outbox)
            raise denied
        return self._run_admitted(row, presigned, outbox)

    def _parse_send(self, token: str, request: Request | Mapping[str, Any]) -> Request:
        """:meth:`send`'s checks before anything is read: the token's type, the request's
        shape (a malformed one is recorded against a valid token's agent), the keystore."""
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
        return req

    def _plan_locked(
        self, uow: UnitOfWork, verified: Any, req: Request, early: _Early | None
    ) -> tuple[AgentRow, Request, plans.Prepared, _Presigned | None]:
        """Under admission's lock: the session's agent (still active), the request normalised
        for its chain, its plan (the one prepared before the lock when it still fits, with
        any bytes presigned for it)."""
        agent = uow.agents.get(verified.agent_id)
        if agent is None:
            raise NotFoundError("agent", verified.agent_id)
        if agent.status != "ACTIVE":
            raise AgentNotActiveError(agent.id, agent.status, agent.suspension_reason)
        adapter = self.adapter_for(agent.chain, agent.network)
        req = normalize_request(adapter, req)
        presigned: _Presigned | None = None
        prepared = early.for_(agent, req) if early is not None else None
        if prepared is not None and early is not None:
            presigned = early.presigned
        if prepared is None:  # not prepared above (rare): build it here
            prepared = plans.prepare_or_defer(adapter, req, agent.public_key)
        return agent, req, prepared, presigned

    def _run_admitted(
        self, row: TransactionRow, presigned: _Presigned | None, outbox: _Outbox
    ) -> TransactionRow:
        """After admission's commit: publish its events, then broadcast the bytes it
        recorded, or execute a PENDING request now; a queued one waits. A PENDING row stays
        in the live sends (due work here does not resume it) until this call's run of it
        ended, however it ended."""
        try:
            self._publish(outbox)
            self.hooks.stage("admitted", row.id)
            if row.status == S.SUBMITTED and presigned is not None:
                return self._broadcast_admitted(row, presigned)
            if row.status == S.PENDING:
                return self._execute_admitted(row.id)
            return row
        finally:
            self._live_sends.discard(row.id)

    def _broadcast_admitted(self, row: TransactionRow, presigned: _Presigned) -> TransactionRow:
        """Broadcast the bytes the admission commit recorded and cleared (SUBMITTED)."""
        self.hooks.stage("recorded", row.id)
        signed = presigned.signed
        done = self._submit_stage(row.id, signed, row, fresh=True, cleared=True)
        if done.status not in (S.EXECUTING, S.SUBMITTED):
            # confirmed with these very bytes (not rebuilt): their nonce is used
            landed = done.status == S.CONFIRMED and done.tx_hash == signed.tx_hash
            self._in_flight.left(
                done.agent_id, done.id, landed_nonce=signed.nonce if landed else None
            )
        return done

    def _execute_admitted(self, tx_id: str) -> TransactionRow:
        """Claim, sign, submit and confirm the PENDING row just admitted; when another
        executor (another process's due work, another wallet on the file) took it first,
        its outcome (:meth:`_await_outcome`)."""
        try:
            done, won = self._run(tx_id)
        except KeystoreError as exc:
            # Locked between admission and signing: the agent is told it failed, so it
            # must not execute later behind its back (a retry would pay twice).
            self._fail(tx_id, exc, expected=(S.PENDING,))
            raise
        return done if won else self._await_outcome(done)

    def _await_outcome(self, row: TransactionRow) -> TransactionRow:
        """``row`` as another executor leaves it: while it runs there (EXECUTING,
        SUBMITTED), the row is read again after short sleeps until it is final, at most
        ``config.confirm_timeout`` seconds (as long as a send waits for its own
        confirmation); then it is returned as it is. A row given back (PENDING again: that
        executor's claim was released) is returned too, for due work to resume."""
        if row.status not in (S.EXECUTING, S.SUBMITTED):
            return row
        self.hooks.stage("waiting", row.id)
        wait = _AgentWait(self.config.confirm_timeout)
        while row.status in (S.EXECUTING, S.SUBMITTED) and wait.wait():
            row = self.get_row(row.id)
        return row

    def _prepare_unlocked(
        self, token: str, req: Request, now: int, slot: _NonceSlot
    ) -> _Early | None:
        """Before admission's write lock: find the token's agent (a read, nothing written),
        normalise the request (token decimals are read from the chain and cached) and build
        its plan. ``None`` when the token or the agent does not check out: admission then
        refuses it under the lock with the right error and audit row.

        On a nonce chain the bytes presigned here take the agent's presigning slot in this
        process (``slot``, released once admission committed or refused): two requests of
        one agent presigned at once would sign the same nonce and admission would drop one of
        them, so they take turns, and each signs the lowest nonce from the node's pending
        count that no in-flight row holds (the one admission's lock then reserves). A request
        that waits more than ``_SLOT_WAIT`` for the slot is not presigned (claim path)."""
        try:
            agent, stopped = self._early_agent(token, now)
            if agent is None:
                return None
            adapter = self.adapters.get((agent.chain, agent.network))
            if adapter is None:
                return None
            normalized = normalize_request(adapter, req)
            # Bytes signed here carry the nonce the node expects next (the one the claim
            # path would reserve first); admission records them only if no in-flight row
            # holds it. Without presigning the nonce is chosen at the claim.
            hint = None
            guessed = False
            presign = self.presign and not stopped
            if presign and self._has_nonces(adapter):
                if slot.take(self._presign_slot(agent.id)):
                    hint, guessed = self._presign_nonce(cast(SupportsNonces, adapter), agent)
                else:
                    presign = False  # another request holds the slot too long: claim path
            prepared = plans.prepare_or_defer(adapter, normalized, agent.public_key, nonce=hint)
        except WaiaasError:
            return None
        _warm_decimals(adapter, normalized, prepared.effects)
        presigned = None
        if presign:
            presigned = self._presign(adapter, agent, prepared, guessed=guessed)
        return _Early(agent.id, agent.public_key, normalized, prepared, presigned)

    def _has_nonces(self, adapter: object) -> bool:
        """Whether ``adapter`` has account nonces (:class:`SupportsNonces`), remembered per
        adapter object: a runtime protocol check walks the protocol's members each time."""
        known = self._nonce_chains.get(id(adapter))
        if known is not None and known[0] is adapter:
            return known[1]
        has = isinstance(adapter, SupportsNonces)
        with self._slots_guard:
            if len(self._nonce_chains) >= _AGENT_KEYS:
                self._nonce_chains.clear()
            # the adapter is held with its answer: its id names no other object meanwhile
            self._nonce_chains[id(adapter)] = (adapter, has)
        return has

    def _presign_nonce(self, adapter: SupportsNonces, agent: AgentRow) -> tuple[int, bool]:
        """The nonce bytes presigned before the lock carry: the node's pending count, past
        the nonces the agent's in-flight rows hold; and whether it was taken without asking
        the node (the node must then expect exactly it after signing, see :meth:`_presign`).

        Those rows are read unless this pipeline knows the agent has none
        (:class:`~waiaas.pipeline.inflight.InFlightView`: admission's check under the lock
        last found none and each row this pipeline put in flight since has left it). A row
        another writer put in flight meanwhile is found by that check under the lock, which
        then drops the bytes (the claim path takes over): never two in-flight rows with one
        nonce. The node is not asked either when the agent is known clear and this
        pipeline's last row of it landed with nonce ``n``: ``n + 1`` is taken."""
        known = self._in_flight.next_nonce(agent.id)
        if known is not None:
            return known, True
        pending = adapter.pending_nonce(agent.public_key)
        if self._in_flight.clear(agent.id):
            return pending, False
        with self.db.read() as uow:
            return self._reserve_nonce(uow, agent, exclude="", hint=pending), False

    def _early_agent(self, token: str, now: int) -> tuple[AgentRow | None, bool]:
        """Before the lock: the token's agent (only its id, chain, network and public key
        are used: they never change) and whether the kill switch is on; ``(None, _)`` when
        the token or the agent does not check out.

        A token this process verified before names its agent without a read (its session's
        agent never changes), and the agent's row comes from the first read of it: nothing
        is read here then. Whether the session is still live, the agent still active and
        the kill switch still off is what admission checks under its lock, whatever was
        found here; bytes presigned for a request it refuses are dropped unsent."""
        known = self.sessions.remembered_agent(token, now)
        if known is not None:
            agent = self._agent_keys.get(known[0])
            if agent is not None and (agent.chain, agent.network) == known[1:]:
                return agent, False
        with self.db.read() as uow:
            verified = self.sessions.verify_in(uow, token, now)
            agent = uow.agents.get(verified.agent_id)
            stopped = self.presign and killswitch.is_active(uow)
        if agent is None or agent.status != "ACTIVE":
            return None, stopped
        with self._slots_guard:
            while len(self._agent_keys) >= _AGENT_KEYS:
                self._agent_keys.pop(next(iter(self._agent_keys)), None)
            self._agent_keys[agent.id] = agent
        return agent, stopped

    def _presign_slot(self, agent_id: str) -> threading.RLock:
        """The agent's presigning slot in this process (re-entrant: a hook may send again
        on the same thread)."""
        with self._slots_guard:
            slot = self._presign_slots.get(agent_id)
            if slot is None:
                slot = self._presign_slots[agent_id] = threading.RLock()
            return slot

    def _presign(
        self, adapter: ChainAdapter, agent: AgentRow, prepared: plans.Prepared, *, guessed: bool
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
        judged = TxMeta(network_fee=plans.fee_to_json(prepared.fee)) if prepared.fee else TxMeta()
        try:
            unsigned = plans.hold_fee(adapter, unsigned, judged)
            simulation = plans.check_simulation(
                adapter, unsigned, prepared.effects, required=self.config.require_simulation
            )
            with self.keys.use_key(agent.id) as secret:
                signed: SignedTx = adapter.sign(unsigned, secret)
            # A transaction of the agent that landed meanwhile (it left the in-flight rows
            # admission checks) may have used the nonce: the node says. A nonce taken
            # without asking the node (``guessed``) must be the one it expects next.
            if signed.nonce is not None and self._has_nonces(adapter):
                pending = cast(SupportsNonces, adapter).pending_nonce(agent.public_key)
                if pending > signed.nonce or (guessed and pending != signed.nonce):
                    return None
        except WaiaasError:
            return None
        return _Presigned(signed, simulation, plans.plan_in_bytes(adapter, signed, prepared.digest))

    def _take_presigned(
        self, uow: UnitOfWork, agent: AgentRow, row: TransactionRow, presigned: _Presigned
    ) -> SignedTx | None:
        """Inside admission's write: whether the bytes signed before the lock may be
        recorded with the request (the conditions the claim path checks before it signs)."""
        signed = presigned.signed
        uow.audit_lock()  # the head is read below (admission appends in any case)
        found = uow.fetch_one(
            _BUSY_OR_TWIN[uow.dialect],
            (
                agent.id,
                S.EXECUTING.value,
                signed.tx_hash,
                agent.id,
                S.EXECUTING.value,
                S.SUBMITTED.value,
            ),
        )
        assert found is not None  # one row: scalar subqueries only
        busy, twin, in_flight, head_id, head_hash = found
        uow.audit.known_head(head_id, head_hash)
        metas = stored_metas(in_flight)
        taken = held_nonces(metas)
        if busy is not None or (signed.nonce is not None and signed.nonce in taken):
            # one signing at a time per agent (the claim path waits its turn), or the nonce
            # is another in-flight transaction's
            self._in_flight.checked(agent.id, clear=not metas, added=None)
            return None
        if twin is not None:
            try:
                self._take_hash(uow, row, signed)
            except _DuplicateBytes:
                self._in_flight.checked(agent.id, clear=not metas, added=None)
                return None
        self._in_flight.checked(agent.id, clear=not metas, added=row.id)
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
        """Judge ``req`` under the lock and record it: the row, TX_REQUESTED and, by the
        plan's tier, the refusal, the presigned bytes, or the wait (DELAY, APPROVAL)."""
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
        row, meta = _new_row(agent, verified.session_id, req, prepared, decision, new_id(), now)
        plan = plan_admission(
            decision, has_owner=agent.owner_address is not None, config=self.config, now=now
        )
        meta.update(plan.meta)
        if plan.tier is None:
            return row, self._record_denied(
                uow, agent, row, meta, req, prepared, decision, plan, now, outbox
            )
        tier = plan.tier
        # Session constraints and usage stats, in the same unit of work as the request.
        self.sessions.enforce_and_record(
            uow, verified, req, network=agent.network, now=now, spend=spent, fees=decision.fees
        )
        row.tier = tier.value
        signed = self._settle_row(uow, agent, row, meta, tier, presigned)
        assert row.status in BORN
        uow.transactions.add(row)
        # one row: the request and, for presigned bytes, their move to SUBMITTED
        uow.audit.append(
            E.TX_REQUESTED,
            actor=self._actor(agent.id),
            now=now,
            **_common(row),
            details=_requested_details(
                req, row, prepared, tier, sealed=uow.integrity is not None, signed=signed
            ),
        )
        if tier in (Tier.DELAY, Tier.APPROVAL):
            self._queue_admitted(uow, agent, row, meta, plan, tier, now, outbox)
        if tier == Tier.NOTIFY:
            outbox.add(E.TX_REQUESTED, tx_id=row.id, agent_id=agent.id, tier=tier.value)
        return row, None

    def _settle_row(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        row: TransactionRow,
        meta: TxMeta,
        tier: Tier,
        presigned: _Presigned | None,
    ) -> SignedTx | None:
        """Before an admitted row is added: the presigned bytes it takes, if it may
        (SUBMITTED, with their hash); unless it waits, its final metadata and MAC."""
        signed: SignedTx | None = None
        if presigned is not None and tier in (Tier.INSTANT, Tier.NOTIFY):
            signed = self._take_presigned(uow, agent, row, presigned)
        if signed is not None and presigned is not None:
            # Recorded and cleared for broadcast in this commit: PENDING -> SUBMITTED.
            row.status = S.SUBMITTED
            row.tx_hash = signed.tx_hash
            records.note_simulation(meta, presigned.simulation)
            meta["signed"] = records.signed_json(signed)
            if presigned.plan_in_bytes:
                meta.pop("plan", None)  # in the bytes (plans.stored_plan reads it there)
        # a waiting row's is written again with its wait (_queue_admitted), then its MAC
        row.metadata_json = _dumps(meta)
        if tier not in (Tier.DELAY, Tier.APPROVAL) and uow.integrity is not None:
            from waiaas.integrity import tx_mac

            row.integrity = tx_mac(uow.integrity, row)
        return signed

    def _record_denied(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        row: TransactionRow,
        meta: TxMeta,
        req: Request,
        prepared: plans.Prepared,
        decision: Decision,
        plan: AdmissionPlan,
        now: int,
        outbox: _Outbox,
    ) -> PolicyDeniedError:
        """A refused request: its row FAILED, TX_REQUESTED and POLICY_VIOLATION, the
        max_denials check; returns the (redacted) denial to raise once committed."""
        actor = self._actor(agent.id)
        reasons = plan.reasons
        row.status = plan.status
        row.error = "POLICY_DENIED"
        row.metadata_json = _dumps(meta)
        uow.transactions.add(row)
        uow.audit.append(
            E.TX_REQUESTED,
            actor=actor,
            now=now,
            **_common(row),
            details=_requested_details(req, row, prepared, None),
        )
        uow.audit.append(
            E.POLICY_VIOLATION,
            actor=actor,
            now=now,
            **_common(row),
            details={"reasons": reasons},
        )
        outbox.add(E.POLICY_VIOLATION, tx_id=row.id, agent_id=agent.id, reasons=reasons)
        self._maybe_auto_stop(uow, agent, decision, now, outbox)
        return self._agent_denial(uow, agent, decision, reasons, now, row.id)

    def _queue_admitted(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        row: TransactionRow,
        meta: TxMeta,
        plan: AdmissionPlan,
        tier: Tier,
        now: int,
        outbox: _Outbox,
    ) -> None:
        """A DELAY or APPROVAL request just recorded: its wait (``execute_after``, or the
        approval row) and PENDING -> QUEUED with TX_QUEUED."""
        extra: dict[str, Any] = {}
        if plan.execute_after is not None:
            meta["execute_after"] = plan.execute_after
            extra["execute_after"] = meta["execute_after"]
        else:
            assert plan.approval_expires_at is not None
            approval = self._new_approval(uow, row.id, plan.approval_expires_at, now)
            meta["approval"] = self._approval_meta(uow, agent, approval, meta, row)
            extra["approval_expires_at"] = approval.expires_at
        self._move(
            uow,
            row,
            plan.status,
            event=E.TX_QUEUED,
            actor=self._actor(agent.id),
            now=now,
            details={"tier": tier.value, **extra},
            queued_at=now,
            metadata=meta,
        )
        row.status = plan.status
        row.queued_at = now
        outbox.add(E.TX_QUEUED, tx_id=row.id, agent_id=agent.id, tier=tier.value, **extra)
        row.metadata_json = _dumps(meta)

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
