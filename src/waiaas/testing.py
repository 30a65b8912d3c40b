"""Test helpers for users of waiaas: a wallet on the in-process chains and a frozen clock.

Test your own policies against the real engine (real SQLite, real LiteSVM / eth-tester)::

    from waiaas import Transfer
    from waiaas.testing import FrozenClock, fund, local_wallet

    def test_my_daily_limit(tmp_path):
        clock = FrozenClock(1_700_000_000)
        with local_wallet(tmp_path, clock=clock) as wallet:
            agent = wallet.create_agent("bot", "solana")
            fund(wallet, agent.id, 10**10)
            wallet.add_policy("SPENDING_LIMIT", {"daily_total": "2000000000"},
                              agent_id=agent.id)
            token = wallet.issue_session(agent.id).token
            wallet.send(token, Transfer(to=some_address, amount=1_500_000_000))
            clock.advance(86_400)   # a day later the budget is free again

With pytest, ``pytest_plugins = ["waiaas.testing"]`` in a ``conftest.py`` gives the fixtures
``waiaas_clock`` (a :class:`FrozenClock`) and ``waiaas_wallet`` (a wallet on the local chains
in ``tmp_path`` using that clock).

The keystore of these wallets uses the *minimum* Argon2id cost and a fixed password: never
use them for real funds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from waiaas.chains.base import ChainAdapter, LocalChainControl
from waiaas.clock import Clock
from waiaas.config import KdfLimits, WalletConfig
from waiaas.errors import InvalidInputError
from waiaas.notify.base import Notifier
from waiaas.pipeline.engine import PipelineHooks
from waiaas.policy.model import PriceOracle
from waiaas.wallet import Wallet

__all__ = ["TEST_PASSWORD", "FrozenClock", "fast_config", "fund", "local_chains", "local_wallet"]

TEST_PASSWORD = "waiaas-test-password"  # noqa: S105 - a test fixture, documented as such


class FrozenClock:
    """A clock that only moves when told to. Thread-safe.

    Example::

        clock = FrozenClock(1_700_000_000)
        clock.advance(60)
        clock.now()  # 1_700_000_060
    """

    def __init__(self, start: int = 1_700_000_000) -> None:
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InvalidInputError(
                "start must be a non-negative int (Unix seconds)", field="start"
            )
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> int:
        """The frozen time, Unix seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: int) -> int:
        """Move forward ``seconds`` (>= 0); return the new time."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise InvalidInputError("seconds must be a non-negative int", field="seconds")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: int) -> None:
        """Jump to ``when`` (may go backwards, to test clock skew)."""
        if isinstance(when, bool) or not isinstance(when, int) or when < 0:
            raise InvalidInputError("when must be a non-negative int", field="when")
        with self._lock:
            self._now = when

    def __repr__(self) -> str:
        return f"FrozenClock({self._now})"


def local_chains() -> list[ChainAdapter]:
    """Fresh in-process chains: Solana on LiteSVM (``solana/localnet``) and EVM on
    eth-tester (``evm/local``)."""
    from waiaas.chains.evm import EvmAdapter
    from waiaas.chains.solana import SolanaAdapter

    return [SolanaAdapter.local(), EvmAdapter.local()]


def fast_config(**overrides: Any) -> WalletConfig:
    """A :class:`WalletConfig` for tests: minimum KDF cost, no retry sleeps."""
    values: dict[str, Any] = {"kdf": KdfLimits.minimum(), "retry_base_delay": 0.0}
    values.update(overrides)
    return WalletConfig(**values)


def local_wallet(
    directory: str | os.PathLike[str],
    *,
    chains: list[ChainAdapter] | None = None,
    config: WalletConfig | None = None,
    clock: Clock | None = None,
    name: str = "wallet.db",
    price_oracle: PriceOracle | None = None,
    background: bool | None = None,
    notifier: Notifier | None = None,
    hooks: PipelineHooks | None = None,
) -> Wallet:
    """A wallet in ``directory`` on fresh local chains, with the test password and
    :func:`fast_config`.

    ``background`` is passed to :meth:`Wallet.open` (``None``: due work runs in a thread
    unless ``clock`` is given). It is the :class:`~waiaas.Wallet` itself, so it works both
    ways: in a ``with`` block
    (closed when the block ends) or, in a notebook, kept open until you call ``close()``.

    Example::

        with local_wallet(tmp_path) as wallet:
            ...

        wallet = local_wallet(tempfile.mkdtemp())   # a notebook cell
        wallet.close()                              # when done
    """
    return Wallet.open(
        Path(directory) / name,
        password=TEST_PASSWORD,
        chains=chains if chains is not None else local_chains(),
        config=config or fast_config(),
        clock=clock,
        price_oracle=price_oracle,
        background=background,
        notifier=notifier,
        hooks=hooks,
    )


def fund(wallet: Wallet, agent_id: str, amount: int) -> None:
    """Give an agent ``amount`` native base units on a local chain.

    Raises:
        InvalidInputError: the agent's chain is not a local test chain.
    """
    agent = wallet.get_agent(agent_id)
    adapter = wallet.chain_adapter(agent_id)
    if not isinstance(adapter, LocalChainControl):
        raise InvalidInputError(
            f"{agent.chain}/{agent.network} is not a local test chain", field="agent_id"
        )
    adapter.fund(agent.public_key, amount)


try:  # pytest fixtures, when pytest is there
    import pytest

    @pytest.fixture
    def waiaas_clock() -> FrozenClock:
        """A :class:`FrozenClock` at 1_700_000_000."""
        return FrozenClock()

    @pytest.fixture
    def waiaas_wallet(tmp_path: Path, waiaas_clock: FrozenClock) -> Iterator[Wallet]:
        """A wallet on fresh local chains in ``tmp_path``, on ``waiaas_clock``."""
        with local_wallet(tmp_path, clock=waiaas_clock) as wallet:
            yield wallet

except ImportError:  # pragma: no cover - pytest is optional
    pass
