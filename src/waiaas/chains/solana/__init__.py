"""The Solana chain adapter (solders; in-process LiteSVM or a JSON-RPC node).

Importing this package imports solders; ``import waiaas`` does not import it.

Example::

    from waiaas.chains.solana import SolanaAdapter

    local = SolanaAdapter.local()                                    # in-process LiteSVM
    devnet = SolanaAdapter.rpc("https://api.devnet.solana.com", network="devnet")
"""

from waiaas.chains.solana._fpu import leave_mmx_state
from waiaas.chains.solana.adapter import Commitment, LocalSolanaAdapter, SolanaAdapter

__all__ = ["Commitment", "LocalSolanaAdapter", "SolanaAdapter", "leave_mmx_state"]
