"""Chain adapters: the :class:`ChainAdapter` port and the shipped Solana and EVM adapters.

The adapters import solders / web3 lazily, so ``import waiaas`` stays fast.
"""

from waiaas.chains.base import (
    ChainAdapter,
    ChainTxState,
    ChainTxStatus,
    LocalChainControl,
    SignedTx,
    SimulationResult,
    SupportsNonces,
    UnsignedTx,
)

__all__ = [
    "ChainAdapter",
    "ChainTxState",
    "ChainTxStatus",
    "LocalChainControl",
    "SignedTx",
    "SimulationResult",
    "SupportsNonces",
    "UnsignedTx",
]
