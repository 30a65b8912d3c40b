"""Execution: build, sign, record, submit, confirm, on the in-memory chain that refuses,
times out, fails transiently or goes stale on demand. Each test runs on both execution
paths of an INSTANT request: claimed after admission, or signed at admission."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakechain import FEE, FakeChain, PlannedFakeChain
from pipeline_helpers import (
    AMOUNT,
    FUNDS,
    START,
    Stage,
    Stopped,
    Stopper,
    audit,
    open_wallet,
    presign_mode,
    sent_events,
    setup_stage,
)

from waiaas.pipeline.states import signing_record
from waiaas.testing import FrozenClock
from waiaas.types import Transfer

PATHS = [pytest.param(False, id="claim"), pytest.param(True, id="presigned")]


@pytest.fixture
def stage(wallet_dir: Path, request: pytest.FixtureRequest) -> Iterator[Stage]:
    """The conftest's stage, on a chain that shows its plans for the presigned path (bytes
    are signed before admission's lock only for a plan that admission judges)."""
    spec = getattr(request.node, "callspec", None)
    presign = bool(spec.params.get("presign")) if spec is not None else False
    chain = PlannedFakeChain() if presign else FakeChain()
    clock, stopper = FrozenClock(START), Stopper()
    with open_wallet(wallet_dir, chain, clock, stopper) as wallet:
        yield setup_stage(wallet, chain, clock, stopper)


def _send(stage: Stage, amount: int = AMOUNT["INSTANT"]) -> str:
    return stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=amount)).id


def _landed_once(stage: Stage, tx_hash: str | None, amount: int) -> None:
    """``tx_hash`` was sent once and executed; exactly ``amount`` (and one fee) moved."""
    assert tx_hash is not None
    assert stage.chain.submissions[tx_hash] == 1
    assert stage.chain.landed() == [tx_hash]
    assert stage.chain.get_balance(stage.dest) == amount
    assert stage.chain.get_balance(stage.address) == FUNDS - amount - FEE


def _nothing_moved(stage: Stage) -> None:
    assert stage.chain.landed() == []
    assert stage.chain.get_balance(stage.dest) == 0
    assert stage.chain.get_balance(stage.address) == FUNDS


@pytest.mark.parametrize("presign", PATHS)
def test_signed_submitted_confirmed(stage: Stage, presign: bool) -> None:
    presign = presign_mode(stage.wallet, presign)
    tx_id = _send(stage)
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED" and tx.fee == FEE and tx.executed_at == START
    assert stage.events(tx_id) == [*sent_events(presign), "TX_CONFIRMED"]
    _landed_once(stage, tx.tx_hash, AMOUNT["INSTANT"])
    entries = audit(stage.wallet, tx_id=tx_id)
    (signed,) = [d for e in entries if (d := signing_record(e.event_type, e.details))]
    assert signed["tx_hash"] == tx.tx_hash and signed["nonce"] == 0
    # a chain that shows its plans shows the fee too: the session counts it
    fee = FEE if isinstance(stage.chain, PlannedFakeChain) else 0
    assert stage.session_total() == AMOUNT["INSTANT"] + fee


@pytest.mark.parametrize("presign", PATHS)
def test_a_refusal_fails_it_and_releases_its_budget(stage: Stage, presign: bool) -> None:
    presign = presign_mode(stage.wallet, presign)
    stage.chain.refuse = 1
    tx_id = _send(stage)
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "FAILED"
    assert tx.error is not None and tx.error.startswith("CHAIN_PERMANENT")
    assert stage.events(tx_id) == [*sent_events(presign), "TX_FAILED"]
    assert tx.tx_hash is not None and stage.chain.submissions[tx.tx_hash] == 1
    _nothing_moved(stage)
    assert stage.session_total() == 0 and stage.budget_spent() == 0
    # the nonce was not used: the next transaction takes it and lands
    again = stage.wallet.get_transaction(_send(stage, AMOUNT["INSTANT"] + 1))
    assert again.status == "CONFIRMED"
    assert again.tx_hash is not None and stage.chain.landed() == [again.tx_hash]
    assert stage.chain.get_balance(stage.dest) == AMOUNT["INSTANT"] + 1


@pytest.mark.parametrize("presign", PATHS)
def test_a_transient_error_is_retried_with_the_same_bytes(stage: Stage, presign: bool) -> None:
    presign = presign_mode(stage.wallet, presign)
    stage.chain.transient = 2
    tx_id = _send(stage)
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED"
    assert stage.events(tx_id) == [*sent_events(presign), "TX_RETRY", "TX_RETRY", "TX_CONFIRMED"]
    assert tx.tx_hash is not None and stage.chain.submissions == {tx.tx_hash: 3}
    assert stage.chain.landed() == [tx.tx_hash]
    assert stage.chain.get_balance(stage.dest) == AMOUNT["INSTANT"]
    assert stage.chain.get_balance(stage.address) == FUNDS - AMOUNT["INSTANT"] - FEE


@pytest.mark.parametrize("presign", PATHS)
def test_stale_bytes_are_rebuilt_once(stage: Stage, presign: bool) -> None:
    presign = presign_mode(stage.wallet, presign)
    stage.chain.stale = 1
    tx_id = _send(stage)
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED"
    assert stage.events(tx_id) == [
        *sent_events(presign),
        "TX_RETRY",  # rebuilt and signed again: new bytes, the same nonce
        "TX_SUBMITTED",
        "TX_CONFIRMED",
    ]
    assert tx.tx_hash is not None and len(stage.chain.submissions) == 2
    assert set(stage.chain.submissions.values()) == {1}
    _landed_once(stage, tx.tx_hash, AMOUNT["INSTANT"])


@pytest.mark.parametrize("presign", PATHS)
def test_stale_again_after_the_last_rebuild_fails_it(stage: Stage, presign: bool) -> None:
    presign = presign_mode(stage.wallet, presign)
    stage.chain.stale = 4
    tx_id = _send(stage)
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "FAILED"
    assert tx.error is not None and tx.error.startswith("CHAIN_STALE")
    assert stage.events(tx_id) == [
        *sent_events(presign),
        *["TX_RETRY", "TX_SUBMITTED"] * 3,
        "TX_FAILED",
    ]
    assert len(stage.chain.submissions) == 4  # the original and three rebuilds, once each
    _nothing_moved(stage)
    assert stage.session_total() == 0


@pytest.mark.parametrize("presign", PATHS)
def test_a_confirmation_that_times_out_is_polled_later(stage: Stage, presign: bool) -> None:
    presign = presign_mode(stage.wallet, presign)
    stage.chain.hold = True
    tx_id = _send(stage)
    assert stage.wallet.get_transaction(tx_id).status == "SUBMITTED"
    assert stage.wallet.process_due().polled == 1
    assert stage.wallet.get_transaction(tx_id).status == "SUBMITTED"  # still pending
    stage.chain.mine()
    assert stage.wallet.process_due().polled == 1
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED"
    assert stage.events(tx_id) == [*sent_events(presign), "TX_CONFIRMED"]
    _landed_once(stage, tx.tx_hash, AMOUNT["INSTANT"])
    assert stage.wallet.process_due().polled == 0


def test_a_pending_row_is_claimed_signed_submitted_and_confirmed(stage: Stage) -> None:
    """Stopped right after admission, the PENDING row is claimed by the next pass."""
    presign_mode(stage.wallet, False)
    stage.stopper.at = {"admitted"}
    with pytest.raises(Stopped) as stopped:
        _send(stage)
    tx_id = str(stopped.value)
    assert stage.wallet.get_transaction(tx_id).status == "PENDING"
    assert stage.events(tx_id) == ["TX_REQUESTED"]
    assert not stage.chain.submissions
    stage.stopper.at = set()
    assert stage.wallet.process_due().resumed == 1
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED"
    assert stage.events(tx_id) == [*sent_events(False), "TX_CONFIRMED"]
    assert [s for s, t in stage.stopper.seen if t == tx_id] == [
        "admitted",
        "claimed",
        "signed",
        "recorded",
        "submitted",
    ]
    _landed_once(stage, tx.tx_hash, AMOUNT["INSTANT"])
    assert stage.wallet.process_due().resumed == 0


def test_each_agent_nonce_is_used_once_in_order(stage: Stage) -> None:
    hashes = [
        stage.wallet.get_transaction(_send(stage, AMOUNT["INSTANT"] + i)).tx_hash for i in range(3)
    ]
    nonces = [
        d["nonce"]
        for e in audit(stage.wallet, agent_id=stage.agent_id)
        if (d := signing_record(e.event_type, e.details))
    ]
    assert nonces == [0, 1, 2]
    assert stage.chain.landed() == hashes
    assert stage.chain.pending_nonce(stage.address) == 3


def test_a_chain_that_shows_its_plans_counts_their_fee(wallet_dir: Path) -> None:
    """With plans, the fee the chain quotes at admission is judged and charged too."""
    chain, clock, stopper = PlannedFakeChain(), FrozenClock(START), Stopper()
    with open_wallet(wallet_dir, chain, clock, stopper) as wallet:
        stage = setup_stage(wallet, chain, clock, stopper)
        tx = wallet.get_transaction(_send(stage))
        assert tx.status == "CONFIRMED"
        assert stage.budget_spent() == AMOUNT["INSTANT"] + FEE
        assert stage.session_total() == AMOUNT["INSTANT"] + FEE
        _landed_once(stage, tx.tx_hash, AMOUNT["INSTANT"])


def test_bytes_of_another_plan_are_never_signed(wallet_dir: Path) -> None:
    """An adapter that builds something else at signing than what was judged at admission
    (here: one more base unit) is refused: PLAN_MISMATCH, nothing signed or sent."""
    chain, clock, stopper = PlannedFakeChain(), FrozenClock(START), Stopper()
    with open_wallet(wallet_dir, chain, clock, stopper) as wallet:
        stage = setup_stage(wallet, chain, clock, stopper)
        presign_mode(wallet, False)
        chain.skim = 1
        tx = wallet.get_transaction(_send(stage))
        assert tx.status == "FAILED" and tx.tx_hash is None
        assert tx.error is not None and tx.error.startswith("PLAN_MISMATCH")
        assert stage.events(tx.id) == ["TX_REQUESTED", "TX_EXECUTING", "TX_FAILED"]
        assert not chain.submissions
        _nothing_moved(stage)
        assert stage.session_total() == 0 and stage.budget_spent() == 0
