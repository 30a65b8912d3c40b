"""Hot-path statements as SQL text, built once per shape, with rows as plain values.

The pipeline's per-send writes (the confirmation's compare-and-set of a held transaction,
a session's usage compare-and-set) run very often and always take one of a few shapes.
Building them as SQLAlchemy expressions costs more than running them; here each shape's
text is built once (cached) in the SQLite form (``?`` placeholders, double-quoted names),
which :meth:`waiaas.db.uow.UnitOfWork.execute` runs on the unit of work's DB-API
connection (rewritten once per statement for psycopg: :func:`waiaas.db.portable.dbapi_sql`).

:func:`compare_and_set` spells every compared column NULL-aware (``"c" IS NULL`` for a NULL
value, ``"c" = ?`` otherwise), so a row matches only when every compared column holds
exactly the value given. Values are bound as they are: amounts stay the TEXT they are
stored as (never numbers), whatever their size.

:func:`built` makes a table model object from a row's values (a row as written or as
read) without the model's per-attribute construction: the object is the same class with
the same values, transient (in no session), as ``Model(**values)`` would be.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["built", "cas_params", "compare_and_set", "quoted", "state_value_sql"]

_T = TypeVar("_T")


def quoted(name: str) -> str:
    """``name`` as a quoted SQL identifier (the same on SQLite and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


@functools.lru_cache(maxsize=512)
def compare_and_set(
    table: str,
    sets: tuple[str, ...],
    compared: tuple[tuple[str, bool], ...],
    returning: tuple[str, ...] = (),
) -> str:
    """``UPDATE table SET s1 = ?, ... WHERE c1 = ? AND c2 IS NULL ... [RETURNING r1, ...]``.

    ``sets``: the columns written, in the order of their parameters; ``compared``: each
    compared column and whether its expected value is NULL (``IS NULL``, no parameter);
    ``returning``: SQL expressions the statement returns (their own ``?`` parameters, if
    any, come last). The parameters are :func:`cas_params`. Cached per shape.

    >>> compare_and_set("t", ("a",), (("id", False), ("b", True)), ("1",))
    'UPDATE "t" SET "a" = ? WHERE "id" = ? AND "b" IS NULL RETURNING 1'
    """
    if not sets or not compared:
        raise ValueError("a compare-and-set writes and compares at least one column")
    sql = (
        f"UPDATE {quoted(table)} SET "
        + ", ".join(f"{quoted(name)} = ?" for name in sets)
        + " WHERE "
        + " AND ".join(
            f"{quoted(name)} IS NULL" if null else f"{quoted(name)} = ?" for name, null in compared
        )
    )
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    return sql


def cas_params(
    sets: Iterable[Any], compared: Iterable[Any], returning: Sequence[Any] = ()
) -> list[Any]:
    """The parameters of a :func:`compare_and_set` statement: the values written, the
    compared values that are not NULL (in the columns' order), then ``returning``'s."""
    return [*sets, *(value for value in compared if value is not None), *returning]


def state_value_sql() -> str:
    """A ``wallet_state`` value by key, as a scalar subquery (its key a ``?`` parameter):
    ``NULL`` when the key has no row."""
    return '(SELECT "value" FROM wallet_state WHERE "key" = ?)'


@functools.lru_cache(maxsize=64)
def _defaults(cls: type[Any]) -> tuple[frozenset[str], dict[str, Any]]:
    """The model fields of ``cls`` and the defaults of those that have one (none of the
    table models has a default factory: a default is one immutable value)."""
    defaults: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        if not field.is_required():
            defaults[name] = field.get_default(call_default_factory=True)
    return frozenset(cls.model_fields), defaults


def built(cls: type[_T], values: Mapping[str, Any]) -> _T:
    """A ``cls`` (a table model) holding ``values``, its other fields at their defaults, as
    ``cls(**values)`` builds it: transient, every value as given (table models do not
    validate); without setting the fields one by one through the model's instrumentation.

    Raises:
        ValueError: a required field of ``cls`` has no value, or a name is not a field.
    """
    model: Any = cls
    names, defaults = _defaults(model)
    unknown = values.keys() - names
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
    state = {**defaults, **values}
    if len(state) != len(names):
        missing = sorted(set(names) - state.keys())
        raise ValueError(f"{cls.__name__} needs {missing[0]!r}")
    manager: Any = model._sa_class_manager
    obj: Any = manager.new_instance()  # the model's __new__ and the instance state
    obj.__dict__.update(state)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    return obj  # type: ignore[no-any-return]
