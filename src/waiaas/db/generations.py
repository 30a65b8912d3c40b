"""Generation counters: ``wallet_state`` rows that change whenever policies or notification
channels change, so that a process can keep what it read of them and know, from one small
read, whether it is still current (migration 0012).

* ``generation:policies`` grows on every INSERT, UPDATE and DELETE of ``policies``;
* ``generation:channels`` grows on every INSERT and DELETE of ``notification_channels`` and
  every UPDATE of them except one that changes nothing but ``last_success_at`` /
  ``last_failure_at`` (delivery outcomes, recorded after most notifications, must not make
  every process reload its channels).

Triggers keep them (one per statement kind and table, on SQLite and PostgreSQL alike), and
the services that change policies and channels bump them too, in the same transaction
(:meth:`waiaas.db.repositories.StateRepository.bump`): a database whose triggers were
dropped still sees every change made through waiaas. Each bump is an upsert: a missing row,
or one whose value is not a number, starts at a random value in [1, 2**52] (a counter that
starts again never meets a value a process kept before but by chance; starting at 1 would
let a deleted row's restart reach a kept value in a few changes). The value is a JSON
integer.

A counter only tells that something changed; what was read under it must still be checked
as any read is (policies: their MACs, :func:`waiaas.integrity.check_policies`).

:class:`Observed` is a counter's value as a unit of work read it under its write lock: the
pipeline hands the channels' one, read by the statement that moves a transaction, to that
move's notification (the channel source then reads nothing to know its channels current).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "CHANNELS",
    "DDL",
    "DROP_SQL",
    "PG_DDL",
    "PG_DROP_SQL",
    "POLICIES",
    "TRIGGER_NAMES",
    "Observed",
    "bump_sql",
    "ddl",
    "drop_sql",
]

#: ``wallet_state`` key of the policies' generation.
POLICIES: Final = "generation:policies"
#: ``wallet_state`` key of the notification channels' generation.
CHANNELS: Final = "generation:channels"


@dataclass(frozen=True, slots=True)
class Observed:
    """A generation counter's value as a unit of work read it under its write lock, in
    the transaction that committed what an event reports.

    Attributes:
        database: the :class:`~waiaas.db.Database` it was read from (compared by identity:
            a value means nothing for another database).
        key: the counter (:data:`POLICIES` or :data:`CHANNELS`).
        value: the stored value text.
    """

    database: object
    key: str
    value: str


#: the columns of ``notification_channels`` whose change is a change of the channel (all but
#: ``last_success_at`` and ``last_failure_at``)
_CHANNEL_COLUMNS = ("id", "type", "config", "priority", "enabled", "created_at")

# --------------------------------------------------------------------------- SQLite

_SQLITE_NOW = "CAST(strftime('%s', 'now') AS INTEGER)"
_SQLITE_START = "CAST(abs(random() % 4503599627370496) + 1 AS TEXT)"


def _sqlite_bump(key: str) -> str:
    """An upsert that adds one to ``key``'s counter (a random start when missing or not a
    number)."""
    return (
        f"INSERT INTO wallet_state (key, value, updated_at) "
        f"VALUES ('{key}', {_SQLITE_START}, {_SQLITE_NOW}) "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(CASE WHEN wallet_state.value "
        "GLOB '[0-9]*' AND wallet_state.value NOT GLOB '*[^0-9]*' "
        "AND length(wallet_state.value) <= 18 "
        f"THEN CAST(wallet_state.value AS INTEGER) + 1 ELSE {_SQLITE_START} END AS TEXT), "
        "updated_at = excluded.updated_at"
    )


def _sqlite_trigger(name: str, event: str, key: str, when: str = "") -> str:
    cond = f" WHEN {when}" if when else ""
    return f"CREATE TRIGGER {name} AFTER {event}{cond} BEGIN {_sqlite_bump(key)}; END"


_SQLITE_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _CHANNEL_COLUMNS)

DDL: Final = (
    _sqlite_trigger("policies_generation_insert", "INSERT ON policies", POLICIES),
    _sqlite_trigger("policies_generation_update", "UPDATE ON policies", POLICIES),
    _sqlite_trigger("policies_generation_delete", "DELETE ON policies", POLICIES),
    _sqlite_trigger("channels_generation_insert", "INSERT ON notification_channels", CHANNELS),
    _sqlite_trigger(
        "channels_generation_update",
        "UPDATE ON notification_channels",
        CHANNELS,
        _SQLITE_CHANGED,
    ),
    _sqlite_trigger("channels_generation_delete", "DELETE ON notification_channels", CHANNELS),
)
TRIGGER_NAMES: Final = (
    "policies_generation_insert",
    "policies_generation_update",
    "policies_generation_delete",
    "channels_generation_insert",
    "channels_generation_update",
    "channels_generation_delete",
)
DROP_SQL: Final = tuple(f"DROP TRIGGER IF EXISTS {name}" for name in TRIGGER_NAMES)

# --------------------------------------------------------------------------- PostgreSQL

_PG_NOW = "CAST(extract(epoch FROM now()) AS BIGINT)"
_PG_START = "CAST(CAST(floor(random() * 4503599627370496) AS BIGINT) + 1 AS TEXT)"


def _pg_bump(key: str) -> str:
    return (
        f"INSERT INTO wallet_state AS w (key, value, updated_at) "
        f"VALUES ('{key}', {_PG_START}, {_PG_NOW}) "
        "ON CONFLICT (key) DO UPDATE SET value = CASE WHEN w.value ~ '^[0-9]{1,18}$' "
        f"THEN CAST(CAST(w.value AS BIGINT) + 1 AS TEXT) ELSE {_PG_START} END, "
        "updated_at = EXCLUDED.updated_at"
    )


def _pg_function(name: str, key: str) -> str:
    """A plpgsql trigger function bumping ``key``; ``search_path`` is the one it was created
    with (the wallet's schema), whoever fires it."""
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
        f"SET search_path FROM CURRENT AS $fn$ BEGIN {_pg_bump(key)}; RETURN NULL; END $fn$"
    )


_PG_CHANGED = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _CHANNEL_COLUMNS)
_PG_FUNCTIONS = ("policies_generation", "channels_generation")

PG_DDL: Final = (
    _pg_function("policies_generation", POLICIES),
    _pg_function("channels_generation", CHANNELS),
    "CREATE TRIGGER policies_generation_change AFTER INSERT OR UPDATE OR DELETE ON policies "
    "FOR EACH ROW EXECUTE FUNCTION policies_generation()",
    "CREATE TRIGGER policies_generation_truncate AFTER TRUNCATE ON policies "
    "FOR EACH STATEMENT EXECUTE FUNCTION policies_generation()",
    "CREATE TRIGGER channels_generation_insert AFTER INSERT OR DELETE ON notification_channels "
    "FOR EACH ROW EXECUTE FUNCTION channels_generation()",
    "CREATE TRIGGER channels_generation_update AFTER UPDATE ON notification_channels "
    f"FOR EACH ROW WHEN ({_PG_CHANGED}) EXECUTE FUNCTION channels_generation()",
    "CREATE TRIGGER channels_generation_truncate AFTER TRUNCATE ON notification_channels "
    "FOR EACH STATEMENT EXECUTE FUNCTION channels_generation()",
)
PG_DROP_SQL: Final = (
    "DROP TRIGGER IF EXISTS policies_generation_change ON policies",
    "DROP TRIGGER IF EXISTS policies_generation_truncate ON policies",
    "DROP TRIGGER IF EXISTS channels_generation_insert ON notification_channels",
    "DROP TRIGGER IF EXISTS channels_generation_update ON notification_channels",
    "DROP TRIGGER IF EXISTS channels_generation_truncate ON notification_channels",
    *(f"DROP FUNCTION IF EXISTS {name}()" for name in _PG_FUNCTIONS),
)


def ddl(dialect: str) -> tuple[str, ...]:
    """The statements that create the triggers on ``dialect``."""
    return PG_DDL if dialect == "postgresql" else DDL


def drop_sql(dialect: str) -> tuple[str, ...]:
    """The statements that drop them (and, on PostgreSQL, their functions)."""
    return PG_DROP_SQL if dialect == "postgresql" else DROP_SQL


def bump_sql(key: str, dialect: str) -> str:
    """The upsert that adds one to ``key``'s counter, as the triggers do (``key`` is one
    of :data:`POLICIES` and :data:`CHANNELS`)."""
    if key not in (POLICIES, CHANNELS):
        raise ValueError(f"unknown generation key {key!r}")
    return _pg_bump(key) if dialect == "postgresql" else _sqlite_bump(key)
