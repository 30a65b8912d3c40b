"""Reads for the owner and operator: transactions, audit pages, budget usage, sessions,
what a person sees of a transaction, and audit verification.

:class:`QueryService` validates the arguments, reads through the repositories and maps rows
to the public types (:class:`~waiaas.types.TransactionInfo`, :class:`TransactionResult`,
:class:`~waiaas.types.AuditEntry`, ...). ``Wallet`` delegates to it; the public documentation
of each operation is on the ``Wallet`` method of the same name.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from waiaas import integrity
from waiaas._validate import MAX_TIME, check_id, check_time, shown
from waiaas.chains.base import native_asset_of
from waiaas.clock import Clock
from waiaas.config import WalletConfig
from waiaas.db import Database
from waiaas.db.engine import check_path
from waiaas.db.faults import stored_json
from waiaas.db.repositories import AuditRecord, SealedTx
from waiaas.db.tables import TransactionRow
from waiaas.errors import DatabaseOpenError, InvalidInputError, NotADatabaseError, NotFoundError
from waiaas.keystore import Keystore
from waiaas.pipeline.approvals import ApprovalRequest
from waiaas.pipeline.engine import Pipeline
from waiaas.pipeline.records import decision_of
from waiaas.pipeline.states import FEE_MOVES
from waiaas.pipeline.txmeta import TxMeta, as_meta, asset_of, effects_of, network_fee_of, request_of
from waiaas.plots import BudgetUsage
from waiaas.policy import Decision
from waiaas.policy.model import POLICY_DENIED
from waiaas.services.agents import AgentService
from waiaas.services.policies import PolicyService
from waiaas.sessions import SessionList, SessionManager
from waiaas.types import (
    AuditCheckpoint,
    AuditEntry,
    AuditEvent,
    AuditPage,
    AuditReport,
    Severity,
    Tier,
    TransactionInfo,
    TransactionList,
    TxStatus,
    TxType,
)
from waiaas.web.display import TxDisplay, describe_transaction

__all__ = [
    "QueryService",
    "TransactionResult",
    "agent_result",
    "audit_entry",
    "tx_info",
    "tx_result",
]


class TransactionResult(TransactionInfo):
    """What ``send`` returns: the transaction as it stands, plus the policy decision.

    Attributes:
        decision: the policy decision: whole (every reason with its sentence and figures,
            the budgets checked) where the request was refused, queued or fired
            AUTO_STOP; for an allowed INSTANT or NOTIFY request its outcome, tier and fees
            (see :class:`TransactionInfo`).
    """

    decision: Decision | None = None


def _fields(row: TransactionRow) -> dict[str, Any]:
    """The public fields of a transaction row (its stored decision under ``_decision``)."""
    meta = as_meta(
        stored_json(row.metadata_json, table="transactions", column="metadata", default={})
    )
    err = meta.get("error")
    spend = _spend(row.spend)
    return {
        "id": row.id,
        "agent_id": row.agent_id,
        "session_id": row.session_id,
        "chain": row.chain,
        "network": meta.get("network"),
        "type": TxType(row.type),
        "status": TxStatus(row.status),
        "tier": Tier(row.tier) if row.tier else None,
        "tx_hash": row.tx_hash,
        "amount": int(row.amount) if row.amount is not None else None,
        "to_address": row.to_address,
        "asset": asset_of(meta),
        "request": request_of(meta, row),
        "created_at": row.created_at,
        "queued_at": row.queued_at,
        "executed_at": row.executed_at,
        "execute_after": meta.get("execute_after"),
        "approval_expires_at": (meta.get("approval") or {}).get("expires_at"),
        "fee": int(meta["fee"]) if meta.get("fee") is not None else None,
        "error": (f"{err.get('code')}: {err.get('message')}" if err else row.error),
        "spend": spend,
        "_decision": decision_of(meta, spend, row),
    }


def _spend(text: str | None) -> dict[str, int] | None:
    """The ``transactions.spend`` column (JSON of decimal strings) as ints, when readable."""
    data = stored_json(text, table="transactions", column="spend", default=None) if text else None
    if not isinstance(data, dict):
        return None
    return {str(k): int(v) for k, v in data.items() if isinstance(v, str) and v.isdigit()}


def tx_info(row: TransactionRow) -> TransactionInfo:
    """The public view of a transaction row."""
    data = _fields(row)
    data.pop("_decision")
    return TransactionInfo(**data)


def tx_result(row: TransactionRow) -> TransactionResult:
    """The public view of a transaction row, with its policy decision."""
    data = _fields(row)
    decision = data.pop("_decision")
    return TransactionResult(
        **data, decision=Decision.model_validate(decision) if decision else None
    )


def agent_result(row: TransactionRow) -> TransactionResult:
    """A transaction as its agent (the session holder) may see it: the decision redacted
    (outcome, tier, the deciding rule's kind; no budgets, thresholds, lists or policy ids)
    and a policy denial's ``error`` reduced to what the agent's denial said. The owner and
    operator read the full row with ``Wallet.get_transaction``."""
    from waiaas.policy.explain import agent_denial, redact_decision

    data = _fields(row)
    stored = data.pop("_decision")
    full = Decision.model_validate(stored) if stored else None
    error = data["error"]
    if isinstance(error, str) and error.startswith(POLICY_DENIED):
        if full is not None and not full.allowed:
            text = agent_denial(full, chain=row.chain).message
        elif row.tier is None:  # refused at admission: it needed an owner it does not have
            text = agent_denial(None, [{"type": "APPROVAL", "message": ""}]).message
        else:
            text = "denied when re-checked before execution"
        data["error"] = f"{POLICY_DENIED}: denied by policy: {text}"
    return TransactionResult(**data, decision=redact_decision(full) if full else None)


#: The audit rows that may leave values to their transaction's row (:func:`_slim`).
_SLIM_EVENTS = frozenset({AuditEvent.TX_REQUESTED.value, *(e.value for e in FEE_MOVES)})

#: The moves into a final status whose audit row may leave its ``fee`` to the row.
_FINAL_MOVES = frozenset(e.value for e in FEE_MOVES)


def requested_details(
    event_type: str, details: dict[str, Any], tx: SealedTx | TransactionRow | None
) -> dict[str, Any]:
    """The details of a transaction's audit row as written before they were slimmed: a
    TX_REQUESTED row without the request's ``type`` (written for a sealed row) has the
    request in short put back from the transaction's row (``type``, ``amount``,
    ``to_address``, its ``asset`` and ``plan_digest``) and, when it names none, its tier
    ``INSTANT``; a move into a final status without its ``fee`` the fee its row keeps (both
    stored once, in the row, under its MAC). ``tx``: the row, checked (``None``: missing or
    not verified; the details are returned as stored)."""
    if tx is None:
        return details
    return _filled(event_type, details, tx, _row_meta(tx))


def _row_meta(tx: SealedTx | TransactionRow) -> TxMeta:
    return as_meta(
        stored_json(tx.metadata_json, table="transactions", column="metadata", default={})
    )


def _filled(
    event_type: str, details: dict[str, Any], tx: SealedTx | TransactionRow, meta: TxMeta
) -> dict[str, Any]:
    """:func:`requested_details` with the row's metadata already decoded (``meta``)."""
    requested = event_type == AuditEvent.TX_REQUESTED.value
    if requested and "type" not in details:  # an admitted request, its row sealed
        summary = {
            "type": _text(tx.type),
            "amount": _text(tx.amount),
            "asset": asset_of(meta),
            "to": _text(tx.to_address),
            "tier": Tier.INSTANT.value,  # the default, left out
            "plan_digest": meta.get("plan_digest"),
        }
        return {**{k: v for k, v in summary.items() if v is not None}, **details}
    if not requested and "fee" not in details and isinstance(meta.get("fee"), str):
        return {"fee": meta["fee"], **details}
    return details


def _text(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _slim(event_type: str, details: dict[str, Any]) -> bool:
    """Whether an audit row's details leave values to its transaction's row
    (:func:`requested_details`)."""
    if event_type == AuditEvent.TX_REQUESTED.value:
        return "type" not in details
    return event_type in _FINAL_MOVES and "fee" not in details


def audit_entry(row: AuditRecord, tx: SealedTx | TransactionRow | None = None) -> AuditEntry:
    """The public view of an audit row (``tx``: its transaction's row, checked, whose
    columns give back what the audit row leaves to them: :func:`requested_details`)."""
    details = stored_json(row.details, table="audit_log", column="details", default={})
    if tx is not None and _slim(row.event_type, details):
        details = requested_details(row.event_type, details, tx)
    return _entry(row, details)


def _entry(row: AuditRecord, details: Any) -> AuditEntry:
    assert row.id is not None
    return AuditEntry(
        id=row.id,
        timestamp=row.timestamp,
        event_type=row.event_type,
        actor=row.actor,
        agent_id=row.agent_id,
        session_id=row.session_id,
        tx_id=row.tx_id,
        details=details,
        severity=Severity(row.severity),
        ip_address=row.ip_address,
    )


def _page_entries(
    rows: Sequence[AuditRecord], details: Sequence[Any], txs: Mapping[str, SealedTx]
) -> tuple[AuditEntry, ...]:
    """The public views of a page's audit ``rows`` (their ``details`` decoded once), slim
    rows filled back from their checked transaction rows ``txs``, each row's metadata
    decoded once however many of its audit rows the page holds."""
    metas: dict[str, TxMeta] = {}
    out = []
    for row, found in zip(rows, details, strict=True):
        tx = txs.get(row.tx_id or "")
        if tx is not None and _slim(row.event_type, found):
            meta = metas.get(tx.id)
            if meta is None:
                meta = metas[tx.id] = _row_meta(tx)
            found = _filled(row.event_type, found, tx, meta)
        out.append(_entry(row, found))
    return tuple(out)


def _check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise InvalidInputError("limit must be an int from 1 to 1000", field="limit")
    return limit


def _check_event_types(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidInputError(
            "event_types must be a list of audit event types", field="event_types"
        )
    out = []
    for item in value:
        try:
            out.append(AuditEvent(item).value)
        except (ValueError, TypeError):
            raise InvalidInputError(
                f"unknown audit event type {shown(item)}", field="event_types"
            ) from None
    return out or None


def _check_severities(value: object) -> list[str] | None:
    if value is not None and (isinstance(value, str | bytes) or not isinstance(value, Sequence)):
        raise InvalidInputError("severities must be a list of severities", field="severities")
    if not value:
        return None
    try:
        return [Severity(s).value for s in value]
    except (ValueError, TypeError):
        raise InvalidInputError("unknown severity", field="severities") from None


def _check_cursor(cursor: object) -> int | None:
    if cursor is not None and (
        not isinstance(cursor, int) or isinstance(cursor, bool) or not 0 < cursor <= MAX_TIME
    ):
        raise InvalidInputError("cursor must be an int from a previous page", field="cursor")
    return cursor


class QueryService:
    """Listings and mapped reads of transactions, the audit log, budgets and sessions.

    Args:
        db: the opened :class:`~waiaas.db.Database`.
        keystore: the keystore (the audit MAC key, for verification).
        clock: the time source (budget windows).
        config: the wallet configuration.
        pipeline: reads a transaction row, and knows the chain adapters (token decimals).
        sessions: an agent's sessions.
        agents: the agents.
        policies: the SPENDING_LIMIT policies shown in budget usage.

    Example::

        queries = QueryService(db, keystore, clock, config, pipeline, sessions, agents, policies)
        page = queries.audit(agent_id=agent_id, limit=50)
    """

    def __init__(
        self,
        db: Database,
        keystore: Keystore,
        clock: Clock,
        config: WalletConfig,
        pipeline: Pipeline,
        sessions: SessionManager,
        agents: AgentService,
        policies: PolicyService,
    ) -> None:
        self._db = db
        self._keystore = keystore
        self._clock = clock
        self._config = config
        self._pipeline = pipeline
        self._sessions = sessions
        self._agents = agents
        self._policies = policies

    def __repr__(self) -> str:
        return f"QueryService({self._db!r})"

    # ------------------------------------------------------------------ transactions

    def transaction(self, tx_id: str) -> TransactionResult:
        """A transaction by id, with its decision (see ``Wallet.get_transaction``)."""
        return tx_result(self._pipeline.get_row(check_id(tx_id, "tx_id")))

    def transactions(
        self,
        *,
        agent_id: str | None = None,
        status: TxStatus | str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> TransactionList:
        """Transactions, newest first (see ``Wallet.list_transactions``)."""
        limit = _check_limit(limit)
        if status is not None:
            try:
                status = TxStatus(status)
            except ValueError:
                raise InvalidInputError(f"unknown status {shown(status)}", field="status") from None
        if agent_id is not None:
            agent_id = check_id(agent_id, "agent_id")
        if before is not None:
            before = check_id(before, "before")
        with self._db.read() as uow:
            rows = uow.transactions.list(
                agent_id=agent_id, status=status, limit=limit, before_id=before
            )
        return TransactionList(tx_info(r) for r in rows)

    def display(self, tx_id: str) -> TxDisplay:
        """What a person reads about a transaction (see ``Wallet.transaction_display``)."""
        with self._db.read() as uow:
            row = uow.transactions.get(check_id(tx_id, "tx_id"))
            if row is None:
                raise NotFoundError("transaction", tx_id)
            agent = uow.agents.get(row.agent_id)
        data = _fields(row)
        adapter = self._pipeline.adapters.get((row.chain, agent.network if agent else ""))
        lookup = getattr(adapter, "token_decimals", None)
        meta = as_meta(
            stored_json(row.metadata_json, table="transactions", column="metadata", default={})
        )
        return describe_transaction(
            native=native_asset_of(adapter),
            chain=row.chain,
            request=data["request"],
            agent_name=agent.name if agent is not None else row.agent_id,
            agent_id=row.agent_id,
            decision=data["_decision"],
            approval_expires_at=data["approval_expires_at"],
            execute_after=data["execute_after"],
            token_decimals=lookup if callable(lookup) else None,
            effects=effects_of(meta, row),
            network_fee=network_fee_of(meta),
        )

    def approval_link(self, tx_id: str) -> str | None:
        """The owner's approval-page link (see ``Wallet.approval_link``)."""
        from waiaas.web.links import link_token

        req = self._pipeline.approval_request(check_id(tx_id, "tx_id"))
        base = self._config.approvals_url
        if base is None:
            return None
        token = link_token(self._keystore, req.tx_id, req.approval_id, req.expires_at)
        return f"{base}/{req.tx_id}/{token}"

    def approval_for_link(self, tx_id: object, token: object) -> ApprovalRequest | None:
        """The approval an approval-page link opens (see ``Wallet.check_approval_link``)."""
        from waiaas.errors import ApprovalError
        from waiaas.web.links import check_token

        try:
            req = self._pipeline.approval_request(check_id(tx_id, "tx_id"))
        except (NotFoundError, ApprovalError, InvalidInputError):
            # The same HMAC work as for a real transaction: no timing hint that it exists.
            check_token(self._keystore, "-", "-", 0, token)
            return None
        if not check_token(self._keystore, req.tx_id, req.approval_id, req.expires_at, token):
            return None
        return req

    def budget_usage(self, agent_id: str, asset: str) -> BudgetUsage:
        """The agent's spend per rolling window (see ``Wallet.budget_usage``)."""
        from waiaas.plots import build_budget_usage
        from waiaas.policy import normalize_asset_key

        agent = self._agents.get(agent_id)
        if not isinstance(asset, str) or not asset.strip():
            raise InvalidInputError("asset must be 'native' or a token address", field="asset")
        key = normalize_asset_key(asset)
        now = self._clock.now()
        txs: list[TransactionInfo] = []
        before: str | None = None
        while True:
            page = self.transactions(agent_id=agent.id, limit=1000, before=before)
            txs += page
            if len(page) < 1000 or page[-1].created_at <= now - 7 * 86_400:
                break
            before = page[-1].id
        policies = self._policies.list(agent_id=agent.id)
        return build_budget_usage(agent.id, agent.chain, key, now, txs, policies)

    def sessions(self, agent_id: str) -> SessionList:
        """An agent's sessions, oldest first (see ``Wallet.list_sessions``)."""
        return SessionList(self._sessions.list_for_agent(check_id(agent_id, "agent_id")))

    # ------------------------------------------------------------------ audit

    def audit(
        self,
        *,
        agent_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        event_types: Sequence[AuditEvent | str] | None = None,
        severities: Sequence[Severity | str] | None = None,
        tx_id: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> AuditPage:
        """One page of audit entries, newest first (see ``Wallet.audit``)."""
        limit = _check_limit(limit)
        cursor = _check_cursor(cursor)
        if agent_id is not None:
            agent_id = check_id(agent_id, "agent_id")
        if tx_id is not None:
            tx_id = check_id(tx_id, "tx_id")
        since = check_time(since, "since")
        until = check_time(until, "until")
        kinds = _check_event_types(event_types)
        sev = _check_severities(severities)
        with self._db.read() as uow:
            rows = uow.audit.query(
                agent_id=agent_id,
                since=since,
                until=until,
                event_types=kinds,
                severities=sev,
                tx_id=tx_id,
                before_id=cursor,
                limit=limit + 1,
            )
            page = rows[:limit]
            details = [
                stored_json(r.details, table="audit_log", column="details", default={})
                for r in page
            ]
            txs = self._slimmed_rows(uow, page, details)
        entries = _page_entries(page, details, txs)
        next_cursor = entries[-1].id if len(rows) > limit and entries else None
        return AuditPage(entries=entries, next_cursor=next_cursor)

    @staticmethod
    def _slimmed_rows(
        uow: Any, rows: Sequence[AuditRecord], details: Sequence[Any]
    ) -> dict[str, SealedTx]:
        """The transaction rows of the page's slim audit rows (:func:`requested_details`;
        ``details``: the rows' decoded details) whose MAC verifies: a row edited outside
        waiaas gives nothing back (its audit rows read as stored). Rows written before
        (full details) read none."""
        wanted = {
            r.tx_id
            for r, found in zip(rows, details, strict=True)
            if r.tx_id
            and r.event_type in _SLIM_EVENTS
            and isinstance(found, dict)
            and _slim(r.event_type, found)
        }
        out: dict[str, SealedTx] = {}
        for tx in uow.transactions.sealed(sorted(wanted)) if wanted else ():
            if tx.integrity is None:
                continue
            if uow.integrity is not None and not integrity.tx_ok(uow.integrity, tx):
                continue
            out[tx.id] = tx
        return out

    def verify_audit(
        self,
        seal: integrity.Integrity,
        path: str | os.PathLike[str] | None,
        checkpoint: AuditCheckpoint | None,
    ) -> AuditReport:
        """Walk the audit chain of the live database or a backup (see ``Wallet.verify_audit``)."""
        if checkpoint is not None and not isinstance(checkpoint, AuditCheckpoint):
            raise InvalidInputError("checkpoint must be an AuditCheckpoint", field="checkpoint")
        if path is None:
            head = seal.read_head()
            with self._db.read() as uow:
                data = integrity.verify_file(
                    integrity._raw(uow),
                    seal,
                    self._db.location,
                    head=head,
                    checkpoint=checkpoint,
                )
            return AuditReport(**data)
        if not isinstance(path, str | os.PathLike) or not str(path).strip():
            raise InvalidInputError("path must be a file path", field="path")
        target = _backup_file(path)
        uri = f"file:{urllib.parse.quote(str(target))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True)
        except sqlite3.Error as exc:
            raise DatabaseOpenError(
                f"cannot open {str(target)!r}: {exc}", path=str(target)
            ) from exc
        try:
            data = integrity.verify_file(conn, seal, str(target), head=None, checkpoint=checkpoint)
        except sqlite3.DatabaseError as exc:
            raise NotADatabaseError(str(target)) from exc
        finally:
            conn.close()
        return AuditReport(**data)


def _backup_file(path: str | os.PathLike[str]) -> Path:
    """The regular file ``path`` names, checked as :func:`check_path` checks a wallet's.

    Raises:
        InvalidInputError: the path holds a NUL character or a name longer than the file
            system allows, or names an unknown user's home (``~nobody``).
        DatabaseOpenError: nothing, or not a regular file, is at the path.
    """
    try:
        target = Path(path).expanduser().absolute()
    except RuntimeError:  # ~user of an unknown user
        raise InvalidInputError("path names an unknown home directory", field="path") from None
    try:
        is_file = target.is_file()
    except OSError:  # a name too long for the file system, a loop of links ...
        check_path(target)  # raises the error that names it
        raise DatabaseOpenError(f"cannot read {str(target)!r}", path=str(target)) from None
    if not is_file:
        raise DatabaseOpenError(f"{str(target)!r} is not a file", path=str(target))
    check_path(target)
    return target
