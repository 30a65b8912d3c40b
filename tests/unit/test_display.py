"""What owners read: every request type as display rows in human units, full addresses,
exact amounts, never a guessed decimal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- network fee


def test_fee_quotes_in_human_units() -> None:
    """EVM: the maximum with its factors; Solana: what it pays, split into signature and
    priority fee when the plan sets one; malformed stored quotes show nothing."""
    from waiaas.plan import FeeEffect, effects_to_json
    from waiaas.web.display import describe_fee

    evm = describe_fee(
        "evm",
        {
            "amount": "63000000000000",
            "basis": "maximum",
            "gas_limit": "21000",
            "max_fee_per_gas": "3000000000",
        },
    )
    assert evm is not None and evm.maximum and evm.base_units == 63 * 10**12
    assert evm.amount == "0.000063 ETH"
    assert evm.text == (
        "network fee: at most 0.000063 ETH "
        "(gas limit 21000 times max fee per gas 3 gwei, priced when requested)"
    )
    inconsistent = describe_fee(
        "evm", {"amount": "5", "basis": "maximum", "gas_limit": "2", "max_fee_per_gas": "2"}
    )
    assert inconsistent is not None
    assert (
        inconsistent.text == "network fee: at most 0.000000000000000005 ETH (priced when requested)"
    )
    payer = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
    sol = describe_fee(
        "solana",
        {"amount": "5200", "basis": "exact"},
        effects_to_json([FeeEffect(payer, 200)]),
    )
    assert sol is not None and not sol.maximum and sol.amount == "0.0000052 SOL"
    assert sol.text == (
        "network fee: 0.0000052 SOL (signature fee 0.000005 SOL + priority fee 0.0000002 SOL)"
    )
    plain = describe_fee("solana", {"amount": "5000", "basis": "exact"}, None)
    assert plain is not None and plain.text == "network fee: 0.000005 SOL"
    estimate = describe_fee("evm", {"amount": "10", "basis": "estimate"})
    assert estimate is not None and estimate.text.startswith("network fee: about ")
    assert plain.to_dict() == {
        "text": "network fee: 0.000005 SOL",
        "amount": "0.000005 SOL",
        "base_units": "5000",
        "maximum": False,
    }
    for bad in (
        None,
        {},
        {"amount": "-1", "basis": "exact"},
        {"amount": True, "basis": "exact"},
        {"amount": "1e3", "basis": "exact"},
        {"amount": "5", "basis": "guess"},
        ["5"],
    ):
        assert describe_fee("solana", bad) is None  # type: ignore[arg-type]


def _approval(chains: list[Any] | None, tmp_path: Path, chain: str) -> tuple[Any, str, Any]:
    from tests.e2e.conftest import TIER_AMOUNTS, new_agent, owner_for, recipient
    from waiaas import Transfer
    from waiaas.testing import fast_config, local_wallet

    wallet = local_wallet(tmp_path, chains=chains, config=fast_config(), background=False)
    owner = owner_for(chain)
    agent = new_agent(wallet, chain, owner=owner)
    token = wallet.issue_session(agent.id).token
    result = wallet.send(
        token, Transfer(to=recipient(chain), amount=TIER_AMOUNTS[chain]["APPROVAL"])
    )
    assert result.tier == "APPROVAL"
    return wallet, result.id, owner


def test_evm_display_shows_the_maximum_fee_and_the_fee_paid_is_within_it(tmp_path: Path) -> None:
    """eth-tester: the display, the message and the JSON form name the most the transfer can
    cost (gas limit 21000 times the max fee per gas it was built with); once approved, the
    fee the chain charged is no more than that."""
    wallet, tx_id, owner = _approval(None, tmp_path, "evm")
    with wallet:
        fee = wallet.transaction_display(tx_id).network_fee
        assert fee is not None and fee.maximum
        assert fee.text.startswith(f"network fee: at most {fee.amount} (gas limit 21000 times ")
        assert fee.amount.endswith(" ETH") and fee.base_units % 21000 == 0
        message = wallet.approval_message(tx_id)
        assert f"\nNetwork fee: {fee.text.removeprefix('network fee: ')}\n" in message
        assert wallet.transaction_display(tx_id).to_dict()["network_fee"] == fee.to_dict()
        done = wallet.approve(tx_id, owner.sign(message))
        assert done.status == "CONFIRMED" and done.fee is not None
        assert 0 < done.fee <= fee.base_units


def test_solana_display_shows_the_exact_fee_with_its_priority_part(tmp_path: Path) -> None:
    """LiteSVM with a compute-unit price: the display splits the fee the message pays into
    signature fee and priority fee, and it is exactly what the chain charged."""
    from waiaas.chains.evm import EvmAdapter
    from waiaas.chains.solana import SolanaAdapter

    chains: list[Any] = [
        SolanaAdapter.local(compute_unit_price=1_000, compute_unit_limit=200_000),
        EvmAdapter.local(),
    ]
    wallet, tx_id, owner = _approval(chains, tmp_path, "solana")
    with wallet:
        shown = wallet.transaction_display(tx_id)
        fee = shown.network_fee
        assert fee is not None and not fee.maximum and fee.base_units == 5_200
        assert fee.text == (
            "network fee: 0.0000052 SOL (signature fee 0.000005 SOL + priority fee 0.0000002 SOL)"
        )
        assert any(e.kind == "fee" and e.amount == "0.0000002 SOL" for e in shown.effects)
        message = wallet.approval_message(tx_id)
        assert "\nNetwork fee: 0.0000052 SOL (signature fee" in message
        done = wallet.approve(tx_id, owner.sign(message))
        assert done.status == "CONFIRMED" and done.fee == fee.base_units
