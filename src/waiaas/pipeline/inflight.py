"""An agent's in-flight transactions and the nonces they hold (nonce chains).

A transaction is *in flight* while it is EXECUTING or SUBMITTED: its nonce is taken, signed
(``signed.nonce``) or reserved by a claim (``claim.nonce``). Two in-flight rows of one agent
never hold the same nonce: every write that gives a row a nonce checks the in-flight rows
under its write lock (:func:`held_nonces`).

:class:`InFlightView` is what one pipeline (one ``Wallet``) knows, without reading, of an
agent's in-flight rows: only a hint for the nonce it presigns before admission's lock. A
wrong hint costs the presigned bytes (admission's check under the lock drops them and the
claim path signs after admission), never a nonce held twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from waiaas.db.faults import stored_json
from waiaas.errors import DatabaseCorruptError
from waiaas.pipeline.txmeta import TxMeta, as_meta

__all__ = ["InFlightView", "held_nonces", "lowest_free", "stored_metas"]


def held_nonces(metas: Iterable[TxMeta]) -> set[int]:
    """The nonces the in-flight rows with metadata ``metas`` hold: their signed bytes'
    nonce, else their claim's."""
    taken: set[int] = set()
    for meta in metas:
        held = (meta.get("signed") or {}).get("nonce")
        if held is None:
            held = (meta.get("claim") or {}).get("nonce")
        if held is not None:
            taken.add(int(held))
    return taken


def lowest_free(hint: int, taken: set[int]) -> int:
    """The lowest nonce at or above ``hint`` (the node's pending count) not in ``taken``."""
    nonce = hint
    while nonce in taken:
        nonce += 1
    return nonce


def stored_metas(aggregate: Any) -> list[TxMeta]:
    """The metadata documents of a JSON array of the rows' ``metadata`` texts, as the
    database returns it (text from SQLite's ``json_group_array``, a decoded list or NULL from
    PostgreSQL's ``json_agg``).

    Raises:
        DatabaseCorruptError: the array or a document in it is not valid JSON.
    """
    if aggregate is None:
        return []
    texts = aggregate
    if isinstance(aggregate, (str, bytes)):
        texts = stored_json(aggregate, table="transactions", column="metadata", default=[])
    if not isinstance(texts, list):
        raise DatabaseCorruptError(
            "the in-flight rows' metadata did not read as a JSON array",
            table="transactions",
            column="metadata",
            operation="read",
        )
    return [
        as_meta(stored_json(t, table="transactions", column="metadata", default={})) for t in texts
    ]


class InFlightView:
    """Per agent, this pipeline's own in-flight rows since admission's check under its write
    lock last found none of the agent's (its own or any other writer's).

    An agent is *known clear* while every row this pipeline put in flight since that check
    has left flight again by this pipeline's hand (confirmed, failed): a read before the
    lock could then find no in-flight nonce this pipeline does not know of. Another writer
    (a second ``Wallet``, another process) may have put one in flight meanwhile; admission's
    check under the lock finds it and drops bytes signed with its nonce.

    :meth:`checked` and :meth:`unknown` are called under the agent's write lock, so they
    follow the order of the writes they describe. Thread-safe.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        # agent id -> ids of this pipeline's rows in flight since the clear check; absent:
        # not known
        self._own: dict[str, set[str]] = {}
        # agent id -> the nonce after the one this pipeline's last row of the agent landed
        # with (confirmed), while nothing else is known to have moved the agent's nonce
        self._next: dict[str, int] = {}

    def clear(self, agent_id: str) -> bool:
        """Whether the agent is known clear: no in-flight row this pipeline knows of."""
        with self._guard:
            own = self._own.get(agent_id)
            return own is not None and not own

    def next_nonce(self, agent_id: str) -> int | None:
        """When the agent is known clear and this pipeline's row that left flight last
        landed with nonce ``n``: ``n + 1``, the node's pending count unless another writer
        moved it (the caller asks the node after signing); else ``None``."""
        with self._guard:
            own = self._own.get(agent_id)
            return self._next.get(agent_id) if own is not None and not own else None

    def checked(self, agent_id: str, *, clear: bool, added: str | None) -> None:
        """Under the agent's write lock: a check found its in-flight rows (``clear``: none),
        and the unit of work puts ``added`` in flight, if not ``None``."""
        with self._guard:
            if clear:
                self._own[agent_id] = set() if added is None else {added}
            else:
                self._own.pop(agent_id, None)
                self._next.pop(agent_id, None)

    def unknown(self, agent_id: str) -> None:
        """Under the agent's write lock: a row of the agent goes in flight another way (a
        claim): not known clear until the next check."""
        with self._guard:
            self._own.pop(agent_id, None)
            self._next.pop(agent_id, None)

    def left(self, agent_id: str, tx_id: str, *, landed_nonce: int | None = None) -> None:
        """This pipeline committed a final status of its row ``tx_id``; ``landed_nonce``:
        it was confirmed with the bytes this pipeline signed with that nonce (``None``:
        anything else, the next nonce is then not known)."""
        with self._guard:
            if landed_nonce is None:
                self._next.pop(agent_id, None)
            else:
                self._next[agent_id] = landed_nonce + 1
            own = self._own.get(agent_id)
            if own is not None:
                own.discard(tx_id)
