"""Repositories: the only code that writes SQL for the tables.

Each repository wraps the unit of work's session. Status changes are compare-and-swap
(``UPDATE ... WHERE id = ? AND status IN (...)``) and report whether they won.
The four CORE-02 §5.4 query patterns are methods here (``SessionRepository.by_token_hash``,
``TransactionRepository.active_for_agent``, ``AuditRepository.agent_range`` and
``PolicyRepository.for_agent``); a test checks their query plans use the intended indexes.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Result, func, or_, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select as sa_select
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col, select

from waiaas.db.chain import AUDIT_COLUMNS, GENESIS_BYTES, row_digest
from waiaas.db.engine import adapt_sql
from waiaas.db.faults import stored_json
from waiaas.db.portable import dialect_of, text_for
from waiaas.db.statements import built, cas_params, compare_and_set, quoted, state_value_sql
from waiaas.db.tables import (
    IN_FLIGHT,
    NOT_CONFIRMED,
    RARE_SEVERITY,
    SEVERITIES,
    AgentRow,
    ApprovalRow,
    AuditRow,
    ChannelRow,
    PolicyRow,
    SessionRow,
    TransactionRow,
    WalletStateRow,
)
from waiaas.errors import StorageError
from waiaas.types import AuditEvent, Severity

__all__ = [
    "ACTIVE_TX_STATUSES",
    "AUDIT_HEAD_COLUMNS",
    "AgentRepository",
    "ApprovalRepository",
    "AuditRecord",
    "AuditRepository",
    "ChannelRepository",
    "PolicyRepository",
    "SealedTx",
    "SessionRepository",
    "StateRepository",
    "TransactionRepository",
    "audit_index",
    "audit_query",
    "read_actor",
    "stored_actor",
]

ACTIVE_TX_STATUSES = ("PENDING", "QUEUED", "EXECUTING", "SUBMITTED")


def _rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (``Session.execute`` types its result as plain)."""
    return int(cast(CursorResult[Any], result).rowcount)


_AUDIT_INSERT = AuditRow.__table__.insert()  # type: ignore[attr-defined]
_AUDIT_HEAD = "SELECT id, row_hash FROM audit_log ORDER BY id DESC LIMIT 1"
#: The audit chain head's ``id`` and ``row_hash`` as two columns of a statement that reads
#: more (for :meth:`AuditRepository.known_head`; run it under the chain's lock).
_AUDIT_HEAD_PAIR = (
    "(SELECT id FROM audit_log ORDER BY id DESC LIMIT 1)",
    "(SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1)",
)
AUDIT_HEAD_COLUMNS = ", ".join(_AUDIT_HEAD_PAIR)
_TX_COLUMNS = [
    (attr.key, attr.columns[0]) for attr in sa_inspect(TransactionRow).mapper.column_attrs
]
_TX_TABLE = TransactionRow.__table__  # type: ignore[attr-defined]
_TX_COLUMN_OF = {attr: column.name for attr, column in _TX_COLUMNS}
_TX_COLUMNS_BY = tuple(_TX_COLUMN_OF.items())  # (attribute, column name), in table order
_TX_ATTRS = tuple(_TX_COLUMN_OF)
_TX_INSERT_SQL = (
    "INSERT INTO transactions ("
    + ", ".join(quoted(name) for name in _TX_COLUMN_OF.values())
    + ") VALUES ("
    + ", ".join("?" * len(_TX_COLUMN_OF))
    + ")"
)


def _sync_loaded(session: Session, cls: type[Any], key: Any, values: Mapping[str, Any]) -> None:
    """After a Core UPDATE of one row: the row's object, if this session has it loaded,
    takes the new values as committed ones (what ``synchronize_session`` would do, without
    the ORM's bulk-update machinery on the hot path; nothing is marked dirty)."""
    loaded = session.identity_map.get(identity_key(cls, key))
    if loaded is not None:
        for attr, value in values.items():
            set_committed_value(loaded, attr, value)


def _update_returning(session: Session) -> bool:
    """Whether ``session``'s dialect returns rows from an UPDATE (a unit of work's session
    knows without building its connection)."""
    known = getattr(session, "update_returning", None)
    if isinstance(known, bool):
        return known
    return bool(session.get_bind().dialect.update_returning)


#: Runs one statement on a unit of work's connection: ``(rowcount, returned rows)``
#: (:meth:`waiaas.db.uow.UnitOfWork.execute`).
Execute = Callable[[str, Sequence[Any]], tuple[int, list[tuple[Any, ...]]]]


class SealedTx(NamedTuple):
    """A transaction row's columns that its MAC covers, and the MAC (``integrity``), under
    the row's attribute names: what :func:`waiaas.integrity.tx_ok` checks and an audit page
    gives back to a slim audit row (:meth:`TransactionRepository.sealed`)."""

    id: Any
    agent_id: Any
    chain: Any
    type: Any
    amount: Any
    to_address: Any
    tier: Any
    status: Any
    metadata_json: Any
    integrity: Any


_SEALED_SQL = (
    "SELECT id, agent_id, chain, type, amount, to_address, tier, status, metadata, integrity "
    "FROM transactions WHERE id IN ({})"
)


class _Repository:
    def __init__(self, session: Session, integrity: Any = None) -> None:
        self.session = session
        # waiaas.integrity.Integrity when the wallet's keys are loaded: rows that carry a MAC
        # get it here, whichever code path writes them.
        self.integrity = integrity
        # Set by the unit of work: its plain DB-API statement (UnitOfWork.execute), for the
        # hot paths' writes built as text (waiaas.db.statements).
        self.execute: Execute | None = None

    def _execute(self, sql: str, params: Sequence[Any]) -> tuple[int, list[tuple[Any, ...]]]:
        if self.execute is None:
            raise StorageError("this repository is not bound to an open unit of work")
        return self.execute(sql, params)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``: where this repository's statements run."""
        return dialect_of(self.session)


_AGENT_ATTRS = tuple(attr.key for attr in sa_inspect(AgentRow).mapper.column_attrs)


class AgentRepository(_Repository):
    """``agents``.

    A row read whole by a plain statement of the unit of work (the session check's live
    read, :meth:`hold`) is what :meth:`get` returns for its id from then on, without the
    ORM: a transient copy, never flushed, which this repository's own updates keep current.
    """

    def __init__(self, session: Session, integrity: Any = None) -> None:
        super().__init__(session, integrity)
        self._held: dict[str, AgentRow] = {}

    def hold(self, row: AgentRow) -> None:
        """Keep ``row``, read as it stands in this unit of work's transaction, as the
        agent's row here; one the session has loaded already (and may have changed) stands
        instead."""
        if row.id in self._held or identity_key(AgentRow, row.id) in self.session.identity_map:
            return
        self._held[row.id] = row

    def _refresh_held(self, agent_id: str) -> None:
        """After an UPDATE of the agent: a held row takes the values now stored."""
        held = self._held.get(agent_id)
        if held is None:
            return
        fresh = self.session.get(AgentRow, agent_id)
        if fresh is None:
            del self._held[agent_id]
            return
        for attr in _AGENT_ATTRS:
            set_committed_value(held, attr, getattr(fresh, attr))

    def add(self, row: AgentRow) -> AgentRow:
        if self.integrity is not None:
            from waiaas.integrity import policy_scope

            row.owner_mac = self.integrity.owner_mac(row.id, row.owner_address)
            self.session.add(row)
            self.session.flush()
            # a new agent has no policies yet, and that too is covered by a MAC
            StateRepository(self.session).put(
                policy_scope(row.id),
                {"mac": self.integrity.policy_set_mac(row.id, [])},
                now=row.created_at,
            )
            return row
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, agent_id: str) -> AgentRow | None:
        held = self._held.get(agent_id)
        if held is not None:
            return held
        return self.session.get(AgentRow, agent_id)

    def list(self, *, status: str | None = None) -> list[AgentRow]:
        stmt = select(AgentRow)
        if status is not None:
            stmt = stmt.where(AgentRow.status == status)
        return list(self.session.exec(stmt.order_by(col(AgentRow.id))))

    def cas_status(self, agent_id: str, expected: Iterable[str], new: str, **fields: Any) -> bool:
        """Set ``status = new`` (and ``fields``) only if the status is one of ``expected``."""
        stmt = (
            update(AgentRow)
            .where(col(AgentRow.id) == agent_id, col(AgentRow.status).in_(list(expected)))
            .values(status=new, **fields)
            .execution_options(synchronize_session="fetch")
        )
        moved = _rowcount(self.session.execute(stmt)) == 1
        if moved:
            self._refresh_held(agent_id)
        return moved

    def update_fields(self, agent_id: str, **fields: Any) -> None:
        if self.integrity is not None and "owner_address" in fields:
            fields["owner_mac"] = self.integrity.owner_mac(agent_id, fields["owner_address"])
        self.session.execute(
            update(AgentRow)
            .where(col(AgentRow.id) == agent_id)
            .values(**fields)
            .execution_options(synchronize_session="fetch")
        )
        self._refresh_held(agent_id)


class SessionRepository(_Repository):
    """``sessions``."""

    def add(self, row: SessionRow) -> SessionRow:
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, session_id: str) -> SessionRow | None:
        return self.session.get(SessionRow, session_id)

    def by_token_hash(self, token_hash: str, now: int) -> SessionRow | None:
        """CORE-02 §5.4 #1: the live session with this token hash (index token_hash)."""
        stmt = select(SessionRow).where(
            SessionRow.token_hash == token_hash,
            SessionRow.expires_at > now,
            col(SessionRow.revoked_at).is_(None),
        )
        return self.session.exec(stmt).first()

    def for_agent(self, agent_id: str, *, live_at: int | None = None) -> list[SessionRow]:
        stmt = select(SessionRow).where(SessionRow.agent_id == agent_id)
        if live_at is not None:
            stmt = stmt.where(SessionRow.expires_at > live_at, col(SessionRow.revoked_at).is_(None))
        return list(self.session.exec(stmt.order_by(col(SessionRow.created_at))))

    def live(self, now: int) -> list[SessionRow]:
        stmt = select(SessionRow).where(
            SessionRow.expires_at > now, col(SessionRow.revoked_at).is_(None)
        )
        return list(self.session.exec(stmt))

    def revoke(self, session_id: str, now: int) -> bool:
        """Mark revoked if not already; return whether this call revoked it."""
        stmt = (
            update(SessionRow)
            .where(col(SessionRow.id) == session_id, col(SessionRow.revoked_at).is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return _rowcount(self.session.execute(stmt)) == 1


class TransactionRepository(_Repository):
    """``transactions``."""

    def add(self, row: TransactionRow) -> TransactionRow:
        """Insert ``row`` (one plain INSERT on the unit of work's connection: rows are
        written far more often than re-read, and ``row`` stays out of the session)."""
        self._execute(_TX_INSERT_SQL, [getattr(row, attr) for attr in _TX_ATTRS])
        return row

    def get(self, tx_id: str) -> TransactionRow | None:
        return self.session.get(TransactionRow, tx_id)

    def sealed(self, tx_ids: Sequence[str]) -> list[SealedTx]:
        """The columns a MAC covers (and the MAC) of the rows of ``tx_ids`` that exist, as
        light :class:`SealedTx` tuples read by plain DB-API statements (no ORM objects), one
        ``SELECT ... WHERE id IN (...)`` per 500 ids (in no particular order)."""
        out: list[SealedTx] = []
        for start in range(0, len(tx_ids), 500):
            chunk = list(tx_ids[start : start + 500])
            _, rows = self._execute(_SEALED_SQL.format(", ".join("?" * len(chunk))), chunk)
            out.extend(SealedTx(*r) for r in rows)
        return out

    def by_hash(self, tx_hash: str) -> TransactionRow | None:
        return self.session.exec(
            select(TransactionRow).where(TransactionRow.tx_hash == tx_hash)
        ).first()

    def cas_status(
        self, tx_id: str, expected: str | Iterable[str], new: str, **fields: Any
    ) -> bool:
        """Compare-and-swap the status; return whether this call changed it."""
        allowed = [expected] if isinstance(expected, str) else list(expected)
        values = {"status": new, **_tx_fields(fields)}
        table = _TX_TABLE
        stmt = (
            table.update()
            .where(table.c.id == tx_id, table.c.status.in_(allowed))
            .values({_TX_COLUMN_OF[attr]: value for attr, value in values.items()})
        )
        session = self.session
        if session.new or session.dirty or session.deleted:
            session.flush()  # a Core statement does not autoflush
        if _rowcount(session.execute(stmt)) != 1:
            return False
        _sync_loaded(session, TransactionRow, tx_id, values)
        return True

    def cas_held(
        self,
        held: TransactionRow,
        new: str,
        *,
        returning: Sequence[str] = (),
        returning_params: Sequence[Any] = (),
        **fields: Any,
    ) -> tuple[TransactionRow, tuple[Any, ...]] | None:
        """Compare-and-swap a row the caller holds whole: ``status = new`` (and ``fields``)
        only if every column still has ``held``'s value (``IS NULL`` where it held none), in
        one statement (no read first).

        ``returning``: SQL expressions the same statement reads (``UPDATE ... RETURNING``;
        their ``?`` parameters are ``returning_params``) where the dialect can return from
        an UPDATE (SQLite 3.35 and later, PostgreSQL); elsewhere they are not read (``()``).
        The statement's text is built once per shape (:func:`waiaas.db.statements.
        compare_and_set`) and runs on the unit of work's connection.

        Returns:
            The row as moved (a new object) and what ``returning`` read, or ``None`` when the
            row is not as held (nothing was written).
        """
        held_values = {attr: getattr(held, attr) for attr in _TX_ATTRS}
        values = {"status": new, **_tx_fields(fields)}
        sets = tuple(_TX_COLUMN_OF[attr] for attr in values)
        compared = tuple((name, held_values[attr] is None) for attr, name in _TX_COLUMNS_BY)
        read: tuple[Any, ...] = ()
        if returning and _update_returning(self.session):
            sql = compare_and_set("transactions", sets, compared, tuple(returning))
            params = cas_params(values.values(), held_values.values(), returning_params)
            _count, rows = self._execute(sql, params)
            if not rows:
                return None
            read = tuple(rows[0])
        else:
            sql = compare_and_set("transactions", sets, compared)
            count, _rows = self._execute(sql, cas_params(values.values(), held_values.values()))
            if count != 1:
                return None
        _sync_loaded(self.session, TransactionRow, held.id, values)
        return built(TransactionRow, {**held_values, **values}), read

    def update_fields(self, tx_id: str, **fields: Any) -> None:
        self.session.execute(
            update(TransactionRow)
            .where(col(TransactionRow.id) == tx_id)
            .values(**_tx_fields(fields))
            .execution_options(synchronize_session="fetch")
        )

    def active_for_agent(self, agent_id: str) -> list[TransactionRow]:
        """CORE-02 §5.4 #2: an agent's in-flight transactions (the partial index agent_id,
        status: its condition, :data:`~waiaas.db.tables.IN_FLIGHT`, is the query's)."""
        stmt = select(TransactionRow).where(TransactionRow.agent_id == agent_id, text(IN_FLIGHT))
        return list(self.session.exec(stmt))

    def since(self, agent_id: str, since_ts: int) -> list[TransactionRow]:
        """An agent's transactions created at or after ``since_ts`` (index agent_id, created_at)."""
        stmt = (
            select(TransactionRow)
            .where(TransactionRow.agent_id == agent_id, TransactionRow.created_at >= since_ts)
            .order_by(col(TransactionRow.created_at), col(TransactionRow.id))
        )
        return list(self.session.exec(stmt))

    def with_status(self, statuses: Sequence[str], *, limit: int = 1000) -> list[TransactionRow]:
        """Up to ``limit`` transactions in ``statuses``, oldest id first. Statuses other than
        CONFIRMED are read from the partial index (status, created_at) of migration 0015,
        whose condition the query names: the other rows are not read."""
        stmt = select(TransactionRow).where(col(TransactionRow.status).in_(list(statuses)))
        if "CONFIRMED" not in statuses:
            stmt = stmt.where(text(NOT_CONFIRMED))
        return list(self.session.exec(stmt.order_by(col(TransactionRow.id)).limit(limit)))

    def list(
        self,
        *,
        agent_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        before_id: str | None = None,
    ) -> list[TransactionRow]:
        """Newest first: by ``created_at``, then by id (time-ordered UUIDv7), both
        descending; page with ``before_id``, the last id of the previous page (an id no row
        has gives an empty page).

        Every shape reads an index in that order and stops after ``limit`` rows, whatever
        the number of rows before it: ``(agent_id, created_at)`` or ``(created_at)``, and for
        a status other than CONFIRMED the partial indexes of migration 0015 (their condition,
        :data:`~waiaas.db.tables.NOT_CONFIRMED`, is named here). Ordering by id alone made
        SQLite read and sort every row of the agent (or scan the table) for one page.
        """
        created, tx_id = col(TransactionRow.created_at), col(TransactionRow.id)
        stmt = select(TransactionRow)
        if agent_id is not None:
            stmt = stmt.where(TransactionRow.agent_id == agent_id)
        if status is not None:
            stmt = stmt.where(TransactionRow.status == status)
            if status != "CONFIRMED":
                stmt = stmt.where(text(NOT_CONFIRMED))
        if before_id is not None:
            cursor = sa_select(created).where(tx_id == before_id).scalar_subquery()
            stmt = stmt.where(created <= cursor, or_(created < cursor, tx_id < before_id))
        return list(self.session.exec(stmt.order_by(created.desc(), tx_id.desc()).limit(limit)))

    def count(self) -> int:
        stmt = sa_select(func.count()).select_from(TransactionRow)
        return int(self.session.execute(stmt).scalar_one())


def _tx_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    if "metadata" in out:  # the column is named metadata; the attribute metadata_json
        out["metadata_json"] = out.pop("metadata")
    if "metadata_json" in out and not isinstance(out["metadata_json"], str | None):
        out["metadata_json"] = json.dumps(out["metadata_json"], separators=(",", ":"))
    return out


class PolicyRepository(_Repository):
    """``policies``."""

    def add(self, row: PolicyRow) -> PolicyRow:
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, policy_id: str) -> PolicyRow | None:
        return self.session.get(PolicyRow, policy_id)

    def for_agent(self, agent_id: str) -> list[PolicyRow]:
        """CORE-02 §5.4 #4: enabled policies of an agent plus global ones, priority first.

        Reads only this agent's and the global rows (idx_policies_agent_id, both branches of
        the OR), however many policies other agents have.
        """
        stmt = (
            select(PolicyRow)
            .where(
                or_(col(PolicyRow.agent_id) == agent_id, col(PolicyRow.agent_id).is_(None)),
                # "+ 0" keeps SQLite off idx_policies_enabled: without statistics it prefers
                # that index, which holds nearly every row (most policies are enabled).
                col(PolicyRow.enabled) + 0 == 1,
            )
            .order_by(col(PolicyRow.priority).desc(), col(PolicyRow.id))
        )
        return list(self.session.exec(stmt))

    def all(self, *, agent_id: str | None = None, include_global: bool = True) -> list[PolicyRow]:
        stmt = select(PolicyRow)
        if agent_id is not None:
            cond = col(PolicyRow.agent_id) == agent_id
            if include_global:
                cond = or_(cond, col(PolicyRow.agent_id).is_(None))
            stmt = stmt.where(cond)
        stmt = stmt.order_by(col(PolicyRow.priority).desc(), col(PolicyRow.id))
        return list(self.session.exec(stmt))

    def set_mac(self, policy_id: str, mac: str) -> None:
        self.session.execute(
            update(PolicyRow)
            .where(col(PolicyRow.id) == policy_id)
            .values(mac=mac)
            .execution_options(synchronize_session="fetch")
        )

    def delete(self, policy_id: str) -> bool:
        row = self.get(policy_id)
        if row is None:
            return False
        self.session.delete(row)
        self.session.flush()
        return True


class AuditRecord(NamedTuple):
    """One ``audit_log`` row as read back (every column, in table order)."""

    id: int
    timestamp: int
    event_type: str
    actor: str
    agent_id: str | None
    session_id: str | None
    tx_id: str | None
    details: str
    severity: str
    ip_address: str | None
    prev_hash: str | None
    """The stored link of a row written before it was left NULL, as hex."""
    row_hash: str | None
    """The row's chain hash, as hex (stored as its 32 bytes)."""
    mac: str | None
    """The row's MAC, as hex (stored as its 32 bytes)."""


_AUDIT_COLUMN_NAMES = tuple(
    c.name
    for c in AuditRow.__table__.columns  # type: ignore[attr-defined]
)
assert AuditRecord._fields == _AUDIT_COLUMN_NAMES, "AuditRecord must follow audit_log's columns"
_AUDIT_SELECT = ", ".join(f"a.{name}" for name in _AUDIT_COLUMN_NAMES)
_CURSOR_TS = "(SELECT c.timestamp FROM audit_log AS c WHERE c.id = :cursor)"

# The ``actor`` of a row whose actor is its own agent (``agent:<agent_id>``, the agent in
# the row's ``agent_id``) is stored as this: the id is not written twice. No other actor is
# ever empty (``append`` refuses one), so the stored form reads back unambiguously
# (:func:`stored_actor`, :func:`read_actor`); rows written before keep the long form.
OWN_AGENT = ""


def stored_actor(actor: str, agent_id: str | None) -> str:
    """What an audit row stores as ``actor``: :data:`OWN_AGENT` for ``agent:<agent_id>``."""
    if agent_id is not None and actor == f"agent:{agent_id}":
        return OWN_AGENT
    return actor


def read_actor(stored: str, agent_id: str | None) -> str:
    """The actor of an audit row as stored by :func:`stored_actor` (or before it), whole."""
    if stored == OWN_AGENT and agent_id is not None:
        return f"agent:{agent_id}"
    return stored


def _record(row: Any) -> AuditRecord:
    """An :class:`AuditRecord` of a selected row, its actor read back whole and its digests
    as hex (one call per row of every page: kept to plain operations)."""
    rid, ts, event, actor, agent, session, tx, details, severity, ip, prev, digest, mac = row
    if actor == OWN_AGENT:
        actor = read_actor(actor, agent)
    return _new_tuple(
        AuditRecord,
        (
            rid,
            ts,
            event,
            actor,
            agent,
            session,
            tx,
            details,
            severity,
            ip,
            None if prev is None else _hex(prev),
            digest.hex() if type(digest) is bytes else _hex(digest),
            mac.hex() if type(mac) is bytes else _hex(mac),
        ),
    )


_new_tuple = tuple.__new__


def audit_index(*, agent: bool, events: bool, rare_severities: bool, tx: bool) -> str:
    """The index an audit query with these filters reads (migration 0008).

    The most selective filter leads: a transaction's rows; one agent's events; one agent's
    warnings; one agent; events; warnings; otherwise time. Every choice ends in
    ``timestamp`` (then the rowid), the order pages are returned in; filters the index does
    not cover are checked on the rows it yields. ``rare_severities``: the query asks only
    for severities other than ``info`` (the partial severity indexes hold only those).
    """
    if tx:
        return "idx_audit_log_tx_id"
    if agent and events:
        return "idx_audit_log_agent_event_timestamp"
    if agent and rare_severities:
        return "idx_audit_log_agent_severity_timestamp"
    if agent:
        return "idx_audit_log_agent_timestamp"
    if events:
        return "idx_audit_log_event_timestamp"
    if rare_severities:
        return "idx_audit_log_severity_timestamp"
    return "idx_audit_log_timestamp"


def audit_query(
    *,
    agent_id: str | None = None,
    since: int | None = None,
    until: int | None = None,
    event_types: Sequence[str] | None = None,
    severities: Sequence[str] | None = None,
    tx_id: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of :meth:`AuditRepository.query` (for it, tests and benchmarks).

    The index is named (``INDEXED BY``, from :func:`audit_index`): the plan does not depend
    on SQLite's guesses, and a missing index is an error rather than a silent full scan
    (PostgreSQL, which has no such hint, runs the statement without it:
    :func:`waiaas.db.portable.text_for`). Values are always bound parameters; only fixed
    fragments are spliced in.
    """
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if agent_id is not None:
        where.append("a.agent_id = :agent")
        params["agent"] = agent_id
    if since is not None:
        where.append("a.timestamp >= :since")
        params["since"] = since
    if until is not None:
        where.append("a.timestamp <= :until")
        params["until"] = until
    events = sorted(set(event_types or ()))
    if events:
        names = [f"e{i}" for i in range(len(events))]
        where.append(f"a.event_type IN ({', '.join(':' + n for n in names)})")
        params.update(zip(names, events, strict=True))
    levels = sorted(set(severities or ()))
    if set(levels) >= set(SEVERITIES):
        levels = []  # every severity: no filter (the CHECK constraint allows no other)
    rare = bool(levels) and "info" not in levels
    if levels:
        names = [f"s{i}" for i in range(len(levels))]
        where.append(f"a.severity IN ({', '.join(':' + n for n in names)})")
        params.update(zip(names, levels, strict=True))
        if rare:
            where.append(f"a.{RARE_SEVERITY}")  # verbatim: lets SQLite use the partial indexes
    if tx_id is not None:
        where.append("a.tx_id = :tx")
        params["tx"] = tx_id
    if before_id is not None:
        # Keyset on (timestamp, id), written so that the timestamp bound is an index range.
        where.append(f"a.timestamp <= {_CURSOR_TS}")
        where.append(f"(a.timestamp < {_CURSOR_TS} OR a.id < :cursor)")
        params["cursor"] = before_id
    index = audit_index(
        agent=agent_id is not None, events=bool(events), rare_severities=rare, tx=tx_id is not None
    )
    sql = f"SELECT {_AUDIT_SELECT} FROM audit_log AS a INDEXED BY {index}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY a.timestamp DESC, a.id DESC LIMIT :limit"
    return sql, params


# What an append writes: the chained columns, then the row's digest and MAC (``prev_hash``
# is left NULL). The statements are plain DB-API text, built once per dialect and row count.
_AUDIT_WRITE = (*AUDIT_COLUMNS, "row_hash", "mac")
_AUDIT_BATCH = 256  # rows per multi-row INSERT (11 parameters each: far below SQLite's limit)
_RETURNS_IDS = sqlite3.sqlite_version_info >= (3, 35)  # SQLite's INSERT ... RETURNING


@functools.lru_cache(maxsize=64)
def _audit_insert_sql(rows: int, dialect: str, returning: str) -> str:
    """``INSERT INTO audit_log`` of ``rows`` rows of :data:`_AUDIT_WRITE`, ``RETURNING``
    ``returning`` (if any), in ``dialect``'s DB-API form."""
    marks = "(" + ", ".join("?" * len(_AUDIT_WRITE)) + ")"
    sql = f"INSERT INTO audit_log ({', '.join(_AUDIT_WRITE)}) VALUES " + ", ".join([marks] * rows)
    if returning:
        sql += f" RETURNING {returning}"
    return adapt_sql(sql, dialect)


def _audit_values(
    event: AuditEvent | str,
    actor: str,
    now: int,
    agent_id: str | None = None,
    session_id: str | None = None,
    tx_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    severity: Severity | str | None = None,
    ip_address: str | None = None,
) -> list[Any]:
    """An audit row's :data:`~waiaas.db.chain.AUDIT_COLUMNS` values, in that order (the
    actor as :func:`stored_actor` stores it).

    Raises:
        ValueError: ``actor`` is empty.
    """
    if not actor:
        raise ValueError("an audit row's actor must not be empty")
    if severity is None:
        severity = event.default_severity if isinstance(event, AuditEvent) else Severity.INFO
    return [
        now,
        str(event),
        stored_actor(actor, agent_id),
        agent_id,
        session_id,
        tx_id,
        _details_json({k: v for k, v in (details or {}).items() if v is not None}),
        str(severity),
        ip_address,
    ]


_details_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str).encode


#: What a prepared write returns: its rows and SQLite's last row id.
_RawResult = tuple[list[tuple[Any, ...]], int | None]
#: What the unit of work's DB-API statement returns (waiaas.db.uow.Ran): rowcount, rows,
#: SQLite's last row id.
_RawRun = tuple[int, list[tuple[Any, ...]], int | None]


def _head_of(row_id: int | None, digest: Any) -> tuple[int, bytes]:
    """The chain head ``(id, 32-byte digest)`` of a head read (``None``: an empty log)."""
    if row_id is None:
        return (0, GENESIS_BYTES)
    if isinstance(digest, str):  # not written by waiaas: the chain check names that row
        return (int(row_id), digest.encode("utf-8"))
    return (int(row_id), bytes(digest) if digest else GENESIS_BYTES)


def _hex(value: Any) -> Any:
    """A stored digest as the API shows it: hex (``None`` and anything else as read)."""
    return value.hex() if isinstance(value, bytes | memoryview) else value


class AuditRepository(_Repository):
    """``audit_log``: append and query; the database refuses UPDATE and DELETE.

    Every appended row is chained to the one before it (``row_hash`` covers the previous
    row's ``row_hash``, see :mod:`waiaas.db.chain`) and, when the unit of work carries the
    wallet's integrity keys, MAC'd. ``prev_hash`` is stored NULL: it would repeat the
    previous row's ``row_hash``, which the chain check reads instead (older rows store it,
    and it is still checked where stored). Appends run inside ``BEGIN IMMEDIATE`` (on
    PostgreSQL under the chain-head lock), so "the row before" is well defined.
    """

    def __init__(self, session: Session, integrity: Any = None) -> None:
        super().__init__(session, integrity)
        # the newest row as this unit of work knows it: (id, its 32-byte row hash)
        self._head: tuple[int, bytes] | None = None
        self.appended = 0
        # Set by the unit of work: takes the chain-head lock where per-agent units of work
        # run in parallel (PostgreSQL); called before the head is read.
        self.before_head: Callable[[], None] | None = None
        # Set by the unit of work: its plain DB-API read (UnitOfWork.fetch_one), for the
        # head read every appending unit of work makes.
        self.fetch_one: Callable[[str], tuple[Any, ...] | None] | None = None
        # Set by the unit of work: its plain DB-API statement (UnitOfWork.run_dbapi), which
        # runs the appends' prepared statements; without it they run through the session.
        self.run_dbapi: Callable[[str, Sequence[Any]], _RawRun] | None = None
        self._dialect_name: str | None = None

    @property
    def last(self) -> tuple[int, str] | None:
        """``(id, row_hash hex)`` of the newest row this unit of work read or appended."""
        return None if self._head is None else (self._head[0], self._head[1].hex())

    @staticmethod
    def head_columns() -> tuple[str, str]:
        """The chain head's ``id`` and ``row_hash`` as two scalar subqueries (SQL text, no
        parameters), for a statement that reads the head along with what it does
        (:meth:`known_head` takes the result)."""
        return _AUDIT_HEAD_PAIR

    def known_head(self, row_id: int | None, digest: bytes | None) -> None:
        """The chain head as the caller read it in this unit of work, under the chain's lock
        (:data:`AUDIT_HEAD_COLUMNS`, :meth:`head_columns`; ``None``: an empty log): the next
        :meth:`append` links to it without reading it again."""
        if self._head is None:
            self._head = _head_of(row_id, digest)

    def head(self) -> tuple[int, str]:
        """``(id, row_hash hex)`` of the newest row (``(0, GENESIS)`` for an empty log)."""
        row_id, digest = self._head_bytes()
        return (row_id, digest.hex())

    def _head_bytes(self) -> tuple[int, bytes]:
        if self._head is not None:
            return self._head
        found: Any
        if self.fetch_one is not None:
            found = self.fetch_one(_AUDIT_HEAD)
        else:
            found = self.session.execute(
                sa_select(col(AuditRow.id), col(AuditRow.row_hash))
                .order_by(col(AuditRow.id).desc())
                .limit(1)
            ).first()
        return _head_of(*found) if found is not None else (0, GENESIS_BYTES)

    def append(
        self,
        event: AuditEvent | str,
        *,
        actor: str,
        now: int,
        agent_id: str | None = None,
        session_id: str | None = None,
        tx_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        severity: Severity | str | None = None,
        ip_address: str | None = None,
    ) -> int:
        """Append one audit row in the current transaction; return its id.

        ``details`` keys whose value is ``None`` are left out (an absent key reads as
        nothing to say, and every row is kept for good: its bytes count); an ``actor``
        that is the row's own agent is stored short (:func:`stored_actor`; the row hash and
        MAC cover what is stored, :meth:`query` reads it back whole).

        Raises:
            ValueError: ``actor`` is empty.
        """
        values = _audit_values(
            event, actor, now, agent_id, session_id, tx_id, details, severity, ip_address
        )
        if self.before_head is not None:
            self.before_head()
        _prev_id, prev = self._head_bytes()
        digest = self._chain(prev, values)
        dialect = self._dialect()
        # SQLite's last row id; PostgreSQL's INSERT ... RETURNING id
        rows, last = self._run(
            _audit_insert_sql(1, dialect, "" if dialect == "sqlite" else "id"), values
        )
        row_id = int(rows[0][0]) if rows else last
        assert isinstance(row_id, int)
        self._head = (row_id, digest)
        self.appended += 1
        return row_id

    def append_all(self, entries: Sequence[Mapping[str, Any]]) -> list[int]:
        """:meth:`append` of several rows, chained in the order given, in one INSERT (per
        256 rows); each entry holds :meth:`append`'s arguments, the event as ``event``.
        Returns their ids.

        The rows take ascending ids in that order (one multi-row ``INSERT``, under the
        chain's lock); where the dialect returns from an INSERT this is checked, and rows
        that took their ids in another order fail the unit of work (StorageError) rather
        than commit a chain that does not link."""
        if len(entries) < 2:
            return [self.append(**entry) for entry in entries]
        rows = [_audit_values(**entry) for entry in entries]
        if self.before_head is not None:
            self.before_head()
        _prev_id, prev = self._head_bytes()
        ids: list[int] = []
        for start in range(0, len(rows), _AUDIT_BATCH):
            chunk = rows[start : start + _AUDIT_BATCH]
            digests = []
            for values in chunk:
                prev = self._chain(prev, values)
                digests.append(prev)
            ids += self._insert_chained(chunk, digests)
        self._head = (ids[-1], prev)
        self.appended += len(rows)
        return ids

    def _insert_chained(self, rows: list[list[Any]], digests: list[bytes]) -> list[int]:
        """INSERT ``rows`` (chained, their digests ``digests``) in one statement; their ids."""
        dialect = self._dialect()
        returning = dialect != "sqlite" or _RETURNS_IDS
        params = [v for values in rows for v in values]
        found, last = self._run(
            _audit_insert_sql(len(rows), dialect, "id, row_hash" if returning else ""), params
        )
        if not returning:  # one writer under SQLite's lock: the ids after the last one
            assert last is not None
            return list(range(last - len(rows) + 1, last + 1))
        ordered = sorted((int(i), bytes(h)) for i, h in found)
        if [h for _i, h in ordered] != digests:
            raise StorageError("audit rows written together took their ids out of order")
        return [i for i, _h in ordered]

    def _chain(self, prev: bytes, values: list[Any]) -> bytes:
        """Link ``values`` (an audit row's :data:`~waiaas.db.chain.AUDIT_COLUMNS`) to the
        row digest ``prev``: appends its row hash and MAC to ``values``; returns its digest."""
        digest = row_digest(prev, values)
        integrity = self.integrity
        values.append(digest)
        values.append(integrity.audit_mac_bytes(digest) if integrity is not None else None)
        return digest

    def _dialect(self) -> str:
        if self._dialect_name is None:
            self._dialect_name = dialect_of(self.session)
        return self._dialect_name

    def _run(self, sql: str, params: Sequence[Any]) -> _RawResult:
        """One prepared append statement: the rows it returned and SQLite's last row id."""
        if self.run_dbapi is not None:
            _count, rows, last = self.run_dbapi(sql, params)
            return rows, last
        result = self.session.connection().exec_driver_sql(sql, tuple(params))
        rows = [tuple(r) for r in result.all()] if result.returns_rows else []
        return rows, result.lastrowid

    def query(
        self,
        *,
        agent_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        event_types: Sequence[str] | None = None,
        severities: Sequence[str] | None = None,
        tx_id: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Rows matching every filter given, newest first by ``(timestamp, id)``.

        ``before_id`` is the cursor: the id of the last row of the previous page (an existing
        row; the next page starts just after it in the same order), so paging visits every
        row exactly once even where timestamps do not grow with ids (clocks step back,
        callers pass ``now``).

        Each filter shape reads one index whose last column is ``timestamp`` (see
        :func:`audit_query`), so a page costs about ``limit`` index entries at any table size.
        Rows come back as plain :class:`AuditRecord` tuples: the log is append-only, so there
        is nothing for an ORM object to track, and mapping is most of a page's cost. Their
        ``actor`` is read back whole (:func:`read_actor`).
        """
        sql, params = audit_query(
            agent_id=agent_id,
            since=since,
            until=until,
            event_types=event_types,
            severities=severities,
            tx_id=tx_id,
            before_id=before_id,
            limit=limit,
        )
        rows = self.session.execute(text_for(sql, self.dialect), params).all()
        return [_record(row) for row in rows]

    def agent_range(
        self, agent_id: str, start: int, end: int, limit: int = 100
    ) -> list[AuditRecord]:
        """CORE-02 §5.4 #3: an agent's audit rows in a time range, newest first."""
        return self.query(agent_id=agent_id, since=start, until=end, limit=limit)

    def count(
        self,
        *,
        agent_id: str | None = None,
        event_type: str | None = None,
        since: int | None = None,
    ) -> int:
        stmt = sa_select(func.count()).select_from(AuditRow)
        if agent_id is not None:
            stmt = stmt.where(AuditRow.agent_id == agent_id)  # type: ignore[arg-type]
        if event_type is not None:
            stmt = stmt.where(AuditRow.event_type == event_type)  # type: ignore[arg-type]
        if since is not None:
            stmt = stmt.where(AuditRow.timestamp >= since)  # type: ignore[arg-type]
        return int(self.session.execute(stmt).scalar_one())


class ApprovalRepository(_Repository):
    """``pending_approvals``."""

    def add(self, row: ApprovalRow) -> ApprovalRow:
        if self.integrity is not None:
            from waiaas.integrity import approval_mac

            row.mac = approval_mac(self.integrity, row)
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, approval_id: str) -> ApprovalRow | None:
        return self.session.get(ApprovalRow, approval_id)

    def for_tx(self, tx_id: str) -> ApprovalRow | None:
        stmt = (
            select(ApprovalRow)
            .where(ApprovalRow.tx_id == tx_id)
            .order_by(col(ApprovalRow.created_at).desc())
        )
        return self.session.exec(stmt).first()

    def set_mac(self, approval_id: str, mac: str) -> None:
        self.session.execute(
            update(ApprovalRow)
            .where(col(ApprovalRow.id) == approval_id)
            .values(mac=mac)
            .execution_options(synchronize_session="fetch")
        )

    def decide(self, approval_id: str, *, approved: bool, now: int, signature: str) -> bool:
        """Record the owner's decision once; return False if already decided."""
        values: dict[str, Any] = {"owner_signature": signature}
        values["approved_at" if approved else "rejected_at"] = now
        stmt = (
            update(ApprovalRow)
            .where(
                col(ApprovalRow.id) == approval_id,
                col(ApprovalRow.approved_at).is_(None),
                col(ApprovalRow.rejected_at).is_(None),
            )
            .values(**values)
            .execution_options(synchronize_session="fetch")
        )
        if _rowcount(self.session.execute(stmt)) != 1:
            return False
        if self.integrity is not None:  # the decision is sealed with the approval
            from waiaas.integrity import approval_mac

            decided = self.get(approval_id)
            if decided is not None:
                self.set_mac(approval_id, approval_mac(self.integrity, decided))
        return True


class ChannelRepository(_Repository):
    """``notification_channels``."""

    def add(self, row: ChannelRow) -> ChannelRow:
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, channel_id: str) -> ChannelRow | None:
        return self.session.get(ChannelRow, channel_id)

    def all(self, *, enabled_only: bool = False) -> list[ChannelRow]:
        stmt = select(ChannelRow)
        if enabled_only:
            stmt = stmt.where(ChannelRow.enabled == 1)
        stmt = stmt.order_by(col(ChannelRow.priority).desc(), col(ChannelRow.id))
        return list(self.session.exec(stmt))

    def delete(self, channel_id: str) -> bool:
        row = self.get(channel_id)
        if row is None:
            return False
        self.session.delete(row)
        self.session.flush()
        return True

    def mark(self, channel_id: str, *, success: bool, now: int) -> None:
        field = "last_success_at" if success else "last_failure_at"
        self.session.execute(
            update(ChannelRow)
            .where(col(ChannelRow.id) == channel_id)
            .values({field: now})
            .execution_options(synchronize_session="fetch")
        )


# The ``wallet_state`` rows of some keys (``{keys}``: placeholders) as one JSON object
# ``{key: [value, updated_at]}``, beside the row of another read (``{sql}``, its first
# column a constant 1: NULL when it finds no row). The aggregate always has a row, the
# other read is joined to it; both search by their keys.
_ALONG_SQL = {
    "sqlite": (
        'SELECT st.kv, l.* FROM (SELECT json_group_object("key", '
        "json_array(CAST(value AS TEXT), updated_at)) AS kv "
        'FROM wallet_state WHERE "key" IN ({keys})) AS st LEFT JOIN ({sql}) AS l ON 1 = 1'
    ),
    "postgresql": (
        'SELECT st.kv, l.* FROM (SELECT json_object_agg("key", '
        "json_build_array(value, updated_at)) AS kv "
        'FROM wallet_state WHERE "key" IN ({keys})) AS st LEFT JOIN ({sql}) AS l ON 1 = 1'
    ),
}


class _Stored(NamedTuple):
    """A ``wallet_state`` row as :meth:`StateRepository.prefetch_along` read it (no ORM
    object until :meth:`StateRepository.put` writes it)."""

    value: str
    updated_at: int


class StateRepository(_Repository):
    """``wallet_state``: small JSON values by key (kill switch, ...)."""

    def __init__(self, session: Session, integrity: Any = None) -> None:
        super().__init__(session, integrity)
        # keys read by :meth:`prefetch` in this unit of work: their row (a session's object,
        # or as :meth:`prefetch_along` read it: put in the session when :meth:`put` writes
        # it), or None (no row)
        self._held: dict[str, WalletStateRow | _Stored | None] = {}
        # keys another statement of this unit of work read under its write lock
        # (:meth:`value_columns`, :meth:`known`): their value text, or None (no row)
        self._known: dict[str, str | None] = {}

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read the rows of ``keys`` in one statement: :meth:`get` of them reads no more in
        this unit of work (what :meth:`put` writes is kept). Callers prefetch what they read
        under their write lock, where no other writer can change it."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._held]
        if not wanted:
            return
        stmt = select(WalletStateRow).where(col(WalletStateRow.key).in_(wanted))
        found = {row.key: row for row in self.session.exec(stmt)}
        for key in wanted:
            self._held[key] = found.get(key)

    def prefetch_along(
        self,
        fetch_one: Callable[[str, Sequence[Any]], tuple[Any, ...] | None],
        keys: Iterable[str],
        sql: str,
        params: Sequence[Any],
    ) -> tuple[Any, ...] | None:
        """:meth:`prefetch` of ``keys`` and the row of another read, in one statement.

        ``sql`` (``?`` placeholders, a ``SELECT`` of at most one row) runs with ``params``
        through ``fetch_one`` (:meth:`UnitOfWork.fetch_one`); its row, or ``None``, is
        returned, and the rows of ``keys`` are held as :meth:`prefetch` holds them. The
        ``wallet_state`` values ride along as one aggregate (``_ALONG_SQL``): a row for
        every key found, whether or not ``sql`` finds its row.
        """
        wanted = [k for k in dict.fromkeys(keys) if k not in self._held]
        if not wanted:
            return fetch_one(sql, params)
        along = _ALONG_SQL[self.dialect].format(
            keys=", ".join("?" * len(wanted)), sql=sql.replace("SELECT ", "SELECT 1, ", 1)
        )
        row = fetch_one(along, (*wanted, *params))
        assert row is not None  # an aggregate without GROUP BY: always one row
        # ``{key: [value, updated_at]}``: text on SQLite, decoded by psycopg, NULL for none
        found: dict[str, Any] = row[0] if isinstance(row[0], dict) else json.loads(row[0] or "{}")
        identity_map = self.session.identity_map
        for key in wanted:
            if key not in found:
                self._held[key] = None
                continue
            # a row this unit of work already loaded (maybe changed) stands
            loaded = identity_map.get(identity_key(WalletStateRow, key)) if identity_map else None
            value, updated_at = found[key]
            self._held[key] = loaded if loaded is not None else _Stored(value, updated_at)
        return None if row[1] is None else tuple(row[2:])

    def _attach(self, key: str, stored: _Stored) -> WalletStateRow:
        """The row of ``key`` as :meth:`prefetch_along` read it, in this unit of work's
        session as if loaded there (the one loaded already stands), for :meth:`put`."""
        loaded = self.session.identity_map.get(identity_key(WalletStateRow, key))
        if isinstance(loaded, WalletStateRow):
            return loaded
        row = built(WalletStateRow, {"key": key, **stored._asdict()})
        make_transient_to_detached(row)
        self.session.add(row)  # persistent and clean: nothing is written at flush
        return row

    @staticmethod
    def value_columns(keys: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The stored value text of each of ``keys`` (``NULL``: no row) as a scalar subquery
        (SQL text) and the subqueries' parameters (the keys), for a statement that reads
        them along with what it does, under the unit of work's write lock (:meth:`known`
        takes the result)."""
        return tuple(state_value_sql() for _key in keys), tuple(keys)

    def known(self, key: str, value: str | None) -> None:
        """``key``'s value text (``None``: no row) as another statement of this unit of work
        read it under the write lock (:meth:`value_columns`): :meth:`held` answers it."""
        self._known[key] = value

    def held(self, key: str) -> tuple[bool, str | None]:
        """Whether :meth:`prefetch` (or a statement given to :meth:`known`) read ``key`` in
        this unit of work, and the stored value text it found (``None``: no row), as this
        unit of work last wrote it."""
        if key not in self._held:
            if key in self._known:
                return True, self._known[key]
            return False, None
        row = self._held[key]
        return True, None if row is None else row.value

    def bump(self, key: str) -> None:
        """Add one to the generation counter ``key`` (:mod:`waiaas.db.generations`), in this
        unit of work; it is no longer :meth:`held` (what was read of it is stale)."""
        from sqlalchemy import text

        from waiaas.db.generations import bump_sql

        self.session.flush()
        self.session.execute(text(bump_sql(key, self.dialect)))
        self._held.pop(key, None)
        self._known.pop(key, None)
        loaded = self.session.identity_map.get(identity_key(WalletStateRow, key))
        if loaded is not None:
            self.session.expire(loaded)

    def _row(self, key: str) -> WalletStateRow | _Stored | None:
        if key in self._held:
            return self._held[key]
        return self.session.get(WalletStateRow, key)

    def get(self, key: str) -> Any:
        row = self._row(key)
        return None if row is None else stored_json(row.value, table="wallet_state", column="value")

    def put(self, key: str, value: Any, *, now: int) -> None:
        row = self._row(key)
        if isinstance(row, _Stored):
            row = self._held[key] = self._attach(key, row)
        self._known.pop(key, None)
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        if row is None:
            row = WalletStateRow(key=key, value=text, updated_at=now)
            self.session.add(row)
            if key in self._held:
                self._held[key] = row
        else:
            row.value = text
            row.updated_at = now
            self.session.add(row)
        self.session.flush()
