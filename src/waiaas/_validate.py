"""Argument checks shared by the public entry points (each raises ``InvalidInputError``
naming the argument)."""

from __future__ import annotations

import re

from waiaas.errors import InvalidInputError

__all__ = [
    "MAX_PRIORITY",
    "MAX_TIME",
    "check_actor",
    "check_bool",
    "check_id",
    "check_priority",
    "check_text",
    "check_time",
    "shown",
]

MAX_PRIORITY = 1_000_000
MAX_TIME = 2**63 - 1
"""The largest Unix time (seconds) accepted anywhere: SQLite's 64-bit INTEGER."""

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def check_id(value: object, field: str, *, max_length: int = 128) -> str:
    """An id: UUID text (``8-4-4-4-12`` hex digits, as waiaas creates them), lower-cased.

    Anything else (other strings, lone surrogates, non-strings) cannot name a stored row and
    is refused with :class:`InvalidInputError` naming ``field``.
    """
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        shown = _shown(value)
        raise InvalidInputError(f"{field} must be an id (UUID text), got {shown}", field=field)
    return value.lower()


def check_text(
    value: object, field: str, *, max_length: int = 500, allow_blank: bool = False
) -> str:
    """A printable string: no control characters (NUL included), no lone surrogates."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a string", field=field)
    if len(value) > max_length:
        raise InvalidInputError(f"{field} must be at most {max_length} characters", field=field)
    if not allow_blank and not value.strip():
        raise InvalidInputError(f"{field} must not be blank", field=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInputError(f"{field} must not contain control characters", field=field)
    check_encodable(value, field)
    return value


def check_encodable(value: str, field: str) -> str:
    """Refuse strings that are not valid Unicode text (lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{field} is not valid Unicode text (a lone surrogate)", field=field
        ) from None
    return value


def check_time(value: object, field: str) -> int | None:
    """``None`` or Unix seconds: an ``int`` from 0 to 2**63 - 1 (bools refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME:
        raise InvalidInputError(
            f"{field} must be Unix seconds (an int from 0 to 2**63 - 1)", field=field
        )
    return value


def _shown(value: object) -> str:
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        return repr(text[:40] + ("..." if len(text) > 40 else ""))
    return f"a {type(value).__name__}"


def shown(value: object, limit: int = 80) -> str:
    """A bounded ASCII rendering of an untrusted value for an error message (never raises:
    ``repr`` of a 5,000-digit int or a lone surrogate can)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an int of {value.bit_length()} bits"
    if isinstance(value, list | tuple | dict | set | frozenset) and len(value) > 16:
        return f"a {type(value).__name__} of {len(value)} items"
    try:
        text = ascii(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_actor(actor: object) -> str:
    """Who made a change, for the audit log (``"owner"``, ``"operator"``, ...)."""
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 128:
        raise InvalidInputError("actor must be a non-empty string", field="actor")
    return check_text(actor, "actor", max_length=128)


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
