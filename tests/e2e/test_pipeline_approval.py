"""APPROVAL tier end to end: the owner signs the canonical message with a real wallet
(eth-account for EVM owners, ed25519 for Solana owners); reject, expiry, and agents with
no owner."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (
    TIER_AMOUNTS,
    EvmOwner,
    Owner,
    SolanaOwner,
    events_of,
    new_agent,
    recipient,
)
from tests.support.rawdb import raw_connect
from waiaas.errors import ApprovalError, PolicyDeniedError
from waiaas.testing import FrozenClock, local_wallet
from waiaas.testing import fast_config as make_config
from waiaas.types import Transfer
from waiaas.wallet import Wallet

OWNERS = {"evm-owner": EvmOwner, "solana-owner": SolanaOwner}


def _queue(wallet: Wallet, chain: str, owner: Owner) -> tuple[str, str, int]:
    agent = new_agent(wallet, chain, owner=owner)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["APPROVAL"]
    result = wallet.send(token, Transfer(to=dest, amount=amount))
    assert (result.status, result.tier) == ("QUEUED", "APPROVAL")
    return result.id, dest, amount


def _approvals(wallet: Wallet, tx_id: str) -> list[tuple[object, ...]]:
    with raw_connect(wallet) as con:
        return con.all(
            "SELECT tx_id, expires_at, approved_at, rejected_at FROM pending_approvals "
            "WHERE tx_id = ?",
            (tx_id,),
        )


def test_approval_row_and_message(wallet: Wallet) -> None:
    """An APPROVAL request gets a pending approval row and a SIWE-style message naming the
    transaction, its amount, recipient, agent, owner, a nonce and the expiry."""
    owner = EvmOwner()
    tx_id, dest, amount = _queue(wallet, "evm", owner)
    tx = wallet.get_transaction(tx_id)
    expires = wallet.clock.now() + wallet.config.approval_timeout
    assert tx.approval_expires_at == expires
    assert _approvals(wallet, tx_id) == [(tx_id, expires, None, None)]
    message = wallet.approval_message(tx_id)
    assert message.startswith(
        "waiaas.local wants you to sign in with your Ethereum account:\n" + owner.address + "\n"
    )
    assert amount == 2 * 10**18
    for part in (
        tx_id,
        f"TRANSFER of 2 ETH to {dest}",  # human units, not base units
        dest,
        tx.agent_id,
        "tier APPROVAL",
        "Nonce: ",
        "Expiration Time: ",
        "Approve",
    ):
        assert part in message
    reject = wallet.approval_message(tx_id, "reject")
    assert reject != message and "Reject" in reject
    assert wallet.approval_message(tx_id) == message  # stable: the owner can sign it later


@pytest.mark.parametrize("owner_kind", list(OWNERS))
def test_owner_signature_executes(wallet: Wallet, chain: str, owner_kind: str) -> None:
    """The owner's signature (EVM personal_sign or Solana ed25519), whichever chain the agent
    is on, approves the transaction: it executes and the recipient gets the exact amount."""
    owner = OWNERS[owner_kind]()
    tx_id, dest, amount = _queue(wallet, chain, owner)
    if owner_kind == "solana-owner":
        assert "your Solana account" in wallet.approval_message(tx_id)
    done = wallet.approve(tx_id, owner.sign(wallet.approval_message(tx_id)))
    assert done.status == "CONFIRMED"
    agent = wallet.get_agent(done.agent_id)
    adapter = wallet.network_adapter(agent.chain, agent.network)
    assert adapter.get_balance(dest) == amount
    assert events_of(wallet, tx_id) == [
        "TX_REQUESTED",
        "TX_QUEUED",
        "TX_APPROVED",
        "TX_EXECUTING",
        "TX_SIGNED",
        "TX_SUBMITTED",
        "TX_CONFIRMED",
    ]
    (row,) = _approvals(wallet, tx_id)
    assert row[2] == wallet.clock.now() and row[3] is None


def test_solana_owner_hex_signature_is_accepted(wallet: Wallet) -> None:
    """A Solana owner's signature may also be given as 0x-hex."""
    owner = SolanaOwner()
    tx_id, _dest, _amount = _queue(wallet, "solana", owner)
    message = wallet.approval_message(tx_id)
    signature = "0x" + owner.key.sign(message.encode()).signature.hex()
    assert wallet.approve(tx_id, signature).status == "CONFIRMED"


@pytest.mark.parametrize("form", ["docstring", "0x-hex", "bare-hex", "base58"])
def test_every_signature_form_a_wallet_or_library_prints_approves(
    wallet: Wallet, form: str
) -> None:
    """Wallet.approve takes what wallets and libraries print: the docstring's own example
    (``sig.signature.hex()``, bare hex with hexbytes 2) and 0x-hex for an EVM owner; bare
    hex, 0x-hex and base58 for a Solana owner. Each approves and the transfer executes."""
    from eth_account.messages import encode_defunct

    from waiaas.keystore.keys import b58encode

    if form == "docstring":
        evm = EvmOwner()
        tx_id, _dest, _amount = _queue(wallet, "evm", evm)
        sig = evm.account.sign_message(encode_defunct(text=wallet.approval_message(tx_id)))
        signature = sig.signature.hex()  # exactly as the Wallet.approve docstring writes it
        assert not signature.startswith("0x")  # hexbytes 2
        evm_0x = EvmOwner()
        other, _dest, _amount = _queue(wallet, "evm", evm_0x)
        assert wallet.approve(other, evm_0x.sign(wallet.approval_message(other))).status == (
            "CONFIRMED"
        )
    else:
        sol = SolanaOwner()
        tx_id, _dest, _amount = _queue(wallet, "solana", sol)
        raw = sol.key.sign(wallet.approval_message(tx_id).encode()).signature
        signature = {"0x-hex": "0x" + raw.hex(), "bare-hex": raw.hex(), "base58": b58encode(raw)}[
            form
        ]
    assert wallet.approve(tx_id, signature).status == "CONFIRMED"


def test_reject_with_signature_cancels(wallet: Wallet, chain: str) -> None:
    """The owner's signed rejection cancels the transaction; nothing is sent and a later
    approval is refused."""
    owner = EvmOwner() if chain == "evm" else SolanaOwner()
    tx_id, dest, _amount = _queue(wallet, chain, owner)
    rejected = wallet.reject(tx_id, owner.sign(wallet.approval_message(tx_id, "reject")))
    assert rejected.status == "CANCELLED"
    assert rejected.error is not None and "REJECTED" in rejected.error
    assert events_of(wallet, tx_id)[-2:] == ["TX_REJECTED", "TX_CANCELLED"]
    with pytest.raises(ApprovalError):
        wallet.approve(tx_id, owner.sign(wallet.approval_message(tx_id)))
    assert wallet.get_transaction(tx_id).status == "CANCELLED"
    agent = wallet.get_agent(rejected.agent_id)
    assert wallet.network_adapter(agent.chain, agent.network).get_balance(dest) == 0


def test_expiry_via_process_due(wallet: Wallet) -> None:
    """An approval the owner never gives expires in process_due(): EXPIRED, audited."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    owner = SolanaOwner()
    tx_id, _dest, _amount = _queue(wallet, "solana", owner)
    clock.advance(wallet.config.approval_timeout - 1)
    assert wallet.process_due()["expired"] == 0  # the last second inside the window
    clock.advance(1)
    assert wallet.process_due()["expired"] == 1
    expired = wallet.get_transaction(tx_id)
    assert expired.status == "EXPIRED"
    assert events_of(wallet, tx_id)[-1] == "TX_EXPIRED"
    assert wallet.process_due()["expired"] == 0


def test_signature_after_expiry_is_refused_and_expires(wallet: Wallet) -> None:
    """A signature that arrives after the window, even before process_due() ran, is refused
    (ApprovalError reason 'expired'), the transaction becomes EXPIRED and nothing is sent."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    owner = EvmOwner()
    tx_id, dest, _amount = _queue(wallet, "evm", owner)
    signature = owner.sign(wallet.approval_message(tx_id))
    clock.advance(wallet.config.approval_timeout)  # the expiration time itself is too late
    with pytest.raises(ApprovalError) as info:
        wallet.approve(tx_id, signature)
    assert info.value.reason == "expired"
    assert wallet.get_transaction(tx_id).status == "EXPIRED"
    assert "AUTH_FAILED" in events_of(wallet, tx_id)
    assert wallet.network_adapter("evm", "local").get_balance(dest) == 0


def test_policy_approval_timeout_is_used(wallet: Wallet) -> None:
    """A SPENDING_LIMIT's approval_timeout sets the owner's window."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    owner = EvmOwner()
    agent = new_agent(wallet, "evm", owner=owner)
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"instant_max": "0", "notify_max": "0", "delay_max": "0", "approval_timeout": 300},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    result = wallet.send(token, Transfer(to=recipient("evm"), amount=10**15))
    assert result.tier == "APPROVAL"
    assert result.approval_expires_at == clock.now() + 300
    clock.advance(301)
    wallet.process_due()
    assert wallet.get_transaction(result.id).status == "EXPIRED"


def test_pending_approval_moves_to_the_new_owner(wallet: Wallet) -> None:
    """Changing the agent's owner invalidates a pending approval: the replaced owner can no
    longer approve (old message or new), the new owner signs a fresh message."""
    first, second = EvmOwner(), EvmOwner()
    tx_id, _dest, _amount = _queue(wallet, "evm", first)
    agent_id = wallet.get_transaction(tx_id).agent_id
    old_message = wallet.approval_message(tx_id)
    wallet.set_owner(agent_id, second.address)
    message = wallet.approval_message(tx_id)
    assert second.address in message and first.address not in message
    with pytest.raises(ApprovalError):
        wallet.approve(tx_id, first.sign(old_message))
    with pytest.raises(ApprovalError):
        wallet.approve(tx_id, first.sign(message))
    assert wallet.approve(tx_id, second.sign(message)).status == "CONFIRMED"


def test_no_owner_approval_is_denied_by_default(wallet: Wallet, chain: str) -> None:
    """Without an owner nobody can approve: an APPROVAL-tier request is denied, recorded as
    FAILED POLICY_DENIED with a reason saying to set an owner."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    with pytest.raises(PolicyDeniedError) as info:
        wallet.send(token, Transfer(to=recipient(chain), amount=TIER_AMOUNTS[chain]["APPROVAL"]))
    error = info.value
    assert error.tx_id is not None
    assert any("owner" in str(r["message"]) for r in error.reasons)
    row = wallet.get_transaction(error.tx_id)
    assert row.status == "FAILED" and row.tier is None
    assert row.error is not None and row.error.startswith("POLICY_DENIED")
    assert events_of(wallet, error.tx_id) == ["TX_REQUESTED", "POLICY_VIOLATION"]


def test_no_owner_approval_becomes_delay_when_configured(tmp_path: object) -> None:
    """With no_owner_approval='delay' the same request becomes a DELAY and executes after
    the cooldown."""
    from pathlib import Path

    clock = FrozenClock()
    config = make_config(no_owner_approval="delay")
    with local_wallet(Path(str(tmp_path)), clock=clock, config=config) as wallet:
        agent = new_agent(wallet, "solana")
        token = wallet.issue_session(agent.id).token
        dest = recipient("solana")
        amount = TIER_AMOUNTS["solana"]["APPROVAL"]
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        assert (result.status, result.tier) == ("QUEUED", "DELAY")
        with pytest.raises(ApprovalError):
            wallet.approval_message(result.id)
        clock.advance(config.delay_seconds)
        wallet.process_due()
        assert wallet.get_transaction(result.id).status == "CONFIRMED"
        assert wallet.balance(agent.id) < 50 * 10**9 - amount
