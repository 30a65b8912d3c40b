"""Each framework adapter through its framework's own tool-calling interface (no LLM: the
tools are called as the framework calls them), on LiteSVM and eth-tester: a send, a denial
read back as JSON, a dry run, balances in human units."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.e2e.conftest import new_agent, recipient
from waiaas import AgentHandle, TxStatus
from waiaas.wallet import Wallet

SMALL = {"solana": "0.01", "evm": "0.001"}
TOO_MUCH = {"solana": "3", "evm": "0.3"}
LIMIT = {"solana": str(10**9), "evm": str(10**17)}  # 1 SOL / 0.1 ETH per transaction
SYMBOL = {"solana": "SOL", "evm": "ETH"}


def _handle(wallet: Wallet, chain: str) -> AgentHandle:
    agent = new_agent(wallet, chain)
    wallet.add_policy("SPENDING_LIMIT", {"per_transaction": LIMIT[chain]}, agent_id=agent.id)
    return wallet.agent(wallet.issue_session(agent.id).token)


def _check_story(
    wallet: Wallet, chain: str, handle: AgentHandle, replies: dict[str, Any], dest: str
) -> None:
    sent = replies["send"]
    assert sent["ok"] is True
    tx = sent["transaction"]
    assert tx["status"] == "CONFIRMED" and tx["amount"] == f"{SMALL[chain]} {SYMBOL[chain]}"
    assert wallet.get_transaction(tx["id"]).status == TxStatus.CONFIRMED

    denied = replies["deny"]
    assert denied["ok"] is False
    assert denied["error"]["code"] == "POLICY_DENIED"
    assert denied["error"]["rule"] == "SPENDING_LIMIT"
    assert denied["error"]["next"]

    preview = replies["preview"]
    assert preview["ok"] is True and preview["allowed"] is False
    # An agent's preview is redacted: the outcome and the one deciding figure, never the
    # per-tier thresholds or other rules.
    assert "max_amount_by_tier" not in preview
    assert preview["reasons"] and len(preview["reasons"]) == 1
    assert any("can be sent now" in h for h in preview["hints"])
    assert [t.id for t in handle.transactions(status="CONFIRMED")] == [tx["id"]]

    (native,) = replies["balance"]["balances"]
    assert native["symbol"] == SYMBOL[chain]
    assert native["display"] == f"{native['display'].split()[0]} {SYMBOL[chain]}"
    assert "." in native["display"]  # fees and the transfer left a fractional balance


def test_langchain_structured_tools(wallet: Wallet, chain: str) -> None:
    """langchain-core StructuredTools: invoked with a ToolCall (as an agent executor does),
    they answer ToolMessages whose content is the JSON outcome; ainvoke works too."""
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import StructuredTool

    from waiaas.integrations.langchain import get_tools

    handle = _handle(wallet, chain)
    tools = {t.name: t for t in get_tools(handle)}
    assert all(isinstance(t, StructuredTool) for t in tools.values())
    assert tools["send_transfer"].args["amount"]["type"] == "string"
    dest = recipient(chain)

    def call(name: str, args: dict[str, Any], call_id: str) -> Any:
        message = tools[name].invoke(
            {"name": name, "args": args, "id": call_id, "type": "tool_call"}
        )
        assert isinstance(message, ToolMessage) and message.tool_call_id == call_id
        return json.loads(message.content)  # type: ignore[arg-type]

    replies = {
        "send": call("send_transfer", {"to": dest, "amount": SMALL[chain]}, "c1"),
        "deny": call("send_transfer", {"to": dest, "amount": TOO_MUCH[chain]}, "c2"),
        "preview": call("preview_transfer", {"to": dest, "amount": TOO_MUCH[chain]}, "c3"),
        "balance": json.loads(asyncio.run(tools["get_balance"].ainvoke({}))),
    }
    _check_story(wallet, chain, handle, replies, dest)
    floats = call("send_transfer", {"to": dest, "amount": 0.5}, "c4")
    assert floats["error"]["code"] == "INVALID_INPUT"


def test_openai_agents_function_tools(wallet: Wallet, chain: str) -> None:
    """OpenAI Agents SDK FunctionTools: on_invoke_tool with a ToolContext and the model's JSON
    arguments, as the SDK's runner calls them."""
    from agents import FunctionTool
    from agents.tool_context import ToolContext

    from waiaas.integrations.openai_agents import get_tools

    handle = _handle(wallet, chain)
    tools = {t.name: t for t in get_tools(handle)}
    assert all(isinstance(t, FunctionTool) for t in tools.values())
    assert tools["send_transfer"].params_json_schema["properties"]["amount"]["type"] == "string"
    dest = recipient(chain)

    async def call(name: str, args: dict[str, Any]) -> Any:
        text = json.dumps(args)
        ctx = ToolContext(context=None, tool_name=name, tool_call_id="c", tool_arguments=text)
        return json.loads(await tools[name].on_invoke_tool(ctx, text))

    async def story() -> dict[str, Any]:
        return {
            "send": await call("send_transfer", {"to": dest, "amount": SMALL[chain]}),
            "deny": await call("send_transfer", {"to": dest, "amount": TOO_MUCH[chain]}),
            "preview": await call("preview_transfer", {"to": dest, "amount": TOO_MUCH[chain]}),
            "balance": await call("get_balance", {}),
        }

    _check_story(wallet, chain, handle, asyncio.run(story()), dest)


def test_pydantic_ai_toolset_in_an_agent_run(wallet: Wallet, chain: str) -> None:
    """A PydanticAI Agent with the toolset and a FunctionModel that asks for the tool calls a
    model would: the agent loop runs the tools and hands their outcomes back to the model."""
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from waiaas.integrations.pydantic_ai import toolset

    handle = _handle(wallet, chain)
    dest = recipient(chain)
    plan = [
        ("send", "send_transfer", {"to": dest, "amount": SMALL[chain]}),
        ("deny", "send_transfer", {"to": dest, "amount": TOO_MUCH[chain]}),
        ("preview", "preview_transfer", {"to": dest, "amount": TOO_MUCH[chain]}),
        ("balance", "get_balance", {}),
    ]
    seen: dict[str, Any] = {}

    def model(messages: list[Any], info: AgentInfo) -> ModelResponse:
        assert {t.name for t in info.function_tools} >= {"send_transfer", "get_limits"}
        for part in messages[-1].parts:
            if isinstance(part, ToolReturnPart):
                seen[part.tool_call_id] = part.content
        step = len(seen)
        if step < len(plan):
            key, name, args = plan[step]
            return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=key)])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(model), toolsets=[toolset(handle)])
    # asyncio.run closes its loop (run_sync leaves one open for the process)
    assert asyncio.run(agent.run("pay and report")).output == "done"
    _check_story(wallet, chain, handle, seen, dest)
