"""Test doubles for code that sends notifications.

Example::

    from waiaas.notify.testing import RecordingNotifier

    notifier = RecordingNotifier()
    run_code_under_test(notifier)
    assert [e.event_type for e in notifier.events] == ["TX_CONFIRMED"]
"""

from __future__ import annotations

import threading

from waiaas.notify.base import NotificationEvent

__all__ = ["RecordingNotifier"]


class RecordingNotifier:
    """A :class:`~waiaas.notify.base.Notifier` that keeps every event in memory, in order.

    Thread-safe. After :meth:`close`, further events are ignored (like the real dispatcher).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[NotificationEvent] = []
        self.closed = False

    def notify(self, event: NotificationEvent) -> None:
        """Remember ``event`` (never raises)."""
        with self._lock:
            if not self.closed:
                self._events.append(event)

    def close(self, timeout: float | None = None) -> None:
        """Stop recording."""
        with self._lock:
            self.closed = True

    @property
    def events(self) -> list[NotificationEvent]:
        """A copy of the recorded events, oldest first."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget the recorded events."""
        with self._lock:
            self._events.clear()

    def __repr__(self) -> str:
        return f"RecordingNotifier({len(self._events)} events)"
