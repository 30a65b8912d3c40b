"""Agent lifecycle through the Wallet facade: create, suspend, resume, terminate, owners and
key rotation, on real chains and a real keystore."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    SOL,
    TIER_AMOUNTS,
    EvmOwner,
    SolanaOwner,
    all_audit,
    evm_address,
    new_agent,
    recipient,
    sol_address,
)
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    InvalidInputError,
    StateError,
    TokenRevokedError,
)
from waiaas.testing import FrozenClock, fund
from waiaas.types import AgentStatus, Transfer
from waiaas.wallet import Wallet


def test_create_agent_activates_and_audits(wallet: Wallet, chain: str) -> None:
    """A new agent goes CREATING -> ACTIVE with AGENT_CREATED then AGENT_ACTIVATED audited,
    its key is in the keystore, and its public key is in the chain's address format."""
    agent = wallet.create_agent("  trader  ", chain)
    assert agent.status == AgentStatus.ACTIVE
    assert agent.name == "trader"
    assert agent.chain == chain
    assert agent.owner_address is None
    assert [e.event_type for e in all_audit(wallet, agent_id=agent.id)] == [
        "AGENT_CREATED",
        "AGENT_ACTIVATED",
    ]
    assert wallet._keystore.has_key(agent.id)
    assert wallet._keystore.public_key(agent.id) == agent.public_key
    adapter = wallet.network_adapter(agent.chain, agent.network)
    assert adapter.validate_address(agent.public_key) == agent.public_key
    with wallet._keystore.use_key(agent.id) as secret:
        assert adapter.address_of(bytes(secret)) == agent.public_key
    if chain == "evm":
        from waiaas.keystore.keys import to_checksum_address

        assert to_checksum_address(agent.public_key.lower()) == agent.public_key
    else:
        from waiaas.keystore.keys import b58decode

        assert len(b58decode(agent.public_key)) == 32
    assert wallet.get_agent(agent.id) == agent
    assert [a.id for a in wallet.list_agents(status="ACTIVE")] == [agent.id]


IDS = {
    "with-key": "01900000-0000-7000-8000-00000000000a",
    "no-key": "01900000-0000-7000-8000-00000000000b",
}


def test_agent_creation_interrupted_after_key_is_finished_on_open(tmp_path: object) -> None:
    """An agent left CREATING with its key stored is activated by the next open; one whose
    key never reached the keystore is TERMINATED. Both are audited."""
    from pathlib import Path

    from waiaas.db.tables import AgentRow
    from waiaas.testing import local_chains, local_wallet

    directory = Path(str(tmp_path))
    clock = FrozenClock()
    chains = local_chains()
    with local_wallet(directory, clock=clock, chains=chains) as wallet:
        adapter = wallet.network_adapter("solana", "localnet")
        rows = []
        for name, store_key in (("with-key", True), ("no-key", False)):
            secret, public = adapter.generate_secret()
            row = AgentRow(
                id=IDS[name],
                name=name,
                chain="solana",
                network="localnet",
                public_key=public,
                status="CREATING",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
            with wallet._db.write() as uow:
                uow.agents.add(row)
                uow.commit()
            if store_key:
                wallet._keystore.add_key(row.id, "solana", secret, public)
            rows.append(row.id)
    with local_wallet(directory, clock=clock, chains=chains) as wallet:
        assert wallet.get_agent(IDS["with-key"]).status == AgentStatus.ACTIVE
        assert wallet.get_agent(IDS["no-key"]).status == AgentStatus.TERMINATED
        assert [e.event_type for e in all_audit(wallet, agent_id=IDS["with-key"])] == [
            "AGENT_ACTIVATED"
        ]
        assert [e.event_type for e in all_audit(wallet, agent_id=IDS["no-key"])] == [
            "AGENT_TERMINATED"
        ]


def test_suspend_and_resume(wallet: Wallet) -> None:
    """A suspended agent cannot transact or get sessions; resumed, it can again with a new
    session (its old ones were revoked by the suspension)."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    dest = sol_address()
    suspended = wallet.suspend_agent(agent.id, reason="looks odd")
    assert suspended.status == AgentStatus.SUSPENDED
    assert suspended.suspension_reason == "looks odd"
    assert suspended.suspended_at is not None
    with pytest.raises(TokenRevokedError):  # suspending revoked the agent's sessions
        wallet.send(token, Transfer(to=dest, amount=SOL // 20))
    with pytest.raises(AgentNotActiveError) as info:
        wallet.issue_session(agent.id)
    assert info.value.status == "SUSPENDED"
    assert wallet.list_transactions(agent_id=agent.id) == []
    resumed = wallet.resume_agent(agent.id)
    assert resumed.status == AgentStatus.ACTIVE
    assert resumed.suspension_reason is None
    with pytest.raises(AuthError):  # the suspension revoked it; resuming does not revive it
        wallet.send(token, Transfer(to=dest, amount=SOL // 20))
    token = wallet.issue_session(agent.id).token
    assert wallet.send(token, Transfer(to=dest, amount=SOL // 20)).status == "CONFIRMED"
    kinds = [e.event_type for e in all_audit(wallet, agent_id=agent.id)]
    assert kinds.count("AGENT_SUSPENDED") == 1
    assert kinds.count("AGENT_RESUMED") == 1
    suspended_row = next(
        e for e in all_audit(wallet, agent_id=agent.id) if e.event_type == "AGENT_SUSPENDED"
    )
    assert suspended_row.details["reason"] == "looks odd"


def test_terminate_revokes_cancels_and_keeps_history(wallet: Wallet) -> None:
    """Terminating revokes the agent's sessions, cancels its PENDING/QUEUED transactions,
    archives the key, refuses new sessions and sends, and keeps its history."""
    owner = SolanaOwner()
    agent = new_agent(wallet, "solana", owner=owner)
    issued = wallet.issue_session(agent.id)
    dest = sol_address()
    done = wallet.send(issued.token, Transfer(to=dest, amount=TIER_AMOUNTS["solana"]["INSTANT"]))
    delayed = wallet.send(issued.token, Transfer(to=dest, amount=TIER_AMOUNTS["solana"]["DELAY"]))
    waiting = wallet.send(
        issued.token, Transfer(to=dest, amount=TIER_AMOUNTS["solana"]["APPROVAL"])
    )
    assert (done.status, delayed.status, waiting.status) == ("CONFIRMED", "QUEUED", "QUEUED")

    terminated = wallet.terminate_agent(agent.id)
    assert terminated.status == AgentStatus.TERMINATED
    assert wallet.get_transaction(delayed.id).status == "CANCELLED"
    assert wallet.get_transaction(waiting.id).status == "CANCELLED"
    assert wallet.get_transaction(done.id).status == "CONFIRMED"
    assert wallet.get_session(issued.session_id).status == "revoked"
    assert not wallet._keystore.has_key(agent.id)
    assert wallet._keystore.archived_keys(agent.id)
    with pytest.raises((AgentNotActiveError, StateError)):
        wallet.issue_session(agent.id)
    with pytest.raises((AuthError, AgentNotActiveError)):
        wallet.send(issued.token, Transfer(to=dest, amount=SOL // 20))
    assert {t.id for t in wallet.list_transactions(agent_id=agent.id)} == {
        done.id,
        delayed.id,
        waiting.id,
    }
    row = next(
        e for e in all_audit(wallet, agent_id=agent.id) if e.event_type == "AGENT_TERMINATED"
    )
    assert row.details == {"sessions_revoked": 1, "transactions_cancelled": 2}
    # the clock moving on does not resurrect anything
    wallet.clock.advance(10_000)  # type: ignore[attr-defined]
    wallet.process_due()
    assert wallet.get_transaction(delayed.id).status == "CANCELLED"


def test_set_owner_evm_checksum_and_solana_base58(wallet: Wallet) -> None:
    """An EVM owner is stored EIP-55 checksummed (lower- or upper-case input accepted); a
    Solana owner exactly; None clears it; each change is audited."""
    agent = new_agent(wallet, "evm", funds=0)
    evm_owner = evm_address()
    assert wallet.set_owner(agent.id, evm_owner.lower()).owner_address == evm_owner
    assert wallet.set_owner(agent.id, "0x" + evm_owner[2:].upper()).owner_address == evm_owner
    sol_owner = sol_address()
    assert wallet.set_owner(agent.id, sol_owner).owner_address == sol_owner
    assert wallet.set_owner(agent.id, None).owner_address is None
    changes = [
        e.details.get("owner_address")  # cleared: no key (audit details hold no nulls)
        for e in all_audit(wallet, agent_id=agent.id)
        if e.event_type == "AGENT_OWNER_SET"
    ]
    assert changes == [evm_owner, evm_owner, sol_owner, None]


@pytest.mark.parametrize(
    "bad",
    [
        "0x12345",  # too short
        "0xZZ08400098527886E0F7030069857D2E4169EE7a",  # not hex
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",  # wrong mixed-case checksum
        "0OIl" + "1" * 40,  # not base58
        "1111",  # base58 but not 32 bytes
        "",
        "   ",
    ],
)
def test_set_owner_refuses_invalid_addresses(wallet: Wallet, bad: str) -> None:
    """An address that is neither a valid EVM address nor a Solana key is refused, and the
    owner stays as it was."""
    owner = EvmOwner()
    agent = new_agent(wallet, "solana", owner=owner, funds=0)
    with pytest.raises(InvalidInputError) as info:
        wallet.set_owner(agent.id, bad)
    if bad.strip():
        assert info.value.field == "owner_address"
    assert wallet.get_agent(agent.id).owner_address == owner.address


def test_rotate_key_then_send_from_the_new_key(wallet: Wallet, chain: str) -> None:
    """Rotation gives a new public key (KEY_ROTATED with old and new), the old key is
    archived, and after funding the new address sends work from it."""
    agent = new_agent(wallet, chain, funds=0)
    old = agent.public_key
    rotated = wallet.rotate_key(agent.id)
    assert rotated.public_key != old
    assert wallet._keystore.public_key(agent.id) == rotated.public_key
    row = next(e for e in all_audit(wallet, agent_id=agent.id) if e.event_type == "KEY_ROTATED")
    assert row.details == {"old_public_key": old, "new_public_key": rotated.public_key}
    fund(wallet, agent.id, 10**19 if chain == "evm" else 10 * SOL)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["INSTANT"]
    result = wallet.send(token, Transfer(to=dest, amount=amount))
    assert result.status == "CONFIRMED"
    adapter = wallet.network_adapter(agent.chain, agent.network)
    assert adapter.get_balance(dest) == amount
    assert adapter.get_balance(old) == 0


def test_rotate_key_refused_while_transactions_are_in_flight(wallet: Wallet) -> None:
    """A key cannot be rotated while the agent has a queued transaction."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    queued = wallet.send(token, Transfer(to=sol_address(), amount=TIER_AMOUNTS["solana"]["DELAY"]))
    assert queued.status == "QUEUED"
    with pytest.raises(StateError):
        wallet.rotate_key(agent.id)
    assert wallet.get_agent(agent.id).public_key == agent.public_key


def test_revoked_session_token_is_refused(wallet: Wallet) -> None:
    """A revoked session's token is refused (TokenRevokedError) and the refusal audited."""
    agent = new_agent(wallet, "solana")
    issued = wallet.issue_session(agent.id)
    wallet.revoke_session(issued.session_id)
    with pytest.raises(TokenRevokedError):
        wallet.send(issued.token, Transfer(to=sol_address(), amount=SOL // 20))
    failures = [e for e in all_audit(wallet) if e.event_type == "AUTH_FAILED"]
    assert failures and failures[-1].session_id == issued.session_id
    assert wallet.list_transactions(agent_id=agent.id) == []


class _Interrupted(Exception):
    """Raised by a stage hook to stop a request right after it was admitted."""


def test_terminate_cancels_a_pending_transaction(tmp_path: Path) -> None:
    """A request interrupted right after admission is left PENDING; terminating the agent
    cancels it, and a later process_due() does not execute it."""
    from waiaas.pipeline.engine import PipelineHooks
    from waiaas.testing import local_wallet

    interrupt = {"on": True}

    def stop_after_admission(stage: str, tx_id: str) -> None:
        if stage == "admitted" and interrupt["on"]:
            raise _Interrupted(tx_id)

    hooks = PipelineHooks(on_stage=stop_after_admission)
    with local_wallet(tmp_path, clock=FrozenClock(), hooks=hooks) as wallet:
        wallet._pipeline.presign = False  # the claim path: admission leaves the row PENDING
        agent = new_agent(wallet, "evm")
        token = wallet.issue_session(agent.id).token
        dest = recipient("evm")
        with pytest.raises(_Interrupted) as info:
            wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS["evm"]["INSTANT"]))
        tx_id = str(info.value)
        assert wallet.get_transaction(tx_id).status == "PENDING"
        wallet.terminate_agent(agent.id)
        assert wallet.get_transaction(tx_id).status == "CANCELLED"
        interrupt["on"] = False
        wallet.process_due()
        assert wallet.get_transaction(tx_id).status == "CANCELLED"
        assert wallet.network_adapter("evm", "local").get_balance(dest) == 0
