"""Usage buckets: per agent and hour, the sums rolling budgets read instead of the rows.

``usage_buckets`` (migration 0009) holds, for each agent and each hour (``start`` = the hour's
first second, ``created_at - created_at mod 3600``):

- one *counts* row (``kind`` 0, ``asset`` ``''``): ``requests`` (transactions rows),
  ``denials`` (of which ``error = 'POLICY_DENIED'``), ``refused`` / ``refused_denials`` (the
  audit log's refusals and dry runs that left no transaction row, see
  :data:`REFUSAL_SQL`) and ``odd``: spending rows the sums cannot hold exactly (no ``spend``
  column, an amount with more than 81 digits or non-ASCII characters), which make readers
  take that hour from its rows;
- one *spend* row per asset key (``kind`` 1): ``requests`` spending rows name the asset, and
  the exact sum of their amounts is held as nine limbs of nine decimal digits, ``s0`` …
  ``s8`` (SQLite integers hold the limb sums exactly; the value is
  ``sum(s_i * 10**(9*i))``, computed in Python: wei exceeds 64 bits).

SQLite triggers keep the rows exact: every INSERT, DELETE and relevant UPDATE of
``transactions`` (status into or out of the spending states, ``error`` to or from
``POLICY_DENIED``, ``spend``, ``created_at``, ``agent_id``) and every INSERT into ``audit_log``
adjusts them in the same statement, hence in the same ``BEGIN IMMEDIATE`` transaction as the
row, whichever code (or process, or raw SQL) writes it.

Tamper evidence: each bucket row carries ``mac``, HMAC over its values under the wallet's
integrity key (keystore). The triggers cannot compute it; they set it to NULL. At commit, a
keyed unit of work seals the rows it changed (:func:`reseal`): rows it verified before
changing them (admission reads its agent's buckets first) are MAC'd as they are, any other is
recomputed from its rows first. Readers with the key use a bucket only when its MAC verifies;
otherwise they read that hour from its rows (:func:`rebuild`), so an edited bucket never
lowers what a budget counts below what the rows say.

Finer levels (migration 0016): ``usage_minutes`` and ``usage_seconds`` hold the same rows per
minute and per second (:data:`FINE`), kept by four more triggers in the same statements and
sealed the same way (their MACs also cover the span). Readers take the part of the hour a
window starts in from them (at most 59 minutes and 59 seconds) instead of its rows.

The table, index and trigger statements below are what migrations 0009 and 0016 create (the
schema test compares them with the file): changing them needs a new migration.
"""

from __future__ import annotations

import functools
import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from waiaas.db.engine import adapt_sql, lock_key, scope_of

__all__ = [
    "BUCKET",
    "COUNTS",
    "DDL",
    "LIMBS",
    "SPEND",
    "bucket_start",
    "rebuild",
    "reseal",
]


BUCKET = 3600  # seconds per bucket
LIMB_DIGITS = 9
LIMBS = 9  # 81 decimal digits: any uint256 amount (78 digits)
MAX_DIGITS = LIMB_DIGITS * LIMBS
COUNTS = 0
SPEND = 1
SPENDING = ("PENDING", "QUEUED", "EXECUTING", "SUBMITTED", "CONFIRMED")
DENIED = "POLICY_DENIED"

_LIMB_COLS = [f"s{i}" for i in range(LIMBS)]
COLUMNS = (
    "agent_id",
    "start",
    "kind",
    "asset",
    "requests",
    "denials",
    "refused",
    "refused_denials",
    "odd",
    *_LIMB_COLS,
    "mac",
)
_SPENDING_LIST = ", ".join(f"'{s}'" for s in SPENDING)

# Refusals that leave no transaction row (session constraints, guards, malformed requests)
# and agents' dry runs, as audit rows: they count as requests, and all but dry runs as denials.
REFUSAL_SQL = (
    "(event_type IN ('REQUEST_REFUSED', 'DRY_RUN') "
    "OR (event_type = 'POLICY_VIOLATION' AND tx_id IS NULL))"
)


def bucket_start(ts: int) -> int:
    """The first second of the bucket holding ``ts`` (floor, also for negative times)."""
    return ts - ts % BUCKET


def _start(expr: str, span: int = BUCKET) -> str:
    """SQL for :func:`bucket_start` (SQLite's ``%`` keeps the dividend's sign); ``span``: the
    bucket's length (an hour, or a finer level's)."""
    return f"({expr} - ((({expr}) % {span}) + {span}) % {span})"


def _spending(r: str) -> str:
    return f"({r}.status IN ({_SPENDING_LIST}) AND {r}.error IS NOT '{DENIED}')"


def _json(r: str) -> str:
    return f"json_each(CASE WHEN {_spending(r)} AND json_valid({r}.spend) THEN {r}.spend END)"


# a JSON string of ASCII digits only (what Python's str.isdigit accepts, minus non-ASCII)
_DIGITS = "(je.type = 'text' AND je.value != '' AND je.value NOT GLOB '*[^0-9]*')"
# strings the limbs cannot hold as the reader computes them: too long, or non-ASCII
_ODD_VALUE = (
    f"(je.type = 'text' AND (length(CAST(je.value AS BLOB)) != length(je.value) "
    f"OR ({_DIGITS} AND length(je.value) > {MAX_DIGITS})))"
)


def _odd(r: str) -> str:
    return (
        f"(CASE WHEN NOT {_spending(r)} THEN 0 WHEN {r}.spend IS NULL THEN 1 "
        f"WHEN EXISTS (SELECT 1 FROM {_json(r)} AS je WHERE typeof(je.key) = 'text' "
        f"AND {_ODD_VALUE}) THEN 1 ELSE 0 END)"
    )


def _limb(i: int) -> str:
    return f"CAST(substr(je.value, {-LIMB_DIGITS * (i + 1)}, {LIMB_DIGITS}) AS INTEGER)"


def _apply(r: str, sign: str, table: str = "usage_buckets", span: int = BUCKET) -> list[str]:
    """Statements adding (``sign`` ``+``) or removing (``-``) row ``r``'s contribution to the
    buckets of ``table`` (``span`` seconds each)."""
    counts = (
        f"INSERT INTO {table} (agent_id, start, kind, asset, requests, denials, odd) "
        f"VALUES ({r}.agent_id, {_start(f'{r}.created_at', span)}, {COUNTS}, '', {sign}1, "
        f"{sign}({r}.error IS '{DENIED}'), {sign}{_odd(r)}) "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        "requests = requests + excluded.requests, denials = denials + excluded.denials, "
        "odd = odd + excluded.odd, mac = NULL"
    )
    limbs = ", ".join(f"{sign}{_limb(i)}" for i in range(LIMBS))
    sets = ", ".join(f"{c} = {c} + excluded.{c}" for c in _LIMB_COLS)
    spend = (
        f"INSERT INTO {table} "
        f"(agent_id, start, kind, asset, requests, {', '.join(_LIMB_COLS)}) "
        f"SELECT {r}.agent_id, {_start(f'{r}.created_at', span)}, {SPEND}, je.key, {sign}1, "
        f"{limbs} "
        f"FROM {_json(r)} AS je WHERE typeof(je.key) = 'text' AND {_DIGITS} "
        f"AND length(je.value) <= {MAX_DIGITS} "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        f"requests = requests + excluded.requests, {sets}, mac = NULL"
    )
    return [counts, spend]


def _trigger(name: str, event: str, when: str, body: Iterable[str]) -> str:
    cond = f" WHEN {when}" if when else ""
    stmts = "; ".join(body)
    return f"CREATE TRIGGER {name} AFTER {event}{cond} BEGIN {stmts}; END"


def _audit_apply(table: str = "usage_buckets", span: int = BUCKET) -> str:
    """The statement counting a refusal audit row ``NEW`` in the buckets of ``table``."""
    return (
        f"INSERT INTO {table} (agent_id, start, kind, asset, refused, "
        f"refused_denials) VALUES (NEW.agent_id, {_start('NEW.timestamp', span)}, {COUNTS}, "
        "'', 1, NEW.event_type != 'DRY_RUN') "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        "refused = refused + excluded.refused, "
        "refused_denials = refused_denials + excluded.refused_denials, mac = NULL"
    )


_RELEVANT = (
    "OLD.agent_id IS NOT NEW.agent_id OR OLD.created_at IS NOT NEW.created_at "
    "OR OLD.spend IS NOT NEW.spend "
    f"OR (OLD.error IS '{DENIED}') != (NEW.error IS '{DENIED}') "
    f"OR (OLD.status IN ({_SPENDING_LIST})) != (NEW.status IN ({_SPENDING_LIST}))"
)

TABLE_DDL = (
    "CREATE TABLE usage_buckets ("
    "agent_id TEXT NOT NULL, start INTEGER NOT NULL, kind INTEGER NOT NULL, "
    "asset TEXT NOT NULL, "
    "requests INTEGER NOT NULL DEFAULT 0, denials INTEGER NOT NULL DEFAULT 0, "
    "refused INTEGER NOT NULL DEFAULT 0, refused_denials INTEGER NOT NULL DEFAULT 0, "
    "odd INTEGER NOT NULL DEFAULT 0, "
    + "".join(f"{c} INTEGER NOT NULL DEFAULT 0, " for c in _LIMB_COLS)
    + "mac TEXT, PRIMARY KEY (agent_id, start, kind, asset)) WITHOUT ROWID"
)
INDEX_DDL = (
    "CREATE INDEX idx_usage_buckets_unsealed ON usage_buckets (agent_id, start) WHERE mac IS NULL"
)

TRIGGERS = (
    _trigger("usage_tx_insert", "INSERT ON transactions", "", _apply("NEW", "+")),
    _trigger("usage_tx_delete", "DELETE ON transactions", "", _apply("OLD", "-")),
    _trigger(
        "usage_tx_update",
        "UPDATE OF agent_id, created_at, status, error, spend ON transactions",
        _RELEVANT,
        [*_apply("OLD", "-"), *_apply("NEW", "+")],
    ),
    _trigger(
        "usage_audit_insert",
        "INSERT ON audit_log",
        "NEW.agent_id IS NOT NULL AND "
        + REFUSAL_SQL.replace("event_type", "NEW.event_type").replace("tx_id", "NEW.tx_id"),
        [_audit_apply()],
    ),
)
TRIGGER_NAMES = ("usage_tx_insert", "usage_tx_delete", "usage_tx_update", "usage_audit_insert")


def fill_sql(
    where_tx: str = "1", where_audit: str = "1", table: str = "usage_buckets", span: int = BUCKET
) -> list[str]:
    """Statements that add the rows matching the conditions to the buckets of ``table``
    (``span`` seconds each; backfill)."""
    start = _start("t.created_at", span)
    refusal = REFUSAL_SQL.replace("event_type", "a.event_type").replace("tx_id", "a.tx_id")
    limbs = ", ".join(f"SUM({_limb(i)})" for i in range(LIMBS))
    sets = ", ".join(f"{c} = {c} + excluded.{c}" for c in _LIMB_COLS)
    return [
        f"INSERT INTO {table} (agent_id, start, kind, asset, requests, denials, odd) "
        f"SELECT t.agent_id, {start}, {COUNTS}, '', COUNT(*), "
        f"SUM(t.error IS '{DENIED}'), SUM({_odd('t')}) "
        f"FROM transactions AS t WHERE {where_tx} GROUP BY 1, 2 "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        "requests = requests + excluded.requests, denials = denials + excluded.denials, "
        "odd = odd + excluded.odd, mac = NULL",
        f"INSERT INTO {table} "
        f"(agent_id, start, kind, asset, requests, {', '.join(_LIMB_COLS)}) "
        f"SELECT t.agent_id, {start}, {SPEND}, je.key, COUNT(*), {limbs} "
        f"FROM transactions AS t, {_json('t')} AS je WHERE ({where_tx}) "
        f"AND typeof(je.key) = 'text' AND {_DIGITS} AND length(je.value) <= {MAX_DIGITS} "
        f"GROUP BY 1, 2, 4 "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        f"requests = requests + excluded.requests, {sets}, mac = NULL",
        f"INSERT INTO {table} (agent_id, start, kind, asset, refused, refused_denials) "
        f"SELECT a.agent_id, {_start('a.timestamp', span)}, {COUNTS}, '', COUNT(*), "
        "SUM(a.event_type != 'DRY_RUN') FROM audit_log AS a "
        f"WHERE a.agent_id IS NOT NULL AND {refusal} AND ({where_audit}) GROUP BY 1, 2 "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        "refused = refused + excluded.refused, "
        "refused_denials = refused_denials + excluded.refused_denials, mac = NULL",
    ]


DDL = (TABLE_DDL, INDEX_DDL, *TRIGGERS)

# --------------------------------------------------------------------------- PostgreSQL
#
# The same table, counts and arithmetic as the SQLite statements above, written for
# PostgreSQL: plpgsql trigger functions (one per SQLite trigger, same names for the triggers),
# BIGINT columns (limb sums exceed 32 bits), ``mod()`` for the floor of negative times (no
# ``%``: psycopg reads it as a placeholder), ``IS [NOT] DISTINCT FROM`` for SQLite's ``IS``,
# and the spend column parsed as ``jsonb`` only when it is valid JSON
# (:data:`PG_FUNCTIONS`). The one difference PostgreSQL imposes: ``jsonb`` cannot hold the
# escape ``\u0000``, so a spend text containing it is not JSON there (nothing counts from it,
# in the buckets and in the rows alike); the wallet never writes one.

PG_TRY_JSONB = "waiaas_try_jsonb"
PG_SPEND_ENTRIES = "waiaas_spend_entries"

#: helper functions (created first): the safe ``text`` -> ``jsonb`` parse, and a spend
#: document's entries as (key, the value's text when it is a JSON string, else NULL)
PG_FUNCTIONS = (
    f"CREATE FUNCTION {PG_TRY_JSONB}(doc text) RETURNS jsonb "
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$ "
    "BEGIN RETURN doc::jsonb; "
    "EXCEPTION WHEN data_exception OR program_limit_exceeded THEN RETURN NULL; "
    "END $fn$",
    f"CREATE FUNCTION {PG_SPEND_ENTRIES}(doc text) RETURNS TABLE (key text, value text) "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$ "
    "SELECT e.key, CASE WHEN jsonb_typeof(e.value) = 'string' THEN e.value #>> '{}' END "
    f"FROM (SELECT {PG_TRY_JSONB}(doc) AS j) AS d, "
    "jsonb_each(CASE WHEN jsonb_typeof(d.j) = 'object' THEN d.j END) AS e "
    "$fn$",
)


def _pg_start(expr: str, span: int = BUCKET) -> str:
    """SQL for :func:`bucket_start` on PostgreSQL (``mod`` keeps the dividend's sign)."""
    return f"({expr} - mod(mod({expr}, {span}) + {span}, {span}))"


def _pg_spending(r: str) -> str:
    return f"({r}.status IN ({_SPENDING_LIST}) AND {r}.error IS DISTINCT FROM '{DENIED}')"


def _pg_denied(r: str) -> str:
    return f"(CASE WHEN {r}.error IS NOT DISTINCT FROM '{DENIED}' THEN 1 ELSE 0 END)"


# a JSON string of ASCII digits only; strings the limbs cannot hold: too long, or non-ASCII
_PG_DIGITS = "(je.value ~ '^[0-9]+$')"
_PG_ODD_VALUE = (
    f"(je.value IS NOT NULL AND (octet_length(je.value) != length(je.value) "
    f"OR ({_PG_DIGITS} AND length(je.value) > {MAX_DIGITS})))"
)


def _pg_entries(r: str) -> str:
    return f"{PG_SPEND_ENTRIES}(CASE WHEN {_pg_spending(r)} THEN {r}.spend END)"


def _pg_odd(r: str) -> str:
    return (
        f"(CASE WHEN NOT {_pg_spending(r)} THEN 0 WHEN {r}.spend IS NULL THEN 1 "
        f"WHEN EXISTS (SELECT 1 FROM {_pg_entries(r)} AS je WHERE {_PG_ODD_VALUE}) THEN 1 "
        "ELSE 0 END)"
    )


def _pg_limb(i: int) -> str:
    # the value has at most MAX_DIGITS digits: left-padded, limb i is a fixed slice
    pos = MAX_DIGITS - LIMB_DIGITS * (i + 1) + 1
    return f"CAST(substr(lpad(je.value, {MAX_DIGITS}, '0'), {pos}, {LIMB_DIGITS}) AS BIGINT)"


_PG_SPEND_FILTER = f"{_PG_DIGITS} AND length(je.value) <= {MAX_DIGITS}"


def _pg_upsert(cols: Sequence[str]) -> str:
    sets = ", ".join(f"{c} = u.{c} + excluded.{c}" for c in cols)
    return f"ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET {sets}, mac = NULL"


_PG_COUNT_COLS = ("requests", "denials", "odd")
_PG_SPEND_COLS = ("requests", *_LIMB_COLS)
_PG_INTO_SPEND = (
    f"INSERT INTO usage_buckets AS u (agent_id, start, kind, asset, {', '.join(_PG_SPEND_COLS)}) "
)


def _pg_into_spend(table: str) -> str:
    return _PG_INTO_SPEND.replace("usage_buckets", table, 1)


_PG_REFUSAL_COLS = ("refused", "refused_denials")


def _pg_apply(r: str, sign: str, table: str = "usage_buckets", span: int = BUCKET) -> list[str]:
    """:func:`_apply` on PostgreSQL: statements of a trigger function's body."""
    start = _pg_start(f"{r}.created_at", span)
    counts = (
        f"INSERT INTO {table} AS u (agent_id, start, kind, asset, requests, denials, odd) "
        f"VALUES ({r}.agent_id, {start}, {COUNTS}, '', {sign}1, "
        f"{sign}{_pg_denied(r)}, {sign}{_pg_odd(r)}) " + _pg_upsert(_PG_COUNT_COLS)
    )
    limbs = ", ".join(f"{sign}{_pg_limb(i)}" for i in range(LIMBS))
    spend = (
        _pg_into_spend(table) + f"SELECT {r}.agent_id, {start}, {SPEND}, je.key, {sign}1, {limbs} "
        f"FROM {_pg_entries(r)} AS je WHERE {_PG_SPEND_FILTER} " + _pg_upsert(_PG_SPEND_COLS)
    )
    return [counts, spend]


def _pg_function(name: str, body: Iterable[str]) -> str:
    """A plpgsql trigger function running ``body``. ``search_path`` is the one it was created
    with (the wallet's schema), whoever fires it."""
    stmts = "; ".join(body)
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
        f"SET search_path FROM CURRENT AS $fn$ BEGIN {stmts}; RETURN NULL; END $fn$"
    )


def _pg_trigger(name: str, event: str, when: str) -> str:
    cond = f" WHEN ({when})" if when else ""
    return f"CREATE TRIGGER {name} AFTER {event} FOR EACH ROW{cond} EXECUTE FUNCTION {name}()"


_PG_RELEVANT = (
    "OLD.agent_id IS DISTINCT FROM NEW.agent_id OR OLD.created_at IS DISTINCT FROM "
    "NEW.created_at OR OLD.spend IS DISTINCT FROM NEW.spend "
    f"OR (OLD.error IS NOT DISTINCT FROM '{DENIED}') != (NEW.error IS NOT DISTINCT FROM "
    f"'{DENIED}') "
    f"OR (OLD.status IN ({_SPENDING_LIST})) != (NEW.status IN ({_SPENDING_LIST}))"
)


def _pg_audit_apply(table: str = "usage_buckets", span: int = BUCKET) -> str:
    return (
        f"INSERT INTO {table} AS u (agent_id, start, kind, asset, refused, refused_denials) "
        f"VALUES (NEW.agent_id, {_pg_start('NEW.timestamp', span)}, {COUNTS}, '', 1, "
        "CASE WHEN NEW.event_type != 'DRY_RUN' THEN 1 ELSE 0 END) " + _pg_upsert(_PG_REFUSAL_COLS)
    )


_PG_AUDIT_BODY = _pg_audit_apply()

PG_TABLE_DDL = (
    "CREATE TABLE usage_buckets ("
    "agent_id TEXT NOT NULL, start BIGINT NOT NULL, kind INTEGER NOT NULL, "
    "asset TEXT NOT NULL, "
    "requests BIGINT NOT NULL DEFAULT 0, denials BIGINT NOT NULL DEFAULT 0, "
    "refused BIGINT NOT NULL DEFAULT 0, refused_denials BIGINT NOT NULL DEFAULT 0, "
    "odd BIGINT NOT NULL DEFAULT 0, "
    + "".join(f"{c} BIGINT NOT NULL DEFAULT 0, " for c in _LIMB_COLS)
    + "mac TEXT, PRIMARY KEY (agent_id, start, kind, asset))"
)
PG_INDEX_DDL = INDEX_DDL

PG_TRIGGER_FUNCTIONS = (
    _pg_function("usage_tx_insert", _pg_apply("NEW", "+")),
    _pg_function("usage_tx_delete", _pg_apply("OLD", "-")),
    _pg_function("usage_tx_update", [*_pg_apply("OLD", "-"), *_pg_apply("NEW", "+")]),
    _pg_function("usage_audit_insert", [_PG_AUDIT_BODY]),
)
PG_TRIGGERS = (
    _pg_trigger("usage_tx_insert", "INSERT ON transactions", ""),
    _pg_trigger("usage_tx_delete", "DELETE ON transactions", ""),
    _pg_trigger(
        "usage_tx_update",
        "UPDATE OF agent_id, created_at, status, error, spend ON transactions",
        _PG_RELEVANT,
    ),
    _pg_trigger(
        "usage_audit_insert",
        "INSERT ON audit_log",
        "NEW.agent_id IS NOT NULL AND "
        + REFUSAL_SQL.replace("event_type", "NEW.event_type").replace("tx_id", "NEW.tx_id"),
    ),
)
PG_TRUNCATE_NAME = "usage_tx_truncate"
PG_TRIGGER_NAMES = (*TRIGGER_NAMES, PG_TRUNCATE_NAME)
#: the tables each trigger is on (PostgreSQL's DROP TRIGGER names it)
TRIGGER_TABLES = dict(
    zip(PG_TRIGGER_NAMES, ("transactions",) * 3 + ("audit_log", "transactions"), strict=True)
)


def pg_fill_sql(
    where_tx: str = "TRUE",
    where_audit: str = "TRUE",
    table: str = "usage_buckets",
    span: int = BUCKET,
) -> list[str]:
    """:func:`fill_sql` on PostgreSQL."""
    start = _pg_start("t.created_at", span)
    refusal = REFUSAL_SQL.replace("event_type", "a.event_type").replace("tx_id", "a.tx_id")
    limbs = ", ".join(f"SUM({_pg_limb(i)})" for i in range(LIMBS))
    return [
        f"INSERT INTO {table} AS u (agent_id, start, kind, asset, requests, denials, odd) "
        f"SELECT t.agent_id, {start}, {COUNTS}, '', COUNT(*), "
        f"SUM({_pg_denied('t')}), SUM({_pg_odd('t')}) "
        f"FROM transactions AS t WHERE {where_tx} GROUP BY 1, 2 " + _pg_upsert(_PG_COUNT_COLS),
        _pg_into_spend(table) + f"SELECT t.agent_id, {start}, {SPEND}, je.key, COUNT(*), {limbs} "
        f"FROM transactions AS t, {_pg_entries('t')} AS je WHERE ({where_tx}) "
        f"AND {_PG_SPEND_FILTER} GROUP BY 1, 2, 4 " + _pg_upsert(_PG_SPEND_COLS),
        f"INSERT INTO {table} AS u (agent_id, start, kind, asset, refused, refused_denials) "
        f"SELECT a.agent_id, {_pg_start('a.timestamp', span)}, {COUNTS}, '', COUNT(*), "
        "SUM(CASE WHEN a.event_type != 'DRY_RUN' THEN 1 ELSE 0 END) FROM audit_log AS a "
        f"WHERE a.agent_id IS NOT NULL AND {refusal} AND ({where_audit}) GROUP BY 1, 2 "
        + _pg_upsert(_PG_REFUSAL_COLS),
    ]


# PostgreSQL only: TRUNCATE fires no row trigger. After ``TRUNCATE transactions`` only the
# audit log's refusals are left to count (the audit log itself refuses TRUNCATE).
PG_TRUNCATE = (
    _pg_function(PG_TRUNCATE_NAME, ["DELETE FROM usage_buckets", pg_fill_sql()[2]]),
    f"CREATE TRIGGER {PG_TRUNCATE_NAME} AFTER TRUNCATE ON transactions "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_TRUNCATE_NAME}()",
)
PG_DDL = (
    *PG_FUNCTIONS,
    PG_TABLE_DDL,
    PG_INDEX_DDL,
    *PG_TRIGGER_FUNCTIONS,
    *PG_TRIGGERS,
    *PG_TRUNCATE,
)


def ddl(dialect: str) -> tuple[str, ...]:
    """What migration 0009 creates on ``dialect`` (``"sqlite"`` or ``"postgresql"``)."""
    return PG_DDL if dialect == "postgresql" else DDL


def fill(dialect: str) -> list[str]:
    """The backfill of every existing row on ``dialect`` (migration 0009)."""
    return pg_fill_sql() if dialect == "postgresql" else fill_sql()


def drop_sql(dialect: str) -> list[str]:
    """What migration 0009's downgrade runs before dropping the index and table."""
    if dialect != "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name}" for name in TRIGGER_NAMES]
    return [
        *(f"DROP TRIGGER IF EXISTS {n} ON {TRIGGER_TABLES[n]}" for n in PG_TRIGGER_NAMES),
        *(f"DROP FUNCTION IF EXISTS {n}()" for n in PG_TRIGGER_NAMES),
    ]


def drop_functions_sql(dialect: str) -> list[str]:
    """The helper functions migration 0009's downgrade drops after the table (PostgreSQL)."""
    if dialect != "postgresql":
        return []
    return [
        f"DROP FUNCTION IF EXISTS {PG_SPEND_ENTRIES}(text)",
        f"DROP FUNCTION IF EXISTS {PG_TRY_JSONB}(text)",
    ]


# --------------------------------------------------------------------------- finer levels
#
# Migration 0016: the same sums per minute (``usage_minutes``) and per second
# (``usage_seconds``), same columns, kept by the triggers below in the same statements as the
# hourly ones. A window's start falls inside an hour: that hour's part inside (or outside) the
# window is whole minutes plus whole seconds, so readers take it from at most 59 minute and
# 59 second buckets instead of the rows (``created_at`` is in whole seconds: no window's
# start falls inside a second). The MAC of a finer bucket also covers its span
# (:func:`bucket_mac`), so no bucket stands for one of another level.

MINUTE = 60
SECOND = 1
#: the finer levels, coarsest first: (table, seconds per bucket)
FINE = (("usage_minutes", MINUTE), ("usage_seconds", SECOND))
#: every level, the hourly buckets first
LEVELS = (("usage_buckets", BUCKET), *FINE)
FINE_TRIGGER_NAMES = (
    "usage_fine_tx_insert",
    "usage_fine_tx_delete",
    "usage_fine_tx_update",
    "usage_fine_audit_insert",
)


def _each_fine(make: Any) -> list[str]:
    return [stmt for table, span in FINE for stmt in make(table, span)]


FINE_TABLE_DDL = tuple(TABLE_DDL.replace("usage_buckets", t, 1) for t, _ in FINE)
FINE_INDEX_DDL = tuple(INDEX_DDL.replace("usage_buckets", t) for t, _ in FINE)
FINE_TRIGGERS = (
    _trigger(
        FINE_TRIGGER_NAMES[0],
        "INSERT ON transactions",
        "",
        _each_fine(lambda t, s: _apply("NEW", "+", t, s)),
    ),
    _trigger(
        FINE_TRIGGER_NAMES[1],
        "DELETE ON transactions",
        "",
        _each_fine(lambda t, s: _apply("OLD", "-", t, s)),
    ),
    _trigger(
        FINE_TRIGGER_NAMES[2],
        "UPDATE OF agent_id, created_at, status, error, spend ON transactions",
        _RELEVANT,
        _each_fine(lambda t, s: [*_apply("OLD", "-", t, s), *_apply("NEW", "+", t, s)]),
    ),
    _trigger(
        FINE_TRIGGER_NAMES[3],
        "INSERT ON audit_log",
        TRIGGERS[3].split(" WHEN ", 1)[1].split(" BEGIN ", 1)[0],
        _each_fine(lambda t, s: [_audit_apply(t, s)]),
    ),
)
FINE_DDL = (*FINE_TABLE_DDL, *FINE_INDEX_DDL, *FINE_TRIGGERS)

PG_FINE_TRUNCATE_NAME = "usage_fine_tx_truncate"
PG_FINE_TRIGGER_NAMES = (*FINE_TRIGGER_NAMES, PG_FINE_TRUNCATE_NAME)
PG_FINE_DDL = (
    *(PG_TABLE_DDL.replace("usage_buckets", t, 1) for t, _ in FINE),
    *FINE_INDEX_DDL,
    _pg_function(FINE_TRIGGER_NAMES[0], _each_fine(lambda t, s: _pg_apply("NEW", "+", t, s))),
    _pg_function(FINE_TRIGGER_NAMES[1], _each_fine(lambda t, s: _pg_apply("OLD", "-", t, s))),
    _pg_function(
        FINE_TRIGGER_NAMES[2],
        _each_fine(lambda t, s: [*_pg_apply("OLD", "-", t, s), *_pg_apply("NEW", "+", t, s)]),
    ),
    _pg_function(FINE_TRIGGER_NAMES[3], _each_fine(lambda t, s: [_pg_audit_apply(t, s)])),
    *(
        trigger.replace(old, new)
        for trigger, old, new in zip(PG_TRIGGERS, TRIGGER_NAMES, FINE_TRIGGER_NAMES, strict=True)
    ),
    # TRUNCATE transactions: only the audit log's refusals are left to count
    _pg_function(
        PG_FINE_TRUNCATE_NAME,
        _each_fine(lambda t, s: [f"DELETE FROM {t}", pg_fill_sql(table=t, span=s)[2]]),
    ),
    f"CREATE TRIGGER {PG_FINE_TRUNCATE_NAME} AFTER TRUNCATE ON transactions "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FINE_TRUNCATE_NAME}()",
)


def fine_ddl(dialect: str) -> tuple[str, ...]:
    """What migration 0016 creates on ``dialect``."""
    return PG_FINE_DDL if dialect == "postgresql" else FINE_DDL


def fine_fill(dialect: str) -> list[str]:
    """The backfill of the finer levels from every existing row (migration 0016)."""
    if dialect == "postgresql":
        return _each_fine(lambda t, s: pg_fill_sql(table=t, span=s))
    return _each_fine(lambda t, s: fill_sql(table=t, span=s))


def fine_drop_sql(dialect: str) -> list[str]:
    """What migration 0016's downgrade runs: the triggers (and functions), indexes, tables."""
    if dialect == "postgresql":
        first = [
            *(f"DROP TRIGGER IF EXISTS {n} ON transactions" for n in PG_FINE_TRIGGER_NAMES[:3]),
            f"DROP TRIGGER IF EXISTS {FINE_TRIGGER_NAMES[3]} ON audit_log",
            f"DROP TRIGGER IF EXISTS {PG_FINE_TRUNCATE_NAME} ON transactions",
            *(f"DROP FUNCTION IF EXISTS {n}()" for n in PG_FINE_TRIGGER_NAMES),
        ]
    else:
        first = [f"DROP TRIGGER IF EXISTS {n}" for n in FINE_TRIGGER_NAMES]
    return [
        *first,
        *(f"DROP INDEX IF EXISTS idx_{t}_unsealed" for t, _ in FINE),
        *(f"DROP TABLE IF EXISTS {t}" for t, _ in FINE),
    ]


# --------------------------------------------------------------------------- reading

# What a row's MAC covers after the agent id: the key and every counter.
SEALED = COLUMNS[1:-1]
_COUNTERS = COLUMNS[4:-1]
ODD = SEALED.index("odd")
# A row the sums cannot stand for: rows the limbs cannot hold, or values no trigger writes.
NEEDS_ROWS = (
    "(odd != 0 OR kind NOT IN (0, 1) OR "
    + " OR ".join(f"typeof({c}) != 'integer' OR {c} < 0" for c in _COUNTERS)
    + ")"
)
# On PostgreSQL every counter is a BIGINT NOT NULL: only the values can be wrong.
_PG_NEEDS_ROWS = (
    "(odd != 0 OR kind NOT IN (0, 1) OR " + " OR ".join(f"{c} < 0" for c in _COUNTERS) + ")"
)
VERIFY_SQL = f"SELECT {', '.join(SEALED)}, mac FROM usage_buckets WHERE agent_id = ? AND start >= ?"
NEEDS_ROWS_SQL = (
    f"SELECT DISTINCT start FROM usage_buckets WHERE agent_id = ? AND start >= ? AND {NEEDS_ROWS}"
)
_PG_NEEDS_ROWS_SQL = NEEDS_ROWS_SQL.replace(NEEDS_ROWS, _PG_NEEDS_ROWS)


def dialect_of(conn: Any) -> str:
    """``"sqlite"`` or ``"postgresql"``: the dialect of a DB-API connection."""
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgresql"


@functools.lru_cache(maxsize=4)
def verify_sql(dialect: str) -> str:
    """:data:`VERIFY_SQL` for ``dialect`` (parameters: agent id, first start)."""
    return adapt_sql(VERIFY_SQL, dialect)


@functools.lru_cache(maxsize=4)
def needs_rows_sql(dialect: str) -> str:
    """:data:`NEEDS_ROWS_SQL` for ``dialect`` (parameters: agent id, first start)."""
    if dialect == "postgresql":
        return adapt_sql(_PG_NEEDS_ROWS_SQL, dialect)
    return NEEDS_ROWS_SQL


def sane(values: Sequence[Any]) -> bool:
    """Whether a row's values (:data:`SEALED` order) are what the triggers can write."""
    if values[1] not in (COUNTS, SPEND) or type(values[0]) is not int:
        return False
    return all(type(v) is int and v >= 0 for v in values[3:]) and isinstance(values[2], str)


def bucket_mac(integrity: Any, agent_id: str, values: Sequence[Any], span: int = BUCKET) -> str:
    """The MAC of one bucket row (``values`` in :data:`SEALED` order) of the level whose
    buckets are ``span`` seconds long (a finer level's MAC also covers its span)."""
    return str(integrity.mac(MAC_DOMAIN, agent_id, *mac_values(values, span)))


def mac_values(values: Sequence[Any], span: int = BUCKET) -> tuple[Any, ...]:
    """What a bucket's MAC covers after the agent id: the hourly buckets' values as they
    are (the MACs of migration 0009), a finer level's followed by its span."""
    return tuple(values) if span == BUCKET else (*values, span)


def aligned(start: Any, span: int) -> int:
    """The first second of the ``span``-second bucket holding time ``start`` (a REAL
    ``created_at`` written behind the wallet's back gives a bucket a fractional start)."""
    floor: int = math.floor(start)
    return floor - floor % span


@functools.lru_cache(maxsize=64)
def sums_sql(windows: int, dialect: str = "sqlite", skip: bool = True) -> str:
    """Per (kind, asset): for each window ``:s0`` … (shortest first) the requests, denials and
    transactions of the buckets starting after it; then the spend limbs of the buckets after
    ``:day`` and after ``:week``, and how many spending rows name the asset in each. Buckets
    listed in ``:skip`` (a JSON array of starts) are left out (their rows are read instead);
    with ``skip=False`` the statement has no such list (none to leave out, the usual case).
    On PostgreSQL the parameters are spelled ``%(name)s`` and each sum is a BIGINT (not
    NUMERIC), so both dialects return Python ints.
    """
    pg = dialect == "postgresql"

    def p(name: str) -> str:
        return f"%({name})s" if pg else f":{name}"

    def total(expr: str) -> str:
        return f"CAST(SUM({expr}) AS BIGINT)" if pg else f"SUM({expr})"

    cols = []
    for i in range(windows):
        cond = f"start > {p(f's{i}')}"
        cols.append(total(f"CASE WHEN {cond} THEN requests + refused ELSE 0 END"))
        cols.append(total(f"CASE WHEN {cond} THEN denials + refused_denials ELSE 0 END"))
        cols.append(total(f"CASE WHEN {cond} THEN requests - denials ELSE 0 END"))
    for since in ("day", "week"):
        cond = f"start > {p(since)}"
        cols.append(total(f"CASE WHEN {cond} THEN requests ELSE 0 END"))
        cols += [total(f"CASE WHEN {cond} THEN {c} ELSE 0 END") for c in _LIMB_COLS]
    skip_sql = (
        f"SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST({p('skip')} AS jsonb))"
        if pg
        else "SELECT value FROM json_each(:skip)"
    )
    left_out = f"AND start NOT IN ({skip_sql}) " if skip else ""
    return (
        f"SELECT kind, asset, {', '.join(cols)} FROM usage_buckets "
        f"WHERE agent_id = {p('agent')} AND start >= {p('first')} "
        f"{left_out}GROUP BY kind, asset"
    )


_FINE_TABLES = dict((span, table) for table, span in FINE)


@functools.lru_cache(maxsize=64)
def fine_sql(parts: tuple[tuple[int, int], ...], dialect: str = "sqlite") -> str:
    """One agent's finer buckets in ranges, one range per ``(span, tag)`` of ``parts``
    (``span``: the level's bucket length): rows of ``span``, ``tag``, :data:`SEALED`, ``mac``.
    Parameters: per range, the agent id, the first start and the start it ends before."""
    parts_sql = [
        f"SELECT {span}, {tag}, {', '.join(SEALED)}, mac FROM {_FINE_TABLES[span]} "
        "WHERE agent_id = ? AND start >= ? AND start < ?"
        for span, tag in parts
    ]
    return adapt_sql(" UNION ALL ".join(parts_sql), dialect)


def fine_table(span: int) -> str:
    """The table of the finer level whose buckets are ``span`` seconds long."""
    return _FINE_TABLES[span]


#: On PostgreSQL, a spend document as the triggers read it (:data:`PG_FUNCTIONS`): a JSON
#: object of its members whose values are strings (``jsonb``: a key given twice counts once,
#: the last), or NULL when the text is not a JSON object. Readers that unpack ``spend`` in
#: Python select this instead of the column, so they sum exactly what the buckets hold.
PG_SPEND_STRINGS = (
    "(SELECT CAST(jsonb_object_agg(je.key, je.value) AS TEXT) "
    f"FROM {PG_SPEND_ENTRIES}(t.spend) AS je WHERE je.value IS NOT NULL)"
)


def limbs_value(limbs: Sequence[int]) -> int:
    """The exact integer nine limb sums stand for (each may exceed 10**9: sums of limbs)."""
    total = 0
    for i in range(len(limbs) - 1, -1, -1):
        total = total * 10**LIMB_DIGITS + int(limbs[i])
    return total


MAC_DOMAIN = "usage-bucket"

#: per unit of work: agent id (the hourly buckets) or ``(agent id, span)`` (a finer level)
#: -> (first bucket start read, starts found not trustworthy); every bucket of that level
#: from that start on was read
Verified = dict[Any, tuple[int, frozenset[Any]]]


def _raw(uow: Any) -> Any:
    conn = uow.session.connection().connection.driver_connection
    assert conn is not None
    return conn


_REBUILD_TX = "t.agent_id = ? AND t.created_at >= ? AND t.created_at < ?"
_REBUILD_AUDIT = "a.agent_id = ? AND a.timestamp >= ? AND a.timestamp < ?"


def rebuild(
    uow: Any, agent_id: str, start: Any, table: str = "usage_buckets", span: int = BUCKET
) -> None:
    """Recompute one agent's bucket at ``start`` from its rows (``mac`` left NULL). A finer
    level's bucket is recomputed with every bucket of its aligned span (a fractional start
    shares it with the whole one)."""
    conn = _raw(uow)
    dialect = dialect_of(conn)
    if span != BUCKET:
        low = aligned(start, span)
        conn.execute(
            adapt_sql(
                f"DELETE FROM {table} WHERE agent_id = ? AND start >= ? AND start < ?", dialect
            ),
            (agent_id, low, low + span),
        )
        params = (agent_id, low, low + span)
    else:
        conn.execute(
            adapt_sql("DELETE FROM usage_buckets WHERE agent_id = ? AND start = ?", dialect),
            (agent_id, start),
        )
        params = (agent_id, start, start + BUCKET)
    for stmt in _fill(dialect, _REBUILD_TX, _REBUILD_AUDIT, table, span):
        conn.execute(stmt, params)


def reseal(uow: Any, integrity: Any, verified: Verified) -> None:
    """Seal the bucket rows changed in this unit of work (``mac IS NULL``) before it commits.

    A bucket whose rows this unit of work verified before changing them (``verified``) is
    MAC'd as it stands (unless a counter went negative); any other is first recomputed from
    its rows, so a keyed writer never seals values it did not see grow from verified ones,
    and every sealed row is sane. Many unsealed buckets (the first
    keyed commit after migration 0009 or 0016, or after writes by a process without the key)
    are recomputed all at once, in one pass over the rows. Each level (hours, minutes,
    seconds: :data:`LEVELS`) in turn.

    On PostgreSQL, writers of different agents run at once: only the buckets of agents whose
    advisory lock this unit of work holds or can take without waiting are recomputed and
    sealed (its own agent's, and at most :data:`RESEAL_AGENTS` others); the rest stay unsealed
    (read from their rows) until a later writer seals them.
    """
    conn = _raw(uow)
    if dialect_of(conn) == "postgresql":
        for table, span in LEVELS:
            _reseal_pg(uow, conn, integrity, verified, table, span)
        return
    # the rows of every unsealed bucket (those with a row whose mac is NULL) of every level,
    # in one read
    read: dict[int, list[Any]] = {}
    for row in conn.execute(_UNSEALED_ALL_SQL):
        read.setdefault(row[0], []).append(row[1:])
    for level, rows in sorted(read.items()):
        table, span = LEVELS[level]
        _reseal_level(uow, conn, integrity, verified, table, span, rows)


def _reseal_level(
    uow: Any,
    conn: Any,
    integrity: Any,
    verified: Verified,
    table: str,
    span: int,
    read: list[Any],
) -> None:
    """:func:`reseal` of one level on SQLite, given the rows of its unsealed buckets."""
    held: dict[tuple[str, Any], list[Any]] = {}
    for row in read:
        held.setdefault((row[0], row[1]), []).append(row)
    if _bulk(conn, table, span, len(held), len(read)):
        conn.execute(f"DELETE FROM {table}")
        for stmt in fill_sql(table=table, span=span):
            conn.execute(stmt)
        rows = conn.execute(f"SELECT agent_id, {', '.join(SEALED)} FROM {table}").fetchall()
    else:
        rows = _rebuild_dirty(uow, conn, list(held), verified, held, table, span)
    _seal(conn, integrity, rows, table, span)


def _bulk(conn: Any, table: str, span: int, buckets: int, rows: int, where: str = "") -> bool:
    """Whether to rebuild a whole level (or, on PostgreSQL, the agents of ``where``) in one
    pass rather than ``buckets`` unsealed buckets one by one: above :data:`BULK_REBUILD`
    buckets, and for a finer level (one bucket per active second) only when the unsealed
    ``rows`` are most of the level's."""
    if buckets <= BULK_REBUILD:
        return False
    if span == BUCKET:
        return True
    (total,) = conn.execute(f"SELECT COUNT(*) FROM {table}{where}").fetchone()
    return 2 * rows >= int(total)


@functools.lru_cache(maxsize=8)
def _unsealed_rows_sql(table: str) -> str:
    return (
        f"SELECT agent_id, {', '.join(SEALED)} FROM {table} "
        f"WHERE (agent_id, start) IN (SELECT agent_id, start FROM {table} "
        f"INDEXED BY idx_{table}_unsealed WHERE mac IS NULL)"
    )


_UNSEALED_ROWS_SQL = _unsealed_rows_sql("usage_buckets")
#: :func:`_unsealed_rows_sql` of every level, each row led by the level's index in LEVELS
_UNSEALED_ALL_SQL = " UNION ALL ".join(
    _unsealed_rows_sql(table).replace("SELECT agent_id,", f"SELECT {i}, agent_id,", 1)
    for i, (table, _) in enumerate(LEVELS)
)


def _fill(
    dialect: str,
    where_tx: str = "",
    where_audit: str = "",
    table: str = "usage_buckets",
    span: int = BUCKET,
) -> list[str]:
    """:func:`fill_sql` or :func:`pg_fill_sql`; conditions with ``?`` placeholders (each
    statement uses one of them, so all take the same parameters)."""
    if dialect == "postgresql":
        tx, audit = (adapt_sql(w, dialect) for w in (where_tx or "TRUE", where_audit or "TRUE"))
        return pg_fill_sql(tx, audit, table, span)
    return fill_sql(where_tx or "1", where_audit or "1", table, span)


def _rebuild_dirty(
    uow: Any,
    conn: Any,
    dirty: Iterable[tuple[str, Any]],
    verified: Verified,
    held: dict[tuple[str, Any], list[Any]] | None = None,
    table: str = "usage_buckets",
    span: int = BUCKET,
) -> list[Any]:
    """Recompute the unsealed buckets ``dirty`` that need it; their rows (to seal).
    ``held``: the buckets' rows as read in this unit of work, for those kept as they are."""
    rows = []
    dialect = dialect_of(conn)
    cols = f"SELECT agent_id, {', '.join(SEALED)} FROM {table} WHERE agent_id = ? AND "
    select = adapt_sql(cols + "start = ?", dialect)
    select_span = adapt_sql(cols + "start >= ? AND start < ?", dialect)

    def rebuilt(agent_id: str, start: Any) -> list[Any]:
        rebuild(uow, agent_id, start, table, span)
        if span == BUCKET:
            return list(conn.execute(select, (agent_id, start)).fetchall())
        low = aligned(start, span)
        return list(conn.execute(select_span, (agent_id, low, low + span)).fetchall())

    for agent_id, start in dirty:
        seen = verified.get(agent_id if span == BUCKET else (agent_id, span))
        if seen is None or start < seen[0] or start in seen[1]:
            found = rebuilt(agent_id, start)
        elif held is not None:
            found = held[(agent_id, start)]
        else:
            found = conn.execute(select, (agent_id, start)).fetchall()
        if not all(sane(row[1:]) for row in found):  # never seal what no row explains
            found = rebuilt(agent_id, start)
        rows += found
    return rows


#: how many rows one sealing statement updates at most (5 parameters each)
_SEAL_CHUNK = 200


def _seal(
    conn: Any,
    integrity: Any,
    rows: Sequence[Any],
    table: str = "usage_buckets",
    span: int = BUCKET,
) -> None:
    """Set the MAC of each of ``rows`` (``agent_id`` then :data:`SEALED` values), in one
    statement per :data:`_SEAL_CHUNK` rows."""
    dialect = dialect_of(conn)
    for at in range(0, len(rows), _SEAL_CHUNK):
        chunk = rows[at : at + _SEAL_CHUNK]
        params: list[Any] = []
        for row in chunk:
            params += [bucket_mac(integrity, row[0], row[1:], span), *row[:4]]
        conn.execute(adapt_sql(_seal_sql(len(chunk), table), dialect), params)


@functools.lru_cache(maxsize=16)
def _seal_sql(count: int, table: str = "usage_buckets") -> str:
    values = ", ".join(
        [
            "(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS INTEGER), "
            "CAST(? AS TEXT))"
        ]
        * count
    )
    return (
        f"WITH v (mac, agent_id, start, kind, asset) AS (VALUES {values}) "
        f"UPDATE {table} SET mac = v.mac FROM v WHERE {table}.agent_id = v.agent_id "
        f"AND {table}.start = v.start AND {table}.kind = v.kind "
        f"AND {table}.asset = v.asset"
    )


def _reseal_pg(
    uow: Any,
    conn: Any,
    integrity: Any,
    verified: Verified,
    table: str = "usage_buckets",
    span: int = BUCKET,
) -> None:
    dirty = conn.execute(
        f"SELECT DISTINCT agent_id, start FROM {table} WHERE mac IS NULL"
    ).fetchall()
    if not dirty:
        return
    agents_verified = {k for k in verified if isinstance(k, str)}
    agents = sorted({a for a, _ in dirty}, key=lambda a: (a not in agents_verified, a))
    mine = _try_lock_agents(uow, conn, agents[: len(agents_verified) + RESEAL_AGENTS])
    dirty = [(a, s) for a, s in dirty if a in mine]
    owned = sorted(mine)
    if _bulk_pg(conn, table, span, dirty, owned):
        conn.execute(f"DELETE FROM {table} WHERE agent_id = ANY(%s)", (owned,))
        cond = "t.agent_id = ANY(%s)", "a.agent_id = ANY(%s)"
        for stmt in pg_fill_sql(*cond, table=table, span=span):
            conn.execute(stmt, (owned,))
        rows = conn.execute(
            f"SELECT agent_id, {', '.join(SEALED)} FROM {table} WHERE agent_id = ANY(%s)",
            (owned,),
        ).fetchall()
    else:
        rows = _rebuild_dirty(uow, conn, dirty, verified, None, table, span)
    _seal(conn, integrity, rows, table, span)


def _bulk_pg(conn: Any, table: str, span: int, dirty: Sequence[Any], owned: list[str]) -> bool:
    """:func:`_bulk` on PostgreSQL, over the agents ``owned``."""
    if len(dirty) <= BULK_REBUILD:
        return False
    if span == BUCKET:
        return True
    (total,) = conn.execute(
        f"SELECT COUNT(DISTINCT (agent_id, start)) FROM {table} WHERE agent_id = ANY(%s)",
        (owned,),
    ).fetchone()
    return 2 * len(dirty) >= int(total)


def _try_lock_agents(uow: Any, conn: Any, agents: Sequence[str]) -> set[str]:
    """The agents of ``agents`` whose advisory lock this transaction holds or just took
    (without waiting: a writer of another agent never blocks on this one)."""
    if not agents:
        return set()
    db, schema = scope_of(uow.session.connection())
    keys = [lock_key(db, schema, "agent:" + a) for a in agents]
    got = conn.execute(
        "SELECT pg_try_advisory_xact_lock(k) FROM unnest(CAST(%s AS BIGINT[])) "
        "WITH ORDINALITY AS x(k, i) ORDER BY i",
        (keys,),
    ).fetchall()
    return {a for a, (ok,) in zip(agents, got, strict=True) if ok}


#: above this many unsealed buckets, :func:`reseal` rebuilds the whole table in one pass
BULK_REBUILD = 64
#: on PostgreSQL, how many agents besides its own a unit of work reseals at most (each one
#: an advisory lock held to commit)
RESEAL_AGENTS = 64
