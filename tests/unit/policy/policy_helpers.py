"""Shared builders for the policy engine tests (imported by the test modules)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from waiaas.policy import (
    Decision,
    PolicySpec,
    Usage,
    UsageRow,
    compute_usage,
    required_windows,
    to_checksum_address,
)

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
NOW = 1_780_000_000  # 2026-05-28T20:26:40Z, a Thursday
SOL = 10**9
ETH = 10**18

SOL_A = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
SOL_B = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SOL_OWNER = "So11111111111111111111111111111111111111112"
SOL_TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
EVM_A = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55 test vector
EVM_B = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"
EVM_TOKEN = "0xde709f2102306220921060314715629080e2fb77"
EVM_SPENDER = "0x27b1fdb04752bbc536007a920d24acb045561c26"


def b58(raw: bytes) -> str:
    """Base58-encode bytes (the Solana address text form)."""
    value = int.from_bytes(raw, "big")
    out = ""
    while value:
        value, digit = divmod(value, 58)
        out = B58[digit] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def sol_address() -> str:
    """A fresh random Solana address."""
    return b58(os.urandom(32))


def evm_address() -> str:
    """A fresh random EVM address in checksum form."""
    return to_checksum_address("0x" + os.urandom(20).hex())


_counter = iter(range(10**9))


def spec(
    type_: str,
    rules: dict[str, Any],
    *,
    id: str | None = None,
    agent_id: str | None = None,
    priority: int = 0,
    enabled: bool = True,
) -> PolicySpec:
    """A PolicySpec with a fresh id unless one is given."""
    return PolicySpec(
        id=id or f"{type_.lower()}-{next(_counter)}",
        agent_id=agent_id,
        type=type_,
        rules=rules,
        priority=priority,
        enabled=enabled,
    )


Decide = Callable[..., Decision]


def usage_for(specs: Iterable[PolicySpec], rows: Iterable[UsageRow] = (), now: int = NOW) -> Usage:
    """Usage with every window the given policies need."""
    return compute_usage(list(rows), now, required_windows(list(specs)))


def problems(error: BaseException) -> list[str]:
    """The ``problems`` list of an InvalidInputError."""
    return list(vars(error)["problems"])


def field_of(error: BaseException) -> str | None:
    """The ``field`` of an InvalidInputError."""
    value = vars(error)["field"]
    return None if value is None else str(value)
