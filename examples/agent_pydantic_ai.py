"""PydanticAI: the wallet tools as a toolset in an agent run.

A ``FunctionModel`` stands in for the LLM (it asks for the tool calls a model would), so the
real PydanticAI agent loop runs the tools and feeds their JSON outcomes back. With a real
model, pass it instead: ``Agent("openai:gpt-4o", toolsets=[toolset(handle)])``. Needs
``pip install 'waiaas[pydantic-ai,local]'``.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from waiaas.integrations.pydantic_ai import toolset
from waiaas.testing import fund, local_wallet

SOL = 10**9
SHOP = "So11111111111111111111111111111111111111112"
PLAN = [
    ("get_limits", {}),
    ("send_transfer", {"to": SHOP, "amount": "0.02"}),
    ("send_transfer", {"to": SHOP, "amount": 0.02}),  # a number: the model is told to fix it
]


def model(messages: list[Any], info: AgentInfo) -> ModelResponse:
    """Ask for the next planned tool call; print what the previous one answered."""
    for part in messages[-1].parts:
        if isinstance(part, ToolReturnPart):
            print(f"{part.tool_name} ->", json.dumps(part.content)[:300])
    step = sum(isinstance(m, ModelResponse) for m in messages)
    if step < len(PLAN):
        name, args = PLAN[step]
        return ModelResponse(parts=[ToolCallPart(name, args)])
    return ModelResponse(parts=[TextPart("paid 0.02 SOL")])


with tempfile.TemporaryDirectory() as tmp, local_wallet(tmp) as wallet:
    agent = wallet.create_agent("shopper", "solana")
    fund(wallet, agent.id, SOL)
    handle = wallet.agent(wallet.issue_session(agent.id).token)
    shopper = Agent(FunctionModel(model), toolsets=[toolset(handle)])
    print("agent says:", shopper.run_sync("Pay the shop 0.02 SOL.").output)
    print("pydantic-ai example finished")
