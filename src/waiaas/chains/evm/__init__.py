"""The EVM chain adapter (Ethereum and compatible chains).

Importing this package is cheap: web3, eth-account and eth-tester (about two seconds) are
imported when the first adapter is created.

Example::

    from waiaas.chains.evm import EvmAdapter

    evm = EvmAdapter.rpc("http://127.0.0.1:8545", chain_id=31337, network="anvil")
"""

from waiaas.chains.evm.adapter import DEFAULT_PRIORITY_FEE, EvmAdapter, EvmDevAdapter
from waiaas.chains.evm.errors import ChainIdMismatchError, map_evm_error

__all__ = [
    "DEFAULT_PRIORITY_FEE",
    "ChainIdMismatchError",
    "EvmAdapter",
    "EvmDevAdapter",
    "map_evm_error",
]
