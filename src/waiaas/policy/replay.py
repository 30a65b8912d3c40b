"""Replay recorded requests against a candidate policy set and report what would change.

"What if I had had this policy last week?" :func:`replay` re-runs every recorded request
at its original time, rebuilding the usage from the earlier records as history
accumulates, and returns the decisions that differ from the recorded ones. Pure.

History is counterfactual: a record the candidate set denies counts as a denial (it moves
nothing) for the records after it; a record it allows counts with its recorded outcome,
or as in flight when it had originally been denied (we cannot know how it would have
ended, so it is assumed to have spent its amount, the conservative choice for budgets).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from waiaas._validate import shown
from waiaas.config import WalletConfig
from waiaas.errors import InvalidInputError
from waiaas.policy.evaluate import RequestModel, _normalize_items, _spend, coerce_request, evaluate
from waiaas.policy.model import (
    NATIVE,
    POLICY_DENIED,
    AgentContext,
    AssetPrice,
    Decision,
    PolicySpec,
    UsageRow,
    _check_int,
    compute_usage,
    required_windows,
)
from waiaas.types import AgentStatus, TxStatus

__all__ = ["ReplayDiff", "ReplayRecord", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """One recorded request.

    Attributes:
        tx_id: the transaction id.
        created_at: when it was requested (Unix seconds).
        request: the request as recorded.
        decision: the recorded decision (``None`` when none was stored).
        status: its final (or current) status.
        prices: the USD prices used at the time, if any.
    """

    tx_id: str
    created_at: int
    request: RequestModel
    decision: Decision | None
    status: str
    prices: Mapping[str, AssetPrice] | None = None

    def __post_init__(self) -> None:
        _check_int(self.created_at, "created_at")
        object.__setattr__(self, "request", coerce_request(self.request))
        if self.decision is not None and not isinstance(self.decision, Decision):
            raise InvalidInputError("decision must be a Decision or None", field="decision")
        try:
            object.__setattr__(self, "status", TxStatus(self.status))
        except ValueError:
            raise InvalidInputError(
                f"unknown status {shown(self.status)}", field="status"
            ) from None

    @property
    def was_denied(self) -> bool:
        """True when the recorded decision denied the request."""
        return self.decision is not None and not self.decision.allowed


@dataclass(frozen=True, slots=True)
class ReplayDiff:
    """A recorded request whose decision the candidate policies would change.

    Attributes:
        tx_id / created_at: which record.
        recorded: the recorded decision (``None`` when none was stored).
        candidate: the decision under the candidate policies.
        changes: what differs, e.g. ``"allowed: True -> False"``, ``"tier: INSTANT -> DELAY"``.
    """

    tx_id: str
    created_at: int
    recorded: Decision | None
    candidate: Decision
    changes: tuple[str, ...]


def _changes(old: Decision | None, new: Decision) -> tuple[str, ...]:
    if old is None:
        return (f"no recorded decision; candidate: {new.summary()}",)
    out: list[str] = []
    if old.allowed != new.allowed:
        out.append(f"allowed: {old.allowed} -> {new.allowed}")
    elif old.allowed and old.tier != new.tier:
        out.append(f"tier: {old.tier.value} -> {new.tier.value}")
    if (old.auto_stop is None) != (new.auto_stop is None):
        out.append(f"auto_stop: {old.auto_stop is not None} -> {new.auto_stop is not None}")
    return tuple(out)


def _row(record: ReplayRecord, decision: Decision, chain: str) -> UsageRow:
    if not decision.allowed:
        return UsageRow(record.created_at, TxStatus.FAILED, NATIVE, 0, POLICY_DENIED)
    status = TxStatus.PENDING if record.was_denied else TxStatus(record.status)
    items, _ = _normalize_items(record.request, chain)
    spend = sorted(_spend(items).items())
    first = spend[0] if spend else (NATIVE, 0)
    return UsageRow(record.created_at, status, first[0], first[1], None, tuple(spend[1:]))


def replay(
    records: Iterable[ReplayRecord],
    candidate_policies: Iterable[PolicySpec],
    agent: AgentContext,
    config: WalletConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[ReplayDiff]:
    """Re-run ``records`` at their original times against ``candidate_policies``. Pure.

    The agent is evaluated as ACTIVE (its status today says nothing about the past).

    Args:
        records: the agent's recorded requests, any order (sorted by time, then id).
        candidate_policies: the policy set to try.
        agent: the agent the records belong to.
        config: wallet defaults.
        progress: called as ``progress(done, total)`` after each record (progress bars).

    Returns:
        One :class:`ReplayDiff` per record whose decision would differ, in time order.

    Raises:
        InvalidInputError: a malformed argument.

    Example::

        for diff in replay(records, [stricter_limit], agent):
            print(diff.tx_id, diff.changes)
    """
    if not isinstance(agent, AgentContext):
        raise InvalidInputError("agent must be an AgentContext", field="agent")
    specs = list(candidate_policies)
    items = list(records)
    for rec in items:
        if not isinstance(rec, ReplayRecord):
            raise InvalidInputError("records must hold ReplayRecord values", field="records")
    windows = required_windows(specs)
    active = dataclasses.replace(agent, status=AgentStatus.ACTIVE)
    history: deque[UsageRow] = deque()
    diffs: list[ReplayDiff] = []
    longest = max(windows)
    failures = 0  # over the whole history, not only the longest window
    total = len(items)
    for done, rec in enumerate(sorted(items, key=lambda r: (r.created_at, r.tx_id)), 1):
        while history and rec.created_at - history[0].created_at >= longest:
            history.popleft()
        usage = compute_usage(history, rec.created_at, windows)
        usage = dataclasses.replace(usage, consecutive_failures=failures)
        new = evaluate(
            rec.request, active, specs, usage, rec.created_at, config=config, prices=rec.prices
        )
        changes = _changes(rec.decision, new)
        if changes:
            diffs.append(ReplayDiff(rec.tx_id, rec.created_at, rec.decision, new, changes))
        row = _row(rec, new, active.chain)
        history.append(row)
        if row.status == TxStatus.CONFIRMED:
            failures = 0
        elif row.status == TxStatus.FAILED and row.error != POLICY_DENIED:
            failures += 1
        if progress is not None:
            progress(done, total)
    return diffs
