"""SPL Token, Associated Token Account and Memo instruction builders, and account parsers.

solders has account (de)serialisers but no SPL instruction builders, so the few this adapter
needs are written here from the programs' instruction layouts (little-endian, ``u8`` tag first).
Every builder takes the token program id, so the same code serves SPL Token and Token-2022.

Instruction tags (``spl_token::instruction::TokenInstruction``)::

    12 TransferChecked   amount: u64, decimals: u8
    13 ApproveChecked    amount: u64, decimals: u8
    14 MintToChecked     amount: u64, decimals: u8
    20 InitializeMint2   decimals: u8, mint_authority: Pubkey, freeze_authority: COption<Pubkey>

Associated Token Account program: tag 1 is ``CreateIdempotent`` (a no-op when the account exists).
Memo v2 takes the UTF-8 memo as data and checks that every listed account signed.

Example::

    ix = transfer_checked(source, mint, dest, owner, 250_000, 6, program_id=TOKEN_PROGRAM_ID)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.token import ID as TOKEN_PROGRAM_ID
from solders.token.associated import get_associated_token_address

__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM_ID",
    "COMPUTE_BUDGET_PROGRAM_ID",
    "MEMO_PROGRAM_ID",
    "MINT_SIZE",
    "SYSTEM_PROGRAM_ID",
    "TOKEN_2022_PROGRAM_ID",
    "TOKEN_ACCOUNT_SIZE",
    "TOKEN_PROGRAMS",
    "TOKEN_PROGRAM_ID",
    "MintInfo",
    "TokenAccountInfo",
    "approve_checked",
    "associated_token_address",
    "create_associated_token_account_idempotent",
    "initialize_mint2",
    "memo",
    "mint_to_checked",
    "parse_mint",
    "parse_token_account",
    "transfer_checked",
]

SYSTEM_PROGRAM_ID = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_2022_PROGRAM_ID = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED_TOKEN_PROGRAM_ID = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
COMPUTE_BUDGET_PROGRAM_ID = Pubkey.from_string("ComputeBudget111111111111111111111111111111")

TOKEN_PROGRAMS: frozenset[Pubkey] = frozenset({TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID})
"""The two programs that own SPL mints and token accounts."""

MINT_SIZE = 82
"""Size of a mint account without Token-2022 extensions."""
TOKEN_ACCOUNT_SIZE = 165
"""Size of a token account without Token-2022 extensions."""

_U64_MAX = 2**64 - 1
_ACCOUNT_TYPE_MINT = 1  # Token-2022: byte 165 of an extended account says what it is
_ACCOUNT_TYPE_ACCOUNT = 2

_TRANSFER_CHECKED = 12
_APPROVE_CHECKED = 13
_MINT_TO_CHECKED = 14
_INITIALIZE_MINT2 = 20
_ATA_CREATE_IDEMPOTENT = 1


def _amount_data(tag: int, amount: int, decimals: int) -> bytes:
    if not 0 <= amount <= _U64_MAX:
        raise ValueError(f"amount {amount} does not fit in a u64")
    if not 0 <= decimals <= 255:
        raise ValueError(f"decimals {decimals} does not fit in a u8")
    return struct.pack("<BQB", tag, amount, decimals)


def transfer_checked(
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    owner: Pubkey,
    amount: int,
    decimals: int,
    *,
    program_id: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """``TransferChecked``: move ``amount`` base units from ``source`` to ``destination``.

    The program checks ``decimals`` against the mint, so a wrong guess fails instead of
    moving a different value. ``owner`` signs.
    """
    return Instruction(
        program_id,
        _amount_data(_TRANSFER_CHECKED, amount, decimals),
        [
            AccountMeta(source, is_signer=False, is_writable=True),
            AccountMeta(mint, is_signer=False, is_writable=False),
            AccountMeta(destination, is_signer=False, is_writable=True),
            AccountMeta(owner, is_signer=True, is_writable=False),
        ],
    )


def approve_checked(
    source: Pubkey,
    mint: Pubkey,
    delegate: Pubkey,
    owner: Pubkey,
    amount: int,
    decimals: int,
    *,
    program_id: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """``ApproveChecked``: let ``delegate`` move up to ``amount`` out of ``source``.

    A token account has one delegate; a new approval replaces the previous one, and an
    amount of 0 leaves a delegate that can move nothing.
    """
    return Instruction(
        program_id,
        _amount_data(_APPROVE_CHECKED, amount, decimals),
        [
            AccountMeta(source, is_signer=False, is_writable=True),
            AccountMeta(mint, is_signer=False, is_writable=False),
            AccountMeta(delegate, is_signer=False, is_writable=False),
            AccountMeta(owner, is_signer=True, is_writable=False),
        ],
    )


def mint_to_checked(
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: int,
    decimals: int,
    *,
    program_id: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """``MintToChecked``: create ``amount`` base units in token account ``destination``."""
    return Instruction(
        program_id,
        _amount_data(_MINT_TO_CHECKED, amount, decimals),
        [
            AccountMeta(mint, is_signer=False, is_writable=True),
            AccountMeta(destination, is_signer=False, is_writable=True),
            AccountMeta(authority, is_signer=True, is_writable=False),
        ],
    )


def initialize_mint2(
    mint: Pubkey,
    decimals: int,
    mint_authority: Pubkey,
    freeze_authority: Pubkey | None = None,
    *,
    program_id: Pubkey = TOKEN_PROGRAM_ID,
) -> Instruction:
    """``InitializeMint2`` on an allocated, rent-exempt ``mint`` account owned by ``program_id``."""
    if not 0 <= decimals <= 255:
        raise ValueError(f"decimals {decimals} does not fit in a u8")
    data = struct.pack("<BB", _INITIALIZE_MINT2, decimals) + bytes(mint_authority)
    data += (b"\x01" + bytes(freeze_authority)) if freeze_authority else b"\x00" * 33
    return Instruction(program_id, data, [AccountMeta(mint, is_signer=False, is_writable=True)])


def associated_token_address(
    owner: Pubkey, mint: Pubkey, *, program_id: Pubkey = TOKEN_PROGRAM_ID
) -> Pubkey:
    """The associated token account of wallet ``owner`` for ``mint`` under ``program_id``."""
    return get_associated_token_address(owner, mint, program_id)


def create_associated_token_account_idempotent(
    payer: Pubkey, owner: Pubkey, mint: Pubkey, *, program_id: Pubkey = TOKEN_PROGRAM_ID
) -> Instruction:
    """ATA ``CreateIdempotent``: create ``owner``'s token account for ``mint`` unless it exists.

    ``payer`` signs and pays the account's rent-exempt deposit.
    """
    ata = associated_token_address(owner, mint, program_id=program_id)
    return Instruction(
        ASSOCIATED_TOKEN_PROGRAM_ID,
        bytes([_ATA_CREATE_IDEMPOTENT]),
        [
            AccountMeta(payer, is_signer=True, is_writable=True),
            AccountMeta(ata, is_signer=False, is_writable=True),
            AccountMeta(owner, is_signer=False, is_writable=False),
            AccountMeta(mint, is_signer=False, is_writable=False),
            AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
            AccountMeta(program_id, is_signer=False, is_writable=False),
        ],
    )


def memo(text: str, signers: tuple[Pubkey, ...]) -> Instruction:
    """A Memo v2 instruction carrying ``text``; every key in ``signers`` must sign the tx."""
    return Instruction(
        MEMO_PROGRAM_ID,
        text.encode("utf-8"),
        [AccountMeta(key, is_signer=True, is_writable=False) for key in signers],
    )


# --------------------------------------------------------------------------- parsers


@dataclass(frozen=True)
class MintInfo:
    """The base fields of a mint account (Token and Token-2022 share this layout)."""

    mint_authority: Pubkey | None
    supply: int
    decimals: int
    is_initialized: bool
    freeze_authority: Pubkey | None


@dataclass(frozen=True)
class TokenAccountInfo:
    """The base fields of a token account."""

    mint: Pubkey
    owner: Pubkey
    amount: int
    delegate: Pubkey | None
    delegated_amount: int


def _coption_pubkey(data: bytes, offset: int) -> Pubkey | None:
    (tag,) = struct.unpack_from("<I", data, offset)
    return Pubkey.from_bytes(data[offset + 4 : offset + 36]) if tag == 1 else None


def parse_mint(data: bytes) -> MintInfo:
    """Parse the base fields of a mint account (Token-2022 extensions are ignored).

    A mint is exactly 82 bytes, or (Token-2022 with extensions) longer than a token account
    with account-type byte 1 at offset 165.

    Raises:
        ValueError: the data is not a mint's (e.g. a token account's).
    """
    extended = len(data) > TOKEN_ACCOUNT_SIZE and data[TOKEN_ACCOUNT_SIZE] == _ACCOUNT_TYPE_MINT
    if len(data) != MINT_SIZE and not extended:
        raise ValueError(f"{len(data)} bytes of data is not a mint account")
    (supply,) = struct.unpack_from("<Q", data, 36)
    return MintInfo(
        mint_authority=_coption_pubkey(data, 0),
        supply=supply,
        decimals=data[44],
        is_initialized=data[45] == 1,
        freeze_authority=_coption_pubkey(data, 46),
    )


def parse_token_account(data: bytes) -> TokenAccountInfo:
    """Parse the base fields of a token account (Token-2022 extensions are ignored).

    Raises:
        ValueError: the data is not a token account's.
    """
    extended = len(data) > TOKEN_ACCOUNT_SIZE and data[TOKEN_ACCOUNT_SIZE] == _ACCOUNT_TYPE_ACCOUNT
    if len(data) != TOKEN_ACCOUNT_SIZE and not extended:
        raise ValueError(f"{len(data)} bytes of data is not a token account")
    (amount,) = struct.unpack_from("<Q", data, 64)
    (delegated_amount,) = struct.unpack_from("<Q", data, 121)
    return TokenAccountInfo(
        mint=Pubkey.from_bytes(data[0:32]),
        owner=Pubkey.from_bytes(data[32:64]),
        amount=amount,
        delegate=_coption_pubkey(data, 72),
        delegated_amount=delegated_amount,
    )
