"""Command line: ``python -m waiaas`` / the ``waiaas`` script.

The operator CLI lives in :mod:`waiaas.cli` (typer + rich, the ``cli`` extra). Without that
extra only ``demo``, ``mcp`` (the MCP server, :mod:`waiaas.integrations.mcp`) and ``version``
are available.
"""

from __future__ import annotations

import argparse
import sys


def _minimal(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="waiaas",
        description="waiaas wallet engine (install waiaas[cli] for the operator commands)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo on the in-process local chains")
    demo.add_argument("--delay", type=int, default=2, help="DELAY cooldown in seconds")
    sub.add_parser("version", help="print the version")
    from waiaas.integrations import mcp as _mcp

    _mcp.add_arguments(sub.add_parser("mcp", help="serve an agent's tools over MCP (stdio)"))
    args = parser.parse_args(argv)
    if args.command == "mcp":
        return _mcp.run(args)
    if args.command == "version":
        from waiaas import __version__

        print(__version__)
        return 0
    from waiaas.demo import run_demo

    return run_demo(delay_seconds=args.delay)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m waiaas`` / the ``waiaas`` script."""
    try:
        from waiaas.cli import main as cli_main
    except ImportError:  # the cli extra (typer, rich) is not installed
        return _minimal(argv)
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
