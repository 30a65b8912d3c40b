"""Network fees count against native budgets and session totals (issue: budgets include the
rent and fees the agent pays).

The agent's wallet loses the amount *and* the fee; an owner's "1 SOL a day" means at most
1 SOL leaves the wallet a day. On Solana the fee is exact (5,000 lamports per signature plus
the priority fee); on EVM the budget reserves the maximum (gas limit times maxFeePerGas).
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import new_agent, recipient
from waiaas import SessionConstraints
from waiaas.errors import ConstraintViolationError, PolicyDeniedError
from waiaas.types import Transfer
from waiaas.wallet import Wallet

AMOUNT = {"solana": 1_000_000, "evm": 10**15}


def _fee_of(wallet: Wallet, tx_id: str) -> int:
    display = wallet.transaction_display(tx_id)
    assert display.network_fee is not None
    return display.network_fee.base_units


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_a_daily_limit_of_exactly_the_amount_refuses_because_of_the_fee(
    wallet: Wallet, chain: str
) -> None:
    """A limit equal to the amount leaves no room for the fee: refused, and the reason is the
    daily total (the attempt to spend the fee outside the budget)."""
    agent = new_agent(wallet, chain)
    wallet.add_policy("SPENDING_LIMIT", {"daily_total": str(AMOUNT[chain])}, agent_id=agent.id)
    token = wallet.issue_session(agent.id).token
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, Transfer(to=recipient(chain), amount=AMOUNT[chain]))
    row = wallet.list_transactions(agent_id=agent.id)[0]
    assert row.status == "FAILED"


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_the_recorded_spend_is_amount_plus_fee_and_the_next_request_sees_it(
    wallet: Wallet, chain: str
) -> None:
    """The first transfer is charged amount + fee; a second one that would fit the limit
    by amount alone, but not with the first one's fee counted, is refused."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    first = wallet.send(token, Transfer(to=recipient(chain), amount=AMOUNT[chain]))
    assert first.status == "CONFIRMED"
    fee = _fee_of(wallet, first.id)
    assert fee > 0
    usage = wallet.budget_usage(agent.id)
    assert usage.spent("24h") == AMOUNT[chain] + fee
    # A limit with room for two amounts and one fee, not two of each.
    wallet.add_policy(
        "SPENDING_LIMIT", {"daily_total": str(2 * AMOUNT[chain] + fee)}, agent_id=agent.id
    )
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, Transfer(to=recipient(chain), amount=AMOUNT[chain]))


def test_solana_fee_is_the_exact_signature_fee(wallet: Wallet) -> None:
    """Solana: the budget counts exactly what the wallet lost (5,000 lamports per signature)."""
    agent = new_agent(wallet, "solana")
    token = wallet.issue_session(agent.id).token
    before = wallet.balance(agent.id)
    done = wallet.send(token, Transfer(to=recipient("solana"), amount=AMOUNT["solana"]))
    assert done.status == "CONFIRMED"
    lost = before - wallet.balance(agent.id)
    assert _fee_of(wallet, done.id) == 5_000
    assert wallet.budget_usage(agent.id).spent("24h") == lost == AMOUNT["solana"] + 5_000


def test_evm_budget_reserves_at_least_what_was_paid(wallet: Wallet) -> None:
    """EVM: the budget holds the maximum fee, never less than the wallet actually lost."""
    agent = new_agent(wallet, "evm")
    token = wallet.issue_session(agent.id).token
    before = wallet.balance(agent.id)
    done = wallet.send(token, Transfer(to=recipient("evm"), amount=AMOUNT["evm"]))
    assert done.status == "CONFIRMED"
    lost = before - wallet.balance(agent.id)
    charged = wallet.budget_usage(agent.id).spent("24h")
    assert charged == AMOUNT["evm"] + _fee_of(wallet, done.id)
    assert charged >= lost > AMOUNT["evm"]


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_session_total_counts_the_fee(wallet: Wallet, chain: str) -> None:
    """A session whose native total equals the amount cannot pay the fee from outside it."""
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(
        agent.id,
        constraints=SessionConstraints(max_total_amount={"native": str(AMOUNT[chain])}),
    ).token
    with pytest.raises((ConstraintViolationError, PolicyDeniedError)):
        wallet.send(token, Transfer(to=recipient(chain), amount=AMOUNT[chain]))


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_dry_run_agrees_with_send_about_the_fee(wallet: Wallet, chain: str) -> None:
    """The owner's dry run judges the same fee: denied at a limit of exactly the amount."""
    agent = new_agent(wallet, chain)
    wallet.add_policy("SPENDING_LIMIT", {"daily_total": str(AMOUNT[chain])}, agent_id=agent.id)
    explanation = wallet.dry_run(
        Transfer(to=recipient(chain), amount=AMOUNT[chain]), agent_id=agent.id
    )
    assert not explanation.decision.allowed


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_one_request_is_judged_on_what_it_sends(wallet: Wallet, chain: str) -> None:
    """Tiers and per-request caps judge what the request sends, not the fee: an amount
    exactly at ``instant_max`` and ``per_transaction`` (and the session's per-request cap)
    is INSTANT; the rolling budget still charges amount + fee."""
    agent = new_agent(wallet, chain)
    amount = AMOUNT[chain]
    wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "per_transaction": str(amount),
            "instant_max": str(amount),
            "notify_max": str(amount * 10),
            "delay_max": str(amount * 100),
            "daily_total": str(amount * 1000),
        },
        agent_id=agent.id,
    )
    token = wallet.issue_session(
        agent.id, constraints=SessionConstraints(max_amount_per_tx={"native": str(amount)})
    ).token
    done = wallet.send(token, Transfer(to=recipient(chain), amount=amount))
    assert (done.status, done.tier) == ("CONFIRMED", "INSTANT")
    assert done.spend == {"native": amount + _fee_of(wallet, done.id)}
    assert done.decision is not None and done.decision.fees == _fee_of(wallet, done.id)


def test_a_fee_alone_counts_against_the_native_daily_budget(wallet: Wallet) -> None:
    """A token transfer sends no SOL, but its fee leaves the wallet: with the native daily
    budget spent to the last lamport, it is refused."""
    from waiaas.types import TokenTransfer

    agent = new_agent(wallet, "solana")
    adapter = wallet.chain_adapter(agent.id)
    mint = adapter.create_test_token(decimals=6)  # type: ignore[attr-defined]
    adapter.mint_test_token(mint, agent.public_key, 1_000)  # type: ignore[attr-defined]
    dest = recipient("solana")
    adapter.mint_test_token(mint, dest, 1)  # type: ignore[attr-defined]  # its account exists
    token = wallet.issue_session(agent.id).token
    first = wallet.send(token, Transfer(to=recipient("solana"), amount=AMOUNT["solana"]))
    spent = AMOUNT["solana"] + _fee_of(wallet, first.id)
    wallet.add_policy("SPENDING_LIMIT", {"daily_total": str(spent)}, agent_id=agent.id)
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, TokenTransfer(to=dest, token=mint, amount=1))
