"""Shared values and strategies for the plan tests (no chain is started here)."""

from __future__ import annotations

import os

from hypothesis import strategies as st
from solders.instruction import Instruction
from solders.pubkey import Pubkey

from waiaas.chains.evm.addresses import to_checksum
from waiaas.plan import EvmPlan, SolanaAccountMeta, SolanaInstruction, SolanaPlan

PAYER = Pubkey.from_string("8eRNCoiiAHx6fo8kZp5BgBobsr3ezeUsHiALYC9uyjQu")
EVM_SENDER = to_checksum("5a" * 20)
EVM_TOKEN = to_checksum("70" * 20)
EVM_BOB = to_checksum("b0" * 20)


def key() -> Pubkey:
    """A fresh random public key."""
    return Pubkey.from_bytes(os.urandom(32))


def plan_ix(ix: Instruction) -> SolanaInstruction:
    """A solders instruction as a plan instruction (flags as the instruction states them)."""
    return SolanaInstruction(
        program_id=str(ix.program_id),
        accounts=tuple(
            SolanaAccountMeta(str(m.pubkey), m.is_signer, m.is_writable) for m in ix.accounts
        ),
        data=bytes(ix.data),
    )


def sol_plan(*ixs: Instruction | SolanaInstruction, payer: Pubkey = PAYER) -> SolanaPlan:
    """A localnet plan paid by ``payer`` with these instructions."""
    return SolanaPlan(
        network="localnet",
        fee_payer=str(payer),
        instructions=tuple(ix if isinstance(ix, SolanaInstruction) else plan_ix(ix) for ix in ixs),
    )


def evm_plan(data: bytes = b"", *, to: str | None = EVM_TOKEN, value: int = 0) -> EvmPlan:
    """A chain-1 plan from :data:`EVM_SENDER`."""
    return EvmPlan(network="mainnet", chain_id=1, sender=EVM_SENDER, to=to, value=value, data=data)


# --------------------------------------------------------------------------- strategies

solana_addresses = st.binary(min_size=32, max_size=32).map(lambda b: str(Pubkey.from_bytes(b)))
evm_addresses = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum(b.hex()))
hex_looking_ascii = st.text(alphabet="0123456789abcdefABCDEFx", max_size=80).map(
    lambda t: t.encode("ascii")
)
any_bytes = st.one_of(st.binary(max_size=300), hex_looking_ascii)

account_metas = st.builds(SolanaAccountMeta, solana_addresses, st.booleans(), st.booleans())
instructions = st.builds(
    SolanaInstruction,
    solana_addresses,
    st.lists(account_metas, max_size=8).map(tuple),
    any_bytes,
)
networks = st.sampled_from(["localnet", "devnet", "mainnet-beta", "local", "sepolia"])
solana_plans = st.builds(
    SolanaPlan, networks, solana_addresses, st.lists(instructions, max_size=6).map(tuple)
)
evm_plans = st.builds(
    EvmPlan,
    networks,
    st.integers(min_value=1, max_value=2**64),
    evm_addresses,
    st.one_of(st.none(), evm_addresses),
    st.integers(min_value=0, max_value=2**256 - 1),
    any_bytes,
)
plans = st.one_of(solana_plans, evm_plans)
