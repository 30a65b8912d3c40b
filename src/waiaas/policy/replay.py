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
from typing import TYPE_CHECKING, SupportsIndex, overload

from waiaas import _display as _d
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

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["ReplayDiff", "ReplayRecord", "ReplayResult", "outcome", "replay"]

OUTCOMES = ("INSTANT", "NOTIFY", "DELAY", "APPROVAL", "DENIED")


def outcome(decision: Decision | None) -> str:
    """A decision as one label: its tier when allowed, ``DENIED``, or ``UNKNOWN`` for none."""
    if decision is None:
        return "UNKNOWN"
    return decision.tier.value if decision.allowed else "DENIED"


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

    def __repr__(self) -> str:
        return _d.short_repr(
            "ReplayDiff",
            [
                ("tx_id", self.tx_id),
                ("at", _d.fmt_time(self.created_at)),
                ("changes", "; ".join(self.changes)),
            ],
        )

    def _repr_html_(self) -> str:
        return _d.fields_html(
            "Replay: a decision that changes",
            [
                ("transaction", self.tx_id),
                ("requested", _d.fmt_time(self.created_at)),
                ("recorded", _d.raw(_d.badge(outcome(self.recorded)))),
                ("candidate", _d.raw(_d.badge(outcome(self.candidate)))),
                ("changes", "; ".join(self.changes)),
                ("candidate says", self.candidate.summary()),
            ],
        )

    def _row(self) -> dict[str, object]:
        return {
            "tx_id": self.tx_id,
            "created_at": self.created_at,
            "recorded": outcome(self.recorded),
            "candidate": outcome(self.candidate),
            "changes": "; ".join(self.changes),
            "candidate_summary": self.candidate.summary(),
        }


class ReplayResult(list[ReplayDiff]):
    """What :func:`replay` returns: the diffs (a list, in time order), plus how many records
    were compared and how every outcome moved (``transitions``), for tables and plots.

    Attributes:
        compared: how many records were replayed.
        transitions: ``{(recorded, candidate): count}`` over *every* record, changed or
            not; outcomes are tier names, ``DENIED``, or ``UNKNOWN`` (no recorded decision).

    Example::

        result = wallet.policies.replay(agent.id, [stricter])
        result.flips()            # {("INSTANT", "DENIED"): 3, ...}
        result.to_dataframe()     # one row per changed decision (pandas extra)
        result.plot()             # recorded vs candidate outcomes (matplotlib extra)
    """

    compared: int
    transitions: dict[tuple[str, str], int]

    def __init__(
        self,
        diffs: Iterable[ReplayDiff] = (),
        *,
        compared: int = 0,
        transitions: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        super().__init__(diffs)
        self.compared = compared
        self.transitions = dict(transitions or {})

    @overload
    def __getitem__(self, index: SupportsIndex) -> ReplayDiff: ...

    @overload
    def __getitem__(self, index: slice) -> list[ReplayDiff]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> ReplayDiff | list[ReplayDiff]:
        return super().__getitem__(index)

    def flips(self) -> dict[tuple[str, str], int]:
        """Only the transitions where the outcome changed: ``{(recorded, candidate): n}``."""
        return {k: v for k, v in self.transitions.items() if k[0] != k[1]}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per outcome, how many records had it as recorded and under the candidate."""
        out = {o: {"recorded": 0, "candidate": 0} for o in (*OUTCOMES, "UNKNOWN")}
        for (old, new), n in self.transitions.items():
            out.setdefault(old, {"recorded": 0, "candidate": 0})["recorded"] += n
            out.setdefault(new, {"recorded": 0, "candidate": 0})["candidate"] += n
        return {k: v for k, v in out.items() if v["recorded"] or v["candidate"]}

    def __repr__(self) -> str:
        flips = ", ".join(f"{a}->{b}: {n}" for (a, b), n in sorted(self.flips().items()))
        return (
            f"ReplayResult({len(self)} of {self.compared} decisions change"
            f"{' {' + flips + '}' if flips else ''})"
        )

    def _repr_html_(self) -> str:
        counts = self.counts()
        summary = _d.table_html(
            ("outcome", "recorded", "candidate"),
            [(_d.raw(_d.badge(k)), v["recorded"], v["candidate"]) for k, v in counts.items()],
            caption=f"Replay: {len(self)} of {self.compared} decisions change",
        )
        rows = [
            (
                _d.short(d.tx_id),
                _d.fmt_time(d.created_at),
                _d.raw(_d.badge(outcome(d.recorded))),
                _d.raw(_d.badge(outcome(d.candidate))),
                "; ".join(d.changes),
            )
            for d in self
        ]
        detail = _d.table_html(
            ("transaction", "requested", "recorded", "candidate", "changes"), rows
        )
        return summary + (detail if rows else "")

    def to_dataframe(self) -> pd.DataFrame:
        """One row per changed decision (needs the ``pandas`` extra): ``tx_id``,
        ``created_at`` (UTC datetime), ``recorded`` and ``candidate`` outcomes, ``changes``
        and the candidate's summary."""
        return _d.frame(
            [d._row() for d in self],
            ("tx_id", "created_at", "recorded", "candidate", "changes", "candidate_summary"),
            times=("created_at",),
        )

    def plot(self, ax: Axes | None = None) -> Axes:
        """Recorded against candidate outcomes, by tier, as grouped bars; the flips are
        annotated (needs the ``plot`` extra). Returns the matplotlib ``Axes``."""
        from waiaas.plots import replay_chart

        return replay_chart(self, ax=ax)


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
) -> ReplayResult:
    """Re-run ``records`` at their original times against ``candidate_policies``. Pure.

    The agent is evaluated as ACTIVE (its status today says nothing about the past).

    Args:
        records: the agent's recorded requests, any order (sorted by time, then id).
        candidate_policies: the policy set to try.
        agent: the agent the records belong to.
        config: wallet defaults.
        progress: called as ``progress(done, total)`` after each record (progress bars).

    Returns:
        A :class:`ReplayResult`: one :class:`ReplayDiff` per record whose decision would
        differ, in time order, plus the outcome counts over every record.

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
    transitions: dict[tuple[str, str], int] = {}
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
        key = (outcome(rec.decision), outcome(new))
        transitions[key] = transitions.get(key, 0) + 1
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
    return ReplayResult(diffs, compared=len(items), transitions=transitions)
