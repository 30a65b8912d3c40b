"""What a transaction row stores at insert, smaller, and what still holds.

A request is stored without the fields it left unset (``memo: null``) and without what the
row's columns (``type``, ``to_address``, ``amount``) and ``asset`` hold; signed bytes without
their hash (the row's ``tx_hash``) or unset fields; an allowed INSTANT decision compact; the
fee once. The row's MAC covers the request whole, as it is read back, judged and signed, so
a request edited in the file (a memo added, an amount changed, in the document or in the
columns) is named by the check; rows written by earlier versions (``memo: null``, the full
decision, the hash in ``signed``, the request and asset written out, the fee three times)
still verify, read and run.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.e2e.conftest import SOL, TIER_AMOUNTS, new_agent, recipient
from tests.support.rawdb import raw_connect
from tests.support.reopen import forget_reopened_chains  # noqa: F401 (autouse)
from tests.support.reopen import open_on_same_chains as _open
from waiaas import integrity
from waiaas.chains.base import SignedTx
from waiaas.errors import StateError, TamperDetectedError
from waiaas.pipeline import plans
from waiaas.pipeline.engine import PipelineHooks
from waiaas.pipeline.records import public_decision, signed_from_json, signed_json, stored_request
from waiaas.pipeline.requests import parse_request
from waiaas.pipeline.txmeta import TxMeta, request_of
from waiaas.plan import decode_plan, plan_digest
from waiaas.policy import Decision
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import Batch, TokenTransfer, Transfer
from waiaas.wallet import Wallet

NETWORK = {"solana": "localnet", "evm": "local"}


def _row(path: Path, tx_id: str) -> dict[str, Any]:
    with raw_connect(path) as conn:
        found = conn.one(
            "SELECT id, agent_id, chain, type, amount, to_address, tier, status, metadata, "
            "integrity FROM transactions WHERE id = ?",
            (tx_id,),
        )
    assert found is not None
    keys = ("id", "agent_id", "chain", "type", "amount", "to_address", "tier", "status")
    out = dict(zip(keys, found[:8], strict=True))
    out["metadata_json"], out["integrity"] = found[8], found[9]
    return out


def _write(path: Path, tx_id: str, meta: dict[str, Any], mac: str | None = None) -> None:
    text = json.dumps(meta, separators=(",", ":"))
    with raw_connect(path, autocommit=False) as conn:
        if mac is None:
            conn.execute("UPDATE transactions SET metadata = ? WHERE id = ?", (text, tx_id))
        else:
            conn.execute(
                "UPDATE transactions SET metadata = ?, integrity = ? WHERE id = ?",
                (text, mac, tx_id),
            )
        conn.commit()


def _sealed_as(w: Wallet, row: dict[str, Any], meta: dict[str, Any]) -> str:
    """The MAC the wallet's key gives ``row`` holding ``meta`` (what the previous version
    wrote with the same key and the same MAC function: ``vf:`` for a final row)."""
    view = SimpleNamespace(**{**row, "metadata_json": json.dumps(meta, separators=(",", ":"))})
    if view.status in integrity.FINAL_STATUSES:
        return integrity._tx_mac_final_v1(w._integrity, view, meta)  # type: ignore[arg-type]
    return integrity.tx_mac(w._integrity, view)


def _check(w: Wallet, tx_id: str) -> None:
    integrity.check_tx(w._integrity, w._pipeline.get_row(tx_id))


# --------------------------------------------------------------------------- pure parts


def test_a_request_is_stored_without_the_fields_it_left_unset() -> None:
    to = recipient("solana")
    plain = Transfer(to=to, amount=5)
    assert stored_request(plain) == {"type": "TRANSFER", "to": to, "amount": "5"}
    assert stored_request(Transfer(to=to, amount=5, memo="hi"))["memo"] == "hi"
    token = TokenTransfer(token=recipient("solana"), to=to, amount=7)
    assert "decimals" not in stored_request(token)
    batch = Batch(requests=[plain, TokenTransfer(token=token.token, to=to, amount=7, decimals=6)])
    items = stored_request(batch)["requests"]
    assert "memo" not in items[0] and items[1]["decimals"] == 6
    for req in (plain, token, batch):
        assert parse_request(stored_request(req)) == req  # the same request back


def test_signed_bytes_are_stored_without_their_hash_and_read_back_whole() -> None:
    signed = SignedTx(chain="evm", raw=b"\x02\xf8", tx_hash="0xab", nonce=0, valid_until=None)
    doc = signed_json(signed)
    assert doc == {"raw_b64": "Avg=", "nonce": 0}  # nonce 0 kept: it is set
    assert signed_from_json("evm", doc, "0xab") == signed
    # the previous version's form: the hash and every field, set or not
    old = {"raw_b64": "Avg=", "hash": "0xab", "nonce": 0, "valid_until": None}
    assert signed_from_json("evm", {**old, "earliest_slot": None}) == signed
    with pytest.raises(StateError):
        signed_from_json("evm", doc)  # no hash anywhere: refused, not guessed


def test_a_compact_decision_of_a_non_default_wait_keeps_it() -> None:
    stored = {"allowed": True, "tier": "INSTANT", "delay_seconds": 60, "approval_timeout": 3600}
    back = Decision.model_validate(public_decision(stored, None))
    assert (back.delay_seconds, back.approval_timeout) == (60, 3600)


# --------------------------------------------------------------------------- rows


@pytest.fixture
def confirmed(tmp_path: Path) -> tuple[Path, FrozenClock, str]:
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id, ttl=86_400).token
        sent = w.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
        assert (sent.status, sent.tier) == ("CONFIRMED", "INSTANT")
    return path, clock, sent.id


def test_a_confirmed_instant_row_stores_the_compact_forms(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    path, clock, tx_id = confirmed
    row = _row(path, tx_id)
    meta = json.loads(row["metadata_json"])
    # the columns say the request, the asset and the decision (its tier); the fee is once
    assert "request" not in meta and "asset" not in meta and "decision" not in meta
    assert meta["network_fee"] == {} and meta["fee"] == "5000"
    with _open(path, clock) as w:
        _check(w, tx_id)
        tx = w.get_transaction(tx_id)
        sent = Transfer(to=row["to_address"], amount=SOL // 100)
        assert tx.request == stored_request(sent) and parse_request(tx.request) == sent
        assert list(tx.request) == ["type", "to", "amount"]  # the order it was written in
        assert tx.asset == "native" and tx.fee == 5000
        decision = tx.decision
        assert decision is not None and decision.allowed and decision.tier == "INSTANT"
        assert decision.fees == tx.fee and decision.spend == tx.spend and not decision.reasons
        shown = w.transaction_display(tx_id)
        assert shown.reasons == () and shown.network_fee is not None
        assert shown.network_fee.base_units == 5000


@pytest.mark.parametrize(
    "edit", [{"memo": "x"}, {"memo": None}, {"amount": str(SOL)}, {"to": recipient("solana")}]
)
def test_a_stored_request_edited_in_the_file_is_named_by_the_check(
    confirmed: tuple[Path, FrozenClock, str], edit: dict[str, Any]
) -> None:
    """A key added to the stored request (even the ``memo: null`` that is left out) or a
    value changed no longer verifies."""
    path, clock, tx_id = confirmed
    meta = json.loads(_row(path, tx_id)["metadata_json"])
    _write(path, tx_id, {**meta, "request": {**meta.get("request", {}), **edit}})
    with _open(path, clock) as w, pytest.raises(TamperDetectedError):
        _check(w, tx_id)


_RULE = {"rule_id": "p1", "type": "SPENDING_LIMIT", "effect": "tier", "tier": "INSTANT"}


def _previous_form(meta: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as the version before stored it: the request and the asset written out, a
    compact decision with ``allowed``, the rule of its reason and the fees, and the fee
    quote with its amount (the fee three times)."""
    old = json.loads(json.dumps(meta))
    request = request_of(old, SimpleNamespace(**row))
    assert request is not None
    quote = {"amount": old["fee"], "basis": "exact", **old["network_fee"]}
    old.update(request=request, asset="native", network_fee=quote)
    old["decision"] = {"allowed": True, "tier": "INSTANT", "reasons": [_RULE], "fees": old["fee"]}
    return old


def _older_form(meta: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as an earlier version stored it: ``memo: null`` in the request, every reason
    with its sentence and figures, the waits written out."""
    old = _previous_form(meta, row)
    old["request"]["memo"] = None
    decision = public_decision(old["decision"], None)
    for reason in decision["reasons"]:
        reason["message"] = "0.01 SOL is INSTANT under this limit"
        reason["figures"] = {"asset": "native", "amount": str(SOL // 100)}
    old["decision"] = decision
    return old


def test_a_final_row_written_by_the_previous_version_verifies_and_reads(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    """A row of the form before (request, asset and the fee written out, a reason's rule
    kept) reads exactly as the row of the new form does, plus the reason it stored."""
    path, clock, tx_id = confirmed
    row = _row(path, tx_id)
    with _open(path, clock) as w:
        new = w.get_transaction(tx_id)
        new_display = w.transaction_display(tx_id)
        old = _previous_form(json.loads(row["metadata_json"]), row)
        mac = _sealed_as(w, row, old)
        # the same request, effects and fee: the same MAC as that version gave the new form
        assert mac == _sealed_as(w, row, json.loads(row["metadata_json"]))
    _write(path, tx_id, old, mac)
    with _open(path, clock) as w:
        _check(w, tx_id)
        tx = w.get_transaction(tx_id)
        assert tx.decision is not None and new.decision is not None
        (reason,) = tx.decision.reasons
        assert reason.rule_id == "p1" and "SPENDING_LIMIT" in reason.message
        assert tx.model_copy(update={"decision": None}) == new.model_copy(update={"decision": None})
        assert tx.decision.model_copy(update={"reasons": ()}) == new.decision
        display = w.transaction_display(tx_id)
        assert display.network_fee == new_display.network_fee
        assert display.effects == new_display.effects


def test_a_final_row_written_by_an_earlier_version_verifies_and_reads(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    path, clock, tx_id = confirmed
    row = _row(path, tx_id)
    old = _older_form(json.loads(row["metadata_json"]), row)
    with _open(path, clock) as w:
        mac = _sealed_as(w, row, old)
    _write(path, tx_id, old, mac)
    with _open(path, clock) as w:
        _check(w, tx_id)
        tx = w.get_transaction(tx_id)
        decision = tx.decision
        assert decision is not None
        (reason,) = decision.reasons
        assert reason.message.startswith("0.01 SOL") and reason.figures  # as stored
        assert w.transaction_display(tx_id).reasons == (reason.message,)
        assert tx.request is not None and tx.request["memo"] is None  # as stored


def test_a_queued_row_written_by_the_previous_version_runs_once(tmp_path: Path) -> None:
    """A DELAY request stored by the previous version (``memo: null``, its v2 MAC) verifies
    when it is due, executes, and pays once."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    dest = recipient("solana")
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id, ttl=86_400).token
        queued = w.send(token, Transfer(to=dest, amount=2 * SOL))
        assert (queued.status, queued.tier) == ("QUEUED", "DELAY")
        row = _row(path, queued.id)
        old = json.loads(row["metadata_json"])
        request = request_of(old, SimpleNamespace(**row))
        assert request is not None and "request" not in old
        old.update(request={**request, "memo": None}, asset="native")
        mac = _sealed_as(w, row, old)
    _write(path, queued.id, old, mac)
    clock.advance(10_000)
    with _open(path, clock) as w:
        w.process_due()
        assert w.get_transaction(queued.id).status == "CONFIRMED"
        assert w.network_adapter("solana", "localnet").get_balance(dest) == 2 * SOL
        _check(w, queued.id)


# --------------------------------------------------------------------------- plan in the bytes


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_presigned_bytes_carry_the_plan_and_another_plan_in_them_is_refused(
    tmp_path: Path, chain: str
) -> None:
    """A presigned row stores the plan's digest and effects but not the plan: its adapter
    reads the plan from the bytes, with that digest. Bytes of another transaction put in
    its place hold another plan: refused (PLAN_MISMATCH), never read as the judged one."""
    seen: dict[str, tuple[TxMeta, str | None, Any]] = {}

    def on_stage(stage: str, tx_id: str) -> None:
        if stage == "recorded":
            row = w._pipeline.get_row(tx_id)
            columns = SimpleNamespace(type=row.type, to_address=row.to_address, amount=row.amount)
            seen[tx_id] = (w._pipeline._meta(row), row.tx_hash, columns)

    with local_wallet(tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=on_stage)) as w:
        agent = new_agent(w, chain)
        token = w.issue_session(agent.id).token
        amount = TIER_AMOUNTS[chain]["INSTANT"]
        first, second = (w.send(token, Transfer(to=recipient(chain), amount=amount)) for _ in "ab")
        adapter = w.network_adapter(chain, NETWORK[chain])
    meta, tx_hash, columns = seen[first.id]
    other, other_hash, _ = seen[second.id]
    assert "plan" not in meta and meta["plan_digest"] and meta["effects"] and meta["signed"]
    assert not plans.needs_plan(adapter, meta)  # the digest says a plan was judged
    read = plans.stored_plan(meta, adapter, tx_hash, row=columns)
    assert read.plan is not None and plan_digest(read.plan) == meta["plan_digest"]
    assert read.effects == plans.stored_effects(meta, columns) and read.fee is not None
    assert read.effects == tuple(decode_plan(read.plan, lookup=adapter.account_lookup()))
    swapped = meta.copy()
    swapped["signed"] = other["signed"]
    with pytest.raises(plans.PlanRefusedError) as refused:
        plans.stored_plan(swapped, adapter, other_hash, row=columns)
    assert refused.value.code == "PLAN_MISMATCH"


def test_unsent_presigned_bytes_are_judged_again_on_the_plan_in_them(tmp_path: Path) -> None:
    """Presigned bytes left unsent by a crash after admission's commit: judged again in full
    (the effects and fee stored, the plan read from the bytes), the decision is the same,
    and recovery sends them; the recipient is paid once."""
    crash = {"on": True}

    def on_stage(stage: str, tx_id: str) -> None:
        if stage == "admitted" and crash["on"]:
            raise RuntimeError("crash after admission's commit")

    dest = recipient("solana")
    with local_wallet(tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=on_stage)) as w:
        agent = new_agent(w, "solana")
        token = w.issue_session(agent.id).token
        amount = TIER_AMOUNTS["solana"]["INSTANT"]
        with pytest.raises(RuntimeError):
            w.send(token, Transfer(to=dest, amount=amount))
        crash["on"] = False
        tx_id = _only_submitted(w)
        pipeline = w._pipeline
        with pipeline.db.read() as uow:
            row = uow.transactions.get(tx_id)
            held_by = uow.agents.get(agent.id)
            assert row is not None and held_by is not None
            meta = pipeline._meta(row)
            assert "plan" not in meta
            assert pipeline._recheck(uow, row, held_by, meta, w.clock.now(), full=True) is None
        pipeline.reconcile(tx_id, resend=True)
        done = w.get_transaction(tx_id)
        assert done.status == "CONFIRMED", (done.status, done.error)
        assert w.network_adapter("solana", NETWORK["solana"]).get_balance(dest) == amount
        _check(w, tx_id)


def _only_submitted(w: Wallet) -> str:
    with w._pipeline.db.read() as uow:
        (row,) = uow.transactions.with_status(["SUBMITTED"])
    return row.id


# --------------------------------------------------------------------------- the columns' part


@pytest.mark.parametrize("column", ["to_address", "amount"])
def test_a_waiting_row_whose_columns_are_edited_pays_nobody(tmp_path: Path, column: str) -> None:
    """A DELAY transfer stores no request: its columns hold it. A file-write attacker who
    points ``to_address`` at themselves, or raises ``amount``, changes the request the
    pipeline would read back and sign; the row's MAC covers that request, so when the
    transaction is due it is refused (TAMPER_DETECTED), nothing is signed and nobody is
    paid."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    dest, thief = recipient("solana"), recipient("solana")
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id, ttl=86_400).token
        queued = w.send(token, Transfer(to=dest, amount=2 * SOL))
        assert (queued.status, queued.tier) == ("QUEUED", "DELAY")
    assert "request" not in json.loads(_row(path, queued.id)["metadata_json"])
    value = thief if column == "to_address" else str(10 * SOL)
    with raw_connect(path, autocommit=False) as conn:
        conn.execute(f"UPDATE transactions SET {column} = ? WHERE id = ?", (value, queued.id))
        conn.commit()
    clock.advance(10_000)
    with _open(path, clock) as w:
        with pytest.raises(TamperDetectedError):
            _check(w, queued.id)
        w.process_due()
        assert w.get_transaction(queued.id).status == "FAILED"
        adapter = w.network_adapter("solana", "localnet")
        assert adapter.get_balance(thief) == 0 and adapter.get_balance(dest) == 0
        tampered = w.audit(event_types=["TAMPER_DETECTED"]).entries
        assert tampered and tampered[0].tx_id == queued.id
        assert not [e for e in w.audit(tx_id=queued.id).entries if e.event_type == "TX_SIGNED"]


def test_the_token_a_row_reads_from_its_asset_is_covered(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    """A token transfer's stored ``asset`` is its request's token: the MAC covers the
    request read back, so another token put there (or a field added to what the row
    stores of the request) no longer verifies."""
    path, clock, _tx_id = confirmed
    token, other = recipient("solana"), recipient("solana")
    request = stored_request(TokenTransfer(token=token, to=recipient("solana"), amount=7))
    row = {
        "id": "t1",
        "agent_id": "a1",
        "chain": "solana",
        "type": "TOKEN_TRANSFER",
        "amount": "7",
        "to_address": request["to"],
        "tier": "INSTANT",
        "status": "PENDING",
    }
    meta = {"network": "localnet", "asset": token, "decision": {"tier": "INSTANT"}}
    assert request_of(meta, SimpleNamespace(**row)) == request
    with _open(path, clock) as w:
        mac = _sealed_as(w, row, meta)
        assert mac == _sealed_as(w, row, {**meta, "request": request})  # the same request
        for forged in ({**meta, "asset": other}, {**meta, "request": {"decimals": 9}}):
            view = SimpleNamespace(
                **row, metadata_json=json.dumps(forged, separators=(",", ":")), integrity=mac
            )
            assert not integrity.tx_ok(w._integrity, view)


def test_the_effects_a_row_reads_from_its_columns_are_covered(
    confirmed: tuple[Path, FrozenClock, str],
) -> None:
    """A plain transfer's effect is stored without its destination and amount (the row's
    ``to_address`` and ``amount``); what is read back, judged and shown is the effect whole,
    and the MAC covers that: a destination or amount written into the stored effect (or a
    column edited) no longer verifies."""
    path, clock, tx_id = confirmed
    row = _row(path, tx_id)
    meta = json.loads(row["metadata_json"])
    (effect,) = meta["effects"]
    assert set(effect) == {"effect", "source"}
    with _open(path, clock) as w:
        shown = w.transaction_display(tx_id)
        assert row["to_address"] in shown.effects[0].text
    for forged in ({"destination": recipient("solana")}, {"amount": str(SOL)}):
        _write(path, tx_id, {**meta, "effects": [{**effect, **forged}]})
        with _open(path, clock) as w, pytest.raises(TamperDetectedError):
            _check(w, tx_id)
