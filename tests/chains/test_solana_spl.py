"""SPL, ATA and Memo builders (byte layouts) and the mint / token-account parsers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.instruction import AccountMeta
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.token.state import Mint, TokenAccount, TokenAccountState

from waiaas.chains.solana import spl

A, B, C, D = (Keypair().pubkey() for _ in range(4))


def metas(*flags: tuple[Pubkey, bool, bool]) -> list[AccountMeta]:
    return [AccountMeta(key, is_signer=s, is_writable=w) for key, s, w in flags]


def test_transfer_checked_layout() -> None:
    """Tag 12, u64 amount, u8 decimals; source w, mint r, destination w, owner signer."""
    ix = spl.transfer_checked(A, B, C, D, 2**64 - 1, 9)
    assert ix.program_id == spl.TOKEN_PROGRAM_ID
    assert bytes(ix.data) == bytes([12]) + b"\xff" * 8 + bytes([9])
    assert ix.accounts == metas(
        (A, False, True), (B, False, False), (C, False, True), (D, True, False)
    )
    ix22 = spl.transfer_checked(A, B, C, D, 1, 0, program_id=spl.TOKEN_2022_PROGRAM_ID)
    assert ix22.program_id == spl.TOKEN_2022_PROGRAM_ID


def test_approve_and_mint_to_layouts() -> None:
    """approve_checked is tag 13, mint_to_checked tag 14, with their account orders."""
    approve = spl.approve_checked(A, B, C, D, 300, 6)
    assert bytes(approve.data) == struct.pack("<BQB", 13, 300, 6)
    assert approve.accounts == metas(
        (A, False, True), (B, False, False), (C, False, False), (D, True, False)
    )
    mint_to = spl.mint_to_checked(A, B, C, 5, 2)
    assert bytes(mint_to.data) == struct.pack("<BQB", 14, 5, 2)
    assert mint_to.accounts == metas((A, False, True), (B, False, True), (C, True, False))


def test_initialize_mint2_layout() -> None:
    """Tag 20, decimals, authority, COption freeze authority (none -> 33 zero bytes)."""
    plain = spl.initialize_mint2(A, 6, B)
    assert bytes(plain.data) == bytes([20, 6]) + bytes(B) + b"\x00" * 33
    frozen = spl.initialize_mint2(A, 0, B, C)
    assert bytes(frozen.data) == bytes([20, 0]) + bytes(B) + b"\x01" + bytes(C)
    assert plain.accounts == metas((A, False, True))


def test_create_ata_idempotent_layout_and_address() -> None:
    """CreateIdempotent is tag 1 with the six accounts; addresses match solders' derivation."""
    for program in (spl.TOKEN_PROGRAM_ID, spl.TOKEN_2022_PROGRAM_ID):
        ata = spl.associated_token_address(B, C, program_id=program)
        assert ata == get_associated_token_address(B, C, program)
        ix = spl.create_associated_token_account_idempotent(A, B, C, program_id=program)
        assert ix.program_id == spl.ASSOCIATED_TOKEN_PROGRAM_ID
        assert bytes(ix.data) == b"\x01"
        assert ix.accounts == metas(
            (A, True, True),
            (ata, False, True),
            (B, False, False),
            (C, False, False),
            (spl.SYSTEM_PROGRAM_ID, False, False),
            (program, False, False),
        )
    assert spl.associated_token_address(B, C) != spl.associated_token_address(
        B, C, program_id=spl.TOKEN_2022_PROGRAM_ID
    )


def test_memo_layout() -> None:
    """Memo v2: UTF-8 data, every listed account a signer."""
    ix = spl.memo("héllo", (A, B))
    assert ix.program_id == spl.MEMO_PROGRAM_ID
    assert bytes(ix.data) == "héllo".encode()
    assert ix.accounts == metas((A, True, False), (B, True, False))


def test_out_of_range_values_are_refused() -> None:
    """Amounts beyond u64 and decimals beyond u8 raise ValueError before any encoding."""
    with pytest.raises(ValueError):
        spl.transfer_checked(A, B, C, D, 2**64, 6)
    with pytest.raises(ValueError):
        spl.approve_checked(A, B, C, D, -1, 6)
    with pytest.raises(ValueError):
        spl.mint_to_checked(A, B, C, 1, 256)
    with pytest.raises(ValueError):
        spl.initialize_mint2(A, 256, B)


optional_key = st.one_of(st.none(), st.binary(min_size=32, max_size=32).map(Pubkey.from_bytes))
u64 = st.integers(min_value=0, max_value=2**64 - 1)


@settings(max_examples=60, deadline=None)
@given(authority=optional_key, supply=u64, decimals=st.integers(0, 255), freeze=optional_key)
def test_parse_mint_agrees_with_solders(
    authority: Pubkey | None, supply: int, decimals: int, freeze: Pubkey | None
) -> None:
    """Our mint parser reads what solders' Mint serialiser writes."""
    data = bytes(Mint(authority, supply, decimals, True, freeze))
    info = spl.parse_mint(data)
    assert (info.mint_authority, info.supply, info.decimals, info.freeze_authority) == (
        authority,
        supply,
        decimals,
        freeze,
    )
    assert info.is_initialized


@settings(max_examples=60, deadline=None)
@given(amount=u64, delegate=optional_key, delegated=u64)
def test_parse_token_account_agrees_with_solders(
    amount: int, delegate: Pubkey | None, delegated: int
) -> None:
    """Our token-account parser reads what solders' TokenAccount serialiser writes."""
    data = bytes(
        TokenAccount(
            mint=A,
            owner=B,
            amount=amount,
            delegate=delegate,
            state=TokenAccountState.Initialized,
            is_native=None,
            delegated_amount=delegated,
            close_authority=None,
        )
    )
    info = spl.parse_token_account(data)
    assert (info.mint, info.owner, info.amount, info.delegate, info.delegated_amount) == (
        A,
        B,
        amount,
        delegate,
        delegated,
    )


def test_parsers_tell_mints_and_token_accounts_apart() -> None:
    """A token account is not a mint and vice versa; Token-2022 extended layouts are read."""
    mint = bytes(Mint(A, 10, 6, True, None))
    account = bytes(
        TokenAccount(
            mint=A,
            owner=B,
            amount=3,
            delegate=None,
            state=TokenAccountState.Initialized,
            is_native=None,
            delegated_amount=0,
            close_authority=None,
        )
    )
    with pytest.raises(ValueError):
        spl.parse_mint(account)
    with pytest.raises(ValueError):
        spl.parse_token_account(mint)
    with pytest.raises(ValueError):
        spl.parse_mint(mint[:-1])
    extended_mint = mint + b"\x00" * (165 - 82) + b"\x01" + b"\x00" * 8
    assert spl.parse_mint(extended_mint).decimals == 6
    extended_account = account + b"\x02" + b"\x07\x00\x00\x00"
    assert spl.parse_token_account(extended_account).amount == 3
    with pytest.raises(ValueError):
        spl.parse_mint(account + b"\x02")
