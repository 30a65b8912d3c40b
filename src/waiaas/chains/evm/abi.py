"""The few ERC-20 calls the adapter encodes itself, and the bundled TestToken artifact.

Encoding by hand (selector + ``eth_abi.encode``) avoids building web3 contract objects on the
hot path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "SELECTOR_APPROVE",
    "SELECTOR_BALANCE_OF",
    "SELECTOR_DECIMALS",
    "SELECTOR_MINT",
    "SELECTOR_TRANSFER",
    "SELECTOR_TRANSFER_FROM",
    "UINT256_MAX",
    "ContractArtifact",
    "bundled_token_artifact",
    "decode_uint",
    "encode_call",
]

UINT256_MAX = 2**256 - 1

SELECTOR_TRANSFER = bytes.fromhex("a9059cbb")  # transfer(address,uint256)
SELECTOR_APPROVE = bytes.fromhex("095ea7b3")  # approve(address,uint256)
SELECTOR_TRANSFER_FROM = bytes.fromhex("23b872dd")  # transferFrom(address,address,uint256)
SELECTOR_BALANCE_OF = bytes.fromhex("70a08231")  # balanceOf(address)
SELECTOR_DECIMALS = bytes.fromhex("313ce567")  # decimals()
SELECTOR_MINT = bytes.fromhex("40c10f19")  # mint(address,uint256)


def encode_call(selector: bytes, types: list[str], args: list[Any]) -> bytes:
    """``selector`` followed by the ABI encoding of ``args``."""
    from eth_abi.abi import encode

    return selector + encode(types, args)


def decode_uint(data: bytes) -> int:
    """Decode one ``uint256`` return value (raises ``ValueError`` when malformed)."""
    if len(data) != 32:
        raise ValueError(f"expected 32 bytes of return data, got {len(data)}")
    return int.from_bytes(data, "big")


@dataclass(frozen=True)
class ContractArtifact:
    """A compiled contract: name, ABI, creation bytecode and compiler information."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    compiler: str
    evm_version: str

    def constructor_data(self, types: list[str], args: list[Any]) -> bytes:
        """Creation bytecode followed by the ABI-encoded constructor arguments."""
        from eth_abi.abi import encode

        return self.bytecode + encode(types, args)


@cache
def bundled_token_artifact() -> ContractArtifact:
    """The bundled ``TestToken`` (a small ERC-20 with owner minting), loaded once."""
    text = (
        resources.files("waiaas.chains.evm")
        .joinpath("contracts", "TestToken.json")
        .read_text(encoding="utf-8")
    )
    raw = json.loads(text)
    bytecode = raw["bytecode"]
    return ContractArtifact(
        name=raw["contractName"],
        abi=tuple(raw["abi"]),
        bytecode=bytes.fromhex(bytecode[2:] if bytecode.startswith("0x") else bytecode),
        compiler=raw["compiler"],
        evm_version=raw["evmVersion"],
    )
