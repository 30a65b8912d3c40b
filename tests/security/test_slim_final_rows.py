"""A final row leaves out what is its default, and its MAC covers what is read back.

A transfer that ends is sealed in its final form (``vc:``): a compact decision that is only
its tier is left out (the ``tier`` column says it), and a quote that is the fee paid, of
basis ``exact``, is kept as ``{}``. Every reader sees the values put back, and the MAC covers
those values: a file-write attacker who edits what is left, or puts back a different default
where one was left out, is named by the wallet's check; the same default put back verifies.
Rows sealed before (``vf:``, their defaults stored) read and verify as they were.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.e2e.conftest import SOL, new_agent, recipient
from tests.support.rawdb import raw_connect
from tests.support.reopen import forget_reopened_chains  # noqa: F401 (autouse)
from tests.support.reopen import open_on_same_chains as _open
from waiaas import integrity
from waiaas.errors import TamperDetectedError
from waiaas.pipeline.records import compact_final, decision_of
from waiaas.pipeline.txmeta import as_meta, decision_in, network_fee_of
from waiaas.testing import FrozenClock
from waiaas.types import Transfer
from waiaas.wallet import Wallet


def _row(path: Path, tx_id: str) -> tuple[dict[str, Any], str]:
    with raw_connect(path) as conn:
        found = conn.one("SELECT metadata, integrity FROM transactions WHERE id = ?", (tx_id,))
    assert found is not None
    text, mac = found
    data: dict[str, Any] = json.loads(text)
    return data, str(mac)


def _write(path: Path, tx_id: str, meta: dict[str, Any], mac: str | None = None) -> None:
    """Edit the closed database behind waiaas's back (SQLite file or PostgreSQL schema)."""
    with raw_connect(path, autocommit=False) as conn:
        if mac is None:
            sql, params = "UPDATE transactions SET metadata = ? WHERE id = ?", (tx_id,)
            conn.execute(sql, (json.dumps(meta, separators=(",", ":")), *params))
        else:
            sql = "UPDATE transactions SET metadata = ?, integrity = ? WHERE id = ?"
            conn.execute(sql, (json.dumps(meta, separators=(",", ":")), mac, tx_id))
        conn.commit()


def _check(w: Wallet, tx_id: str) -> None:
    integrity.check_tx(w._integrity, w._pipeline.get_row(tx_id))


@pytest.fixture
def confirmed(tmp_path: Path) -> tuple[Path, FrozenClock, str]:
    """A closed wallet holding one CONFIRMED INSTANT transfer: (path, clock, tx id)."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id, ttl=86_400).token
        result = w.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
        assert (result.status, result.tier) == ("CONFIRMED", "INSTANT")
    return path, clock, result.id


def test_a_final_row_leaves_its_defaults_out_and_reads_them_back(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    path, clock, tx_id = confirmed
    meta, mac = _row(path, tx_id)
    assert mac.startswith(integrity.TX_MAC_FINAL) and len(mac) == 3 + 43
    assert "decision" not in meta and meta["network_fee"] == {}
    fee = meta["fee"]
    assert network_fee_of(as_meta(meta)) == {"amount": fee, "basis": "exact"}
    with _open(path, clock) as w:
        _check(w, tx_id)
        tx = w.get_transaction(tx_id)
        assert tx.decision is not None and tx.decision.tier == "INSTANT"
        assert tx.decision.allowed and tx.decision.fees == tx.fee == int(fee)
        row = w._pipeline.get_row(tx_id)
        assert decision_in(as_meta(meta), row) == {"tier": "INSTANT"}


def _forgeries(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    without_fee = {k: v for k, v in meta.items() if k != "fee"}
    return {
        "another tier put back": {**meta, "decision": {"tier": "APPROVAL"}},
        "a decision with other fees": {**meta, "decision": {"tier": "INSTANT", "fees": "1"}},
        "a refusal put back": {**meta, "decision": {"allowed": False, "tier": "INSTANT"}},
        "another basis put back": {**meta, "network_fee": {"basis": "maximum"}},
        "another quoted amount": {**meta, "network_fee": {"amount": "1", "basis": "exact"}},
        "no quote": {k: v for k, v in meta.items() if k != "network_fee"},
        "another fee paid": {**meta, "fee": "1"},
        "no fee paid": without_fee,
    }


@pytest.mark.parametrize(
    "forgery",
    [
        "another tier put back",
        "a decision with other fees",
        "a refusal put back",
        "another basis put back",
        "another quoted amount",
        "no quote",
        "another fee paid",
        "no fee paid",
    ],
)
def test_a_default_put_back_differently_is_named_by_the_check(
    confirmed: tuple[Path, FrozenClock, str], forgery: str
) -> None:
    path, clock, tx_id = confirmed
    meta, _mac = _row(path, tx_id)
    _write(path, tx_id, _forgeries(meta)[forgery])
    with _open(path, clock) as w, pytest.raises(TamperDetectedError) as caught:
        _check(w, tx_id)
    assert caught.value.entity == "transaction" and caught.value.entity_id == tx_id


def test_the_same_defaults_written_out_verify_and_read_the_same(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    """What a reader sees is what the MAC covers: writing the defaults out changes nothing."""
    path, clock, tx_id = confirmed
    meta, _mac = _row(path, tx_id)
    with _open(path, clock) as w:
        before = w.get_transaction(tx_id).decision
    spelled = {**meta, "decision": {"tier": "INSTANT"}}
    spelled["network_fee"] = {"amount": meta["fee"], "basis": "exact"}
    _write(path, tx_id, spelled)
    with _open(path, clock) as w:
        _check(w, tx_id)
        assert w.get_transaction(tx_id).decision == before


def test_the_seal_prefix_swapped_to_the_earlier_final_form_is_named(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    """``vf:`` rows read their stored decision as it is (none here): a ``vc:`` MAC relabelled
    ``vf:`` (to drop the decision from what is covered) does not verify."""
    path, clock, tx_id = confirmed
    meta, mac = _row(path, tx_id)
    _write(path, tx_id, meta, integrity.TX_MAC_FINAL_V1 + mac[3:])
    with _open(path, clock) as w, pytest.raises(TamperDetectedError):
        _check(w, tx_id)


def test_a_queued_row_that_ended_keeps_its_whole_decision_covered(tmp_path: Path) -> None:
    """A DELAY transfer keeps its whole decision when it ends; removing it (so that the tier
    alone would be read back) does not verify."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id, ttl=86_400).token
        queued = w.send(token, Transfer(to=recipient("solana"), amount=2 * SOL))
        assert queued.tier == "DELAY"
        clock.advance(10_000)
        w.process_due()
        assert w.get_transaction(queued.id).status == "CONFIRMED"
    meta, mac = _row(path, queued.id)
    assert mac.startswith(integrity.TX_MAC_FINAL) and meta["decision"]["reasons"]
    _write(path, queued.id, {k: v for k, v in meta.items() if k != "decision"})
    with _open(path, clock) as w, pytest.raises(TamperDetectedError):
        _check(w, queued.id)


def test_a_row_sealed_in_the_earlier_final_form_reads_and_verifies(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    """A row finalized before (its defaults stored, sealed ``vf:``) verifies and reads the
    same decision and quote; its stored decision is read as it is."""
    path, clock, tx_id = confirmed
    meta, _mac = _row(path, tx_id)
    old = {**meta, "decision": {"tier": "INSTANT"}, "network_fee": {"basis": "exact"}}
    with _open(path, clock) as w:
        now = w.get_transaction(tx_id)
        row = w._pipeline.get_row(tx_id)
        view = {
            name: getattr(row, name)
            for name in ("id", "agent_id", "chain", "type", "amount", "to_address", "tier")
        }
        text = json.dumps(old, separators=(",", ":"))
        fake = SimpleNamespace(**view, status=row.status, metadata_json=text)
        mac = integrity._tx_mac_final_v1(w._integrity, fake, json.loads(text))
    assert mac.startswith("vf:")
    _write(path, tx_id, old, mac)
    with _open(path, clock) as w:
        _check(w, tx_id)
        tx = w.get_transaction(tx_id)
        assert tx.decision == now.decision and tx.fee == now.fee
        row = w._pipeline.get_row(tx_id)
        assert decision_in(as_meta(old), row) == {"tier": "INSTANT"}
        assert decision_in(as_meta({k: v for k, v in old.items() if k != "decision"}), row) is None


def test_compact_final_leaves_out_only_exact_defaults() -> None:
    meta: dict[str, Any] = {
        "decision": {"tier": "INSTANT"},
        "network_fee": {"amount": "5000", "basis": "exact"},
        "fee": "5000",
    }
    out = compact_final(as_meta(meta), tier="INSTANT")
    assert out == {"network_fee": {}, "fee": "5000"}
    # not resealed (no tier given), or another tier (escalated), or more than the tier: kept
    assert compact_final(as_meta(meta))["decision"] == {"tier": "INSTANT"}
    escalated = compact_final(as_meta(meta), tier="APPROVAL")
    assert escalated["decision"] == {"tier": "INSTANT"}
    fuller = {**meta, "decision": {"tier": "INSTANT", "fees": "7"}}
    assert compact_final(as_meta(fuller), tier="INSTANT")["decision"] == fuller["decision"]
    # a fee paid that is not the quote, or another basis: the quote is kept as it is
    other = {**meta, "network_fee": {"amount": "5000", "basis": "maximum"}}
    assert compact_final(as_meta(other))["network_fee"] == {"basis": "maximum"}
    less = {**meta, "fee": "4000"}
    assert compact_final(as_meta(less))["network_fee"] == meta["network_fee"]
    # reading back: decision_of puts the tier and the fees back
    row = SimpleNamespace(tier="INSTANT", integrity=integrity.TX_MAC_FINAL + "x")
    read = decision_of(out, {"native": 5}, row)
    assert read["tier"] == "INSTANT" and read["allowed"] is True and read["fees"] == "5000"
