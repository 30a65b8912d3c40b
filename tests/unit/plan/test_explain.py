"""The second lock: simulated outflows the decoded effects do not explain."""

from __future__ import annotations

from waiaas.chains.base import BalanceChanges
from waiaas.plan import (
    NATIVE,
    AccountClose,
    AccountFunding,
    ProgramCall,
    TokenApproval,
    TokenTransfer,
    Unexplained,
    unexplained_outflows,
)
from waiaas.plan import NativeTransfer as Send

ME, BOB, MINT = "me", "bob", "mint"
TOKEN = "0xAbCd000000000000000000000000000000000001"


def test_explained_outflows_pass() -> None:
    """Transfers, rent and token transfers explain outflows up to their amounts; inflows pass."""
    effects = [
        Send(ME, BOB, 5),
        AccountFunding(ME, BOB, 2, "token_account_rent"),
        TokenTransfer(MINT, "a", "b", BOB, 10, ME),
    ]
    assert unexplained_outflows(effects, BalanceChanges(-7, {MINT: -10})) == []
    assert unexplained_outflows(effects, BalanceChanges(100, {MINT: 3})) == []
    assert unexplained_outflows([], BalanceChanges(0, {})) == []


def test_an_unknown_program_moving_sol_is_unexplained() -> None:
    """A program call explains nothing: the ALT close drain is refused."""
    found = unexplained_outflows(
        [ProgramCall("AddressLookupTab1e1111111111111111111111111", (ME, BOB), "0x04000000")],
        BalanceChanges(-5_735_040, {}),
    )
    assert found == [Unexplained(NATIVE, 5_735_040, 0)]
    assert "5735040" in str(found[0])


def test_more_than_the_effects_say_is_unexplained() -> None:
    """A token that takes more than transfer() says, or an approval, or a close, is caught."""
    effects = [
        TokenTransfer(MINT, "a", "b", BOB, 10, ME),
        TokenApproval(MINT, "a", BOB, 10**9),
        AccountClose("a", BOB, ME),
        TokenTransfer(None, "x", "y", None, 10**9, ME),
    ]
    found = unexplained_outflows(effects, BalanceChanges(-1, {MINT: -11, "other": -1}))
    assert found == [
        Unexplained(NATIVE, 1, 0),
        Unexplained(MINT, 11, 10),
        Unexplained("other", 1, 0),
    ]


def test_evm_token_addresses_match_in_any_case() -> None:
    """EVM token keys compare case-insensitively (EIP-55 vs lowercase)."""
    effects = [TokenTransfer(TOKEN, ME, BOB, BOB, 4, ME)]
    assert unexplained_outflows(effects, BalanceChanges(0, {TOKEN.lower(): -4})) == []
