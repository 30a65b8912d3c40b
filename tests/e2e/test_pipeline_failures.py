"""Failure paths end to end: permanent chain failures, policy denials, transient failures
(bounded retries), stale transactions (rebuilt, up to three times) and AUTO_STOP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from solders.litesvm import LiteSVM

from tests.e2e.conftest import (
    ETH,
    SOL,
    TIER_AMOUNTS,
    FlakyAdapter,
    all_audit,
    events_of,
    new_agent,
    recipient,
)
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.solana import SolanaAdapter
from waiaas.errors import PolicyDeniedError, TokenRevokedError
from waiaas.policy import Decision
from waiaas.testing import FrozenClock, fund, local_chains, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet

# A little less than the funding, so that a transfer of it cannot pay its fee too.
SMALL = {"solana": SOL, "evm": ETH // 10}
TOO_MUCH = {"solana": 3 * SOL // 2, "evm": 3 * ETH // 20}
BUDGET = {"solana": 2 * SOL, "evm": 2 * ETH // 10}


# --------------------------------------------------------------------------- permanent


def test_insufficient_funds_fails_and_releases_budgets(wallet: Wallet, chain: str) -> None:
    """An unpayable transfer is FAILED (TX_FAILED audited, nothing moved), and both the
    policy budget and the session's total are released, so the same request fits later."""
    agent = new_agent(wallet, chain, funds=SMALL[chain])
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"daily_total": str(BUDGET[chain]), "instant_max": str(10 * BUDGET[chain])},
        agent_id=agent.id,
    )
    issued = wallet.issue_session(agent.id, constraints={"max_total_amount": BUDGET[chain]})
    dest = recipient(chain)
    failed = wallet.send(issued.token, Transfer(to=dest, amount=TOO_MUCH[chain]))
    assert failed.status == "FAILED"
    assert failed.error is not None and failed.error.startswith("INSUFFICIENT_FUNDS")
    assert events_of(wallet, failed.id)[-1] == "TX_FAILED"
    assert wallet.balance(agent.id) == SMALL[chain]
    assert wallet.get_session(issued.session_id).usage.total() == 0
    fund(wallet, agent.id, 10 * SMALL[chain])
    again = wallet.send(issued.token, Transfer(to=dest, amount=TOO_MUCH[chain]))
    assert again.status == "CONFIRMED"
    counted = wallet.get_transaction(again.id).spend or {}  # the amount and its network fee
    assert counted["native"] > TOO_MUCH[chain]
    assert wallet.get_session(issued.session_id).usage.total() == counted["native"]
    network = "localnet" if chain == "solana" else "local"
    assert wallet.network_adapter(chain, network).get_balance(dest) == TOO_MUCH[chain]


def test_policy_denial_is_recorded(wallet: Wallet, chain: str) -> None:
    """A denied request raises PolicyDeniedError (the agent's view: the deciding rule, its
    figure, tx_id) and is recorded as a FAILED transaction (POLICY_DENIED) whose full
    decision the owner reads, with a POLICY_VIOLATION row; nothing is charged to the
    session."""
    agent = new_agent(wallet, chain)
    policy = wallet.add_policy(
        "SPENDING_LIMIT",
        {"per_transaction": str(TIER_AMOUNTS[chain]["INSTANT"])},
        agent_id=agent.id,
    )
    issued = wallet.issue_session(agent.id)
    with pytest.raises(PolicyDeniedError) as info:
        wallet.send(
            issued.token, Transfer(to=recipient(chain), amount=TIER_AMOUNTS[chain]["INSTANT"] + 1)
        )
    error = info.value
    assert error.decision is None and error.rule == "SPENDING_LIMIT"
    assert error.figure == {"asset": "native", "available": str(TIER_AMOUNTS[chain]["INSTANT"])}
    assert error.reasons == [{"type": "SPENDING_LIMIT", "message": "over a spending limit"}]
    assert error.tx_id is not None and policy.id not in repr(error.to_dict())
    tx = wallet.get_transaction(error.tx_id)  # the owner's view
    assert (tx.status, tx.tier) == ("FAILED", None)
    assert tx.error is not None and tx.error.startswith("POLICY_DENIED")
    assert isinstance(tx.decision, Decision) and not tx.decision.allowed
    assert policy.id in {r.rule_id for r in tx.decision.deny_reasons}
    violation = next(
        e for e in all_audit(wallet, tx_id=error.tx_id) if e.event_type == "POLICY_VIOLATION"
    )
    assert violation.details["reasons"][0]["rule_id"] == policy.id
    assert violation.details["reasons"][0]["type"] == "SPENDING_LIMIT"
    assert violation.severity == "warning"
    assert wallet.get_session(issued.session_id).usage.total() == 0
    assert wallet.get_session(issued.session_id).usage.tx_count == 0


# --------------------------------------------------------------------------- transient / stale


@contextlib.contextmanager
def _flaky_wallet(
    tmp_path: Path, chain: str, **flaky: object
) -> Iterator[tuple[Wallet, FlakyAdapter]]:
    svm = LiteSVM()
    solana = SolanaAdapter.local(svm=svm)
    evm = EvmAdapter.local()
    inner = solana if chain == "solana" else evm
    wrapped = FlakyAdapter(inner=inner, **flaky)  # type: ignore[arg-type]
    if chain == "solana" and wrapped.on_stale is None and wrapped.stale:
        wrapped.on_stale = svm.expire_blockhash  # make the staleness real
    chains = [wrapped, evm] if chain == "solana" else [solana, wrapped]
    with local_wallet(tmp_path, clock=FrozenClock(), chains=chains) as wallet:  # type: ignore[arg-type]
        yield wallet, wrapped


def _instant(wallet: Wallet, chain: str) -> tuple[str, str, int]:
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    return token, dest, TIER_AMOUNTS[chain]["INSTANT"]


def test_transient_failures_are_retried(tmp_path: Path, chain: str) -> None:
    """Two transient submit failures are retried (two TX_RETRY rows) with the same signed
    bytes, then the transaction confirms."""
    with _flaky_wallet(tmp_path, chain, transient=2) as (wallet, flaky):
        token, dest, amount = _instant(wallet, chain)
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        assert result.status == "CONFIRMED"
        assert flaky.submitted == [result.tx_hash] * 3
        retries = [e for e in all_audit(wallet, tx_id=result.id) if e.event_type == "TX_RETRY"]
        assert [r.details["attempt"] for r in retries] == [1, 2]
        assert flaky.get_balance(dest) == amount


def test_transient_failures_are_bounded(tmp_path: Path, chain: str) -> None:
    """Transient failures are retried max_retries times (max_retries TX_RETRY rows,
    max_retries + 1 submits). The bytes may have reached the chain meanwhile, so the
    transaction is not FAILED (an agent told FAILED would send again and could pay twice):
    it stays in flight with its charge held, and once the node answers again recovery sends
    the same bytes and confirms it, exactly once."""
    with _flaky_wallet(tmp_path, chain, transient=100) as (wallet, flaky):
        token, dest, amount = _instant(wallet, chain)
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        retries = wallet.config.max_retries
        assert result.status == "SUBMITTED"  # recorded before each broadcast
        assert len(flaky.submitted) == retries + 1
        kinds = events_of(wallet, result.id)
        assert kinds.count("TX_RETRY") == retries
        assert "TX_FAILED" not in kinds
        assert flaky.get_balance(dest) == 0
        session = wallet.list_sessions(result.agent_id)[0]
        counted = (wallet.get_transaction(result.id).spend or {})["native"]  # amount + fee
        assert counted > amount and session.usage.total() == counted
        flaky.transient = 0
        wallet._pipeline.reconcile(result.id, resend=True)  # as the next Wallet.open does
        final = wallet.get_transaction(result.id)
        assert final.status == "CONFIRMED"
        assert set(flaky.submitted) == {final.tx_hash}  # the same bytes every time
        assert flaky.get_balance(dest) == amount


def test_stale_transaction_is_rebuilt_once(tmp_path: Path) -> None:
    """A stale transaction (its blockhash really expired before submission) is rebuilt and
    signed once: a new tx_hash, the rebuild audited with the old hash, then CONFIRMED."""
    with _flaky_wallet(tmp_path, "solana", stale=1) as (wallet, flaky):
        token, dest, amount = _instant(wallet, "solana")
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        assert result.status == "CONFIRMED"
        first, second = flaky.submitted
        assert first != second and result.tx_hash == second
        rebuilt = [
            e
            for e in all_audit(wallet, tx_id=result.id)
            if e.event_type == "TX_RETRY" and e.details.get("rebuilt")
        ]
        assert len(rebuilt) == 1
        assert rebuilt[0].details["old_hash"] == first
        assert rebuilt[0].details["tx_hash"] == second
        assert flaky.get_balance(dest) == amount


def test_real_expired_blockhash_is_rebuilt(tmp_path: Path) -> None:
    """Without any injected error: the blockhash expires between signing and submission (a
    stage hook drives LiteSVM once the bytes are recorded), the chain refuses the bytes as
    stale, and the pipeline rebuilds once and confirms."""
    from waiaas.pipeline.engine import PipelineHooks

    svm = LiteSVM()
    expired: list[str] = []

    def expire(stage: str, tx_id: str) -> None:
        if stage == "recorded" and not expired:  # once: the rebuilt bytes are recorded too
            expired.append(tx_id)
            svm.expire_blockhash()

    chains = [SolanaAdapter.local(svm=svm), EvmAdapter.local()]
    with local_wallet(
        tmp_path,
        clock=FrozenClock(),
        chains=chains,  # type: ignore[arg-type]
        hooks=PipelineHooks(on_stage=expire),
    ) as wallet:
        token, dest, amount = _instant(wallet, "solana")
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        assert result.status == "CONFIRMED"
        assert "TX_RETRY" in events_of(wallet, result.id)
        assert wallet.network_adapter("solana", "localnet").get_balance(dest) == amount


def test_stale_after_the_last_rebuild_fails(tmp_path: Path) -> None:
    """A transaction that is stale again after its three rebuilds is FAILED, nothing moved;
    stale three times, the third rebuild confirms."""
    with _flaky_wallet(tmp_path, "solana", stale=4) as (wallet, flaky):
        token, dest, amount = _instant(wallet, "solana")
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        assert result.status == "FAILED"
        assert len(set(flaky.submitted)) == 4  # the original and three rebuilds, once each
        kinds = events_of(wallet, result.id)
        assert kinds.count("TX_RETRY") == 3 and kinds[-1] == "TX_FAILED"
        assert flaky.get_balance(dest) == 0
    (tmp_path / "again").mkdir()
    with _flaky_wallet(tmp_path / "again", "solana", stale=3) as (wallet, flaky):
        token, dest, amount = _instant(wallet, "solana")
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        assert result.status == "CONFIRMED"
        retries = [
            e.details["rebuilt"]
            for e in all_audit(wallet, tx_id=result.id)
            if e.event_type == "TX_RETRY"
        ]
        assert retries == [1, 2, 3]
        assert result.tx_hash == flaky.submitted[-1]
        assert flaky.get_balance(dest) == amount


def test_evm_stale_is_rebuilt_once(tmp_path: Path) -> None:
    """On EVM a stale error (nonce taken) also leads to exactly one rebuild, then success."""
    with _flaky_wallet(tmp_path, "evm", stale=1) as (wallet, flaky):
        token, dest, amount = _instant(wallet, "evm")
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        assert result.status == "CONFIRMED"
        assert len(flaky.submitted) == 2
        assert [
            e.details.get("rebuilt")
            for e in all_audit(wallet, tx_id=result.id)
            if e.event_type == "TX_RETRY"
        ] == [True]
        assert flaky.get_balance(dest) == amount


# --------------------------------------------------------------------------- AUTO_STOP


def _all_instant(wallet: Wallet, agent_id: str, chain: str) -> None:
    wallet.add_policy("SPENDING_LIMIT", {"instant_max": str(10 * BUDGET[chain])}, agent_id=agent_id)


def _fail_once(wallet: Wallet, token: str, chain: str) -> None:
    result = wallet.send(token, Transfer(to=recipient(chain), amount=TOO_MUCH[chain]))
    assert result.status == "FAILED"


def test_consecutive_failures_suspend_the_agent(wallet: Wallet, chain: str) -> None:
    """AUTO_STOP consecutive_failures: the third failure in a row suspends the agent
    (AUTO_STOP_TRIGGERED critical + AGENT_SUSPENDED with the reason); it cannot transact."""
    agent = new_agent(wallet, chain, funds=SMALL[chain])
    wallet.add_policy(
        "AUTO_STOP", {"trigger": "consecutive_failures", "threshold": 3}, agent_id=agent.id
    )
    _all_instant(wallet, agent.id, chain)
    token = wallet.issue_session(agent.id).token
    for _ in range(2):
        _fail_once(wallet, token, chain)
        assert wallet.get_agent(agent.id).status == "ACTIVE"
    _fail_once(wallet, token, chain)
    suspended = wallet.get_agent(agent.id)
    assert suspended.status == "SUSPENDED"
    assert suspended.suspension_reason is not None
    assert suspended.suspension_reason.startswith("auto-stop")
    kinds = [
        e
        for e in all_audit(wallet, agent_id=agent.id)
        if e.event_type in ("AUTO_STOP_TRIGGERED", "AGENT_SUSPENDED")
    ]
    assert [e.event_type for e in kinds] == ["AUTO_STOP_TRIGGERED", "AGENT_SUSPENDED"]
    assert kinds[0].severity == "critical"
    assert "3 consecutive" in kinds[0].details["reason"]
    assert kinds[1].details["reason"] == suspended.suspension_reason
    with pytest.raises(TokenRevokedError):  # AUTO_STOP revoked the agent's sessions
        wallet.send(token, Transfer(to=recipient(chain), amount=1))


def test_a_success_resets_consecutive_failures(wallet: Wallet) -> None:
    """A confirmed transaction in between resets the consecutive-failure count."""
    agent = new_agent(wallet, "solana", funds=SMALL["solana"])
    wallet.add_policy(
        "AUTO_STOP", {"trigger": "consecutive_failures", "threshold": 2}, agent_id=agent.id
    )
    _all_instant(wallet, agent.id, "solana")
    token = wallet.issue_session(agent.id).token
    _fail_once(wallet, token, "solana")
    ok = wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    assert ok.status == "CONFIRMED"
    _fail_once(wallet, token, "solana")
    assert wallet.get_agent(agent.id).status == "ACTIVE"
    _fail_once(wallet, token, "solana")
    assert wallet.get_agent(agent.id).status == "SUSPENDED"


def test_failure_counter_survives_a_reopen(tmp_path: Path) -> None:
    """The counters come from the database: two failures, close, reopen, one more failure,
    and the agent is suspended."""
    clock = FrozenClock()
    chains = local_chains()
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        agent = new_agent(wallet, "solana", funds=SMALL["solana"])
        wallet.add_policy(
            "AUTO_STOP", {"trigger": "consecutive_failures", "threshold": 3}, agent_id=agent.id
        )
        _all_instant(wallet, agent.id, "solana")
        token = wallet.issue_session(agent.id).token
        _fail_once(wallet, token, "solana")
        _fail_once(wallet, token, "solana")
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        assert wallet.get_agent(agent.id).status == "ACTIVE"
        _fail_once(wallet, token, "solana")
        assert wallet.get_agent(agent.id).status == "SUSPENDED"


def test_max_denials_suspends_a_probing_agent(wallet: Wallet) -> None:
    """AUTO_STOP max_denials: an agent that keeps hitting a deny rule is suspended on the
    threshold-th denial in the window; earlier denials do not suspend it."""
    agent = new_agent(wallet, "evm")
    wallet.add_policy(
        "AUTO_STOP",
        {"trigger": "max_denials", "threshold": 3, "window_seconds": 600},
        agent_id=agent.id,
    )
    wallet.add_policy("SPENDING_LIMIT", {"per_transaction": str(ETH // 1000)}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token
    for attempt in range(3):
        assert wallet.get_agent(agent.id).status == "ACTIVE"
        with pytest.raises(PolicyDeniedError):
            wallet.send(token, Transfer(to=recipient("evm"), amount=ETH // 100 + attempt))
    agent_now = wallet.get_agent(agent.id)
    assert agent_now.status == "SUSPENDED"
    assert "AUTO_STOP_TRIGGERED" in [e.event_type for e in all_audit(wallet, agent_id=agent.id)]
    with pytest.raises(TokenRevokedError):  # AUTO_STOP revoked the agent's sessions
        wallet.send(token, Transfer(to=recipient("evm"), amount=1))


def test_denials_outside_the_window_do_not_count(wallet: Wallet) -> None:
    """Denials older than window_seconds do not count toward max_denials."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, "solana")
    wallet.add_policy(
        "AUTO_STOP",
        {"trigger": "max_denials", "threshold": 2, "window_seconds": 60},
        agent_id=agent.id,
    )
    wallet.add_policy("SPENDING_LIMIT", {"per_transaction": "1000"}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, Transfer(to=recipient("solana"), amount=SOL))
    clock.advance(61)
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, Transfer(to=recipient("solana"), amount=SOL))
    assert wallet.get_agent(agent.id).status == "ACTIVE"
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, Transfer(to=recipient("solana"), amount=SOL))
    assert wallet.get_agent(agent.id).status == "SUSPENDED"


def test_failure_on_chain_costs_only_the_fee(tmp_path: Path) -> None:
    """Without preflight, an unpayable transfer lands and fails on chain: FAILED with the
    fee recorded, the sender loses exactly the fee, the session charge is released, and it
    counts as a consecutive failure."""
    chains = [SolanaAdapter.local(preflight=False), EvmAdapter.local()]
    with local_wallet(tmp_path, clock=FrozenClock(), chains=chains) as wallet:  # type: ignore[arg-type]
        agent = new_agent(wallet, "solana", funds=SMALL["solana"])
        wallet.add_policy(
            "AUTO_STOP", {"trigger": "consecutive_failures", "threshold": 1}, agent_id=agent.id
        )
        _all_instant(wallet, agent.id, "solana")
        issued = wallet.issue_session(agent.id)
        result = wallet.send(
            issued.token, Transfer(to=recipient("solana"), amount=TOO_MUCH["solana"])
        )
        assert result.status == "FAILED"
        assert result.tx_hash is not None and result.fee is not None and result.fee > 0
        assert result.error is not None and result.error.startswith("INSUFFICIENT_FUNDS")
        assert events_of(wallet, result.id) == ["TX_REQUESTED", "TX_FAILED"]
        assert wallet.balance(agent.id) == SMALL["solana"] - result.fee
        assert wallet.get_session(issued.session_id).usage.total() == 0
        assert wallet.get_agent(agent.id).status == "SUSPENDED"


def test_max_transactions_suspends_a_runaway_agent(wallet: Wallet) -> None:
    """AUTO_STOP max_transactions: the request after `threshold` transactions in the window
    is denied and the agent suspended; after resume and once the window has passed it may
    transact again."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, "solana")
    wallet.add_policy(
        "AUTO_STOP",
        {"trigger": "max_transactions", "threshold": 3, "window_seconds": 600},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    dest = recipient("solana")
    for i in range(3):
        assert wallet.send(token, Transfer(to=dest, amount=10**7 + i)).status == "CONFIRMED"
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, Transfer(to=dest, amount=10**7 + 3))
    assert wallet.get_agent(agent.id).status == "SUSPENDED"
    with pytest.raises(TokenRevokedError):  # AUTO_STOP revoked the agent's sessions
        wallet.send(token, Transfer(to=dest, amount=10**7 + 4))
    clock.advance(601)
    wallet.resume_agent(agent.id)
    fresh = wallet.issue_session(agent.id).token
    assert wallet.send(fresh, Transfer(to=dest, amount=10**7 + 5)).status == "CONFIRMED"


def test_rate_limit_denies_then_frees_up(wallet: Wallet) -> None:
    """RATE_LIMIT counts every request in the rolling window: the one over the limit is
    denied (and recorded), and after the window requests pass again."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent = new_agent(wallet, "evm")
    wallet.add_policy("RATE_LIMIT", {"max_requests": 2, "window_seconds": 60}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token
    dest = recipient("evm")
    for i in range(2):
        assert wallet.send(token, Transfer(to=dest, amount=10**12 + i)).status == "CONFIRMED"
    with pytest.raises(PolicyDeniedError) as info:
        wallet.send(token, Transfer(to=dest, amount=10**12 + 2))
    assert info.value.reasons[0]["type"] == "RATE_LIMIT"
    clock.advance(60)
    assert wallet.send(token, Transfer(to=dest, amount=10**12 + 3)).status == "CONFIRMED"
