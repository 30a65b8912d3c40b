"""Solana test environments: a fresh chain per use, on LiteSVM or on the JSON-RPC test server.

:func:`make_solana_adapters` is what the shared adapter contract suite imports; the Solana
tests use :func:`litesvm_env` / :func:`rpc_env`, which also expose the chain itself (to expire
a blockhash, inject node failures, or set accounts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from solders.litesvm import LiteSVM

from waiaas.chains.solana import LocalSolanaAdapter, SolanaAdapter

try:  # tests/chains as a package, or as a rootdir-relative module directory
    from .solana_rpc_server import SolanaRpcServer
except ImportError:
    from solana_rpc_server import SolanaRpcServer  # type: ignore[no-redef]

__all__ = ["SolanaEnv", "litesvm_env", "make_solana_adapters", "rpc_env"]


@dataclass
class SolanaEnv:
    """One fresh Solana chain and an adapter on it.

    Attributes:
        name: ``"litesvm"`` or ``"solana-rpc"``.
        adapter: a :class:`LocalSolanaAdapter` (``fund``, test tokens) on the chain.
        svm: the LiteSVM that runs the chain (in-process, or behind the server).
        server: the JSON-RPC test server, for the ``"solana-rpc"`` environment.
    """

    name: str
    adapter: LocalSolanaAdapter
    svm: LiteSVM
    server: SolanaRpcServer | None = None

    def expire_blockhash(self) -> None:
        """Start a new block: every transaction built before it is stale."""
        if self.server is not None:
            self.server.expire_blockhash()
        else:
            self.svm.expire_blockhash()


@contextlib.contextmanager
def litesvm_env(**options: object) -> Iterator[SolanaEnv]:
    """An adapter on a fresh in-process LiteSVM (``options`` go to ``SolanaAdapter.local``)."""
    svm = LiteSVM()
    adapter = SolanaAdapter.local(svm=svm, **options)  # type: ignore[arg-type]
    try:
        yield SolanaEnv("litesvm", adapter, svm)
    finally:
        adapter.close()


@contextlib.contextmanager
def rpc_env(timeout: float = 5.0, **options: object) -> Iterator[SolanaEnv]:
    """An RPC adapter on a fresh LiteSVM served by the JSON-RPC test server on 127.0.0.1."""
    svm = LiteSVM()
    with SolanaRpcServer(svm) as server:
        adapter = LocalSolanaAdapter.rpc(
            server.url,
            network="localnet",
            timeout=timeout,
            **options,  # type: ignore[arg-type]
        )
        try:
            yield SolanaEnv("solana-rpc", adapter, svm, server)
        finally:
            adapter.close()


@contextlib.contextmanager
def _adapter_only(env: Callable[[], AbstractContextManager[SolanaEnv]]) -> Iterator[SolanaAdapter]:
    with env() as solana:
        yield solana.adapter


def make_solana_adapters() -> list[tuple[str, Callable[[], AbstractContextManager[SolanaAdapter]]]]:
    """``[("litesvm", factory), ("solana-rpc", factory)]``; each factory yields a ready adapter
    (a ``LocalSolanaAdapter``, so it also implements ``LocalChainControl``) on a fresh chain,
    and releases everything (the server's port included) on exit."""
    return [
        ("litesvm", lambda: _adapter_only(litesvm_env)),
        ("solana-rpc", lambda: _adapter_only(rpc_env)),
    ]
