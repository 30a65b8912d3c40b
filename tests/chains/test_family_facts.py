"""The shipped adapters declare their family facts through the optional protocols of
``waiaas.chains.base``, and the pure core's defaults agree with them."""

from __future__ import annotations

import pytest

from waiaas import _display
from waiaas.chains import families
from waiaas.chains.base import (
    NativeAsset,
    SupportsBatch,
    SupportsCallGuard,
    SupportsNativeAsset,
    batch_supported,
    call_refusal,
    native_asset_of,
)
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.solana import SolanaAdapter
from waiaas.errors import InvalidInputError
from waiaas.plan.describe import NATIVE_UNITS
from waiaas.policy.model import NATIVE_DECIMALS, NATIVE_SYMBOLS

ERC20_TRANSFER = bytes.fromhex("a9059cbb") + bytes(64)


def test_the_shipped_adapters_implement_the_family_protocols() -> None:
    for cls in (SolanaAdapter, EvmAdapter):
        adapter = cls.__new__(cls)  # the facts are class attributes: no backend needed
        assert isinstance(adapter, SupportsNativeAsset)
        assert isinstance(adapter, SupportsBatch)
        assert isinstance(adapter, SupportsCallGuard)
    assert SolanaAdapter.native_asset == NativeAsset("SOL", 9)
    assert EvmAdapter.native_asset == NativeAsset("ETH", 18)
    assert SolanaAdapter.supports_batch is True and EvmAdapter.supports_batch is False


def test_the_pure_core_defaults_agree_with_the_adapters() -> None:
    declared = {cls.chain: native_asset_of(cls) for cls in (SolanaAdapter, EvmAdapter)}
    assert declared == dict(families.SHIPPED_NATIVE)
    for chain, coin in declared.items():
        assert coin is not None
        assert _display.NATIVE_DECIMALS[chain] == NATIVE_DECIMALS[chain] == coin.decimals
        assert _display.NATIVE_SYMBOLS[chain] == NATIVE_SYMBOLS[chain] == coin.symbol
        assert NATIVE_UNITS[chain] == (coin.decimals, coin.symbol)
    assert set(_display.NATIVE_DECIMALS) == set(declared)


@pytest.mark.parametrize(
    ("cls", "to", "data", "field"),
    [
        (SolanaAdapter, "11111111111111111111111111111111", b"\x02", "to"),
        (SolanaAdapter, "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", b"\x03", "to"),
        (SolanaAdapter, "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb", b"\x04", "to"),
        (EvmAdapter, "0x" + "11" * 20, ERC20_TRANSFER, "data"),
        (EvmAdapter, "0x" + "11" * 20, bytes.fromhex("23b872dd") + bytes(96), "data"),
        (EvmAdapter, "0x" + "11" * 20, bytes.fromhex("095ea7b3") + bytes(64), "data"),
        (EvmAdapter, "0x" + "11" * 20, bytes.fromhex("39509351") + bytes(64), "data"),
    ],
)
def test_each_guard_refuses_its_disguised_transfers(
    cls: type, to: str, data: bytes, field: str
) -> None:
    adapter = cls.__new__(cls)  # the guard is pure: no backend needed
    refused = call_refusal(adapter, to, data)
    assert refused is not None and refused[0] == field
    assert "is refused" in refused[1]


@pytest.mark.parametrize(
    ("cls", "to", "data"),
    [
        (SolanaAdapter, "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", b"hi"),
        (EvmAdapter, "0x" + "11" * 20, bytes.fromhex("deadbeef")),
        (EvmAdapter, "0x" + "11" * 20, b"\xa9\x05"),  # shorter than a selector
    ],
)
def test_other_calls_pass_the_guards(cls: type, to: str, data: bytes) -> None:
    assert call_refusal(cls.__new__(cls), to, data) is None


def test_the_fallbacks() -> None:
    class Nothing:
        chain = "other"

    class Lies:
        native_asset = ("FAKE", 3)  # not a NativeAsset: ignored
        supports_batch = "yes"  # not True: no batch

    for adapter in (Nothing(), Lies()):
        assert native_asset_of(adapter) is None
        assert not batch_supported(adapter)
        assert call_refusal(adapter, "anything", b"\xa9\x05\x9c\xbb") is None
    assert families.native_asset_for("other", [Nothing()]) is None
    assert families.native_asset_for("solana", [Nothing()]) == NativeAsset("SOL", 9)


@pytest.mark.parametrize(
    ("symbol", "decimals"),
    [("", 9), ("TWO WORDS", 9), ("X" * 17, 9), ("OK", -1), ("OK", 37), ("OK", True), (1, 9)],
)
def test_a_native_asset_is_validated(symbol: object, decimals: object) -> None:
    with pytest.raises(InvalidInputError):
        NativeAsset(symbol, decimals)  # type: ignore[arg-type]
