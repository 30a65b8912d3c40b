"""Issue 9, items 1 and 4-8: the policies judge the effects decoded from the transaction that
will be signed, and the owner's approval names every one of them. Each attack is refused and
leaves its audit row; both chains wherever the chain has the feature."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import all_audit, events_of, new_agent, owner_for, recipient
from waiaas.errors import ApprovalError, InvalidInputError, PolicyDeniedError
from waiaas.notify.testing import RecordingNotifier
from waiaas.pipeline.engine import PipelineHooks
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import AccountSpec, Approve, Batch, ContractCall, TokenTransfer, Transfer
from waiaas.wallet import Wallet

NETWORK = {"solana": "localnet", "evm": "local"}
SOL = 10**9
ALT_PROGRAM = "AddressLookupTab1e1111111111111111111111111"
TOKEN_RENT = 2_039_280  # lamports of a 165-byte SPL token account


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on fresh local chains, frozen clock."""
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RecordingNotifier()) as w:
        yield w


@pytest.fixture(params=["solana", "evm"])
def chain(request: pytest.FixtureRequest) -> str:
    """Each chain family in turn."""
    return str(request.param)


def _adapter(wallet: Wallet, chain: str) -> Any:
    return wallet.network_adapter(chain, NETWORK[chain])


def _token(wallet: Wallet, chain: str, holder: str, amount: int, decimals: int = 6) -> str:
    adapter = _adapter(wallet, chain)
    mint = adapter.create_test_token(decimals=decimals)
    adapter.mint_test_token(mint, holder, amount)
    return str(adapter.validate_address(mint))


def _denied(wallet: Wallet, token: str, request: Any) -> PolicyDeniedError:
    with pytest.raises(PolicyDeniedError) as info:
        wallet.send(token, request)
    err = info.value
    assert err.tx_id is not None
    violations = [
        e for e in all_audit(wallet, tx_id=err.tx_id) if e.event_type == "POLICY_VIOLATION"
    ]
    assert violations, "a denial leaves a POLICY_VIOLATION row"
    assert wallet.get_transaction(err.tx_id).status == "FAILED"
    return err


def _meta(wallet: Wallet, tx_id: str) -> dict[str, Any]:
    return wallet._pipeline._meta(wallet._pipeline.get_row(tx_id))


# --------------------------------------------------------------------------- item 1


def test_item1_transfer_calldata_to_a_token_is_refused_on_evm(wallet: Wallet) -> None:
    """Item 1: the ERC-20 ``transfer(thief, ...)`` calldata, as real 0x-hex, is what it is: a
    token transfer, which a raw call may not make (it would bypass the token's budgets);
    written as ASCII text it is not calldata at all. Nothing is recorded either way."""
    agent = new_agent(wallet, "evm")
    mint = _token(wallet, "evm", agent.public_key, 10**9)
    token = wallet.issue_session(agent.id).token
    thief = recipient("evm")
    calldata = (
        bytes.fromhex("a9059cbb")
        + bytes(12)
        + bytes.fromhex(thief[2:])
        + (10**9).to_bytes(32, "big")
    )
    attempts: list[Any] = [
        ContractCall(to=mint, data=calldata),
        {"type": "CONTRACT_CALL", "to": mint, "data": "0x" + calldata.hex()},
        {"type": "CONTRACT_CALL", "to": mint, "data": calldata.hex()},  # ASCII hex text
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInputError):
            wallet.send(token, attempt)
    assert wallet.list_transactions(agent_id=agent.id) == []
    assert _adapter(wallet, "evm").get_token_balance(thief, mint) == 0


# --------------------------------------------------------------------------- item 4


def test_item4_the_owner_sees_every_item_of_a_mixed_batch(wallet: Wallet) -> None:
    """Item 4: Batch[Transfer(friend, 11 SOL), TokenTransfer(all to thief), Approve(thief,
    2**64-1)]: the approval message lists all three in human units, with full addresses and
    the plan digest; the signature binds to that digest."""
    owner = owner_for("solana")
    agent = new_agent(wallet, "solana", owner=owner, funds=50 * SOL)
    mint = _token(wallet, "solana", agent.public_key, 5_000_000)
    wallet.add_policy(
        "ALLOWED_TOKENS", {"tokens": [{"address": mint, "symbol": "USDC", "decimals": 6}]}
    )
    token = wallet.issue_session(agent.id).token
    friend, thief = recipient("solana"), recipient("solana")
    _adapter(wallet, "solana").fund(friend, SOL)
    batch = Batch(
        requests=(
            Transfer(to=friend, amount=11 * SOL),
            TokenTransfer(token=mint, to=thief, amount=5_000_000),
            Approve(token=mint, spender=thief, amount=2**64 - 1),
        )
    )
    queued = wallet.send(token, batch)
    assert (queued.status, queued.tier) == ("QUEUED", "APPROVAL")
    message = wallet.approval_message(queued.id)
    digest = _meta(wallet, queued.id)["plan_digest"]
    assert f"Plan digest: {digest}" in message
    assert f"send 11 SOL from {agent.public_key} to {friend}" in message
    assert "transfer 5 USDC" in message and thief in message
    assert f"approve spender {thief} to spend 18446744073709.551615 USDC" in message
    assert "token account rent" in message  # the thief's new token account, paid by the agent
    requested = [e for e in all_audit(wallet, tx_id=queued.id) if e.event_type == "TX_REQUESTED"]
    assert requested[0].details["plan_digest"] == digest
    done = wallet.approve(queued.id, owner.sign(message))
    assert done.status == "CONFIRMED"
    assert _meta(wallet, queued.id)["approval"]["plan_digest"] == digest


def test_item4_a_signature_over_one_plan_is_refused_for_another(wallet: Wallet, chain: str) -> None:
    """Item 4: the owner's signature covers the plan digest. A signature made over the
    message of one plan is refused once the stored plan differs (AUTH_FAILED audited), and a
    plan changed after the approval is refused at signing (PLAN_MISMATCH), nothing sent.

    The stored plan is changed here with the wallet's own key (the row's MAC resealed), to
    reach these checks behind the MAC; an edit without the key is refused earlier, as
    tampering (tests/security/test_plan_and_mark_tamper.py)."""
    owner = owner_for(chain)
    agent = new_agent(wallet, chain, owner=owner)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = 11 * SOL if chain == "solana" else 2 * 10**18
    queued = wallet.send(token, Transfer(to=dest, amount=amount))
    signature = owner.sign(wallet.approval_message(queued.id))
    meta = _meta(wallet, queued.id)
    with wallet._db.write() as uow:  # someone swaps the stored plan's digest
        swapped = dict(meta, plan_digest="0x" + "ab" * 32)
        uow.transactions.update_fields(queued.id, metadata=swapped)
        wallet._pipeline._seal_tx(uow, queued.id)
        uow.commit()
    with pytest.raises(ApprovalError):
        wallet.approve(queued.id, signature)
    assert events_of(wallet, queued.id)[-1] == "AUTH_FAILED"
    with wallet._db.write() as uow:
        uow.transactions.update_fields(queued.id, metadata=meta)
        wallet._pipeline._seal_tx(uow, queued.id)
        uow.commit()
    # approved for this plan, then the plan is changed before execution: refused
    holder: dict[str, Any] = {}

    def tamper(stage: str, tx_id: str) -> None:
        if stage == "approved":
            m = _meta(holder["w"], tx_id)
            m["plan_digest"] = "0x" + "cd" * 32
            with holder["w"]._db.write() as uow:
                uow.transactions.update_fields(tx_id, metadata=m)
                holder["w"]._pipeline._seal_tx(uow, tx_id)
                uow.commit()

    holder["w"] = wallet
    wallet._pipeline.hooks = PipelineHooks(on_stage=tamper)
    result = wallet.approve(queued.id, owner.sign(wallet.approval_message(queued.id)))
    assert result.status == "FAILED"
    assert result.error is not None and result.error.startswith("PLAN_MISMATCH")
    assert int(_adapter(wallet, chain).get_balance(dest)) == 0


# --------------------------------------------------------------------------- item 5


def test_item5_unknown_program_calls_are_denied_by_default(wallet: Wallet) -> None:
    """Item 5: a value-0 call to the Address Lookup Table program is a program call effect;
    with no CONTRACT_WHITELIST naming the program it is denied and audited."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    call = ContractCall(
        to=ALT_PROGRAM,
        data=bytes(4) + bytes(8) + bytes([255]),  # CreateLookupTable
        accounts=(
            AccountSpec(pubkey=recipient("solana"), is_writable=True),
            AccountSpec(pubkey=agent.public_key, is_signer=True),
            AccountSpec(pubkey=agent.public_key, is_signer=True, is_writable=True),
            AccountSpec(pubkey="11111111111111111111111111111111"),
        ),
    )
    err = _denied(wallet, token, call)
    assert any(r.get("type") == "CODE" for r in err.reasons)
    assert err.rule == "CODE" and err.figure == {"contract": ALT_PROGRAM}
    assert "no CONTRACT_WHITELIST" in (wallet.get_transaction(err.tx_id or "").error or "")


def test_item5_unknown_contract_calls_are_denied_by_default(wallet: Wallet) -> None:
    """Item 5 on EVM: unknown calldata is a contract call effect, denied unless whitelisted;
    ``WalletConfig.allow_unlisted_contracts`` is off by default."""
    assert wallet.config.allow_unlisted_contracts is False
    agent = new_agent(wallet, "evm")
    token = wallet.issue_session(agent.id).token
    err = _denied(wallet, token, ContractCall(to=recipient("evm"), data="0x18160ddd"))
    assert err.rule == "CODE"
    assert "no CONTRACT_WHITELIST" in (wallet.get_transaction(err.tx_id or "").error or "")


# --------------------------------------------------------------------------- item 6


def test_item6_approvals_count_against_the_token_budget(wallet: Wallet, chain: str) -> None:
    """Item 6: each approval counts its full allowance against the token's daily budget and
    the session's total when granted: of 5 x Approve(thief, 100) under a 100/day limit only
    the first passes; the second is denied (POLICY_VIOLATION)."""
    agent = new_agent(wallet, chain)
    mint = _token(wallet, chain, agent.public_key, 10_000)
    wallet.add_policy("SPENDING_LIMIT", {"asset": mint, "daily_total": "100"}, agent_id=agent.id)
    wallet.add_policy("APPROVE_AMOUNT_LIMIT", {"max_amount": "100"}, agent_id=agent.id)
    issued = wallet.issue_session(agent.id)
    thief = recipient(chain)
    first = wallet.send(issued.token, Approve(token=mint, spender=thief, amount=100))
    assert first.status == "CONFIRMED", first.error
    key = mint.lower() if chain == "evm" else mint
    assert wallet.get_session(issued.session_id).usage.total(key) == 100
    for _ in range(4):
        err = _denied(wallet, issued.token, Approve(token=mint, spender=thief, amount=100))
        assert any(r.get("type") == "SPENDING_LIMIT" for r in err.reasons)


@pytest.mark.parametrize("amount", [101, 2**64 - 2, 2**64 - 1])
def test_item6_unlimited_is_above_the_remaining_budget(
    wallet: Wallet, chain: str, amount: int
) -> None:
    """Item 6: "unlimited" is no magic number: above APPROVE_AMOUNT_LIMIT's max it is refused,
    2**64 - 2 as much as 2**64 - 1."""
    agent = new_agent(wallet, chain)
    mint = _token(wallet, chain, agent.public_key, 10_000)
    wallet.add_policy("APPROVE_AMOUNT_LIMIT", {"max_amount": "100"}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token
    err = _denied(wallet, token, Approve(token=mint, spender=recipient(chain), amount=amount))
    assert any(r.get("type") == "APPROVE_AMOUNT_LIMIT" for r in err.reasons)


# --------------------------------------------------------------------------- item 7


def test_item7_token_account_rent_counts_against_native_budgets(wallet: Wallet) -> None:
    """Item 7: a one-unit token transfer to a fresh wallet makes the agent pay a token
    account's rent: that is native spending, and a 0.001 SOL per-transaction limit denies it."""
    agent = new_agent(wallet, "solana")
    mint = _token(wallet, "solana", agent.public_key, 1_000)
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"per_transaction": str(SOL // 1000), "daily_total": str(SOL // 1000)},
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id).token
    err = _denied(wallet, token, TokenTransfer(token=mint, to=recipient("solana"), amount=1))
    assert any(
        "native" in str(r.get("figures", {}).get("asset", "")) for r in err.reasons
    ) or "SOL" in str(err)


def test_item7_rent_is_charged_to_the_session(wallet: Wallet) -> None:
    """Item 7: the session's native total is charged the rent the agent pays."""
    agent = new_agent(wallet, "solana")
    mint = _token(wallet, "solana", agent.public_key, 1_000)
    issued = wallet.issue_session(agent.id)
    result = wallet.send(issued.token, TokenTransfer(token=mint, to=recipient("solana"), amount=1))
    assert result.status == "CONFIRMED", result.error
    usage = wallet.get_session(issued.session_id).usage
    assert usage.total("native") >= TOKEN_RENT
    assert usage.total(mint) == 1


def test_item7_a_blacklisted_token_account_is_not_reached_through_its_owner(
    wallet: Wallet,
) -> None:
    """Item 7: blacklisting the thief's token account refuses a transfer that names the
    thief's wallet (the account credited is decoded from the transaction)."""
    from solders.pubkey import Pubkey

    from waiaas.chains.solana import spl

    agent = new_agent(wallet, "solana")
    mint = _token(wallet, "solana", agent.public_key, 1_000)
    thief = recipient("solana")
    account = str(spl.associated_token_address(Pubkey.from_string(thief), Pubkey.from_string(mint)))
    wallet.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [account], "mode": "blacklist"}, agent_id=agent.id
    )
    token = wallet.issue_session(agent.id).token
    err = _denied(wallet, token, TokenTransfer(token=mint, to=thief, amount=1))
    assert err.figure == {"address": account}  # the refused party of this very request
    assert account in (wallet.get_transaction(err.tx_id or "").error or "")


# --------------------------------------------------------------------------- item 8


def test_item8_a_forwarder_cannot_deliver_to_a_blacklisted_address(wallet: Wallet) -> None:
    """Item 8: a whitelisted contract called with calldata that names a blacklisted address
    (a forwarder's real recipient) is denied: the blacklist looks inside the calldata."""
    agent = new_agent(wallet, "evm")
    forwarder, thief = recipient("evm"), recipient("evm")
    wallet.add_policy("CONTRACT_WHITELIST", {"contracts": [forwarder]}, agent_id=agent.id)
    wallet.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [thief], "mode": "blacklist"}, agent_id=agent.id
    )
    token = wallet.issue_session(agent.id).token
    calldata = bytes.fromhex("6e1d0f4a") + bytes(12) + bytes.fromhex(thief[2:])
    err = _denied(wallet, token, ContractCall(to=forwarder, data=calldata, value=10**15))
    assert thief.lower() in str(err.figure).lower()
    assert thief.lower() in (wallet.get_transaction(err.tx_id or "").error or "").lower()


def test_item5_a_whitelisted_program_that_moves_sol_is_caught_by_simulation(
    tmp_path: Path,
) -> None:
    """Item 5, the second lock: even with the Address Lookup Table program whitelisted, a
    value-0 call that makes the agent pay a table's rent is an outflow its effects do not
    explain; simulation refuses it before signing (FAILED SIMULATION_MISMATCH, TX_FAILED
    audited, nothing signed, nothing moved)."""
    import struct

    from solders.litesvm import LiteSVM
    from solders.pubkey import Pubkey

    from waiaas.chains.base import SupportsBalanceSimulation
    from waiaas.chains.evm import EvmAdapter
    from waiaas.chains.solana import SolanaAdapter

    svm = LiteSVM()
    svm.warp_to_slot(10)
    solana = SolanaAdapter.local(svm=svm)
    if not isinstance(solana, SupportsBalanceSimulation):
        pytest.skip("this adapter build cannot simulate balance changes")
    chains: list[Any] = [solana, EvmAdapter.local()]
    with local_wallet(tmp_path, clock=FrozenClock(), chains=chains) as w:
        agent = new_agent(w, "solana")
        w.add_policy("CONTRACT_WHITELIST", {"contracts": [ALT_PROGRAM]}, agent_id=agent.id)
        token = w.issue_session(agent.id).token
        authority = Pubkey.from_string(agent.public_key)
        table, bump = Pubkey.find_program_address(
            [bytes(authority), struct.pack("<Q", 0)], Pubkey.from_string(ALT_PROGRAM)
        )
        before = w.balance(agent.id)
        call = ContractCall(
            to=ALT_PROGRAM,
            data=struct.pack("<I", 0) + struct.pack("<Q", 0) + bytes([bump]),
            accounts=(
                AccountSpec(pubkey=str(table), is_writable=True),
                AccountSpec(pubkey=agent.public_key, is_signer=True),
                AccountSpec(pubkey=agent.public_key, is_signer=True, is_writable=True),
                AccountSpec(pubkey="11111111111111111111111111111111"),
            ),
        )
        result = w.send(token, call)
        assert result.status == "FAILED"
        assert result.error is not None and result.error.startswith("SIMULATION_MISMATCH")
        events = events_of(w, result.id)
        assert events[-1] == "TX_FAILED" and "TX_SIGNED" not in events
        failed = [e for e in all_audit(w, tx_id=result.id) if e.event_type == "TX_FAILED"]
        assert failed[0].details["error"] == "SIMULATION_MISMATCH"
        assert w.balance(agent.id) == before


def test_item4_a_new_owner_signs_the_same_complete_message(wallet: Wallet, chain: str) -> None:
    """Item 4 after an owner change: the fresh approval request still names every effect and
    the plan digest (the text was fixed when the approval was first requested)."""
    first, second = owner_for(chain), owner_for(chain)
    agent = new_agent(wallet, chain, owner=first)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = 11 * SOL if chain == "solana" else 2 * 10**18
    queued = wallet.send(token, Transfer(to=dest, amount=amount))
    before = wallet.approval_message(queued.id)
    wallet.set_owner(agent.id, second.address)
    after = wallet.approval_message(queued.id)
    digest = _meta(wallet, queued.id)["plan_digest"]
    for message in (before, after):
        assert f"Plan digest: {digest}" in message
        assert f"to {dest}" in message and "This transaction does exactly" in message
    assert second.address in after
    done = wallet.approve(queued.id, second.sign(after))
    assert done.status == "CONFIRMED"
