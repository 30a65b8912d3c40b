"""AgentHandle: one session's view of the wallet, on LiteSVM and eth-tester. Human units in
and out, balances of the native coin and listed tokens, only its own transactions, only its
own DELAY cancellations, limits redacted, the token checked on every call."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from tests.e2e.conftest import SOL, new_agent, owner_for, recipient
from waiaas import (
    AgentHandle,
    AuthError,
    InvalidInputError,
    NotFoundError,
    PolicyDeniedError,
    StateError,
    Tier,
    TokenExpiredError,
    Transfer,
    TxStatus,
)
from waiaas.testing import FrozenClock
from waiaas.wallet import Wallet

# one "small" amount per chain that the shipped tier defaults make INSTANT, in whole units
SMALL = {"solana": ("0.01", 10**7), "evm": ("0.001", 10**15)}
DELAYED = {"solana": "2", "evm": "0.2"}
SYMBOL = {"solana": "SOL", "evm": "ETH"}


def _adapter(wallet: Wallet, agent_id: str) -> Any:
    agent = wallet.get_agent(agent_id)
    return wallet.network_adapter(agent.chain, agent.network)


def test_human_units_balances_and_a_listed_token(wallet: Wallet, chain: str) -> None:
    """transfer("0.01") sends exactly 10**7 lamports / 10**15 wei; balances() lists the native
    coin and the ALLOWED_TOKENS token with the decimals read from the chain and the listed
    symbol; a token transfer by symbol moves exactly 2.5 tokens."""
    agent = new_agent(wallet, chain)
    adapter = _adapter(wallet, agent.id)
    token = adapter.create_test_token(decimals=6)
    adapter.mint_test_token(token, agent.public_key, 10_000_000)
    wallet.add_policy("ALLOWED_TOKENS", {"tokens": [{"address": token, "symbol": "TST"}]})
    handle = wallet.agent(wallet.issue_session(agent.id).token)
    assert handle.address == agent.public_key

    text, base = SMALL[chain]
    dest = recipient(chain)
    result = handle.transfer(dest, f"{text} {SYMBOL[chain]}")
    assert result.status == TxStatus.CONFIRMED
    assert result.amount == base
    assert adapter.get_balance(dest) == base

    balances = handle.balances()
    assert [b.symbol for b in balances] == [SYMBOL[chain], "TST"]
    assert balances[1].decimals == 6
    assert balances[1].display == "10 TST"
    assert handle.balance("tst").amount == 10_000_000

    sent = handle.transfer(dest, "2.5", "TST")
    assert sent.status == TxStatus.CONFIRMED
    assert adapter.get_token_balance(dest, token) == 2_500_000
    assert handle.balance(token).display == "7.5 TST"
    assert handle.format_units(2_500_000, "TST") == "2.5 TST"
    assert handle.parse_units(f"{text}") == base

    with pytest.raises(InvalidInputError):
        handle.transfer(dest, "0.0000001", "TST")  # 7 decimals for a 6-decimal token
    with pytest.raises(InvalidInputError):
        handle.transfer(dest, 0.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        handle.balance("NOPE")


def test_only_its_own_transactions(wallet: Wallet, chain: str) -> None:
    """Another agent's transaction is "not found" for reading and cancelling, and missing from
    the list; the other agent's queued transaction stays queued."""
    mine = new_agent(wallet, chain, name="mine")
    other = new_agent(wallet, chain, name="other")
    me = wallet.agent(wallet.issue_session(mine.id).token)
    them = wallet.agent(wallet.issue_session(other.id).token)
    dest = recipient(chain)
    own = me.transfer(dest, SMALL[chain][0])
    queued = them.transfer(dest, DELAYED[chain])
    assert queued.status == TxStatus.QUEUED and queued.tier == Tier.DELAY

    assert me.get_transaction(own.id).id == own.id
    with pytest.raises(NotFoundError):
        me.get_transaction(queued.id)
    with pytest.raises(NotFoundError):
        me.cancel(queued.id)
    assert [t.id for t in me.transactions()] == [own.id]
    assert wallet.get_transaction(queued.id).status == TxStatus.QUEUED
    with pytest.raises((InvalidInputError, NotFoundError)):
        me.get_transaction("../../etc/passwd")


def test_cancel_only_its_own_waiting_delay(wallet: Wallet, chain: str) -> None:
    """The agent cancels its DELAY transaction while it waits; not an APPROVAL wait (the
    owner's to decide), not a confirmed one."""
    owner = owner_for(chain)
    agent = new_agent(wallet, chain, owner=owner)
    handle = wallet.agent(wallet.issue_session(agent.id).token)
    dest = recipient(chain)
    delayed = handle.transfer(dest, DELAYED[chain])
    assert delayed.tier == Tier.DELAY
    assert handle.cancel(delayed.id).status == TxStatus.CANCELLED

    big = {"solana": "11", "evm": "2"}[chain]
    waiting = handle.transfer(dest, big)
    assert waiting.tier == Tier.APPROVAL and waiting.status == TxStatus.QUEUED
    with pytest.raises(StateError, match="only its own DELAY"):
        handle.cancel(waiting.id)
    done = handle.transfer(dest, SMALL[chain][0])
    with pytest.raises(StateError):
        handle.cancel(done.id)
    assert wallet.get_transaction(waiting.id).status == TxStatus.QUEUED


def test_limits_say_what_is_left_and_hide_the_rules(wallet: Wallet) -> None:
    """limits() gives what is left of the budgets, the most one transfer may move now and the
    session's caps; it never shows a threshold, a budget's limit, rule ids, allow-list entries
    or the owner's address."""
    owner = owner_for("solana")
    agent = new_agent(wallet, "solana", owner=owner)
    allowed = recipient("solana")
    limit = wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "instant_max": str(SOL // 10),
            "per_transaction": str(2 * SOL),
            "daily_total": str(3 * SOL),
        },
        agent_id=agent.id,
    )
    rule = wallet.add_policy("ALLOWED_ADDRESSES", {"addresses": [allowed]}, agent_id=agent.id)
    issued = wallet.issue_session(
        agent.id, constraints={"max_amount_per_tx": str(2 * SOL), "max_tx_count": 5}
    )
    handle = wallet.agent(issued.token)
    handle.transfer(allowed, "0.05")

    limits = handle.limits()
    # 0.05 SOL and its 5,000-lamport fee already went out today: the 24 h budget has
    # 2.949995 SOL left, and the policy's per-transaction cap (2 SOL) is tighter, as tight
    # as the session's
    assert limits.budgets == ({"window": "24h", "remaining": str(3 * SOL - SOL // 20 - 5_000)},)
    assert limits.native_max_now == 2 * SOL
    assert limits.transactions_remaining == 4
    assert limits.max_per_transaction == {"native": 2 * SOL}
    assert limits.restrictions == ("ALLOWED_ADDRESSES",)
    text = json.dumps(limits.to_dict()) + repr(limits) + str(limits) + limits._repr_html_()
    for secret in (limit.id, rule.id, allowed, owner.address, issued.token, issued.session_id):
        assert secret not in text
    for threshold in (SOL // 10, 3 * SOL):  # instant_max, the 24 h limit
        assert str(threshold) not in text

    # later in the day, the 24 h budget is what caps one transfer
    handle.transfer(allowed, "1.5")
    # the 24 h budget has paid three 5,000-lamport fees and must hold the next one
    assert handle.limits().native_max_now == 3 * SOL - SOL // 20 - 3 * SOL // 2 - 3 * 5_000


def test_the_token_is_checked_on_every_call(wallet: Wallet, clock: FrozenClock) -> None:
    """A revoked or expired session stops the handle at once; a bad token gives no handle."""
    agent = new_agent(wallet, "solana")
    issued = wallet.issue_session(agent.id, ttl=600)
    handle = wallet.agent(issued.token)
    handle.balance()
    clock.advance(601)
    for call in (handle.balance, handle.transactions, handle.limits, handle.balances):
        with pytest.raises(TokenExpiredError):
            call()
    with pytest.raises(TokenExpiredError):
        handle.send(Transfer(to=recipient("solana"), amount=1))

    second = wallet.issue_session(agent.id)
    again = wallet.agent(second.token)
    wallet.revoke_session(second.session_id)
    with pytest.raises(AuthError):
        again.get_transaction("01a249c7-834b-71ff-9e13-52232292f7b7")
    with pytest.raises(AuthError):
        wallet.agent(second.token)
    with pytest.raises(AuthError):
        wallet.agent(second.token[:-2] + "xx")
    with pytest.raises(InvalidInputError):
        wallet.agent("")
    with pytest.raises(InvalidInputError):
        wallet.agent(None)  # type: ignore[arg-type]


def test_no_owner_or_operator_action_and_no_token_leak(wallet: Wallet) -> None:
    """The handle offers agent actions only; its repr hides the token; it cannot be pickled."""
    agent = new_agent(wallet, "evm")
    issued = wallet.issue_session(agent.id)
    handle = wallet.agent(issued.token)
    public = {n for n in dir(handle) if not n.startswith("_")}
    for forbidden in (
        "approve",
        "reject",
        "kill_switch",
        "add_policy",
        "policies",
        "suspend_agent",
        "issue_session",
        "revoke_session",
        "set_owner",
        "audit",
    ):
        assert forbidden not in public
    assert issued.token not in repr(handle) and "***" in str(handle)
    with pytest.raises(TypeError):
        pickle.dumps(handle)
    assert isinstance(handle, AgentHandle)


def test_refusals_raise_and_chain_failures_are_results(wallet: Wallet, chain: str) -> None:
    """The one outcome rule: a policy denial raises (nothing executed); an admitted request the
    chain refuses (more than the agent holds) comes back as a FAILED result with its error."""
    agent = new_agent(wallet, chain, funds=SMALL[chain][1])
    wallet.add_policy("SPENDING_LIMIT", {"per_transaction": str(10**30)}, agent_id=agent.id)
    handle = wallet.agent(wallet.issue_session(agent.id).token)
    dest = recipient(chain)
    result = handle.transfer(dest, {"solana": "0.05", "evm": "0.004"}[chain])
    assert result.status == TxStatus.FAILED
    assert result.error
    with pytest.raises(PolicyDeniedError):
        handle.transfer(dest, "1000000000000000000")
