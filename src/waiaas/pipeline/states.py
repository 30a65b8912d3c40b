"""The transaction state machine (CORE-02 §2.3) and its audited compare-and-swap.

::

    PENDING ──► EXECUTING ──► SUBMITTED ──► CONFIRMED        (INSTANT, NOTIFY)
       │            ▲  │           │
       ▼            │  └► FAILED ◄─┘                           (permanent error, revert)
    QUEUED ─────────┘                                          (DELAY due, APPROVAL approved)
       ├──► CANCELLED   (owner / operator / agent cancel, rejection, kill switch)
       └──► EXPIRED     (approval not given in time)
    PENDING ──► FAILED  (policy denied) ;  PENDING ──► CANCELLED (kill switch)
    EXECUTING ──► CANCELLED  (kill switch / suspension before the bytes were sent)
    EXECUTING/SUBMITTED ──► EXECUTING   (stale: rebuilt once with new bytes)
    EXECUTING ──► PENDING / QUEUED  (a claim released before any bytes were recorded)

A row is born (inserted by admission) in one of :data:`BORN`: PENDING (to be claimed and
signed), FAILED (denied by policy), or SUBMITTED when admission recorded bytes signed before
its lock for an INSTANT/NOTIFY request (audited TX_REQUESTED, TX_SIGNED, TX_SUBMITTED in
one commit: the claim path's PENDING -> EXECUTING -> SUBMITTED in one step). QUEUED rows are
born PENDING and moved in the same commit.

Every change is ``UPDATE ... WHERE status = <expected>`` and writes its audit row in the same
database transaction; a lost race raises :class:`InvalidTransitionError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waiaas.db.tables import TransactionRow
from waiaas.db.uow import UnitOfWork
from waiaas.errors import InvalidTransitionError
from waiaas.types import AuditEvent, TxStatus

__all__ = ["ALLOWED", "BORN", "can_transition", "cancel_found", "transition"]

S = TxStatus
ALLOWED: Mapping[TxStatus, frozenset[TxStatus]] = {
    S.PENDING: frozenset({S.QUEUED, S.EXECUTING, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.EXECUTING, S.CANCELLED, S.EXPIRED, S.FAILED}),
    # EXECUTING -> EXECUTING is a stale rebuild (new bytes replace never-landed ones).
    # EXECUTING -> CANCELLED: the kill switch or a suspension stopped bytes never sent.
    # EXECUTING -> PENDING / QUEUED: a claim released while no signed bytes were recorded
    # (nothing can have been sent: bytes leave only after they are recorded).
    S.EXECUTING: frozenset(
        {S.PENDING, S.QUEUED, S.EXECUTING, S.SUBMITTED, S.CONFIRMED, S.FAILED, S.CANCELLED}
    ),
    S.SUBMITTED: frozenset({S.EXECUTING, S.CONFIRMED, S.FAILED}),
    S.CONFIRMED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}


#: The statuses admission inserts a row in (see the module's docstring).
BORN: frozenset[TxStatus] = frozenset({S.PENDING, S.FAILED, S.SUBMITTED})


def can_transition(current: TxStatus, target: TxStatus) -> bool:
    """Whether the state machine allows ``current -> target``."""
    return target in ALLOWED[current]


def transition(
    uow: UnitOfWork,
    tx_id: str,
    current: TxStatus,
    target: TxStatus,
    *,
    event: AuditEvent | None,
    actor: str,
    now: int,
    agent_id: str | None,
    session_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Move ``tx_id`` from ``current`` to ``target`` (CAS) and append its audit row.

    Raises:
        InvalidTransitionError: the move is not allowed, or the row was not in ``current``
            (another thread or process got there first).
    """
    if not can_transition(current, target):
        raise InvalidTransitionError("transaction", tx_id, current, target)
    if not uow.transactions.cas_status(tx_id, current.value, target.value, **fields):
        row = uow.transactions.get(tx_id)
        found = row.status if row is not None else "missing"
        raise InvalidTransitionError("transaction", tx_id, f"{found} (expected {current})", target)
    if event is not None:
        payload = {"from": current.value, "to": target.value}
        payload.update(details or {})
        uow.audit.append(
            event,
            actor=actor,
            now=now,
            agent_id=agent_id,
            session_id=session_id,
            tx_id=tx_id,
            details=payload,
        )


def cancel_found(
    uow: UnitOfWork, row: TransactionRow, *, actor: str, now: int, code: str, reason: str
) -> bool:
    """Cancel ``row`` from the status it was read in, for a bulk stop (the kill switch, an
    agent's termination): :func:`transition` with a TX_CANCELLED row (``reason`` in its
    details, ``code`` as the stored error).

    Returns:
        ``False`` when another writer moved it first (nothing was written).

    Raises:
        InvalidTransitionError: its status cannot go to CANCELLED.
    """
    current = TxStatus(row.status)
    if not can_transition(current, S.CANCELLED):
        raise InvalidTransitionError("transaction", row.id, current, S.CANCELLED)
    try:
        transition(
            uow,
            row.id,
            current,
            S.CANCELLED,
            event=AuditEvent.TX_CANCELLED,
            actor=actor,
            now=now,
            agent_id=row.agent_id,
            session_id=row.session_id,
            details={"reason": reason},
            error=code,
        )
    except InvalidTransitionError:
        return False  # lost the race: the row is no longer in ``current``
    return True
