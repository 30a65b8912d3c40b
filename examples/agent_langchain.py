"""LangChain: give an agent its wallet tools as StructuredTools.

No LLM is needed to run this: the tools are invoked with ToolCalls exactly as a LangChain
agent executor does after the model asks for them (``chat_model.bind_tools(tools)``).
Needs ``pip install 'waiaas[langchain,local]'``.
"""

from __future__ import annotations

import json
import tempfile

from langchain_core.messages import ToolMessage

from waiaas.integrations.langchain import get_tools
from waiaas.testing import fund, local_wallet

SOL = 10**9
SHOP = "So11111111111111111111111111111111111111112"

with tempfile.TemporaryDirectory() as tmp, local_wallet(tmp) as wallet:
    agent = wallet.create_agent("shopper", "solana")
    fund(wallet, agent.id, 2 * SOL)
    wallet.add_policy("SPENDING_LIMIT", {"per_transaction": str(SOL // 2)}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token

    tools = {tool.name: tool for tool in get_tools(wallet.agent(token))}
    print("tools:", ", ".join(tools))

    def call(name: str, args: dict[str, object]) -> dict[str, object]:
        """What an agent executor does with the model's tool call."""
        message = tools[name].invoke({"name": name, "args": args, "id": "1", "type": "tool_call"})
        assert isinstance(message, ToolMessage)
        reply: dict[str, object] = json.loads(str(message.content))
        return reply

    print("balance:", call("get_balance", {})["balances"])
    sent = call("send_transfer", {"to": SHOP, "amount": "0.05"})
    print("send 0.05:", json.dumps(sent["transaction"]))
    denied = call("send_transfer", {"to": SHOP, "amount": "1"})
    print("send 1:", json.dumps(denied))
    print("langchain example finished")
