"""What an agent learns from ``limits()`` (issue 10: hints shown to an agent are redacted;
issue 13: ``limits`` redacted as for agents).

An agent that reads its limits, through its handle or the ``get_limits`` tool, learns what is
left now: the budgets' remaining amounts, the session's own caps and one figure,
``native_max_now``. It never learns a tier threshold (which would tell it how to split an
amount so each piece stays INSTANT), a budget's limit, or who is on an allow- or blacklist.
``native_max_now`` is exact: a transfer of that much is not refused by a cap, one base unit
more is, and the refusal names the same figure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.conftest import SOL, new_agent, owner_for, recipient
from waiaas import AgentHandle, AgentLimits, Tier, TxStatus
from waiaas.chains.solana import SolanaAdapter
from waiaas.errors import PolicyDeniedError
from waiaas.notify.testing import RecordingNotifier
from waiaas.policy.model import NATIVE_DECIMALS
from waiaas.testing import FrozenClock, fund, local_wallet
from waiaas.tools import Toolkit
from waiaas.types import Transfer
from waiaas.units import format_units
from waiaas.wallet import Wallet

ETH = 10**18

# distinctive thresholds per chain (base units): none is a substring of another figure shown
THRESHOLDS = {
    "solana": {
        "instant_max": 123_456_789,
        "notify_max": 987_654_321,
        "delay_max": 2_718_281_828,
        "daily_total": 31_415_926_535,
    },
    "evm": {
        "instant_max": 12_345_678_901_234_567,
        "notify_max": 98_765_432_109_876_543,
        "delay_max": 271_828_182_845_904_523,
        "daily_total": 3_141_592_653_589_793_238,
    },
}
FIRST = {"solana": SOL // 10, "evm": ETH // 1000}  # an INSTANT send before reading the limits
FUNDS = {"solana": 40 * SOL, "evm": 5 * ETH}


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on fresh local chains (LiteSVM, eth-tester), frozen clock."""
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RecordingNotifier()) as w:
        yield w


@pytest.fixture(params=["solana", "evm"])
def chain(request: pytest.FixtureRequest) -> str:
    """Each chain family in turn."""
    return str(request.param)


def _secrets(chain: str, listed: list[str]) -> list[str]:
    """Every threshold in base units and in whole units, and every list member."""
    decimals = NATIVE_DECIMALS[chain]
    out: list[str] = []
    for value in THRESHOLDS[chain].values():
        out += [str(value), format_units(value, decimals)]
    for address in listed:
        out += [address, address.lower()]
    return out


def _texts(handle: AgentHandle, limits: AgentLimits) -> str:
    """Everything the agent can read of its limits: the object and the tool's JSON."""
    tool = Toolkit(handle).call_json("get_limits", {})
    assert json.loads(tool)["ok"] is True
    return "\n".join(
        [
            repr(limits),
            str(limits),
            limits._repr_html_(),
            json.dumps(limits.to_dict()),
            repr(limits.to_dict()),
            tool,
        ]
    )


def test_limits_show_no_threshold_nor_list_member(wallet: Wallet, chain: str) -> None:
    """SPENDING_LIMIT tiers and a 24 h budget, a whitelist and a blacklist: limits() and the
    get_limits tool show what is left now, and none of the thresholds (in base or whole
    units) nor any list member; native_max_now is exact: a send of it is not refused (it
    waits for the owner), one base unit more is refused by the budget, which names the same
    figure."""
    t = THRESHOLDS[chain]
    owner = owner_for(chain)
    agent = new_agent(wallet, chain, owner=owner, funds=FUNDS[chain])
    dest, *allowed = (recipient(chain) for _ in range(3))
    banned = [recipient(chain) for _ in range(3)]
    limit = wallet.add_policy(
        "SPENDING_LIMIT", {k: str(v) for k, v in t.items()}, agent_id=agent.id
    )
    whitelist = wallet.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [dest, *allowed]}, agent_id=agent.id
    )
    blacklist = wallet.add_policy(
        "ALLOWED_ADDRESSES", {"mode": "blacklist", "addresses": banned}, agent_id=agent.id
    )
    issued = wallet.issue_session(agent.id, constraints={"max_tx_count": 7})
    handle = wallet.agent(issued.token)

    first = handle.send(Transfer(to=dest, amount=FIRST[chain]))
    assert first.status == TxStatus.CONFIRMED and first.tier == Tier.INSTANT

    limits = handle.limits()
    counted = wallet.get_transaction(first.id).spend  # the amount and its network fee
    assert counted is not None
    remaining = t["daily_total"] - counted["native"]
    assert limits.budgets == ({"window": "24h", "remaining": str(remaining)},)
    # no per-transaction cap: the budget decides, and it must also hold the next fee
    left = limits.native_max_now
    assert left is not None
    fee = remaining - left
    assert fee > 0 and (chain == "evm" or fee == 5_000)
    assert limits.restrictions == ("ALLOWED_ADDRESSES",)
    assert limits.transactions_remaining == 6

    text = _texts(handle, limits)
    for secret in _secrets(chain, [dest, *allowed, *banned]):
        assert secret not in text, secret
    for private in (limit.id, whitelist.id, blacklist.id, owner.address, issued.token):
        assert private not in text
    for name in ("instant_max", "notify_max", "delay_max", '"limit"', '"spent"', "by_tier"):
        assert name not in text, name

    # one base unit more than native_max_now is refused by the budget, naming the figure
    with pytest.raises(PolicyDeniedError) as denied:
        handle.send(Transfer(to=dest, amount=left + 1))
    assert denied.value.rule == "SPENDING_LIMIT"
    assert denied.value.figure == {"asset": "native", "available": str(left)}
    # exactly native_max_now is not refused: it is large, so it waits for the owner
    exact = handle.send(Transfer(to=dest, amount=left))
    assert exact.status == TxStatus.QUEUED and exact.tier == Tier.APPROVAL

    # the budget is now spoken for: nothing more may move, and still no threshold shows
    after = handle.limits()
    assert after.native_max_now == 0
    assert after.budgets == ({"window": "24h", "remaining": "0"},)
    text = _texts(handle, after)
    for secret in _secrets(chain, [dest, *allowed, *banned]):
        assert secret not in text, secret


def test_native_max_now_takes_the_tightest_cap(wallet: Wallet) -> None:
    """A policy's per-transaction cap, the session's per-transaction cap and what is left of
    the session's total each cap native_max_now when tightest; a cap whose rule sends an
    excess to the owner (on_exceed="approval") does not, while the agent has an owner; a
    session with no transactions left may move nothing."""
    owner = owner_for("solana")
    agent = new_agent(wallet, "solana", owner=owner)
    dest = recipient("solana")
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"per_transaction": str(3 * SOL), "weekly_total": str(20 * SOL)},
        agent_id=agent.id,
    )
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"daily_total": str(SOL), "on_exceed": "approval"},
        agent_id=agent.id,
    )
    # no session cap: the policy's per-transaction cap (3 SOL) is the tightest that refuses
    free = wallet.agent(wallet.issue_session(agent.id).token)
    limits = free.limits()
    assert limits.native_max_now == 3 * SOL
    assert limits.budgets == (
        {"window": "24h", "remaining": str(SOL)},
        {"window": "7d", "remaining": str(20 * SOL)},
    )
    with pytest.raises(PolicyDeniedError) as denied:
        free.send(Transfer(to=dest, amount=3 * SOL + 1))
    assert denied.value.figure is not None
    # the tightest budget, as documented, less the next transfer's fee it must also hold
    assert denied.value.figure["available"] == str(SOL - 5_000)
    queued = free.send(Transfer(to=dest, amount=3 * SOL))  # over the 1 SOL day: the owner's
    assert queued.status == TxStatus.QUEUED and queued.tier == Tier.APPROVAL

    # the session's own caps
    capped = wallet.agent(
        wallet.issue_session(
            agent.id,
            constraints={
                "max_amount_per_tx": str(2 * SOL),
                "max_total_amount": str(SOL + SOL // 2),
                "max_tx_count": 2,
            },
        ).token
    )
    fee = 5_000  # the session's total counts each transfer's fee
    assert capped.limits().native_max_now == SOL + SOL // 2 - fee
    capped.send(Transfer(to=dest, amount=SOL // 2))
    assert capped.limits().native_max_now == SOL - 2 * fee
    capped.send(Transfer(to=dest, amount=SOL // 2))
    limits = capped.limits()
    assert limits.transactions_remaining == 0
    assert limits.native_max_now == 0


def test_an_approval_cap_refuses_an_agent_without_owner(wallet: Wallet) -> None:
    """Without an owner, a cap with on_exceed="approval" refuses too: it caps native_max_now."""
    agent = new_agent(wallet, "solana")
    dest = recipient("solana")
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"daily_total": str(2 * SOL), "on_exceed": "approval"},
        agent_id=agent.id,
    )
    handle = wallet.agent(wallet.issue_session(agent.id).token)
    assert handle.limits().native_max_now == 2 * SOL - 5_000  # the budget holds the fee too
    with pytest.raises(PolicyDeniedError):
        handle.send(Transfer(to=dest, amount=2 * SOL - 5_000 + 1))


class _Oracle:
    def __init__(self, price: Decimal) -> None:
        self.price = price

    def price_usd(self, chain: str, asset: str) -> Decimal | None:
        return self.price if asset == "native" else None


def test_a_usd_budget_is_converted_at_the_current_price(tmp_path: Path) -> None:
    """A USD per-transaction cap and 24 h budget cap native_max_now at the oracle's price,
    exactly (a price that does not divide evenly); the budget shows what is left in USD,
    not its limit."""
    oracle = _Oracle(Decimal("137.03"))
    with local_wallet(
        tmp_path, chains=[SolanaAdapter.local()], clock=FrozenClock(), price_oracle=oracle
    ) as wallet:
        agent = new_agent(wallet, "solana", owner=owner_for("solana"), funds=0)
        fund(wallet, agent.id, 10 * SOL)
        dest = recipient("solana")
        wallet.add_policy(
            "SPENDING_LIMIT",
            {"per_transaction_usd": "481.93", "daily_total_usd": "869.41"},
            agent_id=agent.id,
        )
        handle = wallet.agent(wallet.issue_session(agent.id).token)
        most = handle.limits().native_max_now
        # 481.93 USD at 137.03 USD/SOL, rounded down to a lamport
        assert most == int(Decimal("481.93") * SOL / Decimal("137.03"))
        with pytest.raises(PolicyDeniedError):
            handle.send(Transfer(to=dest, amount=most + 1))
        sent = handle.send(Transfer(to=dest, amount=most))  # not refused (the tier defaults
        assert sent.status in (TxStatus.CONFIRMED, TxStatus.QUEUED)  # may make it wait)

        limits = handle.limits()
        fee = 5_000  # the 24 h window counts the network fee too
        left_usd = Decimal("869.41") - Decimal(most + fee) * Decimal("137.03") / SOL
        assert limits.budgets == ({"window": "24h", "remaining_usd": str(left_usd)},)
        assert limits.native_max_now == int(left_usd * SOL / Decimal("137.03")) - fee
        text = _texts(handle, limits)
        for figure in ("481.93", "869.41"):
            assert figure not in text, figure
