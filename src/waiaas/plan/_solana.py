"""Effects of a Solana plan, instruction by instruction.

Programs decoded: System, SPL Token and Token-2022, Associated Token Account, Compute Budget,
Memo (v1 and v2). Every other program, including the Address Lookup Table program (whose
``closeLookupTable`` sends the table's lamports anywhere), is a ``ProgramCall``.

Encodings follow the programs' own parsers: System instructions are bincode and SPL Token
instructions are read field by field, so both ignore trailing bytes (decoded, plus a
``malformed`` ``ProgramCall``); the Compute Budget and Associated Token Account programs use
borsh, which refuses trailing bytes (such an instruction fails: only the ``malformed`` call).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from waiaas.plan._encoding import pubkey_to_str
from waiaas.plan.effects import (
    AccountClose,
    AccountFunding,
    AccountLookup,
    AuthorityChange,
    Effect,
    FeeEffect,
    Memo,
    NativeTransfer,
    ProgramCall,
    TokenAccountRentLookup,
    TokenApproval,
    TokenTransfer,
)
from waiaas.plan.model import SolanaInstruction, SolanaPlan

SYSTEM_PROGRAM: Final = "11111111111111111111111111111111"
TOKEN_PROGRAM: Final = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # noqa: S105
TOKEN_2022_PROGRAM: Final = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"  # noqa: S105
ATA_PROGRAM: Final = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
COMPUTE_BUDGET_PROGRAM: Final = "ComputeBudget111111111111111111111111111111"
MEMO_PROGRAMS: Final = frozenset(
    {"MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"}
)
ALT_PROGRAM: Final = "AddressLookupTab1e1111111111111111111111111"

TOKEN_ACCOUNT_SIZE: Final = 165
"""Bytes of an SPL Token account."""
TOKEN_2022_ATA_SIZE: Final = 170
"""Bytes of a Token-2022 associated token account for a mint without extensions
(165 + account-type byte + the ImmutableOwner extension's 4-byte header)."""

_MAX_COMPUTE_UNITS: Final = 1_400_000
_DEFAULT_UNITS_PER_INSTRUCTION: Final = 200_000


def rent_exempt_minimum(size: int) -> int:
    """Lamports an account of ``size`` data bytes needs to be rent-exempt (default rent).

    ``(128 + size) * 3480 lamports/byte-year * 2 years``: 2,039,280 for a 165-byte account.
    """
    return (128 + size) * 3480 * 2


_SYSTEM_NAMES: Final = (
    "createAccount",
    "assign",
    "transfer",
    "createAccountWithSeed",
    "advanceNonceAccount",
    "withdrawNonceAccount",
    "initializeNonceAccount",
    "authorizeNonceAccount",
    "allocate",
    "allocateWithSeed",
    "assignWithSeed",
    "transferWithSeed",
    "upgradeNonceAccount",
    "createAccountAllowPrefund",
)
_TOKEN_NAMES: Final = (
    "initializeMint",
    "initializeAccount",
    "initializeMultisig",
    "transfer",
    "approve",
    "revoke",
    "setAuthority",
    "mintTo",
    "burn",
    "closeAccount",
    "freezeAccount",
    "thawAccount",
    "transferChecked",
    "approveChecked",
    "mintToChecked",
    "burnChecked",
    "initializeAccount2",
    "syncNative",
    "initializeAccount3",
    "initializeMultisig2",
    "initializeMint2",
    "getAccountDataSize",
    "initializeImmutableOwner",
    "amountToUiAmount",
    "uiAmountToAmount",
    # Token-2022 only from here
    "initializeMintCloseAuthority",
    "transferFeeExtension",
    "confidentialTransferExtension",
    "defaultAccountStateExtension",
    "reallocate",
    "memoTransferExtension",
    "createNativeMint",
    "initializeNonTransferableMint",
    "interestBearingMintExtension",
    "cpiGuardExtension",
    "initializePermanentDelegate",
    "transferHookExtension",
    "confidentialTransferFeeExtension",
    "withdrawExcessLamports",
    "metadataPointerExtension",
    "groupPointerExtension",
    "groupMemberPointerExtension",
)
_AUTHORITY_TYPES: Final = (
    "mint_tokens",
    "freeze_account",
    "account_owner",
    "close_account",
    "transfer_fee_config",
    "withheld_withdraw",
    "close_mint",
    "interest_rate",
    "permanent_delegate",
    "confidential_transfer_mint",
    "transfer_hook_program_id",
    "confidential_transfer_fee_config",
    "metadata_pointer",
    "group_pointer",
    "group_member_pointer",
)
_ALT_NAMES: Final = (
    "createLookupTable",
    "freezeLookupTable",
    "extendLookupTable",
    "deactivateLookupTable",
    "closeLookupTable",
)
_COMPUTE_NAMES: Final = (
    "requestUnitsDeprecated",
    "requestHeapFrame",
    "setComputeUnitLimit",
    "setComputeUnitPrice",
    "setLoadedAccountsDataSizeLimit",
)
_ATA_NAMES: Final = ("create", "createIdempotent", "recoverNested")


class _Short(Exception):
    """The data ends before a field does."""


class _Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise _Short
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.take(8))[0]
        return value

    def pubkey(self) -> str:
        return pubkey_to_str(self.take(32))

    def bincode_str(self) -> str:
        size = self.u64()
        if size > len(self.data):
            raise _Short
        try:
            return self.take(size).decode("utf-8")
        except UnicodeDecodeError:
            raise _Short from None

    @property
    def trailing(self) -> bool:
        return self.pos < len(self.data)


def _name(names: tuple[str, ...], index: int | None, prefix: str) -> str | None:
    if index is None or not 0 <= index < len(names):
        return None
    return f"{prefix}{names[index]}"


def _system_decoded(
    tag: int | None, r: _Reader, keys: list[str]
) -> tuple[int, Callable[[], Effect]] | None:
    """A System instruction that moves lamports or hands an account over (but
    CreateAccountAllowPrefund): how many accounts it needs and its effect, once they are
    there. ``None``: it does neither, or is unknown."""
    needed: int
    make: Callable[[], Effect]
    if tag == 0:  # CreateAccount { lamports, space, owner }: from, new
        lamports, _space, _owner = r.u64(), r.u64(), r.pubkey()
        needed = 2
        make = lambda: AccountFunding(keys[0], keys[1], lamports, "create_account")  # noqa: E731
    elif tag == 1:  # Assign { owner }: account
        owner = r.pubkey()
        needed = 1
        make = lambda: AuthorityChange(keys[0], owner, "system_assign")  # noqa: E731
    elif tag == 2:  # Transfer { lamports }: from, to
        lamports = r.u64()
        needed = 2
        make = lambda: NativeTransfer(keys[0], keys[1], lamports)  # noqa: E731
    elif tag == 3:  # CreateAccountWithSeed { base, seed, lamports, space, owner }
        _base, _seed, lamports = r.pubkey(), r.bincode_str(), r.u64()
        _space, _owner = r.u64(), r.pubkey()
        needed = 2
        make = lambda: AccountFunding(  # noqa: E731
            keys[0], keys[1], lamports, "create_account_with_seed"
        )
    elif tag == 5:  # WithdrawNonceAccount(lamports): nonce, to, blockhashes, rent, auth
        lamports = r.u64()
        needed = 5
        make = lambda: NativeTransfer(keys[0], keys[1], lamports)  # noqa: E731
    elif tag == 7:  # AuthorizeNonceAccount(new authority): nonce, authority
        new = r.pubkey()
        needed = 2
        make = lambda: AuthorityChange(keys[0], new, "nonce_authority")  # noqa: E731
    elif tag == 9:  # AllocateWithSeed { base, seed, space, owner }: account, base
        _base, _seed, _space, owner = r.pubkey(), r.bincode_str(), r.u64(), r.pubkey()
        needed = 2
        make = lambda: AuthorityChange(keys[0], owner, "system_assign")  # noqa: E731
    elif tag == 10:  # AssignWithSeed { base, seed, owner }: account, base
        _base, _seed, owner = r.pubkey(), r.bincode_str(), r.pubkey()
        needed = 2
        make = lambda: AuthorityChange(keys[0], owner, "system_assign")  # noqa: E731
    elif tag == 11:  # TransferWithSeed { lamports, from_seed, from_owner }: from, base, to
        lamports, _seed, _owner = r.u64(), r.bincode_str(), r.pubkey()
        needed = 3
        make = lambda: NativeTransfer(keys[0], keys[2], lamports)  # noqa: E731
    else:
        return None
    return needed, make


#: The SPL Token instructions decoded into effects (the rest are program calls).
_TOKEN_DECODED: Final = frozenset({3, 12, 4, 13, 5, 6, 9})


def _set_authority(reader: _Reader, keys: list[str]) -> Effect | None:
    """SPL Token SetAuthority(type, COption<Pubkey>): account, current authority."""
    kind_index = reader.u8()
    option = reader.u8()
    if option == 1:
        new: str | None = reader.pubkey()
    elif option == 0:
        new = None
    else:
        raise _Short
    kind = (
        _AUTHORITY_TYPES[kind_index]
        if kind_index < len(_AUTHORITY_TYPES)
        else f"authority_type_{kind_index}"
    )
    return AuthorityChange(keys[0], new, kind) if len(keys) >= 2 else None


class _Decoder:
    """Decodes one plan; remembers token accounts created earlier in the same plan."""

    def __init__(self, plan: SolanaPlan, lookup: AccountLookup | None) -> None:
        self.plan = plan
        self.lookup = lookup
        self.created: dict[str, tuple[str, str]] = {}
        self.effects: list[Effect] = []

    # ---------------------------------------------------------------- helpers

    def token_account(self, address: str) -> tuple[str, str] | None:
        known = self.created.get(address)
        if known is not None:
            return known
        if self.lookup is None:
            return None
        return self.lookup.token_account(address)

    def call(
        self, ix: SolanaInstruction, method: str | None = None, *, malformed: bool = False
    ) -> None:
        self.effects.append(
            ProgramCall(
                program=ix.program_id,
                accounts=tuple(meta.pubkey for meta in ix.accounts),
                data_prefix="0x" + ix.data[:8].hex(),
                method=method,
                malformed=malformed,
            )
        )

    # ---------------------------------------------------------------- entry

    def run(self) -> tuple[Effect, ...]:
        for ix in self.plan.instructions:
            program = ix.program_id
            if program == SYSTEM_PROGRAM:
                self.system(ix)
            elif program in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
                self.token(ix)
            elif program == ATA_PROGRAM:
                self.ata(ix)
            elif program == COMPUTE_BUDGET_PROGRAM:
                self.compute_budget_check(ix)
            elif program in MEMO_PROGRAMS:
                self.memo(ix)
            elif program == ALT_PROGRAM:
                tag = struct.unpack("<I", ix.data[:4])[0] if len(ix.data) >= 4 else None
                self.call(ix, _name(_ALT_NAMES, tag, "addressLookupTable."))
            else:
                self.call(ix)
        fee = self.priority_fee()
        if fee:
            self.effects.append(FeeEffect(self.plan.fee_payer, fee))
        return tuple(self.effects)

    # ---------------------------------------------------------------- System

    def system(self, ix: SolanaInstruction) -> None:
        data = ix.data
        keys = [meta.pubkey for meta in ix.accounts]
        tag = struct.unpack("<I", data[:4])[0] if len(data) >= 4 else None
        method = _name(_SYSTEM_NAMES, tag, "system.")
        r = _Reader(data, 4)
        decoded: tuple[int, Callable[[], Effect]] | None
        try:
            if tag == 13:
                decoded = self.system_prefund(ix, method, r, keys)
                if decoded is None:
                    return
            else:
                decoded = _system_decoded(tag, r, keys)
                if decoded is None:
                    # Moves no lamports (nonce upkeep, allocate) or unknown: a program call.
                    self.call(ix, method, malformed=tag is None)
                    return
        except _Short:
            self.call(ix, method, malformed=True)
            return
        needed, make = decoded
        self.finish(ix, method, make() if len(keys) >= needed else None, r.trailing)

    def system_prefund(
        self, ix: SolanaInstruction, method: str | None, r: _Reader, keys: list[str]
    ) -> tuple[int, Callable[[], Effect]] | None:
        """CreateAccountAllowPrefund { lamports, space, owner }: new, [payer]. The new
        account is handed over at once; its funding needs the payer (``None``: no payer,
        nothing more to record)."""
        lamports, _space, owner = r.u64(), r.u64(), r.pubkey()
        if not keys:
            raise _Short
        # The new account may already hold lamports (even be the agent's wallet): it
        # is handed to ``owner`` like an Assign.
        self.effects.append(AuthorityChange(keys[0], owner, "system_assign"))
        if len(keys) < 2:
            if r.trailing:
                self.call(ix, method, malformed=True)
            return None
        return 2, lambda: AccountFunding(keys[1], keys[0], lamports, "create_account")

    def finish(
        self,
        ix: SolanaInstruction,
        method: str | None,
        effect: Effect | None,
        trailing: bool,
    ) -> None:
        """Record a decoded instruction: the program fails without its accounts (``effect``
        is ``None``); trailing bytes it ignores, but they are not canonical."""
        if effect is None:
            self.call(ix, method, malformed=True)
            return
        self.effects.append(effect)
        if trailing:
            self.call(ix, method, malformed=True)

    # ---------------------------------------------------------------- SPL Token

    def token(self, ix: SolanaInstruction) -> None:
        data = ix.data
        keys = [meta.pubkey for meta in ix.accounts]
        tag = data[0] if data else None
        method = _name(_TOKEN_NAMES, tag, "token.")
        reader = _Reader(data, 1)
        if tag not in _TOKEN_DECODED:
            # mintTo, burn, freeze, initialise, extensions...: no modelled money effect.
            self.call(ix, method, malformed=tag is None)
            return
        try:
            effect = self.token_effect(tag, reader, keys)
        except _Short:
            self.call(ix, method, malformed=True)
            return
        self.finish(ix, method, effect, reader.trailing)

    def token_effect(self, tag: int, reader: _Reader, keys: list[str]) -> Effect | None:
        """The effect of an SPL Token instruction of :data:`_TOKEN_DECODED`; ``None`` when
        its accounts are missing."""
        if tag in (3, 12):
            return self.token_transfer(tag, reader, keys)
        if tag == 4:  # Approve(amount): source, delegate, owner
            amount = reader.u64()
            if len(keys) < 3:
                return None
            info = self.token_account(keys[0])
            return TokenApproval(info[0] if info else None, keys[0], keys[1], amount)
        if tag == 13:  # ApproveChecked(amount, decimals): source, mint, delegate, owner
            amount = reader.u64()
            reader.u8()
            return TokenApproval(keys[1], keys[0], keys[2], amount) if len(keys) >= 4 else None
        if tag == 5:  # Revoke: source, owner
            return AuthorityChange(keys[0], None, "revoke_delegate") if len(keys) >= 2 else None
        if tag == 6:  # SetAuthority(type, COption<Pubkey>): account, current authority
            return _set_authority(reader, keys)
        if tag == 9:  # CloseAccount: account, destination, owner
            return AccountClose(keys[0], keys[1], keys[2]) if len(keys) >= 3 else None
        raise AssertionError(f"token instruction {tag} is not decoded")

    def token_transfer(self, tag: int, reader: _Reader, keys: list[str]) -> Effect | None:
        """Transfer (3) or TransferChecked (12): the mint and the destination's owner as
        this plan or the chain knows them."""
        if tag == 3:  # Transfer(amount): source, destination, authority
            amount = reader.u64()
            if len(keys) < 3:
                return None
            source_info = self.token_account(keys[0])
            dest_info = self.token_account(keys[1])
            mint = (source_info or dest_info or (None, None))[0]
            owner = dest_info[1] if dest_info else None
            return TokenTransfer(mint, keys[0], keys[1], owner, amount, keys[2])
        # TransferChecked(amount, decimals): source, mint, destination, authority
        amount = reader.u64()
        reader.u8()
        if len(keys) < 4:
            return None
        dest_info = self.token_account(keys[2])
        owner = dest_info[1] if dest_info else None
        return TokenTransfer(keys[1], keys[0], keys[2], owner, amount, keys[3])

    # ---------------------------------------------------------------- ATA

    def ata(self, ix: SolanaInstruction) -> None:
        data = ix.data
        keys = [meta.pubkey for meta in ix.accounts]
        tag = 0 if not data else data[0]
        method = _name(_ATA_NAMES, tag, "associatedToken.")
        if tag not in (0, 1) or len(data) > 1:
            self.call(ix, method, malformed=tag in (0, 1) or tag > 2)
            return
        if len(keys) < 6:
            self.call(ix, method, malformed=True)
            return
        payer, account, owner, mint, _system, token_program = keys[:6]
        rent: int | None = None
        if isinstance(self.lookup, TokenAccountRentLookup):
            rent = self.lookup.token_account_rent(mint, token_program)
        if rent is None:
            size = TOKEN_ACCOUNT_SIZE if token_program == TOKEN_PROGRAM else TOKEN_2022_ATA_SIZE
            rent = rent_exempt_minimum(size)
        self.effects.append(AccountFunding(payer, account, rent, "token_account_rent"))
        self.created[account] = (mint, owner)

    # ---------------------------------------------------------------- Compute Budget

    def compute_budget_check(self, ix: SolanaInstruction) -> None:
        data = ix.data
        tag = data[0] if data else None
        sizes = {1: 5, 2: 5, 3: 9, 4: 5}
        method = _name(_COMPUTE_NAMES, tag, "computeBudget.")
        if tag not in sizes or len(data) != sizes[tag]:
            self.call(ix, method, malformed=tag is None or tag in sizes)
        # Well-formed ones move nothing by themselves; the fee is computed once, in run().

    def priority_fee(self) -> int:
        price = 0
        limit: int | None = None
        others = 0
        for ix in self.plan.instructions:
            data = ix.data
            if ix.program_id != COMPUTE_BUDGET_PROGRAM:
                others += 1
            elif len(data) == 5 and data[0] == 2:
                limit = struct.unpack("<I", data[1:5])[0]
            elif len(data) == 9 and data[0] == 3:
                price = struct.unpack("<Q", data[1:9])[0]
        if price == 0:
            return 0
        units = limit if limit is not None else others * _DEFAULT_UNITS_PER_INSTRUCTION
        units = min(units, _MAX_COMPUTE_UNITS)
        return -(-price * units // 1_000_000)

    # ---------------------------------------------------------------- Memo

    def memo(self, ix: SolanaInstruction) -> None:
        try:
            text = ix.data.decode("utf-8")
        except UnicodeDecodeError:
            self.call(ix, "memo", malformed=True)
            return
        self.effects.append(Memo(text))


def decode(plan: SolanaPlan, lookup: AccountLookup | None) -> tuple[Effect, ...]:
    """The effects of every instruction of ``plan``, in order, then the priority fee."""
    return _Decoder(plan, lookup).run()
