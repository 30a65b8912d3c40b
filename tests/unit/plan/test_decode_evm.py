"""EVM effects: native value, ERC-20 calls from any calldata with their selector, the rest."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from plan_helpers import EVM_BOB, EVM_SENDER, EVM_TOKEN, evm_plan

from waiaas.chains.evm.addresses import to_checksum
from waiaas.errors import WaiaasError
from waiaas.plan import (
    CONTRACT_CREATION,
    ContractCall,
    EvmPlan,
    NativeTransfer,
    TokenApproval,
    TokenTransfer,
    decode_plan,
)
from waiaas.plan._evm import KNOWN_METHODS, TOKEN_METHODS

CAROL = to_checksum("ca" * 20)


def sel(signature: str) -> bytes:
    """The 4-byte selector of a method signature."""
    return bytes(keccak(signature.encode()))[:4]


def call(signature: str, types: list[str], args: list[object]) -> bytes:
    """Calldata for ``signature(args)``."""
    return sel(signature) + encode(types, args)


@pytest.mark.parametrize(
    "selector", sorted({**KNOWN_METHODS, **{k: v[0] for k, v in TOKEN_METHODS.items()}})
)
def test_selector_tables_match_keccak(selector: str) -> None:
    """Every selector in the decoder's tables is keccak(signature)[:4]."""
    signature = KNOWN_METHODS.get(selector) or TOKEN_METHODS[selector][0]
    assert "0x" + sel(signature).hex() == selector


def test_plain_value_transfer() -> None:
    """Value without calldata is one native transfer to ``to``, even of 0 wei."""
    assert decode_plan(evm_plan(to=EVM_BOB, value=10**18)) == (
        NativeTransfer(EVM_SENDER, EVM_BOB, 10**18),
    )
    assert decode_plan(evm_plan(to=EVM_BOB)) == (NativeTransfer(EVM_SENDER, EVM_BOB, 0),)


class _Contracts:
    def __init__(self, *contracts: str) -> None:
        self.contracts = set(contracts)

    def token_account(self, address: str) -> tuple[str, str] | None:
        return None

    def is_contract(self, address: str) -> bool | None:
        return address in self.contracts


def test_value_to_a_contract_runs_its_code() -> None:
    """A plain transfer to a contract (a forwarder's receive()) is also a contract call."""
    effects = decode_plan(evm_plan(to=EVM_BOB, value=5), lookup=_Contracts(EVM_BOB))
    assert effects == (
        NativeTransfer(EVM_SENDER, EVM_BOB, 5),
        ContractCall(EVM_BOB, None, 5, "receive()"),
    )
    assert decode_plan(evm_plan(to=EVM_BOB, value=5), lookup=_Contracts()) == (
        NativeTransfer(EVM_SENDER, EVM_BOB, 5),
    )


def test_transfer() -> None:
    """ERC-20 transfer(to, amount) is a token transfer from the sender."""
    data = call("transfer(address,uint256)", ["address", "uint256"], [EVM_BOB, 2**255 - 1])
    assert decode_plan(evm_plan(data)) == (
        TokenTransfer(EVM_TOKEN, EVM_SENDER, EVM_BOB, EVM_BOB, 2**255 - 1, EVM_SENDER),
    )


def test_transfer_from() -> None:
    """transferFrom(holder, to, amount) moves the holder's tokens on the sender's authority."""
    data = call(
        "transferFrom(address,address,uint256)",
        ["address", "address", "uint256"],
        [CAROL, EVM_BOB, 7],
    )
    assert decode_plan(evm_plan(data)) == (
        TokenTransfer(EVM_TOKEN, CAROL, EVM_BOB, EVM_BOB, 7, EVM_SENDER),
    )


@pytest.mark.parametrize(
    ("signature", "kind"),
    [("approve(address,uint256)", "approve"), ("increaseAllowance(address,uint256)", "increase")],
)
def test_approvals(signature: str, kind: str) -> None:
    """approve / increaseAllowance grant the spender an allowance on the sender's tokens."""
    data = call(signature, ["address", "uint256"], [EVM_BOB, 2**256 - 2])
    assert decode_plan(evm_plan(data)) == (
        TokenApproval(EVM_TOKEN, EVM_SENDER, EVM_BOB, 2**256 - 2, kind),
    )


def test_permit() -> None:
    """EIP-2612 permit is an approval by the permit's holder to its spender."""
    data = call(
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
        ["address", "address", "uint256", "uint256", "uint8", "bytes32", "bytes32"],
        [CAROL, EVM_BOB, 1000, 2**40, 27, b"\x11" * 32, b"\x22" * 32],
    )
    assert decode_plan(evm_plan(data)) == (
        TokenApproval(EVM_TOKEN, CAROL, EVM_BOB, 1000, "permit"),
    )


def test_value_sent_with_a_token_call_is_also_a_native_transfer() -> None:
    """ETH attached to any call is a native transfer to the contract."""
    data = call("transfer(address,uint256)", ["address", "uint256"], [EVM_BOB, 1])
    effects = decode_plan(evm_plan(data, value=3))
    assert effects[0] == NativeTransfer(EVM_SENDER, EVM_TOKEN, 3)
    assert isinstance(effects[1], TokenTransfer)


def test_unknown_and_known_selectors_are_contract_calls() -> None:
    """Other calldata is a contract call naming the selector and, when known, the method."""
    assert decode_plan(evm_plan(bytes.fromhex("deadbeef") + b"\x01" * 40, value=9)) == (
        NativeTransfer(EVM_SENDER, EVM_TOKEN, 9),
        ContractCall(EVM_TOKEN, "0xdeadbeef", 9, None),
    )
    data = call("setApprovalForAll(address,bool)", ["address", "bool"], [EVM_BOB, True])
    assert decode_plan(evm_plan(data)) == (
        ContractCall(EVM_TOKEN, "0xa22cb465", 0, "setApprovalForAll(address,bool)"),
    )
    assert decode_plan(evm_plan(b"\x01\x02")) == (ContractCall(EVM_TOKEN, None, 0, "fallback()"),)


def test_contract_creation() -> None:
    """A transaction without ``to`` deploys code: a contract call to CONTRACT_CREATION."""
    assert decode_plan(evm_plan(b"\x60\x80\x60\x40", to=None, value=4)) == (
        NativeTransfer(EVM_SENDER, CONTRACT_CREATION, 4),
        ContractCall(CONTRACT_CREATION, "0x60806040", 4, "contract creation"),
    )


def test_ascii_hex_text_of_a_transfer_is_not_a_transfer() -> None:
    """The ASCII text of transfer calldata is decoded as those bytes (selector 0x61393035)."""
    real = call("transfer(address,uint256)", ["address", "uint256"], [EVM_BOB, 1])
    effects = decode_plan(evm_plan(real.hex().encode("ascii")))
    assert effects == (ContractCall(EVM_TOKEN, "0x61393035", 0, None),)


# --------------------------------------------------------------------------- malformed


def _transfer_words(address_word: bytes, amount: int) -> bytes:
    return sel("transfer(address,uint256)") + address_word + amount.to_bytes(32, "big")


def test_dirty_address_padding_decodes_leniently_and_is_flagged() -> None:
    """Dirty high bytes: the low 160 bits (what a lax contract uses) plus a malformed call."""
    word = b"\xff" * 12 + bytes.fromhex("b0" * 20)
    effects = decode_plan(evm_plan(_transfer_words(word, 5)))
    assert effects == (
        TokenTransfer(EVM_TOKEN, EVM_SENDER, EVM_BOB, EVM_BOB, 5, EVM_SENDER),
        ContractCall(EVM_TOKEN, "0xa9059cbb", 0, "transfer(address,uint256)", malformed=True),
    )


def test_trailing_bytes_decode_leniently_and_are_flagged() -> None:
    """Solidity ignores trailing calldata: the transfer counts and the call is flagged."""
    data = call("transfer(address,uint256)", ["address", "uint256"], [EVM_BOB, 5]) + b"\x00"
    effects = decode_plan(evm_plan(data))
    assert effects[0] == TokenTransfer(EVM_TOKEN, EVM_SENDER, EVM_BOB, EVM_BOB, 5, EVM_SENDER)
    assert effects[1] == ContractCall(
        EVM_TOKEN, "0xa9059cbb", 0, "transfer(address,uint256)", malformed=True
    )


def test_short_address_attack_reads_as_the_evm_does() -> None:
    """Calldata one byte short reads zero-padded: the amount shifts left by 8 bits (x256)."""
    victim = to_checksum("b0" * 19 + "00")
    address_word = b"\0" * 12 + bytes.fromhex(victim[2:])
    data = sel("transfer(address,uint256)") + address_word[:-1] + (1).to_bytes(32, "big")
    effects = decode_plan(evm_plan(data))
    assert effects == (
        TokenTransfer(EVM_TOKEN, EVM_SENDER, victim, victim, 256, EVM_SENDER),
        ContractCall(EVM_TOKEN, "0xa9059cbb", 0, "transfer(address,uint256)", malformed=True),
    )


def test_uint8_with_dirty_padding_in_permit_is_flagged() -> None:
    """permit's ``v`` must be a clean uint8 word."""
    data = bytearray(
        call(
            "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
            ["address", "address", "uint256", "uint256", "uint8", "bytes32", "bytes32"],
            [CAROL, EVM_BOB, 1, 1, 27, b"\0" * 32, b"\0" * 32],
        )
    )
    data[4 + 32 * 4] = 1
    effects = decode_plan(evm_plan(bytes(data)))
    assert effects[0] == TokenApproval(EVM_TOKEN, CAROL, EVM_BOB, 1, "permit")
    assert isinstance(effects[1], ContractCall) and effects[1].malformed


# --------------------------------------------------------------------------- fuzz


selectors = st.sampled_from(
    [bytes.fromhex(s[2:]) for s in TOKEN_METHODS] + [b"\xde\xad\xbe\xef", b""]
)


@settings(max_examples=500, deadline=None)
@given(
    selectors,
    st.binary(max_size=300),
    st.integers(min_value=0, max_value=2**256 - 1),
    st.booleans(),
)
def test_fuzz_never_raises_and_never_drops(
    selector: bytes, tail: bytes, value: int, create: bool
) -> None:
    """Random calldata: only effects come out, at least one, and value is always counted."""
    plan = EvmPlan("mainnet", 1, EVM_SENDER, None if create else EVM_TOKEN, value, selector + tail)
    try:
        effects = decode_plan(plan, lookup=_Contracts(EVM_TOKEN))
    except WaiaasError:  # pragma: no cover - allowed, but the decoder never needs it
        return
    assert effects
    if value:
        assert any(isinstance(e, NativeTransfer) and e.amount == value for e in effects)
    if plan.data and plan.to is not None:
        assert any(isinstance(e, ContractCall | TokenTransfer | TokenApproval) for e in effects)
