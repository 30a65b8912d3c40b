"""The canonical plan: exactly what a transaction will do, typed, lossless and versioned.

A plan is read from the built message / transaction that will be signed (see
``SupportsPlans.plan_of`` in :mod:`waiaas.chains.base`), never from the caller's description of
it. Policies judge the effects decoded from it, the owner approves its digest, and at signing
the rebuilt transaction must produce the same plan.

What a plan holds:

* Solana: the network, the fee payer and every instruction (program id, each account with its
  signer / writable flags as the message states them, and the raw instruction data).
* EVM: the network, the chain id, the sender, ``to`` (``None`` for a contract creation),
  ``value`` in wei and the raw calldata.

Fees, nonce, recent blockhash and gas limits are not part of the plan: they change when a
transaction is rebuilt. (Solana compute-budget instructions *are*, because they are
instructions; the adapter takes them from its configuration, so a rebuild keeps them.)

The JSON form (:func:`plan_to_json`) is versioned (``"v": 1``); bytes are ``0x``-prefixed
lowercase hex, integers decimal strings, addresses in their canonical spelling (base58 for
Solana, EIP-55 for EVM). :func:`plan_from_json` accepts exactly that form and nothing else, so
``plan_to_json(plan_from_json(d)) == d`` for every accepted ``d`` and the digest of a plan is
unique. Every check raises :class:`~waiaas.errors.InvalidInputError`.

Example::

    plan = EvmPlan(network="local", chain_id=1, sender=me, to=token, value=0, data=calldata)
    stored = plan_to_json(plan)                     # JSON-able dict
    assert plan_from_json(stored) == plan
    digest = plan_digest(plan)                      # "0x" + 64 hex digits
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from waiaas.errors import InvalidInputError
from waiaas.plan._encoding import (
    hex_of,
    is_canonical_evm_address,
    is_solana_address,
    parse_decimal,
    parse_hex,
)

__all__ = [
    "MAX_EVM_DATA",
    "MAX_SOLANA_DATA",
    "PLAN_VERSION",
    "EvmPlan",
    "Plan",
    "SolanaAccountMeta",
    "SolanaInstruction",
    "SolanaPlan",
    "canonical_bytes",
    "plan_digest",
    "plan_from_json",
    "plan_to_json",
]

PLAN_VERSION: Final = 1
"""The version of the plan schema this code writes and reads."""

MAX_SOLANA_DATA: Final = 1232
"""Largest Solana instruction data a plan accepts (a whole transaction is at most 1232 bytes)."""
MAX_EVM_DATA: Final = 128 * 1024
"""Largest EVM calldata a plan accepts (nodes refuse transactions above 128 KiB)."""
_MAX_INSTRUCTIONS: Final = 256
_MAX_ACCOUNTS: Final = 256
_UINT256_MAX: Final = 2**256 - 1
_MAX_NETWORK: Final = 64


def _fail(message: str, field: str) -> InvalidInputError:
    return InvalidInputError(message, field=field)


def _check_network(network: object, field: str) -> None:
    if (
        not isinstance(network, str)
        or not network
        or network != network.strip()
        or len(network) > _MAX_NETWORK
        or not network.isprintable()
    ):
        raise _fail(
            f"{field} must be a non-empty printable name of at most {_MAX_NETWORK} characters "
            "without surrounding spaces",
            field,
        )


def _check_solana_address(value: object, field: str) -> None:
    if not is_solana_address(value):
        raise _fail(f"{field} must be a canonical base58 Solana address (32 bytes)", field)


def _check_evm_address(value: object, field: str) -> None:
    if not is_canonical_evm_address(value):
        raise _fail(f"{field} must be an EVM address in its EIP-55 checksummed spelling", field)


def _check_bytes(value: object, field: str, limit: int) -> None:
    if type(value) is not bytes:
        raise _fail(f"{field} must be bytes", field)
    if len(value) > limit:
        raise _fail(f"{field} is {len(value)} bytes; at most {limit} are allowed", field)


def _check_bool(value: object, field: str) -> None:
    if not isinstance(value, bool):
        raise _fail(f"{field} must be a bool", field)


@dataclass(frozen=True)
class SolanaAccountMeta:
    """One account an instruction passes to its program.

    Attributes:
        pubkey: the account's base58 address.
        is_signer: the transaction carries this account's signature.
        is_writable: the message lets programs write this account.
    """

    pubkey: str
    is_signer: bool
    is_writable: bool

    def __post_init__(self) -> None:
        _check_solana_address(self.pubkey, "pubkey")
        _check_bool(self.is_signer, "is_signer")
        _check_bool(self.is_writable, "is_writable")


@dataclass(frozen=True)
class SolanaInstruction:
    """One instruction: the program it calls, its accounts in order, its raw data.

    Attributes:
        program_id: the base58 address of the program.
        accounts: the accounts in the order the program receives them.
        data: the instruction data, byte for byte.
    """

    program_id: str
    accounts: tuple[SolanaAccountMeta, ...]
    data: bytes

    def __post_init__(self) -> None:
        _check_solana_address(self.program_id, "program_id")
        if not isinstance(self.accounts, tuple) or not all(
            isinstance(a, SolanaAccountMeta) for a in self.accounts
        ):
            raise _fail("accounts must be a tuple of SolanaAccountMeta", "accounts")
        if len(self.accounts) > _MAX_ACCOUNTS:
            raise _fail(f"an instruction has at most {_MAX_ACCOUNTS} accounts", "accounts")
        _check_bytes(self.data, "data", MAX_SOLANA_DATA)


@dataclass(frozen=True)
class SolanaPlan:
    """A Solana transaction's plan: who pays the fee and every instruction, in order.

    Attributes:
        network: the network the transaction is for (``"localnet"``, ``"mainnet-beta"``...).
        fee_payer: the account that pays the fee (the first signer).
        instructions: every instruction the transaction runs, in order.
    """

    network: str
    fee_payer: str
    instructions: tuple[SolanaInstruction, ...]

    def __post_init__(self) -> None:
        _check_network(self.network, "network")
        _check_solana_address(self.fee_payer, "fee_payer")
        if not isinstance(self.instructions, tuple) or not all(
            isinstance(i, SolanaInstruction) for i in self.instructions
        ):
            raise _fail("instructions must be a tuple of SolanaInstruction", "instructions")
        if len(self.instructions) > _MAX_INSTRUCTIONS:
            raise _fail(
                f"a transaction has at most {_MAX_INSTRUCTIONS} instructions", "instructions"
            )

    @property
    def chain(self) -> str:
        """Always ``"solana"``."""
        return "solana"


@dataclass(frozen=True)
class EvmPlan:
    """An EVM transaction's plan: the call it makes.

    Attributes:
        network: the network name (``"mainnet"``, ``"local"``...).
        chain_id: the EIP-155 chain id the transaction is signed for.
        sender: the EIP-55 address that signs and pays.
        to: the EIP-55 address called, or ``None`` for a contract creation.
        value: wei sent with the call.
        data: the calldata, byte for byte.
    """

    network: str
    chain_id: int
    sender: str
    to: str | None
    value: int
    data: bytes

    def __post_init__(self) -> None:
        _check_network(self.network, "network")
        if isinstance(self.chain_id, bool) or not isinstance(self.chain_id, int):
            raise _fail("chain_id must be an int", "chain_id")
        if not 0 < self.chain_id <= _UINT256_MAX:
            raise _fail("chain_id must be positive", "chain_id")
        _check_evm_address(self.sender, "sender")
        if self.to is not None:
            _check_evm_address(self.to, "to")
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise _fail("value must be an int of wei", "value")
        if not 0 <= self.value <= _UINT256_MAX:
            raise _fail("value must be in 0..2**256-1", "value")
        _check_bytes(self.data, "data", MAX_EVM_DATA)

    @property
    def chain(self) -> str:
        """Always ``"evm"``."""
        return "evm"


Plan = SolanaPlan | EvmPlan
"""A plan of either chain family."""


# --------------------------------------------------------------------------- JSON


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The versioned JSON form of ``plan`` (a dict of str, bool, list, dict and None).

    Bytes are ``0x`` + lowercase hex, integers decimal strings.

    Raises:
        InvalidInputError: ``plan`` is not a :class:`SolanaPlan` or :class:`EvmPlan`.

    Example::

        plan_to_json(plan)["data"]   # "0xa9059cbb..."
    """
    if isinstance(plan, SolanaPlan):
        return {
            "v": PLAN_VERSION,
            "chain": "solana",
            "network": plan.network,
            "fee_payer": plan.fee_payer,
            "instructions": [
                {
                    "program_id": ix.program_id,
                    "accounts": [
                        {
                            "pubkey": meta.pubkey,
                            "is_signer": meta.is_signer,
                            "is_writable": meta.is_writable,
                        }
                        for meta in ix.accounts
                    ],
                    "data": hex_of(ix.data),
                }
                for ix in plan.instructions
            ],
        }
    if isinstance(plan, EvmPlan):
        return {
            "v": PLAN_VERSION,
            "chain": "evm",
            "network": plan.network,
            "chain_id": str(plan.chain_id),
            "sender": plan.sender,
            "to": plan.to,
            "value": str(plan.value),
            "data": hex_of(plan.data),
        }
    raise _fail("plan must be a SolanaPlan or an EvmPlan", "plan")


def _object(data: object, keys: frozenset[str], field: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _fail(f"{field} must be a JSON object", field)
    found = set(data)
    if found != keys:
        missing = sorted(keys - found)
        extra = sorted(str(k) for k in found - keys)
        raise _fail(f"{field}: missing keys {missing}, unexpected keys {extra}", field)
    return data


_SOLANA_KEYS = frozenset({"v", "chain", "network", "fee_payer", "instructions"})
_EVM_KEYS = frozenset({"v", "chain", "network", "chain_id", "sender", "to", "value", "data"})
_IX_KEYS = frozenset({"program_id", "accounts", "data"})
_META_KEYS = frozenset({"pubkey", "is_signer", "is_writable"})


def plan_from_json(data: Mapping[str, Any]) -> Plan:
    """Parse the JSON form written by :func:`plan_to_json`, strictly.

    Unknown or missing keys, another version, hex in upper case or without ``0x``, integers
    that are not canonical decimal strings, addresses in a non-canonical spelling: all refused.

    Raises:
        InvalidInputError: anything malformed (``field`` names the offending part).

    Example::

        plan = plan_from_json(json.loads(stored_text))
    """
    if not isinstance(data, Mapping):
        raise _fail("a plan must be a JSON object", "plan")
    version = data.get("v")
    if type(version) is not int or version != PLAN_VERSION:
        raise _fail(f"unsupported plan version {version!r}; this code reads {PLAN_VERSION}", "v")
    chain = data.get("chain")
    if chain == "solana":
        obj = _object(data, _SOLANA_KEYS, "plan")
        raw_ixs = obj["instructions"]
        if not isinstance(raw_ixs, list):
            raise _fail("instructions must be a list", "instructions")
        instructions = []
        for i, raw_ix in enumerate(raw_ixs):
            ix = _object(raw_ix, _IX_KEYS, f"instructions[{i}]")
            raw_metas = ix["accounts"]
            if not isinstance(raw_metas, list):
                raise _fail("accounts must be a list", f"instructions[{i}].accounts")
            metas = []
            for j, raw_meta in enumerate(raw_metas):
                meta = _object(raw_meta, _META_KEYS, f"instructions[{i}].accounts[{j}]")
                metas.append(
                    SolanaAccountMeta(
                        pubkey=meta["pubkey"],
                        is_signer=meta["is_signer"],
                        is_writable=meta["is_writable"],
                    )
                )
            instructions.append(
                SolanaInstruction(
                    program_id=ix["program_id"],
                    accounts=tuple(metas),
                    data=parse_hex(ix["data"], f"instructions[{i}].data"),
                )
            )
        return SolanaPlan(
            network=obj["network"], fee_payer=obj["fee_payer"], instructions=tuple(instructions)
        )
    if chain == "evm":
        obj = _object(data, _EVM_KEYS, "plan")
        return EvmPlan(
            network=obj["network"],
            chain_id=parse_decimal(obj["chain_id"], "chain_id"),
            sender=obj["sender"],
            to=obj["to"],
            value=parse_decimal(obj["value"], "value"),
            data=parse_hex(obj["data"], "data"),
        )
    raise _fail('chain must be "solana" or "evm"', "chain")


def canonical_bytes(plan: Plan) -> bytes:
    """The canonical encoding: compact JSON of :func:`plan_to_json` with sorted keys (ASCII).

    Example::

        canonical_bytes(plan).startswith(b'{"chain":')
    """
    return json.dumps(
        plan_to_json(plan), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def plan_digest(plan: Plan) -> str:
    """``"0x"`` + the SHA-256 of :func:`canonical_bytes`: what the owner approves.

    Example::

        plan_digest(plan)   # "0x3f2a..." (64 hex digits)
    """
    return "0x" + hashlib.sha256(canonical_bytes(plan)).hexdigest()
