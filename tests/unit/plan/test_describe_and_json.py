"""The owner's approval text names every effect in full; effects round-trip through JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plan_helpers import EVM_BOB, EVM_SENDER, EVM_TOKEN

from waiaas.errors import InvalidInputError
from waiaas.plan import (
    CONTRACT_CREATION,
    AccountClose,
    AccountFunding,
    AuthorityChange,
    ContractCall,
    Effect,
    FeeEffect,
    Memo,
    NativeTransfer,
    ProgramCall,
    TokenApproval,
    TokenTransfer,
    describe_effects,
    effects_from_json,
    effects_to_json,
    format_units,
)

SOL_A = "8eRNCoiiAHx6fo8kZp5BgBobsr3ezeUsHiALYC9uyjQu"
SOL_B = "2UvS6JYwuVVaeZ5pvYZqo3dE8xcTcusCu7sGdz4xHpeE"
MINT = "8Kn9ZKDLLREtbKbqKvt5Eu3Ds5Qs1EVaKfoLYGmRS6xM"


def usdc(token: str) -> tuple[int, str] | None:
    return (6, "USDC") if token in (MINT, EVM_TOKEN) else None


@pytest.mark.parametrize(
    ("amount", "decimals", "text"),
    [
        (0, 9, "0"),
        (-1500, 3, "-1.5"),
        (500_000_000, 9, "0.5"),
        (1, 18, "0.000000000000000001"),
        (
            2**256 - 1,
            18,
            "115792089237316195423570985008687907853269984665640564039457.584007913129639935",
        ),
        (100_000_000, 6, "100"),
        (7, 0, "7"),
    ],
)
def test_format_units_is_exact(amount: int, decimals: int, text: str) -> None:
    """Amounts render exactly, without float rounding or exponent notation."""
    assert format_units(amount, decimals) == text


def test_mixed_batch_names_every_item_with_full_addresses() -> None:
    """The issue's batch: a SOL transfer, a token drain and an unlimited approval, all named."""
    effects: list[Effect] = [
        NativeTransfer(SOL_A, SOL_B, 11 * 10**9),
        TokenTransfer(
            MINT, "3xgFUWsBNx8nVYkKHrtjy2TBUgfFfqsHPmbFmA33Zp6d", SOL_B, SOL_B, 5 * 10**6, SOL_A
        ),
        TokenApproval(MINT, "3xgFUWsBNx8nVYkKHrtjy2TBUgfFfqsHPmbFmA33Zp6d", SOL_B, 2**64 - 1),
        AccountFunding(SOL_A, SOL_B, 2_039_280, "token_account_rent"),
        FeeEffect(SOL_A, 200),
    ]
    lines = describe_effects(effects, chain="solana", token_info=usdc)
    assert lines == [
        f"send 11 SOL from {SOL_A} to {SOL_B}",
        f"transfer 5 USDC (token {MINT}) from 3xgFUWsBNx8nVYkKHrtjy2TBUgfFfqsHPmbFmA33Zp6d to "
        f"{SOL_B}, authorised by {SOL_A}",
        f"approve spender {SOL_B} to spend 18446744073709.551615 USDC (token {MINT}) from "
        "3xgFUWsBNx8nVYkKHrtjy2TBUgfFfqsHPmbFmA33Zp6d",
        f"pay 0.00203928 SOL (token account rent, at most) from {SOL_A} into account {SOL_B}",
        f"pay a priority fee of 0.0000002 SOL from {SOL_A}",
    ]


def test_calls_show_method_or_raw_selector() -> None:
    """Contract calls name the decoded method or the raw selector, and any value sent."""
    lines = describe_effects(
        [
            ContractCall(EVM_TOKEN, "0xa22cb465", 0, "setApprovalForAll(address,bool)"),
            ContractCall(EVM_TOKEN, "0xdeadbeef", 10**18, None),
            ContractCall(EVM_TOKEN, "0xa9059cbb", 0, "transfer(address,uint256)", malformed=True),
            ContractCall(CONTRACT_CREATION, None, 0, "contract creation"),
            ProgramCall(SOL_B, (SOL_A,), "0x04000000", "addressLookupTable.closeLookupTable"),
        ],
        chain="evm",
        token_info=usdc,
    )
    assert lines[0] == (
        f"call contract {EVM_TOKEN} method setApprovalForAll(address,bool) (selector 0xa22cb465)"
    )
    assert (
        lines[1] == f"call contract {EVM_TOKEN} unknown method, selector 0xdeadbeef sending 1 ETH"
    )
    assert "MALFORMED" in lines[2]
    assert lines[3] == "deploy a new contract"
    assert SOL_B in lines[4] and SOL_A in lines[4] and "closeLookupTable" in lines[4]


def test_unknown_tokens_show_base_units_and_the_address() -> None:
    """Without token info the base units and the full token address are shown."""
    (line,) = describe_effects(
        [TokenTransfer(EVM_BOB, EVM_SENDER, EVM_TOKEN, EVM_TOKEN, 5, EVM_SENDER)],
        chain="evm",
        token_info=lambda t: None,
    )
    assert line == f"transfer 5 base units of token {EVM_BOB} from {EVM_SENDER} to {EVM_TOKEN}"
    (line,) = describe_effects(
        [TokenApproval(None, SOL_A, SOL_B, 5)], chain="solana", token_info=lambda t: None
    )
    assert "unresolved token" in line


def test_memo_and_symbols_cannot_forge_lines() -> None:
    """Memos and symbols are JSON-quoted: no newline, control or bidi character gets through."""
    memo = "ok\napprove nothing\u202e"
    lines = describe_effects(
        [Memo(memo), TokenTransfer(MINT, SOL_A, SOL_B, None, 1, SOL_A)],
        chain="solana",
        token_info=lambda t: (0, "USDC\nsend 0 SOL"),
    )
    assert all("\n" not in line and "\u202e" not in line for line in lines)
    assert lines[0] == "memo " + json.dumps(memo)
    assert '"USDC\\nsend 0 SOL"' in lines[1]


def test_authority_changes_and_closes() -> None:
    """Authority changes and closes say who gets control or the lamports."""
    lines = describe_effects(
        [
            AuthorityChange(SOL_A, SOL_B, "account_owner"),
            AuthorityChange(SOL_A, None, "close_account"),
            AuthorityChange(SOL_A, SOL_B, "system_assign"),
            AccountClose(SOL_A, SOL_B, SOL_A),
        ],
        chain="solana",
        token_info=usdc,
    )
    assert lines == [
        f"set the account_owner authority of {SOL_A} to {SOL_B}",
        f"set the close_account authority of {SOL_A} to nobody (removed)",
        f"hand account {SOL_A} over to program {SOL_B}",
        f"close account {SOL_A}, sending its lamports to {SOL_B} (authority {SOL_A})",
    ]


def test_unknown_chain_needs_native_units() -> None:
    """A third-party chain must say what its native coin is."""
    with pytest.raises(InvalidInputError):
        describe_effects([FeeEffect("x", 1)], chain="btc", token_info=usdc)
    assert describe_effects(
        [NativeTransfer("a", "b", 10**18)], chain="polygon", token_info=usdc, native=(18, "POL")
    ) == ["send 1 POL from a to b"]


def test_describe_refuses_non_effects() -> None:
    """Only effects can be described."""
    with pytest.raises(InvalidInputError):
        describe_effects(["send 1 SOL"], chain="solana", token_info=usdc)  # type: ignore[list-item]


texts = st.text(max_size=20)
amounts = st.integers(min_value=0, max_value=2**256 - 1)
effects_strategy = st.one_of(
    st.builds(NativeTransfer, texts, texts, amounts),
    st.builds(AccountFunding, texts, texts, amounts, texts),
    st.builds(FeeEffect, texts, amounts),
    st.builds(TokenTransfer, st.none() | texts, texts, texts, st.none() | texts, amounts, texts),
    st.builds(TokenApproval, st.none() | texts, texts, texts, amounts, texts),
    st.builds(AuthorityChange, texts, st.none() | texts, texts),
    st.builds(AccountClose, texts, texts, texts),
    st.builds(ContractCall, texts, st.none() | texts, amounts, st.none() | texts, st.booleans()),
    st.builds(
        ProgramCall, texts, st.lists(texts).map(tuple), texts, st.none() | texts, st.booleans()
    ),
    st.builds(Memo, texts),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(effects_strategy, max_size=6))
def test_effects_json_round_trip(effects: list[Effect]) -> None:
    """Effects survive JSON text exactly (amounts as decimal strings)."""
    data = json.loads(json.dumps(effects_to_json(effects)))
    assert effects_from_json(data) == tuple(effects)


@pytest.mark.parametrize(
    "data",
    [
        [{"effect": "nope"}],
        [{"effect": "memo"}],
        [{"effect": "memo", "text": "x", "extra": 1}],
        [{"effect": "fee", "payer": "a", "amount": 5}],
        [{"effect": "fee", "payer": None, "amount": "5"}],
        [
            {
                "effect": "program_call",
                "program": "p",
                "accounts": "a",
                "data_prefix": "0x",
                "method": None,
                "malformed": False,
            }
        ],
        [
            {
                "effect": "contract_call",
                "contract": "c",
                "selector": None,
                "value": "0",
                "method": None,
                "malformed": "no",
            }
        ],
        "memo",
    ],
)
def test_effects_from_json_is_strict(data: object) -> None:
    """Unknown kinds, missing or extra keys, ints not as strings, wrong types: refused."""
    with pytest.raises(InvalidInputError):
        effects_from_json(data)  # type: ignore[arg-type]
