"""Smaller rows, same guarantees.

A transaction that ends (CONFIRMED, FAILED, CANCELLED, EXPIRED) loses its signed bytes and
its plan's instruction list, and is resealed with a MAC over its final status: its MAC
verifies, and a file-write attacker who edits what it decided (amount, recipient, tier, plan
digest, effects) or moves its status back (to run it again) is named by the wallet's check.
An allowed INSTANT request stores its decision compact (its tier; no reasons, budget tables
or fees the quote already says); a queued one keeps it whole, and the owner's approval still
binds the exact plan. Audit rows carry no nulls and
name a transaction's hash once (TX_SIGNED, or the presigned path's TX_REQUESTED).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    SOL,
    EvmOwner,
    all_audit,
    drive_every_path,
    new_agent,
    recipient,
    signings,
)
from tests.support.rawdb import raw_connect
from tests.support.reopen import forget_reopened_chains  # noqa: F401 (autouse)
from tests.support.reopen import open_on_same_chains as _open
from waiaas import integrity
from waiaas.errors import TamperDetectedError
from waiaas.pipeline.records import compact_final, public_decision, stored_decision
from waiaas.pipeline.states import audited_move
from waiaas.pipeline.txmeta import network_fee_of
from waiaas.policy import Decision, PolicySpec
from waiaas.testing import FrozenClock
from waiaas.types import AuditEvent, Transfer
from waiaas.wallet import Wallet


def _meta(path: Path, tx_id: str) -> dict[str, Any]:
    with raw_connect(path) as conn:
        (text,) = conn.one("SELECT metadata FROM transactions WHERE id = ?", (tx_id,)) or ("",)
    data: dict[str, Any] = json.loads(text)
    return data


def _sql(path: Path, sql: str, params: tuple[Any, ...]) -> None:
    """Edit the closed database behind waiaas's back (SQLite file or PostgreSQL schema)."""
    with raw_connect(path, autocommit=False) as conn:
        conn.execute(sql, params)
        conn.commit()


def _check(w: Wallet, tx_id: str) -> None:
    """The wallet's check of a stored transaction (what it runs before signing)."""
    integrity.check_tx(w._integrity, w._pipeline.get_row(tx_id))


# --------------------------------------------------------------------------- pure parts


def test_compact_final_keeps_what_people_and_checks_read() -> None:
    meta = {
        "network": "localnet",
        "request": {"type": "TRANSFER", "to": "x", "amount": "5"},
        "plan": {"v": 1, "instructions": [{"data": "0x02"}]},
        "plan_digest": "0x" + "ab" * 32,
        "effects": [{"effect": "native_transfer", "amount": "5"}],
        "decision": {"allowed": True, "tier": "INSTANT"},
        "signed": {"raw_b64": "AAAA", "hash": "h1", "nonce": 7, "valid_until": None},
        "replaced": {"raw_b64": "BBBB", "hash": "h0", "nonce": 7},
        "claim": {"token": "t"},
        "fee": "5000",
        "error": {"code": "X", "message": "y"},
    }
    before = json.dumps(meta, sort_keys=True)
    out = compact_final(meta)
    assert json.dumps(meta, sort_keys=True) == before  # pure: the input is untouched
    assert "plan" not in out and "claim" not in out and "raw_b64" not in json.dumps(out)
    assert out["signed"] == {"nonce": 7} and out["replaced"] == {"nonce": 7}
    for kept in ("network", "request", "plan_digest", "effects", "decision", "fee", "error"):
        assert out[kept] == meta[kept], kept
    assert compact_final(meta, keep_plan=True)["plan"] == meta["plan"]
    # a fee paid that is the amount quoted is kept once, as ``fee``; the quote reads whole
    quoted = {**meta, "network_fee": {"amount": "5000", "basis": "exact"}}
    folded = compact_final(quoted)
    assert folded["network_fee"] == {} and folded["fee"] == "5000"  # "exact": the default
    assert network_fee_of(folded) == {"amount": "5000", "basis": "exact"}
    assert network_fee_of(quoted) == quoted["network_fee"]
    paid_less = {**meta, "network_fee": {"amount": "9000", "basis": "maximum"}}
    assert compact_final(paid_less)["network_fee"] == paid_less["network_fee"]
    solana = compact_final({"signed": {"raw_b64": "AAAA", "hash": "h", "nonce": None}})
    assert solana == {}  # nothing left of the bytes: no key at all


def _decision(tier: str, *, allowed: bool = True) -> Decision:
    return Decision.model_validate(
        {
            "allowed": allowed,
            "tier": tier,
            "reasons": [
                {
                    "rule_id": "p1",
                    "type": "SPENDING_LIMIT",
                    "effect": "tier" if allowed else "deny",
                    "message": "m",
                    "tier": tier,
                    "figures": {"instant_max": "10"},
                }
            ],
            "budget": [
                {
                    "rule_id": "p1",
                    "asset": "native",
                    "window": "24h",
                    "spent": "1",
                    "requested": "2",
                    "limit": "9",
                    "remaining": "8",
                }
            ],
            "delay_seconds": 900,
            "approval_timeout": 3600,
            "spend": {"native": "2"},
            "fees": "1",
        }
    )


@pytest.mark.parametrize("tier", ["INSTANT", "NOTIFY"])
def test_an_allowed_instant_decision_is_stored_compact(tier: str) -> None:
    decision = _decision(tier)
    # the tier, and the fees only where the row's network fee quote does not say them; no
    # ``allowed`` (true), reasons, budget tables, spend (the spend column) or default waits
    assert stored_decision(decision, 1) == {"tier": tier}
    assert stored_decision(decision, 5000) == {"tier": tier, "fees": "1"}
    assert stored_decision(decision) == {"tier": tier, "fees": "1"}  # no quote: said
    free = decision.model_copy(update={"fees": 0})
    assert stored_decision(free) == {"tier": tier, "fees": "0"}  # a later quote cannot change it
    # read back with the row's spend column and quote: the same decision but for the
    # reasons and the budget tables
    expected = decision.model_copy(update={"reasons": (), "budget": ()})
    for stored, quote in ((stored_decision(decision, 1), "1"), (stored_decision(decision), None)):
        back = Decision.model_validate(public_decision(stored, {"native": 2}, quote))
        assert back == expected
    assert Decision.model_validate(public_decision(stored_decision(free), None, "7")).fees == 0


def test_a_decision_stored_by_the_previous_version_reads_as_before() -> None:
    """The previous compact form (``allowed``, a reason's rule id, type, effect and tier,
    the fees) reads as it did: the reason worded again, the fees as stored."""
    stored = {
        "allowed": True,
        "tier": "INSTANT",
        "reasons": [
            {"rule_id": "p1", "type": "SPENDING_LIMIT", "effect": "tier", "tier": "INSTANT"}
        ],
        "fees": "5000",
    }
    back = Decision.model_validate(public_decision(stored, {"native": 9}, "7"))
    (said,) = back.reasons
    assert said.rule_id == "p1" and "SPENDING_LIMIT" in said.message
    assert back.fees == 5000 and back.spend == {"native": 9} and back.allowed


@pytest.mark.parametrize(("tier", "allowed"), [("DELAY", True), ("APPROVAL", True), ("X", False)])
def test_a_queued_or_refused_decision_is_stored_whole(tier: str, allowed: bool) -> None:
    decision = _decision("INSTANT" if tier == "X" else tier, allowed=allowed)
    stored = stored_decision(decision)
    assert Decision.model_validate(stored) == decision
    assert public_decision(stored, {"native": 99}) == stored  # its own spend is kept


# --------------------------------------------------------------------------- final rows


@pytest.fixture
def confirmed(tmp_path: Path) -> tuple[Path, FrozenClock, str, str, int]:
    """A closed wallet holding one CONFIRMED INSTANT transfer: (path, clock, tx id,
    recipient, amount)."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    dest = recipient("solana")
    amount = SOL // 100
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id, ttl=86_400).token
        result = w.send(token, Transfer(to=dest, amount=amount))
        assert (result.status, result.tier) == ("CONFIRMED", "INSTANT")
    return path, clock, result.id, dest, amount


def test_a_final_row_keeps_no_bytes_and_no_plan_and_its_mac_verifies(
    confirmed: tuple[Path, FrozenClock, str, str, int],
) -> None:
    path, clock, tx_id, _dest, _amount = confirmed
    meta = _meta(path, tx_id)
    assert "plan" not in meta and "raw_b64" not in json.dumps(meta)
    assert meta["plan_digest"].startswith("0x") and meta["effects"]
    assert "decision" not in meta  # only its tier: left out, read back from the tier column
    with raw_connect(path) as conn:
        (mac,) = conn.one("SELECT integrity FROM transactions WHERE id = ?", (tx_id,)) or ("",)
    assert mac.startswith(integrity.TX_MAC_FINAL)
    with _open(path, clock) as w:
        _check(w, tx_id)  # no TamperDetectedError
        tx = w.get_transaction(tx_id)
        assert tx.decision is not None and tx.decision.spend == tx.spend
        assert tx.decision.fees == tx.fee and tx.decision.allowed and not tx.decision.reasons
        # a replay compares against the recorded decision, spend included
        stricter = PolicySpec(
            id="stricter",
            agent_id=tx.agent_id,
            type="SPENDING_LIMIT",
            rules={"per_transaction": str(SOL), "instant_max": "0", "notify_max": str(SOL)},
        )
        (diff,) = w.policies.replay(tx.agent_id, [stricter])
        assert diff.tx_id == tx_id and diff.recorded == tx.decision
        assert diff.changes == ("tier: INSTANT -> NOTIFY",)


def _edits(meta: dict[str, Any]) -> dict[str, tuple[str, tuple[Any, ...]]]:
    other = recipient("solana")
    effects = json.loads(json.dumps(meta["effects"]))
    effects[0]["amount"] = "1"
    doc = dict(meta, plan_digest="0x" + "cd" * 32)
    forged = dict(meta, effects=effects)
    replanted = dict(meta, plan={"v": 1, "instructions": []})
    return {
        "amount": ("UPDATE transactions SET amount = ? WHERE id = ?", (str(SOL),)),
        "to": ("UPDATE transactions SET to_address = ? WHERE id = ?", (other,)),
        "tier": ("UPDATE transactions SET tier = ? WHERE id = ?", ("APPROVAL",)),
        "plan_digest": ("UPDATE transactions SET metadata = ? WHERE id = ?", (json.dumps(doc),)),
        "effects": ("UPDATE transactions SET metadata = ? WHERE id = ?", (json.dumps(forged),)),
        "plan": ("UPDATE transactions SET metadata = ? WHERE id = ?", (json.dumps(replanted),)),
        "status": ("UPDATE transactions SET status = ? WHERE id = ?", ("FAILED",)),
    }


@pytest.mark.parametrize(
    "edit", ["amount", "to", "tier", "plan_digest", "effects", "plan", "status"]
)
def test_an_edited_final_row_is_named_by_the_check(
    confirmed: tuple[Path, FrozenClock, str, str, int], edit: str
) -> None:
    """Each edit of a compacted final row in the file (what it decided, its plan digest, its
    effects, a plan put back, its final status) no longer verifies."""
    path, clock, tx_id, _dest, _amount = confirmed
    sql, params = _edits(_meta(path, tx_id))[edit]
    _sql(path, sql, (*params, tx_id))
    with _open(path, clock) as w, pytest.raises(TamperDetectedError) as caught:
        _check(w, tx_id)
    assert caught.value.entity == "transaction" and caught.value.entity_id == tx_id


def test_a_confirmed_row_moved_back_to_pending_is_not_paid_again(
    confirmed: tuple[Path, FrozenClock, str, str, int],
) -> None:
    """The attacker sets a CONFIRMED transaction back to PENDING so that the next pass runs
    it again: its final MAC covers its status, so the pass refuses it before building or
    signing anything (TAMPER_DETECTED) and the recipient is paid once."""
    path, clock, tx_id, dest, amount = confirmed
    _sql(path, "UPDATE transactions SET status = 'PENDING' WHERE id = ?", (tx_id,))
    with _open(path, clock) as w:
        adapter = w.network_adapter("solana", "localnet")
        assert adapter.get_balance(dest) == amount
        w.process_due()
        assert adapter.get_balance(dest) == amount
        rows = list(w.audit(event_types=[AuditEvent.TAMPER_DETECTED]).entries)
        assert rows and rows[0].tx_id == tx_id and rows[0].details["entity"] == "transaction"
        assert len(signings(w, tx_id)) == 1  # nothing was signed again


def test_a_row_edited_before_it_ended_keeps_the_evidence(tmp_path: Path) -> None:
    """A queued transaction edited in the file is refused and FAILED; its final move does
    not compact or reseal it: the forged content stays, and the check still names it."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id, ttl=86_400).token
        queued = w.send(token, Transfer(to=recipient("solana"), amount=2 * SOL))
        assert queued.tier == "DELAY"
    meta = _meta(path, queued.id)
    forged = dict(meta, plan_digest="0x" + "ee" * 32)
    _sql(path, "UPDATE transactions SET metadata = ? WHERE id = ?", (json.dumps(forged), queued.id))
    clock.advance(10_000)
    with _open(path, clock) as w:
        w.process_due()
        assert w.get_transaction(queued.id).status == "FAILED"
        after = _meta(path, queued.id)
        assert after["plan_digest"] == "0x" + "ee" * 32 and after["plan"] == meta["plan"]
        with pytest.raises(TamperDetectedError):
            _check(w, queued.id)


# --------------------------------------------------------------------------- queued requests


def test_an_approval_keeps_its_full_decision_and_executes_the_plan_approved(
    tmp_path: Path,
) -> None:
    """An APPROVAL transaction keeps every reason and the budget tables while it waits (the
    owner reads them to decide) and after; the owner's approval binds the plan digest it
    read, and the transaction that executes is that plan."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    owner = EvmOwner()
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", owner=owner, funds=50 * SOL)
        limits = {"instant_max": SOL, "notify_max": 2 * SOL, "delay_max": 5 * SOL}
        limits |= {"per_transaction": 20 * SOL, "daily_total": 100 * SOL}
        rules = {k: str(v) for k, v in limits.items()}
        w.add_policy("SPENDING_LIMIT", rules, agent_id=agent.id)
        token = w.issue_session(agent.id, ttl=86_400).token
        queued = w.send(token, Transfer(to=recipient("solana"), amount=11 * SOL))
        assert (queued.status, queued.tier) == ("QUEUED", "APPROVAL")
        waiting = w.get_transaction(queued.id).decision
        assert waiting is not None and waiting.reasons and waiting.budget
        digest = _meta(path, queued.id)["plan_digest"]
        assert w.approval_request(queued.id).plan_digest == digest
        done = w.approve(queued.id, owner.sign(w.approval_message(queued.id)))
        assert done.status == "CONFIRMED"
        final = _meta(path, queued.id)
        assert final["plan_digest"] == final["approval"]["plan_digest"] == digest
        assert "plan" not in final and "raw_b64" not in json.dumps(final)
        requested = [e for e in all_audit(w, tx_id=queued.id) if e.event_type == "TX_REQUESTED"]
        # stored once, on the row under its MAC; the audit page reads it back from there
        assert requested[0].details["plan_digest"] == digest
        after = w.get_transaction(queued.id).decision
        assert after == waiting  # the whole decision, still
        _check(w, queued.id)


# --------------------------------------------------------------------------- audit rows


def _nulls(value: Any) -> bool:
    return isinstance(value, dict) and any(v is None for v in value.values())


def test_audit_rows_carry_no_nulls_and_name_a_hash_once(tmp_path: Path) -> None:
    """Every path of the pipeline: no detail is null; the transaction's hash is in the row
    recording its signing (presigned: TX_REQUESTED, no TX_SIGNED or TX_SUBMITTED row; from a
    claim: TX_SIGNED), not again in another row; every move still reads back as (from, to)."""
    clock = FrozenClock()
    with _open(tmp_path / "wallet.db", clock) as w:
        ids = drive_every_path(w, "solana")
        entries = all_audit(w)
        assert entries and not [e for e in entries if _nulls(e.details)]
        tx = w.get_transaction(ids["instant"])
        rows = {e.event_type: e for e in all_audit(w, tx_id=tx.id)}
        # signed before admission's lock: requested, recorded and cleared in the admission
        # commit, in one row (Solana has no nonce)
        assert "TX_SIGNED" not in rows and "TX_SUBMITTED" not in rows
        assert rows["TX_REQUESTED"].details["tx_hash"] == tx.tx_hash
        assert "tx_hash" not in rows["TX_CONFIRMED"].details
        # SUBMITTED -> CONFIRMED is what TX_CONFIRMED says; a system move names no session
        assert "from" not in rows["TX_CONFIRMED"].details
        assert rows["TX_CONFIRMED"].session_id is None
        assert rows["TX_REQUESTED"].session_id == tx.session_id is not None
        assert [audited_move(t, rows[t].details) for t in ("TX_REQUESTED", "TX_CONFIRMED")] == [
            ("PENDING", "SUBMITTED"),
            ("SUBMITTED", "CONFIRMED"),
        ]
        text = json.dumps([e.details for e in all_audit(w, tx_id=tx.id)])
        assert text.count(str(tx.tx_hash)) == 1
        # from a claim (the owner approved it): TX_SIGNED names it, TX_SUBMITTED does not
        approved = w.get_transaction(ids["approved"])
        rows = {e.event_type: e for e in all_audit(w, tx_id=approved.id)}
        assert rows["TX_SIGNED"].details == {"tx_hash": approved.tx_hash}
        assert rows["TX_SUBMITTED"].details == {}
        assert signings(w, approved.id) == [rows["TX_SIGNED"].details]
        text = json.dumps([e.details for e in all_audit(w, tx_id=approved.id)])
        assert text.count(str(approved.tx_hash)) == 1
