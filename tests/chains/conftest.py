"""Fixtures shared by the chain tests: one ``adapter`` fixture over every backend.

``adapter`` is parametrised over litesvm, solana-rpc, eth-tester and anvil. Each test gets a
ready adapter (implementing ``ChainAdapter`` and ``LocalChainControl``) on a fresh chain. The
Solana environments come from ``solana_fixtures.make_solana_adapters()``, imported lazily:
their parameters are skipped only while that module does not exist. anvil parameters carry
the ``anvil`` marker and are skipped locally (failed under ``$CI``) when the binary is absent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

Factory = Callable[[], AbstractContextManager[Any]]

SOLANA_BACKENDS = ("litesvm", "solana-rpc")
EVM_BACKENDS = ("eth-tester", "anvil")


def _factories(module_name: str, maker: str) -> dict[str, Factory] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return dict(getattr(module, maker)())


def backend_factory(name: str) -> Factory:
    """The factory for backend ``name``."""
    if name in SOLANA_BACKENDS:
        found = _factories("solana_fixtures", "make_solana_adapters")
    else:
        found = _factories("evm_fixtures", "make_evm_adapters")
    assert found is not None, f"the fixtures module for {name} is missing"
    return found[name]


@pytest.fixture(
    params=[
        *SOLANA_BACKENDS,
        "eth-tester",
        pytest.param("anvil", marks=pytest.mark.anvil),
    ]
)
def adapter(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A ready adapter with test controls on a fresh chain, for each backend in turn."""
    with backend_factory(request.param)() as chain_adapter:
        yield chain_adapter


# --------------------------------------------------------------------------- EVM-specific


@pytest.fixture(scope="module")
def anvil_shared() -> Iterator[Any]:
    """One anvil node per test module (tests isolate themselves with snapshots)."""
    from anvil import anvil_node
    from evm_fixtures import ANVIL_CHAIN_ID

    with anvil_node(ANVIL_CHAIN_ID) as node:
        yield node


@pytest.fixture
def anvil_env(anvil_shared: Any) -> Iterator[Any]:
    """A fresh adapter on the module's anvil node; the chain is reverted afterwards."""
    from evm_fixtures import EvmEnv

    from waiaas.chains.evm import EvmAdapter

    snapshot = anvil_shared.snapshot()
    try:
        with EvmAdapter.anvil(
            anvil_shared.url, chain_id=anvil_shared.chain_id, timeout=10.0
        ) as adapter:
            yield EvmEnv("anvil", adapter, anvil_shared)
    finally:
        anvil_shared.revert(snapshot)


@pytest.fixture
def tester_env() -> Iterator[Any]:
    """A fresh adapter on a fresh in-process eth-tester chain."""
    from evm_fixtures import tester_env as make_tester_env

    with make_tester_env() as env:
        yield env


@pytest.fixture(params=["eth-tester", pytest.param("anvil", marks=pytest.mark.anvil)])
def evm_env(request: pytest.FixtureRequest) -> Any:
    """An ``EvmEnv`` on eth-tester and on anvil in turn."""
    return request.getfixturevalue("tester_env" if request.param == "eth-tester" else "anvil_env")
