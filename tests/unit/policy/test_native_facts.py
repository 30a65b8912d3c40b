"""The pure core receives a chain's native coin as values (``AgentContext.native_symbol`` /
``native_decimals``, ``lookup_prices(native_decimals=...)``) instead of knowing chain names."""

from __future__ import annotations

from decimal import Decimal

import pytest
from policy_helpers import Decide, spec

from waiaas.errors import InvalidInputError
from waiaas.policy import AgentContext, lookup_prices
from waiaas.policy.units import describe_amount
from waiaas.types import Transfer

TOY_DEST = "t" + "ab" * 20


class _Oracle:
    def price_usd(self, chain: str, asset: str) -> Decimal | None:
        return Decimal("2") if asset == "native" else None


def test_a_declared_native_coin_is_used_for_reasons(decide: Decide) -> None:
    toy = AgentContext(
        id="a-toy", chain="toy", network="local", native_symbol="TOY", native_decimals=6
    )
    p = spec("SPENDING_LIMIT", {"per_transaction": "1000000"})
    d = decide(Transfer(to=TOY_DEST, amount=1_500_000), toy, [p])
    (reason,) = d.deny_reasons
    assert "1.5 TOY exceeds the per-transaction limit of 1 TOY" in reason.message


def test_without_declared_facts_another_chain_is_shown_in_base_units(decide: Decide) -> None:
    bare = AgentContext(id="a-bare", chain="toy", network="local")
    assert bare.native_units() is None
    p = spec("SPENDING_LIMIT", {"per_transaction": "1000000"})
    d = decide(Transfer(to=TOY_DEST, amount=1_500_000), bare, [p])
    (reason,) = d.deny_reasons
    assert "1500000 base units of the native coin" in reason.message


def test_the_shipped_families_keep_their_defaults_and_can_be_overridden() -> None:
    assert AgentContext(id="a", chain="solana", network="devnet").native_units() == (9, "SOL")
    named = AgentContext(
        id="a", chain="evm", network="polygon", native_symbol="POL", native_decimals=18
    )
    assert named.native_units() == (18, "POL")
    assert describe_amount("evm", "native", 10**18, native=named.native_units()) == "1 POL"
    assert describe_amount("toy", "native", 7) == "7 base units of the native coin"


def test_native_decimals_price_another_chain() -> None:
    assert lookup_prices(_Oracle(), "toy", ["native"]) == {}  # unknown decimals: unpriced
    priced = lookup_prices(_Oracle(), "toy", ["native"], native_decimals=6)
    assert priced["native"].decimals == 6 and priced["native"].usd == Decimal("2")
    assert lookup_prices(_Oracle(), "solana", ["native"])["native"].decimals == 9


@pytest.mark.parametrize(
    "fields",
    [
        {"native_symbol": "TOY"},
        {"native_decimals": 6},
        {"native_symbol": "TOY", "native_decimals": -1},
        {"native_symbol": "TOY", "native_decimals": 37},
        {"native_symbol": "", "native_decimals": 6},
        {"native_symbol": "TOY", "native_decimals": True},
    ],
)
def test_native_fields_are_validated(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        AgentContext(id="a", chain="toy", network="local", **fields)  # type: ignore[arg-type]
