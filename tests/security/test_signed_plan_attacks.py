"""Issue 9: policies judge exactly what is signed. One test per reproduced attack (numbered as
in the issue), each showing the attack refused and the audit row it leaves, on both chains
wherever the chain has the feature."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    TIER_AMOUNTS,
    all_audit,
    events_of,
    new_agent,
    owner_for,
    recipient,
)
from waiaas.errors import InvalidInputError
from waiaas.notify.testing import RecordingNotifier
from waiaas.pipeline.engine import PipelineHooks
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import ContractCall, TokenTransfer, Transfer
from waiaas.wallet import Wallet

NETWORK = {"solana": "localnet", "evm": "local"}


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on fresh local chains, frozen clock."""
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RecordingNotifier()) as w:
        yield w


@pytest.fixture(params=["solana", "evm"])
def chain(request: pytest.FixtureRequest) -> str:
    """Each chain family in turn."""
    return str(request.param)


def _balance(wallet: Wallet, chain: str, address: str) -> int:
    return int(wallet.network_adapter(chain, NETWORK[chain]).get_balance(address))


def _due(wallet: Wallet, seconds: int | None = None) -> None:
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(wallet.config.delay_seconds if seconds is None else seconds)
    wallet.process_due()


class _Crash(BaseException):
    """Stands for the process dying at a stage boundary."""


# --------------------------------------------------------------------------- item 1 / 2


@pytest.mark.parametrize(
    "text",
    [
        "a9059cbb" + "00" * 64,  # bare hex: would have been guessed to be hex
        "0x12 34",  # whitespace inside hex
        "0xabc",  # odd number of digits
        "transfer(thief)",  # text: never taken as its UTF-8 bytes
    ],
)
def test_item1_calldata_given_as_text_is_refused(wallet: Wallet, chain: str, text: str) -> None:
    """Item 1: a string ``data`` must be 0x-hex; anything else is an InvalidInputError naming
    ``data`` before any transaction is recorded (the refusal itself is audited and counted:
    one REQUEST_REFUSED row)."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    before = len(all_audit(wallet))
    with pytest.raises(InvalidInputError) as info:
        wallet.send(token, {"type": "CONTRACT_CALL", "to": recipient(chain), "data": text})
    assert "data" in str(info.value)
    assert wallet.list_transactions(agent_id=agent.id) == []
    added = all_audit(wallet)[before:]
    assert [(e.event_type, e.details["kind"]) for e in added] == [("REQUEST_REFUSED", "malformed")]


def test_item2_non_utf8_calldata_is_stored_losslessly(wallet: Wallet) -> None:
    """Item 2: calldata that is not UTF-8 is stored as 0x-hex and read back byte for byte
    (the stored request is what later stages execute)."""
    agent = new_agent(wallet, "evm")
    token = wallet.issue_session(agent.id).token
    data = bytes([0x18, 0x16, 0x0D, 0xDD, 0xFF, 0x80, 0x00])
    call = ContractCall(to=recipient("evm"), data=data)
    dumped = call.model_dump(mode="json")
    assert dumped["data"] == "0x" + data.hex()
    assert ContractCall.model_validate(dumped).data == data
    try:
        tx_id = wallet.send(token, call).id
    except Exception as exc:  # a default-deny may refuse the call; the row must still be exact
        tx_id = getattr(exc, "tx_id", None)
        assert tx_id is not None, exc
    stored = wallet.get_transaction(tx_id).request
    assert stored is not None and stored["data"] == "0x" + data.hex()


# --------------------------------------------------------------------------- item 9


def test_item9_delay_that_now_needs_approval_waits_for_the_owner(
    wallet: Wallet, chain: str
) -> None:
    """Item 9: the owner lowers ``delay_max`` during a DELAY's cooldown; at the end of the
    cooldown the transaction is judged again in full and moves to the APPROVAL path (audited
    TX_QUEUED with ``escalated_from``); nothing moves until the owner signs."""
    owner = owner_for(chain)
    agent = new_agent(wallet, chain, owner=owner)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["DELAY"]
    queued = wallet.send(token, Transfer(to=dest, amount=amount))
    assert (queued.status, queued.tier) == ("QUEUED", "DELAY")
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"instant_max": "1", "notify_max": "2", "delay_max": str(amount - 1)},
        agent_id=agent.id,
    )
    _due(wallet)
    tx = wallet.get_transaction(queued.id)
    assert (tx.status, tx.tier) == ("QUEUED", "APPROVAL")
    assert _balance(wallet, chain, dest) == 0
    rows = [e for e in all_audit(wallet, tx_id=queued.id) if e.event_type == "TX_QUEUED"]
    assert rows[-1].details["escalated_from"] == "DELAY"
    assert rows[-1].details["tier"] == "APPROVAL"
    _due(wallet)  # more passes do not execute it either
    assert wallet.get_transaction(queued.id).status == "QUEUED"
    message = wallet.approval_message(queued.id)
    done = wallet.approve(queued.id, owner.sign(message))
    assert done.status == "CONFIRMED"
    assert _balance(wallet, chain, dest) == amount


def test_item9_delay_that_now_needs_approval_without_owner_fails(
    wallet: Wallet, chain: str
) -> None:
    """Item 9, owner-less agent: the stricter tier cannot be met, so the re-check denies it:
    FAILED with POLICY_DENIED and a TX_FAILED audit row; nothing moves."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    dest = recipient(chain)
    amount = TIER_AMOUNTS[chain]["DELAY"]
    queued = wallet.send(token, Transfer(to=dest, amount=amount))
    wallet.add_policy(
        "SPENDING_LIMIT", {"instant_max": "1", "delay_max": str(amount - 1)}, agent_id=agent.id
    )
    _due(wallet)
    tx = wallet.get_transaction(queued.id)
    assert tx.status == "FAILED"
    assert tx.error is not None and tx.error.startswith("POLICY_DENIED")
    assert events_of(wallet, queued.id)[-1] == "TX_FAILED"
    assert _balance(wallet, chain, dest) == 0


def test_item9_resumed_instant_that_now_needs_delay_is_queued(tmp_path: Path, chain: str) -> None:
    """Item 9, resumed work: an INSTANT request interrupted after admission whose policy now
    asks for DELAY is queued for the cooldown when resumed, not executed at once."""

    def stop(stage: str, tx_id: str) -> None:
        if stage == "admitted":
            raise _Crash

    with local_wallet(tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=stop)) as w:
        w._pipeline.presign = False  # the claim path: admission leaves the row PENDING
        agent = new_agent(w, chain)
        token = w.issue_session(agent.id).token
        dest = recipient(chain)
        amount = TIER_AMOUNTS[chain]["INSTANT"]
        with pytest.raises(_Crash):
            w.send(token, Transfer(to=dest, amount=amount))
        (row,) = w.list_transactions(agent_id=agent.id)
        assert (row.status, row.tier) == ("PENDING", "INSTANT")
        w.add_policy(
            "SPENDING_LIMIT",
            {"instant_max": "1", "notify_max": "2", "delay_max": str(10**30)},
            agent_id=agent.id,
        )
        w.process_due()
        tx = w.get_transaction(row.id)
        assert (tx.status, tx.tier) == ("QUEUED", "DELAY")
        assert _balance(w, chain, dest) == 0
        _due(w)
        assert w.get_transaction(row.id).status == "CONFIRMED"
        assert _balance(w, chain, dest) == amount


# --------------------------------------------------------------------------- item 10


def test_item10_bytes_signed_before_the_kill_switch_are_never_sent(
    tmp_path: Path, chain: str
) -> None:
    """Item 10: the kill switch turns on after the transaction was signed and before it was
    sent: the last check (in the transaction that would record SUBMITTED) cancels it; the
    bytes never reach the chain; TX_CANCELLED names the kill switch."""
    holder: dict[str, Wallet] = {}
    recorded: dict[str, Any] = {}

    def kill(stage: str, tx_id: str) -> None:
        if stage == "signed":
            pipeline = holder["w"]._pipeline
            row = pipeline.get_row(tx_id)
            recorded.update(pipeline._meta(row)["signed"], hash=row.tx_hash)
            holder["w"].kill_switch("stop everything")

    with local_wallet(tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=kill)) as w:
        w._pipeline.presign = False  # the claim path: signed, recorded, then cleared
        holder["w"] = w
        agent = new_agent(w, chain)
        token = w.issue_session(agent.id).token
        dest = recipient(chain)
        result = w.send(token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["INSTANT"]))
        assert result.status == "CANCELLED"
        assert result.error is not None and result.error.startswith("KILL_SWITCH_ACTIVE")
        events = events_of(w, result.id)
        assert "TX_SIGNED" in events and "TX_SUBMITTED" not in events
        assert events[-1] == "TX_CANCELLED"
        assert _balance(w, chain, dest) == 0
        # the cancelled row no longer holds the bytes (nothing can send them now); the
        # bytes recorded before the switch are not on the chain
        final = w._pipeline._meta(w._pipeline.get_row(result.id))
        assert "raw_b64" not in str(final) and "plan" not in final
        signed = recorded
        adapter = w.network_adapter(chain, NETWORK[chain])
        from waiaas.chains.base import ChainTxState
        from waiaas.pipeline.records import signed_from_json

        status = adapter.get_status(signed_from_json(chain, signed))
        assert status.state in (ChainTxState.NOT_FOUND, ChainTxState.DROPPED)


def test_item10_recovery_holds_unsent_bytes_while_the_switch_is_on(
    tmp_path: Path, chain: str
) -> None:
    """Item 10, recovery: a row left EXECUTING (signed, never sent) while the kill switch is
    on is held by ``process_due`` (one TX_RECOVERED "held" row, nothing sent); after
    ``release_kill_switch()`` it is judged again in full: its session was revoked by the kill
    switch, so it FAILS and the bytes never go out."""

    def crash(stage: str, tx_id: str) -> None:
        if stage == "signed":
            raise _Crash

    with local_wallet(tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=crash)) as w:
        w._pipeline.presign = False  # the claim path: signed, recorded, then cleared
        agent = new_agent(w, chain)
        token = w.issue_session(agent.id).token
        dest = recipient(chain)
        with pytest.raises(_Crash):
            w.send(token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["INSTANT"]))
        (row,) = w.list_transactions(agent_id=agent.id)
        assert row.status == "EXECUTING"
        w.kill_switch("incident")
        w.process_due()
        w.process_due()
        assert w.get_transaction(row.id).status == "EXECUTING"
        held = [e for e in all_audit(w, tx_id=row.id) if e.event_type == "TX_RECOVERED"]
        assert [e.details["action"] for e in held] == ["held"]
        assert held[0].details["reason"] == "KILL_SWITCH_ACTIVE"
        assert _balance(w, chain, dest) == 0
        w.release_kill_switch(resume_agents=True)
        w.process_due()
        tx = w.get_transaction(row.id)
        assert tx.status == "FAILED"
        assert tx.error is not None and tx.error.startswith("SESSION_ENDED")
        assert _balance(w, chain, dest) == 0


def test_item10_held_bytes_of_a_suspended_agent_are_never_sent(tmp_path: Path, chain: str) -> None:
    """Item 10, the other side: bytes held because the agent was suspended are not sent
    after it is resumed either: the suspension revoked the session that asked for them, and
    a resumption never revives a session, so the full re-check FAILS them (SESSION_ENDED)."""

    def crash(stage: str, tx_id: str) -> None:
        if stage == "signed":
            raise _Crash

    with local_wallet(tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=crash)) as w:
        w._pipeline.presign = False  # the claim path: signed, recorded, then cleared
        agent = new_agent(w, chain)
        token = w.issue_session(agent.id).token
        dest = recipient(chain)
        amount = TIER_AMOUNTS[chain]["INSTANT"]
        with pytest.raises(_Crash):
            w.send(token, Transfer(to=dest, amount=amount))
        (row,) = w.list_transactions(agent_id=agent.id)
        w.suspend_agent(agent.id)
        w.process_due()
        assert w.get_transaction(row.id).status == "EXECUTING"
        assert _balance(w, chain, dest) == 0
        w.resume_agent(agent.id)
        w.process_due()
        tx = w.get_transaction(row.id)
        assert tx.status == "FAILED"
        assert tx.error is not None and tx.error.startswith("SESSION_ENDED")
        assert _balance(w, chain, dest) == 0
        assert events_of(w, row.id).count("TX_SIGNED") == 1


# --------------------------------------------------------------------------- item 3


class _Oracle:
    """USD prices per whole unit: ``prices[asset]`` (missing = unknown)."""

    def __init__(self, prices: dict[str, Decimal]) -> None:
        self.prices = prices

    def price_usd(self, chain: str, asset: str) -> Decimal | None:
        return self.prices.get(asset)


def _usd_wallet(tmp_path: Path, oracle: _Oracle) -> Any:
    return local_wallet(tmp_path, clock=FrozenClock(), price_oracle=oracle)


USD_TIERS = {"instant_max_usd": "10", "notify_max_usd": "100", "delay_max_usd": "1000"}


@pytest.mark.parametrize("stated", [None, 6])
def test_item3_token_tier_uses_the_chains_decimals_not_the_agents(
    tmp_path: Path, stated: int | None
) -> None:
    """Item 3: a $1M ERC-20 transfer is APPROVAL whether or not the agent states decimals
    (they come from the token's ``decimals()``); the queued row's audit says APPROVAL."""
    oracle = _Oracle({})
    with _usd_wallet(tmp_path, oracle) as w:
        owner = owner_for("evm")
        agent = new_agent(w, "evm", owner=owner)
        adapter = w.network_adapter("evm", "local")
        mint = adapter.create_test_token(decimals=6)
        adapter.mint_test_token(mint, agent.public_key, 10**13)
        oracle.prices[w.network_adapter("evm", "local").validate_address(mint)] = Decimal(1)
        w.add_policy("SPENDING_LIMIT", {"asset": "*", **USD_TIERS}, agent_id=agent.id)
        token = w.issue_session(agent.id).token
        result = w.send(
            token, TokenTransfer(token=mint, to=recipient("evm"), amount=10**12, decimals=stated)
        )
        assert (result.status, result.tier) == ("QUEUED", "APPROVAL")
        queued = [e for e in all_audit(w, tx_id=result.id) if e.event_type == "TX_QUEUED"]
        assert queued[-1].details["tier"] == "APPROVAL"


def test_item3_contradicting_decimals_are_refused(tmp_path: Path) -> None:
    """Item 3: decimals that contradict the chain are refused before anything is recorded."""
    with _usd_wallet(tmp_path, _Oracle({})) as w:
        agent = new_agent(w, "evm")
        adapter = w.network_adapter("evm", "local")
        mint = adapter.create_test_token(decimals=6)
        token = w.issue_session(agent.id).token
        with pytest.raises(InvalidInputError) as info:
            w.send(token, TokenTransfer(token=mint, to=recipient("evm"), amount=1, decimals=18))
        assert info.value.field == "decimals"
        assert w.list_transactions(agent_id=agent.id) == []


@pytest.mark.parametrize("price", [Decimal(0), Decimal(-5), Decimal("NaN"), Decimal("Infinity")])
def test_item3_a_zero_or_broken_price_is_unknown(
    tmp_path: Path, chain: str, price: Decimal
) -> None:
    """Item 3: an oracle price of 0 (or negative, NaN, infinite) is unknown, never "free":
    10 SOL / 1 ETH under a $100 cap goes to the owner (unpriced_tier APPROVAL), not INSTANT."""
    with _usd_wallet(tmp_path, _Oracle({"native": price})) as w:
        owner = owner_for(chain)
        agent = new_agent(w, chain, owner=owner)
        w.add_policy(
            "SPENDING_LIMIT", {"per_transaction_usd": "100", **USD_TIERS}, agent_id=agent.id
        )
        token = w.issue_session(agent.id).token
        amount = 10 * 10**9 if chain == "solana" else 10**18
        result = w.send(token, Transfer(to=recipient(chain), amount=amount))
        assert (result.status, result.tier) == ("QUEUED", "APPROVAL")
        queued = [e for e in all_audit(w, tx_id=result.id) if e.event_type == "TX_QUEUED"]
        assert queued[-1].details["tier"] == "APPROVAL"


def test_item3_unpriced_tier_is_configurable(tmp_path: Path) -> None:
    """``unpriced_tier`` may relax the default APPROVAL (here to DELAY), never below NOTIFY."""
    with _usd_wallet(tmp_path, _Oracle({})) as w:
        agent = new_agent(w, "solana")
        w.add_policy("SPENDING_LIMIT", {**USD_TIERS, "unpriced_tier": "DELAY"}, agent_id=agent.id)
        token = w.issue_session(agent.id).token
        result = w.send(token, Transfer(to=recipient("solana"), amount=1000))
        assert (result.status, result.tier) == ("QUEUED", "DELAY")
        with pytest.raises(InvalidInputError):
            w.add_policy("SPENDING_LIMIT", {**USD_TIERS, "unpriced_tier": "INSTANT"})


# --------------------------------------------------------------------------- item 11


@pytest.mark.parametrize(
    ("scope", "field"),
    [
        ({"chain": "solona"}, "chain"),
        ({"network": "local-net"}, "network"),
        ({"chain": "solana", "network": "sepolia"}, "network"),
        ({"chain": "evm", "network": "mainnet-beta"}, "network"),
    ],
)
def test_item11_a_misspelt_scope_is_refused_at_write(
    wallet: Wallet, scope: dict[str, str], field: str
) -> None:
    """Item 11: a blacklist scoped to a chain or network that does not exist would never
    apply; it is refused when written (add and update), and nothing is stored."""
    who = recipient("evm" if scope.get("chain") == "evm" else "solana")
    rules = {"addresses": [who], "mode": "blacklist", **scope}
    before = wallet.policies.list()
    with pytest.raises(InvalidInputError) as info:
        wallet.add_policy("ALLOWED_ADDRESSES", rules)
    assert info.value.field == field
    assert wallet.policies.list() == before
    good = wallet.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [recipient("solana")], "mode": "blacklist"}
    )
    with pytest.raises(InvalidInputError):
        wallet.policies.update(good.id, rules=rules)
    assert wallet.policies.get(good.id) == good


def test_item11_configured_and_documented_networks_are_accepted(wallet: Wallet) -> None:
    """Scopes naming a configured adapter's network, or a documented one, are stored."""
    for scope in (
        {"chain": "solana", "network": "localnet"},
        {"chain": "evm", "network": "local"},
        {"chain": "solana", "network": "mainnet-beta"},
        {"network": "sepolia"},
    ):
        wallet.add_policy("RATE_LIMIT", {"max_requests": 5, "window_seconds": 60, **scope})
