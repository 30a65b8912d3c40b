"""The fee of an EVM transaction rebuilt at signing stays within the fee judged earlier.

On a real anvil node the base fee is raised between the first build (judged, shown to the
owner) and the rebuild: a modest rise is absorbed by lowering ``maxFeePerGas`` to the judged
one (the transaction still lands and pays no more than judged); a rise beyond it refuses.
"""

from __future__ import annotations

from typing import Any

import pytest
from anvil import rpc_request
from evm_fixtures import EvmEnv

from waiaas.chains.base import FeeQuote, SupportsFeeCap, UnsignedTx
from waiaas.errors import InvalidInputError
from waiaas.pipeline.plans import PlanRefusedError, fee_to_json, hold_fee
from waiaas.types import Transfer

pytestmark = pytest.mark.anvil

GWEI = 10**9


def _raise_base_fee(env: EvmEnv, wei: int) -> None:
    assert env.node is not None
    rpc_request(env.node.url, "anvil_setNextBlockBaseFeePerGas", [hex(wei)])
    rpc_request(env.node.url, "evm_mine", [])


def _setup(env: EvmEnv) -> tuple[bytes, str, str]:
    adapter = env.adapter
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10**19)
    _, to = adapter.generate_secret()
    return secret, sender, to


def test_a_fee_within_the_judged_one_is_left_alone(anvil_env: EvmEnv) -> None:
    adapter = anvil_env.adapter
    assert isinstance(adapter, SupportsFeeCap)
    _secret, sender, to = _setup(anvil_env)
    unsigned = adapter.build(Transfer(to=to, amount=1), sender)
    quote = adapter.fee_quote(unsigned)
    assert adapter.cap_fee(unsigned, quote) is unsigned
    meta = {"network_fee": fee_to_json(quote)}
    assert hold_fee(adapter, unsigned, meta) is unsigned
    assert hold_fee(adapter, unsigned, {}) is unsigned  # rows recorded without a quote


def test_a_price_rise_is_capped_and_the_transaction_lands_within_the_judged_fee(
    anvil_env: EvmEnv,
) -> None:
    adapter = anvil_env.adapter
    secret, sender, to = _setup(anvil_env)
    judged = adapter.fee_quote(adapter.build(Transfer(to=to, amount=1), sender, nonce=0))
    assert judged.max_fee_per_gas is not None
    # The block base fee rises by half: the node now asks for a higher maxFeePerGas.
    base = (judged.max_fee_per_gas - 1 * GWEI) // 2
    _raise_base_fee(anvil_env, base + base // 2)
    rebuilt = adapter.build(Transfer(to=to, amount=1), sender, nonce=0)
    assert adapter.fee_quote(rebuilt).amount > judged.amount
    held = hold_fee(adapter, rebuilt, {"network_fee": fee_to_json(judged)})
    assert held is not rebuilt
    assert adapter.fee_quote(held).amount <= judged.amount
    payload: dict[str, Any] = held.payload
    assert payload["maxPriorityFeePerGas"] <= payload["maxFeePerGas"]
    signed = adapter.sign(held, secret)
    adapter.submit(signed)
    status = adapter.wait_for_confirmation(signed, timeout=30)
    assert status.state.value == "CONFIRMED"
    assert status.fee is not None and status.fee <= judged.amount


def test_a_base_fee_above_the_judged_maximum_refuses(anvil_env: EvmEnv) -> None:
    adapter = anvil_env.adapter
    _secret, sender, to = _setup(anvil_env)
    judged = adapter.fee_quote(adapter.build(Transfer(to=to, amount=1), sender, nonce=0))
    assert judged.max_fee_per_gas is not None
    _raise_base_fee(anvil_env, 10 * judged.max_fee_per_gas)
    rebuilt = adapter.build(Transfer(to=to, amount=1), sender, nonce=0)
    assert adapter.cap_fee(rebuilt, judged) is None
    with pytest.raises(PlanRefusedError) as caught:
        hold_fee(adapter, rebuilt, {"network_fee": fee_to_json(judged)})
    assert caught.value.code == "FEE_ABOVE_JUDGED"


def test_cap_fee_never_raises_a_fee_and_refuses_foreign_transactions(anvil_env: EvmEnv) -> None:
    adapter = anvil_env.adapter
    _secret, sender, to = _setup(anvil_env)
    unsigned = adapter.build(Transfer(to=to, amount=1), sender)
    quote = adapter.fee_quote(unsigned)
    generous = FeeQuote(quote.amount * 10, "maximum", quote.gas_limit, quote.max_fee_per_gas * 10)  # type: ignore[operator]
    assert adapter.cap_fee(unsigned, generous) is unsigned
    with pytest.raises(InvalidInputError):
        adapter.cap_fee(UnsignedTx(chain="solana", sender=sender, payload={}), quote)
