"""The MCP server, spoken to by the official ``mcp`` client over stdio: ``python -m waiaas mcp``
in its own process, on a real Solana JSON-RPC node (LiteSVM behind HTTP), with the session
token in an environment variable."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chains.solana_rpc_server import SolanaRpcServer
from tests.e2e.conftest import sol_address
from waiaas.chains.solana import LocalSolanaAdapter
from waiaas.testing import TEST_PASSWORD, fast_config
from waiaas.wallet import Wallet

pytest.importorskip("mcp")

SOL = 10**9
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def node() -> Iterator[SolanaRpcServer]:
    with SolanaRpcServer() as server:
        yield server


def _prepare(tmp_path: Path, url: str) -> tuple[Path, str, str]:
    db = tmp_path / "wallet.db"
    chain = LocalSolanaAdapter.rpc(url, network="localnet", timeout=5)
    with Wallet.open(db, password=TEST_PASSWORD, chains=[chain], config=fast_config()) as w:
        agent = w.create_agent("mcp-agent", "solana")
        chain.fund(agent.public_key, 3 * SOL)
        w.add_policy(
            "SPENDING_LIMIT",
            {"per_transaction": str(SOL), "instant_max": str(SOL // 2)},
            agent_id=agent.id,
        )
        token = w.issue_session(agent.id).token
    chain.close()
    return db, token, agent.id


async def _session(db: Path, url: str, token: str, calls: list[tuple[str, dict[str, Any]]]) -> Any:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "waiaas",
            "mcp",
            "--db",
            str(db),
            "--solana-rpc",
            url,
            "--solana-network",
            "localnet",
        ],
        env={
            "WAIAAS_SESSION_TOKEN": token,
            "WAIAAS_MASTER_PASSWORD": TEST_PASSWORD,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        },
        cwd=str(ROOT),
    )
    out: dict[str, Any] = {}
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
            out["tools"] = {t.name: t for t in listed.tools}
            out["results"] = []
            for name, arguments in calls:
                result = await session.call_tool(name, arguments)
                out["results"].append(result)
    return out


def test_list_send_read_and_deny_over_stdio(tmp_path: Path, node: SolanaRpcServer) -> None:
    """A real MCP client lists the tools, sends 0.25 SOL (CONFIRMED, visible on the node),
    reads it back by id, and sees a denial as a tool error with the compact JSON payload."""
    db, token, _ = _prepare(tmp_path, node.url)
    dest = sol_address()
    out = asyncio.run(
        _session(
            db,
            node.url,
            token,
            [
                ("send_transfer", {"to": dest, "amount": "0.25"}),
                ("send_transfer", {"to": dest, "amount": "2"}),
                ("get_balance", {}),
            ],
        )
    )
    tools = out["tools"]
    assert set(tools) >= {"send_transfer", "get_balance", "get_limits", "preview_transfer"}
    amount = tools["send_transfer"].input_schema["properties"]["amount"]
    assert amount["type"] == "string" and "decimal" in amount["description"].lower()

    sent, denied, balance = out["results"]
    assert not sent.is_error
    body = json.loads(sent.content[0].text)
    assert body["transaction"]["status"] == "CONFIRMED"
    assert body["transaction"]["amount"] == "0.25 SOL"
    tx_id = body["transaction"]["id"]

    assert denied.is_error
    error = json.loads(denied.content[0].text)["error"]
    assert error["code"] == "POLICY_DENIED"
    assert "at most 1 SOL can be sent now" in error["message"]
    assert error["next"]
    assert json.loads(balance.content[0].text)["balances"][0]["symbol"] == "SOL"

    # the transfer really happened on the node
    probe = LocalSolanaAdapter.rpc(node.url, network="localnet", timeout=5)
    assert probe.get_balance(dest) == SOL // 4
    probe.close()

    again = asyncio.run(_session(db, node.url, token, [("get_transaction", {"tx_id": tx_id})]))
    (read_back,) = again["results"]
    assert json.loads(read_back.content[0].text)["transaction"]["id"] == tx_id


def test_missing_token_is_refused_without_serving(tmp_path: Path, node: SolanaRpcServer) -> None:
    """Without the token variable the server exits 2 and names the variable, not a secret."""
    import subprocess

    db, _, _ = _prepare(tmp_path, node.url)
    env = {k: v for k, v in os.environ.items() if k != "WAIAAS_SESSION_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["WAIAAS_MASTER_PASSWORD"] = TEST_PASSWORD
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "waiaas",
            "mcp",
            "--db",
            str(db),
            "--solana-rpc",
            node.url,
            "--solana-network",
            "localnet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "WAIAAS_SESSION_TOKEN" in done.stderr
    assert TEST_PASSWORD not in done.stderr + done.stdout


def test_revoked_token_is_refused_at_start(tmp_path: Path, node: SolanaRpcServer) -> None:
    """A revoked session token does not start a server."""
    import subprocess

    db, token, agent_id = _prepare(tmp_path, node.url)
    chain = LocalSolanaAdapter.rpc(node.url, network="localnet", timeout=5)
    with Wallet.open(db, password=TEST_PASSWORD, chains=[chain], config=fast_config()) as w:
        for s in w.list_sessions(agent_id):
            w.revoke_session(s.session_id)
    chain.close()
    env = dict(os.environ)
    env.update(
        WAIAAS_SESSION_TOKEN=token,
        WAIAAS_MASTER_PASSWORD=TEST_PASSWORD,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "waiaas",
            "mcp",
            "--db",
            str(db),
            "--solana-rpc",
            node.url,
            "--solana-network",
            "localnet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "revoked" in done.stderr
    assert token not in done.stderr + done.stdout


@pytest.mark.parametrize("front", ["cli-global-rpc", "without-cli-extra"])
def test_both_command_lines_serve_mcp(tmp_path: Path, node: SolanaRpcServer, front: str) -> None:
    """The operator CLI takes the chain from its global --rpc; without the cli extra (typer
    missing) the minimal command line still has ``mcp``. Both list the tools over stdio."""
    db, token, _ = _prepare(tmp_path, node.url)
    if front == "cli-global-rpc":
        argv = ["-m", "waiaas", "--rpc", f"solana:localnet={node.url}", "mcp", "--db", str(db)]
    else:
        code = (
            "import sys; sys.modules['typer'] = None\n"
            "from waiaas.__main__ import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        argv = ["-c", code, "mcp", "--db", str(db), "--solana-rpc", node.url]
        argv += ["--solana-network", "localnet"]

    async def listed() -> list[str]:
        from mcp.client.session import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=sys.executable,
            args=argv,
            env={
                "WAIAAS_SESSION_TOKEN": token,
                "WAIAAS_MASTER_PASSWORD": TEST_PASSWORD,
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            },
            cwd=str(ROOT),
        )
        with open(os.devnull, "w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                limits = await session.call_tool("get_limits", {})
                assert json.loads(limits.content[0].text)["ok"] is True  # type: ignore[union-attr]
                return [t.name for t in (await session.list_tools()).tools]

    assert "send_transfer" in asyncio.run(listed())
