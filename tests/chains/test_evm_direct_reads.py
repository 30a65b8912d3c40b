"""The EVM adapter's direct paths give what the general ones give: signed bytes equal to
``eth_account``'s, eth-tester receipts read through the hash index equal to eth-tester's own,
and a build's reads on the head block's state equal to web3's answers."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from eth_account import Account

from waiaas.chains.evm import EvmAdapter, EvmDevAdapter, backends
from waiaas.chains.evm.adapter import _sign_dynamic_fee
from waiaas.chains.evm.addresses import to_checksum
from waiaas.chains.evm.backends import _receipt
from waiaas.errors import InvalidInputError
from waiaas.types import TokenTransfer, Transfer

STOP_CONTRACT = bytes.fromhex("6001600c60003960016000f300")


def _payloads(seed: int, count: int) -> list[tuple[bytes, dict[str, Any]]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        payload: dict[str, Any] = {
            "type": 2,
            "chainId": rnd.choice([1, 31337, 2**40]),
            "nonce": rnd.choice([0, 1, rnd.randrange(2**64 - 2)]),
            "value": rnd.choice([0, 1, rnd.randrange(2**256)]),
            "data": "0x" + rnd.randbytes(rnd.choice([0, 4, 68, 300])).hex(),
            "gas": rnd.choice([21_000, rnd.randrange(2**32)]),
            "maxFeePerGas": rnd.randrange(2**80),
            "maxPriorityFeePerGas": rnd.choice([0, rnd.randrange(2**40)]),
        }
        if rnd.random() < 0.9:
            payload["to"] = to_checksum(rnd.randbytes(20).hex())
        out.append((rnd.randbytes(32), payload))
    return out


@pytest.mark.parametrize(("secret", "payload"), _payloads(7, 120), ids=[str(i) for i in range(120)])
def test_signed_bytes_equal_eth_accounts(secret: bytes, payload: dict[str, Any]) -> None:
    """Any EIP-1559 payload (creation or call, any sizes) signs to eth_account's bytes."""
    expected = Account.sign_transaction(payload, secret)
    raw, digest = _sign_dynamic_fee(payload, secret)
    assert raw == bytes(expected.raw_transaction)
    assert digest == bytes(expected.hash)


def test_out_of_range_payloads_are_not_signed() -> None:
    """A field above its range or calldata that is not hex is refused, nothing signed."""
    with EvmAdapter.local() as evm:
        secret, sender = evm.generate_secret()
        evm.fund(sender, 10**20)
        unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=1), sender)
        for change in (
            {"value": 2**256},
            {"gas": 2**256},
            {"nonce": 2**64 - 1},
            {"data": "0xzz"},
            {"to": "0x1234"},
        ):
            bad = dataclasses.replace(unsigned, payload={**unsigned.payload, **change})
            if "nonce" in change:
                bad = dataclasses.replace(bad, nonce=change["nonce"])
            with pytest.raises(InvalidInputError):
                evm.sign(bad, secret)
        signed = evm.sign(unsigned, secret)
        assert evm.plan_of_signed(signed) == evm.plan_of(unsigned)


def test_indexed_receipts_equal_eth_testers() -> None:
    """Receipts read through the hash index equal eth-tester's: a transfer, a token
    transfer (logs), a call that reverts on chain, a contract creation; an unknown hash has
    none."""
    with EvmAdapter.local() as evm:
        assert isinstance(evm, EvmDevAdapter)
        backend = evm._backend
        assert isinstance(backend, backends.TesterBackend)
        secret, sender = evm.generate_secret()
        evm.fund(sender, 10**20)
        token = evm.create_test_token(6)
        evm.mint_test_token(token, sender, 10**9)
        to = evm.generate_secret()[1]
        built = [
            evm.build(Transfer(to=to, amount=10**15), sender),
            evm.build(TokenTransfer(token=token, to=to, amount=5), sender),
        ]
        reverting = evm.build(TokenTransfer(token=token, to=to, amount=5), sender)
        data = reverting.payload["data"][:-64] + "ff" * 32  # more than the balance
        built.append(dataclasses.replace(reverting, payload={**reverting.payload, "data": data}))
        built.append(evm._prepare(sender, None, 0, STOP_CONTRACT, nonce=None))
        statuses = []
        for unsigned in built:
            signed = evm.sign(unsigned, secret)
            evm.submit(signed)
            direct = backend._indexed_receipt(signed.tx_hash)
            assert direct is not None
            assert direct == _receipt(backend.w3.eth.get_transaction_receipt(signed.tx_hash))
            assert evm._receipt(signed.tx_hash) == direct
            statuses.append((direct.status, bool(direct.logs), direct.contract_address))
        assert [s[0] for s in statuses] == [1, 1, 0, 1]
        assert statuses[1][1] and statuses[3][2] is not None
        assert backend._indexed_receipt("0x" + "11" * 32) is None
        assert evm._receipt("0x" + "11" * 32) is None


def test_build_reads_equal_web3s_answers() -> None:
    """The reads of a build on the head block's state equal what web3 reports through
    eth-tester, block after block (the kept state follows the head)."""
    with EvmAdapter.local() as evm:
        backend = evm._backend
        assert isinstance(backend, backends.TesterBackend)
        secret, sender = evm.generate_secret()
        evm.fund(sender, 10**20)
        eth = backend.w3.eth
        to = evm.generate_secret()[1]
        for _ in range(3):
            call = {"from": sender, "to": to, "value": 1, "data": "0x"}
            reads = backend.build_reads(sender, call, plain=True)
            assert reads.balance == eth.get_balance(sender)
            assert reads.pending_nonce == eth.get_transaction_count(sender, "pending")
            assert reads.to_has_code is False
            history = eth.fee_history(1, "latest", [])
            assert reads.base_fee == history["baseFeePerGas"][-1] == backend.base_fee()
            assert backend.code(to) == bytes(eth.get_code(to))
            signed = evm.sign(evm.build(Transfer(to=to, amount=10**15), sender), secret)
            evm.submit(signed)


def test_account_reads_follow_the_head_and_see_code() -> None:
    """The head's account view is read again when the head moves (a funding, a deployment,
    a transfer mined since) and gives web3's balance, nonce and code for an account without
    code, a deployed contract and an account never seen; a simulation on the head's VM
    (reverted) changes none of them."""
    with EvmAdapter.local() as evm:
        backend = evm._backend
        assert isinstance(backend, backends.TesterBackend)
        eth = backend.w3.eth
        secret, sender = evm.generate_secret()
        stranger = evm.generate_secret()[1]

        def agree(*addresses: str) -> None:
            for address in addresses:
                assert backend.balance(address) == eth.get_balance(address)
                assert backend.nonce(address, "pending") == eth.get_transaction_count(address)
                assert backend.code(address) == bytes(eth.get_code(address))

        agree(sender, stranger)
        evm.fund(sender, 10**20)  # a new head: the view kept before is stale
        agree(sender, stranger)
        assert backend.balance(sender) == 10**20
        token = evm.create_test_token(6)
        agree(sender, stranger, token)
        assert backend.code(token)
        call = {"from": sender, "to": stranger, "value": 1, "data": "0x"}
        reads = backend.build_reads(sender, call, plain=True)
        assert (reads.to_has_code, reads.balance) == (False, eth.get_balance(sender))
        unsigned = evm.build(Transfer(to=stranger, amount=10**15), sender)
        before = backend.balance(sender)
        assert evm.simulate_balance_changes(unsigned).native == -(10**15)
        assert backend.balance(sender) == before
        evm.submit(evm.sign(unsigned, secret))
        agree(sender, stranger, token)
        assert backend.balance(stranger) == 10**15
        assert backend.nonce(sender, "pending") == 1
