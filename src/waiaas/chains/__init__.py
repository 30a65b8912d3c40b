"""Chain adapters: the :class:`ChainAdapter` port and the shipped Solana and EVM adapters.

The adapters import solders / web3 lazily, so ``import waiaas`` stays fast.
"""

from waiaas.chains.base import (
    BalanceChanges,
    ChainAdapter,
    ChainTxState,
    ChainTxStatus,
    FeeQuote,
    LocalChainControl,
    NativeAsset,
    SignedTx,
    SimulationResult,
    SupportsBalanceSimulation,
    SupportsBatch,
    SupportsCallGuard,
    SupportsExactBalanceChanges,
    SupportsFeeCap,
    SupportsFeeQuote,
    SupportsNativeAsset,
    SupportsNonces,
    SupportsPlanBuild,
    SupportsPlans,
    SupportsTokenInfo,
    UnsignedTx,
)

__all__ = [
    "BalanceChanges",
    "ChainAdapter",
    "ChainTxState",
    "ChainTxStatus",
    "FeeQuote",
    "LocalChainControl",
    "NativeAsset",
    "SignedTx",
    "SimulationResult",
    "SupportsBalanceSimulation",
    "SupportsBatch",
    "SupportsCallGuard",
    "SupportsExactBalanceChanges",
    "SupportsFeeCap",
    "SupportsFeeQuote",
    "SupportsNativeAsset",
    "SupportsNonces",
    "SupportsPlanBuild",
    "SupportsPlans",
    "SupportsTokenInfo",
    "UnsignedTx",
]
