"""The chain adapter contract: what every backend must do, checked through the ports only.

Each test runs on litesvm, solana-rpc, eth-tester and anvil (see ``conftest.adapter``) and
uses nothing but the ``ChainAdapter`` and ``LocalChainControl`` protocols, plus per-chain
amounts from :class:`ChainProfile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from waiaas.chains.base import (
    ChainAdapter,
    ChainTxState,
    ChainTxStatus,
    LocalChainControl,
    SignedTx,
    UnsignedTx,
)
from waiaas.errors import (
    InsufficientFundsError,
    InvalidAddressError,
    InvalidInputError,
    PermanentChainError,
)
from waiaas.types import AccountSpec, Approve, ContractCall, TokenTransfer, Transfer

MEMO_PROGRAM = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"


@dataclass(frozen=True)
class ChainProfile:
    """Amounts and requests that differ per chain family, for chain-agnostic tests.

    Attributes:
        chain: the chain family.
        fund: native amount given to a fresh sender (covers amounts and fees).
        amount: native amount of a test transfer (above Solana's rent-exempt minimum).
        token_decimals: decimals of the test token.
    """

    chain: str
    fund: int
    amount: int
    token_decimals: int = 6

    def contract_call(self, sender: str, token: str, to: str, amount: int) -> ContractCall:
        """A ContractCall that really executes code: EVM, the token's ``transfer(to, amount)``
        as raw calldata; Solana, a memo program instruction signed by the sender."""
        if self.chain == "evm":
            from eth_abi.abi import encode

            data = bytes.fromhex("a9059cbb") + encode(["address", "uint256"], [to, amount])
            return ContractCall(to=token, data=data)
        return ContractCall(
            to=MEMO_PROGRAM,
            data=b"waiaas contract suite",
            accounts=(AccountSpec(pubkey=sender, is_signer=True, is_writable=False),),
        )


PROFILES = {
    "evm": ChainProfile(chain="evm", fund=10**18, amount=10**15),
    "solana": ChainProfile(chain="solana", fund=10 * 10**9, amount=10_000_000),
}


@pytest.fixture
def profile(adapter: Any) -> ChainProfile:
    """The :class:`ChainProfile` of the current adapter's chain."""
    return PROFILES[adapter.chain]


def _funded(adapter: Any, profile: ChainProfile) -> tuple[bytes, str]:
    secret, address = adapter.generate_secret()
    adapter.fund(address, profile.fund)
    return secret, address


def _send(adapter: Any, request: Any, sender: str, secret: bytes) -> tuple[SignedTx, ChainTxStatus]:
    unsigned = adapter.build(request, sender)
    signed = adapter.sign(unsigned, secret)
    assert adapter.submit(signed) == signed.tx_hash
    status = adapter.wait_for_confirmation(signed, timeout=30)
    return signed, status


def _confirmed(status: ChainTxStatus) -> None:
    assert status.state is ChainTxState.CONFIRMED, status
    assert status.error is None


def test_implements_the_ports(adapter: Any) -> None:
    """Every backend satisfies ChainAdapter and, on test chains, LocalChainControl."""
    assert isinstance(adapter, ChainAdapter)
    assert isinstance(adapter, LocalChainControl)
    assert adapter.chain in ("solana", "evm")
    assert isinstance(adapter.network, str) and adapter.network


def test_generate_secret_and_address_of_agree(adapter: Any) -> None:
    """A generated key's address is what address_of derives, and is already normalised."""
    secret, address = adapter.generate_secret()
    assert isinstance(secret, bytes) and len(secret) == 32
    assert adapter.address_of(secret) == address
    assert adapter.validate_address(address) == address
    other_secret, other = adapter.generate_secret()
    assert other != address and other_secret != secret


def test_address_validation_round_trip(adapter: Any) -> None:
    """Normalising is idempotent; garbage, empty and wrong-length addresses are refused."""
    _, address = adapter.generate_secret()
    normalised = adapter.validate_address(address)
    assert adapter.validate_address(normalised) == normalised
    for bad in ("", "not-an-address", address[:-3], address + "00", "0x" + "zz" * 20):
        with pytest.raises(InvalidAddressError) as info:
            adapter.validate_address(bad)
        assert info.value.chain == adapter.chain
    with pytest.raises(InvalidInputError):
        adapter.validate_address(12345)


def test_fund_sets_native_balance(adapter: Any, profile: ChainProfile) -> None:
    """fund() adds exactly the amount; an unknown address holds 0."""
    _, address = adapter.generate_secret()
    assert adapter.get_balance(address) == 0
    adapter.fund(address, profile.fund)
    assert adapter.get_balance(address) == profile.fund
    adapter.fund(address, profile.amount)
    assert adapter.get_balance(address) == profile.fund + profile.amount


def test_native_transfer_exact_balances(adapter: Any, profile: ChainProfile) -> None:
    """Build, estimate, simulate, sign, submit, confirm: the recipient gains exactly the
    amount and the sender loses exactly amount + the fee the status reports."""
    secret, sender = _funded(adapter, profile)
    _, recipient = adapter.generate_secret()
    request = Transfer(to=recipient, amount=profile.amount)

    unsigned = adapter.build(request, sender)
    assert isinstance(unsigned, UnsignedTx)
    assert unsigned.sender == sender and unsigned.chain == adapter.chain
    estimate = adapter.estimate_fee(unsigned)
    assert isinstance(estimate, int) and estimate > 0
    simulation = adapter.simulate(unsigned)
    assert simulation.success, simulation.error
    assert simulation.error is None

    signed = adapter.sign(unsigned, secret)
    assert isinstance(signed.raw, bytes) and signed.raw
    assert adapter.submit(signed) == signed.tx_hash
    status = adapter.wait_for_confirmation(signed, timeout=30)
    _confirmed(status)
    assert isinstance(status.fee, int) and status.fee > 0
    assert adapter.get_status(signed).state is ChainTxState.CONFIRMED

    assert adapter.get_balance(recipient) == profile.amount
    assert adapter.get_balance(sender) == profile.fund - profile.amount - status.fee


def test_token_create_mint_transfer(adapter: Any, profile: ChainProfile) -> None:
    """A test token is created and minted; a token transfer moves exact base units."""
    secret, sender = _funded(adapter, profile)
    _, recipient = adapter.generate_secret()
    token = adapter.create_test_token(decimals=profile.token_decimals)
    assert adapter.get_token_balance(sender, token) == 0
    adapter.mint_test_token(token, sender, 1_000_000)
    assert adapter.get_token_balance(sender, token) == 1_000_000

    _, status = _send(
        adapter,
        TokenTransfer(token=token, to=recipient, amount=250_000, decimals=profile.token_decimals),
        sender,
        secret,
    )
    _confirmed(status)
    assert adapter.get_token_balance(sender, token) == 750_000
    assert adapter.get_token_balance(recipient, token) == 250_000


def test_approve_confirms(adapter: Any, profile: ChainProfile) -> None:
    """An approval of a spender over the sender's tokens lands and moves no tokens."""
    secret, sender = _funded(adapter, profile)
    _, spender = adapter.generate_secret()
    token = adapter.create_test_token(decimals=profile.token_decimals)
    adapter.mint_test_token(token, sender, 500)
    _, status = _send(adapter, Approve(token=token, spender=spender, amount=300), sender, secret)
    _confirmed(status)
    assert adapter.get_token_balance(sender, token) == 500
    assert adapter.get_token_balance(spender, token) == 0


def test_contract_call_executes(adapter: Any, profile: ChainProfile) -> None:
    """A raw contract / program call executes (EVM: token transfer by calldata; Solana: memo)."""
    secret, sender = _funded(adapter, profile)
    _, recipient = adapter.generate_secret()
    token = adapter.create_test_token(decimals=profile.token_decimals)
    adapter.mint_test_token(token, sender, 1_000)
    request = profile.contract_call(sender, token, recipient, 125)
    _, status = _send(adapter, request, sender, secret)
    _confirmed(status)
    if adapter.chain == "evm":
        assert adapter.get_token_balance(recipient, token) == 125
        assert adapter.get_token_balance(sender, token) == 875


def test_simulate_impossible_transfer_reports_mapped_error(
    adapter: Any, profile: ChainProfile
) -> None:
    """Two transfers built while each was affordable; after the first lands the second is
    impossible: simulate reports failure with InsufficientFundsError, submit refuses it."""
    secret, sender = _funded(adapter, profile)
    _, recipient = adapter.generate_secret()
    half = profile.fund // 2
    first = adapter.build(Transfer(to=recipient, amount=half), sender)
    second = adapter.build(Transfer(to=recipient, amount=half + profile.amount), sender)

    first_signed = adapter.sign(first, secret)
    adapter.submit(first_signed)
    _confirmed(adapter.wait_for_confirmation(first_signed, timeout=30))

    result = adapter.simulate(second)
    assert result.success is False
    assert isinstance(result.error, InsufficientFundsError), result.error
    assert result.error.kind == "permanent"

    with pytest.raises(InsufficientFundsError):
        signed = adapter.sign(second, secret)
        adapter.submit(signed)
        status = adapter.wait_for_confirmation(signed, timeout=30)
        if status.error is not None:
            raise status.error
    assert adapter.get_balance(recipient) == half


def test_insufficient_funds_is_refused(adapter: Any, profile: ChainProfile) -> None:
    """A transfer above the balance fails with InsufficientFundsError and moves nothing."""
    secret, sender = _funded(adapter, profile)
    _, recipient = adapter.generate_secret()
    with pytest.raises(InsufficientFundsError) as info:
        unsigned = adapter.build(Transfer(to=recipient, amount=profile.fund * 2), sender)
        signed = adapter.sign(unsigned, secret)
        adapter.submit(signed)
        status = adapter.wait_for_confirmation(signed, timeout=30)
        if status.error is not None:
            raise status.error
    assert isinstance(info.value, PermanentChainError)
    assert info.value.chain == adapter.chain
    assert adapter.get_balance(recipient) == 0


def test_submitting_the_same_bytes_twice_spends_once(adapter: Any, profile: ChainProfile) -> None:
    """Re-sending identical signed bytes (before and after confirmation) is safe."""
    secret, sender = _funded(adapter, profile)
    _, recipient = adapter.generate_secret()
    signed = adapter.sign(
        adapter.build(Transfer(to=recipient, amount=profile.amount), sender), secret
    )
    assert adapter.submit(signed) == signed.tx_hash
    assert adapter.submit(signed) == signed.tx_hash
    status = adapter.wait_for_confirmation(signed, timeout=30)
    _confirmed(status)
    assert adapter.submit(signed) == signed.tx_hash
    assert adapter.get_balance(recipient) == profile.amount
    assert adapter.get_balance(sender) == profile.fund - profile.amount - status.fee


def test_status_of_never_submitted_tx(adapter: Any, profile: ChainProfile) -> None:
    """A signed transaction that was never sent is NOT_FOUND (or DROPPED), never confirmed."""
    secret, sender = _funded(adapter, profile)
    _, recipient = adapter.generate_secret()
    signed = adapter.sign(
        adapter.build(Transfer(to=recipient, amount=profile.amount), sender), secret
    )
    assert adapter.get_status(signed).state in (ChainTxState.NOT_FOUND, ChainTxState.DROPPED)
    assert adapter.get_balance(recipient) == 0


def test_sign_refuses_a_foreign_key(adapter: Any, profile: ChainProfile) -> None:
    """Signing with a key that is not the sender's is refused and names no secret."""
    secret, sender = _funded(adapter, profile)
    other_secret, _ = adapter.generate_secret()
    _, recipient = adapter.generate_secret()
    unsigned = adapter.build(Transfer(to=recipient, amount=profile.amount), sender)
    with pytest.raises(InvalidInputError) as info:
        adapter.sign(unsigned, other_secret)
    text = str(info.value) + repr(info.value.to_dict())
    assert other_secret.hex() not in text and secret.hex() not in text


def test_fee_quote_bounds_the_fee_paid(adapter: Any, profile: ChainProfile) -> None:
    """fee_quote reads the built transaction: on EVM the maximum (gas limit times max fee
    per gas) is not exceeded by the fee charged; on Solana the quote is what is charged. A
    transaction built elsewhere is refused."""
    from waiaas.chains.base import SupportsFeeQuote

    assert isinstance(adapter, SupportsFeeQuote)
    secret, sender = _funded(adapter, profile)
    _, recipient = adapter.generate_secret()
    unsigned = adapter.build(Transfer(to=recipient, amount=profile.amount), sender)
    quote = adapter.fee_quote(unsigned)
    signed = adapter.sign(unsigned, secret)
    adapter.submit(signed)
    status = adapter.wait_for_confirmation(signed, timeout=30)
    _confirmed(status)
    assert isinstance(status.fee, int) and status.fee > 0
    if profile.chain == "evm":
        assert quote.basis == "maximum" and quote.gas_limit == 21_000
        assert quote.max_fee_per_gas is not None
        assert quote.amount == quote.gas_limit * quote.max_fee_per_gas
        assert status.fee <= quote.amount
    else:
        assert quote.basis == "exact" and quote.gas_limit is None
        assert status.fee == quote.amount
    foreign = UnsignedTx(chain="elsewhere", sender=sender, payload={})
    with pytest.raises(InvalidInputError):
        adapter.fee_quote(foreign)
