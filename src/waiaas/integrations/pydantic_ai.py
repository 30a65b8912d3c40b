"""PydanticAI: the agent's tools as a ``FunctionToolset``.

Install with ``pip install 'waiaas[pydantic-ai]'``::

    from pydantic_ai import Agent
    from waiaas.integrations.pydantic_ai import toolset

    agent = Agent(model, toolsets=[toolset(wallet.agent(token))])

Each tool is built with ``Tool.from_schema`` from the hand-written JSON schema of
:mod:`waiaas.tools`; calls go to the one dispatcher in a worker thread (the agent's event
loop is never blocked) and return the outcome as a dict, refusals included, so the model
reads ``{"ok": false, "error": {...}}`` and can correct itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from waiaas.agent import AgentHandle

__all__ = ["toolset"]


def toolset(handle: AgentHandle) -> Any:
    """The agent's tools as a PydanticAI ``FunctionToolset``.

    Raises:
        ImportError: ``pydantic-ai-slim`` is not installed.
        InvalidInputError: ``handle`` is not an :class:`~waiaas.AgentHandle`.

    Example::

        agent = Agent(model, toolsets=[toolset(wallet.agent(token))])
    """
    try:
        from pydantic_ai import Tool
        from pydantic_ai.toolsets import FunctionToolset
    except ImportError as exc:
        from waiaas.integrations import missing_extra

        raise missing_extra("pydantic-ai-slim", "pydantic-ai") from exc
    import asyncio

    from waiaas.tools import Toolkit

    kit = Toolkit(handle)
    tools: list[Any] = []

    def bind(name: str) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def call(**kwargs: Any) -> dict[str, Any]:
            return await asyncio.to_thread(kit.call, name, kwargs)

        return call

    for spec in kit.specs():
        name = spec["name"]
        tools.append(Tool.from_schema(bind(name), name, spec["description"], spec["parameters"]))
    return FunctionToolset(tools)
