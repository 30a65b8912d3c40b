"""Argument checks shared by the public entry points (each raises ``InvalidInputError``
naming the argument)."""

from __future__ import annotations

from waiaas.errors import InvalidInputError

__all__ = ["MAX_PRIORITY", "check_actor", "check_bool", "check_id", "check_priority"]

MAX_PRIORITY = 1_000_000


def check_id(value: object, field: str, *, max_length: int = 128) -> str:
    """A non-blank id string of at most ``max_length`` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise InvalidInputError(f"{field} must be a non-empty id string", field=field)
    return value


def check_actor(actor: object) -> str:
    """Who made a change, for the audit log (``"owner"``, ``"operator"``, ...)."""
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 128:
        raise InvalidInputError("actor must be a non-empty string", field="actor")
    return actor


def check_priority(priority: object) -> int:
    """An int priority within +-``MAX_PRIORITY`` (bools refused)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidInputError("priority must be an int", field="priority")
    if abs(priority) > MAX_PRIORITY:
        raise InvalidInputError(f"priority must be within +-{MAX_PRIORITY}", field="priority")
    return priority


def check_bool(value: object, field: str) -> bool:
    """A real bool (not 0/1)."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{field} must be a bool", field=field)
    return value
