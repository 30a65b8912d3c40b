"""Both dry runs decide what ``send`` then does.

The owner's ``Wallet.dry_run(agent_id=...)`` and the agent's ``AgentHandle.dry_run`` go
through the same gate as ``send``: the request is built into the transaction that would be
signed and judged on its effects, with the same policies, usage windows (budgets, velocity
tiers, rate limits), price-oracle valuations and the no-owner rule. A randomized history on
LiteSVM and eth-tester checks, request after request, that the dry runs' outcome and tier are
the ones ``send`` reaches next (for a refusal: the same kinds of rule), while the clock moves,
DELAY payments execute, the owner approves, prices change or become unknown.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    CHAINS,
    FUNDING,
    TIER_AMOUNTS,
    Owner,
    all_audit,
    new_agent,
    owner_for,
    recipient,
)
from waiaas import (
    ContractCall,
    Explanation,
    InvalidInputError,
    PolicyDeniedError,
    Request,
    Tier,
    Transfer,
    TxStatus,
    Wallet,
)
from waiaas.testing import FrozenClock, fast_config, local_wallet

START = 1_700_000_000
PRICE = {"solana": Decimal("150"), "evm": Decimal("3000")}  # USD per whole SOL / ETH
DECIMALS = {"solana": 9, "evm": 18}


class MovingOracle:
    """A price oracle the test moves between requests; ``None`` is an unknown price."""

    def __init__(self) -> None:
        self.native: Decimal | None = None

    def price_usd(self, chain: str, asset: str) -> Decimal | None:
        return self.native if asset == "native" else None


def _usd_of(chain: str, base_units: int) -> Decimal:
    return PRICE[chain] * Decimal(base_units) / Decimal(10 ** DECIMALS[chain])


def _policies(wallet: Wallet, rng: random.Random, chain: str, agent_id: str) -> dict[str, Any]:
    """A random policy set for the agent; returns what the test must know about it."""
    amounts = TIER_AMOUNTS[chain]
    known: dict[str, Any] = {"allowed": [recipient(chain) for _ in range(3)], "rate": False}
    if rng.random() < 0.8:
        limit: dict[str, Any] = {
            "instant_max": str(amounts["INSTANT"] * 2),
            "notify_max": str(amounts["NOTIFY"]),
            "delay_max": str(amounts["DELAY"]),
        }
        if rng.random() < 0.5:
            limit["daily_total"] = str(amounts["DELAY"] * 3)
        if rng.random() < 0.5:  # explicit velocity tiers (else their defaults apply)
            limit["daily_instant_max"] = str(amounts["NOTIFY"] * 2)
            limit["daily_notify_max"] = str(amounts["DELAY"] * 2)
            limit["daily_delay_max"] = str(amounts["DELAY"] * 4)
        wallet.add_policy("SPENDING_LIMIT", limit, agent_id=agent_id)
    if rng.random() < 0.7:  # USD tiers: valued with the oracle's price at that moment
        usd = {
            "instant_max_usd": str(_usd_of(chain, amounts["INSTANT"])),
            "notify_max_usd": str(_usd_of(chain, amounts["NOTIFY"])),
            "delay_max_usd": str(_usd_of(chain, amounts["DELAY"])),
            "daily_total_usd": str(_usd_of(chain, amounts["DELAY"] * 4)),
            "unpriced_tier": rng.choice(["NOTIFY", "DELAY", "APPROVAL"]),
        }
        wallet.add_policy("SPENDING_LIMIT", {"asset": "*", **usd}, agent_id=agent_id)
    if rng.random() < 0.5:
        wallet.add_policy("ALLOWED_ADDRESSES", {"addresses": known["allowed"]}, agent_id=agent_id)
    if rng.random() < 0.4:
        wallet.add_policy(
            "RATE_LIMIT", {"max_requests": rng.randint(6, 16), "window_seconds": 3600},
            agent_id=agent_id,
        )  # fmt: skip
        known["rate"] = True
    if rng.random() < 0.3:
        wallet.add_policy(
            "TIME_RESTRICTION",
            {"allowed_hours": {"start": 6, "end": 22}, "timezone": "UTC"},
            agent_id=agent_id,
        )
    return known


def _request(rng: random.Random, chain: str, known: dict[str, Any]) -> Request:
    amounts = TIER_AMOUNTS[chain]
    if rng.random() < 0.15:  # unknown code: denied by default (CODE), judged on the plan
        return ContractCall(to=recipient(chain), data=b"\x01\x02\x03\x04")
    tier = rng.choices(["INSTANT", "NOTIFY", "DELAY", "APPROVAL"], weights=[5, 3, 2, 1])[0]
    base = amounts[tier]
    amount = max(1, int(base * rng.uniform(0.3, 1.6)))
    to = rng.choice(known["allowed"]) if rng.random() < 0.8 else recipient(chain)
    return Transfer(to=to, amount=amount)


def _deny_types(decision: Any) -> set[str]:
    return {r.type for r in decision.deny_reasons}


def _recorded_deny_types(wallet: Wallet, tx_id: str) -> set[str]:
    """The kinds of rule that refused ``tx_id``, from the owner's audit trail."""
    rows = all_audit(wallet, tx_id=tx_id, event_types=["POLICY_VIOLATION"])
    assert len(rows) == 1
    return {r["type"] for r in rows[0].details["reasons"]}


def _check_agent_view(agent_view: Explanation, owner_view: Explanation, rate: bool) -> None:
    """The agent's redacted preview says what the owner's says (outcome, tier, a kind of
    rule that refused it, nothing that names a policy), except that the agent's own preview
    is a request RATE_LIMIT counts: the owner's later preview may be refused by the rate
    limit where the agent's was not."""
    owner_d, agent_d = owner_view.decision, agent_view.decision
    if rate and "RATE_LIMIT" in _deny_types(owner_d) and agent_d.allowed:
        return
    assert agent_d.allowed == owner_d.allowed
    assert agent_d.tier == owner_d.tier
    assert agent_d.budget == () and agent_view.amount_for_tier == {}
    if not owner_d.allowed:
        assert agent_d.deny_reasons
        assert _deny_types(agent_d) <= _deny_types(owner_d)
        assert all(r.rule_id is None for r in agent_d.reasons)


def _approve_some(wallet: Wallet, rng: random.Random, owner: Owner | None, agent_id: str) -> None:
    if owner is None:
        return
    for tx in wallet.list_transactions(agent_id=agent_id, status=TxStatus.QUEUED):
        live = tx.approval_expires_at is not None and tx.approval_expires_at > wallet.clock.now()
        if tx.tier == Tier.APPROVAL and live and rng.random() < 0.5:
            wallet.approve(tx.id, owner.sign(wallet.approval_message(tx.id)))


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
@pytest.mark.parametrize("chain", CHAINS)
def test_dry_runs_decide_what_send_does(tmp_path: Path, chain: str, seed: int) -> None:
    rng = random.Random(f"{chain}-{seed}")
    clock = FrozenClock(START)
    oracle = MovingOracle()
    no_owner = rng.choice(["deny", "delay"])
    wallet = local_wallet(
        tmp_path, clock=clock, price_oracle=oracle, config=fast_config(no_owner_approval=no_owner)
    )
    with wallet:
        owner = owner_for(chain) if rng.random() < 0.5 else None
        agent = new_agent(wallet, chain, owner=owner, funds=FUNDING[chain] * 3)
        known = _policies(wallet, rng, chain, agent.id)
        handle = wallet.agent(wallet.issue_session(agent.id, ttl=86_400).token)
        seen: dict[str, int] = {}
        for _step in range(30):
            step = rng.choice([0, 60, 900, 3600, 4 * 3600, 86_400])
            clock.advance(step)
            if step == 86_400:  # a day later: a new session
                handle = wallet.agent(wallet.issue_session(agent.id, ttl=86_400).token)
            if rng.random() < 0.5:
                wallet.process_due()
            _approve_some(wallet, rng, owner, agent.id)
            roll = rng.random()
            oracle.native = None if roll < 0.15 else PRICE[chain] * Decimal(rng.choice([1, 2]))
            req = _request(rng, chain, known)

            agent_view = handle.dry_run(req)
            owner_view = wallet.dry_run(req, agent_id=agent.id)
            _check_agent_view(agent_view, owner_view, known["rate"])
            expected = owner_view.decision
            try:
                tx = handle.send(req)
            except PolicyDeniedError as exc:
                assert not expected.allowed, (req, expected)
                assert exc.tx_id is not None
                assert _recorded_deny_types(wallet, exc.tx_id) == _deny_types(expected)
                outcome = "DENIED"
            else:
                assert expected.allowed, (req, expected.summary())
                assert tx.tier == expected.tier, (req, expected.summary())
                outcome = expected.tier.value
            seen[outcome] = seen.get(outcome, 0) + 1
        assert len(seen) >= 3, seen  # the history went down several paths


def test_usd_tier_is_the_same_in_dry_run_and_send(tmp_path: Path) -> None:
    """At $100/SOL a 0.05 SOL ($5) transfer under instant_max_usd=10 is INSTANT in both dry
    runs and in send, for an agent with no owner (the oracle prices the dry runs too)."""
    oracle = MovingOracle()
    oracle.native = Decimal("100")
    with local_wallet(tmp_path, clock=FrozenClock(START), price_oracle=oracle) as wallet:
        agent = new_agent(wallet, "solana")
        wallet.add_policy(
            "SPENDING_LIMIT",
            {"instant_max_usd": "10", "notify_max_usd": "20", "delay_max_usd": "40"},
            agent_id=agent.id,
        )
        handle = wallet.agent(wallet.issue_session(agent.id).token)
        req = Transfer(to=recipient("solana"), amount=10**9 // 20)
        assert wallet.dry_run(req, agent_id=agent.id).decision.tier == Tier.INSTANT
        assert handle.dry_run(req).decision.tier == Tier.INSTANT
        sent = handle.send(req)
        assert (sent.tier, sent.status) == (Tier.INSTANT, TxStatus.CONFIRMED)
        # Without a price the same request is unpriced: APPROVAL, which an owner-less agent
        # cannot get; both dry runs and send refuse it for the owner rule.
        oracle.native = None
        owner_view = wallet.dry_run(req, agent_id=agent.id).decision
        assert not owner_view.allowed and "OWNER" in _deny_types(owner_view)
        assert handle.dry_run(req).decision.deny_reasons[0].type == "OWNER"
        with pytest.raises(PolicyDeniedError) as denied:
            handle.send(req)
        assert denied.value.tx_id is not None
        assert _recorded_deny_types(wallet, denied.value.tx_id) == _deny_types(owner_view)


@pytest.mark.parametrize("chain", CHAINS)
def test_dry_runs_judge_the_built_transaction(tmp_path: Path, chain: str) -> None:
    """Unknown code is judged as send judges it (default-deny on the decoded plan); a request
    the chain refuses to take (a malformed address) is refused by the dry runs as by send,
    and the agent's attempt counts as a refusal."""
    with local_wallet(tmp_path, clock=FrozenClock(START)) as wallet:
        agent = new_agent(wallet, chain)
        handle = wallet.agent(wallet.issue_session(agent.id).token)
        call = ContractCall(to=recipient(chain), data=b"\x01\x02\x03\x04")
        owner_view = wallet.dry_run(call, agent_id=agent.id).decision
        assert _deny_types(owner_view) == {"CODE"}
        assert handle.dry_run(call).decision.deny_reasons[0].type == "CODE"
        with pytest.raises(PolicyDeniedError) as denied:
            handle.send(call)
        assert denied.value.tx_id is not None
        assert _recorded_deny_types(wallet, denied.value.tx_id) == {"CODE"}

        bad = Transfer(to="not-an-address", amount=1)
        refused_before = len(all_audit(wallet, event_types=["REQUEST_REFUSED"]))
        with pytest.raises(InvalidInputError):
            wallet.dry_run(bad, agent_id=agent.id)
        assert len(all_audit(wallet, event_types=["REQUEST_REFUSED"])) == refused_before
        with pytest.raises(InvalidInputError):
            handle.dry_run(bad)
        with pytest.raises(InvalidInputError):
            handle.send(bad)
        assert len(all_audit(wallet, event_types=["REQUEST_REFUSED"])) == refused_before + 2
