"""Solana effects: every instruction of every program, built by solders and the SPL builders."""

from __future__ import annotations

import struct

import pytest
import solders.system_program as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from plan_helpers import PAYER, key, plan_ix, sol_plan
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from waiaas.chains.solana import spl
from waiaas.errors import WaiaasError
from waiaas.plan import (
    AccountClose,
    AccountFunding,
    AuthorityChange,
    FeeEffect,
    Memo,
    NativeTransfer,
    ProgramCall,
    SolanaAccountMeta,
    SolanaInstruction,
    SolanaPlan,
    TokenApproval,
    TokenTransfer,
    decode_plan,
)
from waiaas.plan._solana import ALT_PROGRAM, rent_exempt_minimum

TOKEN = spl.TOKEN_PROGRAM_ID
TOKEN22 = spl.TOKEN_2022_PROGRAM_ID


class Lookup:
    """An in-memory AccountLookup: token account -> (mint, owner)."""

    def __init__(self, accounts: dict[Pubkey, tuple[Pubkey, Pubkey]] | None = None) -> None:
        self.accounts = {str(k): (str(m), str(o)) for k, (m, o) in (accounts or {}).items()}
        self.asked: list[str] = []

    def token_account(self, address: str) -> tuple[str, str] | None:
        self.asked.append(address)
        return self.accounts.get(address)


def token_ix(program: Pubkey, data: bytes, *accounts: Pubkey) -> Instruction:
    """An SPL Token instruction with these accounts (the last one signs)."""
    metas = [AccountMeta(a, is_signer=False, is_writable=True) for a in accounts[:-1]]
    metas.append(AccountMeta(accounts[-1], is_signer=True, is_writable=False))
    return Instruction(program, data, metas)


# --------------------------------------------------------------------------- System


def test_system_transfer() -> None:
    """A System transfer is lamports from ``from`` to ``to``."""
    to = key()
    ix = sp.transfer(sp.TransferParams(from_pubkey=PAYER, to_pubkey=to, lamports=2**64 - 1))
    assert decode_plan(sol_plan(ix)) == (NativeTransfer(str(PAYER), str(to), 2**64 - 1),)


def test_system_create_account() -> None:
    """createAccount funds the new account from the payer."""
    new, owner = key(), key()
    ix = sp.create_account(
        sp.CreateAccountParams(
            from_pubkey=PAYER, to_pubkey=new, lamports=123, space=10, owner=owner
        )
    )
    assert decode_plan(sol_plan(ix)) == (
        AccountFunding(str(PAYER), str(new), 123, "create_account"),
    )


def test_system_create_account_with_seed() -> None:
    """createAccountWithSeed (bincode seed string) funds the derived account."""
    new, owner = key(), key()
    ix = sp.create_account_with_seed(
        sp.CreateAccountWithSeedParams(
            from_pubkey=PAYER,
            to_pubkey=new,
            base=PAYER,
            seed="vault-é",
            lamports=456,
            space=0,
            owner=owner,
        )
    )
    assert decode_plan(sol_plan(ix)) == (
        AccountFunding(str(PAYER), str(new), 456, "create_account_with_seed"),
    )


def test_system_transfer_with_seed() -> None:
    """transferWithSeed moves lamports out of a seed-derived account to ``to``."""
    source, to, owner = key(), key(), key()
    ix = sp.transfer_with_seed(
        sp.TransferWithSeedParams(
            from_pubkey=source,
            from_base=PAYER,
            from_seed="s",
            from_owner=owner,
            to_pubkey=to,
            lamports=77,
        )
    )
    assert decode_plan(sol_plan(ix)) == (NativeTransfer(str(source), str(to), 77),)


def test_system_withdraw_nonce_account() -> None:
    """withdrawNonceAccount moves lamports out of a nonce account the agent controls."""
    nonce, to = key(), key()
    ix = sp.withdraw_nonce_account(
        sp.WithdrawNonceAccountParams(
            nonce_pubkey=nonce, authorized_pubkey=PAYER, to_pubkey=to, lamports=999
        )
    )
    assert decode_plan(sol_plan(ix)) == (NativeTransfer(str(nonce), str(to), 999),)


def test_system_assign_hands_the_account_to_a_program() -> None:
    """assign / assignWithSeed / allocateWithSeed give an account to another program."""
    owner, other = key(), key()
    assign = sp.assign(sp.AssignParams(pubkey=PAYER, owner=owner))
    with_seed = sp.assign_with_seed(
        sp.AssignWithSeedParams(address=other, base=PAYER, seed="x", owner=owner)
    )
    allocate = sp.allocate_with_seed(
        sp.AllocateWithSeedParams(address=other, base=PAYER, seed="x", space=8, owner=owner)
    )
    assert decode_plan(sol_plan(assign, with_seed, allocate)) == (
        AuthorityChange(str(PAYER), str(owner), "system_assign"),
        AuthorityChange(str(other), str(owner), "system_assign"),
        AuthorityChange(str(other), str(owner), "system_assign"),
    )


def test_system_authorize_nonce_account() -> None:
    """authorizeNonceAccount hands a nonce account's authority to someone else."""
    nonce, thief = key(), key()
    ix = sp.authorize_nonce_account(
        sp.AuthorizeNonceAccountParams(
            nonce_pubkey=nonce, authorized_pubkey=PAYER, new_authority=thief
        )
    )
    assert decode_plan(sol_plan(ix)) == (
        AuthorityChange(str(nonce), str(thief), "nonce_authority"),
    )


def test_system_create_account_allow_prefund() -> None:
    """createAccountAllowPrefund funds the account and hands it (maybe holding lamports) over."""
    new, owner = key(), key()
    ix = sp.create_account_allow_prefund(
        sp.CreateAccountAllowPrefundParams(
            new_account=new, payer=PAYER, lamports=5, space=1, owner=owner
        )
    )
    assert decode_plan(sol_plan(ix)) == (
        AuthorityChange(str(new), str(owner), "system_assign"),
        AccountFunding(str(PAYER), str(new), 5, "create_account"),
    )


def test_system_instructions_that_move_nothing_are_program_calls() -> None:
    """allocate, advanceNonce, unknown tags: program calls (denied unless whitelisted)."""
    allocate = sp.allocate(sp.AllocateParams(pubkey=PAYER, space=8))
    unknown = Instruction(sp.ID, struct.pack("<I", 99), [])
    effects = decode_plan(sol_plan(allocate, unknown))
    assert [(type(e), getattr(e, "method", None)) for e in effects] == [
        (ProgramCall, "system.allocate"),
        (ProgramCall, None),
    ]


def test_system_transfer_with_trailing_bytes_counts_and_is_flagged() -> None:
    """bincode ignores trailing bytes: the transfer executes, so it counts, and is flagged."""
    to = key()
    ix = sp.transfer(sp.TransferParams(from_pubkey=PAYER, to_pubkey=to, lamports=10))
    padded = Instruction(ix.program_id, bytes(ix.data) + b"\x01", ix.accounts)
    effects = decode_plan(sol_plan(padded))
    assert effects[0] == NativeTransfer(str(PAYER), str(to), 10)
    assert isinstance(effects[1], ProgramCall) and effects[1].malformed


@pytest.mark.parametrize("cut", [0, 3, 4, 11])
def test_short_system_transfer_is_a_malformed_call(cut: int) -> None:
    """A transfer the System program cannot parse fails on chain: only a malformed call."""
    ix = sp.transfer(sp.TransferParams(from_pubkey=PAYER, to_pubkey=key(), lamports=10))
    short = Instruction(ix.program_id, bytes(ix.data)[:cut], ix.accounts)
    (effect,) = decode_plan(sol_plan(short))
    assert isinstance(effect, ProgramCall) and effect.malformed


def test_transfer_missing_accounts_is_a_malformed_call() -> None:
    """Not enough accounts: the program fails; nothing moves, the call is flagged."""
    ix = sp.transfer(sp.TransferParams(from_pubkey=PAYER, to_pubkey=key(), lamports=10))
    bare = Instruction(ix.program_id, bytes(ix.data), ix.accounts[:1])
    (effect,) = decode_plan(sol_plan(bare))
    assert isinstance(effect, ProgramCall) and effect.malformed


# --------------------------------------------------------------------------- SPL Token


@pytest.mark.parametrize("program", [TOKEN, TOKEN22])
def test_transfer_checked(program: Pubkey) -> None:
    """transferChecked names the mint; the destination's owner comes from the lookup."""
    source, mint, dest, bob = key(), key(), key(), key()
    ix = spl.transfer_checked(source, mint, dest, PAYER, 500, 6, program_id=program)
    lookup = Lookup({dest: (mint, bob)})
    assert decode_plan(sol_plan(ix), lookup=lookup) == (
        TokenTransfer(str(mint), str(source), str(dest), str(bob), 500, str(PAYER)),
    )
    assert decode_plan(sol_plan(ix)) == (
        TokenTransfer(str(mint), str(source), str(dest), None, 500, str(PAYER)),
    )


@pytest.mark.parametrize("program", [TOKEN, TOKEN22])
def test_plain_transfer_resolves_the_mint_through_the_lookup(program: Pubkey) -> None:
    """SPL ``Transfer`` names no mint: it is read from the source account."""
    source, mint, dest, bob = key(), key(), key(), key()
    ix = token_ix(program, struct.pack("<BQ", 3, 42), source, dest, PAYER)
    lookup = Lookup({source: (mint, PAYER), dest: (mint, bob)})
    assert decode_plan(sol_plan(ix), lookup=lookup) == (
        TokenTransfer(str(mint), str(source), str(dest), str(bob), 42, str(PAYER)),
    )
    assert decode_plan(sol_plan(ix)) == (
        TokenTransfer(None, str(source), str(dest), None, 42, str(PAYER)),
    )


@pytest.mark.parametrize("program", [TOKEN, TOKEN22])
def test_approvals(program: Pubkey) -> None:
    """approve (mint from the lookup) and approveChecked (mint named) are approvals."""
    source, mint, thief = key(), key(), key()
    plain = token_ix(program, struct.pack("<BQ", 4, 2**64 - 2), source, thief, PAYER)
    checked = spl.approve_checked(source, mint, thief, PAYER, 100, 6, program_id=program)
    lookup = Lookup({source: (mint, PAYER)})
    assert decode_plan(sol_plan(plain, checked), lookup=lookup) == (
        TokenApproval(str(mint), str(source), str(thief), 2**64 - 2),
        TokenApproval(str(mint), str(source), str(thief), 100),
    )


@pytest.mark.parametrize("program", [TOKEN, TOKEN22])
def test_set_authority_revoke_and_close(program: Pubkey) -> None:
    """setAuthority, revoke and closeAccount are authority changes and closes."""
    account, thief = key(), key()
    owner_to_thief = token_ix(program, bytes([6, 2, 1]) + bytes(thief), account, PAYER)
    remove_close = token_ix(program, bytes([6, 3, 0]), account, PAYER)
    revoke = token_ix(program, bytes([5]), account, PAYER)
    close = token_ix(program, bytes([9]), account, thief, PAYER)
    assert decode_plan(sol_plan(owner_to_thief, remove_close, revoke, close)) == (
        AuthorityChange(str(account), str(thief), "account_owner"),
        AuthorityChange(str(account), None, "close_account"),
        AuthorityChange(str(account), None, "revoke_delegate"),
        AccountClose(str(account), str(thief), str(PAYER)),
    )


def test_set_authority_with_a_bad_option_tag_is_malformed() -> None:
    """A COption tag other than 0/1 fails in the program: a malformed call."""
    ix = token_ix(TOKEN, bytes([6, 2, 7]) + bytes(32), key(), PAYER)
    (effect,) = decode_plan(sol_plan(ix))
    assert isinstance(effect, ProgramCall) and effect.malformed


def test_token_instructions_without_a_money_model_are_program_calls() -> None:
    """mintTo, burn, freeze, syncNative, Token-2022 extensions: named program calls."""
    account, mint = key(), key()
    ixs = [
        token_ix(TOKEN, struct.pack("<BQ", 7, 1), mint, account, PAYER),
        token_ix(TOKEN, struct.pack("<BQ", 8, 1), account, mint, PAYER),
        token_ix(TOKEN, bytes([17]), account, PAYER),
        token_ix(TOKEN22, bytes([38]), account, PAYER),
    ]
    effects = decode_plan(sol_plan(*ixs))
    assert [getattr(e, "method", None) for e in effects] == [
        "token.mintTo",
        "token.burn",
        "token.syncNative",
        "token.withdrawExcessLamports",
    ]
    assert all(isinstance(e, ProgramCall) and not e.malformed for e in effects)


def test_token_transfer_with_trailing_bytes_counts_and_is_flagged() -> None:
    """SPL Token reads fields and ignores the rest: counted and flagged."""
    source, mint, dest = key(), key(), key()
    ix = spl.transfer_checked(source, mint, dest, PAYER, 5, 6)
    padded = Instruction(ix.program_id, bytes(ix.data) + b"\xff" * 3, ix.accounts)
    effects = decode_plan(sol_plan(padded))
    assert effects[0] == TokenTransfer(str(mint), str(source), str(dest), None, 5, str(PAYER))
    assert isinstance(effects[1], ProgramCall) and effects[1].malformed


# --------------------------------------------------------------------------- ATA


@pytest.mark.parametrize(
    ("program", "size"), [(TOKEN, 165), (TOKEN22, 170)], ids=["token", "token-2022"]
)
def test_associated_token_account_creation_charges_rent(program: Pubkey, size: int) -> None:
    """Creating an ATA costs the payer its rent, and names the new account's mint and owner
    for the transfer that follows."""
    bob, mint = key(), key()
    create = spl.create_associated_token_account_idempotent(PAYER, bob, mint, program_id=program)
    ata = spl.associated_token_address(bob, mint, program_id=program)
    plain_transfer = token_ix(program, struct.pack("<BQ", 3, 1), key(), ata, PAYER)
    effects = decode_plan(sol_plan(create, plain_transfer), lookup=Lookup())
    assert effects[0] == AccountFunding(
        str(PAYER), str(ata), rent_exempt_minimum(size), "token_account_rent"
    )
    transfer = effects[1]
    assert isinstance(transfer, TokenTransfer)
    assert transfer.token == str(mint) and transfer.destination_owner == str(bob)


def test_rent_formula_matches_the_known_token_account_rent() -> None:
    """The default rent of a 165-byte token account is 2,039,280 lamports."""
    assert rent_exempt_minimum(165) == 2_039_280
    assert rent_exempt_minimum(0) == 890_880


class RentLookup(Lookup):
    def token_account_rent(self, mint: str, token_program: str) -> int | None:
        return 3_000_000


def test_ata_rent_comes_from_the_lookup_when_it_knows() -> None:
    """A Token-2022 mint with extensions needs a bigger account: the adapter says how much."""
    create = spl.create_associated_token_account_idempotent(PAYER, key(), key(), program_id=TOKEN22)
    (effect,) = decode_plan(sol_plan(create), lookup=RentLookup())
    assert isinstance(effect, AccountFunding) and effect.amount == 3_000_000


def test_non_idempotent_create_and_malformed_ata() -> None:
    """Create (empty data) charges rent too; extra data or missing accounts is malformed."""
    bob, mint = key(), key()
    idem = spl.create_associated_token_account_idempotent(PAYER, bob, mint)
    create = Instruction(idem.program_id, b"", idem.accounts)
    extra = Instruction(idem.program_id, b"\x01\x00", idem.accounts)
    short = Instruction(idem.program_id, b"\x01", idem.accounts[:5])
    nested = Instruction(idem.program_id, b"\x02", idem.accounts)
    effects = decode_plan(sol_plan(create, extra, short, nested))
    assert isinstance(effects[0], AccountFunding)
    assert [(e.method, e.malformed) for e in effects[1:] if isinstance(e, ProgramCall)] == [
        ("associatedToken.createIdempotent", True),
        ("associatedToken.createIdempotent", True),
        ("associatedToken.recoverNested", False),
    ]


# --------------------------------------------------------------------------- compute budget


def test_priority_fee_from_compute_budget() -> None:
    """price x limit / 1e6, rounded up, charged to the fee payer."""
    to = key()
    ixs = [
        set_compute_unit_limit(300_000),
        set_compute_unit_price(1_000_001),
        sp.transfer(sp.TransferParams(from_pubkey=PAYER, to_pubkey=to, lamports=1)),
    ]
    effects = decode_plan(sol_plan(*ixs))
    assert effects == (
        NativeTransfer(str(PAYER), str(to), 1),
        FeeEffect(str(PAYER), 300_001),
    )


def test_priority_fee_without_a_limit_uses_the_default_per_instruction() -> None:
    """Without setComputeUnitLimit: 200,000 units per other instruction, at most 1.4M."""
    transfers = [
        sp.transfer(sp.TransferParams(from_pubkey=PAYER, to_pubkey=key(), lamports=1))
        for _ in range(8)
    ]
    effects = decode_plan(sol_plan(set_compute_unit_price(1_000_000), *transfers))
    assert effects[-1] == FeeEffect(str(PAYER), 1_400_000)
    assert decode_plan(sol_plan(set_compute_unit_limit(5))) == ()


def test_malformed_compute_budget_is_flagged() -> None:
    """Borsh refuses trailing bytes: the transaction fails; the decoder flags it."""
    good = set_compute_unit_price(5)
    bad = Instruction(good.program_id, bytes(good.data) + b"\0", good.accounts)
    (effect,) = decode_plan(sol_plan(bad))
    assert isinstance(effect, ProgramCall) and effect.malformed


# --------------------------------------------------------------------------- memo, ALT, others


def test_memo_v1_and_v2() -> None:
    """Memos come out as their text; invalid UTF-8 (the program fails) is malformed."""
    v2 = spl.memo("pay rent\n", (PAYER,))
    v1 = Instruction(Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"), b"x", [])
    bad = Instruction(spl.MEMO_PROGRAM_ID, b"\xff\xfe", [])
    effects = decode_plan(sol_plan(v2, v1, bad))
    assert effects[:2] == (Memo("pay rent\n"), Memo("x"))
    assert isinstance(effects[2], ProgramCall) and effects[2].malformed


def test_address_lookup_table_program_is_always_a_program_call() -> None:
    """create / extend / deactivate / close of a lookup table are program calls: the close
    sends the table's lamports anywhere, so default-deny must see it."""
    thief = key()
    create, table = sp.create_lookup_table(
        sp.CreateLookupTableParams(authority_address=PAYER, payer_address=PAYER, recent_slot=1)
    )
    extend = sp.extend_lookup_table(
        sp.ExtendLookupTableParams(
            payer_address=PAYER,
            lookup_table_address=table,
            authority_address=PAYER,
            new_addresses=[key() for _ in range(3)],
        )
    )
    deactivate = sp.deactivate_lookup_table(
        sp.DeactivateLookupTableParams(lookup_table_address=table, authority_address=PAYER)
    )
    close = sp.close_lookup_table(
        sp.CloseLookupTableParams(
            lookup_table_address=table, authority_address=PAYER, recipient_address=thief
        )
    )
    effects = decode_plan(sol_plan(create, extend, deactivate, close))
    assert all(isinstance(e, ProgramCall) and e.program == ALT_PROGRAM for e in effects)
    assert [e.method for e in effects if isinstance(e, ProgramCall)] == [
        "addressLookupTable.createLookupTable",
        "addressLookupTable.extendLookupTable",
        "addressLookupTable.deactivateLookupTable",
        "addressLookupTable.closeLookupTable",
    ]
    last = effects[-1]
    assert isinstance(last, ProgramCall) and str(thief) in last.accounts


def test_unknown_program() -> None:
    """Any other program: its id, every account, the first 8 bytes of data."""
    program, a, b = key(), key(), key()
    ix = Instruction(
        program,
        bytes(range(20)),
        [AccountMeta(a, is_signer=True, is_writable=True), AccountMeta(b, False, False)],
    )
    assert decode_plan(sol_plan(ix)) == (
        ProgramCall(str(program), (str(a), str(b)), "0x0001020304050607"),
    )


def test_a_mixed_batch_decodes_every_instruction_in_order() -> None:
    """Nothing is dropped from a batch: one or more effects per instruction, in order."""
    bob, mint, thief = key(), key(), key()
    source = spl.associated_token_address(PAYER, mint)
    ixs = [
        sp.transfer(sp.TransferParams(from_pubkey=PAYER, to_pubkey=bob, lamports=11 * 10**9)),
        spl.transfer_checked(source, mint, key(), PAYER, 10**9, 6),
        spl.approve_checked(source, mint, thief, PAYER, 2**64 - 1, 6),
    ]
    kinds = [type(e) for e in decode_plan(sol_plan(*ixs))]
    assert kinds == [NativeTransfer, TokenTransfer, TokenApproval]


# --------------------------------------------------------------------------- fuzz

programs = st.sampled_from(
    [
        str(sp.ID),
        str(TOKEN),
        str(TOKEN22),
        str(spl.ASSOCIATED_TOKEN_PROGRAM_ID),
        str(spl.COMPUTE_BUDGET_PROGRAM_ID),
        str(spl.MEMO_PROGRAM_ID),
        ALT_PROGRAM,
        str(Pubkey.new_unique()),
    ]
)
metas = st.builds(
    SolanaAccountMeta,
    st.binary(min_size=32, max_size=32).map(lambda b: str(Pubkey.from_bytes(b))),
    st.booleans(),
    st.booleans(),
)
fuzz_data = st.one_of(
    st.binary(max_size=120),
    st.tuples(st.integers(0, 20), st.binary(max_size=120)).map(
        lambda t: struct.pack("<I", t[0]) + t[1]
    ),
    st.tuples(st.integers(0, 45), st.binary(max_size=80)).map(lambda t: bytes([t[0]]) + t[1]),
)
fuzz_ix = st.builds(SolanaInstruction, programs, st.lists(metas, max_size=7).map(tuple), fuzz_data)


class FuzzLookup:
    def token_account(self, address: str) -> tuple[str, str] | None:
        return (address, address) if address[0] in "123456789" else None


@settings(max_examples=800, deadline=None)
@given(st.lists(fuzz_ix, min_size=1, max_size=6), st.booleans())
def test_fuzz_never_raises_and_never_drops(ixs: list[SolanaInstruction], lookup: bool) -> None:
    """Random instructions of every known program: only effects, at least one per
    instruction except well-formed compute-budget ones."""
    plan = SolanaPlan("localnet", str(PAYER), tuple(ixs))
    try:
        effects = decode_plan(plan, lookup=FuzzLookup() if lookup else None)
    except WaiaasError:  # pragma: no cover - allowed, but never needed
        return
    non_budget = [ix for ix in ixs if ix.program_id != str(spl.COMPUTE_BUDGET_PROGRAM_ID)]
    assert len([e for e in effects if not isinstance(e, FeeEffect)]) >= len(non_budget)


def test_plan_ix_helper_keeps_flags() -> None:
    """(The helper the tests use keeps each account's flags.)"""
    ix = sp.transfer(sp.TransferParams(from_pubkey=PAYER, to_pubkey=key(), lamports=1))
    converted = plan_ix(ix)
    assert [(m.is_signer, m.is_writable) for m in converted.accounts] == [
        (True, True),
        (False, True),
    ]
