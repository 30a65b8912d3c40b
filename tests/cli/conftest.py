"""A wallet on the in-process chains for the CLI tests, and a runner that points the CLI at
it (``--db``, the password in the environment, the same live chain adapters)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.e2e.conftest import TIER_AMOUNTS, EvmOwner, Owner, new_agent, recipient
from waiaas import Transfer, Wallet
from waiaas.cli import app
from waiaas.config import KdfLimits
from waiaas.testing import TEST_PASSWORD, fast_config, local_chains, local_wallet

ENV = {"WAIAAS_MASTER_PASSWORD": TEST_PASSWORD, "COLUMNS": "200"}


@dataclass
class Cli:
    """The test's own wallet (system clock) and a CLI runner on the same file and chains."""

    wallet: Wallet
    db: Path
    chains: list[Any]
    runner: CliRunner

    def run(self, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Result:
        obj = {"chains": self.chains, "config": {"kdf": KdfLimits.minimum()}}
        return self.runner.invoke(
            app, ["--db", str(self.db), *args], env={**ENV, **(env or {})}, obj=obj, **kw
        )

    def ok(self, *args: str, **kw: Any) -> Result:
        result = self.run(*args, **kw)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kw).stdout)

    def error(self, *args: str, code: int = 1, **kw: Any) -> str:
        """Run a command that must fail: one ``error: ...`` line on stderr, exit ``code``."""
        result = self.run(*args, **kw)
        assert result.exit_code == code, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.output
        return lines[0]

    def queue_approval(self, owner: Owner, chain: str = "evm", name: str = "trader") -> str:
        agent = new_agent(self.wallet, chain, owner=owner, name=name)
        token = self.wallet.issue_session(agent.id).token
        amount = TIER_AMOUNTS[chain]["APPROVAL"]
        result = self.wallet.send(token, Transfer(to=recipient(chain), amount=amount))
        assert result.tier == "APPROVAL"
        return result.id


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    chains = local_chains()
    with local_wallet(tmp_path, chains=chains, config=fast_config()) as wallet:
        yield Cli(wallet=wallet, db=tmp_path / "wallet.db", chains=chains, runner=CliRunner())


@pytest.fixture
def owner() -> EvmOwner:
    return EvmOwner()
