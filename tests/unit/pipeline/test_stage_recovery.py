"""Recovery: a transaction left SUBMITTED by a crash (a stage hook that raises, as the
process would die there) is confirmed once by the next pass or the next open, and its bytes
are never sent twice (the fake chain counts submissions per hash)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakechain import FEE, FakeChain
from pipeline_helpers import AMOUNT, FUNDS, Stage, Stopped, open_wallet, presign_mode

from waiaas.types import Transfer


def _crash_at(stage: Stage, point: str) -> str:
    presign_mode(stage.wallet, False)
    stage.stopper.at = {point}
    with pytest.raises(Stopped) as stopped:
        stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"]))
    stage.stopper.at = set()
    tx_id = str(stopped.value)
    assert stage.wallet.get_transaction(tx_id).status == "SUBMITTED"
    return tx_id


def _landed_once(stage: Stage, chain: FakeChain, tx_hash: str | None) -> None:
    assert tx_hash is not None
    assert chain.submissions == {tx_hash: 1}
    assert chain.landed() == [tx_hash]
    assert chain.get_balance(stage.dest) == AMOUNT["INSTANT"]
    assert chain.get_balance(stage.address) == FUNDS - AMOUNT["INSTANT"] - FEE


def test_sent_then_crashed_is_confirmed_by_the_next_pass(stage: Stage) -> None:
    tx_id = _crash_at(stage, "submitted")  # sent, then the process died before confirming
    tx_hash = stage.wallet.get_transaction(tx_id).tx_hash
    assert tx_hash is not None and stage.chain.submissions == {tx_hash: 1}
    assert stage.wallet.process_due().polled == 1
    assert stage.wallet.get_transaction(tx_id).status == "CONFIRMED"
    assert stage.events(tx_id)[-2:] == ["TX_SUBMITTED", "TX_CONFIRMED"]
    assert stage.wallet.process_due().polled == 0
    _landed_once(stage, stage.chain, tx_hash)


def test_recorded_but_never_sent_is_sent_once_on_reopen(stage: Stage, wallet_dir: Path) -> None:
    """SUBMITTED committed, the process died before sending: a pass does not send bytes it
    cannot tell were sent; the next open re-sends the stored bytes (the same hash), once."""
    tx_id = _crash_at(stage, "recorded")
    tx_hash = stage.wallet.get_transaction(tx_id).tx_hash
    assert not stage.chain.submissions
    stage.wallet.process_due()
    assert stage.wallet.get_transaction(tx_id).status == "SUBMITTED"
    assert not stage.chain.submissions
    stage.wallet.close()
    for _ in range(2):  # opened twice: recovered by the first open only
        with open_wallet(wallet_dir, stage.chain, stage.clock) as reopened:
            reopened.process_due()
            assert reopened.get_transaction(tx_id).status == "CONFIRMED"
            assert reopened.get_transaction(tx_id).tx_hash == tx_hash
    _landed_once(stage, stage.chain, tx_hash)


def test_a_crash_before_signing_is_signed_once_by_the_next_pass(stage: Stage) -> None:
    """Claimed, then the process died before anything was signed or recorded: its claim is
    released and the next pass signs and sends it, once."""
    presign_mode(stage.wallet, False)
    stage.stopper.at = {"claimed"}
    with pytest.raises(Stopped) as stopped:
        stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"]))
    stage.stopper.at = set()
    tx_id = str(stopped.value)
    assert stage.wallet.get_transaction(tx_id).status == "EXECUTING"
    stage.wallet.process_due()
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED"
    _landed_once(stage, stage.chain, tx.tx_hash)
