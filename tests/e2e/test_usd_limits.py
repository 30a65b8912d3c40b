"""USD spending limits through the whole pipeline, with a price oracle passed to Wallet.open."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from waiaas import PolicyDeniedError, Tier, Transfer, TxStatus, Wallet
from waiaas.chains.solana import SolanaAdapter
from waiaas.keystore.keys import generate_keypair
from waiaas.testing import FrozenClock, fund, local_wallet

SOL = 10**9


class Oracle:
    """Prices per whole unit; ``None`` (unknown) when told so."""

    def __init__(self, native: Decimal | None) -> None:
        self.native = native
        self.asked: list[tuple[str, str]] = []

    def price_usd(self, chain: str, asset: str) -> Decimal | None:
        self.asked.append((chain, asset))
        return self.native if asset == "native" else None


@pytest.fixture
def make_wallet(tmp_path: Path) -> Iterator[Callable[[Oracle], tuple[Wallet, str, str]]]:
    """A factory of Solana wallets on LiteSVM with a given oracle."""
    with contextlib.ExitStack() as stack:

        def make(oracle: Oracle) -> tuple[Wallet, str, str]:
            wallet = stack.enter_context(
                local_wallet(
                    tmp_path,
                    chains=[SolanaAdapter.local()],
                    clock=FrozenClock(),
                    price_oracle=oracle,
                )
            )
            agent = wallet.create_agent("usd", "solana")
            fund(wallet, agent.id, 50 * SOL)
            wallet.add_policy(
                "SPENDING_LIMIT",
                {
                    "per_transaction_usd": "50",
                    "instant_max_usd": "10",
                    "notify_max_usd": "20",
                    "delay_max_usd": "40",
                },
                agent_id=agent.id,
            )
            token = wallet.issue_session(agent.id).token
            _secret, dest = generate_keypair("solana")
            return wallet, token, dest

        yield make


def test_usd_thresholds_set_the_tier_and_the_cap_denies(
    make_wallet: Callable[[Oracle], tuple[Wallet, str, str]],
) -> None:
    """At $100/SOL: 0.05 SOL ($5) is INSTANT, 0.15 SOL ($15) NOTIFY, 1 SOL ($100) denied."""
    oracle = Oracle(Decimal("100"))
    wallet, token, dest = make_wallet(oracle)
    small = wallet.send(token, Transfer(to=dest, amount=SOL // 20))
    assert (small.tier, small.status) == (Tier.INSTANT, TxStatus.CONFIRMED)
    medium = wallet.send(token, Transfer(to=dest, amount=15 * SOL // 100))
    assert medium.tier == Tier.NOTIFY
    with pytest.raises(PolicyDeniedError) as denied:
        wallet.send(token, Transfer(to=dest, amount=SOL))
    assert denied.value.figure is not None and "available_usd" in denied.value.figure
    assert ("solana", "native") in oracle.asked


def test_an_unknown_price_is_never_treated_as_zero(
    make_wallet: Callable[[Oracle], tuple[Wallet, str, str]],
) -> None:
    """Without a price, even a tiny transfer is not INSTANT."""
    wallet, token, dest = make_wallet(Oracle(None))
    try:
        result = wallet.send(token, Transfer(to=dest, amount=1_000))
    except PolicyDeniedError:
        return  # refusing is also safe
    assert result.tier is not None and result.tier.rank >= Tier.NOTIFY.rank
