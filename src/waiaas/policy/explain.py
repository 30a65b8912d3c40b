"""Dry-run with explanations: which rules fired, and what would change the outcome.

:func:`explain` evaluates a hypothetical request (pure, like :func:`evaluate`) and then
probes nearby alternatives by evaluating them too, so every hint it gives is checked
against the real evaluator rather than guessed: "<= 0.5 SOL would be INSTANT" is only said
when a 0.5 SOL request really is INSTANT under the same rules and usage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from waiaas import _display as _d
from waiaas.config import WalletConfig
from waiaas.policy.evaluate import (
    RequestModel,
    _check_inputs,
    _normalize_items,
    _prices,
    _spend,
    applicable,
    coerce_request,
    describe_window,
    evaluate,
    time_allows,
)
from waiaas.policy.model import (
    EXACT,
    NATIVE,
    AgentContext,
    AssetPrice,
    Decision,
    PolicySpec,
    Reason,
    Usage,
    decision_html,
    normalize_asset_key,
)
from waiaas.policy.rules import (
    AllowedTokensRules,
    SpendingLimitRules,
    TimeRestrictionRules,
    daily_bounds,
)
from waiaas.policy.units import describe_amount, format_usd
from waiaas.types import ContractCall, Tier, TokenTransfer, Transfer

if TYPE_CHECKING:
    from waiaas.plan import Effect

__all__ = [
    "AGENT_NEXT_STEP",
    "AgentDenial",
    "Explanation",
    "agent_denial",
    "deciding_reasons",
    "explain",
    "next_allowed_time",
    "redact_decision",
    "redact_for_agent",
]

_STEP = 900  # every zone offset in use is a multiple of 15 minutes
_HORIZON = 8 * 86_400 + 3_600


@dataclass(frozen=True, slots=True)
class Explanation:
    """The result of :func:`explain`.

    Attributes:
        decision: the decision for the request as given.
        fired: the reasons that deny or set a tier (the rules that "fired").
        hints: sentences saying what would change the outcome, each one verified.
        amount_for_tier: for a single-asset request, the largest amount (base units) that
            gets each tier lower than or equal to the current one (or, when denied, that is
            allowed), keyed by tier name.
        next_allowed_at: when a time restriction denies, the first Unix time at which every
            time restriction allows the request (``None`` otherwise or if never within 8 days).
    """

    decision: Decision
    fired: tuple[Reason, ...]
    hints: tuple[str, ...]
    amount_for_tier: Mapping[str, int] = field(default_factory=dict)
    next_allowed_at: int | None = None

    def to_text(self) -> str:
        """A short multi-line rendering for people."""
        lines = [self.decision.summary()]
        lines += [f"- [{r.type}] {r.message}" for r in self.fired]
        lines += [f"hint: {h}" for h in self.hints]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: ``json.dumps(explanation.to_dict())`` works.

        Amounts are decimal strings (base units), as in :meth:`Decision.to_dict`.

        Example::

            json.dumps(wallet.dry_run(Transfer(to=dest, amount=10**9), agent_id=a).to_dict())
        """
        return {
            "decision": self.decision.to_dict(),
            "fired": [r.model_dump(mode="json") for r in self.fired],
            "hints": list(self.hints),
            "amount_for_tier": {k: str(v) for k, v in self.amount_for_tier.items()},
            "next_allowed_at": self.next_allowed_at,
        }

    def __repr__(self) -> str:
        hints = f", hints={list(self.hints)!r}" if self.hints else ""
        return f"Explanation({self.decision.summary()!r}{hints})"

    def _repr_html_(self) -> str:
        parts = [decision_html(self.decision, "Dry run")]
        if self.hints:
            parts.append(
                _d.table_html(("what would change the outcome",), [(h,) for h in self.hints])
            )
        if self.amount_for_tier:
            parts.append(
                _d.table_html(
                    ("tier", "largest amount (base units)"),
                    [(k, str(v)) for k, v in self.amount_for_tier.items()],
                )
            )
        if self.next_allowed_at is not None:
            parts.append(
                _d.fields_html("Time", [("next allowed", _d.fmt_time(self.next_allowed_at))])
            )
        return "".join(parts)


def next_allowed_time(rules: Sequence[TimeRestrictionRules], now: int) -> int | None:
    """The first Unix time ``>= now`` at which every rule in ``rules`` allows a request.

    Searches up to 8 days ahead on 15-minute boundaries (where local hours change in every
    zone in use), so DST gaps and repeated hours are handled by ``zoneinfo`` itself.
    Returns ``None`` when no such time exists in that horizon (e.g. contradictory rules).
    """
    if all(time_allows(r, now) for r in rules):
        return now
    moment = (now // _STEP + 1) * _STEP
    end = now + _HORIZON
    while moment <= end:
        if all(time_allows(r, moment) for r in rules):
            return moment
        moment += _STEP
    return None


def _with_amount(request: RequestModel, amount: int) -> RequestModel:
    if isinstance(request, ContractCall):
        return request.model_copy(update={"value": amount})
    return request.model_copy(update={"amount": amount})


def _unit_bounds(r: SpendingLimitRules, day: int, week: int, fee: int) -> set[int]:
    """A one-asset spending limit's bounds in base units: its tier thresholds, the daily
    bounds less the day's total (velocity tiers switch there), per-transaction, daily and
    weekly totals less what the windows already hold."""
    found = {b for b in r.thresholds if b is not None}
    found.update(b - day - fee for b in r.daily_thresholds if b is not None)
    if r.per_transaction is not None:
        found.add(r.per_transaction)
    if r.daily_total is not None:
        found.add(r.daily_total - day - fee)
    if r.weekly_total is not None:
        found.add(r.weekly_total - week - fee)
    return found


def _usd_bounds(r: SpendingLimitRules, price: AssetPrice) -> set[int]:
    """A spending limit's USD bounds in base units of the priced asset (rounded down)."""
    found: set[int] = set()
    for usd in (*r.thresholds_usd, r.per_transaction_usd):
        if usd is not None:
            with localcontext(EXACT):
                units = (usd * Decimal(10) ** price.decimals / price.usd).to_integral_value(
                    rounding=ROUND_FLOOR
                )
            found.add(int(units))
    return found


def _amount_candidates(
    specs: Sequence[PolicySpec],
    asset: str,
    agent: AgentContext,
    usage: Usage,
    config: WalletConfig,
    prices: Mapping[str, AssetPrice],
    fee: int = 0,
) -> set[int]:
    """Every boundary amount a rule could switch the outcome at (the rolling windows also
    hold the request's network ``fee`` when ``asset`` is native)."""
    found: set[int] = set()
    used = usage.spent_of(asset)
    if asset != NATIVE:
        fee = 0
    price = prices.get(asset)
    for spec in specs:
        r = spec.rules
        if not isinstance(r, SpendingLimitRules):
            continue
        if r.asset != "*" and normalize_asset_key(r.asset) != asset:
            continue
        if r.asset != "*":
            found.update(_unit_bounds(r, used.day, used.week, fee))
        if price is not None and price.usd > 0:
            found.update(_usd_bounds(r, price))
    thresholds = config.tier_thresholds(agent.chain) if asset == NATIVE else None
    if thresholds is not None:
        bounds = (thresholds.instant_max, thresholds.notify_max, thresholds.delay_max)
        found.update(bounds)
        found.update(
            b - used.day - fee for b in daily_bounds(bounds, (None, None, None)) if b is not None
        )
    return {c for c in found if c >= 0}


def explain(
    request: object,
    agent: AgentContext,
    policies: Iterable[PolicySpec],
    usage: Usage,
    now: int,
    *,
    config: WalletConfig | None = None,
    prices: Mapping[str, AssetPrice] | None = None,
    decimals: Mapping[str, int] | None = None,
    effects: Sequence[Effect] | None = None,
    calldata: bytes = b"",
    network_fee: int = 0,
) -> Explanation:
    """Evaluate a hypothetical request and say what would change the outcome. Pure.

    The decision is exactly :func:`~waiaas.policy.evaluate`'s for the same arguments (the
    wallet's dry runs pass what ``send`` would: prices, decimals, and the effects decoded
    from the transaction it would sign). The amount hints probe the request as written with
    other amounts (no transaction is built for them).

    Args:
        request, agent, policies, usage, now: as for :func:`~waiaas.policy.evaluate`.
        config, prices, decimals, effects, calldata, network_fee: as there too.

    Returns:
        An :class:`Explanation`: the decision, the reasons that fired, and verified hints
        such as ``"<= 0.5 SOL would be INSTANT"`` or ``"allowed after 09:00
        Europe/Berlin (2026-03-30T09:00:00+02:00)"``.

    Raises:
        InvalidInputError: a malformed argument.

    Example::

        print(explain(Transfer(to=addr, amount=2 * 10**9), agent, specs, usage, now).to_text())
    """
    req = coerce_request(request)
    specs, cfg = _check_inputs(agent, policies, usage, now, config)
    price_map = _prices(prices)

    # An amount probe pays the same network fee as the request (budgets count it).
    fee = network_fee

    def decide(r: RequestModel, at: int, **judged_on: Any) -> Decision:
        return evaluate(
            r, agent, specs, usage, at, config=cfg, prices=price_map, decimals=decimals, **judged_on
        )

    def run(r: RequestModel, at: int = now) -> Decision:
        """``r`` as written (an amount probe) at ``at``."""
        return decide(r, at, network_fee=fee)

    def judge(at: int) -> Decision:
        """The request itself at ``at``: judged on its effects when they are given."""
        return decide(req, at, effects=effects, calldata=calldata, network_fee=network_fee)

    decision = judge(now)
    fired = tuple(r for r in decision.reasons if r.effect != "info")
    hints: list[str] = []
    rules = applicable(specs, agent)

    amounts = _amount_hints(req, decision, rules, agent, usage, cfg, price_map, run, hints, fee)

    next_at = _time_hint(decision, rules, now, judge, hints)

    for reason in decision.deny_reasons:
        hints.extend(_list_hint(reason))
    if decision.auto_stop is not None:
        hints.append("this request would suspend the agent (AUTO_STOP)")
    return Explanation(
        decision=decision,
        fired=fired,
        hints=tuple(dict.fromkeys(hints)),
        amount_for_tier=amounts,
        next_allowed_at=next_at,
    )


def _time_hint(
    decision: Decision,
    rules: Sequence[PolicySpec],
    now: int,
    judge: Callable[[int], Decision],
    hints: list[str],
) -> int | None:
    """When a TIME_RESTRICTION denied the request: the next time every one allows it (with a
    hint saying when, in the denying rule's zone, and what the request would then get)."""
    time_rules = [p.rules for p in rules if isinstance(p.rules, TimeRestrictionRules)]
    denied_by_time = [r for r in decision.deny_reasons if r.type == "TIME_RESTRICTION"]
    if not denied_by_time:
        return None
    next_at = next_allowed_time(time_rules, now)
    if next_at is None:
        hints.append("no time in the next 8 days satisfies every TIME_RESTRICTION")
        return None
    zone_rule = next(
        p.rules
        for p in rules
        if isinstance(p.rules, TimeRestrictionRules) and p.id == denied_by_time[0].rule_id
    )
    local = datetime.fromtimestamp(next_at, tz=zone_rule.zone)
    later = judge(next_at)
    verdict = (
        f"the request would then be allowed as {later.tier.value}"
        if later.allowed
        else "other rules would still deny it"
    )
    hints.append(
        f"allowed after {local:%H:%M} {zone_rule.timezone} ({local.isoformat()}) by "
        f"the time restriction ({describe_window(zone_rule)}); {verdict}"
    )
    return next_at


def _amount_hints(
    req: RequestModel,
    decision: Decision,
    rules: Sequence[PolicySpec],
    agent: AgentContext,
    usage: Usage,
    cfg: WalletConfig,
    prices: Mapping[str, AssetPrice],
    run: Callable[[RequestModel], Decision],
    hints: list[str],
    fee: int = 0,
) -> dict[str, int]:
    if not isinstance(req, Transfer | TokenTransfer | ContractCall):
        return {}
    items, bad = _normalize_items(req, agent.chain)
    spend = _spend(items)
    if bad or len(spend) != 1:
        return {}
    ((asset, amount),) = spend.items()
    if amount == 0:
        return {}
    decimals = req.decimals if isinstance(req, TokenTransfer) else None
    symbol = None
    for spec in rules:
        if isinstance(spec.rules, AllowedTokensRules) and asset in spec.rules.by_address:
            entry = spec.rules.by_address[asset]
            decimals = decimals if decimals is not None else entry.decimals
            symbol = entry.symbol
    candidates = sorted(
        c for c in _amount_candidates(rules, asset, agent, usage, cfg, prices, fee) if c < amount
    )
    amount_denied = _amount_denials(decision)
    best: dict[Tier, int] = {}
    for candidate in candidates:
        alt = run(_with_amount(req, candidate))
        if _amount_denials(alt):
            continue
        if not amount_denied and alt.tier.rank >= decision.tier.rank:
            continue
        best[alt.tier] = max(best.get(alt.tier, 0), candidate)
    others = any(r.type not in _AMOUNT_TYPES for r in decision.deny_reasons)
    for tier in sorted(best, key=lambda t: t.rank):
        shown = describe_amount(
            agent.chain,
            asset,
            best[tier],
            decimals=decimals,
            symbol=symbol,
            native=agent.native_units(),
        )
        what = f"allowed as {tier.value}" if amount_denied and not others else tier.value
        if others:
            what += " (other rules still deny)"
        hints.append(f"<= {shown} would be {what}")
    return {t.value: a for t, a in best.items()}


_AMOUNT_TYPES = frozenset({"SPENDING_LIMIT", "OWNER", "APPROVE_AMOUNT_LIMIT", "APPROVED_SPENDERS"})


def _amount_denials(decision: Decision) -> bool:
    return any(r.type in _AMOUNT_TYPES for r in decision.deny_reasons)


def _list_hint(reason: Reason) -> list[str]:
    """Hints for list-type denials: which policy to edit."""
    target = (
        reason.figures.get("address")
        or reason.figures.get("token")
        or reason.figures.get("spender")
        or reason.figures.get("network")
    )
    if reason.rule_id is None:
        if reason.type == "OWNER":
            return ["set an owner address on the agent so the owner can approve"]
        return []
    if reason.type in ("ALLOWED_TOKENS", "CONTRACT_WHITELIST", "APPROVED_SPENDERS"):
        key = {"CONTRACT_WHITELIST": "contract"}.get(reason.type)
        value = reason.figures.get(key) if key else target
        return [f"add {value} to policy {reason.rule_id} ({reason.type}) to allow it"]
    if reason.type == "METHOD_WHITELIST" and "selector" in reason.figures:
        return [
            f"add {reason.figures['selector']} for {reason.figures['contract']} to policy "
            f"{reason.rule_id} (METHOD_WHITELIST) to allow it"
        ]
    if reason.type in ("ALLOWED_ADDRESSES", "ALLOWED_NETWORKS") and target:
        if "blacklisted" in reason.message:
            return [f"{target} is blacklisted by policy {reason.rule_id}"]
        return [f"add {target} to policy {reason.rule_id} ({reason.type}) to allow it"]
    if reason.type == "RATE_LIMIT":
        return [
            f"wait until older requests leave the {reason.figures.get('window_seconds')} s "
            f"window of policy {reason.rule_id}"
        ]
    return []


# --------------------------------------------------------------------------- agents' view

_AGENT_DENY = {
    "SPENDING_LIMIT": "over a spending limit",
    "ALLOWED_ADDRESSES": "this recipient is not allowed",
    "ALLOWED_TOKENS": "this token is not allowed",
    "CONTRACT_WHITELIST": "this contract is not allowed",
    "METHOD_WHITELIST": "this method is not allowed",
    "APPROVED_SPENDERS": "this spender is not allowed",
    "APPROVE_AMOUNT_LIMIT": "over the approval limit",
    "ALLOWED_NETWORKS": "this network is not allowed",
    "TIME_RESTRICTION": "outside the allowed time",
    "RATE_LIMIT": "too many requests",
    "AUTO_STOP": "the agent is being suspended",
    "OWNER": "needs the owner's approval, but the agent has no owner",
    "APPROVAL": "needs the owner's approval, but the agent has no owner",
    "CODE": "this contract call is refused",
    "AGENT": "the agent is not active",
    "REQUEST": "the request is not valid",
}

#: What an agent should do next, by the type of the rule that decided the denial.
AGENT_NEXT_STEP: Mapping[str, str] = {
    "SPENDING_LIMIT": (
        "send a smaller amount (get_limits shows what is left), wait for the budget window "
        "to free up, or ask the owner to raise the limit"
    ),
    "RATE_LIMIT": "wait before sending again; too many requests in the window",
    "TIME_RESTRICTION": "try again when the allowed time window opens",
    "ALLOWED_ADDRESSES": "send only to an allowed recipient, or ask the owner to allow this one",
    "ALLOWED_TOKENS": "use an allowed token, or ask the owner to allow this one",
    "ALLOWED_NETWORKS": "this network is not allowed for the agent; ask the owner",
    "CONTRACT_WHITELIST": "call only allowed contracts, or ask the owner to allow this one",
    "METHOD_WHITELIST": "call only allowed methods, or ask the owner to allow this one",
    "APPROVED_SPENDERS": "approve only allowed spenders, or ask the owner",
    "APPROVE_AMOUNT_LIMIT": "approve a smaller amount",
    "AUTO_STOP": "stop and report to the owner: the agent's safety stop fired",
    "OWNER": "send a smaller amount that needs no approval, or ask the owner to set an owner",
    "APPROVAL": "send a smaller amount that needs no approval, or ask the owner to set an owner",
    "CODE": "call only contracts the owner has allowed, or ask the owner",
    "AGENT": "stop: the agent is not active; report to the owner",
    "REQUEST": "fix the request and try again",
}
_DEFAULT_NEXT = "ask the owner why it was denied"

_OWNER_TYPES = frozenset({"OWNER", "APPROVAL"})
# the figure shown for a list rule: the party of *this* request that the rule refused
_PARTY_KEYS = ("selector", "spender", "token", "contract", "address", "network")


def _rank(kind: str) -> int:
    """Hard caps (limits, lists, time, rate) first, then AUTO_STOP, then owner reasons."""
    if kind in _OWNER_TYPES:
        return 2
    return 1 if kind == "AUTO_STOP" else 0


def _as_reason(item: Reason | Mapping[str, Any]) -> Reason | None:
    if isinstance(item, Reason):
        return item if item.effect == "deny" else None
    if not isinstance(item, Mapping) or item.get("effect", "deny") != "deny":
        return None
    figures = item.get("figures")
    rule_id = item.get("rule_id")
    priority = item.get("priority")
    return Reason(
        rule_id=str(rule_id) if rule_id is not None else None,
        priority=priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
        type=str(item.get("type") or "POLICY"),
        effect="deny",
        message=str(item.get("message") or ""),
        figures=(
            {str(k): str(v) for k, v in figures.items()} if isinstance(figures, Mapping) else {}
        ),
    )


def deciding_reasons(
    reasons: Iterable[Reason | Mapping[str, Any]],
) -> tuple[Reason, ...]:
    """The deny reasons in the order an agent should read them: hard caps first (in the
    evaluator's order), then AUTO_STOP, then "needs the owner" reasons; exact duplicates
    dropped. Accepts :class:`Reason` objects or their JSON dicts (audit rows)."""
    seen: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    out: list[Reason] = []
    for item in reasons:
        reason = _as_reason(item)
        if reason is None:
            continue
        key = (reason.type, reason.message, tuple(sorted(reason.figures.items())))
        if key in seen:
            continue
        seen.add(key)
        out.append(reason)
    return tuple(sorted(out, key=lambda r: _rank(r.type)))


@dataclass(frozen=True, slots=True)
class AgentDenial:
    """A denial as the agent may see it (see :func:`agent_denial`).

    Attributes:
        rule: the type of the rule that decided it (``SPENDING_LIMIT``, ``OWNER``...).
        message: one sentence: what refused the request and, when there is one, its figure.
        figure: the one figure that decides it for this request (``{"available": ...}`` for
            a budget, ``{"allowed_from": ...}`` for a time window, the refused party of this
            request for a list rule), or ``None``.
        next: what to do next.
        reasons: every refusing rule as ``{"type", "message"}``, redacted, the deciding one
            first, hard caps before owner reasons, none twice.
    """

    rule: str
    message: str
    figure: Mapping[str, str] | None
    next: str
    reasons: tuple[Mapping[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (``figure`` left out when there is none)."""
        out: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.figure:
            out["figure"] = dict(self.figure)
        out["next"] = self.next
        out["reasons"] = [dict(r) for r in self.reasons]
        return out


def _figure_and_phrase(
    reason: Reason,
    decision: Decision | None,
    *,
    chain: str | None,
    next_allowed_at: int | None,
) -> tuple[dict[str, str] | None, str | None]:
    figures = reason.figures
    kind = reason.type
    if kind == "SPENDING_LIMIT" and decision is not None:
        if any(k.endswith("_usd") for k in figures):
            usd = [b.remaining for b in decision.budget_usd]
            if not usd:
                return None, None
            left_usd = min(usd)
            return {
                "available_usd": str(left_usd)
            }, f"at most {format_usd(left_usd)} can be sent now"
        asset = figures.get("asset")
        # what may still be sent: the rolling windows also hold this request's network fee
        left = [
            max(
                0,
                b.remaining
                - (decision.fees if b.window != "transaction" and b.asset == NATIVE else 0),
            )
            for b in decision.budget
            if asset is None or b.asset == asset
        ]
        if not left:
            return None, None
        amount = min(left)
        key = asset or NATIVE
        shown = describe_amount(chain, key, amount) if chain else f"{amount} base units of {key}"
        return {"asset": key, "available": str(amount)}, f"at most {shown} can be sent now"
    if kind == "TIME_RESTRICTION" and next_allowed_at is not None:
        when = datetime.fromtimestamp(next_allowed_at, tz=UTC).isoformat()
        return {"allowed_from": str(next_allowed_at)}, f"possible from {when}"
    if kind in ("APPROVE_AMOUNT_LIMIT", "APPROVED_SPENDERS") and "limit" in figures:
        return {"limit": figures["limit"]}, f"at most {figures['limit']} base units"
    if kind == "AGENT" and "status" in figures:
        return {"status": figures["status"]}, None
    if kind == "REQUEST" and "field" in figures:
        return {"field": figures["field"]}, f"check {figures['field']}"
    for key in _PARTY_KEYS:
        if figures.get(key):
            return {key: figures[key]}, None
    return None, None


def agent_denial(
    decision: Decision | None,
    reasons: Iterable[Reason | Mapping[str, Any]] = (),
    *,
    chain: str | None = None,
    next_allowed_at: int | None = None,
) -> AgentDenial:
    """What an agent may learn of a denial: the outcome and the one figure that decides it
    for this request, never list contents, other thresholds, other rules' figures or policy
    ids. The same rules as :func:`redact_for_agent` (agents' dry runs).

    Args:
        decision: the policy decision (its budget figures give "what is still available");
            ``None`` when only the reasons are known.
        reasons: the deny reasons (``Reason`` objects or their JSON dicts); when empty, the
            decision's own deny reasons.
        chain: the agent's chain family, to show native amounts in whole units.
        next_allowed_at: for a time restriction, the first Unix time it allows the request.

    Returns:
        An :class:`AgentDenial`; a denial with no known reason reads "refused by policy".

    Example::

        agent_denial(decision, chain="solana").message   # "over a spending limit: at most ..."
    """
    given = list(reasons)
    if not given and decision is not None:
        given = list(decision.deny_reasons)
    ordered = deciding_reasons(given)
    if not ordered:
        return AgentDenial(
            rule="POLICY",
            message="refused by policy",
            figure=None,
            next=_DEFAULT_NEXT,
            reasons=({"type": "POLICY", "message": "refused by policy"},),
        )
    first = ordered[0]
    figure, phrase = _figure_and_phrase(
        first, decision, chain=chain, next_allowed_at=next_allowed_at
    )
    short = _AGENT_DENY.get(first.type, "refused by policy")
    listed: list[Mapping[str, str]] = []
    for r in ordered:
        entry = {"type": r.type, "message": _AGENT_DENY.get(r.type, "refused by policy")}
        if entry not in listed:
            listed.append(entry)
    step = AGENT_NEXT_STEP.get(first.type, _DEFAULT_NEXT)
    if any(r.type == "AUTO_STOP" for r in ordered):
        step = AGENT_NEXT_STEP["AUTO_STOP"]
    return AgentDenial(
        rule=first.type,
        message=f"{short}: {phrase}" if phrase else short,
        figure=figure,
        next=step,
        reasons=tuple(listed),
    )


def redact_decision(decision: Decision) -> Decision:
    """A decision as an agent may see it: allowed or not, the tier, and for a denial only the
    deciding reason, redacted (no rule id, no figures); no budgets, no other reasons."""
    reasons: tuple[Reason, ...] = ()
    if not decision.allowed:
        ordered = deciding_reasons(decision.reasons)
        kind = ordered[0].type if ordered else "POLICY"
        reasons = (
            Reason(type=kind, effect="deny", message=_AGENT_DENY.get(kind, "refused by policy")),
        )
    return decision.model_copy(
        update={"reasons": reasons, "budget": (), "budget_usd": (), "auto_stop": None}
    )


def redact_for_agent(explanation: Explanation) -> Explanation:
    """What an agent may see of an explanation: the outcome and the one figure that decides
    it for this request, never list contents, thresholds or other rules.

    Kept: allowed or not, the tier, and for a denial one reason naming the kind of rule that
    decides it (hard caps before "needs the owner") with at most one figure: the amount still
    available now (a budget), or when the request becomes possible (a time window).
    Dropped: every other reason, the budget tables, the per-tier amounts, the hints (they
    name thresholds and policy ids), rule ids and figures. The owner and operator get the
    full :func:`explain` output. Denials raised to an agent follow the same rules
    (:func:`agent_denial`).
    """
    d = explanation.decision
    hints: tuple[str, ...] = ()
    if not d.allowed:
        ordered = deciding_reasons(d.reasons)
        if ordered:
            first = ordered[0]
            if first.type == "SPENDING_LIMIT":
                figure, _ = _figure_and_phrase(first, d, chain=None, next_allowed_at=None)
                if figure and "available" in figure:
                    hints = (f"at most {figure['available']} base units can be sent now",)
                elif figure and "available_usd" in figure:
                    hints = (f"at most {figure['available_usd']} USD can be sent now",)
            elif first.type == "TIME_RESTRICTION" and explanation.next_allowed_at is not None:
                hints = (f"possible from {explanation.next_allowed_at} (Unix time)",)
    safe = redact_decision(d)
    return Explanation(
        decision=safe,
        fired=safe.reasons,
        hints=hints,
        amount_for_tier={},
        next_allowed_at=explanation.next_allowed_at if not d.allowed else None,
    )
