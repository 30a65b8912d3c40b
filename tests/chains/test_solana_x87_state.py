"""LiteSVM's JIT leaves the x87 FPU in MMX mode; the in-process backend gives it back.

A program that makes a register-indirect call (the stake program, SPL Token, the ATA program)
runs through the sBPF JIT, which uses ``MM0`` without ``EMMS``: all eight x87 registers stay
marked in use, and SQLite in the same thread answers ``SELECT 1 + 0.5`` with NULL (the x87
load overflows into NaN). ``waiaas.chains.solana._fpu`` documents the cause; these tests run
the real runtime and the real SQLite, on the thread that called LiteSVM.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from waiaas.chains.solana import SolanaAdapter, leave_mmx_state
from waiaas.chains.solana._backend import SendResult, SimOutcome
from waiaas.chains.solana._fpu import AVAILABLE
from waiaas.chains.solana._litesvm import LiteSVMBackend
from waiaas.chains.solana.errors import TxContext
from waiaas.errors import ChainError

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="the sBPF JIT and the repair are x86-64 only")

NO_CONTEXT = TxContext()
STAKE_PROGRAM = Pubkey.from_string("Stake11111111111111111111111111111111111111")


def real_arithmetic() -> tuple[object, object]:
    """What SQLite computes from a REAL literal and prints for a double, on this thread."""
    conn = sqlite3.connect(":memory:")
    try:
        row = conn.execute("SELECT 1 + 0.5, printf('%.2f', 1.5)").fetchone()
    finally:
        conn.close()
    return row[0], row[1]


SOUND = (1.5, "1.50")


@pytest.fixture(autouse=True)
def x87_mode() -> None:
    """Each test starts from a sound state (whatever ran before on this thread)."""
    leave_mmx_state()
    assert real_arithmetic() == SOUND


def stake_call(payer: Keypair, blockhash: Hash, tag: int = 0) -> VersionedTransaction:
    """A call into the stake program (it fails on chain; its JIT code runs all the same)."""
    ix = Instruction(STAKE_PROGRAM, bytes([tag, 1, 2]), [AccountMeta(payer.pubkey(), True, True)])
    message = MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash)
    return VersionedTransaction(message, [payer])


def test_a_raw_litesvm_call_leaves_mmx_on_and_the_repair_restores_x87_mode() -> None:
    """The upstream defect itself (solders 0.29): after the raw call SQLite is wrong on this
    thread; one ``leave_mmx_state()`` makes it right. Should this first assertion fail after
    a solders upgrade, LiteSVM was fixed and ``_fpu`` may go."""
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 10**12)
    assert real_arithmetic() == SOUND  # a system transfer runs no JIT code
    svm.simulate_transaction(stake_call(payer, svm.latest_blockhash()))
    assert real_arithmetic() != SOUND
    leave_mmx_state()
    assert real_arithmetic() == SOUND


def _backend_calls(backend: LiteSVMBackend, payer: Keypair) -> dict[str, Callable[[], object]]:
    def tx(tag: int) -> VersionedTransaction:
        return stake_call(payer, backend.latest_blockhash().blockhash, tag)

    def preflight() -> object:
        with pytest.raises(ChainError):
            backend.send(tx(1), preflight=True, context=NO_CONTEXT)
        return None

    return {
        "simulate": lambda: backend.simulate(tx(2), sig_verify=True, context=NO_CONTEXT),
        "simulate_accounts": lambda: backend.simulate_accounts(
            tx(3), [payer.pubkey()], context=NO_CONTEXT
        ),
        "send with preflight": preflight,
        "send": lambda: backend.send(tx(4), preflight=False, context=NO_CONTEXT),
        "airdrop": lambda: backend.airdrop(Keypair().pubkey(), 10**9),
    }


def test_every_backend_call_that_runs_a_program_leaves_x87_mode() -> None:
    backend = LiteSVMBackend()
    payer = Keypair()
    backend.airdrop(payer.pubkey(), 10**12)
    outcomes = {}
    for name, call in _backend_calls(backend, payer).items():
        outcomes[name] = call()
        assert real_arithmetic() == SOUND, name
    simulated = outcomes["simulate"]
    assert isinstance(simulated, SimOutcome) and simulated.err is not None  # it ran, and failed
    assert outcomes["send"] is SendResult.SENT  # landed and failed, fee charged


def test_tokens_through_the_adapter_leave_sqlite_sound() -> None:
    """SPL Token and the ATA program (what a wallet runs for token transfers)."""
    adapter = SolanaAdapter.local()
    try:
        for program in ("token", "token-2022"):
            mint = adapter.create_test_token(6, program=program)  # type: ignore[arg-type]
            owner = str(Keypair().pubkey())
            adapter.mint_test_token(mint, owner, 10**6)
            assert adapter.get_token_balance(owner, mint) == 10**6
            assert real_arithmetic() == SOUND, program
    finally:
        adapter.close()
