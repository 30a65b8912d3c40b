"""What the shipped adapters know about their chain families, in one place.

The Solana and EVM adapters implement the family-fact protocols of :mod:`waiaas.chains.base`
(:class:`~waiaas.chains.base.SupportsNativeAsset`, :class:`~waiaas.chains.base.SupportsBatch`,
:class:`~waiaas.chains.base.SupportsCallGuard`) with the values below. They live here, and not
in the adapters' packages, so a process that holds no adapter of a chain (the CLI reading a
wallet without an RPC URL, a notification about another network) can still show SOL and ETH
amounts without importing solders or web3.

A third-party adapter is asked for its own facts: :func:`native_asset_for` prefers an
adapter of the chain and falls back to the shipped families only for ``"solana"`` and
``"evm"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from waiaas.chains.base import NativeAsset, native_asset_of

__all__ = [
    "ERC20_SELECTORS",
    "EVM_NATIVE",
    "SHIPPED_NATIVE",
    "SOLANA_ASSET_PROGRAMS",
    "SOLANA_NATIVE",
    "evm_refused_call",
    "native_asset_for",
    "solana_refused_call",
]

SOLANA_NATIVE = NativeAsset("SOL", 9)
EVM_NATIVE = NativeAsset("ETH", 18)

#: The native coin of each shipped family, by chain name.
SHIPPED_NATIVE: Mapping[str, NativeAsset] = MappingProxyType(
    {"solana": SOLANA_NATIVE, "evm": EVM_NATIVE}
)

#: Solana programs a raw call may not reach: they move SOL and tokens, which ``Transfer``,
#: ``TokenTransfer`` and ``Approve`` do within budgets and approval limits.
SOLANA_ASSET_PROGRAMS: Mapping[str, str] = MappingProxyType(
    {
        "11111111111111111111111111111111": "the System program (use Transfer)",
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA": "the SPL Token program "
        "(use TokenTransfer or Approve)",
        "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb": "the Token-2022 program "
        "(use TokenTransfer or Approve)",
    }
)

#: ERC-20 methods a raw call may not use, by selector (``TokenTransfer`` / ``Approve`` do
#: them within budgets and approval limits).
ERC20_SELECTORS: Mapping[str, str] = MappingProxyType(
    {
        "0xa9059cbb": "transfer(address,uint256) (use TokenTransfer)",
        "0x23b872dd": "transferFrom(address,address,uint256) (use TokenTransfer)",
        "0x095ea7b3": "approve(address,uint256) (use Approve)",
        "0x39509351": "increaseAllowance(address,uint256) (use Approve)",
    }
)


def solana_refused_call(to: str, data: bytes) -> tuple[str, str] | None:
    """Why a raw Solana call to program ``to`` is refused, or ``None``.

    >>> solana_refused_call("11111111111111111111111111111111", b"")[0]
    'to'
    """
    what = SOLANA_ASSET_PROGRAMS.get(to)
    if what is None:
        return None
    return "to", (
        f"a CONTRACT_CALL to {what} is refused: it would move funds outside the spending limits"
    )


def evm_refused_call(to: str, data: bytes) -> tuple[str, str] | None:
    """Why a raw EVM call with calldata ``data`` is refused (an ERC-20 transfer or approval
    method), or ``None``.

    >>> evm_refused_call("0x" + "11" * 20, bytes.fromhex("a9059cbb") + bytes(64))[0]
    'data'
    """
    if len(data) < 4:
        return None
    what = ERC20_SELECTORS.get("0x" + data[:4].hex())
    if what is None:
        return None
    return "data", (
        f"a CONTRACT_CALL to {what} is refused: it would move tokens outside the spending "
        "and approval limits"
    )


def native_asset_for(chain: str, adapters: Iterable[object] = ()) -> NativeAsset | None:
    """The native coin of ``chain``: the one the first adapter of that chain in ``adapters``
    names, else the shipped family's (``"solana"``, ``"evm"``), else ``None``.

    >>> native_asset_for("evm")
    NativeAsset(symbol='ETH', decimals=18)
    >>> native_asset_for("bitcoin") is None
    True
    """
    for adapter in adapters:
        if getattr(adapter, "chain", None) == chain:
            found = native_asset_of(adapter)
            if found is not None:
                return found
    return SHIPPED_NATIVE.get(chain)
