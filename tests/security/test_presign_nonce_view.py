"""A pipeline that knows an EVM agent has no in-flight transaction presigns with the node's
pending count and reads nothing for the nonce before admission's lock. Another writer on the
same database (a second ``Wallet`` on the file) may have put a transaction in flight
meanwhile: these tests do that and show the guess costs only the presigned bytes (dropped
unsent, the claim path signs the next free nonce), never two transactions with one nonce."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    TIER_AMOUNTS,
    all_audit,
    events_of,
    new_agent,
    recipient,
    signings,
)
from waiaas.chains.base import SignedTx
from waiaas.pipeline.engine import PipelineHooks
from waiaas.pipeline.states import signing_record
from waiaas.testing import FrozenClock, fast_config, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet

AMOUNT = TIER_AMOUNTS["evm"]["INSTANT"]


class _Stop(BaseException):
    """Stops a send right after its admission committed (as if its process died)."""


def _stop_once() -> PipelineHooks:
    stop = {"on": True}

    def hook(stage: str, tx_id: str) -> None:
        if stage == "recorded" and stop["on"]:
            stop["on"] = False
            raise _Stop

    return PipelineHooks(on_stage=hook)


@pytest.fixture
def first(tmp_path: Path) -> Iterator[Wallet]:
    # a transaction waiting behind an unsent nonce: do not wait long for it
    with local_wallet(
        tmp_path, clock=FrozenClock(), config=fast_config(confirm_timeout=0.5)
    ) as wallet:
        yield wallet


def _signed_by(wallet: Wallet) -> list[SignedTx]:
    """Every transaction the wallet's EVM adapter signs from now on."""
    adapter = wallet.network_adapter("evm", "local")
    original = adapter.sign
    out: list[SignedTx] = []

    def sign(unsigned: Any, secret: Any) -> SignedTx:
        signed: SignedTx = original(unsigned, secret)
        out.append(signed)
        return signed

    adapter.sign = sign  # type: ignore[method-assign]
    return out


def _nonce_spans(wallet: Wallet, tx_id: str) -> list[tuple[int, int, int]]:
    """The nonces a transaction held in flight, in order, each with the audit ids of the
    rows that gave it (a signing, a rebuild's TX_RETRY) and took it away (the next rebuild,
    or the row's final status)."""
    spans: list[list[int]] = []
    for entry in all_audit(wallet, tx_id=tx_id):
        given = signing_record(entry.event_type, entry.details)
        if given is None and entry.event_type == "TX_RETRY":
            given = entry.details
        if given is not None:
            if spans:
                spans[-1][2] = entry.id
            spans.append([int(given["nonce"]), entry.id, 2**62])
        elif entry.event_type in ("TX_CONFIRMED", "TX_FAILED") and spans:
            spans[-1][2] = entry.id
    return [(n, start, end) for n, start, end in spans]


def test_a_nonce_another_wallet_put_in_flight_drops_the_guessed_bytes(
    first: Wallet, tmp_path: Path
) -> None:
    """The first wallet sends once (it then knows the agent clear). A second wallet on the
    file records a transaction with the next nonce and stops before sending it, so the node
    still expects that nonce. The first wallet's next send presigns that nonce without
    reading the in-flight rows; admission finds the second wallet's row holding it under its
    lock and drops the bytes; the claim path signs the nonce after it. Both land once."""
    agent = new_agent(first, "evm")
    token = first.issue_session(agent.id).token
    adapter = first.network_adapter("evm", "local")
    a, b, c = recipient("evm"), recipient("evm"), recipient("evm")
    first.send(token, Transfer(to=a, amount=AMOUNT))
    assert first._pipeline._in_flight.clear(agent.id)
    with (
        local_wallet(
            tmp_path,
            chains=[adapter],
            clock=FrozenClock(),
            config=fast_config(confirm_timeout=0.5),
            hooks=_stop_once(),
        ) as second,
        pytest.raises(_Stop),
    ):
        second.send(token, Transfer(to=b, amount=AMOUNT))
    (held,) = [t for t in first.list_transactions(agent_id=agent.id) if t.request["to"] == b]
    assert held.status == "SUBMITTED"
    (held_signing,) = signings(first, held.id)
    assert held_signing["nonce"] == 1 == adapter.pending_nonce(agent.public_key)

    signed = _signed_by(first)
    result = first.send(token, Transfer(to=c, amount=AMOUNT))
    assert [s.nonce for s in signed] == [1, 2]  # the guess, then the claim path's nonce
    assert "TX_EXECUTING" in events_of(first, result.id)  # the claim path took over
    assert [s["nonce"] for s in signings(first, result.id)] == [2]
    assert all(t.tx_hash != signed[0].tx_hash for t in first.list_transactions(agent_id=agent.id))
    assert not first._pipeline._in_flight.clear(agent.id)

    first._pipeline.recover()  # what the next Wallet.open runs: the held bytes are sent
    first.process_due()
    rows = first.list_transactions(agent_id=agent.id)
    assert sorted(t.status for t in rows) == ["CONFIRMED"] * 3
    nonces = sorted(s["nonce"] for t in rows for s in signings(first, t.id))
    assert nonces == [0, 1, 2]
    assert [adapter.get_balance(x) for x in (a, b, c)] == [AMOUNT] * 3


def test_a_claim_makes_the_agent_unknown_to_the_pipeline(first: Wallet) -> None:
    """A transaction of the agent claimed by the pipeline (the claim path) goes in flight
    without admission's check: the agent is no longer known clear, so the next presigned
    send reads the in-flight rows and skips the claimed nonce instead of guessing it."""
    agent = new_agent(first, "evm")
    token = first.issue_session(agent.id).token
    first.send(token, Transfer(to=recipient("evm"), amount=AMOUNT))
    assert first._pipeline._in_flight.clear(agent.id)
    first._pipeline.presign = False
    first.send(token, Transfer(to=recipient("evm"), amount=AMOUNT))  # claimed, then landed
    assert not first._pipeline._in_flight.clear(agent.id)
    first._pipeline.presign = True
    result = first.send(token, Transfer(to=recipient("evm"), amount=AMOUNT))
    assert "TX_EXECUTING" not in events_of(first, result.id)
    assert first._pipeline._in_flight.clear(agent.id)  # admission's check found none


def test_two_wallets_sending_for_one_agent_at_once_never_share_a_nonce(
    first: Wallet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two wallets on one database file, three threads each, send for one EVM agent at once
    (each wallet knowing the agent clear at the start). Every transaction lands with its own
    nonce, the nonces have no gap, and each recipient is paid once."""
    import waiaas.pipeline.admission as admission

    monkeypatch.setattr(admission, "_SLOT_WAIT", 60.0)  # presigning takes turns; not timed
    agent = new_agent(first, "evm")
    token = first.issue_session(agent.id).token
    adapter = first.network_adapter("evm", "local")
    first.send(token, Transfer(to=recipient("evm"), amount=AMOUNT))
    with local_wallet(tmp_path, chains=[adapter], clock=FrozenClock()) as second:
        second.send(token, Transfer(to=recipient("evm"), amount=AMOUNT))
        assert second._pipeline._in_flight.clear(agent.id)
        dests = [recipient("evm") for _ in range(6)]
        results: list[Any] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(dests))

        def send(wallet: Wallet, dest: str) -> None:
            barrier.wait()
            try:
                results.append(wallet.send(token, Transfer(to=dest, amount=AMOUNT)))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=send, args=(first if i % 2 else second, d))
            for i, d in enumerate(dests)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for wallet in (first, second):
            wallet._pipeline.recover()
            wallet.process_due()
    rows = first.list_transactions(agent_id=agent.id)
    assert sorted(t.status for t in rows) == ["CONFIRMED"] * (len(dests) + 2), [
        (t.status, t.error) for t in rows
    ]
    spans = [span for t in rows for span in _nonce_spans(first, t.id)]
    for n, start, end in spans:  # no two rows ever held one nonce in flight at once
        others = [(s, e) for m, s, e in spans if m == n and (s, e) != (start, end)]
        assert all(e < start or end < s for s, e in others), (n, start, end, others)
    landed = [_nonce_spans(first, t.id)[-1][0] for t in rows]  # the bytes that landed
    assert sorted(landed) == list(range(len(dests) + 2))
    assert [adapter.get_balance(d) for d in dests] == [AMOUNT] * len(dests)


def test_a_nonce_another_wallet_used_meanwhile_drops_the_bytes_taken_without_asking(
    first: Wallet, tmp_path: Path
) -> None:
    """After its transaction landed with nonce n, the first wallet takes n + 1 for its next
    presigned bytes without asking the node. A second wallet on the file sent one for the
    agent in between (it landed with n + 1): the node's count after signing is past the
    bytes' nonce, so they are dropped unsent and the claim path signs n + 2."""
    agent = new_agent(first, "evm")
    token = first.issue_session(agent.id).token
    adapter = first.network_adapter("evm", "local")
    first.send(token, Transfer(to=recipient("evm"), amount=AMOUNT))
    assert first._pipeline._in_flight.next_nonce(agent.id) == 1
    with local_wallet(tmp_path, chains=[adapter], clock=FrozenClock()) as second:
        other = second.send(token, Transfer(to=recipient("evm"), amount=AMOUNT))
    assert [s["nonce"] for s in signings(first, other.id)] == [1]
    signed = _signed_by(first)
    dest = recipient("evm")
    result = first.send(token, Transfer(to=dest, amount=AMOUNT))
    assert result.status == "CONFIRMED", result.error
    assert [s.nonce for s in signed] == [1, 2]  # taken without asking, then the claim's
    assert "TX_EXECUTING" in events_of(first, result.id)
    assert [s["nonce"] for s in signings(first, result.id)] == [2]
    assert all(t.tx_hash != signed[0].tx_hash for t in first.list_transactions(agent_id=agent.id))
    assert adapter.get_balance(dest) == AMOUNT
    assert adapter.pending_nonce(agent.public_key) == 3


def test_a_warm_send_asks_the_node_for_the_nonce_once(
    first: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the agent's last transaction landed from this wallet, the next presigned send
    takes the nonce after it and asks the node only after signing (that the nonce is the
    one it expects next); each lands with its own nonce."""
    agent = new_agent(first, "evm")
    token = first.issue_session(agent.id).token
    adapter = first.network_adapter("evm", "local")
    first.send(token, Transfer(to=recipient("evm"), amount=AMOUNT))
    original = adapter.pending_nonce
    asked: list[int] = []

    def pending_nonce(address: str) -> int:
        value = original(address)
        asked.append(value)
        return value

    monkeypatch.setattr(adapter, "pending_nonce", pending_nonce)
    results = [first.send(token, Transfer(to=recipient("evm"), amount=AMOUNT)) for _ in range(3)]
    assert asked == [1, 2, 3]
    assert [signings(first, r.id)[0]["nonce"] for r in results] == [1, 2, 3]
    assert all("TX_EXECUTING" not in events_of(first, r.id) for r in results)
