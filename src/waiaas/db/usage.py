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

The table, index and trigger statements below are what migration 0009 creates (the schema
test compares them with the file): changing them needs a new migration.
"""

from __future__ import annotations

import functools
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


def _start(expr: str) -> str:
    """SQL for :func:`bucket_start` (SQLite's ``%`` keeps the dividend's sign)."""
    return f"({expr} - ((({expr}) % {BUCKET}) + {BUCKET}) % {BUCKET})"


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


def _apply(r: str, sign: str) -> list[str]:
    """Statements adding (``sign`` ``+``) or removing (``-``) row ``r``'s contribution."""
    counts = (
        "INSERT INTO usage_buckets (agent_id, start, kind, asset, requests, denials, odd) "
        f"VALUES ({r}.agent_id, {_start(f'{r}.created_at')}, {COUNTS}, '', {sign}1, "
        f"{sign}({r}.error IS '{DENIED}'), {sign}{_odd(r)}) "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        "requests = requests + excluded.requests, denials = denials + excluded.denials, "
        "odd = odd + excluded.odd, mac = NULL"
    )
    limbs = ", ".join(f"{sign}{_limb(i)}" for i in range(LIMBS))
    sets = ", ".join(f"{c} = {c} + excluded.{c}" for c in _LIMB_COLS)
    spend = (
        "INSERT INTO usage_buckets "
        f"(agent_id, start, kind, asset, requests, {', '.join(_LIMB_COLS)}) "
        f"SELECT {r}.agent_id, {_start(f'{r}.created_at')}, {SPEND}, je.key, {sign}1, {limbs} "
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
        [
            "INSERT INTO usage_buckets (agent_id, start, kind, asset, refused, "
            f"refused_denials) VALUES (NEW.agent_id, {_start('NEW.timestamp')}, {COUNTS}, '', "
            "1, NEW.event_type != 'DRY_RUN') "
            "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
            "refused = refused + excluded.refused, "
            "refused_denials = refused_denials + excluded.refused_denials, mac = NULL"
        ],
    ),
)
TRIGGER_NAMES = ("usage_tx_insert", "usage_tx_delete", "usage_tx_update", "usage_audit_insert")


def fill_sql(where_tx: str = "1", where_audit: str = "1") -> list[str]:
    """Statements that add the rows matching the conditions to the buckets (backfill)."""
    start = _start("t.created_at")
    refusal = REFUSAL_SQL.replace("event_type", "a.event_type").replace("tx_id", "a.tx_id")
    limbs = ", ".join(f"SUM({_limb(i)})" for i in range(LIMBS))
    sets = ", ".join(f"{c} = {c} + excluded.{c}" for c in _LIMB_COLS)
    return [
        "INSERT INTO usage_buckets (agent_id, start, kind, asset, requests, denials, odd) "
        f"SELECT t.agent_id, {start}, {COUNTS}, '', COUNT(*), "
        f"SUM(t.error IS '{DENIED}'), SUM({_odd('t')}) "
        f"FROM transactions AS t WHERE {where_tx} GROUP BY 1, 2 "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        "requests = requests + excluded.requests, denials = denials + excluded.denials, "
        "odd = odd + excluded.odd, mac = NULL",
        "INSERT INTO usage_buckets "
        f"(agent_id, start, kind, asset, requests, {', '.join(_LIMB_COLS)}) "
        f"SELECT t.agent_id, {start}, {SPEND}, je.key, COUNT(*), {limbs} "
        f"FROM transactions AS t, {_json('t')} AS je WHERE ({where_tx}) "
        f"AND typeof(je.key) = 'text' AND {_DIGITS} AND length(je.value) <= {MAX_DIGITS} "
        f"GROUP BY 1, 2, 4 "
        "ON CONFLICT (agent_id, start, kind, asset) DO UPDATE SET "
        f"requests = requests + excluded.requests, {sets}, mac = NULL",
        "INSERT INTO usage_buckets (agent_id, start, kind, asset, refused, refused_denials) "
        f"SELECT a.agent_id, {_start('a.timestamp')}, {COUNTS}, '', COUNT(*), "
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


def _pg_start(expr: str) -> str:
    """SQL for :func:`bucket_start` on PostgreSQL (``mod`` keeps the dividend's sign)."""
    return f"({expr} - mod(mod({expr}, {BUCKET}) + {BUCKET}, {BUCKET}))"


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
_PG_REFUSAL_COLS = ("refused", "refused_denials")


def _pg_apply(r: str, sign: str) -> list[str]:
    """:func:`_apply` on PostgreSQL: statements of a trigger function's body."""
    counts = (
        "INSERT INTO usage_buckets AS u (agent_id, start, kind, asset, requests, denials, odd) "
        f"VALUES ({r}.agent_id, {_pg_start(f'{r}.created_at')}, {COUNTS}, '', {sign}1, "
        f"{sign}{_pg_denied(r)}, {sign}{_pg_odd(r)}) " + _pg_upsert(_PG_COUNT_COLS)
    )
    limbs = ", ".join(f"{sign}{_pg_limb(i)}" for i in range(LIMBS))
    spend = (
        _PG_INTO_SPEND
        + f"SELECT {r}.agent_id, {_pg_start(f'{r}.created_at')}, {SPEND}, je.key, {sign}1, {limbs} "
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
_PG_AUDIT_BODY = (
    "INSERT INTO usage_buckets AS u (agent_id, start, kind, asset, refused, refused_denials) "
    f"VALUES (NEW.agent_id, {_pg_start('NEW.timestamp')}, {COUNTS}, '', 1, "
    "CASE WHEN NEW.event_type != 'DRY_RUN' THEN 1 ELSE 0 END) " + _pg_upsert(_PG_REFUSAL_COLS)
)

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


def pg_fill_sql(where_tx: str = "TRUE", where_audit: str = "TRUE") -> list[str]:
    """:func:`fill_sql` on PostgreSQL."""
    start = _pg_start("t.created_at")
    refusal = REFUSAL_SQL.replace("event_type", "a.event_type").replace("tx_id", "a.tx_id")
    limbs = ", ".join(f"SUM({_pg_limb(i)})" for i in range(LIMBS))
    return [
        "INSERT INTO usage_buckets AS u (agent_id, start, kind, asset, requests, denials, odd) "
        f"SELECT t.agent_id, {start}, {COUNTS}, '', COUNT(*), "
        f"SUM({_pg_denied('t')}), SUM({_pg_odd('t')}) "
        f"FROM transactions AS t WHERE {where_tx} GROUP BY 1, 2 " + _pg_upsert(_PG_COUNT_COLS),
        _PG_INTO_SPEND + f"SELECT t.agent_id, {start}, {SPEND}, je.key, COUNT(*), {limbs} "
        f"FROM transactions AS t, {_pg_entries('t')} AS je WHERE ({where_tx}) "
        f"AND {_PG_SPEND_FILTER} GROUP BY 1, 2, 4 " + _pg_upsert(_PG_SPEND_COLS),
        "INSERT INTO usage_buckets AS u (agent_id, start, kind, asset, refused, refused_denials) "
        f"SELECT a.agent_id, {_pg_start('a.timestamp')}, {COUNTS}, '', COUNT(*), "
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


def bucket_mac(integrity: Any, agent_id: str, values: Sequence[Any]) -> str:
    """The MAC of one bucket row (``values`` in :data:`SEALED` order)."""
    return str(integrity.mac(MAC_DOMAIN, agent_id, *values))


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

#: per unit of work: agent id -> (first bucket start read, starts found not trustworthy)
Verified = dict[str, tuple[int, frozenset[int]]]


def _raw(uow: Any) -> Any:
    conn = uow.session.connection().connection.driver_connection
    assert conn is not None
    return conn


def _fill(dialect: str, where_tx: str = "", where_audit: str = "") -> list[str]:
    """:func:`fill_sql` or :func:`pg_fill_sql`; conditions with ``?`` placeholders (each
    statement uses one of them, so all take the same parameters)."""
    if dialect == "postgresql":
        return pg_fill_sql(
            *(adapt_sql(w, dialect) for w in (where_tx or "TRUE", where_audit or "TRUE"))
        )
    return fill_sql(where_tx or "1", where_audit or "1")


_REBUILD_TX = "t.agent_id = ? AND t.created_at >= ? AND t.created_at < ?"
_REBUILD_AUDIT = "a.agent_id = ? AND a.timestamp >= ? AND a.timestamp < ?"


def rebuild(uow: Any, agent_id: str, start: int) -> None:
    """Recompute one agent's bucket at ``start`` from its rows (``mac`` left NULL)."""
    conn = _raw(uow)
    dialect = dialect_of(conn)
    conn.execute(
        adapt_sql("DELETE FROM usage_buckets WHERE agent_id = ? AND start = ?", dialect),
        (agent_id, start),
    )
    params = (agent_id, start, start + BUCKET)
    for stmt in _fill(dialect, _REBUILD_TX, _REBUILD_AUDIT):
        conn.execute(stmt, params)


def reseal(uow: Any, integrity: Any, verified: Verified) -> None:
    """Seal the bucket rows changed in this unit of work (``mac IS NULL``) before it commits.

    A bucket whose rows this unit of work verified before changing them (``verified``) is
    MAC'd as it stands (unless a counter went negative); any other is first recomputed from
    its rows, so a keyed writer never seals values it did not see grow from verified ones,
    and every sealed row is sane. Many unsealed buckets (the first
    keyed commit after migration 0009, or after writes by a process without the key) are
    recomputed all at once, in one pass over the rows.

    On PostgreSQL, writers of different agents run at once: only the buckets of agents whose
    advisory lock this unit of work holds or can take without waiting are recomputed and
    sealed (its own agent's, and at most :data:`RESEAL_AGENTS` others); the rest stay unsealed
    (read from their rows) until a later writer seals them.
    """
    conn = _raw(uow)
    dialect = dialect_of(conn)
    if dialect == "postgresql":
        _reseal_pg(uow, conn, integrity, verified)
        return
    # the rows of every unsealed bucket (those with a row whose mac is NULL), in one read
    read = conn.execute(_UNSEALED_ROWS_SQL).fetchall()
    if not read:
        return
    held: dict[tuple[str, int], list[Any]] = {}
    for row in read:
        held.setdefault((row[0], row[1]), []).append(row)
    if len(held) > BULK_REBUILD:
        conn.execute("DELETE FROM usage_buckets")
        for stmt in fill_sql():
            conn.execute(stmt)
        rows = conn.execute(f"SELECT agent_id, {', '.join(SEALED)} FROM usage_buckets").fetchall()
    else:
        rows = _rebuild_dirty(uow, conn, list(held), verified, held)
    _seal(conn, integrity, rows)


_UNSEALED_ROWS_SQL = (
    f"SELECT agent_id, {', '.join(SEALED)} FROM usage_buckets "
    "WHERE (agent_id, start) IN (SELECT agent_id, start FROM usage_buckets "
    "INDEXED BY idx_usage_buckets_unsealed WHERE mac IS NULL)"
)


def _rebuild_dirty(
    uow: Any,
    conn: Any,
    dirty: Iterable[tuple[str, int]],
    verified: Verified,
    held: dict[tuple[str, int], list[Any]] | None = None,
) -> list[Any]:
    """Recompute the unsealed buckets ``dirty`` that need it; their rows (to seal).
    ``held``: the buckets' rows as read in this unit of work, for those kept as they are."""
    rows = []
    select = adapt_sql(
        f"SELECT agent_id, {', '.join(SEALED)} FROM usage_buckets WHERE agent_id = ? AND start = ?",
        dialect_of(conn),
    )
    for agent_id, start in dirty:
        seen = verified.get(agent_id)
        if seen is None or start < seen[0] or start in seen[1]:
            rebuild(uow, agent_id, start)
            found = conn.execute(select, (agent_id, start)).fetchall()
        elif held is not None:
            found = held[(agent_id, start)]
        else:
            found = conn.execute(select, (agent_id, start)).fetchall()
        if not all(sane(row[1:]) for row in found):  # never seal what no row explains
            rebuild(uow, agent_id, start)
            found = conn.execute(select, (agent_id, start)).fetchall()
        rows += found
    return rows


#: how many rows one sealing statement updates at most (5 parameters each)
_SEAL_CHUNK = 200


def _seal(conn: Any, integrity: Any, rows: Sequence[Any]) -> None:
    """Set the MAC of each of ``rows`` (``agent_id`` then :data:`SEALED` values), in one
    statement per :data:`_SEAL_CHUNK` rows."""
    dialect = dialect_of(conn)
    for at in range(0, len(rows), _SEAL_CHUNK):
        chunk = rows[at : at + _SEAL_CHUNK]
        params: list[Any] = []
        for row in chunk:
            params += [bucket_mac(integrity, row[0], row[1:]), *row[:4]]
        conn.execute(adapt_sql(_seal_sql(len(chunk)), dialect), params)


@functools.lru_cache(maxsize=8)
def _seal_sql(count: int) -> str:
    values = ", ".join(
        [
            "(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS INTEGER), "
            "CAST(? AS TEXT))"
        ]
        * count
    )
    return (
        f"WITH v (mac, agent_id, start, kind, asset) AS (VALUES {values}) "
        "UPDATE usage_buckets SET mac = v.mac FROM v WHERE usage_buckets.agent_id = v.agent_id "
        "AND usage_buckets.start = v.start AND usage_buckets.kind = v.kind "
        "AND usage_buckets.asset = v.asset"
    )


def _reseal_pg(uow: Any, conn: Any, integrity: Any, verified: Verified) -> None:
    dirty = conn.execute(
        "SELECT DISTINCT agent_id, start FROM usage_buckets WHERE mac IS NULL"
    ).fetchall()
    if not dirty:
        return
    agents = sorted({a for a, _ in dirty}, key=lambda a: (a not in verified, a))
    mine = _try_lock_agents(uow, conn, agents[: len(verified) + RESEAL_AGENTS])
    dirty = [(a, s) for a, s in dirty if a in mine]
    if len(dirty) > BULK_REBUILD:
        owned = sorted(mine)
        conn.execute("DELETE FROM usage_buckets WHERE agent_id = ANY(%s)", (owned,))
        cond = "t.agent_id = ANY(%s)", "a.agent_id = ANY(%s)"
        for stmt in pg_fill_sql(*cond):
            conn.execute(stmt, (owned,))
        rows = conn.execute(
            f"SELECT agent_id, {', '.join(SEALED)} FROM usage_buckets WHERE agent_id = ANY(%s)",
            (owned,),
        ).fetchall()
    else:
        rows = _rebuild_dirty(uow, conn, dirty, verified)
    _seal(conn, integrity, rows)


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
