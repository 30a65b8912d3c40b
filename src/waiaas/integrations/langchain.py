"""LangChain: the agent's tools as ``langchain_core`` ``StructuredTool`` objects.

Install with ``pip install 'waiaas[langchain]'``::

    from waiaas.integrations.langchain import get_tools

    tools = get_tools(wallet.agent(token))
    llm_with_tools = chat_model.bind_tools(tools)     # any LangChain chat model
    tools[0].invoke({"asset": "native"})              # a JSON string

Each tool's ``args_schema`` is the hand-written JSON schema of :mod:`waiaas.tools`
(descriptions included; amounts are decimal strings). A tool returns the JSON text of the
outcome; a refusal is returned the same way (``{"ok": false, "error": {...}}``) so the model
reads it, rather than raised into the agent loop. Synchronous and asynchronous invocation
both work (``ainvoke`` runs the wallet in a worker thread).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from waiaas.agent import AgentHandle

__all__ = ["get_tools"]


def get_tools(handle: AgentHandle) -> list[Any]:
    """The agent's tools as LangChain ``StructuredTool`` s.

    Raises:
        ImportError: ``langchain-core`` is not installed.
        InvalidInputError: ``handle`` is not an :class:`~waiaas.AgentHandle`.

    Example::

        tools = get_tools(wallet.agent(token))
        reply = {t.name: t for t in tools}["send_transfer"].invoke(
            {"to": dest, "amount": "0.05"})
    """
    try:
        from langchain_core.tools import StructuredTool
    except ImportError as exc:
        from waiaas.integrations import missing_extra

        raise missing_extra("langchain-core", "langchain") from exc
    import asyncio

    from waiaas.tools import Toolkit

    kit = Toolkit(handle)
    tools = []

    def bind(name: str) -> tuple[Callable[..., str], Callable[..., Awaitable[str]]]:
        # the tool's name is closed over, never an argument a model could override
        def run(**kwargs: Any) -> str:
            return kit.call_json(name, kwargs)

        async def arun(**kwargs: Any) -> str:
            return await asyncio.to_thread(kit.call_json, name, kwargs)

        return run, arun

    for spec in kit.specs():
        name = spec["name"]
        run, arun = bind(name)
        tools.append(
            StructuredTool.from_function(
                func=run,
                coroutine=arun,
                name=name,
                description=spec["description"],
                args_schema=spec["parameters"],
                infer_schema=False,
            )
        )
    return tools
