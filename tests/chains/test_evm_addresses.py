"""EVM address rules: EIP-55 checksums, accepted spellings, refused ones."""

from __future__ import annotations

import pytest
from evm_fixtures import EvmEnv

from waiaas.chains.evm.addresses import ZERO_ADDRESS, normalize_address, to_checksum
from waiaas.errors import InvalidAddressError, InvalidInputError

# The test vectors of EIP-55 itself.
EIP55_VECTORS = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
]


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_eip55_vectors_round_trip(address: str) -> None:
    """Every EIP-55 vector is accepted as is and in all-lower / all-upper spelling."""
    assert normalize_address(address) == address
    assert normalize_address(address.lower()) == address
    assert normalize_address("0x" + address[2:].upper()) == address
    assert to_checksum(address[2:]) == address


def test_agrees_with_eth_utils() -> None:
    """Our checksum and eth_utils' agree on random addresses (two routes, one answer)."""
    import os

    from eth_utils.address import to_checksum_address

    for _ in range(200):
        body = os.urandom(20).hex()
        assert normalize_address("0x" + body) == to_checksum_address("0x" + body)


@pytest.mark.parametrize("address", EIP55_VECTORS[:6])
def test_wrong_checksum_is_refused(address: str) -> None:
    """Flipping the case of one letter of a checksummed address is refused."""
    body = address[2:]
    index = next(i for i, ch in enumerate(body) if ch.isalpha())
    flipped = body[:index] + body[index].swapcase() + body[index + 1 :]
    with pytest.raises(InvalidAddressError) as info:
        normalize_address("0x" + flipped)
    assert info.value.chain == "evm"
    assert "checksum" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0x",
        "52908400098527886E0F7030069857D2E4169EE7",  # no prefix
        "0X52908400098527886E0F7030069857D2E4169EE7",  # upper-case prefix
        "0x52908400098527886E0F7030069857D2E4169EE",  # 39 digits
        "0x52908400098527886E0F7030069857D2E4169EE77",  # 41 digits
        "0x52908400098527886E0F7030069857D2E4169EEG",  # not hex
        " 0x52908400098527886E0F7030069857D2E4169EE7",  # whitespace
        "0x52908400098527886E0F7030069857D2E4169EE7\n",
    ],
)
def test_malformed_addresses_are_refused(bad: str) -> None:
    """Anything but 0x + 40 hex digits is refused with the offending field named."""
    with pytest.raises(InvalidAddressError) as info:
        normalize_address(bad, field="to")
    assert info.value.field == "to"


def test_non_string_is_refused() -> None:
    """Bytes and numbers are not addresses."""
    for bad in (b"\x11" * 20, 0x1234, None):
        with pytest.raises(InvalidInputError):
            normalize_address(bad)


def test_adapter_validate_address(tester_env: EvmEnv) -> None:
    """The adapter's validate_address is the same rule."""
    adapter = tester_env.adapter
    assert adapter.validate_address(EIP55_VECTORS[4].lower()) == EIP55_VECTORS[4]
    assert adapter.validate_address(ZERO_ADDRESS) == ZERO_ADDRESS
    with pytest.raises(InvalidAddressError):
        adapter.validate_address("0x52908400098527886e0F7030069857D2E4169EE7")
