"""Approval: the owner's signature releases exactly the transaction it names; a rejection
cancels it; silence expires it. On the in-memory chain, time moved by the wallet's clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakechain import FEE, PlannedFakeChain
from pipeline_helpers import (
    AMOUNT,
    APPROVAL_WINDOW,
    FUNDS,
    START,
    Owner,
    Stage,
    Stopper,
    open_wallet,
    setup_stage,
)

from waiaas.errors import ApprovalError
from waiaas.testing import FrozenClock
from waiaas.types import Transfer

AFTER_APPROVAL = ["TX_EXECUTING", "TX_SIGNED", "TX_SUBMITTED", "TX_CONFIRMED"]


def _queue(stage: Stage, amount: int = AMOUNT["APPROVAL"]) -> str:
    queued = stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=amount))
    assert (queued.status, queued.tier) == ("QUEUED", "APPROVAL")
    assert queued.approval_expires_at == START + APPROVAL_WINDOW
    return queued.id


def _nothing_moved(stage: Stage) -> None:
    assert not stage.chain.submissions
    assert stage.chain.get_balance(stage.address) == FUNDS
    assert stage.chain.get_balance(stage.dest) == 0


def test_the_owners_signature_executes_it(stage: Stage) -> None:
    tx_id = _queue(stage)
    message = stage.wallet.approval_message(tx_id)
    # the amount in the adapter's own native coin (FAKE, 6 decimals)
    assert tx_id in message and "TRANSFER of 0.05 FAKE" in message
    stage.clock.advance(APPROVAL_WINDOW - 1)
    stage.wallet.approve(tx_id, stage.owner.sign(message))
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED" and tx.tx_hash is not None
    events = stage.events(tx_id)
    assert events[:2] == ["TX_REQUESTED", "TX_QUEUED"]
    assert events[-len(AFTER_APPROVAL) :] == AFTER_APPROVAL
    assert "TX_APPROVED" in events[2 : -len(AFTER_APPROVAL)]
    assert stage.chain.submissions == {tx.tx_hash: 1}
    assert stage.chain.get_balance(stage.dest) == AMOUNT["APPROVAL"]
    assert stage.chain.get_balance(stage.address) == FUNDS - AMOUNT["APPROVAL"] - FEE
    # decided once: the same signature again changes nothing, and nothing is sent again
    with pytest.raises(ApprovalError):
        stage.wallet.approve(tx_id, stage.owner.sign(message))
    stage.wallet.process_due()
    assert stage.chain.submissions == {tx.tx_hash: 1}


def test_signatures_that_are_not_the_owners_approval_are_refused(stage: Stage) -> None:
    tx_id = _queue(stage)
    other = _queue(stage, AMOUNT["APPROVAL"] + 1)
    attempts = [
        Owner().sign(stage.wallet.approval_message(tx_id)),  # someone else's key
        stage.owner.sign(stage.wallet.approval_message(tx_id, "reject")),  # the other action
        stage.owner.sign(stage.wallet.approval_message(other)),  # another transaction
        "00" * 64,
    ]
    for signature in attempts:
        with pytest.raises(ApprovalError):
            stage.wallet.approve(tx_id, signature)
    assert stage.wallet.get_transaction(tx_id).status == "QUEUED"
    # each refused attempt is audited; the transaction itself did not move
    assert stage.events(tx_id) == ["TX_REQUESTED", "TX_QUEUED"] + ["AUTH_FAILED"] * 4
    stage.wallet.process_due()
    _nothing_moved(stage)


def test_a_rejection_cancels_it_and_releases_its_budget(stage: Stage) -> None:
    tx_id = _queue(stage)
    assert stage.session_total() == AMOUNT["APPROVAL"]
    stage.wallet.reject(tx_id, stage.owner.sign(stage.wallet.approval_message(tx_id, "reject")))
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CANCELLED"
    assert stage.events(tx_id)[:2] == ["TX_REQUESTED", "TX_QUEUED"]
    assert stage.events(tx_id)[-1] == "TX_CANCELLED"
    assert stage.session_total() == 0 and stage.budget_spent() == 0
    with pytest.raises(ApprovalError):  # decided: an approval cannot follow
        stage.wallet.approve(tx_id, stage.owner.sign(stage.wallet.approval_message(tx_id)))
    stage.wallet.process_due()
    _nothing_moved(stage)


def test_silence_expires_it_when_the_window_closes_and_not_before(stage: Stage) -> None:
    tx_id = _queue(stage)
    message = stage.wallet.approval_message(tx_id)
    stage.clock.advance(APPROVAL_WINDOW - 1)
    assert stage.wallet.process_due().expired == 0
    assert stage.wallet.get_transaction(tx_id).status == "QUEUED"
    stage.clock.advance(1)
    assert stage.wallet.process_due().expired == 1
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "EXPIRED"
    assert tx.error is not None and tx.error.startswith("APPROVAL_EXPIRED")
    assert stage.events(tx_id)[-1] == "TX_EXPIRED"
    with pytest.raises(ApprovalError):  # a signature made in time is too late now
        stage.wallet.approve(tx_id, stage.owner.sign(message))
    assert stage.wallet.process_due().expired == 0
    assert stage.session_total() == 0
    _nothing_moved(stage)


def test_the_approved_plan_is_the_one_that_lands(wallet_dir: Path) -> None:
    """The digest the owner signs is the digest of the bytes that land."""
    chain, clock, stopper = PlannedFakeChain(), FrozenClock(START), Stopper()
    with open_wallet(wallet_dir, chain, clock, stopper) as wallet:
        stage = setup_stage(wallet, chain, clock, stopper)
        tx_id = _queue(stage)
        message = wallet.approval_message(tx_id)
        digest = message.split("Plan digest: ", 1)[1].split()[0]
        wallet.approve(tx_id, stage.owner.sign(message))
        tx = wallet.get_transaction(tx_id)
        assert tx.status == "CONFIRMED" and tx.tx_hash is not None
        assert chain.plan_digest_of(tx.tx_hash) == digest
