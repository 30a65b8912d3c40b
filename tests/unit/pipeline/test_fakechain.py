"""The in-memory chain the stage tests run on behaves as a chain: it implements the port,
checks signatures, runs a hash once, consumes nonces and refuses stale bytes."""

from __future__ import annotations

import dataclasses

import pytest
from fakechain import FEE, FakeChain, PlannedFakeChain, new_address

from waiaas.chains.base import (
    ChainAdapter,
    ChainTxState,
    SupportsNativeAsset,
    SupportsNonces,
    SupportsPlans,
)
from waiaas.errors import InvalidInputError, StaleTransactionError
from waiaas.types import Transfer


def _funded(chain: FakeChain) -> tuple[bytes, str]:
    secret, address = chain.generate_secret()
    chain.fund(address, 1_000)
    return secret, address


def test_it_implements_the_port() -> None:
    plain, planned = FakeChain(), PlannedFakeChain()
    for chain in (plain, planned):
        for port in (ChainAdapter, SupportsNonces, SupportsNativeAsset):
            assert isinstance(chain, port)
    assert isinstance(planned, SupportsPlans) and not isinstance(plain, SupportsPlans)


def test_a_transfer_runs_once_and_uses_its_nonce() -> None:
    chain = FakeChain()
    secret, sender = _funded(chain)
    dest = new_address()
    signed = chain.sign(chain.build(Transfer(to=dest, amount=100), sender), secret)
    assert chain.get_status(signed).state == ChainTxState.NOT_FOUND
    for _ in range(2):  # the same bytes again change nothing
        assert chain.submit(signed) == signed.tx_hash
    assert chain.get_status(signed).state == ChainTxState.CONFIRMED
    assert (chain.get_balance(sender), chain.get_balance(dest)) == (1_000 - 100 - FEE, 100)
    assert chain.submissions == {signed.tx_hash: 2} and chain.pending_nonce(sender) == 1


def test_it_refuses_bytes_not_signed_by_the_sender() -> None:
    chain = FakeChain()
    secret, sender = _funded(chain)
    other, _ = chain.generate_secret()
    unsigned = chain.build(Transfer(to=new_address(), amount=1), sender)
    with pytest.raises(InvalidInputError):
        chain.sign(unsigned, other)
    signed = chain.sign(unsigned, secret)
    forged = signed.raw.replace(b'"value":1', b'"value":9')
    with pytest.raises(InvalidInputError):
        chain.submit(dataclasses.replace(signed, raw=forged))
    assert chain.get_balance(sender) == 1_000


def test_bytes_of_an_older_epoch_are_stale_and_can_never_land() -> None:
    chain = FakeChain()
    secret, sender = _funded(chain)
    signed = chain.sign(chain.build(Transfer(to=new_address(), amount=1), sender), secret)
    chain.stale = 1
    with pytest.raises(StaleTransactionError):
        chain.submit(signed)
    assert chain.get_status(signed).state == ChainTxState.DROPPED
    with pytest.raises(StaleTransactionError):
        chain.submit(signed)
    assert chain.landed() == [] and chain.get_balance(sender) == 1_000
