"""Test-chain controls (fund, test tokens) and the bundled TestToken contract."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from evm_fixtures import EvmEnv, web3_for

from waiaas.chains.base import ChainTxState, LocalChainControl
from waiaas.chains.evm import EvmAdapter, EvmDevAdapter
from waiaas.chains.evm.abi import bundled_token_artifact, encode_call
from waiaas.errors import ExecutionRevertedError, InvalidAddressError, InvalidInputError
from waiaas.types import Approve, ContractCall


def _read(
    adapter: EvmAdapter, token: str, signature: str, types: list[str], args: list[Any], out: str
) -> Any:
    from eth_abi.abi import decode
    from eth_hash.auto import keccak

    data = encode_call(keccak(signature.encode())[:4], types, args)
    raw = web3_for(adapter).eth.call({"to": token, "data": "0x" + data.hex()})
    return decode([out], bytes(raw))[0]


def test_artifact_is_bundled_and_complete() -> None:
    """The committed artifact has the ERC-20 surface, mint, burn and cancun bytecode."""
    artifact = bundled_token_artifact()
    names = {entry.get("name") for entry in artifact.abi}
    assert {
        "name",
        "symbol",
        "decimals",
        "totalSupply",
        "balanceOf",
        "allowance",
        "transfer",
        "approve",
        "transferFrom",
        "mint",
        "burn",
        "owner",
        "Transfer",
        "Approval",
        "InsufficientBalance",
    } <= names
    assert artifact.evm_version == "cancun"
    assert artifact.compiler.startswith("solcjs 0.8.")
    assert len(artifact.bytecode) > 1000
    source = resources.files("waiaas.chains.evm").joinpath("contracts", "TestToken.sol")
    assert "contract TestToken" in source.read_text(encoding="utf-8")


def test_local_adapter_has_controls_and_rpc_adapter_has_not(anvil_env: EvmEnv) -> None:
    """Only test-chain adapters implement LocalChainControl."""
    assert isinstance(anvil_env.adapter, LocalChainControl)
    assert anvil_env.node is not None
    with EvmAdapter.rpc(anvil_env.node.url, chain_id=anvil_env.node.chain_id) as plain:
        assert not isinstance(plain, LocalChainControl)
        assert not isinstance(plain, EvmDevAdapter)


def test_fund_adds_and_validates(evm_env: EvmEnv) -> None:
    """fund adds to the balance (0 is a no-op); bad addresses and amounts are refused."""
    adapter = evm_env.adapter
    _, address = adapter.generate_secret()
    adapter.fund(address, 5)
    adapter.fund(address, 0)
    adapter.fund(address, 7)
    assert adapter.get_balance(address) == 12
    with pytest.raises(InvalidAddressError):
        adapter.fund("0xabc", 1)
    bad_amounts: tuple[Any, ...] = (-1, True, 1.5, "1", 2**256)
    for bad in bad_amounts:
        with pytest.raises(InvalidInputError) as info:
            adapter.fund(address, bad)
        assert info.value.field == "amount"


def test_test_token_metadata_and_ownership(evm_env: EvmEnv) -> None:
    """create_test_token deploys TestToken with the decimals asked; only its owner mints."""
    adapter = evm_env.adapter
    token = adapter.create_test_token(decimals=9)
    assert _read(adapter, token, "decimals()", [], [], "uint8") == 9
    assert _read(adapter, token, "symbol()", [], [], "string") == "TEST"
    owner = _read(adapter, token, "owner()", [], [], "address")
    assert adapter.validate_address(owner) == adapter.test_authority
    assert adapter.token_decimals(token) == 9
    _, holder = adapter.generate_secret()
    adapter.fund(holder, 10**18)
    adapter.mint_test_token(token, holder, 40)
    assert _read(adapter, token, "totalSupply()", [], [], "uint256") == 40

    mint = encode_call(bytes.fromhex("40c10f19"), ["address", "uint256"], [holder, 1])
    with pytest.raises(ExecutionRevertedError) as info:
        adapter.build(ContractCall(to=token, data=mint), holder)
    assert info.value.reason == "TestToken: caller is not the owner"
    for bad in (-1, 256, True):
        with pytest.raises(InvalidInputError):
            adapter.create_test_token(decimals=bad)
    with pytest.raises(InvalidAddressError):
        adapter.mint_test_token("0x1", holder, 1)


def test_approve_then_transfer_from(evm_env: EvmEnv) -> None:
    """An Approve lets the spender move exactly the allowance with transferFrom."""
    adapter = evm_env.adapter
    owner_secret, owner = adapter.generate_secret()
    spender_secret, spender = adapter.generate_secret()
    for address in (owner, spender):
        adapter.fund(address, 10**18)
    token = adapter.create_test_token()
    adapter.mint_test_token(token, owner, 1_000)

    approve = adapter.sign(
        adapter.build(Approve(token=token, spender=spender, amount=300), owner), owner_secret
    )
    adapter.submit(approve)
    assert adapter.wait_for_confirmation(approve).state is ChainTxState.CONFIRMED
    assert (
        _read(
            adapter,
            token,
            "allowance(address,address)",
            ["address", "address"],
            [owner, spender],
            "uint256",
        )
        == 300
    )

    pull = encode_call(
        bytes.fromhex("23b872dd"), ["address", "address", "uint256"], [owner, spender, 300]
    )
    signed = adapter.sign(adapter.build(ContractCall(to=token, data=pull), spender), spender_secret)
    adapter.submit(signed)
    assert adapter.wait_for_confirmation(signed).state is ChainTxState.CONFIRMED
    assert adapter.get_token_balance(spender, token) == 300
    assert adapter.get_token_balance(owner, token) == 700
    with pytest.raises(ExecutionRevertedError) as info:
        adapter.build(ContractCall(to=token, data=pull), spender)
    assert info.value.reason == "ERC20: insufficient allowance"
