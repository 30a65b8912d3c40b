"""What every command shares: the wallet it opens, how it prints, how it fails."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from waiaas.errors import InvalidInputError, PasswordUnavailableError, WaiaasError

if TYPE_CHECKING:
    from waiaas.chains.base import ChainAdapter
    from waiaas.wallet import Wallet

P = ParamSpec("P")
R = TypeVar("R")

DB_ENV = "WAIAAS_DB"
RPC_ENV = "WAIAAS_RPC"
APPROVALS_URL_ENV = "WAIAAS_APPROVALS_URL"


@dataclass
class State:
    """Options of the root command, shared with every subcommand (``ctx.obj``).

    ``chains`` may be given programmatically (``app(obj={"chains": [...]})``) to run the CLI
    against chain adapters that already exist in the process (tests, embedding).
    """

    db: Path | None = None
    db_url: str | None = None  # a PostgreSQL URL given as --db (then ``db`` is None)
    rpc: list[str] = field(default_factory=list)
    approvals_url: str | None = None
    chains: list[Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)


def out() -> Console:
    """A console on the current stdout (created per call so redirection is honoured)."""
    return Console(soft_wrap=True, highlight=False)


def err() -> Console:
    """A console on the current stderr (progress bars, warnings)."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: <message>`` on one line to stderr; return the Exit to raise."""
    text = " ".join(str(message).split())
    typer.echo(f"error: {text}", err=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`WaiaasError` (or a bad file) into one clear line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except WaiaasError as exc:
            raise fail(exc.message if hasattr(exc, "message") else str(exc)) from None
        except OSError as exc:
            raise fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        raise fail("internal: the root command did not run")
    return obj


def db_path(st: State, *, must_exist: bool = True) -> Path:
    if st.db is None and st.db_url is not None:
        raise fail("this command needs an SQLite wallet file; --db names a PostgreSQL server", 2)
    if st.db is None:
        raise fail(f"no wallet database: pass --db PATH or set {DB_ENV}", 2)
    if must_exist and not st.db.is_file():
        raise fail(f"no wallet database at {st.db} (create one with `waiaas --db {st.db} init`)", 1)
    return st.db


def parse_rpc(specs: Sequence[str]) -> list[ChainAdapter]:
    """Chain adapters from ``--rpc`` values.

    ``solana:<network>=<url>`` or ``evm:<network>:<chain id>=<url>``.
    """
    adapters: list[ChainAdapter] = []
    for spec in specs:
        head, sep, url = spec.partition("=")
        parts = head.split(":")
        if not sep or not url:
            raise InvalidInputError(
                "--rpc must look like solana:<network>=<url> or evm:<network>:<chain id>=<url>",
                field="rpc",
            )
        if parts[0] == "solana" and len(parts) == 2:
            from waiaas.chains.solana import SolanaAdapter

            adapters.append(SolanaAdapter.rpc(url, network=parts[1]))
        elif parts[0] == "evm" and len(parts) == 3 and parts[2].isdigit():
            from waiaas.chains.evm import EvmAdapter

            adapters.append(EvmAdapter.rpc(url, chain_id=int(parts[2]), network=parts[1]))
        else:
            raise InvalidInputError(
                f"--rpc {head!r}: expected solana:<network> or evm:<network>:<chain id>",
                field="rpc",
            )
    return adapters


@contextmanager
def open_wallet(ctx: typer.Context, *, create: bool = False, **options: Any) -> Iterator[Wallet]:
    """Open the wallet of ``--db`` (password from the environment or keyring, else a hidden
    prompt when a terminal is attached); close it when the block ends."""
    from waiaas.config import WalletConfig
    from waiaas.wallet import Wallet

    st = state(ctx)
    path: Path | str = st.db_url if st.db_url is not None else db_path(st, must_exist=not create)
    chains = st.chains if st.chains is not None else parse_rpc(st.rpc)
    values = dict(st.config)
    if st.approvals_url is not None:
        values["approvals_url"] = st.approvals_url
    config = WalletConfig(**values)
    try:
        wallet = Wallet.open(path, chains=chains, config=config, **options)
    except PasswordUnavailableError:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise
        password = typer.prompt("Master password", hide_input=True, err=True)
        wallet = Wallet.open(path, password=password, chains=chains, config=config, **options)
        del password
    try:
        yield wallet
    finally:
        wallet.close()


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON (one document, stable key order)."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table (or a line saying there is nothing)."""
    if not rows:
        out().print(f"no {title.lower()}")
        return
    t = Table(title=title, show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out().print(t)


def when(ts: int | None) -> str:
    """Unix seconds as ISO 8601 UTC, or ``-``."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None, option: str) -> int | None:
    """``--since`` / ``--until``: Unix seconds or an ISO 8601 time (UTC when no offset)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"{option} must be Unix seconds or an ISO 8601 time, not {value!r}", field=option
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def load_json_arg(value: str, option: str) -> Any:
    """A JSON value given inline, or ``@file`` to read it from a file (``@-``: stdin)."""
    if value.startswith("@"):
        name = value[1:]
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    else:
        text = value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{option} is not valid JSON: {exc}", field=option) from None


def env_list(name: str) -> list[str]:
    return os.environ.get(name, "").split()
