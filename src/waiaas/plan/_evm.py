"""Effects of an EVM plan: native value, ERC-20 calls decoded from calldata, any other call.

ERC-20 arguments are decoded strictly (exact length, zero padding). Calldata with a token
selector that is not canonical is decoded as the most lenient contract would execute it
(missing bytes read as zeros, as ``CALLDATALOAD`` does; an address is the low 160 bits of its
word; a ``uint8`` the low 8 bits; trailing bytes ignored) and a ``ContractCall`` with
``malformed=True`` is added, so the effect is never under-counted and the call is refused by
default.
"""

from __future__ import annotations

from typing import Final

from waiaas.plan._encoding import checksum_evm
from waiaas.plan.effects import (
    CONTRACT_CREATION,
    AccountLookup,
    ContractCall,
    ContractLookup,
    Effect,
    NativeTransfer,
    TokenApproval,
    TokenTransfer,
)
from waiaas.plan.model import EvmPlan

SEL_TRANSFER: Final = "0xa9059cbb"
SEL_TRANSFER_FROM: Final = "0x23b872dd"
SEL_APPROVE: Final = "0x095ea7b3"
SEL_INCREASE_ALLOWANCE: Final = "0x39509351"
SEL_PERMIT: Final = "0xd505accf"

TOKEN_METHODS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    SEL_TRANSFER: ("transfer(address,uint256)", ("address", "uint256")),
    SEL_TRANSFER_FROM: (
        "transferFrom(address,address,uint256)",
        ("address", "address", "uint256"),
    ),
    SEL_APPROVE: ("approve(address,uint256)", ("address", "uint256")),
    SEL_INCREASE_ALLOWANCE: ("increaseAllowance(address,uint256)", ("address", "uint256")),
    SEL_PERMIT: (
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
        ("address", "address", "uint256", "uint256", "uint8", "bytes32", "bytes32"),
    ),
}
"""Token selectors decoded into effects: selector -> (signature, argument types)."""

KNOWN_METHODS: Final[dict[str, str]] = {
    "0xa457c2d7": "decreaseAllowance(address,uint256)",
    "0xa22cb465": "setApprovalForAll(address,bool)",
    "0x42842e0e": "safeTransferFrom(address,address,uint256)",
    "0xb88d4fde": "safeTransferFrom(address,address,uint256,bytes)",
    "0xf242432a": "safeTransferFrom(address,address,uint256,uint256,bytes)",
    "0x2eb2c2d6": "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)",
    "0xac9650d8": "multicall(bytes[])",
    "0x5ae401dc": "multicall(uint256,bytes[])",
    "0x3593564c": "execute(bytes,bytes[],uint256)",
    "0xd0e30db0": "deposit()",
    "0x2e1a7d4d": "withdraw(uint256)",
    "0x40c10f19": "mint(address,uint256)",
    "0x42966c68": "burn(uint256)",
    "0x79cc6790": "burnFrom(address,uint256)",
    "0xf2fde38b": "transferOwnership(address)",
    "0x715018a6": "renounceOwnership()",
    "0x70a08231": "balanceOf(address)",
    "0x313ce567": "decimals()",
    "0x18160ddd": "totalSupply()",
    "0xdd62ed3e": "allowance(address,address)",
}
"""Well-known selectors named in ``ContractCall.method`` (not decoded into effects)."""


def _words(args: bytes, count: int) -> tuple[list[bytes], bool]:
    """``count`` 32-byte words of ``args`` (zero-padded) and whether the length was exact."""
    exact = len(args) == 32 * count
    padded = args.ljust(32 * count, b"\0")
    return [padded[32 * i : 32 * (i + 1)] for i in range(count)], exact


def _decode_args(args: bytes, types: tuple[str, ...]) -> tuple[list[str | int], bool]:
    """The arguments as a lenient contract reads them, and whether the encoding is canonical."""
    words, canonical = _words(args, len(types))
    out: list[str | int] = []
    for word, kind in zip(words, types, strict=True):
        if kind == "address":
            canonical &= word[:12] == b"\0" * 12
            out.append(checksum_evm(word[12:]))
        elif kind == "uint8":
            canonical &= word[:31] == b"\0" * 31
            out.append(word[31])
        elif kind == "uint256":
            out.append(int.from_bytes(word, "big"))
        else:  # bytes32: any content is canonical
            out.append("0x" + word.hex())
    return out, canonical


def _token_effect(plan: EvmPlan, selector: str, args: list[str | int]) -> Effect:
    token = plan.to
    assert token is not None
    sender = plan.sender
    if selector == SEL_TRANSFER:
        recipient, amount = str(args[0]), int(args[1])
        return TokenTransfer(token, sender, recipient, recipient, amount, sender)
    if selector == SEL_TRANSFER_FROM:
        holder, recipient, amount = str(args[0]), str(args[1]), int(args[2])
        return TokenTransfer(token, holder, recipient, recipient, amount, sender)
    if selector == SEL_APPROVE:
        return TokenApproval(token, sender, str(args[0]), int(args[1]), "approve")
    if selector == SEL_INCREASE_ALLOWANCE:
        return TokenApproval(token, sender, str(args[0]), int(args[1]), "increase")
    # permit(owner, spender, value, deadline, v, r, s)
    return TokenApproval(token, str(args[0]), str(args[1]), int(args[2]), "permit")


def decode(plan: EvmPlan, lookup: AccountLookup | None) -> tuple[Effect, ...]:
    """The effects of one EVM call (see the module docstring)."""
    effects: list[Effect] = []
    data = plan.data
    if plan.to is None:
        if plan.value:
            effects.append(NativeTransfer(plan.sender, CONTRACT_CREATION, plan.value))
        selector = "0x" + data[:4].hex() if len(data) >= 4 else None
        effects.append(ContractCall(CONTRACT_CREATION, selector, plan.value, "contract creation"))
        return tuple(effects)
    if plan.value or not data:
        effects.append(NativeTransfer(plan.sender, plan.to, plan.value))
    if not data:
        # A plain value transfer still runs the code of a contract (receive / fallback).
        if isinstance(lookup, ContractLookup) and lookup.is_contract(plan.to):
            effects.append(ContractCall(plan.to, None, plan.value, "receive()"))
        return tuple(effects)
    if len(data) < 4:
        effects.append(ContractCall(plan.to, None, plan.value, "fallback()"))
        return tuple(effects)
    selector = "0x" + data[:4].hex()
    token_method = TOKEN_METHODS.get(selector)
    if token_method is None:
        effects.append(ContractCall(plan.to, selector, plan.value, KNOWN_METHODS.get(selector)))
        return tuple(effects)
    signature, types = token_method
    args, canonical = _decode_args(data[4:], types)
    effects.append(_token_effect(plan, selector, args))
    if not canonical:
        effects.append(ContractCall(plan.to, selector, plan.value, signature, malformed=True))
    return tuple(effects)
