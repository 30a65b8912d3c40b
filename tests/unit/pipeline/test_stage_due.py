"""Due work: ``process_due`` runs a DELAY once its cooldown is over, never before, and
only once."""

from __future__ import annotations

from fakechain import FEE
from pipeline_helpers import AMOUNT, DELAY, FUNDS, START, Stage

from waiaas.types import Transfer


def test_a_delay_runs_after_its_cooldown_and_not_before(stage: Stage) -> None:
    queued = stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["DELAY"]))
    assert (queued.status, queued.tier, queued.execute_after) == ("QUEUED", "DELAY", START + DELAY)
    stage.clock.advance(DELAY - 1)
    report = stage.wallet.process_due()
    assert report.delays == 0 and not report.problems
    assert stage.wallet.get_transaction(queued.id).status == "QUEUED"
    assert not stage.chain.submissions
    stage.clock.advance(1)
    assert stage.wallet.process_due().delays == 1
    tx = stage.wallet.get_transaction(queued.id)
    assert tx.status == "CONFIRMED" and tx.tx_hash is not None
    assert stage.events(queued.id) == [
        "TX_REQUESTED",
        "TX_QUEUED",
        "TX_EXECUTING",
        "TX_SIGNED",
        "TX_SUBMITTED",
        "TX_CONFIRMED",
    ]
    assert stage.wallet.process_due().delays == 0
    assert stage.chain.submissions == {tx.tx_hash: 1}
    assert stage.chain.get_balance(stage.dest) == AMOUNT["DELAY"]
    assert stage.chain.get_balance(stage.address) == FUNDS - AMOUNT["DELAY"] - FEE


def test_a_cancelled_delay_never_runs(stage: Stage) -> None:
    queued = stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["DELAY"]))
    stage.wallet.cancel(queued.id)
    assert stage.wallet.get_transaction(queued.id).status == "CANCELLED"
    assert stage.session_total() == 0
    stage.clock.advance(DELAY)
    assert stage.wallet.process_due().delays == 0
    assert stage.wallet.get_transaction(queued.id).status == "CANCELLED"
    assert not stage.chain.submissions
    assert stage.chain.get_balance(stage.address) == FUNDS
