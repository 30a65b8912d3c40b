"""Building and signing EVM transactions: EIP-1559 fields, gas, input validation, signing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from evm_fixtures import EvmEnv, web3_for

from waiaas.chains.base import ChainTxState, SignedTx, UnsignedTx
from waiaas.chains.evm import ChainIdMismatchError, EvmAdapter, EvmDevAdapter
from waiaas.chains.evm.addresses import ZERO_ADDRESS
from waiaas.errors import (
    ExecutionRevertedError,
    InsufficientFundsError,
    InvalidAddressError,
    InvalidInputError,
    StaleTransactionError,
)
from waiaas.types import Approve, Batch, ContractCall, TokenTransfer, Transfer

SRC = Path(__file__).resolve().parents[2] / "src"


def _funded(adapter: EvmDevAdapter, amount: int = 10**18) -> tuple[bytes, str]:
    secret, address = adapter.generate_secret()
    adapter.fund(address, amount)
    return secret, address


def _node_fees(adapter: EvmAdapter) -> tuple[int, int]:
    """Next base fee and suggested priority fee, read straight from the node."""
    w3 = web3_for(adapter)
    history = w3.eth.fee_history(1, "latest", [])["baseFeePerGas"]
    base = int(history[-1]) if history else int(w3.eth.get_block("latest")["baseFeePerGas"])
    raw = w3.provider.make_request("eth_maxPriorityFeePerGas", [])["result"]
    return base, raw if isinstance(raw, int) else int(raw, 16)


def test_eip1559_fields(evm_env: EvmEnv) -> None:
    """Type 2, our chain id, maxFee = 2 * next base fee + the node's priority fee."""
    adapter = evm_env.adapter
    secret, sender = _funded(adapter)
    _, recipient = adapter.generate_secret()
    unsigned = adapter.build(Transfer(to=recipient, amount=12345), sender)
    base, priority = _node_fees(adapter)
    payload = unsigned.payload
    assert payload["type"] == 2
    assert payload["chainId"] == adapter.chain_id
    assert payload["maxPriorityFeePerGas"] == priority
    assert payload["maxFeePerGas"] == 2 * base + priority
    assert payload["to"] == recipient and payload["value"] == 12345 and payload["data"] == "0x"
    assert payload["gas"] == 21_000  # a plain transfer needs no margin
    assert unsigned.nonce == payload["nonce"] == 0
    assert unsigned.fee_estimate == 21_000 * min(2 * base + priority, base + priority)
    assert adapter.estimate_fee(unsigned) == unsigned.fee_estimate
    assert adapter.max_fee(unsigned) == 21_000 * payload["maxFeePerGas"]

    signed = adapter.sign(unsigned, secret)
    from eth_account import Account
    from eth_account.typed_transactions.typed_transaction import TypedTransaction
    from hexbytes import HexBytes

    decoded = TypedTransaction.from_bytes(HexBytes(signed.raw)).as_dict()
    assert decoded["chainId"] == adapter.chain_id
    assert decoded["maxFeePerGas"] == payload["maxFeePerGas"]
    assert Account.recover_transaction(signed.raw) == sender
    status = adapter.wait_for_confirmation(signed) if adapter.submit(signed) else None
    assert status is not None and status.state is ChainTxState.CONFIRMED
    receipt = web3_for(adapter).eth.get_transaction_receipt(signed.tx_hash)
    assert receipt["type"] == 2


def test_fixed_priority_fee() -> None:
    """A configured priority fee replaces the node's suggestion."""
    with EvmAdapter.local(priority_fee=3 * 10**9) as adapter:
        _, sender = _funded(adapter)
        unsigned = adapter.build(Transfer(to="0x" + "22" * 20, amount=1), sender)
        base, _ = _node_fees(adapter)
        assert unsigned.payload["maxPriorityFeePerGas"] == 3 * 10**9
        assert unsigned.payload["maxFeePerGas"] == 2 * base + 3 * 10**9


def test_gas_margin_on_contract_calls(evm_env: EvmEnv) -> None:
    """Token transfers and approvals get eth_estimateGas plus 20% head room."""
    adapter = evm_env.adapter
    _, sender = _funded(adapter)
    _, recipient = adapter.generate_secret()
    token = adapter.create_test_token()
    adapter.mint_test_token(token, sender, 1_000)
    for request in (
        TokenTransfer(token=token, to=recipient, amount=10),
        Approve(token=token, spender=recipient, amount=10),
    ):
        unsigned = adapter.build(request, sender)
        call = {
            "from": sender,
            "to": token,
            "value": 0,
            "data": unsigned.payload["data"],
        }
        estimate = int(web3_for(adapter).eth.estimate_gas(call))
        assert unsigned.payload["gas"] == estimate + estimate * 20 // 100
        assert unsigned.payload["value"] == 0 and unsigned.payload["to"] == token


def test_calldata_encoding() -> None:
    """ERC-20 transfer / approve calldata is the standard ABI encoding."""
    from eth_abi.abi import encode

    with EvmAdapter.local() as adapter:
        _, sender = _funded(adapter)
        token = adapter.create_test_token()
        adapter.mint_test_token(token, sender, 10)
        bob = "0x" + "ab" * 20
        transfer = adapter.build(TokenTransfer(token=token, to=bob, amount=7), sender)
        approve = adapter.build(Approve(token=token, spender=bob, amount=2**256 - 1), sender)
        assert (
            transfer.payload["data"]
            == "0x" + (bytes.fromhex("a9059cbb") + encode(["address", "uint256"], [bob, 7])).hex()
        )
        assert (
            approve.payload["data"]
            == "0x"
            + (bytes.fromhex("095ea7b3") + encode(["address", "uint256"], [bob, 2**256 - 1])).hex()
        )


def test_contract_call_with_value_and_calldata() -> None:
    """A ContractCall carries its calldata and value unchanged."""
    with EvmAdapter.local() as adapter:
        secret, sender = _funded(adapter)
        target = "0x" + "cd" * 20
        unsigned = adapter.build(ContractCall(to=target, data="0xdeadbeef", value=5), sender)
        assert unsigned.payload["data"] == "0xdeadbeef"
        assert unsigned.payload["value"] == 5
        signed = adapter.sign(unsigned, secret)
        adapter.submit(signed)
        assert adapter.wait_for_confirmation(signed).state is ChainTxState.CONFIRMED
        assert adapter.get_balance(target) == 5


def test_explicit_and_allocated_nonces() -> None:
    """Allocation counts up without submissions; an explicit nonce is used and reserved."""
    with EvmAdapter.local() as adapter:
        _, sender = _funded(adapter)
        to = "0x" + "33" * 20
        assert adapter.build(Transfer(to=to, amount=1), sender).nonce == 0
        assert adapter.build(Transfer(to=to, amount=1), sender).nonce == 1
        assert adapter.build(Transfer(to=to, amount=1), sender, nonce=7).nonce == 7
        assert adapter.build(Transfer(to=to, amount=1), sender).nonce == 8
        assert adapter.build(Transfer(to=to, amount=1), sender, nonce=0).nonce == 0
        assert adapter.pending_nonce(sender) == 0  # nothing was sent


@pytest.mark.parametrize("nonce", [-1, 2**64, True, 1.0, "1"])
def test_bad_nonce_is_refused(nonce: Any) -> None:
    """A nonce must be an integer in range (not a bool, float or string)."""
    with EvmAdapter.local() as adapter:
        _, sender = _funded(adapter)
        with pytest.raises(InvalidInputError) as info:
            adapter.build(Transfer(to="0x" + "33" * 20, amount=1), sender, nonce=nonce)
        assert info.value.field == "nonce"


def test_requests_the_evm_cannot_express(tester_env: EvmEnv) -> None:
    """BATCH, Solana accounts, oversized amounts, the zero address and junk are refused."""
    adapter = tester_env.adapter
    _, sender = _funded(adapter)
    bob = "0x" + "44" * 20
    cases: list[tuple[Any, str]] = [
        (Batch(requests=(Transfer(to=bob, amount=1),)), "type"),
        (
            ContractCall.model_validate(
                {"to": bob, "data": b"", "accounts": [{"pubkey": bob, "is_signer": True}]}
            ),
            "accounts",
        ),
        # the models refuse these already; the adapter's own guard is checked on raw models
        (Transfer.model_construct(to=bob, amount=2**256), "amount"),
        (ContractCall.model_construct(to=bob, value=2**256, data=b"", accounts=()), "value"),
        ({"type": "TRANSFER", "to": bob, "amount": 1}, "request"),
        ("transfer 1 wei", "request"),
    ]
    for request, field in cases:
        with pytest.raises(InvalidInputError) as info:
            adapter.build(request, sender)
        assert info.value.field == field, request
    for request, field in (
        (Transfer(to=ZERO_ADDRESS, amount=1), "to"),
        (ContractCall(to="0x" + "00" * 20, data=b"\x01"), "to"),
        (Transfer(to="0xnot-an-address", amount=1), "to"),
    ):
        with pytest.raises(InvalidAddressError) as address_info:
            adapter.build(request, sender)
        assert address_info.value.field == field
    with pytest.raises(InvalidAddressError) as sender_info:
        adapter.build(Transfer(to=bob, amount=1), "0x1234")
    assert sender_info.value.field == "sender"


def test_token_checks(tester_env: EvmEnv) -> None:
    """A token address without code, or a wrong ``decimals``, is refused before signing."""
    adapter = tester_env.adapter
    _, sender = _funded(adapter)
    bob = "0x" + "55" * 20
    with pytest.raises(InvalidInputError) as info:
        adapter.build(TokenTransfer(token="0x" + "66" * 20, to=bob, amount=1), sender)
    assert info.value.field == "token"
    token = adapter.create_test_token(decimals=18)
    adapter.mint_test_token(token, sender, 100)
    with pytest.raises(InvalidInputError) as decimals_info:
        adapter.build(TokenTransfer(token=token, to=bob, amount=1, decimals=6), sender)
    assert decimals_info.value.field == "decimals"
    with pytest.raises(InvalidInputError):
        adapter.build(Approve(token=token, spender=bob, amount=1, decimals=8), sender)
    assert adapter.token_decimals(token) == 18
    assert (
        adapter.build(TokenTransfer(token=token, to=bob, amount=1, decimals=18), sender).nonce == 0
    )


def test_build_refuses_what_would_revert_or_cannot_be_paid(evm_env: EvmEnv) -> None:
    """A token transfer above the balance reverts at estimation; an unfunded sender
    cannot pay the gas."""
    adapter = evm_env.adapter
    _, sender = _funded(adapter)
    bob = "0x" + "77" * 20
    token = adapter.create_test_token()
    adapter.mint_test_token(token, sender, 5)
    with pytest.raises(ExecutionRevertedError) as info:
        adapter.build(TokenTransfer(token=token, to=bob, amount=6), sender)
    assert info.value.reason == "ERC20: insufficient balance"
    _, pauper = adapter.generate_secret()
    with pytest.raises(InsufficientFundsError):
        adapter.build(Transfer(to=bob, amount=1), pauper)


def test_simulate(evm_env: EvmEnv) -> None:
    """simulate: success with fee and gas; a revert with its reason once state changed;
    a nonce already used is stale."""
    adapter = evm_env.adapter
    secret, sender = _funded(adapter)
    bob = "0x" + "88" * 20
    token = adapter.create_test_token()
    adapter.mint_test_token(token, sender, 100)
    first = adapter.build(TokenTransfer(token=token, to=bob, amount=100), sender)
    second = adapter.build(TokenTransfer(token=token, to=bob, amount=100), sender)
    ok = adapter.simulate(second)
    assert ok.success and ok.error is None
    assert ok.units_consumed is not None and 21_000 < ok.units_consumed <= second.payload["gas"]
    assert ok.fee is not None and ok.fee > 0

    signed = adapter.sign(first, secret)
    adapter.submit(signed)
    assert adapter.wait_for_confirmation(signed).state is ChainTxState.CONFIRMED
    failed = adapter.simulate(second)
    assert not failed.success and failed.fee is None
    assert isinstance(failed.error, ExecutionRevertedError)
    assert failed.error.reason == "ERC20: insufficient balance"
    stale = adapter.simulate(first)
    assert not stale.success and isinstance(stale.error, StaleTransactionError)


def test_sign_checks(tester_env: EvmEnv) -> None:
    """sign refuses another chain id, a malformed payload, a foreign key and non-keys."""
    adapter = tester_env.adapter
    secret, sender = _funded(adapter)
    unsigned = adapter.build(Transfer(to="0x" + "99" * 20, amount=1), sender)

    foreign = dataclasses.replace(unsigned, payload={**unsigned.payload, "chainId": 1})
    with pytest.raises(ChainIdMismatchError) as info:
        adapter.sign(foreign, secret)
    assert (info.value.expected, info.value.found) == (adapter.chain_id, 1)

    for payload in (
        {k: v for k, v in unsigned.payload.items() if k != "gas"},
        {**unsigned.payload, "gasPrice": 1},
        {**unsigned.payload, "type": 0},
        {**unsigned.payload, "nonce": -1},
        {**unsigned.payload, "maxPriorityFeePerGas": unsigned.payload["maxFeePerGas"] + 1},
        "not a mapping",
    ):
        with pytest.raises(InvalidInputError):
            adapter.sign(dataclasses.replace(unsigned, payload=payload), secret)
    with pytest.raises(InvalidInputError):
        adapter.sign(dataclasses.replace(unsigned, chain="solana"), secret)
    with pytest.raises(InvalidInputError):
        adapter.sign(dataclasses.replace(unsigned, nonce=5), secret)

    other, _ = adapter.generate_secret()
    for bad in (other, secret[:31], b"\x00" * 32, b"\xff" * 32, "00" * 32):
        with pytest.raises(InvalidInputError) as bad_info:
            adapter.sign(unsigned, bad)  # type: ignore[arg-type]
        shown = str(bad_info.value) + repr(bad_info.value.to_dict())
        assert secret.hex() not in shown and other.hex() not in shown

    signed = adapter.sign(unsigned, secret)
    from eth_hash.auto import keccak

    assert signed.tx_hash == "0x" + keccak(signed.raw).hex()
    assert signed.nonce == unsigned.nonce
    assert secret.hex() not in repr(signed) and signed.raw.hex() not in repr(signed)


def test_submit_checks_the_signed_bytes(tester_env: EvmEnv) -> None:
    """submit refuses bytes that do not decode or do not match their hash."""
    adapter = tester_env.adapter
    secret, sender = _funded(adapter)
    signed = adapter.sign(adapter.build(Transfer(to="0x" + "12" * 20, amount=1), sender), secret)
    for bad in (
        dataclasses.replace(signed, raw=b""),
        dataclasses.replace(signed, raw=b"\x02\xff\xff"),
        dataclasses.replace(signed, raw=b"\x07abc"),
        dataclasses.replace(signed, tx_hash="0x" + "00" * 32),
        dataclasses.replace(signed, chain="solana"),
    ):
        with pytest.raises(InvalidInputError):
            adapter.submit(bad)
    assert adapter.pending_nonce(sender) == 0
    assert adapter.submit(signed) == signed.tx_hash


def test_unsigned_and_signed_reprs_hold_no_secret(tester_env: EvmEnv) -> None:
    """Reprs of the adapter and of the values it returns show no key material."""
    adapter = tester_env.adapter
    secret, sender = _funded(adapter)
    unsigned = adapter.build(Transfer(to="0x" + "13" * 20, amount=1), sender)
    signed = adapter.sign(unsigned, secret)
    for text in (repr(adapter), repr(unsigned), repr(signed), str(signed)):
        assert secret.hex() not in text
    assert isinstance(unsigned, UnsignedTx) and isinstance(signed, SignedTx)


def test_import_waiaas_does_not_import_chain_libraries() -> None:
    """``import waiaas`` and even ``import waiaas.chains.evm`` leave web3, eth_tester and
    eth_account unloaded: the adapter imports them when a chain is created."""
    code = (
        "import sys, waiaas, waiaas.chains, waiaas.chains.evm\n"
        "libs = ('web3', 'eth_tester', 'eth_account', 'eth_abi', 'solders')\n"
        "heavy = [m for m in libs if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def _next_contract_address(deployer: str, nonce: int) -> str:
    """The address a CREATE by ``deployer`` at ``nonce`` deploys to."""
    import rlp
    from eth_utils import keccak, to_checksum_address

    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:])


def test_a_build_with_its_nonce_does_not_ask_the_node_for_one(tester_env: EvmEnv) -> None:
    """The pending nonce is read only when the build allocates one."""
    adapter = tester_env.adapter
    _, sender = _funded(adapter)
    backend: Any = adapter._backend
    asked: list[str] = []
    original = backend.nonce
    backend.nonce = lambda address, block: asked.append(block) or original(address, block)
    reads = backend.build_reads
    seen: list[Any] = []
    backend.build_reads = lambda *a, **k: seen.append(reads(*a, **k)) or seen[-1]
    to = "0x" + "44" * 20
    assert adapter.build(Transfer(to=to, amount=1), sender, nonce=3).nonce == 3
    assert seen[-1].pending_nonce is None
    assert adapter.build(Transfer(to=to, amount=1), sender).nonce == 4  # after the reserved 3
    assert seen[-1].pending_nonce == 0
    assert asked == []  # both answers came with the build's own reads


def test_no_code_seen_by_a_build_answers_for_two_seconds_only(
    tester_env: EvmEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disguised-transfer check of a plain transfer reuses the build's code read, but a
    contract deployed at the recipient afterwards is seen once the answer is 2 s old."""
    import waiaas.chains.evm.adapter as module

    adapter = tester_env.adapter
    _, sender = _funded(adapter)
    w3 = web3_for(adapter)
    deployer = w3.eth.accounts[0]  # a prefunded account outside the adapter
    target = _next_contract_address(deployer, w3.eth.get_transaction_count(deployer))
    backend: Any = adapter._backend
    reads: list[str] = []
    original = backend.code
    backend.code = lambda address: reads.append(address) or original(address)
    lookup = adapter.account_lookup()

    adapter.build(Transfer(to=target, amount=1), sender)  # reads "no code" itself
    assert lookup.is_contract(target) is False
    assert reads == []
    base, _ = _node_fees(adapter)
    w3.eth.send_transaction(  # a one-byte contract (STOP) lands at ``target``
        {
            "from": deployer,
            "data": "0x6001600c60003960016000f300",
            "gas": 100_000,
            "maxFeePerGas": 2 * base + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    assert bytes(w3.eth.get_code(target)) == b"\x00"
    assert lookup.is_contract(target) is False  # the build's answer, less than 2 s old
    now = module.time.monotonic()
    monkeypatch.setattr(module.time, "monotonic", lambda: now + 2.5)
    assert lookup.is_contract(target) is True
    assert reads == [target]
    assert lookup.is_contract(target) is True and reads == [target]  # code is kept for good
