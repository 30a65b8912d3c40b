"""Due work: queued transactions whose delay has passed, approvals that expired, and stale
claims and unresolved broadcasts to look at again (:meth:`DueStage.process_due`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from waiaas.db import UnitOfWork
from waiaas.db.tables import ApprovalRow, TransactionRow
from waiaas.errors import (
    InvalidTransitionError,
    KeystoreError,
    TamperDetectedError,
    WaiaasError,
)
from waiaas.pipeline.base import S, _Outbox, _PipelineBase, log
from waiaas.pipeline.claims import _is_claim
from waiaas.pipeline.report import DueProblem, DueReport
from waiaas.types import Tier

_SCAN_LIMIT = 1_000_000  # process_due looks at every queued row, as the kill switch does


def _problem(row: TransactionRow, exc: BaseException, *, parked: bool) -> DueProblem:
    if isinstance(exc, WaiaasError):
        code, message = exc.code, exc.message
    else:
        code, message = "INTERNAL_ERROR", f"{type(exc).__name__}: {str(exc)[:200]}"
    return DueProblem(
        tx_id=row.id, agent_id=row.agent_id, code=code, message=message, parked=parked
    )


@dataclass(frozen=True)
class _DueScan:
    """What one pass of due work reads first (:meth:`DueStage._scan_due`)."""

    networks: dict[str, tuple[str, str]]
    queued: Sequence[TransactionRow]
    pending: Sequence[TransactionRow]
    submitted: Sequence[TransactionRow]
    waiting: dict[str, ApprovalRow]


def _expiring(waiting: Mapping[str, ApprovalRow], now: int) -> list[str]:
    """The transactions whose approval the owner never decided and that expired by ``now``."""
    return [
        tx_id
        for tx_id, a in waiting.items()
        if a.approved_at is None and a.rejected_at is None and a.expires_at <= now
    ]


class DueStage(_PipelineBase):
    """Work that falls due with time: queued transactions, expired approvals."""

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
        sessions are swept (a PENDING row whose send still runs in this pipeline is not
        orphaned and is left to it). Every queued row is looked at, so work that is due is never
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
        scan = self._scan_due()
        expired = self._expire_due(_expiring(scan.waiting, now), now)
        counts["expired"] = len(expired)
        for row, kind in self._due_queued(scan, expired, now):
            self._run_due(row, kind, scan.networks, counts, problems)
        for row in scan.pending:
            if row.id in self._live_sends:
                continue  # a send of this pipeline admitted it and runs it now: not orphaned
            self._run_due(row, "resumed", scan.networks, counts, problems, recheck=True)
        for row in scan.submitted:
            self._poll_due(row, scan.networks, counts, problems)
        if counts["no_adapter"]:
            log.warning(
                "%d transaction(s) wait for a chain adapter this wallet was opened without",
                counts["no_adapter"],
            )
        sessions = int(self.sessions.sweep_expired(now))
        return DueReport(sessions=sessions, problems=tuple(problems), **counts)

    def _scan_due(self) -> _DueScan:
        """One read: every agent's network and the rows due work looks at."""
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
        return _DueScan(networks, queued, pending, submitted, waiting)

    def _due_queued(
        self, scan: _DueScan, expired: set[str], now: int
    ) -> Iterator[tuple[TransactionRow, str]]:
        """The QUEUED rows to run now, one by one, with what they count as: a DELAY whose
        time has come (``"delays"``), an APPROVAL the owner approved (``"approved"``)."""
        for row in scan.queued:
            if row.id in expired:
                continue
            approval = scan.waiting.get(row.id)
            if row.tier == Tier.DELAY and int(self._meta(row).get("execute_after", 0)) <= now:
                yield row, "delays"
            elif approval is not None and approval.approved_at is not None:
                yield row, "approved"

    def _due_runnable(
        self, row: TransactionRow, networks: Mapping[str, tuple[str, str]], counts: dict[str, int]
    ) -> bool:
        """Whether this wallet can run ``row`` now (its chain's adapter, an unlocked
        keystore); when not, why is counted."""
        if networks.get(row.agent_id) not in self.adapters:
            counts["no_adapter"] += 1
            return False
        if self.keys.locked:
            counts["locked"] += 1  # resumed once the keystore is unlocked
            return False
        return True

    def _run_due(
        self,
        row: TransactionRow,
        kind: str,
        networks: Mapping[str, tuple[str, str]],
        counts: dict[str, int],
        problems: list[DueProblem],
        *,
        recheck: bool = False,
    ) -> None:
        """Execute ``row`` if this wallet can; counted under ``kind`` when this call won it."""
        if not self._due_runnable(row, networks, counts):
            return
        won = self._execute_due(row, problems, recheck=recheck)
        if won:
            counts[kind] += 1

    def _poll_due(
        self,
        row: TransactionRow,
        networks: Mapping[str, tuple[str, str]],
        counts: dict[str, int],
        problems: list[DueProblem],
    ) -> None:
        """An EXECUTING or SUBMITTED row: a stale claim released and run anew, else the
        chain asked about its bytes (a failure parks it and is reported)."""
        if not self._due_runnable(row, networks, counts):
            return
        if _is_claim(self._meta(row), row):
            # Claimed for signing, nothing recorded: a live worker is on it, or its
            # process died; then the claim is released and the transaction runs anew.
            released = self._release_claim(row.id, None, reason="stale claim")
            if released and self._execute_due(row, problems, recheck=True):
                counts["resumed"] += 1
            return
        try:
            self.reconcile(row.id)
        except (WaiaasError, InvalidTransitionError) as exc:
            log.warning("could not reconcile %s (will retry): %s", row.id, exc)
            problems.append(_problem(row, exc, parked=True))
        except Exception as exc:  # one adapter's bug never stops the pass for others
            log.exception("reconciling %s failed (will retry)", row.id)
            problems.append(_problem(row, exc, parked=True))
        counts["polled"] += 1

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
            err = self._meta(after).get("error")
            if err is not None and err.get("code"):
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
