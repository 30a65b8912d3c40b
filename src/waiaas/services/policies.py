"""Policy management on the database, and the usage the evaluator needs.

:class:`PolicyService` adds, updates, enables, disables and removes policies (global or per
agent). Rules are validated on write with every problem listed; every change writes a
``POLICY_UPDATED`` audit row with the policy before and after, in the same transaction as
the change. It also wires the pure :func:`waiaas.policy.explain` (dry run) and
:func:`waiaas.policy.replay` to the stored data.

:func:`load_usage` builds :class:`waiaas.policy.Usage` from the ``transactions`` table with
indexed range reads (``idx_transactions_agent_created``), so its cost grows with the
number of rows inside the windows, not with the agent's whole history. Amounts are decimal
strings in the database and are summed as Python ints (wei exceeds SQLite's integers).
"""

from __future__ import annotations

import builtins
import functools
import itertools
import json
import logging
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, SupportsIndex, overload

from pydantic import ValidationError

from waiaas import _display as _d
from waiaas._validate import check_actor, check_bool, check_id, check_priority
from waiaas.clock import Clock, SystemClock
from waiaas.config import WalletConfig
from waiaas.db import Database, UnitOfWork, portable
from waiaas.db import usage as usage_db
from waiaas.db.faults import stored_json
from waiaas.db.generations import POLICIES
from waiaas.db.portable import dialect_of, text_for
from waiaas.db.tables import NOT_CONFIRMED, AgentRow, PolicyRow
from waiaas.errors import InvalidInputError, NotFoundError, StorageError
from waiaas.ids import new_id
from waiaas.pipeline.records import decision_of
from waiaas.pipeline.txmeta import as_meta, decision_in, request_of
from waiaas.policy import (
    AgentContext,
    AssetPrice,
    AssetUsage,
    Decision,
    Explanation,
    PolicySpec,
    PolicyType,
    ReplayRecord,
    ReplayResult,
    Usage,
    explain,
    normalize_asset_key,
    replay,
    required_windows,
    spend_of,
    validate_rules,
)
from waiaas.policy.evaluate import coerce_request
from waiaas.policy.model import DAY, POLICY_DENIED, WEEK, _policy_html
from waiaas.policy.rules import check_scope
from waiaas.types import AgentStatus, AuditEvent, TxStatus

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PolicyInfo", "PolicyList", "PolicyService", "load_usage"]

log = logging.getLogger("waiaas.policy")

_ENTITY = "policy"
_SPENDING = (
    TxStatus.PENDING,
    TxStatus.QUEUED,
    TxStatus.EXECUTING,
    TxStatus.SUBMITTED,
    TxStatus.CONFIRMED,
)
_MAX_REPLAY = 200_000
_REPLAY_SQL = (
    "SELECT id, created_at, status, metadata, spend, type, to_address, amount, tier, integrity "
    "FROM transactions "
    "INDEXED BY idx_transactions_agent_created "
    "WHERE agent_id = :agent AND created_at >= :lo AND created_at <= :hi "
    "ORDER BY created_at, id LIMIT :cap"
)


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """A stored policy.

    Attributes:
        id: the policy id (UUIDv7).
        agent_id: the agent it governs, or ``None`` for a global policy.
        type: the policy type.
        rules: the validated, normalised rules as stored (JSON-able).
        priority: orders reasons (higher first); never changes an outcome.
        enabled: whether it is enforced.
        created_at / updated_at: Unix seconds.
    """

    id: str
    agent_id: str | None
    type: PolicyType
    rules: Mapping[str, Any]
    priority: int
    enabled: bool
    created_at: int
    updated_at: int

    def to_spec(self) -> PolicySpec:
        """The evaluator's view of this policy."""
        return PolicySpec(
            id=self.id,
            agent_id=self.agent_id,
            type=self.type,
            rules=dict(self.rules),
            priority=self.priority,
            enabled=self.enabled,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what the audit log records as before/after)."""
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "type": self.type.value,
            "rules": dict(self.rules),
            "priority": self.priority,
            "enabled": self.enabled,
        }

    def __repr__(self) -> str:
        return _d.short_repr(
            "PolicyInfo",
            [
                ("id", self.id),
                ("type", self.type),
                ("agent_id", self.agent_id),
                ("rules", dict(self.rules)),
                ("priority", self.priority or None),
                ("enabled", None if self.enabled else False),
            ],
        )

    def _repr_html_(self) -> str:
        return _policy_html(
            self.type.value, self.id, self.agent_id, self.rules, self.priority, self.enabled
        )


class PolicyList(builtins.list[PolicyInfo]):
    """A list of policies (what ``wallet.policies.list()`` returns) with a table rendering
    and :meth:`to_dataframe`."""

    @overload
    def __getitem__(self, index: SupportsIndex) -> PolicyInfo: ...

    @overload
    def __getitem__(self, index: slice) -> PolicyList: ...

    def __getitem__(self, index: SupportsIndex | slice) -> PolicyInfo | PolicyList:
        if isinstance(index, slice):
            return PolicyList(super().__getitem__(index))
        return super().__getitem__(index)

    def __repr__(self) -> str:
        kinds = ", ".join(p.type.value for p in self[:6])
        return f"PolicyList({len(self)} policies{': ' + kinds if kinds else ''})"

    def _repr_html_(self) -> str:
        rows = [
            (
                p.type,
                p.id,
                p.agent_id or "global",
                "yes" if p.enabled else "no",
                p.priority,
                dict(p.rules),
            )
            for p in self
        ]
        return _d.table_html(
            ("type", "id", "applies to", "enabled", "priority", "rules"),
            rows,
            caption=f"{len(self)} policies",
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per policy (needs the ``pandas`` extra); ``rules`` holds the dicts,
        times are UTC datetimes."""
        return _d.frame(
            [
                {
                    "id": p.id,
                    "type": p.type.value,
                    "agent_id": p.agent_id,
                    "enabled": p.enabled,
                    "priority": p.priority,
                    "rules": dict(p.rules),
                    "created_at": p.created_at,
                    "updated_at": p.updated_at,
                }
                for p in self
            ],
            ("id", "type", "agent_id", "enabled", "priority", "rules", "created_at", "updated_at"),
            times=("created_at", "updated_at"),
            exact=("rules",),
        )


def _info(row: PolicyRow) -> PolicyInfo:
    return PolicyInfo(
        id=row.id,
        agent_id=row.agent_id,
        type=PolicyType(row.type),
        rules=stored_json(row.rules, table="policies", column="rules", default={}),
        priority=row.priority,
        enabled=bool(row.enabled),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _stored_rules(
    kind: PolicyType | str, rules: object, networks: Iterable[tuple[str, str]] = ()
) -> tuple[PolicyType, str]:
    model = validate_rules(kind, rules)
    check_scope(model, networks)
    data = model.model_dump(mode="json", exclude_none=True)
    return PolicyType(kind), json.dumps(data, separators=(",", ":"), sort_keys=True)


# --------------------------------------------------------------------------- usage


def _spend_of_row(meta: str | None, amount: str | None, chain: str) -> list[tuple[str, int]]:
    """Per-asset base units a recorded transaction without a ``spend`` column moves: from
    the stored request, else ``metadata.asset`` with the ``amount`` column."""
    data: Any = None
    if meta:
        try:
            data = json.loads(meta)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        return []
    request = data.get("request")
    if isinstance(request, dict):
        try:
            return sorted(spend_of(request, chain).items())
        except InvalidInputError:
            pass
    asset = data.get("asset")
    if isinstance(asset, str) and amount is not None and amount.isdecimal():
        return [(normalize_asset_key(asset), int(amount))]
    return []


# Statements in the SQLite form (``INDEXED BY`` pins the plan; waiaas.db.portable drops it
# on PostgreSQL). Both dialects: booleans are summed with CASE, NULL-safe comparisons are
# spelled out, the ``spend`` JSON is unpacked in Python (:func:`_spend_pairs`).
_SPENDING_SQL_LIST = ", ".join(f"'{status.value}'" for status in _SPENDING)
_NOT_DENIED = "(t.error IS NULL OR t.error != :denied)"
_SPEND_SQL = (
    "SELECT t.spend, t.created_at "
    "FROM transactions AS t INDEXED BY idx_transactions_agent_created "
    "WHERE t.agent_id = :agent AND t.created_at > :since AND t.id != :exclude "
    f"AND t.status IN ({_SPENDING_SQL_LIST}) AND {_NOT_DENIED} AND t.spend IS NOT NULL"
)
_LEGACY_SPEND_SQL = (
    "SELECT t.created_at, t.amount, t.chain, t.metadata "
    "FROM transactions AS t INDEXED BY idx_transactions_agent_created "
    "WHERE t.agent_id = :agent AND t.created_at > :since AND t.id != :exclude "
    f"AND t.status IN ({_SPENDING_SQL_LIST}) AND {_NOT_DENIED} "
    "AND t.spend IS NULL"
)


class _Pairs(list[tuple[str, Any]]):
    """The members of a JSON object, in order, duplicates kept (as ``json_each`` has them)."""


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# what ``json.loads(text, object_pairs_hook=_Pairs, parse_constant=_not_json)`` runs, built once
_SPEND_DECODER = json.JSONDecoder(object_pairs_hook=_Pairs, parse_constant=_not_json)


def _spend_pairs(spend: object) -> list[tuple[str, str]]:
    """The ``(asset key, amount text)`` members of a ``transactions.spend`` JSON object.

    What SQLite's ``json_each`` yields for the object and the usage triggers sum: every
    member (a key given twice counts twice) whose value is a string; an invalid document,
    or one that is not an object, has none. ``NaN`` and ``Infinity``, which Python's parser
    takes but ``json_valid`` does not, make the document invalid.
    """
    if not isinstance(spend, str):
        return []
    try:
        found = _SPEND_DECODER.decode(spend)
    except (ValueError, RecursionError):
        return []
    if not isinstance(found, _Pairs):
        return []
    return [(k, v) for k, v in found if isinstance(v, str)]


def _amount(value: str) -> int | None:
    """The base units a spend member's text stands for: decimal digits only (any script's,
    as ``int`` reads them), else ``None`` (counts nowhere)."""
    return int(value) if value.isdecimal() else None


_AMOUNTS: dict[str, tuple[tuple[str, int], ...]] = {}
_AMOUNTS_MAX = 8192


def _spend_amounts(spend: str) -> tuple[tuple[str, int], ...]:
    """``(asset key, base units)`` of a ``transactions.spend`` document: the members
    :func:`_spend_pairs` yields whose text is an amount, keys normalised.

    Remembered by the document's text (a pure function of it): a window's first hour is read
    on every admission for an hour, its documents parsed once.
    """
    found = _AMOUNTS.get(spend)
    if found is None:
        found = tuple(
            (normalize_asset_key(asset), amount)
            for asset, value in _spend_pairs(spend)
            if (amount := _amount(value)) is not None
        )
        if len(_AMOUNTS) >= _AMOUNTS_MAX:
            _AMOUNTS.clear()
        _AMOUNTS[spend] = found
    return found


@functools.lru_cache(maxsize=32)
def _counts_sql(windows: int) -> str:
    """Requests and denials per window (``:since0`` ... shortest first) in one range read."""
    columns = []
    for i in range(windows):
        columns.append(f"SUM(CASE WHEN t.created_at > :since{i} THEN 1 ELSE 0 END)")
        columns.append(
            f"SUM(CASE WHEN t.created_at > :since{i} AND t.error = :denied THEN 1 ELSE 0 END)"
        )
    return (
        f"SELECT {', '.join(columns)} FROM transactions AS t "
        "INDEXED BY idx_transactions_agent_created "
        "WHERE t.agent_id = :agent AND t.created_at > :since AND t.id != :exclude"
    )


# The agent's rows from the second of its last CONFIRMED one on (all of them when none is),
# in one statement: the confirmed rows of that second are among them, so the last one is
# found in them (the newest by ``(created_at, id)``).
_FAILURES_SQL = (
    "SELECT t.created_at, t.id, t.status, t.error FROM transactions AS t "
    "INDEXED BY idx_transactions_agent_created "
    "WHERE t.agent_id = :agent AND t.id != :exclude AND t.created_at >= COALESCE(("
    "SELECT c.created_at FROM transactions AS c "
    "INDEXED BY idx_transactions_agent_created "
    "WHERE c.agent_id = :agent AND c.status = 'CONFIRMED' AND c.id != :exclude "
    "ORDER BY c.created_at DESC, c.id DESC LIMIT 1), -1)"
)


# Refusals that leave no transaction row (session constraints, guards, malformed requests)
# and agents' dry runs, read from the audit log: they count as requests (RATE_LIMIT) and,
# except dry runs, as denials (AUTO_STOP max_denials).
REFUSAL_EVENTS = ("REQUEST_REFUSED", "DRY_RUN")


@functools.lru_cache(maxsize=32)
def _audit_counts_sql(windows: int) -> str:
    columns = []
    for i in range(windows):
        columns.append(f"SUM(CASE WHEN a.timestamp > :since{i} THEN 1 ELSE 0 END)")
        columns.append(
            f"SUM(CASE WHEN a.timestamp > :since{i} AND a.event_type != 'DRY_RUN' "
            "THEN 1 ELSE 0 END)"
        )
    return (
        f"SELECT {', '.join(columns)} FROM audit_log AS a "
        "INDEXED BY idx_audit_log_agent_refusals "
        "WHERE a.agent_id = :agent AND a.timestamp > :since AND a.id > :after "
        "AND (a.event_type IN ('REQUEST_REFUSED', 'DRY_RUN') "
        "OR (a.event_type = 'POLICY_VIOLATION' AND a.tx_id IS NULL))"
    )


def audit_refusals(
    uow: UnitOfWork, agent_id: str, now: int, windows: Iterable[int], *, after_id: int = 0
) -> tuple[dict[int, int], dict[int, int]]:
    """``(requests, denials)`` per window from the audit log: refused requests that left no
    transaction row, and (requests only) agents' dry runs; rows with an id above ``after_id``.
    """
    ordered = sorted(set(windows))
    params: dict[str, Any] = {"agent": agent_id, "after": after_id}
    for i, w in enumerate(ordered):
        params[f"since{i}"] = now - w
    params["since"] = now - ordered[-1]
    sql = text_for(_audit_counts_sql(len(ordered)), dialect_of(uow))
    counts = uow.session.execute(sql, params).one()
    requests = {w: int(counts[2 * i] or 0) for i, w in enumerate(ordered)}
    denials = {w: int(counts[2 * i + 1] or 0) for i, w in enumerate(ordered)}
    return requests, denials


def load_usage(
    uow: UnitOfWork,
    agent_id: str,
    now: int,
    windows: Iterable[int],
    *,
    exclude_tx_id: str | None = None,
) -> Usage:
    """The agent's :class:`~waiaas.policy.Usage` at ``now``, read in ``uow``.

    Reads the agent's hourly usage buckets (``usage_buckets``, kept exact by triggers, see
    :mod:`waiaas.db.usage`) for the whole hours inside each window and the rows of the hour
    each window starts in, so its cost does not grow with the rows in the windows (plus the
    rows since the last confirmed transaction, for ``consecutive_failures``). With the
    wallet's integrity key, a bucket whose MAC does not verify is read from its rows.
    Counting rules are those of :func:`waiaas.policy.compute_usage`: a row counts in a
    window of ``w`` seconds when ``created_at > now - w``; spending counts in-flight and
    confirmed rows; a row whose ``error`` is ``POLICY_DENIED`` is a denial.

    Args:
        uow: an open unit of work (the pipeline passes its ``BEGIN IMMEDIATE`` one, so the
            decision and the new row are atomic).
        agent_id: whose usage.
        now: Unix seconds.
        windows: window lengths needed (see :func:`waiaas.policy.required_windows`).
        exclude_tx_id: leave this transaction out (a queued transaction re-checked before
            it executes must not count against itself).

    Raises:
        InvalidInputError: bad ``now`` or windows.

    Example::

        with db.read() as uow:
            usage = load_usage(uow, agent_id, clock.now(), required_windows(specs))
    """
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise InvalidInputError("now must be a non-negative int", field="now")
    wanted = set()
    for w in windows:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise InvalidInputError("windows must be positive ints (seconds)", field="windows")
        wanted.add(w)
    return _bucket_usage(uow, agent_id, now, sorted(wanted | {DAY, WEEK}), exclude_tx_id or "")


# The rows of the hours read from rows (:func:`_edges_sql`), per interval of time: its
# transaction rows and its refusal rows counted by the database, grouped by hour (``:base``
# plus a number of hours: ``created_at`` is past ``:base``, so the division is the floor on
# both dialects) and by how many of the windows start before them (``:cut0`` ...): rows of
# one group count alike in every window. Where the day's or the week's spending needs them,
# the interval's spending rows come one by one: the ``spend`` document, or for a row without
# one what the stored request says (only the columns a row needs are transferred).
_SPENDING_ROW = f"t.status IN ({_SPENDING_SQL_LIST}) AND {_NOT_DENIED}"
_EDGE_HOUR = f"(t.created_at - :base) / {usage_db.BUCKET}"
_EDGE_TX_RANGE = (
    "FROM transactions AS t INDEXED BY idx_transactions_agent_created "
    "WHERE t.agent_id = :agent AND t.created_at > :since AND t.created_at < :until"
)
# Only with a transaction to leave out (:func:`_edges_sql` drops it otherwise): ``id`` is not
# in the index, the term reads the table row of every row counted.
_EXCLUDE_TERM = " AND t.id != :exclude"
_EDGE_COUNTS_SQL = (
    f"SELECT 0, {_EDGE_HOUR}, :position, COUNT(*), "
    "SUM(CASE WHEN t.error = :denied THEN 1 ELSE 0 END), NULL, NULL, NULL, NULL "
    f"{_EDGE_TX_RANGE}{_EXCLUDE_TERM} GROUP BY 2, 3"
)
_EDGE_SPEND_SQL = (
    "SELECT 2, t.created_at, CASE WHEN t.spend IS NULL THEN 1 ELSE 0 END, 0, 0, t.spend, "
    "CASE WHEN t.spend IS NULL THEN t.amount END, CASE WHEN t.spend IS NULL THEN t.chain END, "
    f"CASE WHEN t.spend IS NULL THEN t.metadata END {_EDGE_TX_RANGE}{_EXCLUDE_TERM} "
    f"AND {_SPENDING_ROW}"
)
_EDGE_AUDIT_SQL = (
    "SELECT a.timestamp, CASE WHEN a.event_type != 'DRY_RUN' THEN 1 ELSE 0 END "
    "FROM audit_log AS a "
    "INDEXED BY idx_audit_log_agent_refusals "
    "WHERE a.agent_id = :agent AND a.timestamp > :since AND a.timestamp < :until "
    "AND a.id > 0 AND "
    + usage_db.REFUSAL_SQL.replace("event_type", "a.event_type").replace("tx_id", "a.tx_id")
)
_EDGE_REFUSALS_SQL = (
    _EDGE_AUDIT_SQL.replace(
        "SELECT a.timestamp, CASE WHEN a.event_type != 'DRY_RUN' THEN 1 ELSE 0 END ",
        f"SELECT 1, {_EDGE_HOUR.replace('t.created_at', 'a.timestamp')}, :position, COUNT(*), "
        "SUM(CASE WHEN a.event_type != 'DRY_RUN' THEN 1 ELSE 0 END), NULL, NULL, NULL, NULL ",
        1,
    )
    + " GROUP BY 2, 3"
)
# The same counts for one segment of an interval (kinds 4 and 5: ``:segment`` numbers it):
# rows of one hour and one position, bounded by ``:lo`` and ``:hi`` with the comparisons
# :func:`_segments` gives. No GROUP BY (no sort of the rows), and the transaction part reads
# only ``idx_transactions_agent_created (agent_id, created_at, error)`` (migration 0016).
_EDGE_SEGMENT_SQL = (
    "SELECT 4, :segment, 0, COUNT(*), COUNT(CASE WHEN t.error = :denied THEN 1 END), "
    "NULL, NULL, NULL, NULL FROM transactions AS t INDEXED BY idx_transactions_agent_created "
    "WHERE t.agent_id = :agent AND t.created_at :lo_op :lo AND t.created_at :hi_op :hi"
    + _EXCLUDE_TERM
)
_EDGE_SEGMENT_REFUSALS_SQL = (
    "SELECT 5, :segment, 0, COUNT(*), COUNT(CASE WHEN a.event_type != 'DRY_RUN' THEN 1 END), "
    "NULL, NULL, NULL, NULL FROM audit_log AS a INDEXED BY idx_audit_log_agent_refusals "
    "WHERE a.agent_id = :agent AND a.timestamp :lo_op :lo AND a.timestamp :hi_op :hi "
    "AND a.id > 0 AND "
    + usage_db.REFUSAL_SQL.replace("event_type", "a.event_type").replace("tx_id", "a.tx_id")
)
# On PostgreSQL the spend documents are read as the usage triggers read them (``jsonb``, see
# usage_db.PG_SPEND_STRINGS), so the rows and the buckets sum the same members.
_SPEND_SQL_PG = _SPEND_SQL.replace("SELECT t.spend,", f"SELECT {usage_db.PG_SPEND_STRINGS},", 1)
_EDGE_SPEND_SQL_PG = _EDGE_SPEND_SQL.replace(
    "0, 0, t.spend, ", f"0, 0, {usage_db.PG_SPEND_STRINGS}, ", 1
)
_EXCLUDED_SQL = "SELECT created_at FROM transactions WHERE id = ? AND agent_id = ?"


# The rows :func:`_count_failures` needs, as a part of :func:`_edges_sql` (kind 3), in the
# columns of the same types (times, text) as ``(created_at, id, status, error)``: the agent's
# FAILED rows from the second of its last CONFIRMED row on, read from the partial index of
# rows not CONFIRMED (its literal ``status <> 'CONFIRMED'`` term lets both dialects use it);
# that second as a CONFIRMED row with the empty id; and, only when a FAILED row shares that
# second, the CONFIRMED rows of it (which of the rows of one second came last goes by id, in
# Python: :func:`_count_failures`). So the many rows an agent sending fast confirms in one
# second are neither read nor returned; the count is that of ``_FAILURES_SQL`` (the
# reference), which returns every row from that second on.
_LAST_CONFIRMED_AT = (
    "(SELECT c.created_at FROM transactions AS c INDEXED BY idx_transactions_agent_created "
    "WHERE c.agent_id = :agent AND c.status = 'CONFIRMED' AND c.id != :exclude "
    "ORDER BY c.created_at DESC LIMIT 1)"
)
_FAILED_ROWS = (
    "FROM transactions AS f INDEXED BY idx_transactions_agent_unconfirmed "
    f"WHERE f.agent_id = :agent AND f.status = 'FAILED' AND f.{NOT_CONFIRMED} "
    "AND f.id != :exclude"
)
_EDGE_FAILURES_SQL = (
    f"SELECT 3, f.created_at, 0, 0, 0, f.id, f.status, f.error, NULL {_FAILED_ROWS} "
    f"AND f.created_at >= COALESCE({_LAST_CONFIRMED_AT}, -1) "
    "UNION ALL SELECT 3, l.at, 0, 0, 0, '', 'CONFIRMED', NULL, NULL "
    f"FROM (SELECT {_LAST_CONFIRMED_AT} AS at) AS l WHERE l.at IS NOT NULL "
    "UNION ALL SELECT 3, c.created_at, 0, 0, 0, c.id, c.status, NULL, NULL "
    "FROM transactions AS c INDEXED BY idx_transactions_agent_created "
    f"WHERE c.agent_id = :agent AND c.created_at = {_LAST_CONFIRMED_AT} "
    "AND c.status = 'CONFIRMED' AND c.id != :exclude "
    f"AND EXISTS (SELECT 1 {_FAILED_ROWS} AND f.created_at = {_LAST_CONFIRMED_AT})"
)


def _position(column: str, windows: int) -> str:
    """SQL: how many of the windows' starts (``:cut0`` ...) ``column`` is after."""
    cases = (f"CASE WHEN {column} > :cut{k} THEN 1 ELSE 0 END" for k in range(windows))
    return f"({' + '.join(cases)})"


#: At most this many segments (:func:`_segments`) per interval and in all, each read by its
#: own parts; an interval with more (hours read from their rows, many windows) is counted
#: per group by the database (``_EDGE_COUNTS_SQL``), which is correct for any interval.
_SEGMENTS_PER_INTERVAL = 4
_SEGMENTS_MAX = 24

#: ``(lower comparison, upper comparison)`` of each segment of an interval, or ``None``: the
#: interval is counted per group (see :func:`_layout`).
_Layout = tuple[tuple[tuple[str, str], ...] | None, ...]


def _segments(
    low: int, until: int, cuts: Sequence[int]
) -> list[tuple[str, int, str, int, int, int]]:
    """The pieces of the interval ``(low, until)`` (both exclusive) whose rows all lie in
    one hour and after the same windows' starts: ``(lower comparison, lower bound, upper
    comparison, upper bound, bucket start, position)``, a row being in the piece when
    ``created_at <lower comparison> <lower bound> AND created_at <upper comparison> <upper
    bound>``. A row counts after a start ``c`` when ``created_at > c``, and in the hour
    starting at ``h`` when ``created_at >= h``: the pieces split the interval at those
    points, with the same comparisons, so a row of any value (a REAL ``created_at`` too)
    is in exactly the piece whose hour and position it has."""
    B = usage_db.BUCKET
    # a point (v, 1) splits after v (a window's start), (v, 0) before v (an hour's start)
    points = {(c, 1) for c in cuts if low < c < until}
    first = usage_db.bucket_start(math.floor(low)) + B
    points.update((h, 0) for h in range(first, math.ceil(until), B) if low < h < until)
    ordered = [(low, 1), *sorted(points), (until, 0)]
    found = []
    for (lo, lo_side), (hi, hi_side) in itertools.pairwise(ordered):
        position = sum(1 for c in cuts if c < lo or (c == lo and lo_side))
        found.append(
            (
                ">" if lo_side else ">=",
                lo,
                "<=" if hi_side else "<",
                hi,
                usage_db.bucket_start(math.floor(lo)),
                position,
            )
        )
    return found


@functools.lru_cache(maxsize=64)
def _edges_sql(
    layout: _Layout,
    spending: tuple[bool, ...],
    windows: int,
    dialect: str,
    failures: bool = False,
    exclude: bool = False,
) -> str:
    """The rows of every interval (``:since{i}`` / ``:until{i}``, both exclusive) in one
    statement, each part tagged with its kind. Per interval, where ``layout[i]`` lists its
    segments (:func:`_segments`, numbered on from the previous intervals' ones: ``:lo{k}``,
    ``:hi{k}``), 4 and 5, each segment's transaction rows and refusal rows counted
    (``_EDGE_SEGMENT_SQL``, ``_EDGE_SEGMENT_REFUSALS_SQL``: kind, segment, 0, rows,
    denials); where it is ``None``, 0, the transaction rows' counts per group
    (``_EDGE_COUNTS_SQL``: kind, hour, position, rows, denials) and 1, the refusal rows'
    (``_EDGE_REFUSALS_SQL``); 2, where ``spending[i]``, the interval's spending rows
    (``_EDGE_SPEND_SQL``: kind, time, no spend column, 0, 0, spend, amount, chain,
    metadata). With ``failures``, 3, the rows :func:`_consecutive_failures` counts
    (``_EDGE_FAILURES_SQL``). ``windows``: how many ``:cut{k}`` the positions compare with.
    Without ``exclude`` (no transaction to leave out) the ``id`` terms are left out: the
    counts then read the index alone."""
    spend_sql = _EDGE_SPEND_SQL_PG if dialect == "postgresql" else _EDGE_SPEND_SQL
    parts: list[str] = []
    k = 0
    for i, (pieces, spends) in enumerate(zip(layout, spending, strict=True)):
        mine: list[str] = []
        if pieces is None:
            for template in (_EDGE_COUNTS_SQL, _EDGE_REFUSALS_SQL):
                column = "a.timestamp" if template is _EDGE_REFUSALS_SQL else "t.created_at"
                mine.append(template.replace(":position", _position(column, windows), 1))
        for lo_op, hi_op in pieces or ():
            for template in (_EDGE_SEGMENT_SQL, _EDGE_SEGMENT_REFUSALS_SQL):
                sql = template.replace(":segment", str(k), 1)
                sql = sql.replace(":lo_op :lo", f"{lo_op} :lo{k}", 1)
                mine.append(sql.replace(":hi_op :hi", f"{hi_op} :hi{k}", 1))
            k += 1
        if spends:
            mine.append(spend_sql)
        parts += (p.replace(":since", f":since{i}").replace(":until", f":until{i}") for p in mine)
    if failures:
        parts.append(_EDGE_FAILURES_SQL)
    sql = " UNION ALL ".join(parts)
    if not exclude:
        for term in (_EXCLUDE_TERM, " AND c.id != :exclude", " AND f.id != :exclude"):
            sql = sql.replace(term, "")
    return sql


def _bucket_usage(
    uow: UnitOfWork, agent_id: str, now: int, ordered: list[int], exclude: str
) -> Usage:
    """:func:`load_usage` from the usage buckets plus some rows of the windows' first hours.

    Per window of ``w`` seconds (rows with ``created_at > now - w``): every bucket that starts
    inside the window counts whole, from its stored sums, unless it must be read from its
    rows (it holds rows the sums cannot represent exactly, its MAC does not verify, or it
    holds the excluded transaction): those count the rows they hold inside the window. The
    bucket the window starts in counts either its rows inside the window or, when the part
    of its hour before the window is the shorter one, its stored sums less its rows before
    the window (and its rows inside the window after all if that would leave a negative
    count or sum: bucket rows deleted behind the wallet's back). So at most half an hour of
    rows is read per window, each row once, with every window's counts and spending at once.
    """
    raw = portable.raw(uow)  # takes this module's statements in their SQLite form
    # waiaas.db.usage writes its statements for each dialect itself: run them as they are
    native: Any = uow.session.connection().connection.driver_connection
    dialect = dialect_of(uow)
    since = {w: now - w for w in ordered}
    first = usage_db.bucket_start(since[ordered[-1]] + 1)
    from_rows, held = _buckets_read_from_rows(uow, raw, native, dialect, agent_id, first)
    if exclude:
        found = raw.execute(_EXCLUDED_SQL, (exclude, agent_id)).fetchone()
        if found is None:
            exclude = ""  # no row of the agent has that id: nothing to leave out
        elif not isinstance(found[0], int):
            # no whole second (a raw edit): the triggers put it in a bucket of its own
            # that no hour's read can leave it out of; count every row of the windows
            return _scan_usage(uow, agent_id, now, ordered, exclude)
        else:
            from_rows.add(usage_db.bucket_start(found[0]))
    # Per window, the bucket it starts in (when it starts inside one) is either read from
    # its rows inside the window, or (when its rows before the window are fewer, going by
    # the time they span) counted whole from its sums less its rows before the window.
    complement = {
        w
        for w in ordered
        if (edge := usage_db.bucket_start(since[w] + 1)) <= since[w]
        and edge not in from_rows
        and since[w] - edge + 1 < min(edge + usage_db.BUCKET, now + 1) - since[w] - 1
    }
    failures: list[tuple[Any, ...]] = []  # read with the first hours' rows
    totals = _bucket_totals(
        raw,
        native,
        dialect,
        agent_id,
        now,
        ordered,
        exclude,
        from_rows,
        complement,
        held,
        failures=failures,
    )
    if totals is None:  # the sums do not cover the rows they stand for: read the window's side
        totals = _bucket_totals(
            raw, native, dialect, agent_id, now, ordered, exclude, from_rows, set(), held
        )
        assert totals is not None
    requests, denials, txs, spent = totals
    return Usage(
        spent=spent,
        requests=requests,
        transactions=txs,
        denials=denials,
        consecutive_failures=_count_failures(failures),
    )


def _buckets_read_from_rows(
    uow: UnitOfWork, raw: Any, native: Any, dialect: str, agent_id: str, first: int
) -> tuple[set[int], list[tuple[Any, ...]] | None]:
    """The starts of the agent's buckets from ``first`` on that must be counted from their
    rows: those holding rows the sums cannot represent exactly, and (with the integrity key)
    those whose MAC does not verify (not sealed yet, or edited: those are unsealed again to
    be recomputed when this unit of work commits). Records what was verified in
    ``uow.usage_verified``. With the key, also the rows read (:data:`usage_db.SEALED`
    order): the whole buckets are summed from them (no second read)."""
    integ = uow.integrity
    untrusted: set[int] = set()
    from_rows: set[int] = set()
    forged: set[int] = set()
    held: list[tuple[Any, ...]] | None = None
    if integ is None:
        from_rows.update(
            s for (s,) in native.execute(usage_db.needs_rows_sql(dialect), (agent_id, first))
        )
    else:
        odd = usage_db.ODD
        held = []
        for found in native.execute(usage_db.verify_sql(dialect), (agent_id, first)):
            row, mac = found[:-1], found[-1]
            held.append(row)
            if not integ.bucket_ok(mac, agent_id, row):
                # NULL: not sealed yet (written without the key); anything else: edited
                (untrusted if mac is None else forged).add(row[0])
            elif row[odd]:  # sealed rows are sane (see usage_db.reseal)
                from_rows.add(row[0])
    if forged:
        log.warning(
            "usage buckets of agent %s at %s do not verify; counted from their rows",
            agent_id,
            sorted(forged),
        )
        if uow.writable:  # recomputed from the rows and sealed again when this one commits
            raw.executemany(
                "UPDATE usage_buckets SET mac = NULL WHERE agent_id = ? AND start = ?",
                [(agent_id, s) for s in forged],
            )
    untrusted |= forged
    seen = uow.usage_verified.get(agent_id)
    uow.usage_verified[agent_id] = (
        first if seen is None else min(first, seen[0]),
        frozenset(untrusted) | (frozenset() if seen is None else seen[1]),
    )
    from_rows |= untrusted
    return from_rows, held


class _Signs:
    """How the rows read count, per bucket (see :func:`_bucket_usage`): in window ``w``, the
    rows of bucket ``s`` after the window's start count with one sign and those at or before
    it with another (``+1``, ``-1`` or ``0``). Worked out once per bucket, not per row."""

    def __init__(
        self,
        ordered: list[int],
        since: dict[int, int],
        edge: dict[int, int],
        from_rows: set[int],
        complement: set[int],
    ) -> None:
        self.ordered = ordered
        self.since = since
        self._edge = edge
        self._from_rows = from_rows
        self._complement = complement
        self._at: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._spending: dict[int, tuple[int, int, int, int]] = {}

    def of(self, s: int, w: int) -> tuple[int, int]:
        """``(sign of the rows after window w's start, sign of those at or before it)``."""
        if s in self._from_rows:
            return 1, 0
        if w in self._complement:
            return (0, -1) if s == self._edge[w] else (0, 0)
        return (1, 0) if s <= self.since[w] else (0, 0)

    def at(self, s: int, position: int) -> list[tuple[int, int]]:
        """``(window, sign)`` for each window counting the rows of bucket ``s`` that are
        after ``position`` of the windows' starts (:func:`_position`). The longer a window,
        the earlier its start: such rows are after the start of ``ordered[k]`` iff
        ``k >= len(ordered) - position``."""
        found = self._at.get((s, position))
        if found is None:
            first = len(self.ordered) - position
            found = []
            for k, w in enumerate(self.ordered):
                after, before = self.of(s, w)
                sign = after if k >= first else before
                if sign:
                    found.append((w, sign))
            self._at[(s, position)] = found
        return found

    def spending(self, s: int) -> tuple[int, int, int, int]:
        """The signs of bucket ``s``'s rows in the day's and the week's spending: ``(day
        after, day before, week after, week before)``; a side no row of the bucket can be
        on (after the window's start when the whole hour is before it, or the reverse) is 0."""
        found = self._spending.get(s)
        if found is None:
            day, week = self.of(s, DAY), self.of(s, WEEK)
            end = s + usage_db.BUCKET  # the bucket's rows are before it
            found = self._spending[s] = (
                day[0] if end > self.since[DAY] else 0,
                day[1] if s <= self.since[DAY] else 0,
                week[0] if end > self.since[WEEK] else 0,
                week[1] if s <= self.since[WEEK] else 0,
            )
        return found

    def needs_spending(self, low: int, until: int) -> bool:
        """Whether rows between ``low`` and ``until`` (exclusive) can count in the day's or
        the week's spending."""
        # whole seconds: a bound next to a fractional created_at (a raw edit) is fractional
        first = usage_db.bucket_start(math.floor(low))
        last = usage_db.bucket_start(math.ceil(until) - 1)
        return any(any(self.spending(s)) for s in range(first, last + 1, usage_db.BUCKET))


#: what each limb of a limb sum is worth (:func:`usage_db.limbs_value`)
_LIMB_POWERS = tuple(10 ** (usage_db.LIMB_DIGITS * i) for i in range(usage_db.LIMBS))

_Totals = tuple[dict[int, int], dict[int, int], dict[int, int], dict[str, AssetUsage]]


@dataclass
class _Tally:
    """The sums :func:`_bucket_totals` gathers: per window, requests, denials and
    transactions; per asset, the day's and the week's spending and how many spending rows
    name it within the week."""

    requests: dict[int, int]
    denials: dict[int, int]
    txs: dict[int, int]
    day: dict[str, int]
    week: dict[str, int]
    named: dict[str, int]

    @classmethod
    def empty(cls, ordered: list[int]) -> _Tally:
        return cls(
            dict.fromkeys(ordered, 0),
            dict.fromkeys(ordered, 0),
            dict.fromkeys(ordered, 0),
            {},
            {},
            {},
        )

    def add_whole_buckets(self, rows: Any, ordered: list[int]) -> None:
        """The buckets that count whole (``usage_db.sums_sql``'s rows)."""
        k = 3 * len(ordered)
        for kind, asset, *cols in rows:
            if kind == usage_db.COUNTS:
                for i, w in enumerate(ordered):  # int(): PostgreSQL sums BIGINTs as NUMERIC
                    self.requests[w] += int(cols[3 * i])
                    self.denials[w] += int(cols[3 * i + 1])
                    self.txs[w] += int(cols[3 * i + 2])
                continue
            key = normalize_asset_key(asset)
            if cols[k + 10]:  # spending rows name it within the week
                self.named[key] = self.named.get(key, 0) + int(cols[k + 10])
                self.week[key] = self.week.get(key, 0) + usage_db.limbs_value(cols[k + 11 : k + 20])
            if cols[k]:
                self.day[key] = self.day.get(key, 0) + usage_db.limbs_value(cols[k + 1 : k + 10])

    def add_counts(self, groups: Iterable[Sequence[Any]], signs: _Signs) -> None:
        """Rows read, counted by the database per group (``_EDGE_COUNTS_SQL``,
        ``_EDGE_REFUSALS_SQL``: kind, bucket, position, rows, denials), each group with the
        signs its bucket and position give it: requests and denials per window, and
        transactions for transaction rows (kind 0)."""
        for kind, s, position, count, denied in groups:
            for w, sign in signs.at(s, position):
                self.requests[w] += sign * count
                self.denials[w] += sign * denied
                if kind == 0:
                    self.txs[w] += sign * (count - denied)

    def add_spending(self, rows: Iterable[Sequence[Any]], signs: _Signs) -> None:
        """Spending rows read (``_EDGE_SPEND_SQL``), each one's amounts added to the day's
        and the week's spending with the signs its bucket gives it there."""
        day_since, week_since = signs.since[DAY], signs.since[WEEK]
        for created, legacy, spend, amount_text, chain, meta in rows:
            day_after, day_before, week_after, week_before = signs.spending(
                created - created % usage_db.BUCKET
            )
            in_week = week_after if created > week_since else week_before
            in_day = day_after if created > day_since else day_before
            if not (in_week or in_day) or (spend is None and not legacy):
                continue  # counts nowhere, or (PostgreSQL) no JSON object of strings
            pairs = _spend_of_row(meta, amount_text, chain) if legacy else _spend_amounts(spend)
            for key, amount in pairs:
                if in_week:
                    self.week[key] = self.week.get(key, 0) + in_week * amount
                    self.named[key] = self.named.get(key, 0) + in_week
                if in_day:
                    self.day[key] = self.day.get(key, 0) + in_day * amount

    def sane(self) -> bool:
        """No negative count or sum, and no spending of an asset no row names (what the
        sums less the rows before a window give when bucket rows are missing)."""
        sums = (self.requests, self.denials, self.txs, self.week, self.day, self.named)
        if any(v < 0 for d in sums for v in d.values()):
            return False
        return not any(
            self.named.get(k, 0) == 0 and (self.week.get(k) or self.day.get(k))
            for k in {*self.week, *self.day}
        )

    def totals(self) -> _Totals:
        spent = {
            k: AssetUsage(day=self.day.get(k, 0), week=self.week.get(k, 0))
            for k, c in self.named.items()
            if c
        }
        return self.requests, self.denials, self.txs, spent


def _bucket_totals(
    raw: Any,
    native: Any,
    dialect: str,
    agent_id: str,
    now: int,
    ordered: list[int],
    exclude: str,
    from_rows: set[int],
    complement: set[int],
    held: list[tuple[Any, ...]] | None = None,
    *,
    failures: list[tuple[Any, ...]] | None = None,
) -> _Totals | None:
    """Requests, denials, transactions per window and the spending of the day and the week:
    whole buckets from their sums (SQL), plus or minus the rows read (see :func:`_bucket_usage`).

    Windows in ``complement`` count the bucket they start in whole and subtract its rows
    before the window; ``None`` when that leaves a negative count or sum (bucket rows
    missing: the caller reads the window's side instead). ``held``: the agent's bucket rows
    already read in this unit of work, summed here instead of by SQL. ``failures``: where
    to put the rows :func:`_consecutive_failures` counts, read in the same statement.
    """
    since = {w: now - w for w in ordered}
    edge = {w: usage_db.bucket_start(since[w] + 1) for w in ordered}
    # what the whole-bucket sums start after, per window
    cut = {w: edge[w] - 1 if w in complement else since[w] for w in ordered}
    tally = _Tally.empty(ordered)
    # The buckets that count whole, summed by SQLite (limb sums are exact integers), or
    # here from the rows already read.
    if held is not None:
        cuts = [cut[w] for w in ordered]
        whole = _sum_buckets(held, cuts, cut[DAY], cut[WEEK], from_rows)
        tally.add_whole_buckets(whole, ordered)
    else:
        sums: dict[str, Any] = {f"s{i}": cut[w] for i, w in enumerate(ordered)}
        sums.update(agent=agent_id, day=cut[DAY], week=cut[WEEK])
        sums["first"] = usage_db.bucket_start(since[ordered[-1]] + 1)
        if from_rows:
            sums["skip"] = json.dumps(sorted(from_rows))
        sums_sql = usage_db.sums_sql(len(ordered), dialect, bool(from_rows))
        tally.add_whole_buckets(native.execute(sums_sql, sums), ordered)
    # Rows: one range read per run of overlapping intervals, counted per bucket and position
    # by the database, the spending rows read one by one where the day or the week needs them.
    intervals = _row_intervals(ordered, since, edge, from_rows, complement)
    signs = _Signs(ordered, since, edge, from_rows, complement)
    _add_edges(raw, dialect, agent_id, exclude, intervals, tally, signs, failures)
    if complement and not tally.sane():
        return None
    return tally.totals()


def _sum_buckets(
    rows: list[tuple[Any, ...]], cuts: list[int], day: int, week: int, skip: set[int]
) -> list[tuple[Any, ...]]:
    """What :meth:`_Tally.add_whole_buckets` reads of :func:`usage_db.sums_sql`'s result,
    computed from bucket ``rows`` (each in :data:`usage_db.SEALED` order, all of the agent
    from the first start on), buckets in ``skip`` left out: per (kind, asset), for a counts
    row the requests, denials and transactions of the buckets after each cut; for a spend
    row the spending rows after ``day`` and their amount, then the same after ``week``, each
    amount as the first of its nine limbs (the others 0: it stands for the same value).
    The columns the reader does not read are 0. Python ints: exact, as SQLite's."""
    n = len(cuts)
    counts: dict[Any, list[int]] = {}
    spent: dict[tuple[Any, Any], list[int]] = {}
    powers = _LIMB_POWERS
    for row in rows:
        start, kind, asset = row[0], row[1], row[2]
        if start in skip:
            continue
        if kind == usage_db.COUNTS:
            acc = counts.get(asset)
            if acc is None:
                acc = counts[asset] = [0] * (3 * n)
            requests, denials, refused, refused_denials = row[3:7]
            for i, c in enumerate(cuts):
                if start > c:
                    acc[3 * i] += requests + refused
                    acc[3 * i + 1] += denials + refused_denials
                    acc[3 * i + 2] += requests - denials
            continue
        in_day, in_week = start > day, start > week
        if not (in_day or in_week):
            continue
        sums = spent.get((kind, asset))
        if sums is None:
            sums = spent[(kind, asset)] = [0, 0, 0, 0]
        amount = sum(map(operator.mul, row[8:17], powers))
        if in_day:
            sums[0] += row[3]
            sums[1] += amount
        if in_week:
            sums[2] += row[3]
            sums[3] += amount
    limbs = [0] * (usage_db.LIMBS - 1)
    found: list[tuple[Any, ...]] = [
        (usage_db.COUNTS, asset, *acc, *[0] * 20) for asset, acc in counts.items()
    ]
    for (kind, asset), (day_n, day_v, week_n, week_v) in spent.items():
        found.append((kind, asset, *[0] * (3 * n), day_n, day_v, *limbs, week_n, week_v, *limbs))
    return found


def _add_edges(
    raw: Any,
    dialect: str,
    agent_id: str,
    exclude: str,
    intervals: list[tuple[int, int]],
    tally: _Tally,
    signs: _Signs,
    failures: list[tuple[Any, ...]] | None = None,
) -> None:
    """Count the rows of every interval in ``tally``, read in one statement
    (:func:`_edges_sql`); with ``failures``, put there the ``(created_at, id, status,
    error)`` rows :func:`_consecutive_failures` reads, from the same statement."""
    if not intervals and failures is None:
        return
    B = usage_db.BUCKET
    # every row read is after ``base`` (a bucket's start): the hours past it are the floor
    base = usage_db.bucket_start(intervals[0][0]) if intervals else 0
    params: dict[str, Any] = {"agent": agent_id, "denied": POLICY_DENIED, "base": base}
    if exclude:
        params["exclude"] = exclude
    cuts = [signs.since[w] for w in signs.ordered]
    for k, cut in enumerate(cuts):
        params[f"cut{k}"] = cut
    layout, pieces = _layout(intervals, cuts, params)
    spending = tuple(signs.needs_spending(low, until) for low, until in intervals)
    sql = _edges_sql(layout, spending, len(cuts), dialect, failures is not None, bool(exclude))
    found = raw.execute(sql, params).fetchall()
    # a REAL created_at (a raw edit) divides to a fraction: its floor is still its hour
    groups = [(r[0], base + B * (r[1] // 1), *r[2:5]) for r in found if r[0] < 2]
    groups += [(r[0] - 4, *pieces[r[1]], r[3], r[4]) for r in found if r[0] >= 4]
    tally.add_counts(groups, signs)
    tally.add_spending((r[1:3] + r[5:9] for r in found if r[0] == 2), signs)
    if failures is not None:
        failures.extend((r[1], *r[5:8]) for r in found if r[0] == 3)


def _layout(
    intervals: list[tuple[int, int]], cuts: list[int], params: dict[str, Any]
) -> tuple[_Layout, list[tuple[int, int]]]:
    """How :func:`_edges_sql` counts each interval: its segments' comparisons (their bounds
    put in ``params``: ``since{i}`` / ``until{i}`` per interval, ``lo{k}`` / ``hi{k}`` per
    segment), or ``None`` for an interval with too many (counted per group). Also each
    segment's ``(bucket start, position)``, by number."""
    layout: list[tuple[tuple[str, str], ...] | None] = []
    pieces: list[tuple[int, int]] = []
    for i, (low, until) in enumerate(intervals):
        params[f"since{i}"] = low
        params[f"until{i}"] = until
        found = _segments(low, until, cuts)
        if len(found) > _SEGMENTS_PER_INTERVAL or len(pieces) + len(found) > _SEGMENTS_MAX:
            layout.append(None)
            continue
        for _, lo, _, hi, start, position in found:
            params[f"lo{len(pieces)}"] = lo
            params[f"hi{len(pieces)}"] = hi
            pieces.append((start, position))
        layout.append(tuple((lo_op, hi_op) for lo_op, _, hi_op, *_ in found))
    return tuple(layout), pieces


def _row_intervals(
    ordered: list[int],
    since: Mapping[int, int],
    edge: Mapping[int, int],
    from_rows: set[int],
    complement: set[int],
) -> list[tuple[int, int]]:
    """``(low, until)`` (both exclusive) time ranges holding every row the windows read:
    each bucket of ``from_rows`` that reaches inside a window, from the window's start; the
    bucket a window starts in, after its start (or, in ``complement``, up to it). Overlapping
    or touching ranges are merged."""
    B = usage_db.BUCKET
    wanted: list[tuple[int, int]] = []
    for w in ordered:
        for s in from_rows:
            if s + B - 1 > since[w]:
                wanted.append((max(since[w], s - 1), s + B))
        if edge[w] <= since[w] and edge[w] not in from_rows:
            if w in complement:
                wanted.append((edge[w] - 1, since[w] + 1))
            else:
                wanted.append((since[w], edge[w] + B))
    merged: list[list[int]] = []
    for low, until in sorted(wanted):
        if merged and low < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], until)
        else:
            merged.append([low, until])
    return [(low, until) for low, until in merged]


def _scan_usage(
    uow: UnitOfWork, agent_id: str, now: int, ordered: list[int], exclude: str
) -> Usage:
    """The usage computed from every row of the windows (the reference :func:`load_usage`
    is checked against; kept for tests and benchmarks)."""
    params: dict[str, Any] = {"agent": agent_id, "exclude": exclude, "denied": POLICY_DENIED}
    # Counts per window, computed by SQLite over the index range (no row reaches Python).
    for i, w in enumerate(ordered):
        params[f"since{i}"] = now - w
    params["since"] = now - ordered[-1]
    dialect = dialect_of(uow)
    counts = uow.session.execute(text_for(_counts_sql(len(ordered)), dialect), params).one()
    requests = {w: int(counts[2 * i] or 0) for i, w in enumerate(ordered)}
    denials = {w: int(counts[2 * i + 1] or 0) for i, w in enumerate(ordered)}
    txs = {w: requests[w] - denials[w] for w in ordered}
    refused_requests, refused = audit_refusals(uow, agent_id, now, ordered)
    for w in ordered:
        requests[w] += refused_requests[w]
        denials[w] += refused[w]
    # Spending of the last 7 days: the rows' spend documents, unpacked and summed exactly in
    # Python (wei exceeds int64).
    day: dict[str, int] = {}
    week: dict[str, int] = {}
    spend_params = {
        "agent": agent_id,
        "exclude": exclude,
        "denied": POLICY_DENIED,
        "since": now - WEEK,
    }
    day_start = now - DAY
    # The raw DB-API cursor (same connection and transaction): thousands of tiny rows.
    raw = portable.raw(uow)
    spend_sql = _SPEND_SQL_PG if dialect == "postgresql" else _SPEND_SQL
    for spend, created in raw.execute(spend_sql, spend_params):
        for asset, value in _spend_pairs(spend):
            amount = _amount(value)
            if amount is None:
                continue
            key = normalize_asset_key(asset)
            week[key] = week.get(key, 0) + amount
            if created > day_start:
                day[key] = day.get(key, 0) + amount
    # Rows without a ``spend`` column (foreign rows) fall back to the stored request.
    legacy = text_for(_LEGACY_SPEND_SQL, dialect)
    for created, amount_text, chain, meta in uow.session.execute(legacy, spend_params):
        for key, amount in _spend_of_row(meta, amount_text, chain):
            week[key] = week.get(key, 0) + amount
            if created > day_start:
                day[key] = day.get(key, 0) + amount
    return Usage(
        spent={k: AssetUsage(day=day.get(k, 0), week=v) for k, v in week.items()},
        requests=requests,
        transactions=txs,
        denials=denials,
        consecutive_failures=_consecutive_failures(uow, agent_id, exclude),
    )


def _consecutive_failures(uow: UnitOfWork, agent_id: str, exclude: str) -> int:
    """FAILED rows (not policy denials) after the last CONFIRMED one, via the index."""
    rows = uow.session.execute(
        text_for(_FAILURES_SQL, dialect_of(uow)), {"agent": agent_id, "exclude": exclude}
    ).all()
    return _count_failures(rows)


def _count_failures(rows: Sequence[Sequence[Any]]) -> int:
    """FAILED rows (not policy denials) after the last CONFIRMED one among ``rows``
    (``_FAILURES_SQL``'s: ``(created_at, id, status, error)``)."""
    confirmed = [(int(c), str(i)) for c, i, status, _ in rows if status == TxStatus.CONFIRMED]
    marker = max(confirmed) if confirmed else None
    count = 0
    for created, tx_id, status, error in rows:
        if marker is not None and (created, tx_id) <= marker:
            continue  # the confirmed row itself, or rows before it in the same second
        if status == TxStatus.FAILED and error != POLICY_DENIED:
            count += 1
    return count


# --------------------------------------------------------------------------- the service


class PolicyService:
    """Add, change and remove policies; dry-run and replay against the stored data.

    Args:
        db: the opened :class:`~waiaas.db.Database`.
        clock: time source for timestamps (default: the system clock).
        config: the wallet configuration (defaults for tiers, delays, owner-less approval).
        networks: ``(chain, network)`` of the configured chain adapters: a rule's ``chain``
            / ``network`` scope must name one of them or a documented network
            (:data:`~waiaas.policy.rules.KNOWN_NETWORKS`).

    Example::

        service = PolicyService(db, clock, config)
        info = service.add("SPENDING_LIMIT", {"per_transaction": "1000000000"}, agent_id=aid)
        service.disable(info.id)
    """

    def __init__(
        self,
        db: Database,
        clock: Clock | None = None,
        config: WalletConfig | None = None,
        *,
        networks: Iterable[tuple[str, str]] = (),
    ) -> None:
        if not isinstance(db, Database):
            raise InvalidInputError("db must be a waiaas Database", field="db")
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidInputError("clock must provide now()", field="clock")
        if config is not None and not isinstance(config, WalletConfig):
            raise InvalidInputError("config must be a WalletConfig", field="config")
        self._db = db
        self._clock: Clock = clock or SystemClock()
        self._config = config or WalletConfig()
        self._networks = tuple((str(c), str(n)) for c, n in networks)

    def __repr__(self) -> str:
        return f"PolicyService({self._db!r})"

    # ------------------------------------------------------------------ queries

    def get(self, policy_id: str) -> PolicyInfo:
        """The policy ``policy_id``.

        Raises:
            NotFoundError: no such policy.
        """
        policy_id = check_id(policy_id, "policy_id", max_length=64)
        with self._db.read() as uow:
            return _info(self._row(uow, policy_id))

    def list(self, *, agent_id: str | None = None, include_global: bool = True) -> PolicyList:
        """Policies, highest priority first: all, or an agent's (plus global ones)."""
        if agent_id is not None:
            agent_id = check_id(agent_id, "agent_id", max_length=64)
        with self._db.read() as uow:
            rows = uow.policies.all(agent_id=agent_id, include_global=bool(include_global))
            return PolicyList(_info(r) for r in rows)

    def specs(self, uow: UnitOfWork, agent_id: str) -> builtins.list[PolicySpec]:
        """The enabled policies that apply to ``agent_id``, as evaluator inputs."""
        return [_info(row).to_spec() for row in uow.policies.for_agent(agent_id)]

    # ------------------------------------------------------------------ changes

    def add(
        self,
        type: PolicyType | str,
        rules: Mapping[str, Any] | str,
        *,
        agent_id: str | None = None,
        priority: int = 0,
        enabled: bool = True,
        actor: str = "operator",
    ) -> PolicyInfo:
        """Validate and store a new policy (POLICY_UPDATED audit, same transaction).

        Args:
            type: the policy type (``"SPENDING_LIMIT"``, ...).
            rules: the rules as a mapping or JSON text.
            agent_id: the agent it governs; ``None`` for a global policy.
            priority: orders the reasons of a decision (higher first).
            enabled: whether it is enforced from now on.
            actor: who made the change (audit ``actor``).

        Raises:
            InvalidInputError: unknown type or invalid rules (``problems`` lists every one),
                bad priority, enabled or actor.
            NotFoundError: ``agent_id`` names no agent.

        Example::

            service.add("RATE_LIMIT", {"max_requests": 10, "window_seconds": 60})
        """
        kind, stored = _stored_rules(type, rules, self._networks)
        priority = check_priority(priority)
        enabled = check_bool(enabled, "enabled")
        actor = check_actor(actor)
        if agent_id is not None:
            agent_id = check_id(agent_id, "agent_id", max_length=64)
        now = self._clock.now()
        # an agent's policy: that agent's lock; a global one excludes every writer
        with self._db.write(agent_id=agent_id) as uow:
            if agent_id is not None and uow.agents.get(agent_id) is None:
                raise NotFoundError("agent", agent_id)
            row = PolicyRow(
                id=new_id(),
                agent_id=agent_id,
                type=kind.value,
                rules=stored,
                priority=priority,
                enabled=int(enabled),
                created_at=now,
                updated_at=now,
            )
            uow.policies.add(row)
            after = _info(row)
            self._audit(uow, "added", None, after, actor, now)
            uow.commit()
        return after

    def update(
        self,
        policy_id: str,
        *,
        rules: Mapping[str, Any] | str | None = None,
        priority: int | None = None,
        enabled: bool | None = None,
        actor: str = "operator",
    ) -> PolicyInfo:
        """Replace the rules and/or change priority or enabled (POLICY_UPDATED audit).

        The type and the agent of a policy never change: remove it and add another.

        Raises:
            InvalidInputError: invalid rules (every problem listed), priority, enabled or actor.
            NotFoundError: no such policy.
        """
        policy_id = check_id(policy_id, "policy_id", max_length=64)
        actor = check_actor(actor)
        if priority is not None:
            priority = check_priority(priority)
        if enabled is not None:
            enabled = check_bool(enabled, "enabled")
        now = self._clock.now()
        lock = self._agent_of(policy_id)
        with self._db.write(agent_id=lock) as uow:
            row = self._row(uow, policy_id, lock)
            before = _info(row)
            if rules is not None:
                row.rules = _stored_rules(row.type, rules, self._networks)[1]
            if priority is not None:
                row.priority = priority
            if enabled is not None:
                row.enabled = int(enabled)
            after = _info(row)
            if after.to_dict() == before.to_dict():
                return before
            row.updated_at = now
            uow.session.add(row)
            uow.session.flush()
            after = _info(row)
            self._audit(uow, "updated", before, after, actor, now)
            uow.commit()
        return after

    def enable(self, policy_id: str, *, actor: str = "operator") -> PolicyInfo:
        """Enforce the policy again (POLICY_UPDATED audit). Raises NotFoundError."""
        return self.update(policy_id, enabled=True, actor=actor)

    def disable(self, policy_id: str, *, actor: str = "operator") -> PolicyInfo:
        """Stop enforcing the policy, keeping it stored (POLICY_UPDATED audit)."""
        return self.update(policy_id, enabled=False, actor=actor)

    def remove(self, policy_id: str, *, actor: str = "operator") -> PolicyInfo:
        """Delete the policy (POLICY_UPDATED audit with the removed policy as ``before``).

        Returns:
            The policy as it was.

        Raises:
            NotFoundError: no such policy.
        """
        policy_id = check_id(policy_id, "policy_id", max_length=64)
        actor = check_actor(actor)
        now = self._clock.now()
        lock = self._agent_of(policy_id)
        with self._db.write(agent_id=lock) as uow:
            before = _info(self._row(uow, policy_id, lock))
            uow.policies.delete(policy_id)
            self._audit(uow, "removed", before, None, actor, now)
            uow.commit()
        return before

    # ------------------------------------------------------------------ dry run / replay

    def dry_run(
        self,
        agent_id: str,
        request: object,
        *,
        now: int | None = None,
        prices: Mapping[str, AssetPrice] | None = None,
        policies: Iterable[PolicySpec] | None = None,
    ) -> Explanation:
        """Explain what the stored policies (or ``policies``) would do with ``request``.

        Writes nothing. ``now`` defaults to the clock. A what-if tool: the request is judged
        as written, with the ``prices`` given; :meth:`waiaas.Wallet.dry_run` is the preview
        that goes through ``send``'s gate (built transaction, oracle prices).

        Raises:
            InvalidInputError: malformed request or arguments.
            NotFoundError: no such agent.
        """
        agent_id = check_id(agent_id, "agent_id", max_length=64)
        at = self._clock.now() if now is None else now
        with self._db.read() as uow:
            agent = self._agent(uow, agent_id)
            specs = self.specs(uow, agent_id) if policies is None else list(policies)
            usage = load_usage(uow, agent_id, at, required_windows(specs))
        return explain(request, agent, specs, usage, at, config=self._config, prices=prices)

    def replay(
        self,
        agent_id: str,
        candidate_policies: Iterable[PolicySpec],
        *,
        since: int | None = None,
        until: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReplayResult:
        """Replay the agent's recorded requests against ``candidate_policies``.

        Records are read from ``transactions`` (request and decision from ``metadata``);
        rows without a stored request are skipped. See :func:`waiaas.policy.replay`.
        ``progress(done, total)`` is called after each replayed record.

        Raises:
            InvalidInputError: bad arguments, or more than 200 000 records in the range
                (narrow it with ``since``/``until``).
            NotFoundError: no such agent.
        """
        agent_id = check_id(agent_id, "agent_id", max_length=64)
        specs = list(candidate_policies)
        for spec in specs:
            if not isinstance(spec, PolicySpec):
                raise InvalidInputError(
                    "candidate_policies must hold PolicySpec values", field="candidate_policies"
                )
        lo = -1 if since is None else since
        hi = 2**62 if until is None else until
        with self._db.read() as uow:
            agent = self._agent(uow, agent_id)
            rows = uow.session.execute(
                text_for(_REPLAY_SQL, dialect_of(uow)),
                {"agent": agent_id, "lo": lo, "hi": hi, "cap": _MAX_REPLAY + 1},
            ).all()
        if len(rows) > _MAX_REPLAY:
            raise InvalidInputError(
                f"more than {_MAX_REPLAY} records; narrow the range with since/until",
                field="since",
            )
        records = [r for r in (_record(*row) for row in rows) if r is not None]
        return replay(records, specs, agent, self._config, progress=progress)

    # ------------------------------------------------------------------ internals

    def _row(self, uow: UnitOfWork, policy_id: str, lock: str | None = None) -> PolicyRow:
        row = uow.policies.get(policy_id)
        if row is None:
            raise NotFoundError(_ENTITY, policy_id)
        if lock is not None and row.agent_id != lock:
            raise StorageError(f"policy {policy_id} changed agents")
        return row

    def _agent_of(self, policy_id: str) -> str | None:
        """The agent a policy governs, for its unit of work's lock: ``None`` for a global
        policy (a global unit of work), on SQLite (one writer at a time) or when missing."""
        if self._db.dialect == "sqlite":
            return None
        found = self._db.fetch_one("SELECT agent_id FROM policies WHERE id = ?", (policy_id,))
        return None if found is None or found[0] is None else str(found[0])

    def _agent(self, uow: UnitOfWork, agent_id: str) -> AgentContext:
        row: AgentRow | None = uow.agents.get(agent_id)
        if row is None:
            raise NotFoundError("agent", agent_id)
        return AgentContext(
            id=row.id,
            chain=row.chain,
            network=row.network,
            status=AgentStatus(row.status),
            owner_address=row.owner_address,
        )

    def _audit(
        self,
        uow: UnitOfWork,
        action: str,
        before: PolicyInfo | None,
        after: PolicyInfo | None,
        actor: str,
        now: int,
    ) -> None:
        subject = after or before
        assert subject is not None
        if uow.integrity is not None:
            from waiaas.integrity import seal_policy_scope

            seal_policy_scope(uow.integrity, uow, subject.agent_id, now)
        uow.state.bump(POLICIES)  # as the triggers do: a change seen without them
        uow.audit.append(
            AuditEvent.POLICY_UPDATED,
            actor=actor,
            now=now,
            agent_id=subject.agent_id,
            details={
                "action": action,
                "policy_id": subject.id,
                "type": subject.type.value,
                "before": None if before is None else before.to_dict(),
                "after": None if after is None else after.to_dict(),
            },
        )


def _record(
    tx_id: str,
    created_at: int,
    status: str,
    meta: str | None,
    spend: str | None = None,
    *columns: str | None,
) -> ReplayRecord | None:
    """A replay record from a transaction row (``columns``: its ``type``, ``to_address``,
    ``amount``, ``tier`` and ``integrity``), or ``None`` when it holds no request."""
    if not meta:
        return None
    try:
        data = as_meta(json.loads(meta))
    except ValueError:
        return None
    names = ("type", "to_address", "amount", "tier", "integrity")
    row = SimpleNamespace(**{**dict.fromkeys(names), **dict(zip(names, columns, strict=False))})
    request = request_of(data, row)
    if not isinstance(request, dict):
        return None
    decision: Decision | None = None
    if isinstance(decision_in(data, row), dict):
        try:
            decision = Decision.model_validate(decision_of(data, _spend(spend), row))
        except ValidationError:
            decision = None
    try:
        return ReplayRecord(
            tx_id=tx_id,
            created_at=created_at,
            request=coerce_request(request),
            decision=decision,
            status=status,
        )
    except InvalidInputError:
        return None


def _spend(text: str | None) -> dict[str, int] | None:
    """The ``transactions.spend`` column as ints (``None`` when absent or unreadable)."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): int(v) for k, v in data.items() if isinstance(v, str) and v.isdecimal()}
