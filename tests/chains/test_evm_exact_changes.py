"""The check before signing without a simulation: an EVM plain value transfer with exactly
21,000 gas to an account without code has balance changes known exactly
(``EvmAdapter.exact_balance_changes``); every other transaction is still simulated, and both
are compared with the judged effects the same way (``plans.check_simulation``).

The attempts to get around it: calldata smuggled with 21,000 gas, more gas, a recipient
holding code (built to, or never read), the sender itself, a stale "no code" answer, and a
backend that cannot simulate under ``require_simulation``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from test_evm_errors import BUILD_ANSWERS, FakeNode

from waiaas.chains.base import BalanceChanges, SupportsExactBalanceChanges, UnsignedTx
from waiaas.chains.evm import EvmAdapter, EvmDevAdapter
from waiaas.chains.evm import adapter as adapter_module
from waiaas.chains.evm.backends import SimBalances
from waiaas.errors import ChainError
from waiaas.pipeline import plans
from waiaas.plan import NativeTransfer, decode_plan
from waiaas.types import Transfer

AMOUNT = 10**15
# init code that deploys the one-byte runtime STOP: value sent to it is kept, and a plain
# transfer to it needs no more than 21,000 gas
STOP_CONTRACT = bytes.fromhex("6001600c60003960016000f300")


class _Spy:
    """Counts the backend's simulations (and can make the backend unable to simulate)."""

    def __init__(self, adapter: EvmAdapter, *, able: bool = True) -> None:
        self.calls = 0
        self._inner = adapter._backend.simulate_balances
        self._able = able

    def __call__(self, *args: Any, **kwargs: Any) -> SimBalances | None:
        self.calls += 1
        return self._inner(*args, **kwargs) if self._able else None


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EvmDevAdapter, str, _Spy]]:
    """A funded sender on a fresh eth-tester chain, its backend's simulations counted."""
    with EvmAdapter.local() as evm:
        _, sender = evm.generate_secret()
        evm.fund(sender, 10**20)
        spy = _Spy(evm)
        monkeypatch.setattr(evm._backend, "simulate_balances", spy)
        yield evm, sender, spy


def _effects(evm: EvmAdapter, unsigned: UnsignedTx) -> tuple[Any, ...]:
    return tuple(decode_plan(evm.plan_of(unsigned), lookup=evm.account_lookup()))


def _with(unsigned: UnsignedTx, **changes: Any) -> UnsignedTx:
    return dataclasses.replace(unsigned, payload={**unsigned.payload, **changes})


def _stop_contract(evm: EvmDevAdapter) -> str:
    receipt = evm._send_as_deployer(None, STOP_CONTRACT)
    assert receipt.contract_address is not None
    return evm.validate_address(receipt.contract_address)


def test_a_plain_transfer_is_checked_without_a_simulation(
    chain: tuple[EvmDevAdapter, str, _Spy],
) -> None:
    """Built to a fresh account: 21,000 gas, no calldata; the changes are known (the value
    leaves, no token moves), they agree with the effects and nothing is simulated. The same
    figures a simulation gives."""
    evm, sender, spy = chain
    unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=AMOUNT), sender)
    assert unsigned.payload["gas"] == 21_000 and unsigned.payload["data"] == "0x"
    known = evm.exact_balance_changes(unsigned)
    assert known == BalanceChanges(native=-AMOUNT, tokens={}, fee=unsigned.fee_estimate)
    effects = _effects(evm, unsigned)
    assert plans.check_simulation(evm, unsigned, effects, required=True) == "ok"
    assert spy.calls == 0
    simulated = evm.simulate_balance_changes(unsigned)
    assert simulated is not None and simulated.native == known.native
    assert dict(simulated.tokens) == {}


@pytest.mark.parametrize(
    "effects",
    [(), (NativeTransfer("S", "R", AMOUNT - 1),)],
    ids=["no effect", "less than the value"],
)
def test_known_changes_the_effects_do_not_explain_are_refused(
    chain: tuple[EvmDevAdapter, str, _Spy], effects: tuple[Any, ...]
) -> None:
    """The known changes go through the comparison a simulation's would: an outflow the
    judged effects do not explain is refused (SIMULATION_MISMATCH), with no simulation."""
    evm, sender, spy = chain
    unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=AMOUNT), sender)
    with pytest.raises(plans.PlanRefusedError) as info:
        plans.check_simulation(evm, unsigned, effects, required=False)
    assert info.value.code == "SIMULATION_MISMATCH"
    assert spy.calls == 0


class _ThirdParty:
    """A third-party adapter's capability: only the public protocol, answering ``changes``."""

    def __init__(self, changes: BalanceChanges | None) -> None:
        self.changes = changes

    def exact_balance_changes(self, unsigned: UnsignedTx) -> BalanceChanges | None:
        return self.changes


def test_the_capability_is_a_public_protocol_any_adapter_can_offer(
    chain: tuple[EvmDevAdapter, str, _Spy],
) -> None:
    """The EVM adapter offers ``SupportsExactBalanceChanges``; another adapter offering it
    gets the same comparison: an outflow its answer shows and the effects do not explain is
    refused, and no answer without a simulation is unavailable (refused when required)."""
    evm, sender, _ = chain
    assert isinstance(evm, SupportsExactBalanceChanges)
    unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=AMOUNT), sender)
    effects = (NativeTransfer("S", "R", AMOUNT),)
    honest: Any = _ThirdParty(BalanceChanges(native=-AMOUNT, tokens={}))
    assert isinstance(honest, SupportsExactBalanceChanges)
    assert plans.check_simulation(honest, unsigned, effects, required=True) == "ok"
    more: Any = _ThirdParty(BalanceChanges(native=-AMOUNT - 1, tokens={}))
    with pytest.raises(plans.PlanRefusedError) as info:
        plans.check_simulation(more, unsigned, effects, required=False)
    assert info.value.code == "SIMULATION_MISMATCH"
    silent: Any = _ThirdParty(None)
    assert plans.check_simulation(silent, unsigned, effects, required=False) == "unavailable"
    with pytest.raises(plans.PlanRefusedError) as info:
        plans.check_simulation(silent, unsigned, effects, required=True)
    assert info.value.code == "SIMULATION_UNAVAILABLE"


def test_calldata_with_21000_gas_is_simulated(chain: tuple[EvmDevAdapter, str, _Spy]) -> None:
    """Calldata smuggled into a 21,000-gas transfer: not known, so simulated (the chain
    refuses a transaction whose calldata costs more than its gas)."""
    evm, sender, spy = chain
    unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=AMOUNT), sender)
    smuggled = _with(unsigned, data="0xa9059cbb" + "00" * 64)
    assert evm.exact_balance_changes(smuggled) is None
    with pytest.raises((plans.PlanRefusedError, ChainError)):
        plans.check_simulation(evm, smuggled, _effects(evm, unsigned), required=False)
    assert spy.calls == 1


def test_more_gas_is_simulated(chain: tuple[EvmDevAdapter, str, _Spy]) -> None:
    """A transfer with more than 21,000 gas (code could run): simulated."""
    evm, sender, spy = chain
    unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=AMOUNT), sender)
    more = _with(unsigned, gas=21_001)
    assert evm.exact_balance_changes(more) is None
    assert plans.check_simulation(evm, more, _effects(evm, more), required=False) == "ok"
    assert spy.calls == 1


def test_a_recipient_with_code_is_simulated_and_refused_when_unexplained(
    chain: tuple[EvmDevAdapter, str, _Spy],
) -> None:
    """A contract whose code costs no gas gets a 21,000-gas transfer from the build; its
    code is known, so the transfer is simulated, and an outflow the effects do not explain
    is refused by the simulation."""
    evm, sender, spy = chain
    contract = _stop_contract(evm)
    unsigned = evm.build(Transfer(to=contract, amount=AMOUNT), sender)
    assert unsigned.payload["gas"] == 21_000
    assert evm.exact_balance_changes(unsigned) is None
    assert plans.check_simulation(evm, unsigned, _effects(evm, unsigned), required=True) == "ok"
    assert spy.calls == 1
    with pytest.raises(plans.PlanRefusedError) as info:
        plans.check_simulation(evm, unsigned, (), required=True)
    assert info.value.code == "SIMULATION_MISMATCH"
    assert spy.calls == 2


def test_a_recipient_not_read_is_simulated(chain: tuple[EvmDevAdapter, str, _Spy]) -> None:
    """A transfer whose recipient this adapter never read (here: redirected to a contract
    after the build) is simulated."""
    evm, sender, spy = chain
    contract = _stop_contract(evm)
    evm._contracts.discard(contract)  # nothing known about it
    unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=AMOUNT), sender)
    redirected = _with(unsigned, to=contract)
    assert evm.exact_balance_changes(redirected) is None
    with pytest.raises(plans.PlanRefusedError):
        plans.check_simulation(evm, redirected, (), required=False)
    assert spy.calls == 1


def test_a_stale_answer_and_the_sender_itself_are_simulated(
    chain: tuple[EvmDevAdapter, str, _Spy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transfer to oneself is simulated, and "no code" is believed for a moment only."""
    evm, sender, spy = chain
    to_self = evm.build(Transfer(to=sender, amount=AMOUNT), sender)
    assert to_self.payload["gas"] == 21_000
    assert evm.exact_balance_changes(to_self) is None
    unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=AMOUNT), sender)
    assert evm.exact_balance_changes(unsigned) is not None
    monkeypatch.setattr(adapter_module, "_NO_CODE_SECONDS", 0.0)
    assert evm.exact_balance_changes(unsigned) is None
    assert plans.check_simulation(evm, unsigned, _effects(evm, unsigned), required=True) == "ok"
    assert spy.calls == 1


def test_require_simulation_on_a_backend_that_cannot_simulate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``require_simulation`` with a backend that cannot simulate: a plain transfer, whose
    changes are known, passes; a transfer that would have to be simulated is refused
    (SIMULATION_UNAVAILABLE) as before."""
    with EvmAdapter.local() as evm:
        _, sender = evm.generate_secret()
        evm.fund(sender, 10**20)
        spy = _Spy(evm, able=False)
        monkeypatch.setattr(evm._backend, "simulate_balances", spy)
        unsigned = evm.build(Transfer(to=evm.generate_secret()[1], amount=AMOUNT), sender)
        effects = _effects(evm, unsigned)
        assert plans.check_simulation(evm, unsigned, effects, required=True) == "ok"
        assert spy.calls == 0
        more = _with(unsigned, gas=30_000)
        with pytest.raises(plans.PlanRefusedError) as info:
            plans.check_simulation(evm, more, effects, required=True)
        assert info.value.code == "SIMULATION_UNAVAILABLE"
        assert plans.check_simulation(evm, more, effects, required=False) == "unavailable"
        assert spy.calls == 2


@pytest.fixture
def fake_node() -> Iterator[tuple[FakeNode, EvmAdapter]]:
    node = FakeNode()
    try:
        with EvmAdapter.rpc(node.url, chain_id=31337, network="anvil", timeout=0.3) as evm:
            evm.connect()
            yield node, evm
    finally:
        node.close()


def test_a_node_reads_the_recipient_code_with_the_build(
    fake_node: tuple[FakeNode, EvmAdapter],
) -> None:
    """JSON-RPC: the recipient's code comes in the build's one batch; without code the
    transfer's changes are known (the node has no debug API, nothing else is asked); with
    code they are not; a node that fails ``eth_getCode`` still builds, changes unknown."""
    node, evm = fake_node
    node.answers.update(BUILD_ANSWERS)
    bob = "0x" + "b0" * 20
    unsigned = evm.build(Transfer(to=bob, amount=5), "0x" + "ab" * 20)
    assert node.batches == 1
    known = evm.exact_balance_changes(unsigned)
    assert known is not None and known.native == -5 and dict(known.tokens) == {}
    assert plans.check_simulation(evm, unsigned, _effects(evm, unsigned), required=True) == "ok"
    assert node.batches == 1
    carol = "0x" + "c0" * 20
    node.answers["eth_getCode"] = "0x00"
    unsigned = evm.build(Transfer(to=carol, amount=5), "0x" + "ab" * 20)
    assert evm.exact_balance_changes(unsigned) is None
    del node.answers["eth_getCode"]
    node.refuse_batch = True
    dave = "0x" + "d0" * 20
    unsigned = evm.build(Transfer(to=dave, amount=5), "0x" + "ab" * 20)
    assert unsigned.payload["gas"] == 21_000
    assert evm.exact_balance_changes(unsigned) is None
