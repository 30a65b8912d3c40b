"""The slim audit rows of a transaction against a thief with write access to the file.

An INSTANT presigned send is audited by two rows: ``TX_REQUESTED`` (which for presigned
bytes also records their signing and the move PENDING -> SUBMITTED: their ``tx_hash``) and
``TX_CONFIRMED``. A sealed row's ``TX_REQUESTED`` stores no value the row's MAC covers (the
request in short, the plan digest, an INSTANT tier) and a final move no ``fee`` its sealed
row keeps; ``Wallet.audit`` puts them back from a row whose MAC verifies.

Each attack is named as before the change: an edited, deleted or forged audit row by the
chain (``open`` refuses, ``verify_audit`` names it), an edited transaction row by its MAC,
whose values are then never put back into the audit page; the transaction's hash stays in
the audit row (the row's ``tx_hash`` column is not under its MAC). A database written in
the two-row form before verifies and maps as it did."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SOL, all_audit, new_agent, recipient, signings
from tests.security.test_tamper_evidence import _attack, _open, _refused, _reported
from tests.support.rawdb import raw_connect
from waiaas import integrity
from waiaas.db.chain import row_digest
from waiaas.db.repositories import AuditRepository
from waiaas.errors import TamperDetectedError
from waiaas.pipeline import admission, states
from waiaas.pipeline.states import audited_move
from waiaas.types import AuditEvent, Transfer

AMOUNT = SOL // 100


def _send(path: Path) -> tuple[str, str, str]:
    """One INSTANT transfer on a new wallet at ``path``: (tx id, tx hash, recipient)."""
    to = recipient("solana")
    with _open(path) as w:
        agent = new_agent(w, "solana", funds=10 * SOL)
        token = w.issue_session(agent.id).token
        result = w.send(token, Transfer(to=to, amount=AMOUNT))
        assert result.status == "CONFIRMED" and result.tier == "INSTANT"
        assert result.tx_hash is not None
    return result.id, result.tx_hash, to


@pytest.fixture
def sent(tmp_path: Path) -> tuple[Path, str, str, str]:
    path = tmp_path / "wallet.db"
    return (path, *_send(path))


def _stored(path: Path, tx_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    """A transaction's audit rows as the file stores them: (id, event, details)."""
    with raw_connect(path) as conn:
        rows = conn.all(
            "SELECT id, event_type, details FROM audit_log WHERE tx_id = ? ORDER BY id", (tx_id,)
        )
    return [(int(r[0]), str(r[1]), json.loads(r[2])) for r in rows]


def _mapped(path: Path, tx_id: str) -> list[tuple[str, dict[str, Any]]]:
    with _open(path) as w:
        return [(e.event_type, dict(e.details)) for e in all_audit(w, tx_id=tx_id)]


def test_a_presigned_send_is_two_slim_rows_read_back_whole(
    sent: tuple[Path, str, str, str],
) -> None:
    """Stored: the hash once, nothing the row's MAC covers; read: the request, the tier, the
    fee, the move PENDING -> SUBMITTED and the signing."""
    path, tx_id, tx_hash, to = sent
    assert [(e, d) for _, e, d in _stored(path, tx_id)] == [
        ("TX_REQUESTED", {"tx_hash": tx_hash}),
        ("TX_CONFIRMED", {}),
    ]
    with _open(path) as w:
        fee = w.get_transaction(tx_id).fee
        digest = json.loads(w._pipeline.get_row(tx_id).metadata_json or "{}")["plan_digest"]
        entries = all_audit(w, tx_id=tx_id)
        assert signings(w, tx_id) == [{"tx_hash": tx_hash}]
    assert fee is not None and fee > 0
    requested, confirmed = entries
    assert requested.details == {
        "type": "TRANSFER",
        "amount": str(AMOUNT),
        "asset": "native",
        "to": to,
        "tier": "INSTANT",
        "plan_digest": digest,
        "tx_hash": tx_hash,
    }
    assert confirmed.details == {"fee": str(fee)}
    assert [audited_move(e.event_type, e.details) for e in entries] == [
        ("PENDING", "SUBMITTED"),
        ("SUBMITTED", "CONFIRMED"),
    ]


def test_editing_the_merged_rows_hash_is_named_altered(
    sent: tuple[Path, str, str, str],
) -> None:
    """The hash the audit names is the chain's: rewriting it breaks the row."""
    path, tx_id, tx_hash, _ = sent
    rid, _, details = _stored(path, tx_id)[0]
    forged = json.dumps({**details, "tx_hash": "1" + tx_hash[1:]}, separators=(",", ":"))
    _attack(path, ("UPDATE audit_log SET details = ? WHERE id = ?", (forged, rid)))
    assert _refused(path).problem == "altered"
    report, _ = _reported(path)
    assert report.problem == "altered" and report.first_broken_id == rid


def test_writing_the_request_into_the_merged_row_is_named_altered(
    sent: tuple[Path, str, str, str],
) -> None:
    """A thief who writes another recipient or tier into the slim row (where ``Wallet.audit``
    would read them first) breaks it like any other edit."""
    path, tx_id, _, _ = sent
    rid, _, details = _stored(path, tx_id)[0]
    forged = json.dumps({**details, "to": recipient("solana"), "tier": "APPROVAL"})
    _attack(path, ("UPDATE audit_log SET details = ? WHERE id = ?", (forged, rid)))
    assert _refused(path).problem == "altered"


def test_deleting_the_merged_row_is_named_deleted(sent: tuple[Path, str, str, str]) -> None:
    path, tx_id, _, _ = sent
    rid = _stored(path, tx_id)[0][0]
    _attack(path, ("DELETE FROM audit_log WHERE id = ?", (rid,)))
    assert _refused(path).problem == "deleted"
    report, _ = _reported(path)
    assert report.problem == "deleted" and report.first_broken_id == rid + 1


def test_a_forged_two_row_form_is_named_forged(sent: tuple[Path, str, str, str]) -> None:
    """A TX_SUBMITTED row ``from`` PENDING naming another hash, chained by hash after the
    last row, has no MAC from the wallet's key: 'forged', and the hash it names is never
    read as a signing."""
    path, tx_id, tx_hash, _ = sent
    with raw_connect(path) as conn:
        last = conn.one("SELECT id, row_hash FROM audit_log ORDER BY id DESC")
        agent_id = conn.one("SELECT agent_id FROM transactions WHERE id = ?", (tx_id,))
    assert last is not None and agent_id is not None
    other = "2" + tx_hash[1:]
    values = (
        2_000_000_000,
        "TX_SUBMITTED",
        "system",
        agent_id[0],
        None,
        tx_id,
        json.dumps({"from": "PENDING", "tx_hash": other}),
        "info",
        None,
    )
    _attack(
        path,
        (
            "INSERT INTO audit_log (timestamp, event_type, actor, agent_id, session_id, tx_id,"
            " details, severity, ip_address, prev_hash, row_hash, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, None, row_digest(last[1], values), hashlib.sha256(b"guess").digest()),
        ),
    )
    assert _refused(path).problem == "forged"
    report, _ = _reported(path)
    assert report.problem == "forged" and report.first_broken_id == last[0] + 1


def test_an_edited_tx_hash_column_still_differs_from_the_audit(
    sent: tuple[Path, str, str, str],
) -> None:
    """The row's ``tx_hash`` column is not under its MAC; the audit row keeps the hash that
    was signed, which the page reads from the chain-covered row, not from the column."""
    path, tx_id, tx_hash, _ = sent
    other = "3" + tx_hash[1:]
    _attack(path, ("UPDATE transactions SET tx_hash = ? WHERE id = ?", (other, tx_id)))
    with _open(path) as w:
        assert w.verify_audit().ok
        assert w.get_transaction(tx_id).tx_hash == other
        assert signings(w, tx_id) == [{"tx_hash": tx_hash}]
        requested = all_audit(w, tx_id=tx_id)[0]
    assert requested.details["tx_hash"] == tx_hash


@pytest.mark.parametrize(
    ("column", "value"),
    [("amount", "999999999"), ("to_address", "Attacker11111111111111111111111111111111111")],
)
def test_an_edited_transaction_row_is_never_read_into_the_audit(
    sent: tuple[Path, str, str, str], column: str, value: str
) -> None:
    """The request is stored once, in the row under its MAC: an edit there is named by the
    row's check as before, and the audit page then shows the row as stored (the forged
    value never appears in it)."""
    path, tx_id, tx_hash, _ = sent
    _attack(path, (f"UPDATE transactions SET {column} = ? WHERE id = ?", (value, tx_id)))
    with _open(path) as w:
        assert w.verify_audit().ok  # the chain is untouched
        with pytest.raises(TamperDetectedError):
            integrity.check_tx(w._integrity, w._pipeline.get_row(tx_id))
        entries = all_audit(w, tx_id=tx_id)
    assert [(e.event_type, e.details) for e in entries] == [
        ("TX_REQUESTED", {"tx_hash": tx_hash}),
        ("TX_CONFIRMED", {}),
    ]
    assert value not in json.dumps([e.details for e in entries])


def test_an_edited_fee_is_never_read_into_the_audit(sent: tuple[Path, str, str, str]) -> None:
    path, tx_id, _, _ = sent
    _attack(
        path,
        (
            "UPDATE transactions SET metadata = json_set(metadata, '$.fee', ?) WHERE id = ?",
            ("1", tx_id),
        ),
    )
    with _open(path) as w:
        confirmed = all_audit(w, tx_id=tx_id)[-1]
    assert confirmed.event_type == "TX_CONFIRMED" and confirmed.details == {}


# --------------------------------------------------------------------------- the two-row form


@pytest.fixture
def old_writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Admission and the final move write the rows the way they were written before: a
    full TX_REQUESTED (request, tier, plan digest), then TX_SUBMITTED ``from`` PENDING with
    the hash and nonce; TX_CONFIRMED with its fee."""
    real_details = admission._requested_details
    real_append = AuditRepository.append
    pending: dict[str, dict[str, Any]] = {}

    def details(req: Any, row: Any, prepared: Any, tier: Any, **kw: Any) -> dict[str, Any]:
        signed = kw.get("signed")
        if signed is not None:
            pending[row.id] = {"from": "PENDING", "tx_hash": signed.tx_hash}
            if signed.nonce is not None:
                pending[row.id]["nonce"] = signed.nonce
        return dict(real_details(req, row, prepared, tier))

    def append(self: AuditRepository, event: Any, **kw: Any) -> int:
        rid = real_append(self, event, **kw)
        submitted = pending.pop(kw.get("tx_id") or "", None)
        if str(getattr(event, "value", event)) == "TX_REQUESTED" and submitted is not None:
            real_append(
                self,
                AuditEvent.TX_SUBMITTED,
                actor="system",
                now=kw["now"],
                agent_id=kw.get("agent_id"),
                tx_id=kw.get("tx_id"),
                details=submitted,
            )
        return rid

    monkeypatch.setattr(admission, "_requested_details", details)
    monkeypatch.setattr(AuditRepository, "append", append)
    monkeypatch.setattr(states, "_unsealed", lambda event, details, fields: details)
    yield


def test_a_database_written_in_the_two_row_form_verifies_and_reads_as_before(
    tmp_path: Path, old_writer: None
) -> None:
    old = tmp_path / "old.db"
    tx_id, tx_hash, to = _send(old)
    stored = _stored(old, tx_id)
    assert [e for _, e, _ in stored] == ["TX_REQUESTED", "TX_SUBMITTED", "TX_CONFIRMED"]
    requested, submitted, confirmed = (d for _, _, d in stored)
    assert requested["to"] == to and requested["tier"] == "INSTANT" and "plan_digest" in requested
    assert submitted == {"from": "PENDING", "tx_hash": tx_hash}
    assert "fee" in confirmed
    with _open(old) as w:
        assert w.verify_audit().ok
        entries = all_audit(w, tx_id=tx_id)
        assert signings(w, tx_id) == [{"from": "PENDING", "tx_hash": tx_hash}]
    # read exactly as stored: nothing put back, nothing taken away
    assert [(e.event_type, e.details) for e in entries] == [(e, d) for _, e, d in stored]
    moves = [m for e in entries if (m := audited_move(e.event_type, e.details))]
    assert moves == [("PENDING", "SUBMITTED"), ("SUBMITTED", "CONFIRMED")]


def test_both_forms_read_as_the_same_history(tmp_path: Path) -> None:
    """The slim form, read through ``Wallet.audit``, says what the two-row form said: the
    same request, moves, signing and fee (the plan digest is the row's)."""
    new = tmp_path / "new.db"
    tx_id, tx_hash, to = _send(new)
    entries = _mapped(new, tx_id)
    moves = [m for e, d in entries if (m := audited_move(e, d))]
    assert moves == [("PENDING", "SUBMITTED"), ("SUBMITTED", "CONFIRMED")]
    requested = entries[0][1]
    with _open(new) as w:
        digest = json.loads(w._pipeline.get_row(tx_id).metadata_json or "{}")["plan_digest"]
    assert {k: requested[k] for k in ("type", "amount", "asset", "to", "tier")} == {
        "type": "TRANSFER",
        "amount": str(AMOUNT),
        "asset": "native",
        "to": to,
        "tier": "INSTANT",
    }
    assert requested["plan_digest"] == digest
    assert states.signing_record(*entries[0]) == {"tx_hash": tx_hash}
    assert "fee" in entries[-1][1]
