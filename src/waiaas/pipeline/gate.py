"""The policy gate: loads policies and usage inside the caller's unit of work, then calls the
pure evaluator. The pipeline calls it inside ``BEGIN IMMEDIATE``, so the decision and the
new transaction row are one atomic step (no two requests can both fit the last of a budget).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, select, text
from sqlmodel import col

from waiaas.chains.base import FeeQuote, native_asset_of
from waiaas.config import WalletConfig
from waiaas.db.generations import POLICIES
from waiaas.db.tables import AgentRow, AuditRow, PolicyRow
from waiaas.db.uow import UnitOfWork
from waiaas.errors import WaiaasError
from waiaas.pipeline.plans import unshown_fee
from waiaas.policy import AgentContext, Decision, PolicySpec, evaluate
from waiaas.policy.evaluate import applicable
from waiaas.policy.explain import Explanation
from waiaas.policy.model import (
    NATIVE,
    POLICY_DENIED,
    AssetPrice,
    PriceOracle,
    Usage,
    normalize_asset_key,
    required_windows,
)
from waiaas.policy.rules import AllowedTokensRules, AutoStopRules
from waiaas.types import AgentStatus, Batch, Request

if TYPE_CHECKING:
    from waiaas.plan import Effect

__all__ = [
    "PolicyCache",
    "PolicyGate",
    "agent_context",
    "restart_auto_stop",
    "spec_from_row",
    "state_keys",
]

_T = TypeVar("_T")

_MARK = "auto-stop-mark:"
# The agent's transactions requested after the mark: those whose TX_REQUESTED audit row (written
# in the same unit of work as the row) comes after the mark's audit id. Audit ids grow in
# commit order on both dialects (appends hold the audit chain's lock until commit).
_SINCE_MARK_SQL = text(
    "SELECT t.created_at, t.status, t.error FROM transactions AS t "
    "WHERE t.agent_id = :agent AND t.id != :exclude AND t.id IN ("
    "SELECT a.tx_id FROM audit_log AS a WHERE a.agent_id = :agent "
    "AND a.event_type = 'TX_REQUESTED' AND a.id > :mark)"
)
_AUDIT_HEAD = select(func.coalesce(func.max(col(AuditRow.id)), 0))


def restart_auto_stop(uow: UnitOfWork, agent_id: str, now: int) -> None:
    """Resuming an agent restarts its AUTO_STOP counters: only requests made after this
    point count toward ``max_denials``, ``max_transactions`` and ``consecutive_failures``.

    The mark is the newest audit row id at the time (ids only grow, in commit order): a
    transaction counts when its ``TX_REQUESTED`` row comes after it, so requests made in the
    same second as the resumption still count. (Older marks also hold the newest
    ``transactions`` rowid, ``tx``, taken in the same transaction; it is kept only for their
    MAC: new marks store 0.) It carries a MAC under the wallet's key: a mark moved
    forward in the file is refused (TamperDetectedError) rather than silently forgetting the
    agent's denials.
    """
    audit = uow.session.execute(_AUDIT_HEAD).scalar()
    value: dict[str, Any] = {"tx": 0, "audit": int(audit or 0)}
    if uow.integrity is not None:  # a forged mark would reset the counters: it carries a MAC
        from waiaas.integrity import auto_stop_mark_mac

        value["mac"] = auto_stop_mark_mac(uow.integrity, agent_id, value["tx"], value["audit"])
    uow.state.put(f"{_MARK}{agent_id}", value, now=now)


def state_keys(agent_id: str) -> tuple[str, ...]:
    """The ``wallet_state`` keys a judgement of ``agent_id``'s request reads: the MACs of its
    and the global policy sets, the policies' generation (:class:`PolicyCache`) and its
    AUTO_STOP mark (for ``uow.state.prefetch``)."""
    from waiaas.integrity import policy_scope

    return (policy_scope(agent_id), policy_scope(None), POLICIES, f"{_MARK}{agent_id}")


class PolicyCache:
    """The verified policies of recently judged agents, one entry per agent, kept while
    nothing they depend on has changed.

    An entry is keyed by what the unit of work that read the rows also read of
    ``wallet_state`` in the same transaction, under its write lock: the policies'
    generation (:mod:`waiaas.db.generations`; grows on every change of ``policies``, by
    trigger and by the policy service), the stored MACs of the agent's and the global
    policy sets (or their absence), and whether the rows were MAC-checked. A later unit of
    work that read the same values gets the same specs without reading a row; any other
    value is a miss: the rows are read and checked again and replace the entry. Only the
    newest entry of an agent is kept, so values copied back from an older state of the
    file never match a kept entry.

    What is kept was checked when read (row MACs and set MACs, as without the cache), so
    rows edited in the file, with or without the triggers, are never used: the triggers
    make the next read see them (and refuse them); without triggers the edit is ignored
    until a change through waiaas moves the generation. Thread-safe.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[object, ...], tuple[PolicySpec, ...]]] = {}

    @staticmethod
    def key(uow: UnitOfWork, agent_id: str) -> tuple[object, ...] | None:
        """The entry key for ``agent_id`` in ``uow``, or ``None`` when ``uow`` did not read
        every value it needs (no prefetch: the cache is not used)."""
        from waiaas.integrity import policy_scope

        key: list[object] = [uow.integrity is not None]
        for name in (POLICIES, policy_scope(agent_id), policy_scope(None)):
            read, value = uow.state.held(name)
            if not read or (name == POLICIES and value is None):
                return None
            key.append(value)
        return tuple(key)

    def get(self, agent_id: str, key: tuple[object, ...]) -> list[PolicySpec] | None:
        with self._lock:
            entry = self._entries.get(agent_id)
        return list(entry[1]) if entry is not None and entry[0] == key else None

    def put(self, agent_id: str, key: tuple[object, ...], specs: Sequence[PolicySpec]) -> None:
        with self._lock:
            if agent_id not in self._entries and len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[agent_id] = (key, tuple(specs))

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __repr__(self) -> str:
        return f"PolicyCache({len(self._entries)} agents)"


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What the evaluator needs besides the request, loaded in the caller's unit of work."""

    context: AgentContext
    specs: list[PolicySpec]
    usage: Usage
    prices: Mapping[str, AssetPrice] | None
    decimals: dict[str, int]


def spec_from_row(row: PolicyRow) -> PolicySpec:
    """The evaluator's view of a stored policy.

    Specs are immutable and a pure function of the row's stored values, so the validated
    spec of each distinct row is remembered (every send reads its policies; validating them
    again each time is most of what reading them costs). An edited row is a new key."""
    return _spec(row.id, row.agent_id, row.type, row.rules, row.priority, bool(row.enabled))


@functools.lru_cache(maxsize=4096)
def _spec(
    id: str, agent_id: str | None, type: str, rules: str, priority: int, enabled: bool
) -> PolicySpec:
    return PolicySpec(
        id=id,
        agent_id=agent_id,
        type=type,  # validated by PolicySpec
        rules=rules,
        priority=priority,
        enabled=enabled,
    )


def agent_context(agent: AgentRow, adapter: object = None) -> AgentContext:
    """The evaluator's view of an agent; with its ``adapter``, the native coin as the
    adapter names it (:class:`~waiaas.chains.base.SupportsNativeAsset`), so a third-party
    chain's coin is priced and shown like the shipped families'."""
    native = native_asset_of(adapter) if adapter is not None else None
    return AgentContext(
        id=agent.id,
        chain=agent.chain,
        network=agent.network,
        status=AgentStatus(agent.status),
        owner_address=agent.owner_address,
        native_symbol=native.symbol if native is not None else None,
        native_decimals=native.decimals if native is not None else None,
    )


class PolicyGate:
    """Evaluates requests against the stored policies and the agent's recorded usage.

    Args:
        config: the wallet configuration (tier defaults, delays, timeouts).
        oracle: optional USD prices for ``*_usd`` rules; an unknown price is never zero.
    """

    def __init__(self, config: WalletConfig, oracle: PriceOracle | None = None) -> None:
        self.config = config
        self.oracle = oracle
        #: verified policies per agent, reused while nothing they depend on changed
        self.cache = PolicyCache()

    def policies(self, uow: UnitOfWork, agent_id: str) -> list[PolicySpec]:
        """The enabled policies that apply to ``agent_id`` (its own and global ones).

        When ``uow`` prefetched :func:`state_keys`, the verified policies kept by
        :attr:`cache` for the values it read are returned without a read.

        Raises:
            TamperDetectedError: a policy, or the set of them, fails its MAC.
        """
        key = PolicyCache.key(uow, agent_id)
        if key is not None:
            cached = self.cache.get(agent_id, key)
            if cached is not None:
                return cached
        rows = uow.policies.for_agent(agent_id)
        if uow.integrity is not None:
            from waiaas.integrity import check_policies

            check_policies(uow.integrity, uow, agent_id, rows)
        specs = [spec_from_row(row) for row in rows]
        if key is not None:  # rows read in the transaction that read the key's values
            self.cache.put(agent_id, key, specs)
        return specs

    def usage(
        self,
        uow: UnitOfWork,
        agent_id: str,
        now: int,
        specs: list[PolicySpec],
        *,
        exclude_tx_id: str | None = None,
    ) -> Usage:
        """The agent's usage over the windows its policies need (in-flight + confirmed)."""
        from waiaas.services.policies import load_usage

        usage = load_usage(uow, agent_id, now, required_windows(specs), exclude_tx_id=exclude_tx_id)
        return _since_resumption(uow, agent_id, now, usage, exclude_tx_id)

    def token_decimals(
        self, agent: AgentContext, tokens: Iterable[str], specs: list[PolicySpec], adapter: Any
    ) -> dict[str, int]:
        """Decimals of ``tokens``: read from the chain (the adapter's ``token_decimals``,
        cached by the adapter), else from an applicable ALLOWED_TOKENS entry. Never from the
        request: the agent writes that. Tokens known to neither are left out."""
        listed: dict[str, int] = {}
        for spec in applicable(specs, agent):
            if isinstance(spec.rules, AllowedTokensRules):
                for entry in spec.rules.tokens:
                    if entry.decimals is not None:
                        listed.setdefault(normalize_asset_key(entry.address), entry.decimals)
        reader = getattr(adapter, "token_decimals", None)
        out: dict[str, int] = {}
        for token in sorted(set(tokens)):
            key = normalize_asset_key(token)
            if key == NATIVE:
                continue
            places: int | None = None
            if callable(reader):
                try:
                    value = reader(token)
                except WaiaasError:
                    value = None
                if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
                    places = value
            if places is None:
                places = listed.get(key)
            if places is not None:
                out[key] = places
        return out

    def _prices(
        self,
        agent: AgentContext,
        req: Request,
        specs: list[PolicySpec],
        usage: Usage,
        decimals: Mapping[str, int],
        effects: Sequence[Effect] | None = None,
    ) -> Mapping[str, AssetPrice] | None:
        """USD prices of the assets the ``*_usd`` rules need (unknown ones left out)."""
        if self.oracle is None:
            return None
        from waiaas.policy.prices import assets_to_price, lookup_prices

        assets = assets_to_price(req, agent, specs, usage, effects=effects)
        if not assets:
            return None
        return lookup_prices(
            self.oracle,
            agent.chain,
            assets,
            decimals=decimals,
            native_decimals=agent.native_decimals,
        )

    def _inputs(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        req: Request,
        now: int,
        *,
        exclude_tx_id: str | None,
        adapter: Any,
        effects: Sequence[Effect] | None,
    ) -> _Inputs:
        """Everything the evaluator needs besides the request: loaded once, the same way for
        ``send`` (:meth:`evaluate`) and the dry runs (:meth:`explain`)."""
        if uow.integrity is not None:
            from waiaas.integrity import check_agent

            check_agent(uow.integrity, agent)
        specs = self.policies(uow, agent.id)
        usage = self.usage(uow, agent.id, now, specs, exclude_tx_id=exclude_tx_id)
        context = agent_context(agent, adapter)
        tokens = {t for item in _items(req) if (t := getattr(item, "token", None))}
        tokens |= {t for e in effects or () if isinstance(t := getattr(e, "token", None), str)}
        if self.oracle is not None:
            from waiaas.policy.prices import assets_to_price

            tokens |= set(assets_to_price(req, context, specs, usage, effects=effects))
        decimals = self.token_decimals(context, tokens, specs, adapter)
        prices = self._prices(context, req, specs, usage, decimals, effects)
        return _Inputs(context, specs, usage, prices, decimals)

    def evaluate(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        req: Request,
        now: int,
        *,
        exclude_tx_id: str | None = None,
        adapter: Any = None,
        effects: Sequence[Effect] | None = None,
        calldata: bytes = b"",
        fee: FeeQuote | None = None,
    ) -> Decision:
        """Decide ``req`` for ``agent`` at ``now``.

        ``exclude_tx_id`` leaves one recorded transaction out of the usage, so a queued
        transaction re-checked before it executes is not counted against itself.
        ``adapter``: the agent's chain adapter, where token decimals are read.
        ``effects`` / ``calldata``: decoded from the plan that will be signed; when given,
        the policies judge them instead of the request's own fields.
        ``fee``: the network fee of the built transaction; what its effects do not already
        show is judged as one more fee the agent pays (budgets count fees).
        """
        return self._judge(
            evaluate, uow, agent, req, now, exclude_tx_id, adapter, effects, calldata, fee
        )

    def explain(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        req: Request,
        now: int,
        *,
        adapter: Any = None,
        effects: Sequence[Effect] | None = None,
        calldata: bytes = b"",
        fee: FeeQuote | None = None,
    ) -> Explanation:
        """:meth:`evaluate` with explanations, for the dry runs: the same policies, usage
        windows, prices, decimals and effects, so its decision is the one ``send`` would
        reach in the same state (:func:`waiaas.policy.explain` adds the hints)."""
        from waiaas.policy.explain import explain

        return self._judge(explain, uow, agent, req, now, None, adapter, effects, calldata, fee)

    def _judge(
        self,
        judge: Callable[..., _T],
        uow: UnitOfWork,
        agent: AgentRow,
        req: Request,
        now: int,
        exclude_tx_id: str | None,
        adapter: Any,
        effects: Sequence[Effect] | None,
        calldata: bytes,
        fee: FeeQuote | None,
    ) -> _T:
        """``judge`` (evaluate or explain) with what :meth:`_inputs` loads and the part of
        the network fee the effects do not show."""
        network_fee = unshown_fee(effects, fee)
        i = self._inputs(
            uow, agent, req, now, exclude_tx_id=exclude_tx_id, adapter=adapter, effects=effects
        )
        return judge(
            req,
            i.context,
            i.specs,
            i.usage,
            now,
            config=self.config,
            prices=i.prices,
            decimals=i.decimals,
            effects=effects,
            calldata=calldata,
            network_fee=network_fee,
        )

    def refusal_auto_stop_reason(self, uow: UnitOfWork, agent: AgentRow, now: int) -> str | None:
        """After a refusal that left no transaction row (already written in ``uow``): the
        ``max_denials`` trigger it makes cross, if any."""
        specs = [s for s in self.policies(uow, agent.id) if isinstance(s.rules, AutoStopRules)]
        triggers = [s for s in specs if s.rules.trigger == "max_denials"]  # type: ignore[union-attr]
        if not triggers:
            return None
        usage = self.usage(uow, agent.id, now, specs)
        for spec in triggers:
            rules = spec.rules
            assert isinstance(rules, AutoStopRules) and rules.window_seconds is not None
            seen = usage.count("denials", rules.window_seconds)
            if seen >= rules.threshold:
                return (
                    f"{seen} denied requests in the last {rules.window_seconds} s "
                    f"(threshold {rules.threshold}, policy {spec.id})"
                )
        return None

    def auto_stop_reason(self, uow: UnitOfWork, agent: AgentRow, now: int) -> str | None:
        """After an on-chain failure: the consecutive-failure trigger that fired, if any."""
        specs = [s for s in self.policies(uow, agent.id) if isinstance(s.rules, AutoStopRules)]
        triggers = [s for s in specs if s.rules.trigger == "consecutive_failures"]  # type: ignore[union-attr]
        if not triggers:
            return None
        usage = self.usage(uow, agent.id, now, specs)
        for spec in triggers:
            threshold = spec.rules.threshold  # type: ignore[union-attr]
            if usage.consecutive_failures >= threshold:
                return (
                    f"{usage.consecutive_failures} consecutive failed transactions "
                    f"(threshold {threshold}, policy {spec.id})"
                )
        return None

    def __repr__(self) -> str:
        return f"PolicyGate(oracle={self.oracle!r})"


def _since_resumption(
    uow: UnitOfWork, agent_id: str, now: int, usage: Usage, exclude_tx_id: str | None
) -> Usage:
    """The AUTO_STOP counters (denials, transactions, consecutive failures) of ``usage``
    restricted to requests after the agent's last resumption (see :func:`restart_auto_stop`).

    Only AUTO_STOP reads these counters; RATE_LIMIT's ``requests`` and the budgets are not
    restarted by a resumption.
    """
    mark = uow.state.get(f"{_MARK}{agent_id}")
    if mark is None:
        return usage
    if uow.integrity is not None:
        from waiaas.integrity import check_auto_stop_mark

        check_auto_stop_mark(uow.integrity, agent_id, mark if isinstance(mark, dict) else {})
    elif not isinstance(mark, dict):
        return usage
    from waiaas.services.policies import audit_refusals

    rows = uow.session.execute(
        _SINCE_MARK_SQL,
        {"agent": agent_id, "mark": int(mark.get("audit", 0)), "exclude": exclude_tx_id or ""},
    ).all()
    denials = dict.fromkeys(usage.denials, 0)
    txs = dict.fromkeys(usage.transactions, 0)
    failed = 0
    for created, status, error in rows:
        for w in denials:
            if created > now - w:
                if error == POLICY_DENIED:
                    denials[w] += 1
                else:
                    txs[w] += 1
        if status == "FAILED" and error != POLICY_DENIED:
            failed += 1
    _requests, refused = audit_refusals(
        uow, agent_id, now, denials, after_id=int(mark.get("audit", 0))
    )
    for w in denials:
        denials[w] += refused[w]
    return dataclasses.replace(
        usage,
        denials=denials,
        transactions=txs,
        consecutive_failures=min(usage.consecutive_failures, failed),
    )


def _items(req: Request) -> tuple[Any, ...]:
    return tuple(req.requests) if isinstance(req, Batch) else (req,)
