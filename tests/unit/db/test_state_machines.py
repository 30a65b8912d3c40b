"""The agent and transaction state machines: each declared once, every move audited, no
writer around them (a disallowed move, a wrong actor, a lost race and a raw compare-and-swap
elsewhere in the code are all refused or found)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.unit.db.conftest import NOW, RowFactory
from waiaas.db import Database
from waiaas.errors import InvalidTransitionError, StateError
from waiaas.pipeline import agent_states, states
from waiaas.types import AgentStatus, TxStatus

A = AgentStatus
SRC = Path(__file__).resolve().parents[3] / "src" / "waiaas"


def _audit(db: Database, agent_id: str) -> list[tuple[str, str]]:
    with db.read() as uow:
        return [(r.event_type, r.actor) for r in uow.audit.query(agent_id=agent_id, limit=100)]


@pytest.mark.parametrize(
    ("current", "target", "actor", "allowed"),
    [
        (A.ACTIVE, A.SUSPENDED, "owner", True),
        (A.ACTIVE, A.SUSPENDED, "system", True),
        (A.SUSPENDED, A.ACTIVE, "owner", True),
        (A.SUSPENDED, A.ACTIVE, "system", False),  # only the owner resumes
        (A.ACTIVE, A.TERMINATING, "system", False),  # only the owner terminates
        (A.TERMINATED, A.ACTIVE, "owner", False),  # terminated is final
        (A.TERMINATED, A.SUSPENDED, "system", False),
        (A.SUSPENDED, A.SUSPENDED, "owner", False),
        (A.CREATING, A.SUSPENDED, "system", False),
        (A.ACTIVE, A.SUSPENDED, "agent:x", False),  # an agent never moves an agent
    ],
)
def test_the_agent_table_says_who_may_move_what(
    current: AgentStatus, target: AgentStatus, actor: str, allowed: bool
) -> None:
    assert agent_states.can_move(current, target, actor) is allowed


def test_a_move_writes_the_status_and_its_audit_row_together(
    db: Database, rows: RowFactory
) -> None:
    agent = rows.agent(status="ACTIVE")
    with db.write() as uow:
        uow.agents.add(agent)
        moved = agent_states.move(
            uow,
            agent.id,
            [A.ACTIVE],
            A.SUSPENDED,
            actor="owner",
            now=NOW + 5,
            details={"reason": "test"},
            suspension_reason="test",
        )
        uow.commit()
    assert moved
    with db.read() as uow:
        row = uow.agents.get(agent.id)
    assert row is not None
    assert (row.status, row.suspension_reason, row.updated_at) == ("SUSPENDED", "test", NOW + 5)
    assert _audit(db, agent.id) == [("AGENT_SUSPENDED", "owner")]


def test_a_disallowed_move_is_refused_and_writes_nothing(db: Database, rows: RowFactory) -> None:
    agent = rows.agent(status="TERMINATED")
    with db.write() as uow:
        uow.agents.add(agent)
        uow.commit()
    with db.write() as uow, pytest.raises(InvalidTransitionError):
        agent_states.move(uow, agent.id, [A.TERMINATED], A.ACTIVE, actor="owner", now=NOW)
    with db.write() as uow, pytest.raises(InvalidTransitionError):  # right move, wrong actor
        agent_states.move(uow, agent.id, [A.SUSPENDED], A.ACTIVE, actor="system", now=NOW)
    with db.read() as uow:
        row = uow.agents.get(agent.id)
    assert row is not None and row.status == "TERMINATED"
    assert _audit(db, agent.id) == []


def test_a_lost_race_moves_nothing_and_writes_no_row(db: Database, rows: RowFactory) -> None:
    """The agent is no longer in the expected status (another writer suspended it first):
    ``move`` says so, ``require_move`` raises StateError naming the status found."""
    agent = rows.agent(status="SUSPENDED")
    with db.write() as uow:
        uow.agents.add(agent)
        uow.commit()
    with db.write() as uow:
        assert not agent_states.move(
            uow, agent.id, [A.ACTIVE], A.SUSPENDED, actor="system", now=NOW
        )
        with pytest.raises(StateError, match="is SUSPENDED, not ACTIVE"):
            agent_states.require_move(
                uow, agent.id, [A.ACTIVE], A.SUSPENDED, actor="owner", now=NOW
            )
        uow.commit()
    assert _audit(db, agent.id) == []


def test_resuming_writes_agent_resumed(db: Database, rows: RowFactory) -> None:
    agent = rows.agent(status="SUSPENDED")
    with db.write() as uow:
        uow.agents.add(agent)
        agent_states.require_move(uow, agent.id, [A.SUSPENDED], A.ACTIVE, actor="owner", now=NOW)
        uow.commit()
    assert _audit(db, agent.id) == [("AGENT_RESUMED", "owner")]


def test_cancel_found_goes_through_the_transaction_table(db: Database, rows: RowFactory) -> None:
    """A bulk cancellation moves a row only from the status it was read in, with its
    TX_CANCELLED row; a row another writer moved is left alone; a final row is refused."""
    agent = rows.agent()
    queued = rows.transaction(agent.id, status="QUEUED")
    raced = rows.transaction(agent.id, status="PENDING")
    final = rows.transaction(agent.id, status="CONFIRMED")
    with db.write() as uow:
        uow.agents.add(agent)
        for tx in (queued, raced, final):
            uow.transactions.add(tx)
        uow.commit()
    with db.write() as uow:
        assert uow.transactions.cas_status(raced.id, "PENDING", "EXECUTING")  # the other writer
        stale = RowFactory.transaction(agent.id, id=raced.id, status="PENDING")  # read before
        row = uow.transactions.get(queued.id)
        assert row is not None
        assert states.cancel_found(uow, row, actor="owner", now=NOW, code="KILL_SWITCH", reason="r")
        assert not states.cancel_found(
            uow, stale, actor="owner", now=NOW, code="KILL_SWITCH", reason="r"
        )
        done = uow.transactions.get(final.id)
        assert done is not None
        with pytest.raises(InvalidTransitionError):
            states.cancel_found(uow, done, actor="owner", now=NOW, code="KILL_SWITCH", reason="r")
        uow.commit()
    with db.read() as uow:
        got = {t: uow.transactions.get(t) for t in (queued.id, raced.id, final.id)}
        cancelled = uow.audit.query(tx_id=queued.id, limit=10)
    assert {t: r.status for t, r in got.items() if r is not None} == {
        queued.id: TxStatus.CANCELLED,
        raced.id: TxStatus.EXECUTING,
        final.id: TxStatus.CONFIRMED,
    }
    assert getattr(got[queued.id], "error", None) == "KILL_SWITCH"
    assert [(r.event_type, r.actor, json.loads(r.details or "{}")) for r in cancelled] == [
        ("TX_CANCELLED", "owner", {"from": "QUEUED", "reason": "r"})  # "to" is the event's
    ]
    assert states.audited_move("TX_CANCELLED", json.loads(cancelled[0].details)) == (
        "QUEUED",
        "CANCELLED",
    )


def test_no_writer_goes_around_the_state_machines() -> None:
    """Only the state-machine modules change a status by compare-and-swap: an agent's in
    pipeline/agent_states.py, a transaction's (to a new status) in pipeline/states.py."""
    agent_writers, cancel_writers = [], []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(SRC).as_posix()
        if ".agents.cas_status(" in text and rel != "pipeline/agent_states.py":
            agent_writers.append(rel)
        if re.search(r"transactions\.cas_status\([^)]*\"CANCELLED\"", text, re.S):
            cancel_writers.append(rel)
    assert agent_writers == []
    assert cancel_writers == []


def test_rows_written_before_still_read_back_as_moves() -> None:
    """Older rows said every ``from`` (and a presigned TX_SIGNED said PENDING -> PENDING);
    they read back as the same moves as the shorter rows written now."""
    assert states.audited_move("TX_CONFIRMED", {"from": "SUBMITTED", "fee": "5"}) == (
        "SUBMITTED",
        "CONFIRMED",
    )
    assert states.audited_move("TX_CONFIRMED", {"fee": "5"}) == ("SUBMITTED", "CONFIRMED")
    assert states.audited_move("TX_CONFIRMED", {"from": "EXECUTING"}) == (
        "EXECUTING",
        "CONFIRMED",
    )
    assert states.audited_move("TX_SIGNED", {"from": "PENDING", "to": "PENDING"}) == (
        "PENDING",
        "PENDING",
    )
    assert states.audited_move("TX_SUBMITTED", {"from": "PENDING", "tx_hash": "h"}) == (
        "PENDING",
        "SUBMITTED",
    )
    # one row for presigned bytes: the request that names a hash was born SUBMITTED
    assert states.audited_move("TX_REQUESTED", {"tx_hash": "h"}) == ("PENDING", "SUBMITTED")
    assert states.audited_move("TX_REQUESTED", {"tier": "NOTIFY", "tx_hash": "h", "nonce": 0}) == (
        "PENDING",
        "SUBMITTED",
    )
    assert states.audited_move("TX_REQUESTED", {"tier": "DELAY"}) is None
    assert states.audited_move("TX_REQUESTED", {"type": "TRANSFER", "amount": "1"}) is None


def test_the_signing_is_read_from_either_row() -> None:
    """TX_SIGNED (the claim path), the presigned TX_REQUESTED and, in a database written
    before, the presigned TX_SUBMITTED (each names a hash) record a signing; a TX_SUBMITTED
    of the claim path or of recovery, or a request without bytes, does not."""
    assert states.signing_record("TX_SIGNED", {"tx_hash": "h", "nonce": 3}) == {
        "tx_hash": "h",
        "nonce": 3,
    }
    presigned = {"from": "PENDING", "tx_hash": "h"}
    assert states.signing_record("TX_SUBMITTED", presigned) == presigned
    assert states.signing_record("TX_SUBMITTED", {}) is None
    assert states.signing_record("TX_SUBMITTED", {"recovered": True}) is None
    assert states.signing_record("TX_RETRY", {"rebuilt": 1, "tx_hash": "h"}) is None
    assert states.signing_record("TX_CONFIRMED", {"fee": "1"}) is None
    merged = {"type": "TRANSFER", "tier": "NOTIFY", "tx_hash": "h", "nonce": 7}
    assert states.signing_record("TX_REQUESTED", merged) == {"tx_hash": "h", "nonce": 7}
    assert states.signing_record("TX_REQUESTED", {"tx_hash": "h"}) == {"tx_hash": "h"}
    assert states.signing_record("TX_REQUESTED", {"type": "TRANSFER", "tier": "DELAY"}) is None
