"""The confirmation of a presigned transaction moves the row admission wrote without reading
it: one compare-and-swap names every column as admission wrote it (and reads the audit
chain's head in the same statement). A row another writer changed in between is not as held:
the confirmation then reads it and does what it always did (nothing over a row that moved
on, a stale MAC kept on a row edited in the file)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakechain import FEE, PlannedFakeChain
from pipeline_helpers import AMOUNT, START, Stage, audit, open_wallet, presign_mode, setup_stage
from sqlalchemy import text

from waiaas import integrity
from waiaas.db.tables import TransactionRow
from waiaas.testing import FrozenClock
from waiaas.types import Transfer, TxStatus


class _OnSubmitted:
    """A stage hook that runs ``action(tx_id)`` once the bytes were sent, before the
    confirmation is recorded (another writer's turn)."""

    def __init__(self) -> None:
        self.action: Callable[[str], None] | None = None

    def __call__(self, stage: str, tx_id: str) -> None:
        if stage == "submitted" and self.action is not None:
            self.action(tx_id)


@pytest.fixture
def held(wallet_dir: Path) -> Iterator[tuple[Stage, _OnSubmitted]]:
    chain, clock, hook = PlannedFakeChain(), FrozenClock(START), _OnSubmitted()
    with open_wallet(wallet_dir, chain, clock, hook) as wallet:  # type: ignore[arg-type]
        stage = setup_stage(wallet, chain, clock, hook)  # type: ignore[arg-type]
        assert presign_mode(wallet, True)
        yield stage, hook


def _raw(stage: Stage, sql: str, **params: Any) -> None:
    """A write by another connection (as another process would make it)."""
    with stage.wallet._db.engine.begin() as conn:
        conn.execute(text(sql), params)


def _stored(stage: Stage, tx_id: str) -> dict[str, Any]:
    with stage.wallet._db.engine.connect() as conn:
        found = conn.execute(
            text("SELECT status, metadata, integrity FROM transactions WHERE id = :id"),
            {"id": tx_id},
        ).one()
    return {"status": found[0], "metadata": json.loads(found[1]), "integrity": found[2]}


def _send(stage: Stage) -> str:
    return stage.wallet.send(stage.token, Transfer(to=stage.dest, amount=AMOUNT["INSTANT"])).id


def test_the_held_row_is_confirmed_in_its_final_form(held: tuple[Stage, _OnSubmitted]) -> None:
    stage, _hook = held
    tx_id = _send(stage)
    tx = stage.wallet.get_transaction(tx_id)
    assert tx.status == "CONFIRMED" and tx.fee == FEE and tx.executed_at == START
    assert stage.events(tx_id) == ["TX_REQUESTED", "TX_CONFIRMED"]
    stored = _stored(stage, tx_id)
    assert stored["metadata"]["signed"] == {"nonce": 0}  # the bytes went; the nonce stays
    assert stored["metadata"]["fee"] == str(FEE)
    assert stored["integrity"].startswith(integrity.TX_MAC_FINAL)
    with stage.wallet._db.read() as uow:
        row = uow.transactions.get(tx_id)
        assert row is not None and integrity.tx_ok(uow.integrity, row)
    report = stage.wallet.verify_audit()
    assert report.ok, report


def test_a_row_moved_meanwhile_is_not_confirmed_over(held: tuple[Stage, _OnSubmitted]) -> None:
    """Another writer ended the row after the bytes left: the confirmation writes nothing."""
    stage, hook = held
    hook.action = lambda tx_id: _raw(
        stage,
        "UPDATE transactions SET status = 'FAILED', error = 'ELSEWHERE' WHERE id = :id",
        id=tx_id,
    )
    tx_id = _send(stage)
    assert _stored(stage, tx_id)["status"] == "FAILED"
    assert "TX_CONFIRMED" not in stage.events(tx_id)


def test_a_row_edited_in_the_file_keeps_its_stale_mac(held: tuple[Stage, _OnSubmitted]) -> None:
    """Metadata edited behind the wallet's back (its MAC left as it was): the confirmation
    does not reseal it, as a row read and found tampered never is."""
    stage, hook = held
    before: dict[str, Any] = {}

    def tamper(tx_id: str) -> None:
        found = _stored(stage, tx_id)
        before.update(found)
        meta = {**found["metadata"], "plan_digest": "0xedited"}
        _raw(
            stage,
            "UPDATE transactions SET metadata = :m WHERE id = :id",
            m=json.dumps(meta, separators=(",", ":")),
            id=tx_id,
        )

    hook.action = tamper
    tx_id = _send(stage)
    stored = _stored(stage, tx_id)
    assert stored["status"] == "CONFIRMED" and stored["metadata"]["plan_digest"] == "0xedited"
    assert stored["integrity"] == before["integrity"]  # the stale MAC stays
    with stage.wallet._db.read() as uow:
        row = uow.transactions.get(tx_id)
        assert row is not None and not integrity.tx_ok(uow.integrity, row)


_COLUMNS = [
    ("agent_id", "other-agent"),
    ("session_id", None),
    ("chain", "other"),
    ("tx_hash", "other-hash"),
    ("type", "TOKEN_TRANSFER"),
    ("amount", "1"),
    ("to_address", "elsewhere"),
    ("status", "EXECUTING"),
    ("tier", "NOTIFY"),
    ("queued_at", 1),
    ("executed_at", 1),
    ("created_at", 1),
    ("error", "X"),
    ("metadata_json", "{}"),
    ("spend", "{}"),
    ("integrity", "v2:00"),
]


@pytest.mark.parametrize(("attr", "value"), _COLUMNS, ids=[c for c, _ in _COLUMNS])
def test_the_compare_and_swap_names_every_column(
    held: tuple[Stage, _OnSubmitted], attr: str, value: Any
) -> None:
    """A held row that differs from the stored one in any column moves nothing."""
    stage, _hook = held
    stage.chain.hold = True  # stays SUBMITTED
    tx_id = _send(stage)
    with stage.wallet._db.read() as uow:
        row = uow.transactions.get(tx_id)
        assert row is not None
        stored = TransactionRow(**{k: getattr(row, k) for k in TransactionRow.model_fields})
    assert set(TransactionRow.model_fields) == {c for c, _ in _COLUMNS} | {"id"}
    stale = TransactionRow(**{**{k: getattr(stored, k) for k in TransactionRow.model_fields}})
    setattr(stale, attr, value)
    with stage.wallet._db.write(agent_id=stored.agent_id) as uow:
        assert uow.transactions.cas_held(stale, "CONFIRMED") is None
        uow.commit()
    after = _stored(stage, tx_id)
    assert after["status"] == stored.status
    with stage.wallet._db.write(agent_id=stored.agent_id) as uow:  # the row as it is: moves
        moved = uow.transactions.cas_held(stored, TxStatus.FAILED.value, error="X")
        assert moved is not None and moved[0].status == "FAILED" and moved[0].error == "X"
        uow.commit()


def test_buckets_stay_sealed_and_exact(held: tuple[Stage, _OnSubmitted]) -> None:
    """The confirmation seals no bucket: it changes none (every bucket stays sealed, and
    the budget counts each send once)."""
    stage, _hook = held
    for _ in range(3):
        _send(stage)
    with stage.wallet._db.engine.connect() as conn:
        unsealed = conn.execute(text("SELECT count(*) FROM usage_buckets WHERE mac IS NULL"))
        assert unsealed.scalar_one() == 0
    assert stage.budget_spent() == 3 * (AMOUNT["INSTANT"] + FEE)


@pytest.mark.sqlite_only  # PostgreSQL always returns from an UPDATE or INSERT
def test_without_returning_the_head_is_read_apart(held: tuple[Stage, _OnSubmitted]) -> None:
    """Where the database cannot return from an UPDATE or INSERT (SQLite before 3.35), the
    same statements run without it and the chain head is read on its own."""
    stage, _hook = held
    dialect = stage.wallet._db.engine.dialect
    saved = dialect.update_returning, dialect.insert_returning
    dialect.update_returning = dialect.insert_returning = False
    try:
        ids = [_send(stage) for _ in range(2)]
    finally:
        dialect.update_returning, dialect.insert_returning = saved
    for tx_id in ids:
        assert stage.events(tx_id) == ["TX_REQUESTED", "TX_CONFIRMED"]
        assert stage.wallet.get_transaction(tx_id).status == "CONFIRMED"
    entries = audit(stage.wallet)
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    report = stage.wallet.verify_audit()
    assert report.ok, report
