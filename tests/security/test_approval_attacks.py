"""Attacks on owner approval: replayed, borrowed, repurposed, forged and malformed
signatures. Each is refused with ApprovalError, writes an AUTH_FAILED row naming the
transaction, and leaves the transaction QUEUED (so the real owner can still decide)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    TIER_AMOUNTS,
    EvmOwner,
    Owner,
    SolanaOwner,
    all_audit,
    new_agent,
    recipient,
)
from waiaas.errors import ApprovalError
from waiaas.keystore.keys import b58encode
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on fresh local chains, frozen clock."""
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RecordingNotifier()) as w:
        yield w


@pytest.fixture(params=["evm", "solana"])
def owner(request: pytest.FixtureRequest) -> Owner:
    """An owner of each wallet family in turn."""
    return EvmOwner() if request.param == "evm" else SolanaOwner()


def _queue(wallet: Wallet, owner: Owner, chain: str = "solana", count: int = 1) -> list[str]:
    agent = new_agent(wallet, chain, owner=owner)
    token = wallet.issue_session(agent.id).token
    amount = TIER_AMOUNTS[chain]["APPROVAL"]
    ids = []
    for i in range(count):
        result = wallet.send(token, Transfer(to=recipient(chain), amount=amount + i))
        assert result.status == "QUEUED"
        ids.append(result.id)
    return ids


def _auth_failures(wallet: Wallet, tx_id: str) -> list[str]:
    return [
        str(e.details.get("reason"))
        for e in all_audit(wallet, tx_id=tx_id)
        if e.event_type == "AUTH_FAILED"
    ]


def _refused(wallet: Wallet, tx_id: str, attempt: Callable[[], object]) -> ApprovalError:
    """Run ``attempt``; check it is refused, audited, and that the transaction is QUEUED."""
    before = len(_auth_failures(wallet, tx_id))
    status_before = wallet.get_transaction(tx_id).status
    with pytest.raises(ApprovalError) as info:
        attempt()
    assert info.value.tx_id == tx_id
    failures = _auth_failures(wallet, tx_id)
    assert len(failures) == before + 1
    assert failures[-1] == info.value.reason
    assert wallet.get_transaction(tx_id).status == status_before
    row = next(e for e in reversed(all_audit(wallet, tx_id=tx_id)) if e.event_type == "AUTH_FAILED")
    assert row.actor == "owner" and row.severity == "warning"
    return info.value


def _still_approvable(wallet: Wallet, owner: Owner, tx_id: str) -> None:
    assert wallet.get_transaction(tx_id).status == "QUEUED"
    assert wallet.approve(tx_id, owner.sign(wallet.approval_message(tx_id))).status == "CONFIRMED"


def test_replay_of_a_used_signature_is_refused(wallet: Wallet, owner: Owner) -> None:
    """A signature that approved a transaction cannot be used again on it (the approval is
    decided once); the transaction is not executed twice."""
    (tx_id,) = _queue(wallet, owner)
    signature = owner.sign(wallet.approval_message(tx_id))
    assert wallet.approve(tx_id, signature).status == "CONFIRMED"
    hash_before = wallet.get_transaction(tx_id).tx_hash
    error = _refused(wallet, tx_id, lambda: wallet.approve(tx_id, signature))
    assert error.reason == "already_decided"
    after = wallet.get_transaction(tx_id)
    assert (after.status, after.tx_hash) == ("CONFIRMED", hash_before)
    assert [e.event_type for e in all_audit(wallet, tx_id=tx_id)].count("TX_SIGNED") == 1


def test_malleated_evm_signature_of_a_used_approval_is_refused(wallet: Wallet) -> None:
    """The high-s twin of a used EVM signature (same signer, other bytes) is refused too."""
    owner = EvmOwner()
    (tx_id,) = _queue(wallet, owner)
    signature = bytes.fromhex(owner.sign(wallet.approval_message(tx_id))[2:])
    wallet.approve(tx_id, "0x" + signature.hex())
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v if v in (27, 28) else v ^ 1])
    _refused(wallet, tx_id, lambda: wallet.approve(tx_id, "0x" + twin.hex()))
    assert wallet.get_transaction(tx_id).status == "CONFIRMED"


def test_signature_of_another_transaction_is_refused(wallet: Wallet, owner: Owner) -> None:
    """The owner's signature for one transaction does not approve another, even one with
    the same agent, recipient kind and a nearly identical amount."""
    first, second = _queue(wallet, owner, count=2)
    signature = owner.sign(wallet.approval_message(first))
    error = _refused(wallet, second, lambda: wallet.approve(second, signature))
    assert error.reason == "wrong_signer"
    assert wallet.get_transaction(first).status == "QUEUED"
    _still_approvable(wallet, owner, second)
    assert wallet.approve(first, signature).status == "CONFIRMED"


def test_approve_signature_cannot_reject(wallet: Wallet, owner: Owner) -> None:
    """A signature made to approve cannot be used to reject (nor the reverse)."""
    (tx_id,) = _queue(wallet, owner)
    approve_sig = owner.sign(wallet.approval_message(tx_id, "approve"))
    reject_sig = owner.sign(wallet.approval_message(tx_id, "reject"))
    _refused(wallet, tx_id, lambda: wallet.reject(tx_id, approve_sig))
    _refused(wallet, tx_id, lambda: wallet.approve(tx_id, reject_sig))
    _still_approvable(wallet, owner, tx_id)


def test_wrong_signer_is_refused(wallet: Wallet, owner: Owner) -> None:
    """Someone else's wallet of the same family signing the exact message is refused."""
    (tx_id,) = _queue(wallet, owner)
    impostor = EvmOwner() if isinstance(owner, EvmOwner) else SolanaOwner()
    message = wallet.approval_message(tx_id)
    error = _refused(wallet, tx_id, lambda: wallet.approve(tx_id, impostor.sign(message)))
    assert error.reason == "wrong_signer"
    error = _refused(
        wallet,
        tx_id,
        lambda: wallet.reject(tx_id, impostor.sign(wallet.approval_message(tx_id, "reject"))),
    )
    _still_approvable(wallet, owner, tx_id)


def test_the_agent_key_cannot_approve(wallet: Wallet) -> None:
    """The agent itself (its own key, held in the keystore) is not the owner."""
    owner = SolanaOwner()
    (tx_id,) = _queue(wallet, owner)
    agent_id = wallet.get_transaction(tx_id).agent_id
    message = wallet.approval_message(tx_id).encode()
    from nacl.signing import SigningKey

    with wallet._keystore.use_key(agent_id) as secret:
        signature = SigningKey(bytes(secret)[:32]).sign(message).signature
    _refused(wallet, tx_id, lambda: wallet.approve(tx_id, b58encode(signature)))
    _still_approvable(wallet, owner, tx_id)


def test_signature_of_an_altered_message_is_refused(wallet: Wallet, owner: Owner) -> None:
    """The owner signing a message with different terms (a smaller amount shown) does not
    approve the real transaction."""
    (tx_id,) = _queue(wallet, owner)
    message = wallet.approval_message(tx_id)
    altered = message.replace("TRANSFER of 11 SOL to ", "TRANSFER of 1 SOL to ")
    assert altered != message
    _refused(wallet, tx_id, lambda: wallet.approve(tx_id, owner.sign(altered)))
    _still_approvable(wallet, owner, tx_id)


def _evm_malformed(good: str) -> dict[str, str]:
    raw = bytes.fromhex(good[2:])
    flipped = bytearray(raw)
    flipped[10] ^= 0x01
    return {
        "empty": "",
        "blank": "   ",
        "too long": "0x" + "ab" * 2000,
        "bad hex": "0x" + "zz" * 65,
        "odd hex": good[:-1],
        "64 bytes": "0x" + raw[:64].hex(),
        "66 bytes": "0x" + raw.hex() + "00",
        "zero bytes": "0x" + "00" * 65,
        "bit flipped": "0x" + bytes(flipped).hex(),
        "bad v": "0x" + raw[:64].hex() + "05",
    }


def _solana_malformed(good: str) -> dict[str, str]:
    from waiaas.keystore.keys import b58decode

    raw = b58decode(good)
    flipped = bytearray(raw)
    flipped[5] ^= 0x01
    return {
        "empty": "",
        "blank": "\t",
        "too long": "1" * 5000,
        "bad base58": "0OIl" + good[4:],
        "bad hex": "0x" + "gg" * 64,
        "65 bytes": b58encode(raw + b"\x00"),
        "63 bytes": b58encode(raw[:63]),
        "bit flipped": b58encode(bytes(flipped)),
        "zero bytes": "0x" + "00" * 64,
    }


def test_malformed_signatures_are_refused(wallet: Wallet, owner: Owner) -> None:
    """Empty, blank, overlong, non-hex, non-base58, wrong-length and corrupted signatures
    are each refused and audited; the transaction stays QUEUED and approvable."""
    (tx_id,) = _queue(wallet, owner)
    good = owner.sign(wallet.approval_message(tx_id))
    cases = _evm_malformed(good) if isinstance(owner, EvmOwner) else _solana_malformed(good)
    for label, bad in cases.items():
        error = _refused(wallet, tx_id, functools.partial(wallet.approve, tx_id, bad))
        assert error.reason in {"malformed", "bad_signature", "wrong_signer"}, label
        assert bad.strip() == "" or bad[:40] not in error.message, label
    _still_approvable(wallet, owner, tx_id)


@pytest.mark.parametrize("value", [None, 12345, b"\x00" * 65, ["0x00"]])
def test_non_string_signatures_are_refused(wallet: Wallet, value: object) -> None:
    """A signature that is not a string at all is refused as malformed."""
    owner = EvmOwner()
    (tx_id,) = _queue(wallet, owner)
    error = _refused(wallet, tx_id, lambda: wallet.approve(tx_id, value))  # type: ignore[arg-type]
    assert error.reason == "malformed"
    _still_approvable(wallet, owner, tx_id)


def test_family_mismatch_is_refused(wallet: Wallet) -> None:
    """An EVM signature for a Solana owner (and the reverse) is refused."""
    sol_owner, evm_owner = SolanaOwner(), EvmOwner()
    (sol_tx,) = _queue(wallet, sol_owner)
    (evm_tx,) = _queue(wallet, evm_owner, chain="evm")
    _refused(
        wallet,
        sol_tx,
        lambda: wallet.approve(sol_tx, evm_owner.sign(wallet.approval_message(sol_tx))),
    )
    _refused(
        wallet,
        evm_tx,
        lambda: wallet.approve(evm_tx, sol_owner.sign(wallet.approval_message(evm_tx))),
    )
    _still_approvable(wallet, sol_owner, sol_tx)
    _still_approvable(wallet, evm_owner, evm_tx)


def test_decisions_on_a_cancelled_transaction_are_refused(wallet: Wallet) -> None:
    """After the operator cancels, even the owner's valid signature cannot revive it."""
    owner = EvmOwner()
    (tx_id,) = _queue(wallet, owner)
    signature = owner.sign(wallet.approval_message(tx_id))
    wallet.cancel(tx_id)
    with pytest.raises(ApprovalError):
        wallet.approve(tx_id, signature)
    assert wallet.get_transaction(tx_id).status == "CANCELLED"
    assert "AUTH_FAILED" in [e.event_type for e in all_audit(wallet, tx_id=tx_id)]


def test_late_signature_is_refused_and_expires(wallet: Wallet) -> None:
    """A valid signature after the window is refused; the transaction becomes EXPIRED (the
    one case that does not stay QUEUED)."""
    owner = SolanaOwner()
    (tx_id,) = _queue(wallet, owner)
    signature = owner.sign(wallet.approval_message(tx_id))
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(wallet.config.approval_timeout + 60)
    with pytest.raises(ApprovalError) as info:
        wallet.approve(tx_id, signature)
    assert info.value.reason == "expired"
    assert wallet.get_transaction(tx_id).status == "EXPIRED"
    assert _auth_failures(wallet, tx_id) == ["expired"]
    with pytest.raises(ApprovalError):
        wallet.approve(tx_id, signature)


def test_concurrent_approvals_execute_once(wallet: Wallet) -> None:
    """The same valid signature submitted from several threads at once executes the
    transaction exactly once; the other attempts are refused as already decided."""
    owner = EvmOwner()
    (tx_id,) = _queue(wallet, owner)
    signature = owner.sign(wallet.approval_message(tx_id))
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def approve() -> None:
        barrier.wait(timeout=30)
        try:
            outcomes.append(str(wallet.approve(tx_id, signature).status))
        except ApprovalError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=approve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["CONFIRMED"] + ["already_decided"] * 3
    kinds = [e.event_type for e in all_audit(wallet, tx_id=tx_id)]
    assert kinds.count("TX_APPROVED") == 1 and kinds.count("TX_SIGNED") == 1
