"""An MCP server (official ``mcp`` SDK) exposing an agent's tools over stdio.

Run it as ``python -m waiaas mcp --db wallet.db ...`` and point an MCP client (Claude
Desktop, an agent framework, ``mcp.ClientSession``) at that command. The session token comes
from an environment variable (``WAIAAS_SESSION_TOKEN`` by default), never from the command
line (which other users of the machine can read); the master password comes from the same
sources as the rest of waiaas (``WAIAAS_MASTER_PASSWORD`` or the OS keyring). Nothing is
written to stdout but the protocol; logs go to stderr.

The tools are those of :mod:`waiaas.tools`; a refusal is a tool result with ``isError`` set
and the compact JSON error as its text (so the model reads it and can correct itself).

Chains: ``--solana-rpc URL`` (with ``--solana-network``), ``--evm-rpc URL --evm-chain-id N``
(with ``--evm-network``), the operator CLI's global ``--rpc`` (``waiaas --rpc
solana:devnet=URL mcp --db PATH``), or ``--local`` for the in-process test chains (a fresh
chain per process: for trying the server out only). The agent's chain and network must be
among them.

Example (a Claude Desktop / MCP client configuration)::

    {"command": "python", "args": ["-m", "waiaas", "mcp", "--db", "/srv/agents.db",
                                   "--solana-rpc", "https://api.devnet.solana.com",
                                   "--solana-network", "devnet"],
     "env": {"WAIAAS_SESSION_TOKEN": "...", "WAIAAS_MASTER_PASSWORD": "..."}}
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from waiaas.errors import InvalidInputError, WaiaasError

if TYPE_CHECKING:
    from waiaas.agent import AgentHandle
    from waiaas.chains.base import ChainAdapter

__all__ = ["TOKEN_ENV", "build_server", "main", "serve_stdio"]

TOKEN_ENV = "WAIAAS_SESSION_TOKEN"  # noqa: S105 - the name of a variable, not a secret
"""The environment variable the server reads the session token from (by default)."""

log = logging.getLogger("waiaas.mcp")


def _require() -> Any:
    try:
        import mcp.server.lowlevel as lowlevel
    except ImportError as exc:
        from waiaas.integrations import missing_extra

        raise missing_extra("mcp", "mcp") from exc
    return lowlevel


def build_server(handle: AgentHandle) -> Any:
    """An ``mcp.server.lowlevel.Server`` whose tools act as ``handle``'s agent.

    Tool calls run in a worker thread, so the server's event loop never waits on the wallet.

    Raises:
        ImportError: the ``mcp`` extra is not installed.

    Example::

        server = build_server(wallet.agent(token))
        await server.run(read, write, server.create_initialization_options())
    """
    lowlevel = _require()
    import anyio.to_thread
    import mcp.types as types

    from waiaas.tools import Toolkit, tool_specs

    kit = Toolkit(handle)
    tools = [
        types.Tool(name=s["name"], description=s["description"], input_schema=s["parameters"])
        for s in tool_specs()
    ]

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: Any) -> Any:
        outcome = await anyio.to_thread.run_sync(kit.call, params.name, params.arguments or {})
        text = json.dumps(outcome, separators=(",", ":"))
        return types.CallToolResult(
            content=[types.TextContent(text=text)],
            structured_content=outcome,
            is_error=not outcome.get("ok", False),
        )

    from waiaas import __version__

    return lowlevel.Server(
        "waiaas",
        version=__version__,
        instructions=(
            "A wallet for this agent. Amounts are decimal strings of whole units with an "
            'asset ("0.05" of "native"). Spending policies apply; get_limits says what is '
            "allowed, preview_transfer checks a transfer without sending it."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def serve_stdio(handle: AgentHandle) -> None:
    """Serve ``handle``'s tools over this process's stdin/stdout until the client leaves.

    Raises:
        ImportError: the ``mcp`` extra is not installed.
    """
    _require()
    from mcp.server.stdio import stdio_server

    server = build_server(handle)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def _chains(args: argparse.Namespace) -> list[ChainAdapter]:
    chains: list[ChainAdapter] = []
    if args.local:
        from waiaas.testing import local_chains

        chains.extend(local_chains())
    if args.solana_rpc:
        from waiaas.chains.solana import SolanaAdapter

        chains.append(SolanaAdapter.rpc(args.solana_rpc, network=args.solana_network))
    if args.evm_rpc:
        if args.evm_chain_id is None:
            raise InvalidInputError("--evm-rpc needs --evm-chain-id", field="evm_chain_id")
        from waiaas.chains.evm import EvmAdapter

        chains.append(
            EvmAdapter.rpc(args.evm_rpc, chain_id=args.evm_chain_id, network=args.evm_network)
        )
    specs = list(getattr(args, "rpc", None) or [])
    if specs:  # the operator CLI's global --rpc (solana:<network>=<url>, evm:<net>:<id>=<url>)
        from waiaas.cli._common import parse_rpc

        chains.extend(parse_rpc(specs))
    if not chains:
        raise InvalidInputError(
            "no chain: give --solana-rpc, --evm-rpc/--evm-chain-id, --rpc or --local",
            field="chains",
        )
    return chains


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``mcp`` subcommand's options (shared by every CLI front end)."""
    parser.add_argument("--db", required=True, help="the wallet's SQLite file")
    parser.add_argument(
        "--token-env",
        default=TOKEN_ENV,
        help=f"environment variable holding the session token (default {TOKEN_ENV})",
    )
    parser.add_argument("--solana-rpc", help="Solana JSON-RPC URL")
    parser.add_argument("--solana-network", default="mainnet-beta", help="Solana network name")
    parser.add_argument("--evm-rpc", help="EVM JSON-RPC URL")
    parser.add_argument("--evm-chain-id", type=int, help="the EVM chain id the node must serve")
    parser.add_argument("--evm-network", default="mainnet", help="EVM network name")
    parser.add_argument(
        "--local", action="store_true", help="add the in-process test chains (trying out only)"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m waiaas mcp ...``: open the wallet, verify the token, serve over stdio.

    Returns the process exit status (2 on a refused configuration, with the reason on
    stderr; the token and password are never printed).
    """
    parser = argparse.ArgumentParser(prog="waiaas mcp", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve with parsed options (see :func:`add_arguments`)."""
    import anyio

    from waiaas.wallet import Wallet

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    token = os.environ.get(args.token_env, "")
    if not token:
        print(f"waiaas mcp: set the session token in ${args.token_env}", file=sys.stderr)
        return 2
    try:
        _require()
        wallet = Wallet.open(args.db, chains=_chains(args))
    except (WaiaasError, ImportError) as exc:
        print(f"waiaas mcp: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            handle = wallet.agent(token)
        except WaiaasError as exc:
            print(f"waiaas mcp: {exc}", file=sys.stderr)
            return 2
        anyio.run(serve_stdio, handle)
        return 0
    finally:
        wallet.close()
