"""OpenAI Agents SDK: the agent's tools as ``agents.FunctionTool`` objects.

Install with ``pip install 'waiaas[openai-agents]'``::

    from agents import Agent
    from waiaas.integrations.openai_agents import get_tools

    agent = Agent(name="treasurer", instructions="...", tools=get_tools(wallet.agent(token)))

The tools carry the hand-written JSON schemas of :mod:`waiaas.tools` (non-strict: optional
arguments stay optional). The model's arguments arrive as JSON text and go to the one
dispatcher in a worker thread, so the SDK's event loop is never blocked; the outcome,
refusals included, is returned as JSON text the model reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from waiaas.agent import AgentHandle

__all__ = ["get_tools"]


def get_tools(handle: AgentHandle) -> list[Any]:
    """The agent's tools as OpenAI Agents SDK ``FunctionTool`` s.

    Raises:
        ImportError: ``openai-agents`` is not installed.
        InvalidInputError: ``handle`` is not an :class:`~waiaas.AgentHandle`.

    Example::

        tools = get_tools(wallet.agent(token))
        Agent(name="payer", tools=tools)
    """
    try:
        from agents import FunctionTool
    except ImportError as exc:
        from waiaas.integrations import missing_extra

        raise missing_extra("openai-agents", "openai-agents") from exc
    import asyncio

    from waiaas.tools import Toolkit

    kit = Toolkit(handle)
    tools = []

    def bind(name: str) -> Callable[[Any, str], Awaitable[str]]:
        async def invoke(ctx: Any, arguments: str) -> str:
            return await asyncio.to_thread(kit.call_json, name, arguments)

        return invoke

    for spec in kit.specs():
        name = spec["name"]
        invoke = bind(name)
        tools.append(
            FunctionTool(
                name=name,
                description=spec["description"],
                params_json_schema=spec["parameters"],
                on_invoke_tool=invoke,
                strict_json_schema=False,
            )
        )
    return tools
