"""What owners read: every request type as display rows in human units, full addresses,
exact amounts, never a guessed decimal."""

from __future__ import annotations

import pytest

from waiaas.errors import InvalidInputError, NotFoundError
from waiaas.web.display import describe_transaction, native_unit

SOL_DEST = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
EVM_DEST = "0x00000000000000000000000000000000000000aa"
TOKEN = "0x00000000000000000000000000000000000000bb"


def _show(chain: str, request: dict[str, object], **kw: object) -> list[str]:
    shown = describe_transaction(
        chain=chain,
        request=request,
        agent_name="bot",
        agent_id="a1",
        **kw,  # type: ignore[arg-type]
    )
    return [e.text for e in shown.effects]


def test_native_transfers_in_human_units() -> None:
    assert _show("solana", {"type": "TRANSFER", "to": SOL_DEST, "amount": "1500000000"}) == [
        f"send 1.5 SOL to {SOL_DEST}"
    ]
    assert _show("evm", {"type": "TRANSFER", "to": EVM_DEST, "amount": str(10**18 + 1)}) == [
        f"send 1.000000000000000001 ETH to {EVM_DEST}"
    ]
    assert native_unit("bitcoin") is None


def test_memo_is_shown() -> None:
    rows = _show("solana", {"type": "TRANSFER", "to": SOL_DEST, "amount": "1", "memo": "rent"})
    assert rows == [f"send 0.000000001 SOL to {SOL_DEST}", "memo: rent"]


def test_token_amounts_use_known_decimals_or_base_units() -> None:
    req = {"type": "TOKEN_TRANSFER", "token": MINT, "to": SOL_DEST, "amount": "2500000"}
    assert _show("solana", {**req, "decimals": 6}) == [f"send 2.5 of token {MINT} to {SOL_DEST}"]
    assert _show("solana", req, token_decimals=lambda t: 6 if t == MINT else None) == [
        f"send 2.5 of token {MINT} to {SOL_DEST}"
    ]
    assert _show("solana", req) == [f"send 2500000 base units of token {MINT} to {SOL_DEST}"]

    def broken(token: str) -> int:
        raise NotFoundError("token", token)

    assert _show("solana", req, token_decimals=broken) == [
        f"send 2500000 base units of token {MINT} to {SOL_DEST}"
    ]


def test_approvals_name_the_spender_and_flag_unlimited() -> None:
    req = {"type": "APPROVE", "token": TOKEN, "spender": EVM_DEST, "amount": str(2**256 - 1)}
    (row,) = _show("evm", {**req, "decimals": 18})
    assert row.startswith(f"allow spender {EVM_DEST} to move up to ")
    assert row.endswith("(practically unlimited)")
    (small,) = _show("evm", {**req, "amount": "5", "decimals": 0})
    assert small == f"allow spender {EVM_DEST} to move up to 5 of token {TOKEN}"


def test_contract_calls_show_value_selector_and_size() -> None:
    rows = _show(
        "evm",
        {
            "type": "CONTRACT_CALL",
            "to": EVM_DEST,
            "data": "0xa9059cbb" + "00" * 64,
            "value": str(10**17),
        },
    )
    assert rows == [
        f"send 0.1 ETH to contract {EVM_DEST}",
        f"call contract {EVM_DEST} (method selector 0xa9059cbb, 68 bytes of calldata)",
    ]
    rows = _show(
        "solana",
        {
            "type": "CONTRACT_CALL",
            "to": SOL_DEST,
            "data": "0x0102",
            "accounts": [{"pubkey": MINT, "is_writable": True}],
        },
    )
    assert rows == [f"call program {SOL_DEST} with 1 accounts (1 writable) and 2 bytes of data"]


def test_batches_list_every_item() -> None:
    batch = {
        "type": "BATCH",
        "requests": [
            {"type": "TRANSFER", "to": SOL_DEST, "amount": "1000000000"},
            {"type": "TOKEN_TRANSFER", "token": MINT, "to": SOL_DEST, "amount": "1", "decimals": 0},
        ],
    }
    assert _show("solana", batch) == [
        f"send 1 SOL to {SOL_DEST}",
        f"send 1 of token {MINT} to {SOL_DEST}",
    ]


def test_summary_reasons_and_times() -> None:
    shown = describe_transaction(
        chain="evm",
        request={"type": "TRANSFER", "to": EVM_DEST, "amount": str(2 * 10**18)},
        agent_name="bot",
        agent_id="a1",
        decision={
            "tier": "APPROVAL",
            "reasons": [
                {"effect": "tier", "tier": "NOTIFY", "message": "small"},
                {"effect": "tier", "tier": "APPROVAL", "message": "above the daily limit"},
                {"effect": "info", "message": "noise"},
            ],
        },
        approval_expires_at=1_700_003_600,
        execute_after=None,
    )
    assert shown.summary == f"Agent bot (a1) asks to send 2 ETH to {EVM_DEST}"
    assert shown.reasons == ("above the daily limit",)
    assert shown.expires_iso == "2023-11-14T23:13:20Z" and shown.execute_after_iso is None
    assert shown.to_dict()["effects"][0]["amount"] == "2 ETH"


def test_a_corrupt_stored_request_is_an_input_error() -> None:
    with pytest.raises(InvalidInputError):
        _show("evm", {"type": "TRANSFER", "to": EVM_DEST})
    assert (
        describe_transaction(chain="evm", request=None, agent_name="bot", agent_id="a1").summary
        == "Agent bot (a1) asks for a transaction with no recorded effects"
    )


def test_stored_plan_effects_are_shown_instead_of_the_request() -> None:
    """When the pipeline stored the effects decoded from the plan, they are what the owner
    reads (every one, rent and fees included), not the request."""
    from waiaas.plan import (
        AccountFunding,
        ContractCall,
        FeeEffect,
        Memo,
        NativeTransfer,
        TokenApproval,
        TokenTransfer,
        effects_to_json,
    )

    payer = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
    owner = "BPFLoaderUpgradeab1e11111111111111111111111"
    stored = effects_to_json(
        [
            NativeTransfer(payer, SOL_DEST, 1_500_000_000),
            AccountFunding(payer, SOL_DEST, 2_039_280, "token_account_rent"),
            FeeEffect(payer, 5_000),
            TokenTransfer(MINT, payer, SOL_DEST, owner, 2_500_000, payer),
            TokenApproval(MINT, payer, owner, 10**6),
            Memo("hi"),
        ]
    )
    shown = describe_transaction(
        chain="solana",
        request={"type": "TRANSFER", "to": SOL_DEST, "amount": "1"},
        agent_name="bot",
        agent_id="a1",
        token_decimals=lambda t: 6,
        effects=stored,
    )
    rows = [(e.kind, e.amount, e.counterparty) for e in shown.effects]
    assert rows == [
        ("send", "1.5 SOL", SOL_DEST),
        ("account funding", "0.00203928 SOL", SOL_DEST),
        ("fee", "0.000005 SOL", None),
        ("token transfer", f"2.5 of token {MINT}", owner),
        ("token approval", f"1 of token {MINT}", owner),
        ("memo", None, None),
    ]
    texts = [e.text for e in shown.effects]
    assert texts[0] == f"send 1.5 SOL from {payer} to {SOL_DEST}"
    assert texts[3].startswith(f"transfer 2.5 tokens (token {MINT}) from {payer} to {SOL_DEST}")
    assert "0.000000001" not in shown.summary  # the request's amount is not what is shown
    evm = describe_transaction(
        chain="evm",
        request=None,
        agent_name="bot",
        agent_id="a1",
        effects=effects_to_json([ContractCall(EVM_DEST, "0xdeadbeef", 0, None)]),
    )
    assert evm.effects[0].text == f"call contract {EVM_DEST} unknown method, selector 0xdeadbeef"
    broken = describe_transaction(
        chain="evm",
        request={"type": "TRANSFER", "to": EVM_DEST, "amount": "1"},
        agent_name="bot",
        agent_id="a1",
        effects=[{"effect": "teleport"}],
    )
    assert broken.effects[0].kind == "warning" and broken.effects[1].kind == "send"
