"""EVM test environments: a fresh chain per use, in-process (eth-tester) or on a real anvil node.

:func:`make_evm_adapters` is what the shared adapter contract suite imports. The EVM tests
use :func:`tester_env` / :func:`anvil_env` (or a module-scoped anvil with snapshots), which
also expose the node itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from anvil import AnvilNode, anvil_node

from waiaas.chains.evm import EvmAdapter, EvmDevAdapter

__all__ = ["EvmEnv", "anvil_env", "make_evm_adapters", "tester_env", "web3_for"]

ANVIL_CHAIN_ID = 31337


@dataclass
class EvmEnv:
    """One fresh EVM chain and an adapter (with test controls) on it.

    Attributes:
        name: ``"eth-tester"`` or ``"anvil"``.
        adapter: an :class:`EvmDevAdapter` on the chain.
        node: the anvil process, for the ``"anvil"`` environment.
    """

    name: str
    adapter: EvmDevAdapter
    node: AnvilNode | None = None


def web3_for(adapter: EvmAdapter) -> Any:
    """A middleware-free ``Web3`` on the adapter's own chain, to check the adapter against
    the node or to provoke raw upstream failures."""
    from web3 import Web3

    from waiaas.chains.evm.backends import HttpBackend, TesterBackend

    backend = adapter._backend
    if isinstance(backend, TesterBackend):
        return backend.w3
    assert isinstance(backend, HttpBackend)
    return Web3(backend._provider, middleware=[])


@contextlib.contextmanager
def tester_env() -> Iterator[EvmEnv]:
    """An adapter on a fresh in-process eth-tester chain."""
    with EvmAdapter.local() as adapter:
        yield EvmEnv("eth-tester", adapter)


@contextlib.contextmanager
def anvil_env(chain_id: int = ANVIL_CHAIN_ID) -> Iterator[EvmEnv]:
    """An adapter on a freshly started anvil node (skipped when anvil is not installed)."""
    with (
        anvil_node(chain_id) as node,
        EvmAdapter.anvil(node.url, chain_id=chain_id, timeout=10.0) as adapter,
    ):
        yield EvmEnv("anvil", adapter, node)


@contextlib.contextmanager
def _adapter_only(env: Callable[[], AbstractContextManager[EvmEnv]]) -> Iterator[EvmDevAdapter]:
    with env() as evm:
        yield evm.adapter


def make_evm_adapters() -> list[tuple[str, Callable[[], AbstractContextManager[EvmDevAdapter]]]]:
    """``[("eth-tester", factory), ("anvil", factory)]``; each factory yields a ready
    :class:`EvmDevAdapter` (so it also implements ``LocalChainControl``) on a fresh chain and
    releases everything (the anvil process included) on exit."""
    return [
        ("eth-tester", lambda: _adapter_only(tester_env)),
        ("anvil", lambda: _adapter_only(anvil_env)),
    ]
