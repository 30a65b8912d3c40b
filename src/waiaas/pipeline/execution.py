"""Stages 2 and 3, execution: claim, build, sign, record, then clear, submit and confirm.

No chain call, key use or sleep happens while the write lock is held: the claim and the
record are short units of work around the unlocked build and sign; the broadcast is cleared
(SUBMITTED) in one unit of work before the bytes are sent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

from waiaas.chains.base import (
    ChainAdapter,
    ChainTxState,
    ChainTxStatus,
    SignedTx,
)
from waiaas.db import UnitOfWork
from waiaas.db.generations import CHANNELS, Observed
from waiaas.db.tables import AgentRow, TransactionRow
from waiaas.errors import (
    ChainError,
    ChainErrorKind,
    InvalidInputError,
    InvalidTransitionError,
    KeyMissingError,
    KeystoreError,
    NotFoundError,
    StateError,
    TamperDetectedError,
    TransientChainError,
    WaiaasError,
)
from waiaas.ids import new_id
from waiaas.pipeline import killswitch, plans
from waiaas.pipeline.base import E, S, _Outbox, _PipelineBase, log
from waiaas.pipeline.claims import (
    _LIVE_CLAIMS,
    _NONCE_ATTEMPTS,
    _AgentWait,
    _Busy,
    _Claim,
    _claim_is_stale,
    _claim_record,
    _ClaimLost,
    _DuplicateBytes,
    _holds,
    _is_claim,
)
from waiaas.pipeline.inflight import held_nonces, lowest_free
from waiaas.pipeline.notifications import CHANNELS_KEY, ROW_KEY
from waiaas.pipeline.records import note_simulation
from waiaas.pipeline.records import signed_json as _signed_json
from waiaas.pipeline.requests import parse_request
from waiaas.pipeline.states import transition_held
from waiaas.pipeline.txmeta import SignedMeta, TxMeta, request_of
from waiaas.types import Request, Severity, Tier, TxStatus

_DUPLICATE_ATTEMPTS = 6
# How many times the bytes of one transaction may be rebuilt after stale refusals. Each
# rebuild replaces bytes that can never land, so this only bounds a chain that keeps
# refusing: under load a new blockhash (or an agent's nonce) can be overtaken again before
# the rebuilt bytes reach the node.
_MAX_REBUILDS = 3
_ENDED: Literal["ended"] = "ended"


@dataclass(frozen=True)
class _Escalation:
    """A re-judged transaction now needs a stricter tier than the one it went through."""

    current: Tier
    tier: Tier
    decision: Any


@dataclass(frozen=True)
class _ClaimInputs:
    """What the claim read and built before its write lock
    (:meth:`ExecutionStage._claim_inputs`)."""

    agent_id: str
    public_key: str
    adapter: ChainAdapter | None
    prepared: plans.Prepared | None
    hint: int | None


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


# ---------------------------------------------------------------------- signed bytes


def _broadcast_stop(uow: UnitOfWork, agent: AgentRow | None) -> tuple[str, str] | None:
    """Why bytes may not leave now (the kill switch, an agent not active): ``(code,
    message)``, or ``None``."""
    if killswitch.is_active(uow):
        return ("KILL_SWITCH_ACTIVE", "the kill switch is active")
    if agent is None or agent.status != "ACTIVE":
        status = agent.status if agent is not None else "missing"
        return ("AGENT_NOT_ACTIVE", f"agent is {status}")
    return None


def _deny_reasons(decision: Any) -> list[dict[str, Any]]:
    """The deny reasons of a policy decision as JSON-able dicts."""
    return [r.model_dump(mode="json") for r in decision.reasons if r.effect == "deny"]


class ExecutionStage(_PipelineBase):
    """Stages 2 and 3: claim, build, sign and record; clear, submit and confirm."""

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
        """:meth:`_claim_stage`'s work: what asks the chain outside the write lock
        (:meth:`_claim_inputs`), then the claim, one short unit of work, database only."""
        inputs = self._claim_inputs(tx_id)
        if inputs is None:
            return None  # another worker took it, or it is final
        adapter, prepared = inputs.adapter, inputs.prepared
        outbox = _Outbox()
        with self._tx_write(tx_id, inputs.agent_id) as uow:
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
                if prepared is None or agent.public_key != inputs.public_key:
                    return None  # changed under us (another worker escalated it): look again
                meta.update(prepared.meta())
                meta.pop("plan_deferred", None)
            stop = self._recheck_claim(uow, row, agent, meta, now, recheck or late, outbox)
            if stop is not None:
                return _ENDED if stop == _ENDED else None
            if adapter is None:
                # This process has no adapter for the agent's network (an operator's CLI,
                # an approval page without --rpc): leave the transaction as it is for a
                # wallet process that has one. Nothing was changed in this unit of work.
                log.info("no adapter for %s/%s here; %s waits", agent.chain, agent.network, tx_id)
                return None
            busy = self._other_claim(uow, agent.id, exclude=row.id)
            if busy is not None:
                return busy  # nothing is written: the unit of work rolls back
            token, nonce = self._write_claim(uow, row, agent, meta, inputs.hint, late, now)
        self._publish(outbox)
        return _Claim(
            token=token,
            tx_id=tx_id,
            agent=agent,
            adapter=adapter,
            meta=meta,
            nonce=nonce,
            columns=_columns(row),
        )

    def _claim_inputs(self, tx_id: str) -> _ClaimInputs | None:
        """Before the claim's write lock, everything that asks the chain: the plan of a
        request that could not be built at admission, token decimals, the next nonce.
        ``None`` when the transaction is no longer PENDING or QUEUED."""
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
            req = parse_request(request_of(found_meta, found))
            effects = plans.stored_effects(found_meta, found)
            if plans.needs_plan(adapter, found_meta):
                # A request that could not be built at admission (funds, a node hiccup) is
                # built now and judged on its effects (in the claim) before anything is signed.
                prepared = plans.prepare(adapter, req, reader.public_key)
                effects = prepared.effects
            _warm_decimals(adapter, req, effects)
            if plans.has_nonces(adapter):
                hint = adapter.pending_nonce(reader.public_key)
        return _ClaimInputs(found.agent_id, reader.public_key, adapter, prepared, hint)

    def _recheck_claim(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        agent: AgentRow,
        meta: TxMeta,
        now: int,
        full: bool,
        outbox: _Outbox,
    ) -> Literal["ended", "escalated"] | None:
        """Inside the claim: the re-checks before signing. ``None``: the claim goes on (an
        escalation to NOTIFY included); ``"escalated"``: it now waits (DELAY, APPROVAL);
        ``"ended"``: a re-check refused it. Both are committed and published here."""
        problem = self._recheck(uow, row, agent, meta, now, full=full)
        if isinstance(problem, _Escalation):
            self._escalate(uow, row, agent, meta, problem, now, outbox)
            if problem.tier != Tier.NOTIFY:
                uow.commit()
                self._publish(outbox)
                return "escalated"
            problem = None
        if problem is None:
            return None
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

    def _write_claim(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        agent: AgentRow,
        meta: TxMeta,
        hint: int | None,
        late: bool,
        now: int,
    ) -> tuple[str, int | None]:
        """The claim's writes and commit: the nonce reserved, the claim record, PENDING or
        QUEUED -> EXECUTING (a plan built late sealed with the row). Returns the claim's
        token and nonce."""
        nonce: int | None = None
        if hint is not None:
            nonce = self._reserve_nonce(uow, agent, exclude=row.id, hint=hint)
        self._in_flight.unknown(agent.id)  # under the agent's lock, before the row's move
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
        return token, nonce

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
                        claim.adapter,
                        claim.agent,
                        claim.meta,
                        claim.columns,
                        nonce=self._checked_nonce(claim),
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
        meta: TxMeta,
        columns: Any,
        *,
        nonce: int | None,
    ) -> tuple[SignedTx, str]:
        """Build the request of the row (``columns``: its ``type``, ``to_address`` and
        ``amount``, which with ``meta`` give its request and effects whole), check it
        against the judged plan, simulate and sign (no database access). Returns the signed
        transaction and the simulation verdict."""
        req = parse_request(request_of(meta, columns))
        unsigned = adapter.build(req, agent.public_key, nonce=nonce)
        # The built transaction must be the judged (and approved) plan, at no higher a fee
        # than the one judged, and simulating it may show no outflow its effects do not
        # explain: then it is signed.
        plans.check_built(adapter, unsigned, meta)
        unsigned = plans.hold_fee(adapter, unsigned, meta)
        simulation = plans.check_simulation(
            adapter,
            unsigned,
            plans.stored_effects(meta, columns),
            required=self.config.require_simulation,
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
            note_simulation(meta, simulation)
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
            if other.tx_hash is not None:
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
        if claim.nonce is None or not plans.has_nonces(claim.adapter):
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
        taken = held_nonces(
            self._meta(other)
            for other in uow.transactions.active_for_agent(agent.id)
            if other.id != exclude and other.status in (S.EXECUTING, S.SUBMITTED)
        )
        return lowest_free(hint, taken)

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
        meta: TxMeta,
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
            req = parse_request(request_of(meta, row))
            adapter = self.adapters.get((agent.chain, agent.network))
            stored = plans.stored_plan(meta, adapter, row.tx_hash, row=row)
            decision = self.gate.evaluate(
                uow,
                agent,
                req,
                now,
                exclude_tx_id=row.id,
                adapter=adapter,
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
        meta: TxMeta,
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

    def _escalation_wait(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        agent: AgentRow,
        meta: TxMeta,
        esc: _Escalation,
        now: int,
    ) -> dict[str, Any]:
        """An escalation's record in ``meta`` and its wait (a DELAY's release time, an
        APPROVAL's approval row); returns the TX_QUEUED details."""
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
            approval = self._new_approval(uow, row.id, now + timeout, now)
            meta["approval"] = self._approval_meta(uow, agent, approval, meta, row)
            details["approval_expires_at"] = approval.expires_at
        return details

    def _escalate_unit(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        agent: AgentRow,
        meta: TxMeta,
        esc: _Escalation,
        now: int,
        outbox: _Outbox,
    ) -> None:
        details = self._escalation_wait(uow, row, agent, meta, esc, now)
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
        """Clear ``signed`` for broadcast, send it (retrying, rebuilding if stale), confirm.

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
        adapter = self._adapter_of(row)
        attempt = 0
        recorded = False
        # the row as its admission wrote it, while no other write of this call followed
        held = row if cleared else None
        while True:
            if held is not None and not cleared:
                held = None  # sent again: cleared or rebuilt by another write since
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
        final = self.apply_chain_status(tx_id, status, held=held)
        return final if final is not None else self.get_row(tx_id)

    def _adapter_of(self, row: TransactionRow) -> ChainAdapter:
        """The adapter of the network ``row`` runs on (its agent's, when not recorded)."""
        network = str(self._meta(row).get("network") or "")
        adapter = self.adapters.get((row.chain, network))
        if adapter is None:
            with self.db.read() as uow:
                agent = uow.agents.get(row.agent_id)
            assert agent is not None
            adapter = self.adapter_for(agent.chain, agent.network)
        return adapter

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
            stop = _broadcast_stop(uow, uow.agents.get(row.agent_id))
            if stop is not None:
                self._stop_broadcast(uow, row, stop, recovering=recovering, now=now, outbox=outbox)
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

    def _stop_broadcast(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        stop: tuple[str, str],
        *,
        recovering: bool,
        now: int,
        outbox: _Outbox,
    ) -> None:
        """Bytes stopped before they leave: a fresh EXECUTING row is CANCELLED; one whose
        bytes may have been sent is held (one TX_RECOVERED row per reason)."""
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
            uow.transactions.update_fields(row.id, metadata=meta)
            uow.audit.append(
                E.TX_RECOVERED,
                actor="system",
                now=now,
                agent_id=row.agent_id,
                tx_id=row.id,
                details={"status": row.status, "action": "held", "reason": code},
            )

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
        """A stale transaction (blockhash expired, nonce used) is rebuilt and signed again,
        at most ``_MAX_REBUILDS`` times; stale once more after that, it is FAILED.

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
        rebuilds = _rebuilds(meta)
        if rebuilds >= _MAX_REBUILDS:
            self._fail(tx_id, exc, expected=(S.EXECUTING, S.SUBMITTED), tx_hash=old_hash)
            return None
        with self.db.read() as uow:
            agent = uow.agents.get(row.agent_id)
        assert agent is not None
        adapter = self.adapter_for(agent.chain, agent.network)
        previous = meta.get("signed", {})
        try:
            nonce = self._replacement_nonce(adapter, agent, tx_id, previous.get("nonce"))
            columns = _columns(row)
            signed, simulation = self._build_sign(adapter, agent, meta, columns, nonce=nonce)
        except (ChainError, InvalidInputError, StateError) as build_exc:
            self._fail(tx_id, build_exc, expected=(S.EXECUTING, S.SUBMITTED), tx_hash=old_hash)
            return None
        outcome = self._record_rebuilt(
            tx_id, agent, old_hash, rebuilds, previous, signed, simulation, exc
        )
        if outcome is None:
            return None
        if outcome == "duplicate":
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

    def _record_rebuilt(
        self,
        tx_id: str,
        agent: AgentRow,
        old_hash: str | None,
        rebuilds: int,
        previous: SignedMeta,
        signed: SignedTx,
        simulation: str,
        exc: ChainError,
    ) -> Literal["recorded", "duplicate"] | None:
        """The rebuild's short write: the new bytes replace ``old_hash`` (TX_RETRY) if the row
        still carries them and their nonce is still free; ``"duplicate"`` when the bytes are
        another live transaction's; ``None`` when they are dropped (another worker rebuilt
        first, the row moved on, or the nonce was taken meanwhile)."""
        now = self.clock.now()
        with self._tx_write(tx_id) as uow:
            current = uow.transactions.get(tx_id)
            if current is None or current.status not in (S.EXECUTING, S.SUBMITTED):
                return None
            meta = self._meta(current)
            if current.tx_hash != old_hash or _rebuilds(meta) != rebuilds:
                return None  # another worker rebuilt it first: these bytes are dropped
            if signed.nonce is not None and signed.nonce != self._reserve_nonce(
                uow, agent, exclude=tx_id, hint=signed.nonce
            ):
                # Another transaction reserved that nonce meanwhile: these bytes are dropped;
                # the row keeps bytes that cannot land, so the next status check (DROPPED)
                # rebuilds it again.
                return None
            try:
                self._take_hash(uow, current, signed)
            except _DuplicateBytes:
                return "duplicate"
            meta["rebuilt"] = rebuilds + 1
            # the replaced bytes keep their hash (the row's tx_hash moves to the new bytes)
            meta["replaced"] = {**previous, "hash": previous.get("hash", old_hash or "")}
            note_simulation(meta, simulation)
            meta["signed"] = _signed_json(signed)
            self._move(
                uow,
                current,
                S.EXECUTING,
                event=E.TX_RETRY,
                actor="system",
                now=now,
                details={
                    "rebuilt": rebuilds + 1,
                    "reason": exc.code,
                    "old_hash": previous.get("hash", old_hash),
                    "tx_hash": signed.tx_hash,
                    **({} if signed.nonce is None else {"nonce": signed.nonce}),
                },
                tx_hash=signed.tx_hash,
                metadata=meta,
            )
            uow.commit()
        return "recorded"

    def _replacement_nonce(
        self, adapter: ChainAdapter, agent: AgentRow, tx_id: str, previous: object
    ) -> int | None:
        """The nonce of a rebuilt transaction (``None`` on chains without nonces).

        Bytes are only rebuilt when they can never land: their first sending was refused as
        stale, or the chain proves them absent. On a nonce chain both mean another
        transaction (of this agent, possibly from another process) used their nonce: reusing
        it would be refused again. The replacement takes the lowest nonce from the node's
        pending count that no in-flight row holds; the write that records it checks that
        again under its lock.
        """
        if previous is None:
            return None
        if not plans.has_nonces(adapter):
            return int(str(previous))
        pending = adapter.pending_nonce(agent.public_key)
        with self.db.read() as uow:
            return self._reserve_nonce(uow, agent, exclude=tx_id, hint=pending)

    def apply_chain_status(
        self, tx_id: str, status: ChainTxStatus, *, held: TransactionRow | None = None
    ) -> TransactionRow | None:
        """Record what the chain says about a submitted transaction.

        ``held``: the row as this process last wrote it, when it knows no write followed
        (admission's presigned row): a confirmation then moves it without reading it first
        (:meth:`_confirm_held`); a row no longer as held is read and moved as usual.

        Returns the row as this call committed it (CONFIRMED / FAILED), else ``None``
        (nothing final to record, or another writer got there first)."""
        now = self.clock.now()
        outbox = _Outbox()
        if held is not None and held.id == tx_id and status.state == ChainTxState.CONFIRMED:
            moved = self._confirm_held(held, status, now, outbox)
            if moved is not None:
                self._publish(outbox)
                return moved
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
            self._record_outcome(uow, row, status, now, outbox)
            final = uow.transactions.get(tx_id)  # the session's row, as moved above
            uow.commit()
        self._publish(outbox)
        return final

    def _confirm_held(
        self, held: TransactionRow, status: ChainTxStatus, now: int, outbox: _Outbox
    ) -> TransactionRow | None:
        """CONFIRMED, as :meth:`_record_outcome` records it, for a row held as last written:
        one compare-and-swap on every column of ``held`` (:func:`transition_held`, which
        also reads the audit chain's head and the channels' generation), then TX_CONFIRMED.
        The move changes no usage bucket (SUBMITTED and CONFIRMED both spend; the audit row
        is no refusal), so the commit seals none. The notification carries the channels'
        generation read under the lock (:data:`CHANNELS_KEY`): it goes to the channels as
        committed with the move. ``None``: the row is not as held, nothing was written."""
        meta = self._meta(held)
        if status.fee is not None:
            meta["fee"] = str(status.fee)
        with self.db.write(agent_id=held.agent_id) as uow:
            row = transition_held(
                uow,
                held,
                S.CONFIRMED,
                event=E.TX_CONFIRMED,
                actor="system",
                now=now,
                details={"fee": meta.get("fee"), "block": status.block},
                executed_at=now,
                metadata=meta,
                state_keys=(CHANNELS,),
            )
            if row is None:
                return None
            read, generation = uow.state.held(CHANNELS)
            uow.buckets_untouched()
            uow.commit()
        extra: dict[str, Any] = {ROW_KEY: row}
        if read and generation is not None:
            extra[CHANNELS_KEY] = Observed(self.db, CHANNELS, generation)
        outbox.add(E.TX_CONFIRMED, tx_id=row.id, agent_id=row.agent_id, **extra)
        return row

    def _record_outcome(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        status: ChainTxStatus,
        now: int,
        outbox: _Outbox,
    ) -> None:
        """A submitted row CONFIRMED or FAILED as the chain says, with the fee it paid."""
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
            outbox.add(E.TX_CONFIRMED, tx_id=row.id, agent_id=row.agent_id, **{ROW_KEY: row})
            return
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


def _columns(row: TransactionRow) -> SimpleNamespace:
    """The columns of ``row`` that give its request and effects whole with its metadata
    (:func:`~waiaas.pipeline.txmeta.request_of`, :func:`~waiaas.pipeline.txmeta.effects_of`),
    kept apart from the row, which its unit of work may expire."""
    return SimpleNamespace(type=row.type, to_address=row.to_address, amount=row.amount)


def _rebuilds(meta: TxMeta) -> int:
    """How many times the row's bytes were rebuilt (``rebuilt``: a count; ``true`` in rows
    written before it was counted, meaning once)."""
    value = meta.get("rebuilt")
    if value is True:
        return 1
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
