"""The owner's and the operator's actions: approve, reject, cancel, resolve, and containment
of a suspended agent's transactions."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from waiaas.chains.base import (
    ChainAdapter,
    ChainTxState,
)
from waiaas.db import UnitOfWork
from waiaas.db.tables import AgentRow, ApprovalRow, TransactionRow
from waiaas.errors import (
    ApprovalError,
    AuthError,
    ChainError,
    InvalidTransitionError,
    NotFoundError,
    StateError,
    TamperDetectedError,
)
from waiaas.pipeline import approvals, plans
from waiaas.pipeline.base import E, S, _Outbox, _PipelineBase, log
from waiaas.pipeline.gate import agent_context as approvals_context
from waiaas.pipeline.records import signed_from_json as _signed_from_json
from waiaas.pipeline.txmeta import (
    ApprovalMeta,
    TxMeta,
    asset_of,
    effects_of,
    network_fee_of,
    request_of,
)
from waiaas.types import Tier


def _chain_id(adapter: ChainAdapter) -> int | None:
    value = getattr(adapter, "chain_id", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class OwnerStage(_PipelineBase):
    """The owner's decisions and the operator's actions on transactions."""

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
            self._renew_approval(uow, row, old, agent_id, owner, now, outbox)
        return touched, outbox

    def _renew_approval(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        old: ApprovalRow,
        agent_id: str,
        owner: str,
        now: int,
        outbox: _Outbox,
    ) -> None:
        """A fresh approval for ``row`` addressed to the new ``owner`` (new id, same expiry),
        in place of ``old``: its request re-sealed and APPROVAL_INVALIDATED recorded."""
        uow.session.delete(old)
        uow.session.flush()
        fresh = self._new_approval(uow, row.id, old.expires_at, now, required_by=old.required_by)
        meta = self._meta(row)
        previous = (meta.get("approval") or {}).get("owner")
        # Keep what the approval request fixed (SIWE domain / URI, chain id, the text of
        # every effect); only the request id, the owner and the expiry are new.
        kept = (meta.get("approval") or ApprovalMeta()).copy()
        kept.pop("plan_digest", None)
        meta["approval"] = {**kept, "id": fresh.id, "owner": owner, "expires_at": fresh.expires_at}
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
        outbox.add(E.APPROVAL_INVALIDATED, tx_id=row.id, agent_id=agent_id, reason="owner changed")

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
        self._ask_chain_before_resolving(row, meta)
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
            self._settle_resolved(uow, current, landed, evidence, now, outbox)
            uow.commit()
        self._publish(outbox)
        return self.get_row(tx_id)

    def _ask_chain_before_resolving(self, row: TransactionRow, meta: TxMeta) -> None:
        """The chain's word before the operator's: a final status it knows is recorded and
        the resolution refused (StateError), as it is while the chain says pending. A chain
        that cannot be asked (no adapter, no stored bytes, a node error) leaves it to the
        operator."""
        tx_id = row.id
        stored = meta.get("signed")
        adapter = self.adapters.get((row.chain, str(meta.get("network") or "")))
        if not stored or adapter is None:
            return
        try:
            status = adapter.get_status(_signed_from_json(row.chain, stored, row.tx_hash))
        except ChainError as exc:
            log.warning("status of %s unavailable; trusting the operator: %s", tx_id, exc)
            return
        if status.state in (ChainTxState.CONFIRMED, ChainTxState.FAILED):
            self.apply_chain_status(tx_id, status)
            raise StateError(
                f"the chain knows transaction {tx_id}: it is {status.state.value}; "
                "recorded as the chain says",
                tx_id=tx_id,
            )
        if status.state == ChainTxState.PENDING:
            raise StateError(f"transaction {tx_id} is pending on chain; wait for it", tx_id=tx_id)

    def _settle_resolved(
        self,
        uow: UnitOfWork,
        current: TransactionRow,
        landed: bool,
        evidence: str,
        now: int,
        outbox: _Outbox,
    ) -> None:
        """The operator's resolution: CONFIRMED when it landed, else FAILED (NOT_LANDED)."""
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
            outbox.add(E.TX_CONFIRMED, tx_id=current.id, agent_id=current.agent_id)
            return
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
            asset=asset_of(meta),
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
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        approval: ApprovalRow,
        meta: TxMeta,
        row: TransactionRow,
    ) -> ApprovalMeta:
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
        effects = plans.stored_effects(meta, row)
        out: ApprovalMeta = {
            "id": approval.id,
            "owner": agent.owner_address,
            "expires_at": approval.expires_at,
            "domain": self.config.siwe_domain(),
            "uri": self.config.siwe_uri(),
            "chain_id": _chain_id(adapter),
        }
        request = request_of(meta, row) or {}
        asset = asset_of(meta)
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
        fee = describe_fee(agent.chain, network_fee_of(meta), effects_of(meta, row))
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
            refusal = self._check_decision(uow, row, approval, req, signature, action, now, outbox)
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
                self._record_decision(uow, row, approval, req, signature, approve, now, outbox)
                uow.commit()
        self._publish(outbox)
        if refusal is not None:
            raise refusal
        if approve:
            self.hooks.stage("approved", tx_id)
            return self.execute(tx_id)
        return self.get_row(tx_id)

    def _check_decision(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        approval: ApprovalRow,
        req: approvals.ApprovalRequest,
        signature: str,
        action: approvals.Action,
        now: int,
        outbox: _Outbox,
    ) -> ApprovalError | None:
        """Whether the owner's decision counts: not decided before, still QUEUED, not
        expired (an expired one is ended here), signed by the owner over this message. An
        approval binds the plan digest the owner read (sealed with the row). Returns the
        refusal, or ``None``."""
        tx_id = row.id
        if approval.approved_at is not None or approval.rejected_at is not None:
            return ApprovalError(
                "this approval was already decided; a signature counts once",
                tx_id=tx_id,
                reason="already_decided",
            )
        if row.status != S.QUEUED:
            return ApprovalError(f"transaction is {row.status}", tx_id=tx_id, reason="not_queued")
        if now >= approval.expires_at:  # SIWE: not valid at the expiration time
            self._expire(uow, row, approval, now, outbox)
            return ApprovalError("the approval window has expired", tx_id=tx_id, reason="expired")
        try:
            approvals.verify_signature(
                approvals.build_message(req, action),
                signature,
                req.owner_address,
                tx_id=tx_id,
            )
            if action == "approve" and req.plan_digest is not None:
                # The approval binds to the digest the owner read; execution
                # refuses any other plan.
                meta = self._meta(row)
                meta.setdefault("approval", {})["plan_digest"] = req.plan_digest
                uow.transactions.update_fields(tx_id, metadata=meta)
                self._seal_tx(uow, tx_id)  # the approved digest is sealed too
        except ApprovalError as exc:
            return exc
        return None

    def _record_decision(
        self,
        uow: UnitOfWork,
        row: TransactionRow,
        approval: ApprovalRow,
        req: approvals.ApprovalRequest,
        signature: str,
        approve: bool,
        now: int,
        outbox: _Outbox,
    ) -> None:
        """The owner's accepted decision: the approval decided (once), TX_APPROVED or
        TX_REJECTED, and a rejected transaction CANCELLED."""
        tx_id = row.id
        if not uow.approvals.decide(approval.id, approved=approve, now=now, signature=signature):
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
