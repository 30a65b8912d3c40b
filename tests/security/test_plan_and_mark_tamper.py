"""A file-write attacker edits what the MACs of issue 10 did not cover yet: the stored plan
(its digest, the plan document, its effects, the digest the owner approved), the owner's
decision on an approval, and the AUTO_STOP resume mark. Each edit is made with a raw
connection to the closed database (sqlite3, or psycopg on PostgreSQL); the reopened wallet
refuses before signing (or before evaluation) with TamperDetectedError, writes a critical
TAMPER_DETECTED audit row and notifies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SOL, EvmOwner, new_agent, recipient
from tests.support.rawdb import raw_connect
from tests.support.reopen import forget_reopened_chains  # noqa: F401 (autouse)
from tests.support.reopen import open_on_same_chains as _open
from waiaas import integrity
from waiaas.errors import PolicyDeniedError, TamperDetectedError
from waiaas.testing import FrozenClock
from waiaas.types import AuditEvent, Transfer
from waiaas.wallet import Wallet

MARK = "auto-stop-mark:"


def _sql(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Edit the closed database behind waiaas's back (SQLite file or PostgreSQL schema)."""
    with raw_connect(path, autocommit=False) as conn:
        for sql, params in statements:
            conn.execute(sql, params)
        conn.commit()


def _meta(path: Path, tx_id: str) -> dict[str, Any]:
    with raw_connect(path) as conn:
        (text,) = conn.one("SELECT metadata FROM transactions WHERE id = ?", (tx_id,)) or ("",)
    data: dict[str, Any] = json.loads(text)
    return data


def _tamper_rows(w: Wallet) -> list[Any]:
    return list(w.audit(event_types=[AuditEvent.TAMPER_DETECTED]).entries)


def _notified(w: Wallet) -> list[Any]:
    target = w._pipeline.notifier.target  # type: ignore[union-attr]
    return [e for e in target.events if e.event_type == AuditEvent.TAMPER_DETECTED]


# --------------------------------------------------------------------------- the stored plan


@pytest.fixture
def two_delays(tmp_path: Path) -> tuple[Path, FrozenClock, str, str]:
    """A closed wallet with two DELAY transactions of one agent: 2 SOL to a supplier and
    2.5 SOL to someone else (whose plan the attacker will borrow)."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=50 * SOL)
        token = w.issue_session(agent.id, ttl=86_400).token
        first = w.send(token, Transfer(to=recipient("solana"), amount=2 * SOL))
        other = w.send(token, Transfer(to=recipient("solana"), amount=5 * SOL // 2))
        assert (first.tier, other.tier) == ("DELAY", "DELAY")
    return path, clock, first.id, other.id


def _edit_meta(path: Path, tx_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a transaction's metadata document as the attacker wants it (read, edit in
    Python, write back: the same on SQLite and PostgreSQL, where the column is TEXT)."""
    meta = _meta(path, tx_id)
    edit(meta)
    text = json.dumps(meta, separators=(",", ":"))
    _sql(path, ("UPDATE transactions SET metadata = ? WHERE id = ?", (text, tx_id)))


def _swap_plan(donor_meta: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def swap(meta: dict[str, Any]) -> None:
        for key in ("plan", "plan_digest", "effects"):
            meta[key] = donor_meta[key]

    return swap


def _set(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        node: Any = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _drop_plan(meta: dict[str, Any]) -> None:
    for key in ("plan", "plan_digest", "effects"):
        meta.pop(key, None)


@pytest.mark.parametrize(
    "edit",
    ["plan_digest", "plan", "effects", "swap", "approved_digest", "drop_plan"],
)
def test_an_edited_stored_plan_is_refused_before_signing(
    two_delays: tuple[Path, FrozenClock, str, str], edit: str
) -> None:
    """Each edit of the stored plan (its digest alone, the plan document, the effects the
    policies judge, the whole plan swapped for another transaction's, an approved digest
    added, the plan removed so it would be rebuilt) leaves the DELAY unsigned and FAILED."""
    path, clock, tx_id, donor = two_delays
    edits: dict[str, Callable[[dict[str, Any]], None]] = {
        "plan_digest": _set("plan_digest", value="0x" + "ab" * 32),
        "plan": _set("plan", "instructions", 0, "data", value="0x020000000000e1f50500000000"),
        "effects": _set("effects", 0, "amount", value="1"),
        "swap": _swap_plan(_meta(path, donor)),
        "approved_digest": _set("approval", value={"plan_digest": "0x" + "cd" * 32}),
        "drop_plan": _drop_plan,
    }
    _edit_meta(path, tx_id, edits[edit])
    clock.advance(10_000)
    with _open(path, clock) as w:
        report = w.process_due()
        tx = w.get_transaction(tx_id)
        assert tx.status == "FAILED" and tx.tx_hash is None
        assert tx.error is not None and tx.error.startswith("TAMPER_DETECTED")
        assert any(p.tx_id == tx_id and p.code == "TAMPER_DETECTED" for p in report.problems)
        rows = _tamper_rows(w)
        assert rows[0].tx_id == tx_id and rows[0].severity == "critical"
        assert rows[0].details["entity"] == "transaction"
        assert _notified(w)
        # the untouched transaction still executes
        assert w.get_transaction(donor).status == "CONFIRMED"


def test_an_untouched_plan_still_executes(two_delays: tuple[Path, FrozenClock, str, str]) -> None:
    """The baseline: the MAC covers the plan without refusing a transaction nobody edited."""
    path, clock, tx_id, donor = two_delays
    clock.advance(10_000)
    with _open(path, clock) as w:
        w.process_due()
        assert w.get_transaction(tx_id).status == "CONFIRMED"
        assert w.get_transaction(donor).status == "CONFIRMED"
        assert _tamper_rows(w) == []
    with raw_connect(path) as conn:
        macs = [r[0] for r in conn.all("SELECT integrity FROM transactions")]
    # both ended CONFIRMED: resealed with the final MAC (it covers the plan digest too)
    assert macs and all(m.startswith(integrity.TX_MAC_FINAL) for m in macs)


# --------------------------------------------------------------------------- approvals


@pytest.fixture
def approval_pending(tmp_path: Path) -> tuple[Path, FrozenClock, EvmOwner, str]:
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    owner = EvmOwner()
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", owner=owner, funds=50 * SOL)
        token = w.issue_session(agent.id).token
        result = w.send(token, Transfer(to=recipient("solana"), amount=11 * SOL))
        assert (result.status, result.tier) == ("QUEUED", "APPROVAL")
    return path, clock, owner, result.id


def test_setting_approved_at_in_the_file_does_not_approve(
    approval_pending: tuple[Path, FrozenClock, EvmOwner, str],
) -> None:
    """The attacker marks the pending approval approved (with a made-up signature):
    process_due would run it as approved; the approval's MAC now covers the decision, so it
    is refused before signing."""
    path, clock, _owner, tx_id = approval_pending
    _sql(
        path,
        (
            "UPDATE pending_approvals SET approved_at = ?, owner_signature = ? WHERE tx_id = ?",
            (clock.now(), "0x" + "11" * 65, tx_id),
        ),
    )
    with _open(path, clock) as w:
        w.process_due()
        tx = w.get_transaction(tx_id)
        assert tx.status == "FAILED" and tx.tx_hash is None
        rows = _tamper_rows(w)
        assert rows[0].tx_id == tx_id and rows[0].details["entity"] == "approval"
        assert _notified(w)


def test_an_approved_digest_edited_after_the_owner_signed_is_refused(
    approval_pending: tuple[Path, FrozenClock, EvmOwner, str],
) -> None:
    """The owner approves in one process, which is stopped before signing (the approval is
    committed, the transaction still QUEUED); the attacker edits the approved digest and the
    plan; the next process refuses to sign."""
    path, clock, owner, tx_id = approval_pending
    with _open(path, clock) as w:
        message = w.approval_message(tx_id)

        class Stop(Exception):
            pass

        def stop(stage: str, _tx: str) -> None:
            if stage == "approved":
                raise Stop

        w._pipeline.hooks.stage = stop  # type: ignore[method-assign]
        with pytest.raises(Stop):
            w.approve(tx_id, owner.sign(message))
        assert w.get_transaction(tx_id).status == "QUEUED"
    meta = _meta(path, tx_id)
    assert meta["approval"]["plan_digest"] == meta["plan_digest"]
    forged = "0x" + "ee" * 32
    _edit_meta(path, tx_id, _set("approval", "plan_digest", value=forged))
    _edit_meta(path, tx_id, _set("plan_digest", value=forged))
    with _open(path, clock) as w:
        w.process_due()
        tx = w.get_transaction(tx_id)
        assert tx.status == "FAILED" and tx.tx_hash is None
        assert _tamper_rows(w)[0].details["entity"] == "transaction"


# --------------------------------------------------------------------------- resume mark


@pytest.fixture
def probing(tmp_path: Path) -> tuple[Path, FrozenClock, str, str, str]:
    """A closed wallet: an agent under AUTO_STOP max_denials=3 (1 h) with a one-recipient
    allow-list, two denials already counted; a second agent resumed once (a genuine mark)."""
    path = tmp_path / "wallet.db"
    clock = FrozenClock()
    with _open(path, clock) as w:
        agent = new_agent(w, "solana", funds=10 * SOL)
        w.add_policy(
            "AUTO_STOP",
            {"trigger": "max_denials", "threshold": 3, "window_seconds": 3600},
            agent_id=agent.id,
        )
        w.add_policy("ALLOWED_ADDRESSES", {"addresses": [recipient("solana")]}, agent_id=agent.id)
        token = w.issue_session(agent.id, ttl=86_400).token
        for _ in range(2):
            with pytest.raises(PolicyDeniedError):
                w.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
        other = new_agent(w, "solana", funds=SOL)
        w.suspend_agent(other.id, reason="maintenance")
        w.resume_agent(other.id)
    return path, clock, agent.id, other.id, token


def _mark(path: Path, agent_id: str) -> dict[str, Any] | None:
    with raw_connect(path) as conn:
        row = conn.one("SELECT value FROM wallet_state WHERE key = ?", (MARK + agent_id,))
    return None if row is None else dict(json.loads(row[0]))


def _forge_mark(path: Path, agent_id: str, value: dict[str, Any]) -> None:
    _sql(
        path,
        (
            "INSERT INTO wallet_state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT"
            " (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (MARK + agent_id, json.dumps(value, sort_keys=True), 1),
        ),
    )


@pytest.mark.parametrize("how", ["inserted", "moved_forward", "copied"])
def test_a_forged_resume_mark_cannot_reset_the_denial_counter(
    probing: tuple[Path, FrozenClock, str, str, str], how: str
) -> None:
    """Without the forgery the third denial suspends the agent. A mark inserted without the
    key, a genuine one moved forward past the denials, or another agent's genuine mark
    copied: the next request is refused with TamperDetectedError (entity agent), audited
    critical and notified, and the denials are not forgotten."""
    path, clock, agent_id, other_id, token = probing
    genuine = _mark(path, other_id)
    assert genuine is not None and "mac" in genuine
    huge = {"tx": 10**9, "audit": 10**9}
    if how == "inserted":
        _forge_mark(path, agent_id, huge)
    elif how == "moved_forward":
        _forge_mark(path, agent_id, {**genuine, **huge})
    else:
        _forge_mark(path, agent_id, genuine)
    with _open(path, clock) as w:
        with pytest.raises(TamperDetectedError) as caught:
            w.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
        assert caught.value.entity == "agent" and caught.value.entity_id == agent_id
        rows = _tamper_rows(w)
        assert rows and rows[0].severity == "critical"
        assert rows[0].agent_id == agent_id and rows[0].details["entity"] == "agent"
        assert "resume mark" in rows[0].details["message"]
        assert _notified(w)
        assert w.get_agent(agent_id).status == "ACTIVE"  # nothing was admitted or reset


def test_a_forged_mark_is_detected_on_the_refusal_path_too(
    probing: tuple[Path, FrozenClock, str, str, str],
) -> None:
    """A malformed request (which leaves no transaction row) also reads the counters: the
    refusal is still recorded, and the forgery is detected and audited."""
    path, clock, agent_id, _other, token = probing
    _forge_mark(path, agent_id, {"tx": 10**9, "audit": 10**9})
    with _open(path, clock) as w:
        with pytest.raises(TamperDetectedError):
            w.send(token, {"type": "TRANSFER", "to": recipient("solana"), "amount": -1})
        kinds = [e.event_type for e in w.audit(agent_id=agent_id, limit=5).entries]
        assert kinds[:2] == [AuditEvent.TAMPER_DETECTED, AuditEvent.REQUEST_REFUSED]


def test_the_genuine_resume_still_restarts_the_counter(
    probing: tuple[Path, FrozenClock, str, str, str],
) -> None:
    """The baseline, across a reopen: the third denial suspends the agent; the owner resumes
    it (a MAC'd mark); a fresh session's next denial does not suspend it again."""
    path, clock, agent_id, _other, token = probing
    with _open(path, clock) as w:
        with pytest.raises(PolicyDeniedError):
            w.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
        assert w.get_agent(agent_id).status == "SUSPENDED"
        w.resume_agent(agent_id)
    mark = _mark(path, agent_id)
    assert mark is not None and isinstance(mark.get("mac"), str)
    with _open(path, clock) as w:
        fresh = w.issue_session(agent_id).token
        with pytest.raises(PolicyDeniedError):
            w.send(fresh, Transfer(to=recipient("solana"), amount=SOL // 100))
        assert w.get_agent(agent_id).status == "ACTIVE"
        assert _tamper_rows(w) == []
