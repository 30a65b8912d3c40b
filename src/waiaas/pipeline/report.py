"""What one pass of due work did: :class:`DueReport` (returned by ``Wallet.process_due``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DueProblem", "DueReport"]


@dataclass(frozen=True)
class DueProblem:
    """One transaction the pass could not finish; the pass went on with the others.

    Attributes:
        tx_id: the transaction.
        agent_id: its agent.
        code: a stable error code (``"KEY_MISSING"``, ``"CHAIN_TRANSIENT"``,
            ``"INTERNAL_ERROR"``, ...).
        message: what went wrong (no secrets).
        parked: ``True`` when the transaction was left where it was, to be tried again by a
            later pass; ``False`` when it was ended (FAILED) with ``code``.
    """

    tx_id: str
    agent_id: str
    code: str
    message: str
    parked: bool


@dataclass(frozen=True)
class DueReport:
    """What one :meth:`~waiaas.Wallet.process_due` pass did.

    Counts include only work *this* call won: when two processes run passes at once, a due
    DELAY is executed (and counted) by exactly one of them.

    Attributes:
        delays: DELAY transactions whose cooldown had passed and that this pass executed.
        expired: APPROVAL transactions whose owner did not decide in time (now EXPIRED).
        approved: owner-approved transactions this pass executed.
        resumed: PENDING transactions left by a crash or an error, executed now.
        polled: SUBMITTED / EXECUTING transactions asked about on chain.
        sessions: expired sessions swept.
        no_adapter: transactions of a chain this wallet was opened without (left as they are).
        locked: transactions waiting because the keystore is locked.
        problems: transactions that failed or were parked, each with a code; one agent's
            problem never stops the pass for the others.

    Example::

        report = wallet.process_due()
        for p in report.problems:
            print(p.tx_id, p.code, p.message)
    """

    delays: int = 0
    expired: int = 0
    approved: int = 0
    resumed: int = 0
    polled: int = 0
    sessions: int = 0
    no_adapter: int = 0
    locked: int = 0
    problems: tuple[DueProblem, ...] = field(default=())

    def __getitem__(self, name: str) -> int:
        """Mapping-style access to a count (``report["delays"]``), as earlier versions
        returned a dict of counts."""
        value = getattr(self, name, None) if name != "problems" else None
        if not isinstance(value, int):
            raise KeyError(name)
        return value

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return asdict(self)
