"""OpenAI Agents SDK: the wallet tools as FunctionTools.

``Agent(name=..., tools=get_tools(handle))`` is all an application writes. Here the tools
are invoked as the SDK's runner invokes them (``on_invoke_tool`` with the model's JSON
arguments), so no model or API key is needed. Needs
``pip install 'waiaas[openai-agents,local]'``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile

from agents import Agent
from agents.tool_context import ToolContext

from waiaas.integrations.openai_agents import get_tools
from waiaas.testing import fund, local_wallet

ETH = 10**18
VENDOR = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"

with tempfile.TemporaryDirectory() as tmp, local_wallet(tmp) as wallet:
    agent = wallet.create_agent("payer", "evm")
    fund(wallet, agent.id, ETH)
    wallet.add_policy("SPENDING_LIMIT", {"per_transaction": str(ETH // 10)}, agent_id=agent.id)
    tools = get_tools(wallet.agent(wallet.issue_session(agent.id).token))
    payer = Agent(name="payer", instructions="Pay invoices within your limits.", tools=tools)
    print("agent tools:", ", ".join(t.name for t in payer.tools))
    by_name = {t.name: t for t in tools}

    async def call(name: str, args: dict[str, object]) -> dict[str, object]:
        """What the runner does when the model calls a tool."""
        text = json.dumps(args)
        ctx = ToolContext(context=None, tool_name=name, tool_call_id="1", tool_arguments=text)
        reply: dict[str, object] = json.loads(await by_name[name].on_invoke_tool(ctx, text))
        return reply

    async def main() -> None:
        preview = await call("preview_transfer", {"to": VENDOR, "amount": "0.5"})
        print("preview 0.5 ETH:", preview["allowed"], preview["hints"])
        sent = await call("send_transfer", {"to": VENDOR, "amount": "0.01"})
        print("send 0.01 ETH:", json.dumps(sent["transaction"]))
        limits = (await call("get_limits", {}))["limits"]
        print("most one transfer may move now:", limits["native_max_now"])  # type: ignore[index]

    asyncio.run(main())
    print("openai agents example finished")
