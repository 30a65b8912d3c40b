"""The operator command line: ``waiaas --db PATH <command>`` (typer + rich).

Commands: ``init``, ``agents``, ``sessions``, ``policies``, ``tx``, ``approvals``,
``kill-switch``, ``audit``, ``keystore``, ``backup``, ``health``, ``serve-approvals``, ``mcp``,
``demo``, ``version``.
Every listing takes ``--json``. The master password comes from ``WAIAAS_MASTER_PASSWORD`` or
the OS keyring, or a hidden prompt when a terminal is attached (the library never prompts).
Errors print one line, ``error: ...``, on stderr and exit non-zero (2 for usage errors).

Chains: operator commands that only read or decide need none; creating agents, dry runs and
executing approved transactions need the agent's chain, given with ``--rpc`` (repeatable, or
``WAIAAS_RPC`` separated by spaces): ``solana:<network>=<url>`` or
``evm:<network>:<chain id>=<url>``.

Needs the ``cli`` extra (``pip install waiaas[cli]``; ``serve-approvals`` also ``web``).

Example::

    export WAIAAS_DB=/var/lib/agents/wallet.db WAIAAS_MASTER_PASSWORD=...
    waiaas approvals list --json
    waiaas approvals message TX_ID > msg.txt      # the owner signs it
    waiaas approvals approve TX_ID --signature 0x...
    waiaas health --json || page-the-on-call
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from waiaas.cli import _agents, _ops, _policies, _tx
from waiaas.cli._common import APPROVALS_URL_ENV, DB_ENV, RPC_ENV, State, handle_errors, out

__all__ = ["app", "main"]

app = typer.Typer(
    name="waiaas",
    help="waiaas: operate a wallet of AI agents (agents, policies, approvals, audit, health).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar=DB_ENV,
            help="The wallet database: an SQLite file, or a postgresql+psycopg:// URL.",
        ),
    ] = None,
    rpc: Annotated[
        list[str] | None,
        typer.Option(
            "--rpc",
            envvar=RPC_ENV,
            help="A chain: solana:<network>=<url> or evm:<network>:<chain id>=<url>.",
        ),
    ] = None,
    approvals_url: Annotated[
        str | None,
        typer.Option(
            "--approvals-url",
            envvar=APPROVALS_URL_ENV,
            help="Where the approval page is served (links, SIWE domain).",
        ),
    ] = None,
) -> None:
    """Operate a waiaas wallet."""
    given = ctx.obj if isinstance(ctx.obj, dict) else {}
    db_file: Path | None = None
    db_url: str | None = None
    if db is not None:
        from waiaas.db.engine import POSTGRESQL, is_url, parse_target

        if is_url(db):
            from waiaas.cli._common import fail
            from waiaas.errors import InvalidInputError

            try:
                target = parse_target(db)
            except InvalidInputError as exc:
                raise fail(f"--db: {exc.message}", 2) from None
            if target.dialect == POSTGRESQL:
                db_url = db
            else:
                db_file = target.path
        else:
            db_file = Path(db)
    ctx.obj = State(
        db=db_file,
        db_url=db_url,
        rpc=list(rpc or []),
        approvals_url=approvals_url,
        chains=given.get("chains"),
        config=dict(given.get("config") or {}),
    )


app.add_typer(_agents.agents, name="agents")
app.add_typer(_agents.sessions, name="sessions")
app.add_typer(_policies.policies, name="policies")
app.add_typer(_tx.tx, name="tx")
app.add_typer(_tx.approvals, name="approvals")
app.add_typer(_ops.kill_switch, name="kill-switch")
app.add_typer(_ops.audit, name="audit")
app.add_typer(_ops.keystore, name="keystore")
app.command("backup")(_ops.backup)
app.command("health")(_ops.health)
app.command("serve-approvals")(_ops.serve_approvals)


@app.command("init")
@handle_errors
def init(ctx: typer.Context) -> None:
    """Create a new wallet at --db (the password is asked twice when not in the environment)."""
    import sys

    from waiaas.cli._common import db_path, fail, state
    from waiaas.config import WalletConfig
    from waiaas.errors import PasswordUnavailableError
    from waiaas.keystore import resolve_password
    from waiaas.wallet import Wallet

    st = state(ctx)
    target: Path | str
    if st.db_url is not None:
        target, keyring_user = st.db_url, _pg_location(st.db_url)
        where = f"{keyring_user} (keystore in the database)"
    else:
        path = db_path(st, must_exist=False)
        if path.exists():
            raise fail(f"{path} already exists")
        target, keyring_user = path, str(path.resolve())
        where = f"{path} (keystore {path}.keystore)"
    try:
        password = resolve_password(None, keyring_user=keyring_user)
    except PasswordUnavailableError:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise
        password = typer.prompt(
            "New master password", hide_input=True, confirmation_prompt=True, err=True
        )
    config = WalletConfig(**st.config)
    Wallet.open(target, password=password, chains=st.chains or [], config=config).close()
    del password
    out().print(f"created wallet {where}")


def _pg_location(url: str) -> str:
    """The PostgreSQL wallet at ``url`` as the CLI names it (its password as ``***``);
    refused when that schema already holds a wallet (``init`` never opens one twice)."""
    from waiaas.cli._common import fail
    from waiaas.db import Database
    from waiaas.keystore import Keystore

    db = Database.open(url)
    try:
        if Keystore.exists(db):
            raise fail(f"{db.location} already holds a wallet")
        return db.location
    finally:
        db.close()


@app.command("mcp")
def mcp(
    ctx: typer.Context,
    db: Annotated[
        Path | None, typer.Option("--db", help="The wallet database (or the global --db).")
    ] = None,
    token_env: Annotated[
        str, typer.Option("--token-env", help="Variable holding the session token.")
    ] = "WAIAAS_SESSION_TOKEN",  # noqa: S107 - the name of a variable, not a secret
    solana_rpc: Annotated[str | None, typer.Option(help="Solana JSON-RPC URL.")] = None,
    solana_network: Annotated[str, typer.Option(help="Solana network name.")] = "mainnet-beta",
    evm_rpc: Annotated[str | None, typer.Option(help="EVM JSON-RPC URL.")] = None,
    evm_chain_id: Annotated[int | None, typer.Option(help="The EVM chain id.")] = None,
    evm_network: Annotated[str, typer.Option(help="EVM network name.")] = "mainnet",
    local: Annotated[
        bool, typer.Option("--local", help="Add the in-process test chains (trying out only).")
    ] = False,
) -> None:
    """Serve an agent's wallet tools over MCP (stdio); the session token comes from
    $WAIAAS_SESSION_TOKEN, the master password from the environment or the keyring (never a
    prompt: stdin is the protocol). Chains: the global --rpc, or --solana-rpc / --evm-rpc."""
    import argparse

    from waiaas.cli._common import fail, state
    from waiaas.integrations import mcp as _mcp

    st = state(ctx)
    path: Path | str | None = db if db is not None else (st.db or st.db_url)
    if path is None:
        raise fail("give --db (or WAIAAS_DB)", code=2)
    args = argparse.Namespace(
        db=str(path),
        token_env=token_env,
        solana_rpc=solana_rpc,
        solana_network=solana_network,
        evm_rpc=evm_rpc,
        evm_chain_id=evm_chain_id,
        evm_network=evm_network,
        local=local,
        rpc=list(st.rpc),
    )
    raise typer.Exit(_mcp.run(args))


@app.command("version")
def version() -> None:
    """Print the version."""
    from waiaas import __version__

    typer.echo(__version__)


@app.command("demo")
def demo(
    delay: Annotated[int, typer.Option(help="DELAY cooldown in seconds.")] = 2,
) -> None:
    """Run the demo on the in-process local chains."""
    from waiaas.demo import run_demo

    raise typer.Exit(run_demo(delay_seconds=delay))


def _click_error(name: str) -> type[Exception]:
    """The click exception class ``name`` as typer ships it (typer vendors click)."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name and issubclass(cls, Exception):
            return cls
    raise RuntimeError(f"typer has no {name}")  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (usage errors: one line, code 2)."""
    usage_error, click_error = _click_error("UsageError"), _click_error("ClickException")
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="waiaas", standalone_mode=False)
    except usage_error as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "waiaas"
        message = exc.format_message()  # type: ignore[attr-defined]
        if not message:  # no command given: the help was shown
            return 2
        typer.echo(f"error: {message} (see '{where} --help')", err=True)
        return 2
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    except click_error as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 1))
    return result if isinstance(result, int) else 0
