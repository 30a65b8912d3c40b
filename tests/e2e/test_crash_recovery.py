"""Crash recovery: a child process is SIGKILLed at each pipeline stage boundary; the next
``Wallet.open`` recovers without losing the transaction or sending it twice.

The chains live outside the killed process (anvil, and the LiteSVM-backed Solana JSON-RPC
test server running in this test process), so what reached the chain survives the crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from solders.litesvm import LiteSVM

from tests.chains.anvil import anvil_node
from tests.chains.solana_rpc_server import SolanaRpcServer
from tests.e2e.wallet_child import open_wallet
from waiaas import TxStatus
from waiaas.pipeline.states import signing_record
from waiaas.types import AuditEvent

CHILD = Path(__file__).with_name("wallet_child.py")
# "admitted", "recorded", "submitted": the presigned path (bytes recorded and cleared in the
# admission commit); "claimed", "signed": the claim path (the child turns presigning off).
STAGES = ["admitted", "claimed", "signed", "submitted", "recorded"]
AMOUNTS = {"solana": 1_234_567, "evm": 10**15 + 7}


@pytest.fixture(scope="module")
def chain_urls() -> Iterator[dict[str, Any]]:
    """One anvil node and one Solana RPC server for the whole module."""
    with anvil_node(chain_id=31337) as node, SolanaRpcServer(LiteSVM()) as server:
        yield {"solana_url": server.url, "evm_url": node.url, "chain_id": node.chain_id}


def child_env() -> dict[str, str]:
    """The environment of a child process: the repository root and src on its path."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(root), env.get("PYTHONPATH", "")])
    return env


def run_child(spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run wallet_child.py with ``spec`` and wait for it."""
    env = child_env()
    return subprocess.run(
        [sys.executable, str(CHILD), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def prepare(tmp_path: Path, urls: dict[str, Any], chain: str) -> tuple[dict[str, Any], str, str]:
    """A wallet with one funded agent and a session; returns (spec, agent id, recipient)."""
    spec: dict[str, Any] = {"db": str(tmp_path / "wallet.db"), **urls}
    with open_wallet(spec) as wallet:
        agent = wallet.create_agent(f"{chain}-bot", chain)
        adapter = wallet.network_adapter(agent.chain, agent.network)
        adapter.fund(agent.public_key, 10**19 if chain == "evm" else 10**10)  # type: ignore[attr-defined]
        _secret, recipient = adapter.generate_secret()
        if chain == "solana":  # a new account must end up rent-exempt
            adapter.fund(recipient, 1_000_000_000)  # type: ignore[attr-defined]
        token = wallet.issue_session(agent.id).token
    spec.update(token=token, to=recipient, amount=str(AMOUNTS[chain]))
    return spec, agent.id, recipient


@pytest.mark.anvil
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_sigkill_at_stage_boundary_is_recovered(
    tmp_path: Path, chain_urls: dict[str, Any], chain: str, stage: str
) -> None:
    """Killed at any stage, the reopened wallet confirms the transaction exactly once."""
    spec, agent_id, recipient = prepare(tmp_path, chain_urls, chain)
    with open_wallet(spec) as wallet:
        adapter = wallet.network_adapter(chain, wallet.get_agent(agent_id).network)
        before = adapter.get_balance(recipient)

    proc = run_child({**spec, "mode": "crash", "stage": stage})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    tx_id = json.loads(proc.stdout.splitlines()[0])["tx_id"]

    with open_wallet(spec) as wallet:
        wallet.process_due()
        txs = wallet.list_transactions(agent_id=agent_id)
        assert [t.id for t in txs] == [tx_id]  # nothing lost, nothing duplicated
        tx = wallet.get_transaction(tx_id)
        assert tx.status == TxStatus.CONFIRMED, tx.error
        assert adapter_balance(wallet, agent_id, recipient) - before == AMOUNTS[chain]
        entries = list(reversed(wallet.audit(tx_id=tx_id, limit=100).entries))
        events = [e.event_type for e in entries]
        # never signed twice (TX_SIGNED from a claim, or the presigned TX_REQUESTED)
        signed = [d for e in entries if (d := signing_record(e.event_type, e.details))]
        assert len(signed) == 1 and signed[0]["tx_hash"] == tx.tx_hash
        assert events.count(AuditEvent.TX_REQUESTED) == 1
        assert events.count(AuditEvent.TX_CONFIRMED) == 1
        assert events[0] == AuditEvent.TX_REQUESTED and events[-1] == AuditEvent.TX_CONFIRMED


def adapter_balance(wallet: Any, agent_id: str, address: str) -> int:
    """The native balance of ``address`` on the agent's chain."""
    agent = wallet.get_agent(agent_id)
    return int(wallet.network_adapter(agent.chain, agent.network).get_balance(address))


@pytest.mark.anvil
def test_crash_before_signing_leaves_a_pending_row_that_executes_once(
    tmp_path: Path, chain_urls: dict[str, Any]
) -> None:
    """A second crash while recovering (reopen, kill again) still ends in one confirmation."""
    spec, agent_id, recipient = prepare(tmp_path, chain_urls, "evm")
    # the claim path: admission leaves PENDING (presigned bytes would be SUBMITTED already)
    first = run_child({**spec, "mode": "crash", "stage": "admitted", "presign": False})
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    tx_id = json.loads(first.stdout.splitlines()[0])["tx_id"]
    with open_wallet(spec) as wallet:
        assert wallet.get_transaction(tx_id).status == TxStatus.PENDING
        wallet.process_due()
        wallet.process_due()  # a second pass finds nothing more to do
        assert wallet.get_transaction(tx_id).status == TxStatus.CONFIRMED
        assert len(wallet.list_transactions(agent_id=agent_id)) == 1
        assert adapter_balance(wallet, agent_id, recipient) == AMOUNTS["evm"]


@pytest.mark.anvil
def test_crash_right_after_the_owner_approved_executes_once(
    tmp_path: Path, chain_urls: dict[str, Any]
) -> None:
    """Killed between the committed approval and execution, the reopened wallet executes the
    approved transaction exactly once; the approval is not needed again."""
    from eth_account import Account

    owner = Account.create()
    spec, agent_id, recipient = prepare(tmp_path, chain_urls, "evm")
    with open_wallet(spec) as wallet:
        wallet.set_owner(agent_id, owner.address)
        amount = AMOUNTS["evm"]
        wallet.add_policy(
            "SPENDING_LIMIT",
            {"instant_max": "0", "notify_max": "0", "delay_max": "0"},
            agent_id=agent_id,
        )
    proc = run_child({**spec, "mode": "approve-crash", "owner_key": owner.key.hex()})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    tx_id = json.loads(proc.stdout.splitlines()[0])["tx_id"]
    with open_wallet(spec) as wallet:
        assert wallet.get_transaction(tx_id).status == TxStatus.QUEUED
        wallet.process_due()
        tx = wallet.get_transaction(tx_id)
        assert tx.status == TxStatus.CONFIRMED, tx.error
        assert adapter_balance(wallet, agent_id, recipient) == amount
        events = [e.event_type for e in reversed(wallet.audit(tx_id=tx_id, limit=100).entries)]
        assert events.count(AuditEvent.TX_APPROVED) == 1
        assert events.count(AuditEvent.TX_SIGNED) == 1
        assert events.count(AuditEvent.TX_CONFIRMED) == 1
