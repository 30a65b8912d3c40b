"""Designing policies: limits and tiers, an allow-list, a time window, a rate limit, AUTO_STOP.

Run it with ``python examples/policy_design.py``. It uses a frozen clock
(``waiaas.testing.FrozenClock``) so the story can jump from Monday morning to Monday night
to Tuesday without waiting, and an in-process Solana runtime (LiteSVM) in a temporary
directory.

What it shows, in order:

1. a policy set: a SPENDING_LIMIT with tier thresholds and a rolling 24 h budget, an
   ALLOWED_ADDRESSES allow-list, a TIME_RESTRICTION (office hours in Europe/Berlin),
   a RATE_LIMIT and an AUTO_STOP on repeated denials;
2. ``wallet.dry_run`` to preview decisions without writing anything, with hints that say
   what would change the outcome (every hint is checked against the real evaluator);
3. real transfers spending the rolling daily budget, a denial with its reasons, and the
   budget freeing up again 24 h later;
4. the time window, the rate limit, and AUTO_STOP suspending the agent;
5. ``wallet.policies.replay``: the recorded history replayed against a stricter candidate
   policy set, to see which past decisions it would have changed before adopting it.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from zoneinfo import ZoneInfo

from waiaas import AuthError, InvalidInputError, PolicyDeniedError, Transfer
from waiaas.chains.solana import SolanaAdapter
from waiaas.policy import PolicySpec
from waiaas.testing import FrozenClock, fund, local_wallet

SOL = 10**9  # 1 SOL = 10**9 lamports; every amount is an int of base units
BERLIN = ZoneInfo("Europe/Berlin")


def sol(lamports: int | None) -> str:
    """Lamports as a SOL figure for people, exactly (no floats near money)."""
    if lamports is None:
        return "-"
    whole, frac = divmod(lamports, SOL)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") + " SOL"


def berlin(timestamp: int) -> str:
    """A Unix time as Berlin wall-clock time."""
    return datetime.fromtimestamp(timestamp, tz=BERLIN).strftime("%a %H:%M")


def main() -> None:
    # Monday 2 March 2026, 10:00 in Berlin. Nothing moves unless we call clock.advance().
    clock = FrozenClock(int(datetime(2026, 3, 2, 10, 0, tzinfo=BERLIN).timestamp()))
    chain = SolanaAdapter.local()

    with (
        tempfile.TemporaryDirectory(prefix="waiaas-policies-") as tmp,
        local_wallet(tmp, chains=[chain], clock=clock) as wallet,
    ):
        # The owner's address (a Solana wallet) lets APPROVAL-tier requests wait for them.
        owner_address = chain.generate_secret()[1]
        agent = wallet.create_agent("payroll-bot", "solana", owner_address=owner_address)
        fund(wallet, agent.id, 50 * SOL)
        supplier = chain.generate_secret()[1]
        exchange = chain.generate_secret()[1]
        stranger = chain.generate_secret()[1]

        # ------------------------------------------------------------------ 1. the policies
        print("== 1. policies ==")
        # Per transaction at most 5 SOL; at most 6 SOL in any rolling 24 h.
        # Tiers: <= 1 SOL INSTANT, <= 2 SOL NOTIFY, <= 3 SOL DELAY (10 min), above: APPROVAL.
        wallet.add_policy(
            "SPENDING_LIMIT",
            {
                "per_transaction": str(5 * SOL),
                "daily_total": str(6 * SOL),
                "instant_max": str(1 * SOL),
                "notify_max": str(2 * SOL),
                "delay_max": str(3 * SOL),
                # velocity: the day's total is tiered too, so small pieces add up (unset,
                # these would be notify_max, delay_max, delay_max)
                "daily_instant_max": str(2 * SOL),
                "daily_notify_max": str(6 * SOL),
                "daily_delay_max": str(6 * SOL),
                "delay_seconds": 600,
            },
            agent_id=agent.id,
        )
        # Only these two recipients.
        wallet.add_policy(
            "ALLOWED_ADDRESSES", {"addresses": [supplier, exchange]}, agent_id=agent.id
        )
        # Office hours: Monday to Friday, 09:00-18:00 Berlin time (DST handled by zoneinfo).
        wallet.add_policy(
            "TIME_RESTRICTION",
            {
                "allowed_hours": {"start": 9, "end": 18},
                "allowed_days": [1, 2, 3, 4, 5],
                "timezone": "Europe/Berlin",
            },
            agent_id=agent.id,
        )
        # At most 3 requests (allowed or denied) per rolling minute.
        wallet.add_policy(
            "RATE_LIMIT", {"max_requests": 3, "window_seconds": 60}, agent_id=agent.id
        )
        # Suspend the agent at its 3rd denial within 10 minutes: something is wrong with it.
        wallet.add_policy(
            "AUTO_STOP",
            {"trigger": "max_denials", "threshold": 3, "window_seconds": 600},
            agent_id=agent.id,
        )
        for info in wallet.policies.list(agent_id=agent.id):
            print(f"  {info.type:<18} {dict(info.rules)}")
        # A typo fails closed: unknown keys are refused, with every problem listed.
        try:
            wallet.add_policy("RATE_LIMIT", {"max_request": 3, "window_seconds": 60})
        except InvalidInputError as exc:
            print(f"  a misspelt rule is refused: {type(exc).__name__}: {exc}")

        # The agent's session: valid three days so the story can span them.
        token = wallet.issue_session(agent.id, ttl=3 * 86_400).token

        # ------------------------------------------------------------------ 2. dry runs
        print(f"\n== 2. dry runs ({berlin(clock.now())}), nothing is written ==")
        for label, request in [
            ("0.5 SOL to the supplier", Transfer(to=supplier, amount=SOL // 2)),
            ("2.5 SOL to the supplier", Transfer(to=supplier, amount=5 * SOL // 2)),
            ("4 SOL to the exchange", Transfer(to=exchange, amount=4 * SOL)),
            ("1 SOL to a stranger", Transfer(to=stranger, amount=SOL)),
        ]:
            explanation = wallet.dry_run(request, agent_id=agent.id)
            print(f"- {label}: {explanation.decision.summary()}")
            for hint in explanation.hints:
                print(f"    what would change it: {hint}")
            if explanation.amount_for_tier:
                shown = {tier: sol(amount) for tier, amount in explanation.amount_for_tier.items()}
                print(f"    largest amount per tier: {shown}")

        # ------------------------------------------------------------------ 3. budget
        print("\n== 3. spending the rolling 24 h budget (6 SOL) ==")
        for hours, amount in [(0, 1 * SOL), (1, 2 * SOL), (1, 2 * SOL)]:
            clock.advance(hours * 3600)
            result = wallet.send(token, Transfer(to=supplier, amount=amount))
            print(f"  {berlin(clock.now())}  {sol(amount):>8}  -> {result.status} ({result.tier})")
        clock.advance(3600)
        try:
            wallet.send(token, Transfer(to=supplier, amount=3 * SOL // 2))
        except PolicyDeniedError as exc:
            print(f"  {berlin(clock.now())}  1.5 SOL  -> DENIED")
            print(f"      the agent is told: {exc.message}")
            # the owner's view of the same denial: every reason and the budgets checked
            decision = wallet.get_transaction(exc.tx_id).decision if exc.tx_id else None
            assert decision is not None
            for reason in decision.deny_reasons:
                print(f"      [{reason.type}] {reason.message}")
            for figure in decision.budget:
                if figure.window == "24h":
                    print(
                        f"      24h budget: spent {sol(figure.spent)}, "
                        f"remaining {sol(figure.remaining)} of {sol(figure.limit)}"
                    )
        hints = wallet.dry_run(Transfer(to=supplier, amount=3 * SOL // 2), agent_id=agent.id).hints
        print(f"  dry run says: {'; '.join(hints)}")

        # Tuesday 10:30: the Monday 10:00 transfer (1 SOL) has left the rolling window.
        clock.set(int(datetime(2026, 3, 3, 10, 30, tzinfo=BERLIN).timestamp()))
        result = wallet.send(token, Transfer(to=supplier, amount=3 * SOL // 2))
        print(
            f"  {berlin(clock.now())}  1.5 SOL  -> {result.status} ({result.tier}): "
            "Monday's first transfer left the window"
        )

        # ------------------------------------------------------------------ 4. time, rate, stop
        print("\n== 4. the time window, the rate limit, AUTO_STOP ==")
        clock.set(int(datetime(2026, 3, 3, 20, 15, tzinfo=BERLIN).timestamp()))
        late = Transfer(to=exchange, amount=SOL // 10)
        explanation = wallet.dry_run(late, agent_id=agent.id)
        print(f"  {berlin(clock.now())} dry run: {explanation.decision.summary()}")
        for hint in explanation.hints:
            print(f"    hint: {hint}")
        assert explanation.next_allowed_at is not None
        clock.set(explanation.next_allowed_at)
        result = wallet.send(token, late)
        print(f"  {berlin(clock.now())} the same request -> {result.status} ({result.tier})")

        # Two more quick requests fill the rate limit (3 per minute); the 4th is refused.
        for i in range(3):
            try:
                result = wallet.send(token, Transfer(to=exchange, amount=SOL // 100 + i))
                print(f"  {berlin(clock.now())} quick request {i + 2} -> {result.status}")
            except PolicyDeniedError as exc:
                print(f"  {berlin(clock.now())} quick request {i + 2} -> DENIED: {exc.rule}")
        clock.advance(61)
        result = wallet.send(token, Transfer(to=exchange, amount=SOL // 100 + 7))
        print(f"  61 s later -> {result.status}")

        # Now the agent misbehaves: it keeps trying to pay a stranger. The rate-limit denial
        # above was less than 10 minutes ago, so it counts; two more denials suspend it.
        for attempt in (1, 2):
            clock.advance(20)
            try:
                wallet.send(token, Transfer(to=stranger, amount=SOL // 10))
            except PolicyDeniedError as exc:
                owner_view = wallet.get_transaction(exc.tx_id).decision if exc.tx_id else None
                fired = owner_view is not None and owner_view.auto_stop is not None
                stop = " + AUTO_STOP fired" if fired else ""
                print(f"  payment to a stranger #{attempt} -> DENIED{stop}")
        status = wallet.get_agent(agent.id)
        print(f"  agent is now {status.status}: {status.suspension_reason}")
        try:
            wallet.send(token, Transfer(to=supplier, amount=1))
        except AuthError as exc:  # the suspension revoked the agent's sessions too
            print(f"  even a valid request is refused: {type(exc).__name__}")
        wallet.resume_agent(agent.id)
        print(f"  the owner resumes it -> {wallet.get_agent(agent.id).status}")
        token = wallet.issue_session(agent.id, ttl=86_400).token  # revoked ones stay revoked
        print("  and issues a new session: the old token stays revoked")

        # ------------------------------------------------------------------ 5. replay
        print("\n== 5. replaying the history against a stricter candidate policy set ==")
        # The candidate: the same policies, but a 4 SOL daily budget and 0.5 SOL INSTANT.
        candidate: list[PolicySpec] = []
        for info in wallet.policies.list(agent_id=agent.id):
            spec = info.to_spec()
            if info.type == "SPENDING_LIMIT":
                stricter = {
                    **dict(info.rules),
                    "daily_total": str(4 * SOL),
                    "instant_max": str(SOL // 2),
                }
                spec = PolicySpec(
                    id="candidate-limit", agent_id=agent.id, type="SPENDING_LIMIT", rules=stricter
                )
            candidate.append(spec)
        diffs = wallet.policies.replay(agent.id, candidate)
        history = wallet.list_transactions(agent_id=agent.id, limit=1000)
        print(f"  {len(history)} recorded requests, {len(diffs)} decisions would change:")
        amounts = {tx.id: tx.amount for tx in history}
        for diff in diffs:
            print(
                f"  {berlin(diff.created_at)}  {sol(amounts.get(diff.tx_id)):>8}  "
                f"{', '.join(diff.changes)}"
            )
            if not diff.candidate.allowed:
                print(f"      because: {diff.candidate.summary().removeprefix('denied: ')}")
    print("\npolicy design finished")


if __name__ == "__main__":
    main()
