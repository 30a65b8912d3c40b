"""One agent's failure never stalls the others: a missing key fails that agent's
transaction (budget released), an adapter that raises parks it, and process_due() reports
both with their codes while every other agent's work goes on. Counts are of work won."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import TIER_AMOUNTS, FlakyAdapter, new_agent, recipient
from waiaas import DueReport, Transfer
from waiaas.chains.base import UnsignedTx
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.solana import SolanaAdapter
from waiaas.testing import TEST_PASSWORD, FrozenClock, fast_config, local_wallet
from waiaas.types import Request
from waiaas.wallet import Wallet


def test_missing_key_at_send_fails_the_row_and_releases_the_budget(wallet: Wallet) -> None:
    """An agent whose key file is gone: send() returns FAILED KEY_MISSING (not a PENDING
    row that holds its budget), and the session's reserved total is given back."""
    agent = new_agent(wallet, "solana")
    issued = wallet.issue_session(agent.id, constraints={"max_total_amount": 10**9})
    wallet._keystore.remove_key(agent.id)  # as if restored from an older backup
    result = wallet.send(issued.token, Transfer(to=recipient("solana"), amount=10**6))
    assert result.status == "FAILED"
    assert result.error is not None and "KEY_MISSING" in result.error
    assert wallet.list_transactions(status="PENDING") == []
    assert wallet.get_session(issued.session_id).usage.totals.get("native", 0) == 0


def test_one_missing_key_does_not_stall_other_agents(wallet: Wallet) -> None:
    """Two agents with due DELAYs; one agent's key is missing. The pass executes the other
    agent's DELAY, fails the first with KEY_MISSING, and reports it."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    broken = new_agent(wallet, "solana", name="broken")
    healthy = new_agent(wallet, "evm", name="healthy")
    t1 = wallet.issue_session(broken.id).token
    t2 = wallet.issue_session(healthy.id).token
    tx1 = wallet.send(t1, Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["DELAY"]))
    tx2 = wallet.send(t2, Transfer(to=recipient("evm"), amount=TIER_AMOUNTS["evm"]["DELAY"]))
    wallet._keystore.remove_key(broken.id)
    clock.advance(wallet.config.delay_seconds)
    report = wallet.process_due()
    assert isinstance(report, DueReport)
    assert report.delays == 1
    assert wallet.get_transaction(tx2.id).status == "CONFIRMED"
    assert wallet.get_transaction(tx1.id).status == "FAILED"
    [problem] = report.problems
    assert (problem.tx_id, problem.code, problem.parked) == (tx1.id, "KEY_MISSING", False)
    assert report["delays"] == 1  # mapping access still works


@dataclass
class ExplodingAdapter(FlakyAdapter):
    """A real adapter whose build() raises a plain RuntimeError while ``explode`` is set."""

    explode: bool = False

    def build(self, request: Request, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        if self.explode:
            raise RuntimeError("adapter bug (injected)")
        return super().build(request, sender, nonce=nonce)


def test_an_adapter_that_raises_parks_only_its_transaction(tmp_path: Path) -> None:
    """A third-party adapter raising RuntimeError for one chain: that transaction stays
    QUEUED and is reported (INTERNAL_ERROR, parked); the other chain's DELAY executes; once
    the adapter works again a later pass executes the parked one."""
    clock = FrozenClock()
    exploding = ExplodingAdapter(SolanaAdapter.local())
    with local_wallet(tmp_path, chains=[exploding, EvmAdapter.local()], clock=clock) as wallet:
        a = new_agent(wallet, "solana")
        b = new_agent(wallet, "evm")
        ta = wallet.issue_session(a.id).token
        tb = wallet.issue_session(b.id).token
        txa = wallet.send(
            ta, Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["DELAY"])
        )
        txb = wallet.send(tb, Transfer(to=recipient("evm"), amount=TIER_AMOUNTS["evm"]["DELAY"]))
        clock.advance(wallet.config.delay_seconds)
        exploding.explode = True
        report = wallet.process_due()
        assert report.delays == 1
        assert wallet.get_transaction(txb.id).status == "CONFIRMED"
        assert wallet.get_transaction(txa.id).status == "QUEUED"
        [problem] = report.problems
        assert (problem.tx_id, problem.code, problem.parked) == (txa.id, "INTERNAL_ERROR", True)
        assert "RuntimeError" in problem.message
        exploding.explode = False
        again = wallet.process_due()
        assert again.delays == 1 and again.problems == ()
        assert wallet.get_transaction(txa.id).status == "CONFIRMED"


def test_two_concurrent_passes_count_each_delay_once(tmp_path: Path) -> None:
    """Two wallets on one file run process_due() at the same moment over eight due DELAYs:
    together they report exactly eight (each DELAY counted by the pass that executed it)."""
    clock = FrozenClock()
    chains = [SolanaAdapter.local(), EvmAdapter.local()]
    config = fast_config()
    first = Wallet.open(
        tmp_path / "w.db", password=TEST_PASSWORD, chains=chains, config=config, clock=clock
    )
    second = Wallet.open(
        tmp_path / "w.db", password=TEST_PASSWORD, chains=chains, config=config, clock=clock
    )
    try:
        ids = []
        for i in range(4):
            for chain in ("solana", "evm"):
                agent = new_agent(first, chain, name=f"{chain}-{i}")
                token = first.issue_session(agent.id).token
                amount = TIER_AMOUNTS[chain]["DELAY"]
                ids.append(first.send(token, Transfer(to=recipient(chain), amount=amount)).id)
        clock.advance(first.config.delay_seconds)
        reports: list[DueReport] = []
        barrier = threading.Barrier(2)

        def run(w: Wallet) -> None:
            barrier.wait()
            reports.append(w.process_due())

        threads = [threading.Thread(target=run, args=(w,)) for w in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r.delays for r in reports) == 8
        assert all(first.get_transaction(i).status == "CONFIRMED" for i in ids)
    finally:
        first.close()
        second.close()
