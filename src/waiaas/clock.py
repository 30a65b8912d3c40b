"""Time as a port: the engine asks a :class:`Clock` instead of reading the system clock.

All stored timestamps are integer Unix seconds, UTC (CORE-02 §1.3).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Source of the current time as integer Unix seconds (UTC)."""

    def now(self) -> int:
        """The current time, Unix seconds."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> int:
        """``int(time.time())``."""
        return int(time.time())

    def __repr__(self) -> str:
        return "SystemClock()"
