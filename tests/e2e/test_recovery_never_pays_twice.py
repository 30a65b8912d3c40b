"""Never re-sign what may have landed: "not found" is not proof of absence.

* A process SIGKILLed right after submitting, reopened against a Solana node whose history
  no longer reaches the submission (the LiteSVM-backed JSON-RPC test server, pruned): the
  transaction stays SUBMITTED, is reported once (TX_UNRESOLVED, critical) and the recipient
  is paid exactly once; the operator settles it with evidence.
* The same crash against a node whose history does reach back: proven DROPPED is rebuilt, a
  landed one is confirmed; exactly once either way.
* A submit that lands and then times out, retried after the blockhash expired (Solana) or
  the nonce was used (EVM): the retry's "stale" is not proof; nothing is rebuilt.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from solders.litesvm import LiteSVM

from tests.chains.solana_rpc_server import SolanaRpcServer
from tests.e2e.conftest import FlakyAdapter, all_audit, new_agent, recipient, signings
from tests.e2e.test_crash_recovery import AMOUNTS, prepare, run_child
from tests.e2e.wallet_child import open_wallet
from waiaas import StateError, Transfer, TxStatus
from waiaas.chains.base import SignedTx
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.solana import SolanaAdapter
from waiaas.errors import StaleTransactionError, TransientChainError
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import AuditEvent


@pytest.fixture
def server() -> Iterator[SolanaRpcServer]:
    """A fresh Solana JSON-RPC test server for each test (its history gets pruned)."""
    with SolanaRpcServer(LiteSVM()) as s:
        yield s


def _events(wallet: Any, tx_id: str) -> list[str]:
    return [e.event_type for e in reversed(wallet.audit(tx_id=tx_id, limit=200).entries)]


def _crash_at_submit(tmp_path: Path, server: SolanaRpcServer) -> tuple[dict[str, Any], str, str]:
    spec, _agent, to = prepare(tmp_path, {"solana_url": server.url}, "solana")
    proc = run_child({**spec, "mode": "crash", "stage": "submitted"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    tx_id = json.loads(proc.stdout.splitlines()[0])["tx_id"]
    return spec, tx_id, to


def test_pruned_node_after_a_crash_at_submit_pays_exactly_once(
    tmp_path: Path, server: SolanaRpcServer
) -> None:
    """Killed after submit; the node then forgets the signature (short ledger) and the
    blockhash expires. Reopening does not rebuild: SUBMITTED, one TX_UNRESOLVED, paid
    once. The operator's resolution (landed) confirms it; a second resolution is refused."""
    spec, tx_id, to = _crash_at_submit(tmp_path, server)
    server.advance(400)
    server.prune(keep_slots=10)
    with open_wallet(spec) as wallet:
        adapter = wallet.network_adapter("solana", "localnet")
        balance_before = adapter.get_balance(to)
        for _ in range(2):
            wallet.process_due()
        tx = wallet.get_transaction(tx_id)
        assert tx.status == TxStatus.SUBMITTED
        events = _events(wallet, tx_id)
        assert len(signings(wallet, tx_id)) == 1  # never signed twice
        assert events.count(AuditEvent.TX_UNRESOLVED) == 1  # reported once
        [unresolved] = wallet.audit(tx_id=tx_id, event_types=["TX_UNRESOLVED"]).entries
        assert unresolved.severity == "critical"
        assert "may have landed" in unresolved.details["reason"]
        settled = wallet.resolve_transaction(
            tx_id, landed=True, evidence="explorer: signature finalized in slot 2"
        )
        assert settled.status == TxStatus.CONFIRMED
        with pytest.raises(StateError):
            wallet.resolve_transaction(tx_id, landed=False, evidence="changed my mind")
        [resolved] = wallet.audit(tx_id=tx_id, event_types=["TX_RESOLVED"]).entries
        assert resolved.actor == "operator" and resolved.details["landed"] is True
        assert adapter.get_balance(to) == balance_before  # nothing more was sent
    # the recipient got the amount once (the transfer that landed before the crash)
    svm_balance = server.svm.get_balance(_pubkey(to)) or 0
    assert svm_balance == 1_000_000_000 + AMOUNTS["solana"]


def _pubkey(text: str) -> Any:
    from solders.pubkey import Pubkey

    return Pubkey.from_string(text)


def test_operator_can_settle_not_landed_and_the_budget_is_released(
    tmp_path: Path, server: SolanaRpcServer
) -> None:
    """An unresolved transaction the operator shows never landed: FAILED NOT_LANDED (its
    budget released); the chain is asked first, so a landed one cannot be settled as
    "not landed" while the node still knows it."""
    spec, tx_id, _ = _crash_at_submit(tmp_path, server)
    server.advance(400)
    server.prune(keep_slots=10)
    with open_wallet(spec) as wallet:
        wallet.process_due()
        assert wallet.get_transaction(tx_id).status == TxStatus.SUBMITTED
        # the node's history comes back (an archive node): the chain's answer wins
        server._forgotten.clear()
        server.minimum_ledger_slot = 0
        with pytest.raises(StateError, match="the chain knows"):
            wallet.resolve_transaction(tx_id, landed=False, evidence="I think it failed")
        assert wallet.get_transaction(tx_id).status == TxStatus.CONFIRMED


def test_full_history_after_a_crash_at_submit_confirms_once(
    tmp_path: Path, server: SolanaRpcServer
) -> None:
    """The same crash against a node that keeps its history: found, CONFIRMED, no
    TX_UNRESOLVED, paid once."""
    spec, tx_id, to = _crash_at_submit(tmp_path, server)
    server.advance(400)
    with open_wallet(spec) as wallet:
        wallet.process_due()
        assert wallet.get_transaction(tx_id).status == TxStatus.CONFIRMED
        assert AuditEvent.TX_UNRESOLVED not in _events(wallet, tx_id)
    assert (server.svm.get_balance(_pubkey(to)) or 0) == 1_000_000_000 + AMOUNTS["solana"]


@dataclass
class LandsThenTimesOut(FlakyAdapter):
    """The first submit reaches the chain (it lands) and then reports a timeout; the retry
    finds the transaction stale (blockhash expired / nonce used), as a real node would."""

    calls: int = 0
    expire: Any = None

    def submit(self, signed: SignedTx) -> str:
        self.calls += 1
        self.submitted.append(signed.tx_hash)
        if self.calls == 1:
            self.inner.submit(signed)
            raise TransientChainError("read timed out (injected)", chain=self.chain)
        if self.calls == 2:
            if self.expire is not None:
                self.expire()
            raise StaleTransactionError("blockhash not found / nonce too low", chain=self.chain)
        return str(self.inner.submit(signed))


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_a_landed_submit_that_timed_out_is_never_rebuilt(tmp_path: Path, chain: str) -> None:
    """Submit lands, answers with a timeout, the retry is refused as stale: the pipeline
    asks the chain instead of rebuilding, finds it, and the recipient is paid once."""
    svm = LiteSVM()
    if chain == "solana":
        inner: Any = SolanaAdapter.local(svm=svm)
        other: Any = EvmAdapter.local()
    else:
        inner = EvmAdapter.local()
        other = SolanaAdapter.local(svm=svm)
    flaky = LandsThenTimesOut(inner, expire=svm.expire_blockhash if chain == "solana" else None)
    with local_wallet(tmp_path, chains=[flaky, other], clock=FrozenClock()) as wallet:
        agent = new_agent(wallet, chain)
        token = wallet.issue_session(agent.id).token
        dest = recipient(chain)
        if chain == "solana":
            inner.fund(dest, 1_000_000_000)
        before = inner.get_balance(dest)
        amount = 1_234_567 if chain == "solana" else 10**15 + 7
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        wallet.process_due()
        final = wallet.get_transaction(result.id)
        assert final.status == TxStatus.CONFIRMED, final.error
        assert inner.get_balance(dest) - before == amount
        assert len(set(flaky.submitted)) == 1  # the same bytes, never a second signature
        assert len(signings(wallet, result.id)) == 1
        assert not any(
            e.details.get("rebuilt")
            for e in all_audit(wallet, tx_id=result.id)
            if e.event_type == "TX_RETRY"
        )


def test_evm_replacement_reuses_the_nonce(tmp_path: Path) -> None:
    """An EVM transaction that is rebuilt (its first bytes were refused as stale before
    reaching any node) keeps its nonce: at most one of the two can ever land."""

    @dataclass
    class StaleOnce(FlakyAdapter):
        pass

    flaky = StaleOnce(EvmAdapter.local(), stale=1)
    with local_wallet(tmp_path, chains=[flaky, SolanaAdapter.local()], clock=FrozenClock()) as w:
        agent = new_agent(w, "evm")
        token = w.issue_session(agent.id).token
        result = w.send(token, Transfer(to=recipient("evm"), amount=10**15))
        assert result.status == TxStatus.CONFIRMED
        (signed,) = signings(w, result.id)  # the first bytes (the rebuild: TX_RETRY)
        rebuilt = [
            e
            for e in all_audit(w, tx_id=result.id)
            if e.event_type == "TX_RETRY" and e.details.get("rebuilt")
        ]
        assert len(rebuilt) == 1 and len(flaky.submitted) == 2
        assert signed["nonce"] is not None
        assert rebuilt[0].details["old_hash"] == signed["tx_hash"]
        assert rebuilt[0].details["nonce"] == signed["nonce"]
        row = w._pipeline.get_row(result.id)
        meta = json.loads(row.metadata_json or "{}")
        assert meta["replaced"]["nonce"] == meta["signed"]["nonce"] == signed["nonce"]
