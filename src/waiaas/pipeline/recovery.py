"""Crash recovery: transactions left EXECUTING or SUBMITTED are reconciled with the chain
(:meth:`RecoveryStage.reconcile`), held bytes judged again before they are sent."""

from __future__ import annotations

from waiaas.chains.base import ChainTxState
from waiaas.db.tables import TransactionRow
from waiaas.errors import (
    ChainError,
    InvalidTransitionError,
    WaiaasError,
)
from waiaas.pipeline import killswitch
from waiaas.pipeline.base import E, S, _Outbox, _PipelineBase, log
from waiaas.pipeline.claims import _is_claim
from waiaas.pipeline.execution import _Escalation
from waiaas.pipeline.records import signed_from_json as _signed_from_json


class RecoveryStage(_PipelineBase):
    """Transactions a crash left EXECUTING or SUBMITTED, settled with the chain."""

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
        signed = _signed_from_json(row.chain, stored, row.tx_hash)
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
