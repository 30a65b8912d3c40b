"""Adapters that give an :class:`~waiaas.AgentHandle` to agent frameworks.

Each adapter is an optional extra; installing it pulls in the framework:

===================================  ===========================  =====================
module                               entry point                  extra
===================================  ===========================  =====================
``waiaas.integrations.langchain``     ``get_tools(handle)``        ``waiaas[langchain]``
``waiaas.integrations.openai_agents`` ``get_tools(handle)``        ``waiaas[openai-agents]``
``waiaas.integrations.pydantic_ai``   ``toolset(handle)``          ``waiaas[pydantic-ai]``
``waiaas.integrations.mcp``           ``python -m waiaas mcp``     ``waiaas[mcp]``
===================================  ===========================  =====================

All of them expose the tools of :mod:`waiaas.tools` (the same hand-written schemas, the same
dispatcher, the same compact JSON errors), so an agent sees one behaviour everywhere.
"""

from __future__ import annotations

__all__: list[str] = []


def missing_extra(package: str, extra: str) -> ImportError:
    """The ImportError raised when an optional framework is not installed."""
    return ImportError(f"{package} is not installed: pip install 'waiaas[{extra}]'")
