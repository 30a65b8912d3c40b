"""Nonce allocation that stays distinct when one sender transacts from many threads.

The node's pending transaction count alone is not enough: two threads that ask at the same
moment get the same answer, and a transaction that was built but not yet submitted is
invisible to the node. So the allocator keeps, per sender, a lock and the next nonce it
handed out, and allocates ``max(node pending count, local next)``.

A nonce whose transaction was refused for good (never reached the chain) is given back with
:meth:`NonceAllocator.release`; the next allocation reuses it, so one failed submission does
not leave a gap that would block every later transaction of that sender.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["NonceAllocator"]


class NonceAllocator:
    """Per-sender nonce book. Thread-safe; one instance per adapter (per chain).

    Example::

        nonces = NonceAllocator()
        n = nonces.allocate(sender, lambda: node_pending_count(sender))
        ...                               # sign and submit; if the node refuses it for good:
        nonces.release(sender, n)
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._next: dict[str, int] = {}
        self._released: dict[str, set[int]] = {}

    def _lock_for(self, sender: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(sender)
            if lock is None:
                lock = self._locks[sender] = threading.Lock()
            return lock

    def allocate(self, sender: str, node_pending: Callable[[], int]) -> int:
        """Hand out the next nonce for ``sender``.

        Args:
            sender: the normalised sender address.
            node_pending: asks the node for the sender's pending transaction count; called
                under the sender's lock, so concurrent allocations see each other.

        Returns:
            The lowest released nonce the node has not used yet, else
            ``max(node pending count, local next)``.
        """
        with self._lock_for(sender):
            pending = node_pending()
            released = self._released.get(sender)
            if released:
                usable = sorted(n for n in released if n >= pending)
                released.clear()
                if usable:
                    nonce = usable[0]
                    released.update(usable[1:])
                    return nonce
            nonce = max(pending, self._next.get(sender, 0))
            self._next[sender] = nonce + 1
            return nonce

    def reserve(self, sender: str, nonce: int) -> None:
        """Record that ``nonce`` was chosen by the caller, so it is never handed out again."""
        with self._lock_for(sender):
            if nonce + 1 > self._next.get(sender, 0):
                self._next[sender] = nonce + 1
            released = self._released.get(sender)
            if released is not None:
                released.discard(nonce)

    def release(self, sender: str, nonce: int) -> None:
        """Give back ``nonce``: its transaction was refused and never reached the chain."""
        with self._lock_for(sender):
            if nonce < self._next.get(sender, 0):
                self._released.setdefault(sender, set()).add(nonce)

    def peek(self, sender: str) -> int | None:
        """The next nonce this allocator would hand out from its own book (``None`` if none)."""
        with self._lock_for(sender):
            return self._next.get(sender)
