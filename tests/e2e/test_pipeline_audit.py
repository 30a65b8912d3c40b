"""The audit trail of the pipeline (every status change has its row, in order), the audit
query API (filters, pages), and dry runs (explain, write nothing)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (
    SOL,
    TIER_AMOUNTS,
    all_audit,
    drive_every_path,
    events_of,
    new_agent,
    recipient,
    row_counts,
    signings,
    snapshot,
)
from waiaas.errors import AuthError, InvalidAddressError
from waiaas.pipeline.states import audited_move
from waiaas.types import AuditEntry, Transfer, TxStatus
from waiaas.wallet import Wallet

EXPECTED_EVENTS = {
    # INSTANT / NOTIFY: signed before admission's lock, recorded and cleared in its commit
    # (one TX_REQUESTED row names the hash and the move to SUBMITTED: no TX_SIGNED or
    # TX_SUBMITTED row on this path)
    "instant": ["TX_REQUESTED", "TX_CONFIRMED"],
    "notify": ["TX_REQUESTED", "TX_CONFIRMED"],
    "delay": ["TX_REQUESTED", "TX_QUEUED", "TX_FAILED"],
    "cancelled": ["TX_REQUESTED", "TX_QUEUED", "TX_CANCELLED"],
    "approved": [
        "TX_REQUESTED",
        "TX_QUEUED",
        "TX_APPROVED",
        "TX_EXECUTING",
        "TX_SIGNED",
        "TX_SUBMITTED",
        "TX_CONFIRMED",
    ],
    "rejected": ["TX_REQUESTED", "TX_QUEUED", "TX_REJECTED", "TX_CANCELLED"],
    "expired": ["TX_REQUESTED", "TX_QUEUED", "TX_EXPIRED"],
    "denied": ["TX_REQUESTED", "POLICY_VIOLATION"],
}
FINAL = {
    "instant": "CONFIRMED",
    "notify": "CONFIRMED",
    "delay": "FAILED",
    "cancelled": "CANCELLED",
    "approved": "CONFIRMED",
    "rejected": "CANCELLED",
    "expired": "EXPIRED",
    "denied": "FAILED",
}


def test_every_status_change_has_its_audit_row(wallet: Wallet, chain: str) -> None:
    """For each path, the TX_* rows are exactly the expected sequence, and the rows that
    record a status change chain from PENDING to the final status with no gap."""
    ids = drive_every_path(wallet, chain)
    for label, tx_id in ids.items():
        tx = wallet.get_transaction(tx_id)
        assert tx.status == FINAL[label], label
        entries = all_audit(wallet, tx_id=tx_id)
        assert [
            e.event_type
            for e in entries
            if e.event_type.startswith("TX_") or e.event_type == "POLICY_VIOLATION"
        ] == EXPECTED_EVENTS[label], label
        assert all(e.agent_id == tx.agent_id for e in entries), label
        # the hash is audited once, in the row that records the signing (either path)
        hashes = [d["tx_hash"] for d in signings(wallet, tx_id)]
        assert hashes == ([tx.tx_hash] if tx.tx_hash is not None else []), label
        # a move's row names the statuses its event type does not imply (audited_move)
        changes = [m for e in entries if (m := audited_move(e.event_type, e.details))]
        if label == "denied":
            assert changes == []  # recorded FAILED at once, never in flight
            continue
        current = "PENDING"
        for before, after in changes:
            assert before == current, (label, changes)
            current = after
        assert current == tx.status, (label, changes)
        assert TxStatus(current).is_terminal


def test_kill_switch_cancellation_is_in_the_trail(wallet: Wallet) -> None:
    """A transaction cancelled by the kill switch records that change too."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    queued = wallet.send(
        token, Transfer(to=recipient("solana"), amount=TIER_AMOUNTS["solana"]["DELAY"])
    )
    wallet.kill_switch("stop")
    last = all_audit(wallet, tx_id=queued.id)[-1]
    assert last.event_type == "TX_CANCELLED"
    assert audited_move(last.event_type, last.details) == ("QUEUED", "CANCELLED")


def test_audit_filters(wallet: Wallet) -> None:
    """audit() filters by agent, transaction, event types, severities and time range."""
    clock = wallet.clock
    ids = drive_every_path(wallet, "solana")
    other = new_agent(wallet, "evm", name="other")
    agent_id = wallet.get_transaction(ids["instant"]).agent_id
    everything = all_audit(wallet)
    assert {e.agent_id for e in all_audit(wallet, agent_id=agent_id)} == {agent_id}
    assert {e.agent_id for e in all_audit(wallet, agent_id=other.id)} == {other.id}
    assert [e.event_type for e in all_audit(wallet, tx_id=ids["instant"])] == events_of(
        wallet, ids["instant"]
    )
    confirmed = all_audit(wallet, event_types=["TX_CONFIRMED"])
    assert {e.tx_id for e in confirmed} == {ids["instant"], ids["notify"], ids["approved"]}
    mixed = all_audit(wallet, event_types=["TX_EXPIRED", "TX_REJECTED"])
    assert {e.tx_id for e in mixed} == {ids["expired"], ids["rejected"]}
    warnings = all_audit(wallet, severities=["warning"])
    assert warnings and all(e.severity == "warning" for e in warnings)
    assert {"POLICY_VIOLATION", "TX_FAILED"} <= {e.event_type for e in warnings}
    start = everything[0].timestamp
    assert all_audit(wallet, until=start) == [e for e in everything if e.timestamp <= start]
    assert all_audit(wallet, since=clock.now()) == [
        e for e in everything if e.timestamp >= clock.now()
    ]
    assert all_audit(wallet, agent_id="01900000-0000-7000-8000-000000000000") == []


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_audit_pages_cover_everything_once(wallet: Wallet, limit: int) -> None:
    """Walking the pages with next_cursor visits every entry exactly once, newest first,
    matching one big page; filters apply across pages."""
    drive_every_path(wallet, "evm")
    full = wallet.audit(limit=1000)
    assert full.next_cursor is None
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = wallet.audit(limit=limit, cursor=cursor)
        pages += 1
        assert len(page.entries) <= limit
        seen.extend(e.id for e in page.entries)
        if page.next_cursor is None:
            break
        assert page.next_cursor == page.entries[-1].id
        cursor = page.next_cursor
    assert seen == [e.id for e in full.entries]
    assert seen == sorted(seen, reverse=True)
    assert pages >= len(seen) // limit
    tx_only: list[AuditEntry] = []
    cursor = None
    while True:
        page = wallet.audit(limit=limit, cursor=cursor, event_types=["TX_QUEUED"])
        tx_only.extend(page.entries)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [e.id for e in tx_only] == [e.id for e in full.entries if e.event_type == "TX_QUEUED"]


# --------------------------------------------------------------------------- dry run


def test_dry_run_writes_nothing_and_explains(wallet: Wallet) -> None:
    """A dry run of a request over a per-transaction cap says it would be denied, which rule
    fired and what would pass. The owner's writes no row in any table; the agent's own writes
    one compact DRY_RUN audit row and nothing else."""
    agent = new_agent(wallet, "solana")
    policy = wallet.add_policy("SPENDING_LIMIT", {"per_transaction": str(SOL)}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token
    before_rows, before_counts = snapshot(wallet), row_counts(wallet)
    request = Transfer(to=recipient("solana"), amount=2 * SOL)
    explanation = wallet.dry_run(request, agent_id=agent.id)
    assert row_counts(wallet) == before_counts
    by_token = wallet.dry_run(request, token=token)
    assert snapshot(wallet) == before_rows
    assert row_counts(wallet) == {**before_counts, "audit_log": before_counts["audit_log"] + 1}
    assert wallet.audit(limit=1).entries[0].event_type == "DRY_RUN"
    assert not explanation.decision.allowed
    assert [r.rule_id for r in explanation.fired if r.effect == "deny"] == [policy.id]
    assert explanation.hints
    assert explanation.amount_for_tier and max(explanation.amount_for_tier.values()) <= SOL
    assert "SPENDING_LIMIT" in explanation.to_text()
    # the agent sees the outcome, not the rule ids, thresholds or per-tier amounts
    assert (by_token.decision.allowed, by_token.decision.tier) == (False, explanation.decision.tier)
    assert [r.type for r in by_token.fired] == ["SPENDING_LIMIT"] and by_token.amount_for_tier == {}
    assert policy.id not in repr(by_token)
    assert wallet.get_session(wallet.list_sessions(agent.id)[0].session_id).usage.tx_count == 0


def test_dry_run_predicts_the_tier(wallet: Wallet, chain: str) -> None:
    """For each tier amount, the dry run's tier is the tier the real request gets."""
    agent = new_agent(wallet, chain, owner=None)
    wallet.set_owner(agent.id, recipient("evm"))
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    for tier, amount in TIER_AMOUNTS[chain].items():
        request = Transfer(to=dest, amount=amount)
        predicted = wallet.dry_run(request, agent_id=agent.id).decision
        assert (predicted.allowed, predicted.tier) == (True, tier)
        assert wallet.send(token, request).tier == tier


def test_dry_run_refuses_bad_input_without_writing(wallet: Wallet) -> None:
    """A dry run with another chain's address or a forged token is refused; only the
    refusal of the token is audited."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    before = snapshot(wallet)
    with pytest.raises(InvalidAddressError):
        wallet.dry_run(Transfer(to=recipient("evm"), amount=1), agent_id=agent.id)
    audit_before = row_counts(wallet)["audit_log"]
    with pytest.raises(AuthError):
        wallet.dry_run(Transfer(to=recipient("solana"), amount=1), token=token[:-4] + "AAAA")
    assert snapshot(wallet) == before
    added = all_audit(wallet)[audit_before:]
    assert [e.event_type for e in added] == ["AUTH_FAILED"]


def test_termination_cancellation_is_in_the_trail(wallet: Wallet) -> None:
    """A transaction cancelled because its agent was terminated records that change too."""
    agent = new_agent(wallet, "evm")
    issued = wallet.issue_session(agent.id)
    queued = wallet.send(
        issued.token, Transfer(to=recipient("evm"), amount=TIER_AMOUNTS["evm"]["DELAY"])
    )
    wallet.terminate_agent(agent.id)
    last = all_audit(wallet, tx_id=queued.id)[-1]
    assert last.event_type == "TX_CANCELLED"
    assert audited_move(last.event_type, last.details) == ("QUEUED", "CANCELLED")
    # the owner's move names no session; the transaction's is on its request
    requested = all_audit(wallet, tx_id=queued.id)[0]
    assert last.session_id is None and last.actor == "owner"
    assert requested.event_type == "TX_REQUESTED" and requested.session_id == issued.session_id


def test_a_move_names_the_session_only_where_the_agent_made_it(wallet: Wallet) -> None:
    """Every transaction's request names its session; a later move names it only when the
    agent itself moved the transaction (through that session), never a system move."""
    ids = drive_every_path(wallet, "solana")
    for label, tx_id in ids.items():
        tx = wallet.get_transaction(tx_id)
        entries = all_audit(wallet, tx_id=tx_id)
        assert entries[0].event_type == "TX_REQUESTED"
        assert entries[0].session_id == tx.session_id is not None, label
        for e in entries[1:]:
            if e.actor.startswith("agent:"):
                assert e.session_id == tx.session_id, (label, e)
            else:
                assert e.session_id is None, (label, e)


def test_list_transactions_pages_and_filters(wallet: Wallet) -> None:
    """list_transactions() is newest first, pages with `before`, and filters by agent and
    status."""
    ids = drive_every_path(wallet, "solana")
    other = new_agent(wallet, "solana", name="other")
    token = wallet.issue_session(other.id).token
    mine = wallet.send(token, Transfer(to=recipient("solana"), amount=10**7))
    everything = wallet.list_transactions(limit=1000)
    assert [t.id for t in everything] == sorted((t.id for t in everything), reverse=True)
    assert len(everything) == len(ids) + 1
    paged: list[str] = []
    before = None
    while True:
        page = wallet.list_transactions(limit=3, before=before)
        paged += [t.id for t in page]
        if len(page) < 3:
            break
        before = page[-1].id
    assert paged == [t.id for t in everything]
    assert [t.id for t in wallet.list_transactions(agent_id=other.id)] == [mine.id]
    confirmed = {t.id for t in wallet.list_transactions(status="CONFIRMED")}
    assert confirmed == {ids["instant"], ids["notify"], ids["approved"], mine.id}
    assert wallet.list_transactions(agent_id="01900000-0000-7000-8000-000000000000") == []
