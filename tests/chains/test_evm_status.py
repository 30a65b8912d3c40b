"""Transaction status on EVM chains: confirmed, failed (with reason), dropped, pending."""

from __future__ import annotations

import dataclasses
import math

import pytest
from evm_fixtures import EvmEnv, web3_for

from waiaas.chains.base import ChainTxState, SignedTx
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.evm.addresses import to_checksum
from waiaas.errors import (
    ExecutionRevertedError,
    InvalidAddressError,
    InvalidInputError,
    StaleTransactionError,
)
from waiaas.types import TokenTransfer, Transfer

BOB = to_checksum("b0" * 20)
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def test_failed_on_chain_reports_fee_and_revert_reason(evm_env: EvmEnv) -> None:
    """Two token transfers each affordable when built; the second reverts on chain: FAILED,
    with its fee and the replayed revert reason, and the fees add up exactly."""
    adapter = evm_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    token = adapter.create_test_token()
    adapter.mint_test_token(token, sender, 100)
    first = adapter.sign(
        adapter.build(TokenTransfer(token=token, to=BOB, amount=100), sender), secret
    )
    second = adapter.sign(
        adapter.build(TokenTransfer(token=token, to=BOB, amount=100), sender), secret
    )
    adapter.submit(first)
    adapter.submit(second)
    ok = adapter.wait_for_confirmation(first)
    failed = adapter.wait_for_confirmation(second)

    assert ok.state is ChainTxState.CONFIRMED
    assert any(TRANSFER_TOPIC in line for line in ok.logs)
    assert failed.state is ChainTxState.FAILED
    assert failed.fee is not None and failed.fee > 0 and failed.block is not None
    assert isinstance(failed.error, ExecutionRevertedError)
    assert failed.error.reason == "ERC20: insufficient balance"
    assert failed.logs == ()
    assert adapter.get_token_balance(BOB, token) == 100
    assert adapter.get_balance(sender) == 10**18 - (ok.fee or 0) - failed.fee


def test_out_of_gas_is_failed_with_reason(evm_env: EvmEnv) -> None:
    """A gas limit too small for the call: mined, FAILED, reason "out of gas"."""
    adapter = evm_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    token = adapter.create_test_token()
    adapter.mint_test_token(token, sender, 100)
    unsigned = adapter.build(TokenTransfer(token=token, to=BOB, amount=1), sender)
    starved = dataclasses.replace(unsigned, payload={**unsigned.payload, "gas": 30_000})
    signed = adapter.sign(starved, secret)
    adapter.submit(signed)
    status = adapter.wait_for_confirmation(signed)
    assert status.state is ChainTxState.FAILED
    assert isinstance(status.error, ExecutionRevertedError)
    assert status.error.reason == "out of gas"
    assert adapter.get_token_balance(BOB, token) == 0


def test_replaced_nonce_is_dropped(evm_env: EvmEnv) -> None:
    """Two transactions with one nonce: once one lands, the other is DROPPED and resending it
    is stale (rebuild)."""
    adapter = evm_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    loser = adapter.sign(adapter.build(Transfer(to=BOB, amount=1), sender), secret)
    winner = adapter.sign(adapter.build(Transfer(to=BOB, amount=2), sender, nonce=0), secret)
    assert loser.nonce == winner.nonce == 0
    assert adapter.get_status(loser).state is ChainTxState.NOT_FOUND
    adapter.submit(winner)
    assert adapter.wait_for_confirmation(winner).state is ChainTxState.CONFIRMED

    dropped = adapter.get_status(loser)
    assert dropped.state is ChainTxState.DROPPED
    assert isinstance(dropped.error, StaleTransactionError)
    assert adapter.wait_for_confirmation(loser).state is ChainTxState.DROPPED
    with pytest.raises(StaleTransactionError):
        adapter.submit(loser)
    assert adapter.get_balance(BOB) == 2


@pytest.mark.anvil
def test_pending_then_confirmed_when_mined(anvil_env: EvmEnv) -> None:
    """With mining paused a submitted tx is PENDING (waiting times out with PENDING, and
    resending is harmless); after a block it is CONFIRMED."""
    adapter = anvil_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    w3 = web3_for(adapter)
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        signed = adapter.sign(adapter.build(Transfer(to=BOB, amount=3), sender), secret)
        adapter.submit(signed)
        assert adapter.get_status(signed).state is ChainTxState.PENDING
        assert adapter.wait_for_confirmation(signed, timeout=0.05).state is ChainTxState.PENDING
        assert adapter.submit(signed) == signed.tx_hash
        assert adapter.pending_nonce(sender) == 1
        w3.provider.make_request("evm_mine", [])
        status = adapter.wait_for_confirmation(signed)
        assert status.state is ChainTxState.CONFIRMED
        assert adapter.get_balance(BOB) == 3
    finally:
        w3.provider.make_request("evm_setAutomine", [True])


@pytest.mark.anvil
def test_status_from_stored_bytes_in_a_new_adapter(anvil_env: EvmEnv) -> None:
    """After a restart only raw bytes and hash are known: a new adapter still tells
    CONFIRMED and DROPPED (the sender is recovered from the signature)."""
    adapter = anvil_env.adapter
    assert anvil_env.node is not None
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    landed = adapter.sign(adapter.build(Transfer(to=BOB, amount=1), sender), secret)
    lost = adapter.sign(adapter.build(Transfer(to=BOB, amount=9), sender, nonce=0), secret)
    adapter.submit(landed)
    adapter.wait_for_confirmation(landed)

    stored = [
        SignedTx(chain="evm", raw=s.raw, tx_hash=s.tx_hash, nonce=s.nonce) for s in (landed, lost)
    ]
    with EvmAdapter.rpc(
        anvil_env.node.url, chain_id=anvil_env.node.chain_id, network="anvil"
    ) as fresh:
        assert fresh.get_status(stored[0]).state is ChainTxState.CONFIRMED
        assert fresh.get_status(stored[1]).state is ChainTxState.DROPPED
        assert fresh.submit(stored[0]) == landed.tx_hash  # idempotent across restarts


def test_wait_for_confirmation_arguments(tester_env: EvmEnv) -> None:
    """The timeout must be a non-negative number; 0 polls once."""
    adapter = tester_env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**18)
    signed = adapter.sign(adapter.build(Transfer(to=BOB, amount=1), sender), secret)
    for bad in (-1, math.nan, math.inf, True, "1"):
        with pytest.raises(InvalidInputError) as info:
            adapter.wait_for_confirmation(signed, timeout=bad)  # type: ignore[arg-type]
        assert info.value.field == "timeout"
    assert adapter.wait_for_confirmation(signed, timeout=0).state is ChainTxState.NOT_FOUND
    adapter.submit(signed)
    assert adapter.wait_for_confirmation(signed, timeout=0).state is ChainTxState.CONFIRMED


def test_balance_reads_validate_their_input(tester_env: EvmEnv) -> None:
    """Balances need valid addresses; a token balance needs an ERC-20 contract."""
    adapter = tester_env.adapter
    with pytest.raises(InvalidAddressError):
        adapter.get_balance("0x123")
    with pytest.raises(InvalidAddressError):
        adapter.get_token_balance(BOB, "not-a-token")
    with pytest.raises(InvalidInputError) as info:
        adapter.get_token_balance(BOB, to_checksum("c0" * 20))
    assert info.value.field == "token"
    assert adapter.get_balance(BOB) == 0
