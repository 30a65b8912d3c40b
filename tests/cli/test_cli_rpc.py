"""The CLI with a real chain: ``--rpc solana:localnet=<url>`` against the JSON-RPC test server
(LiteSVM behind real HTTP), in its own process. The operator creates an agent, dry-runs a
request, and approves a queued transfer that then executes from the CLI process itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chains.solana_rpc_server import SolanaRpcServer
from tests.cli.test_cli_subprocess import waiaas
from tests.e2e.conftest import SolanaOwner, recipient
from waiaas import Transfer, Wallet
from waiaas.chains.solana import LocalSolanaAdapter
from waiaas.testing import fast_config, fund, local_wallet

SOL = 10**9


@pytest.fixture
def node() -> Iterator[SolanaRpcServer]:
    with SolanaRpcServer() as server:
        yield server


@pytest.fixture
def wallet(tmp_path: Path, node: SolanaRpcServer) -> Iterator[Wallet]:
    adapter = LocalSolanaAdapter.rpc(node.url, network="localnet", timeout=10)
    try:
        with local_wallet(tmp_path, chains=[adapter], config=fast_config()) as w:
            yield w
    finally:
        adapter.close()


def test_operator_with_a_chain_creates_dry_runs_and_executes(
    wallet: Wallet, node: SolanaRpcServer
) -> None:
    db = str(wallet.path)
    rpc = f"solana:localnet={node.url}"
    owner = SolanaOwner()
    made = waiaas(
        "--db",
        db,
        "--rpc",
        rpc,
        "agents",
        "create",
        "ops-made",
        "--chain",
        "solana",
        "--owner",
        owner.address,
        "--json",
    )
    assert made.returncode == 0, made.stderr
    agent = json.loads(made.stdout)
    fund(wallet, agent["id"], 20 * SOL)
    dest = recipient("solana")
    request = json.dumps({"type": "TRANSFER", "to": dest, "amount": str(11 * SOL)})
    dry = waiaas("--db", db, "--rpc", rpc, "policies", "dry-run", agent["id"], request, "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["decision"]["tier"] == "APPROVAL"
    token = wallet.issue_session(agent["id"]).token
    queued = wallet.send(token, Transfer(to=dest, amount=11 * SOL))
    assert queued.status == "QUEUED"
    signature = owner.sign(wallet.approval_message(queued.id))
    done = waiaas(
        "--db",
        db,
        "--rpc",
        rpc,
        "approvals",
        "approve",
        queued.id,
        "--signature",
        signature,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "CONFIRMED" and report["pending_execution"] is False
    assert wallet.balance(agent["id"]) < 9 * SOL
    assert wallet.network_adapter("solana", "localnet").get_balance(dest) == 11 * SOL


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ("bogus", "--rpc must look like"),
        ("solana=http://127.0.0.1:9", "expected solana:<network>"),
        ("evm:mainnet=http://127.0.0.1:9", "expected solana:<network> or evm:<network>:<chain id>"),
        ("dogecoin:main=http://127.0.0.1:9", "expected solana:<network>"),
        ("solana:devnet=ftp://example.com", "http"),
    ],
)
def test_bad_rpc_specs_are_one_line_errors(wallet: Wallet, spec: str, fragment: str) -> None:
    done = waiaas("--db", str(wallet.path), "--rpc", spec, "agents", "list")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and fragment in done.stderr, done.stderr
