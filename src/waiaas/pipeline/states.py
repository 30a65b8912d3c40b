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
    EXECUTING/SUBMITTED ──► EXECUTING   (stale: rebuilt with new bytes, up to 3 times)
    EXECUTING ──► PENDING / QUEUED  (a claim released before any bytes were recorded)

A row is born (inserted by admission) in one of :data:`BORN`: PENDING (to be claimed and
signed), FAILED (denied by policy), or SUBMITTED when admission recorded bytes signed before
its lock for an INSTANT/NOTIFY request: the claim path's PENDING -> EXECUTING -> SUBMITTED in
one step, audited by ONE row, its TX_REQUESTED, whose details also carry the bytes'
``tx_hash`` (and ``nonce``), which the claim path records in its TX_SIGNED row. Databases
written before hold two rows there instead: TX_REQUESTED and TX_SUBMITTED (``from``
PENDING, with ``tx_hash`` and ``nonce``); both forms are read (:func:`audited_move`,
:func:`signing_record`). QUEUED rows are born PENDING and moved in the same commit.

Where a transaction's hash is audited: on the claim path (EXECUTING, its own commit) in the
TX_SIGNED row; on the presigned path in its TX_REQUESTED row (before, its TX_SUBMITTED row
``from`` PENDING), which has no TX_SIGNED row. :func:`signing_record` reads any of them.
Bytes rebuilt after a stale refusal are named by their TX_RETRY row (``rebuilt``,
``old_hash``, ``tx_hash``). The audit row is the hash's tamper-evident copy: the row's
``tx_hash`` column (its lookup) is not covered by the row's MAC, so the audit chain is
what an edited column is checked against.

Every change is ``UPDATE ... WHERE status = <expected>`` and writes its audit row in the same
database transaction; a lost race raises :class:`InvalidTransitionError`.

A move into a final status (CONFIRMED, FAILED, CANCELLED, EXPIRED) is also where the row takes
its final form (:func:`waiaas.pipeline.records.compact_final`: no signed bytes, no plan
instruction list) and its final MAC (:func:`waiaas.integrity.tx_mac`), in the same UPDATE.

An audit row of a move names its statuses (``from``, ``to``) only where its event type does
not already say them (:data:`IMPLIED`): TX_CONFIRMED means ``SUBMITTED -> CONFIRMED``,
TX_SUBMITTED means ``EXECUTING -> SUBMITTED``. :func:`audited_move` reads them back. It names
the session (``session_id``) only where the agent moved it (the actor ``agent:<id>``): the
transaction's session is on its TX_REQUESTED row, and a move by the system, the owner or the
operator was not made through it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from waiaas.db.tables import TransactionRow
from waiaas.db.uow import UnitOfWork
from waiaas.errors import InvalidTransitionError
from waiaas.pipeline.records import compact_final
from waiaas.pipeline.txmeta import as_meta
from waiaas.types import AuditEvent, TxStatus

__all__ = [
    "ALLOWED",
    "BORN",
    "FINAL",
    "IMPLIED",
    "SIGNING_KEYS",
    "audited_move",
    "can_transition",
    "cancel_found",
    "signing_record",
    "transition",
    "transition_held",
]

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

FINAL = frozenset(s for s in TxStatus if s.is_terminal)
"""The statuses nothing leaves."""

E = AuditEvent
IMPLIED: Mapping[AuditEvent, tuple[TxStatus | None, TxStatus]] = {
    E.TX_EXECUTING: (None, S.EXECUTING),
    E.TX_SIGNED: (S.EXECUTING, S.EXECUTING),  # the bytes are recorded; the status stays
    E.TX_SUBMITTED: (S.EXECUTING, S.SUBMITTED),
    # the usual CONFIRMED comes from SUBMITTED; one from EXECUTING (the chain knew the bytes
    # before they were cleared for sending) names it. Rows written before say "from" always.
    E.TX_CONFIRMED: (S.SUBMITTED, S.CONFIRMED),
    E.TX_FAILED: (None, S.FAILED),
    E.TX_CANCELLED: (None, S.CANCELLED),
    E.TX_EXPIRED: (S.QUEUED, S.EXPIRED),
    E.TX_QUEUED: (S.PENDING, S.QUEUED),
}
"""The ``(from, to)`` of a move that its audit event type says: an audit row leaves out a
status its event implies (``None``: the event does not imply where the move came from)."""


def audited_move(event_type: str, details: Mapping[str, Any]) -> tuple[str, str] | None:
    """The ``(from, to)`` statuses of a transaction's audit row, or ``None`` for a row that
    records no status change (a retry, a held transaction, a request).

    A TX_REQUESTED row that names a ``tx_hash`` records a row born SUBMITTED (bytes
    presigned at admission, see the module): ``("PENDING", "SUBMITTED")``."""
    if event_type == AuditEvent.TX_REQUESTED.value and "tx_hash" in details:
        return S.PENDING.value, S.SUBMITTED.value
    try:
        implied = IMPLIED.get(AuditEvent(event_type))
    except ValueError:
        implied = None
    if implied is None:
        if "from" in details and "to" in details:
            return str(details["from"]), str(details["to"])
        return None
    source = details.get("from", implied[0])
    if source is None:
        return None
    return str(source), str(details.get("to", implied[1]))


#: What a presigned request's TX_REQUESTED row records of the signing (the rest of its
#: details are the request's): :func:`signing_record` returns these.
SIGNING_KEYS = ("tx_hash", "nonce")


def signing_record(event_type: str, details: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The signing a transaction's audit row records, or ``None``: the row's details, which
    name the bytes' ``tx_hash`` (and ``nonce`` where the chain has one).

    The claim path records it in a TX_SIGNED row; the presigned path in its TX_REQUESTED
    row (see the module), or, in a database written before, its TX_SUBMITTED row (``from``
    PENDING), the only TX_SUBMITTED row that names a hash (of a TX_REQUESTED row, only its
    :data:`SIGNING_KEYS` are returned). A transaction has one such row:
    bytes rebuilt after a stale refusal are recorded by a TX_RETRY row (``rebuilt``)
    instead."""
    if event_type == AuditEvent.TX_SIGNED.value:
        return details
    if event_type == AuditEvent.TX_SUBMITTED.value and "tx_hash" in details:
        return details
    if event_type == AuditEvent.TX_REQUESTED.value and "tx_hash" in details:
        return {k: details[k] for k in SIGNING_KEYS if k in details}
    return None


def _move_details(
    event: AuditEvent, current: TxStatus, target: TxStatus, details: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The details of a move's audit row: ``from`` and ``to`` unless the event implies them."""
    payload: dict[str, Any] = {"from": current.value, "to": target.value}
    payload.update(details or {})
    implied_from, implied_to = IMPLIED.get(event, (None, None))
    if implied_from is not None and payload.get("from") == implied_from.value:
        del payload["from"]
    if implied_to is not None and payload.get("to") == implied_to.value:
        del payload["to"]
    return payload


#: The audit events of a final move that may leave their ``fee`` to the row (:func:`_unsealed`).
FEE_MOVES = frozenset({AuditEvent.TX_CONFIRMED, AuditEvent.TX_FAILED})


def _unsealed(
    event: AuditEvent, details: Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """``details`` of a move's audit row (a :data:`FEE_MOVES` event) without the ``fee`` its
    row now keeps under its final MAC (``fields`` resealed in the final form,
    :func:`_finalized`): the fee paid is stored once, in the row
    (:func:`waiaas.services.queries.audit_entry` reads it back)."""
    if event not in FEE_MOVES or not details or "fee" not in details:
        return details
    if "integrity" not in fields:
        return details
    meta = fields.get("metadata")
    try:
        fee = json.loads(meta).get("fee") if isinstance(meta, str) else None
    except ValueError:
        return details
    if fee is None or details["fee"] != fee:
        return details
    return {k: v for k, v in details.items() if k != "fee"}


def _final_fields(
    uow: UnitOfWork, tx_id: str, target: TxStatus, fields: dict[str, Any]
) -> dict[str, Any]:
    """``fields`` of a move into ``target`` (a final status) with the row's final metadata
    (:func:`compact_final`) and its final MAC.

    The MAC the row carries is checked first: a row changed outside waiaas keeps what the
    attacker left (the plan included) and its stale MAC, so every later check still names
    it. A sealed row that cannot be resealed here (no keys loaded) keeps its plan, which
    its MAC covers."""
    row = uow.transactions.get(tx_id)
    if row is None:
        return fields  # the compare-and-swap below reports it
    return _finalized(uow.integrity, row, target, fields)


def _finalized(
    integ: Any, row: TransactionRow, target: TxStatus, fields: dict[str, Any]
) -> dict[str, Any]:
    """:func:`_final_fields` of ``row`` as read (or held: :func:`transition_held`)."""
    from waiaas import integrity

    meta: Any = fields.get("metadata", fields.get("metadata_json", row.metadata_json))
    if isinstance(meta, str | bytes):
        try:
            meta = json.loads(meta)
        except ValueError:
            return fields
    if not isinstance(meta, dict):
        return fields
    sealed = row.integrity is not None
    if sealed and integ is None:
        compacted = compact_final(as_meta(meta), keep_plan=True)
    elif sealed and not integrity.tx_ok(integ, row):
        return fields  # tampered: left as found (its stale MAC keeps saying so)
    else:  # resealed below (when sealed): its compact decision is left out
        tier = fields.get("tier", row.tier) if sealed else None
        tier = None if tier is None else str(getattr(tier, "value", tier))
        compacted = compact_final(as_meta(meta), tier=tier)
    out = {k: v for k, v in fields.items() if k != "metadata_json"}
    text = json.dumps(compacted, separators=(",", ":"))
    out["metadata"] = text
    if sealed and integ is not None:
        view = {
            name: getattr(row, name)
            for name in ("id", "agent_id", "chain", "type", "amount", "to_address", "tier")
        }
        view.update({k: v for k, v in fields.items() if k in view})
        out["integrity"] = integrity.tx_mac(
            integ, SimpleNamespace(**view, status=target.value, metadata_json=text)
        )
    return out


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

    Into a final status the row also takes its final form and MAC (see the module). The
    audit row names ``session_id`` only when ``actor`` is the agent (see the module).

    Raises:
        InvalidTransitionError: the move is not allowed, or the row was not in ``current``
            (another thread or process got there first).
    """
    if not can_transition(current, target):
        raise InvalidTransitionError("transaction", tx_id, current, target)
    if target in FINAL:
        fields = _final_fields(uow, tx_id, target, fields)
    if not uow.transactions.cas_status(tx_id, current.value, target.value, **fields):
        row = uow.transactions.get(tx_id)
        found = row.status if row is not None else "missing"
        raise InvalidTransitionError("transaction", tx_id, f"{found} (expected {current})", target)
    if event is not None:
        details = _unsealed(event, details, fields)
        _audit_move(uow, tx_id, current, target, event, actor, now, agent_id, session_id, details)


def _audit_move(
    uow: UnitOfWork,
    tx_id: str,
    current: TxStatus,
    target: TxStatus,
    event: AuditEvent,
    actor: str,
    now: int,
    agent_id: str | None,
    session_id: str | None,
    details: Mapping[str, Any] | None,
) -> None:
    """The audit row of a move (see the module for what it names)."""
    uow.audit.append(
        event,
        actor=actor,
        now=now,
        agent_id=agent_id,
        # the transaction's session is on its TX_REQUESTED row (see the module)
        session_id=session_id if actor.startswith("agent:") else None,
        tx_id=tx_id,
        details=_move_details(event, current, target, details),
    )


def transition_held(
    uow: UnitOfWork,
    held: TransactionRow,
    target: TxStatus,
    *,
    event: AuditEvent | None,
    actor: str,
    now: int,
    details: Mapping[str, Any] | None = None,
    state_keys: Sequence[str] = (),
    **fields: Any,
) -> TransactionRow | None:
    """:func:`transition` of a row the caller holds whole, as it last wrote it, without
    reading it: the compare-and-swap names every column of ``held`` (``UPDATE ... WHERE
    id = ? AND status = ? AND tx_hash = ? AND metadata = ? AND integrity = ? AND ...``), so
    it moves the row only if nothing about it changed since, which is what :func:`transition`
    would read and check (its MAC, its status, its agent). Where the dialect returns from an
    UPDATE, the same statement reads the audit chain's head for the move's audit row, under
    the chain's lock (:meth:`UnitOfWork.audit_lock`, taken first), and the values of
    ``state_keys`` (``wallet_state``; ``uow.state.held(key)`` then answers them; elsewhere
    they are not read).

    Returns:
        The row as moved, or ``None`` when it is not as held (nothing was written: the
        caller reads it and uses :func:`transition`).

    Raises:
        InvalidTransitionError: the state machine does not allow the move.
    """
    current = TxStatus(held.status)
    if not can_transition(current, target):
        raise InvalidTransitionError("transaction", held.id, current, target)
    if target in FINAL:
        fields = _finalized(uow.integrity, held, target, fields)
    row = _cas_held(uow, held, target, event is not None, state_keys, fields)
    if row is None:
        return None
    if event is not None:
        details = _unsealed(event, details, fields)
        _audit_move(
            uow,
            held.id,
            current,
            target,
            event,
            actor,
            now,
            held.agent_id,
            held.session_id,
            details,
        )
    return row


def _cas_held(
    uow: UnitOfWork,
    held: TransactionRow,
    target: TxStatus,
    audited: bool,
    state_keys: Sequence[str],
    fields: dict[str, Any],
) -> TransactionRow | None:
    """The compare-and-swap of :func:`transition_held`, reading the chain head (``audited``,
    under the chain's lock) and ``state_keys`` in the same statement where it can."""
    if audited:
        uow.audit_lock()
    heads = uow.audit.head_columns() if audited else ()
    values, keys = uow.state.value_columns(state_keys)
    moved = uow.transactions.cas_held(
        held, target.value, returning=(*heads, *values), returning_params=keys, **fields
    )
    if moved is None:
        return None
    row, read = moved
    if read:
        if heads:
            uow.audit.known_head(*read[: len(heads)])
        for key, value in zip(state_keys, read[len(heads) :], strict=True):
            uow.state.known(key, value)
    return row


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
