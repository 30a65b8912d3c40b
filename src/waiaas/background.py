"""The background runner: due work and the WAL checkpoint, in a daemon thread.

:class:`BackgroundRunner` calls a ``process_due`` function every ``interval`` seconds (DELAY
cooldowns, approval and session expiry, confirmations) and has the database checkpoint its
WAL every ``checkpoint_interval`` seconds, until :meth:`BackgroundRunner.stop`. A failed
pass is logged and retried at the next tick; it never ends the thread. ``Wallet.open`` starts
one unless told not to (``Wallet.start_background`` / ``Wallet.stop_background``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from waiaas.db import Database
from waiaas.errors import InvalidInputError, WaiaasError

__all__ = ["BackgroundRunner"]

log = logging.getLogger("waiaas")


class BackgroundRunner:
    """Runs ``process_due`` every ``interval`` seconds in one daemon thread.

    Args:
        db: the database whose WAL is checkpointed while the runner runs.
        process_due: one pass of due work.
        checkpoint_interval: seconds between WAL checkpoints.

    Example::

        runner = BackgroundRunner(db, pipeline.process_due, checkpoint_interval=60.0)
        runner.start(interval=1.0)
        ...
        runner.stop()
    """

    def __init__(
        self, db: Database, process_due: Callable[[], Any], *, checkpoint_interval: float
    ) -> None:
        self._db = db
        self._process_due = process_due
        self._checkpoint_interval = checkpoint_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The running thread, or ``None`` when stopped."""
        return self._thread

    def start(self, interval: float = 1.0) -> None:
        """Start the thread (no-op when it runs already).

        Raises:
            InvalidInputError: the interval is not a positive number.
        """
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise InvalidInputError(
                "interval must be a positive number of seconds", field="interval"
            )
        if self._thread is not None:
            return
        self._stop.clear()
        self._db.start_checkpointer(self._checkpoint_interval)
        self._thread = threading.Thread(
            target=self._run, args=(float(interval),), name="waiaas-due", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._process_due()
            except WaiaasError as exc:
                log.warning("background pass failed (will retry): %s", exc)
            except Exception:
                log.exception("background pass crashed (will retry)")

    def stop(self) -> None:
        """Stop the thread (if any) and the checkpointer; waits up to 30 s for a pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._db.stop_checkpointer()
