"""Charts for notebooks: budget usage against each limit, and a replay comparison.

Needs the ``plot`` extra (matplotlib); the data behind each chart needs nothing extra and
has ``to_dataframe()`` with the ``pandas`` extra. Charts convert amounts to floats for
drawing only; every number you can read back (``BudgetUsage``, data frames) is exact.

Example::

    from waiaas.plots import budget_chart

    usage = wallet.budget_usage(agent.id)     # spend in each rolling window, and the limits
    usage.remaining()                          # {"24h": 1500000000, "7d": ...}
    ax = budget_chart(usage)                   # or usage.plot()
    ax.figure.savefig("budget.png")

    result = wallet.policies.replay(agent.id, [candidate])
    result.plot()                              # which decisions flip, by tier
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from waiaas import _display as _d
from waiaas.errors import InvalidInputError
from waiaas.policy.model import DAY, NATIVE, WEEK
from waiaas.types import TxStatus

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from waiaas.policy.replay import ReplayResult
    from waiaas.services.policies import PolicyInfo
    from waiaas.types import TransactionInfo

__all__ = ["BudgetLimit", "BudgetUsage", "budget_chart", "replay_chart"]

# What a budget counts: in-flight and confirmed requests (the same as the evaluator).
_COUNTED = frozenset(
    {TxStatus.PENDING, TxStatus.QUEUED, TxStatus.EXECUTING, TxStatus.SUBMITTED, TxStatus.CONFIRMED}
)
_WINDOWS = {"24h": DAY, "7d": WEEK}


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    """One amount cap of a SPENDING_LIMIT policy.

    Attributes:
        rule_id: the policy id.
        window: ``"24h"`` (``daily_total``), ``"7d"`` (``weekly_total``) or
            ``"transaction"`` (``per_transaction``).
        limit: the cap, base units.
    """

    rule_id: str
    window: str
    limit: int


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """An agent's spend of one asset, and the limits it is held to, at ``now``.

    Built by ``Wallet.budget_usage``. Amounts are exact ints of base units.

    Attributes:
        agent_id / chain / asset: whose spend, of what (``"native"`` or a token address).
        now: the moment the windows end at (Unix seconds).
        spends: ``(created_at, amount)`` of every request that counts against a budget
            (in flight or confirmed) in the last 7 days, oldest first.
        limits: the caps of the SPENDING_LIMIT policies that apply to this asset.
    """

    agent_id: str
    chain: str
    asset: str
    now: int
    spends: tuple[tuple[int, int], ...]
    limits: tuple[BudgetLimit, ...]

    def spent(self, window: str, at: int | None = None) -> int:
        """Base units spent in the rolling ``window`` (``"24h"`` / ``"7d"``) ending at ``at``."""
        if window not in _WINDOWS:
            raise InvalidInputError("window must be '24h' or '7d'", field="window")
        end = self.now if at is None else at
        start = end - _WINDOWS[window]
        return sum(amount for t, amount in self.spends if start < t <= end)

    def remaining(self) -> dict[str, int]:
        """Per rolling window with a limit, what is left now (the tightest limit wins)."""
        out: dict[str, int] = {}
        for lim in self.limits:
            if lim.window in _WINDOWS:
                left = max(lim.limit - self.spent(lim.window), 0)
                out[lim.window] = min(out.get(lim.window, left), left)
        return out

    def series(self, window: str) -> list[tuple[int, int]]:
        """``(time, spent in the window ending then)`` at every change over the last 7 days:
        each request entering the window and leaving it."""
        length = _WINDOWS.get(window)
        if length is None:
            raise InvalidInputError("window must be '24h' or '7d'", field="window")
        start = self.now - WEEK
        points = {start, self.now}
        for t, _ in self.spends:
            points.add(t)
            points.add(t + length)
        return [(p, self.spent(window, p)) for p in sorted(points) if start <= p <= self.now]

    def __repr__(self) -> str:
        caps = ", ".join(
            f"{lim.window} {self.spent(lim.window) if lim.window in _WINDOWS else '-'}/{lim.limit}"
            for lim in self.limits
        )
        return f"BudgetUsage({self.chain} {self.asset}: {caps or 'no amount limits'})"

    def _repr_html_(self) -> str:
        rows = []
        for lim in self.limits:
            if lim.window in _WINDOWS:
                used = self.spent(lim.window)
                share = f"{Decimal(used * 100) / Decimal(lim.limit):.1f} %" if lim.limit else ""
                rows.append(
                    (
                        lim.window,
                        _d.amount_cells(self.chain, self.asset, used),
                        _d.amount_cells(self.chain, self.asset, lim.limit),
                        _d.amount_cells(self.chain, self.asset, max(lim.limit - used, 0)),
                        share,
                        _d.short(lim.rule_id),
                    )
                )
            else:
                rows.append(
                    (
                        "per transaction",
                        "",
                        _d.amount_cells(self.chain, self.asset, lim.limit),
                        "",
                        "",
                        _d.short(lim.rule_id),
                    )
                )
        return _d.table_html(
            ("window", "spent", "limit", "remaining", "used", "policy"),
            rows,
            caption=f"Budget usage at {_d.fmt_time(self.now)} ({len(self.spends)} requests "
            "in 7 days)",
        )

    def to_dataframe(self) -> pd.DataFrame:
        """The rolling spend over the last 7 days, one row per change and window (``time``
        as a UTC datetime, ``window``, ``spent`` and ``limit`` as exact int strings)."""
        rows: list[dict[str, object]] = []
        for window in _WINDOWS:
            limits = [lim.limit for lim in self.limits if lim.window == window]
            cap = str(min(limits)) if limits else None
            rows += [
                {"time": t, "window": window, "spent": str(v), "limit": cap}
                for t, v in self.series(window)
            ]
        return _d.frame(rows, ("time", "window", "spent", "limit"), times=("time",),
                        exact=("spent", "limit"))  # fmt: skip

    def plot(self, ax: Axes | None = None) -> Axes:
        """See :func:`budget_chart`."""
        return budget_chart(self, ax=ax)


def _counted(t: TransactionInfo, asset: str) -> int | None:
    """What ``t`` counts against ``asset``'s budgets: its recorded spend (amounts, rent,
    fees, allowances), else, for rows recorded without one, its amount in its own asset."""
    if t.spend is not None:
        return t.spend.get(asset)
    return t.amount if t.amount is not None and (t.asset or NATIVE) == asset else None


def build_budget_usage(
    agent_id: str,
    chain: str,
    asset: str,
    now: int,
    transactions: Iterable[TransactionInfo],
    policies: Iterable[PolicyInfo],
) -> BudgetUsage:
    """Assemble a :class:`BudgetUsage` from listed transactions and policies (pure)."""
    spends = sorted(
        (t.created_at, amount)
        for t in transactions
        if t.status in _COUNTED
        and now - WEEK < t.created_at <= now
        and (amount := _counted(t, asset)) is not None
    )
    limits: list[BudgetLimit] = []
    for p in policies:
        if not p.enabled or p.type.value != "SPENDING_LIMIT":
            continue
        if str(p.rules.get("asset", NATIVE)) != asset:
            continue
        for key, window in (
            ("per_transaction", "transaction"),
            ("daily_total", "24h"),
            ("weekly_total", "7d"),
        ):
            if p.rules.get(key) is not None:
                limits.append(BudgetLimit(p.id, window, int(str(p.rules[key]))))
    return BudgetUsage(agent_id, chain, asset, now, tuple(spends), tuple(limits))


def _units(chain: str, asset: str) -> tuple[int, str]:
    """Decimals and symbol the chart's axis uses (base units for tokens)."""
    from waiaas.chains.families import native_asset_for

    coin = native_asset_for(chain) if asset == NATIVE else None
    if coin is not None:
        return coin.decimals, coin.symbol
    return 0, "base units"


def _scaled(amount: int, decimals: int) -> float:
    # Drawing only: matplotlib needs floats; the exact figures stay in BudgetUsage. Integer
    # true division is correctly rounded and does not depend on the decimal context.
    scale: int = 10**decimals
    return amount / scale


def budget_chart(usage: BudgetUsage, ax: Axes | None = None) -> Axes:
    """Spend in each rolling window over the last 7 days, as steps, against each limit
    (dashed lines); the per-transaction cap is drawn with each request's amount.

    Needs the ``plot`` extra. Returns the matplotlib ``Axes`` (a new figure when ``ax`` is
    ``None``).

    Example::

        ax = budget_chart(wallet.budget_usage(agent.id))
        ax.figure.savefig("budget.png")
    """
    plt = _d.require_pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    assert ax is not None
    decimals, unit = _units(usage.chain, usage.asset)
    colours = {"24h": "tab:blue", "7d": "tab:orange", "transaction": "tab:gray"}
    for window in _WINDOWS:
        points = usage.series(window)
        times = [_datetime(t) for t, _ in points]
        ax.step(times, [_scaled(v, decimals) for _, v in points], where="post",
                color=colours[window], label=f"spent, rolling {window}")  # fmt: skip
    for lim in usage.limits:
        ax.axhline(_scaled(lim.limit, decimals), color=colours[lim.window], linestyle="--",
                   linewidth=1, label=f"limit {lim.window}")  # fmt: skip
    if usage.spends:
        ax.scatter([_datetime(t) for t, _ in usage.spends],
                   [_scaled(a, decimals) for _, a in usage.spends], s=12,
                   color=colours["transaction"], label="each request", zorder=3)  # fmt: skip
    # Explicit limits: the last 7 days, and zero to a little above the highest line.
    tops = [v for w in _WINDOWS for _, v in usage.series(w)]
    tops += [lim.limit for lim in usage.limits] + [a for _, a in usage.spends]
    top = _scaled(max(tops, default=0), decimals)
    ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
    ax.set_xlim(_datetime(usage.now - WEEK), _datetime(usage.now))
    ax.xaxis_date(tz="UTC")
    ax.set_ylabel(unit)
    ax.set_title(f"Budget usage, {usage.chain} {usage.asset if usage.asset != NATIVE else unit}")
    ax.legend(loc="upper left", fontsize="small")
    ax.figure.autofmt_xdate()
    return ax


def _datetime(ts: int) -> float:
    """Unix seconds as a matplotlib date number (days since the epoch)."""
    return ts / 86_400


def replay_chart(result: ReplayResult, ax: Axes | None = None) -> Axes:
    """Recorded against candidate outcomes, by tier (grouped bars), with every flip
    (``INSTANT -> DENIED: 3``) listed on the chart. Needs the ``plot`` extra.

    Example::

        ax = replay_chart(wallet.policies.replay(agent.id, [candidate]))
    """
    plt = _d.require_pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 4))
        fig.subplots_adjust(right=0.74)  # room for the list of flips
    assert ax is not None
    counts = result.counts()
    labels: Sequence[str] = list(counts)
    xs = list(range(len(labels)))
    width = 0.38
    ax.bar([x - width / 2 for x in xs], [counts[k]["recorded"] for k in labels], width,
           label="recorded", color="tab:gray")  # fmt: skip
    ax.bar([x + width / 2 for x in xs], [counts[k]["candidate"] for k in labels], width,
           label="candidate", color="tab:blue")  # fmt: skip
    ax.set_xticks(xs, labels)
    highest = max((max(v.values()) for v in counts.values()), default=0)
    ax.set_ylim(0, highest * 1.1 if highest else 1.0)
    ax.set_ylabel("requests")
    ax.set_title(f"Replay: {len(result)} of {result.compared} decisions change")
    flips = sorted(result.flips().items(), key=lambda kv: -kv[1])
    if flips:
        text = "\n".join(f"{a} -> {b}: {n}" for (a, b), n in flips[:8])
        ax.text(1.02, 1.0, text, transform=ax.transAxes, va="top", fontsize="small",
                family="monospace")  # fmt: skip
    ax.legend(loc="upper left", fontsize="small")
    return ax
