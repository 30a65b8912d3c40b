"""Bytes signed before admission's lock (the INSTANT/NOTIFY fast path) are recorded and sent
only when admission, under its lock, judged that very transaction INSTANT or NOTIFY with
nothing standing in the way. Each test moves something between the signing and the lock
(the adapter's ``sign`` is wrapped to do it right after it signs) and shows the bytes are
dropped: never recorded, never on the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TIER_AMOUNTS, events_of, new_agent, recipient, signings
from waiaas.chains.base import ChainTxState, SignedTx
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    KillSwitchActiveError,
    PolicyDeniedError,
)
from waiaas.pipeline.engine import PipelineHooks
from waiaas.pipeline.states import audited_move
from waiaas.testing import FrozenClock, fast_config, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet

NETWORK = {"solana": "localnet", "evm": "local"}


@pytest.fixture(params=["solana", "evm"])
def chain(request: pytest.FixtureRequest) -> str:
    """Each chain family in turn."""
    return str(request.param)


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    with local_wallet(tmp_path, clock=FrozenClock()) as w:
        yield w


def _after_first_sign(
    monkeypatch: pytest.MonkeyPatch, wallet: Wallet, chain: str, action: Callable[[], Any]
) -> list[SignedTx]:
    """Run ``action`` right after the adapter signs for the first time (the presigning,
    before admission's lock); returns the bytes signed then."""
    adapter = wallet.network_adapter(chain, NETWORK[chain])
    original = adapter.sign
    signed: list[SignedTx] = []

    def sign(unsigned: Any, secret: Any) -> SignedTx:
        out: SignedTx = original(unsigned, secret)
        if not signed:
            signed.append(out)
            action()
        return out

    monkeypatch.setattr(adapter, "sign", sign)
    return signed


def _never_sent(wallet: Wallet, chain: str, signed: SignedTx) -> None:
    status = wallet.network_adapter(chain, NETWORK[chain]).get_status(signed)
    assert status.state in (ChainTxState.NOT_FOUND, ChainTxState.DROPPED), status


def _no_row_holds(wallet: Wallet, agent_id: str, signed: SignedTx) -> None:
    assert all(t.tx_hash != signed.tx_hash for t in wallet.list_transactions(agent_id=agent_id))


def test_the_fast_path_records_the_bytes_it_signed(wallet: Wallet, chain: str) -> None:
    """Baseline: with nothing in the way, the presigned bytes are the ones recorded and sent
    (one signature, no claim), in the audited order of the claim path minus the claim."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["INSTANT"]
    result = wallet.send(token, Transfer(to=dest, amount=amount))
    assert (result.status, result.tier) == ("CONFIRMED", "INSTANT")
    assert events_of(wallet, result.id) == ["TX_REQUESTED", "TX_CONFIRMED"]
    # the signing is recorded once, in the TX_REQUESTED row (its move PENDING -> SUBMITTED
    # too): no TX_SIGNED or TX_SUBMITTED row
    (requested,) = events_of_entries(wallet, result.id, ["TX_REQUESTED"])
    assert requested.details["tx_hash"] == result.tx_hash
    assert audited_move(requested.event_type, requested.details) == ("PENDING", "SUBMITTED")
    signed = {k: requested.details[k] for k in ("tx_hash", "nonce") if k in requested.details}
    assert signings(wallet, result.id) == [signed]
    assert requested.agent_id == agent.id and requested.session_id is not None
    assert wallet.network_adapter(chain, NETWORK[chain]).get_balance(dest) == amount


def test_kill_switch_between_signing_and_admission(
    wallet: Wallet, chain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    signed = _after_first_sign(monkeypatch, wallet, chain, lambda: wallet.kill_switch("incident"))
    with pytest.raises(KillSwitchActiveError):
        wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["INSTANT"]))
    assert signed, "the request was not presigned"
    _never_sent(wallet, chain, signed[0])
    _no_row_holds(wallet, agent.id, signed[0])
    assert wallet.network_adapter(chain, NETWORK[chain]).get_balance(dest) == 0


def test_suspension_between_signing_and_admission(
    wallet: Wallet, chain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    signed = _after_first_sign(monkeypatch, wallet, chain, lambda: wallet.suspend_agent(agent.id))
    with pytest.raises((AgentNotActiveError, AuthError)):
        wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["INSTANT"]))
    assert signed
    _never_sent(wallet, chain, signed[0])
    _no_row_holds(wallet, agent.id, signed[0])


def test_session_revoked_between_signing_and_admission(
    wallet: Wallet, chain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = new_agent(wallet, chain)
    issued = wallet.issue_session(agent.id)
    dest = recipient(chain)
    signed = _after_first_sign(
        monkeypatch, wallet, chain, lambda: wallet.revoke_session(issued.session_id)
    )
    with pytest.raises(AuthError):
        wallet.send(issued.token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["INSTANT"]))
    assert signed
    _never_sent(wallet, chain, signed[0])
    assert wallet.list_transactions(agent_id=agent.id) == []


def test_a_deny_rule_added_between_signing_and_admission(
    wallet: Wallet, chain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    signed = _after_first_sign(
        monkeypatch,
        wallet,
        chain,
        lambda: wallet.add_policy(
            "ALLOWED_ADDRESSES", {"addresses": [recipient(chain)]}, agent_id=agent.id
        ),
    )
    with pytest.raises(PolicyDeniedError) as info:
        wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["INSTANT"]))
    assert signed
    _never_sent(wallet, chain, signed[0])
    row = wallet.get_transaction(str(info.value.tx_id))
    assert row.status == "FAILED" and row.tx_hash is None
    assert signings(wallet, row.id) == [] and "TX_SUBMITTED" not in events_of(wallet, row.id)


def test_a_stricter_tier_between_signing_and_admission_queues_without_the_bytes(
    wallet: Wallet, chain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit drops while the request is being signed: admission judges it DELAY and
    queues it; the presigned bytes are dropped. After the cooldown the claim path builds,
    checks and signs it again, and the recipient is paid once."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["INSTANT"]
    signed = _after_first_sign(
        monkeypatch,
        wallet,
        chain,
        lambda: wallet.add_policy(
            "SPENDING_LIMIT",
            {"instant_max": "1", "notify_max": "2", "delay_max": str(10**30)},
            agent_id=agent.id,
        ),
    )
    result = wallet.send(token, Transfer(to=dest, amount=amount))
    assert (result.status, result.tier) == ("QUEUED", "DELAY")
    assert result.tx_hash is None and signings(wallet, result.id) == []
    assert signed
    adapter = wallet.network_adapter(chain, NETWORK[chain])
    assert adapter.get_balance(dest) == 0
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(wallet.config.delay_seconds)
    wallet.process_due()
    done = wallet.get_transaction(result.id)
    assert done.status == "CONFIRMED", done.error
    assert adapter.get_balance(dest) == amount
    # signed once, from the claim (the dropped presigned bytes were never recorded)
    assert [e["tx_hash"] for e in signings(wallet, result.id)] == [done.tx_hash]
    assert events_of(wallet, result.id).count("TX_SIGNED") == 1


def test_evm_presigned_nonce_skips_a_nonce_held_by_an_unsent_row(tmp_path: Path) -> None:
    """EVM: the first request is stopped after its admission commit (bytes with nonce n
    recorded, never sent), so the node still expects nonce n. The second request is presigned
    with n + 1 (the nonce of the in-flight row is not reused), and admission takes those
    bytes. Recovery (as on the next open) then sends the first; each recipient is paid
    once."""
    stop = {"on": True}

    class _Stop(BaseException):
        pass

    def hook(stage: str, tx_id: str) -> None:
        if stage == "recorded" and stop["on"]:
            stop["on"] = False
            raise _Stop

    # the second transaction waits behind the first's unsent nonce: do not wait long for it
    config = fast_config(confirm_timeout=0.5)
    with local_wallet(
        tmp_path, clock=FrozenClock(), config=config, hooks=PipelineHooks(on_stage=hook)
    ) as w:
        agent = new_agent(w, "evm")
        token = w.issue_session(agent.id).token
        first_to, second_to = recipient("evm"), recipient("evm")
        amount = TIER_AMOUNTS["evm"]["INSTANT"]
        with pytest.raises(_Stop):
            w.send(token, Transfer(to=first_to, amount=amount))
        (first,) = w.list_transactions(agent_id=agent.id)
        assert first.status == "SUBMITTED"
        (held,) = signings(w, first.id)
        nonce = held["nonce"]
        second = w.send(token, Transfer(to=second_to, amount=amount))
        events = events_of(w, second.id)
        assert "TX_EXECUTING" not in events  # the presigned bytes, not the claim path
        assert [e["nonce"] for e in signings(w, second.id)] == [nonce + 1]
        w._pipeline.recover()  # what the next Wallet.open runs: the first bytes are sent
        w.process_due()
        adapter = w.network_adapter("evm", "local")
        assert w.get_transaction(first.id).status == "CONFIRMED"
        assert w.get_transaction(second.id).status == "CONFIRMED"
        assert adapter.get_balance(first_to) == amount
        assert adapter.get_balance(second_to) == amount


def events_of_entries(
    wallet: Wallet, tx_id: str, event_types: list[str] | None = None
) -> list[Any]:
    from tests.e2e.conftest import all_audit

    if event_types is None:
        return all_audit(wallet, tx_id=tx_id)
    return all_audit(wallet, tx_id=tx_id, event_types=event_types)


def test_evm_presigned_nonce_used_by_a_transaction_that_landed_after_the_last_read(
    wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EVM race: the presigned bytes carry nonce n, the node is asked after signing and
    still expects n; then another transaction of the same agent is admitted, sent and
    confirmed with n before this one takes admission's lock. No in-flight row holds n any
    more, so admission records the bytes, and the node refuses them: n is used. Those bytes
    can never land (another transaction has their nonce), so the rebuild signs the same plan
    with the next free nonce instead of n again. Both recipients are paid once, nothing
    FAILED, and the audit shows the rebuild with its new nonce."""
    agent = new_agent(wallet, "evm")
    token = wallet.issue_session(agent.id).token
    first_to, second_to = recipient("evm"), recipient("evm")
    amount = TIER_AMOUNTS["evm"]["INSTANT"]
    adapter = wallet.network_adapter("evm", NETWORK["evm"])
    original = adapter.pending_nonce
    calls = {"n": 0}
    others: list[Any] = []

    def pending_nonce(address: str) -> int:
        value = original(address)
        calls["n"] += 1
        if calls["n"] == 2:  # the read after presigning: the other lands right after it
            others.append(wallet.send(token, Transfer(to=second_to, amount=amount)))
        return value

    monkeypatch.setattr(adapter, "pending_nonce", pending_nonce)
    result = wallet.send(token, Transfer(to=first_to, amount=amount))
    assert [o.status for o in others] == ["CONFIRMED"]
    assert result.status == "CONFIRMED", result.error
    entries = {e.event_type: e.details for e in events_of_entries(wallet, result.id)}
    (other_signed,) = signings(wallet, others[0].id)
    first_signed = signings(wallet, result.id)[0]  # the presigned bytes (then the rebuild's)
    assert first_signed["nonce"] == other_signed["nonce"] == 0  # the race happened
    assert entries["TX_RETRY"]["nonce"] == 1  # rebuilt with the next nonce
    assert adapter.get_balance(first_to) == amount
    assert adapter.get_balance(second_to) == amount
    assert original(agent.public_key) == 2


def test_evm_concurrent_sends_of_one_agent_presign_distinct_nonces(
    wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight threads send for one EVM agent at once. Presigning takes turns per agent in a
    process, each signing the lowest nonce no in-flight row holds: no presigned bytes are
    dropped for a nonce another request took (none falls back to the claim path), the
    nonces are 0..7 once each, and every recipient is paid once.

    The wait for the slot is lifted from 1 s to 60 s here: on a loaded machine (or with
    PostgreSQL's slower commits) eight turns can take longer than a second, and a request
    that gives up presigning takes the claim path by design (``test_lock_hold.py`` tests
    that bound); this test is about the nonces."""
    import threading

    import waiaas.pipeline.admission as admission

    monkeypatch.setattr(admission, "_SLOT_WAIT", 60.0)

    agent = new_agent(wallet, "evm")
    token = wallet.issue_session(agent.id).token
    amount = TIER_AMOUNTS["evm"]["INSTANT"]
    dests = [recipient("evm") for _ in range(8)]
    results: list[Any] = []
    barrier = threading.Barrier(len(dests))

    def send(dest: str) -> None:
        barrier.wait()
        results.append(wallet.send(token, Transfer(to=dest, amount=amount)))

    threads = [threading.Thread(target=send, args=(d,)) for d in dests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wallet.process_due()
    assert len(results) == len(dests)
    nonces = []
    for result in results:
        events = events_of_entries(wallet, result.id)
        assert "TX_EXECUTING" not in [e.event_type for e in events]
        nonces += [e["nonce"] for e in signings(wallet, result.id)]
        assert wallet.get_transaction(result.id).status == "CONFIRMED"
    assert sorted(nonces) == list(range(len(dests)))
    adapter = wallet.network_adapter("evm", NETWORK["evm"])
    assert [adapter.get_balance(d) for d in dests] == [amount] * len(dests)


_FROM_ANOTHER_PROCESS: dict[str, Callable[[Wallet, str, str], Any]] = {
    "kill switch": lambda other, agent_id, session_id: other.kill_switch("incident"),
    "suspension": lambda other, agent_id, session_id: other.suspend_agent(agent_id),
    "revocation": lambda other, agent_id, session_id: other.revoke_session(session_id),
    "deny rule": lambda other, agent_id, session_id: other.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [recipient("solana")]}, agent_id=agent_id
    ),
}


@pytest.mark.parametrize("change", sorted(_FROM_ANOTHER_PROCESS))
def test_a_change_by_another_process_stops_the_next_send_without_a_read_before_the_lock(
    tmp_path: Path, change: str
) -> None:
    """After a first send, admission's step before the lock reads nothing for the token (its
    agent is remembered): a kill switch, suspension, revocation or deny rule written by
    another process (another wallet on the file) in between is still what the very next
    send meets under the lock. Nothing is recorded for it and nothing reaches the chain."""
    with local_wallet(tmp_path, clock=FrozenClock()) as wallet:
        chain = "solana"
        agent = new_agent(wallet, chain)
        issued = wallet.issue_session(agent.id)
        dest = recipient(chain)
        amount = TIER_AMOUNTS[chain]["INSTANT"]
        wallet.send(issued.token, Transfer(to=dest, amount=amount))  # remembers the agent
        adapter = wallet.network_adapter(chain, NETWORK[chain])
        with local_wallet(tmp_path, chains=[adapter], clock=FrozenClock()) as other:
            _FROM_ANOTHER_PROCESS[change](other, agent.id, issued.session_id)
        before = wallet.list_transactions(agent_id=agent.id)
        with pytest.raises(
            (KillSwitchActiveError, AgentNotActiveError, AuthError, PolicyDeniedError)
        ):
            wallet.send(issued.token, Transfer(to=dest, amount=amount))
        after = wallet.list_transactions(agent_id=agent.id)
        assert [t.status for t in after if t not in before] in ([], ["FAILED"])
        assert adapter.get_balance(dest) == amount  # the first send only
