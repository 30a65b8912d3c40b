"""MCP: serve an agent's wallet tools to any MCP client.

Production: ``python -m waiaas mcp --db wallet.db --solana-rpc URL --solana-network devnet``
with the session token in ``WAIAAS_SESSION_TOKEN`` and the master password in
``WAIAAS_MASTER_PASSWORD`` (or the OS keyring), over stdio. This example first talks to the
server in-process (same tools, a funded agent), then starts ``python -m waiaas mcp --local``
as a subprocess and talks to it over stdio with the official ``mcp`` client. Needs
``pip install 'waiaas[mcp,local]'``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from waiaas.integrations.mcp import build_server
from waiaas.testing import TEST_PASSWORD, fund, local_wallet

SOL = 10**9
SHOP = "So11111111111111111111111111111111111111112"


async def in_process(handle: object) -> None:
    async with Client(build_server(handle)) as client:  # type: ignore[arg-type]
        tools = await client.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools))
        sent = await client.call_tool("send_transfer", {"to": SHOP, "amount": "0.05"})
        print("send 0.05:", sent.content[0].text)  # type: ignore[union-attr]
        denied = await client.call_tool("send_transfer", {"to": SHOP, "amount": "5"})
        print("send 5 -> error:", denied.is_error, denied.content[0].text)  # type: ignore[union-attr]


async def over_stdio(db: str, token: str) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "waiaas", "mcp", "--db", db, "--local"],
        env={
            "WAIAAS_SESSION_TOKEN": token,
            "WAIAAS_MASTER_PASSWORD": TEST_PASSWORD,
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
    )
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = await session.list_tools()
            print("over stdio:", len(tools.tools), "tools")
            limits = await session.call_tool("get_limits", {})
            left = json.loads(limits.content[0].text)["limits"]["native_max_now"]  # type: ignore[union-attr]
            print("over stdio, most one transfer may move now:", left)


with tempfile.TemporaryDirectory() as tmp:
    with local_wallet(tmp, background=False) as wallet:
        agent = wallet.create_agent("mcp-agent", "solana")
        fund(wallet, agent.id, 2 * SOL)
        wallet.add_policy("SPENDING_LIMIT", {"per_transaction": str(SOL)}, agent_id=agent.id)
        token = wallet.issue_session(agent.id).token
        asyncio.run(in_process(wallet.agent(token)))
        db = str(wallet.path)
    asyncio.run(over_stdio(db, token))
    print("mcp example finished")
