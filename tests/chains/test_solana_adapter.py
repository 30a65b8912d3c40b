"""The Solana adapter end to end, on LiteSVM and on the JSON-RPC test server (same tests)."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from waiaas.chains.base import ChainAdapter, ChainTxState, ChainTxStatus, LocalChainControl
from waiaas.chains.solana import LocalSolanaAdapter, SolanaAdapter, spl
from waiaas.errors import (
    ExecutionRevertedError,
    InsufficientFundsError,
    InvalidAddressError,
    InvalidInputError,
    StaleTransactionError,
)
from waiaas.types import AccountSpec, Approve, Batch, ContractCall, TokenTransfer, Transfer

try:  # tests/chains as a package, or as a rootdir-relative module directory
    from .solana_fixtures import SolanaEnv, litesvm_env, make_solana_adapters, rpc_env
except ImportError:
    from solana_fixtures import SolanaEnv, litesvm_env, make_solana_adapters, rpc_env

SOL = 1_000_000_000
FEE = 5000
MEMO = str(spl.MEMO_PROGRAM_ID)
TOKEN = str(spl.TOKEN_PROGRAM_ID)


@pytest.fixture(params=["litesvm", "solana-rpc"])
def env(request: pytest.FixtureRequest) -> Iterator[SolanaEnv]:
    factory = litesvm_env if request.param == "litesvm" else rpc_env
    with factory() as solana:
        yield solana


def wallet(env: SolanaEnv, lamports: int = 10 * SOL) -> tuple[bytes, str]:
    secret, address = env.adapter.generate_secret()
    if lamports:
        env.adapter.fund(address, lamports)
    return secret, address


def stranger() -> str:
    return str(Keypair().pubkey())


def execute(env: SolanaEnv, request: object, sender: str, secret: bytes) -> ChainTxStatus:
    chain = env.adapter
    signed = chain.sign(chain.build(request, sender), secret)  # type: ignore[arg-type]
    assert chain.submit(signed) == signed.tx_hash
    return chain.wait_for_confirmation(signed, timeout=10)


def rent(env: SolanaEnv, size: int) -> int:
    return env.svm.minimum_balance_for_rent_exemption(size)


# --------------------------------------------------------------------------- protocol & keys


def test_satisfies_the_ports(env: SolanaEnv) -> None:
    """Both backends are ChainAdapters with test-chain controls, chain "solana"."""
    assert isinstance(env.adapter, ChainAdapter)
    assert isinstance(env.adapter, LocalChainControl)
    assert env.adapter.chain == "solana"
    assert env.adapter.network == "localnet"


def test_factories_for_the_contract_suite_yield_fresh_chains() -> None:
    """make_solana_adapters gives a litesvm and a solana-rpc factory, each on a fresh chain."""
    factories = make_solana_adapters()
    assert [name for name, _ in factories] == ["litesvm", "solana-rpc"]
    for _, factory in factories:
        with factory() as first:
            address = str(Keypair().pubkey())
            assert isinstance(first, LocalSolanaAdapter)
            first.fund(address, SOL)
            assert first.get_balance(address) == SOL
        with factory() as second:
            assert second.get_balance(address) == 0


def test_keys_delegate_to_the_keystore(monkeypatch: pytest.MonkeyPatch) -> None:
    """generate_secret / address_of call waiaas.keystore.keys with chain "solana"."""
    from waiaas.keystore import keys

    calls: list[str] = []
    real_generate, real_public = keys.generate_keypair, keys.public_key_for

    def generate(chain: str) -> tuple[bytes, str]:
        calls.append(f"generate:{chain}")
        return real_generate(chain)

    def public(chain: str, secret: bytes) -> str:
        calls.append(f"public:{chain}")
        return real_public(chain, secret)

    monkeypatch.setattr(keys, "generate_keypair", generate)
    monkeypatch.setattr(keys, "public_key_for", public)
    chain = SolanaAdapter.local()
    secret, address = chain.generate_secret()
    assert len(secret) == 32
    assert address == str(Keypair.from_seed(secret).pubkey())
    assert calls[0] == "generate:solana"
    calls.clear()
    assert chain.address_of(secret) == address
    assert calls == ["public:solana"]


def test_address_validation_is_exact() -> None:
    """Only canonical base58 32-byte keys pass; case, spaces, lengths and types are refused."""
    chain = SolanaAdapter.local()
    good = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
    assert chain.validate_address(good) == good
    assert chain.validate_address("11111111111111111111111111111111") == (
        "11111111111111111111111111111111"
    )
    # No case folding: another spelling is another key (or none), never the same one.
    assert chain.validate_address(good.lower()) == good.lower() != good
    bad = [
        good.upper(),  # decodes to more than 32 bytes
        " " + good,
        good + " ",
        good[:-3],
        good + "1",
        good.replace("9", "0"),  # 0, O, I and l are not in the base58 alphabet
        good.replace("x", "l"),
        good.replace("Q", "O"),
        "1" * 31,
        "1" + good,  # decodes to 33 bytes
        "0x" + "ab" * 20,
        "",
    ]
    for address in bad:
        with pytest.raises(InvalidAddressError) as info:
            chain.validate_address(address)
        assert info.value.chain == "solana"
        assert info.value.field == "address"
    for value in (None, 123, b"x" * 32):
        with pytest.raises(InvalidAddressError):
            chain.validate_address(value)  # type: ignore[arg-type]


def test_import_waiaas_does_not_import_solders() -> None:
    """`import waiaas` and `import waiaas.chains` stay free of solders, web3 and eth_tester."""
    code = (
        "import sys, waiaas, waiaas.chains;"
        "bad = [m for m in ('solders', 'web3', 'eth_tester') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_repr_shows_no_url_path_or_query() -> None:
    """An API key in the RPC URL's path or query never shows in the adapter's repr."""
    chain = SolanaAdapter.rpc(
        "https://rpc.example.com/v1/SECRETKEY?api-key=SECRET2", network="devnet", timeout=1
    )
    with chain:
        text = repr(chain)
    assert "SECRET" not in text
    assert "rpc.example.com" in text


# --------------------------------------------------------------------------- transfers


def test_transfer_moves_exact_lamports(env: SolanaEnv) -> None:
    """A transfer moves exactly the amount; the sender also pays exactly the estimated fee."""
    secret, me = wallet(env, 10 * SOL)
    bob = stranger()
    unsigned = env.adapter.build(Transfer(to=bob, amount=123_456_789), me)
    assert unsigned.fee_estimate == FEE == env.adapter.estimate_fee(unsigned)
    signed = env.adapter.sign(unsigned, secret)
    env.adapter.submit(signed)
    status = env.adapter.wait_for_confirmation(signed)
    assert status.state == ChainTxState.CONFIRMED
    assert status.fee == FEE
    assert env.adapter.get_balance(bob) == 123_456_789
    assert env.adapter.get_balance(me) == 10 * SOL - 123_456_789 - FEE


def test_transfer_with_memo(env: SolanaEnv) -> None:
    """A memo rides along through the Memo v2 program, signed by the sender."""
    secret, me = wallet(env)
    status = execute(env, Transfer(to=stranger(), amount=SOL, memo="invoice 42"), me, secret)
    assert status.state == ChainTxState.CONFIRMED
    assert "Program log: invoice 42" in status.logs


def test_identical_requests_are_two_transactions(env: SolanaEnv) -> None:
    """Two identical transfers in a row are two transactions (the blockhash moves on)."""
    secret, me = wallet(env)
    bob = stranger()
    first = execute(env, Transfer(to=bob, amount=SOL), me, secret)
    second = execute(env, Transfer(to=bob, amount=SOL), me, secret)
    assert first.state == second.state == ChainTxState.CONFIRMED
    assert env.adapter.get_balance(bob) == 2 * SOL


def test_resubmitting_the_same_bytes_is_safe(env: SolanaEnv) -> None:
    """Re-sending signed bytes returns the same hash and moves the money once."""
    secret, me = wallet(env)
    bob = stranger()
    signed = env.adapter.sign(env.adapter.build(Transfer(to=bob, amount=SOL), me), secret)
    assert env.adapter.submit(signed) == signed.tx_hash
    assert env.adapter.submit(signed) == signed.tx_hash
    assert env.adapter.submit(signed) == signed.tx_hash
    assert env.adapter.wait_for_confirmation(signed).state == ChainTxState.CONFIRMED
    assert env.adapter.get_balance(bob) == SOL
    assert env.adapter.get_balance(me) == 10 * SOL - SOL - FEE


def test_priority_fee_estimate_matches_the_fee_charged() -> None:
    """With a compute-unit price, estimate == fee charged == 5000 + ceil(price*limit/1e6)."""
    for factory in (litesvm_env, rpc_env):
        with factory(compute_unit_price=1_234_567, compute_unit_limit=10_000) as env:
            secret, me = wallet(env)
            unsigned = env.adapter.build(Transfer(to=stranger(), amount=SOL), me)
            expected = FEE + -(-1_234_567 * 10_000 // 1_000_000)
            assert unsigned.fee_estimate == expected
            signed = env.adapter.sign(unsigned, secret)
            env.adapter.submit(signed)
            assert env.adapter.wait_for_confirmation(signed).fee == expected
            assert env.adapter.get_balance(me) == 10 * SOL - SOL - expected


def test_concurrent_senders_all_confirm() -> None:
    """Eight threads, each its own agent, all land their transfers on one adapter."""
    with litesvm_env() as env:
        wallets = [wallet(env) for _ in range(8)]
        bob = stranger()
        results: list[ChainTxState | str] = []
        lock = threading.Lock()

        def run(secret: bytes, me: str) -> None:
            for i in range(5):
                # Another thread's transaction may move the blockhash on: rebuild. Never
                # count a stale attempt as the previous iteration's CONFIRMED.
                state: ChainTxState | str = "STALE"
                for _attempt in range(20):
                    try:
                        state = execute(env, Transfer(to=bob, amount=SOL + i), me, secret).state
                        break
                    except StaleTransactionError:
                        continue
                with lock:
                    results.append(state)

        threads = [threading.Thread(target=run, args=w) for w in wallets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [ChainTxState.CONFIRMED] * 40
        assert env.adapter.get_balance(bob) == 8 * (5 * SOL + 10)


# --------------------------------------------------------------------------- tokens


def test_token_transfer_creates_the_recipients_ata_paid_by_sender(env: SolanaEnv) -> None:
    """The recipient's ATA is created in the same tx and the sender pays its rent."""
    secret, me = wallet(env)
    mint = env.adapter.create_test_token(6)
    env.adapter.mint_test_token(mint, me, 1_000_000_000)
    bob = stranger()
    assert env.adapter.get_token_balance(bob, mint) == 0
    unsigned = env.adapter.build(TokenTransfer(token=mint, to=bob, amount=250_000_000), me)
    programs = [
        str(unsigned.payload.account_keys[ix.program_id_index])
        for ix in unsigned.payload.instructions
    ]
    assert programs == [str(spl.ASSOCIATED_TOKEN_PROGRAM_ID), TOKEN]
    before = env.adapter.get_balance(me)
    signed = env.adapter.sign(unsigned, secret)
    env.adapter.submit(signed)
    assert env.adapter.wait_for_confirmation(signed).state == ChainTxState.CONFIRMED
    assert env.adapter.get_token_balance(bob, mint) == 250_000_000
    assert env.adapter.get_token_balance(me, mint) == 750_000_000
    assert env.adapter.get_balance(me) == before - FEE - rent(env, spl.TOKEN_ACCOUNT_SIZE)
    # Second transfer: the ATA exists, so only transfer_checked and no more rent.
    unsigned = env.adapter.build(TokenTransfer(token=mint, to=bob, amount=1, decimals=6), me)
    assert len(unsigned.payload.instructions) == 1
    before = env.adapter.get_balance(me)
    signed = env.adapter.sign(unsigned, secret)
    env.adapter.submit(signed)
    assert env.adapter.wait_for_confirmation(signed).state == ChainTxState.CONFIRMED
    assert env.adapter.get_token_balance(bob, mint) == 250_000_001
    assert env.adapter.get_balance(me) == before - FEE


def test_token_2022_mints_are_detected_from_the_owner(env: SolanaEnv) -> None:
    """A Token-2022 mint is driven through the Token-2022 program and its ATAs."""
    secret, me = wallet(env)
    mint = env.adapter.create_test_token(9, program="token-2022")
    env.adapter.mint_test_token(mint, me, 5 * 10**9)
    bob = stranger()
    status = execute(env, TokenTransfer(token=mint, to=bob, amount=2 * 10**9), me, secret)
    assert status.state == ChainTxState.CONFIRMED
    assert env.adapter.get_token_balance(bob, mint) == 2 * 10**9
    assert env.adapter.get_token_balance(me, mint) == 3 * 10**9
    ata = spl.associated_token_address(
        Pubkey.from_string(bob), Pubkey.from_string(mint), program_id=spl.TOKEN_2022_PROGRAM_ID
    )
    account = env.svm.get_account(ata)
    assert account is not None and account.owner == spl.TOKEN_2022_PROGRAM_ID


def test_approve_sets_a_delegate_that_can_spend(env: SolanaEnv) -> None:
    """approve_checked makes the spender a delegate, who can then move up to the amount."""
    secret, me = wallet(env)
    mint = env.adapter.create_test_token(6)
    env.adapter.mint_test_token(mint, me, 1_000)
    spender_secret, spender = wallet(env)
    assert execute(env, Approve(token=mint, spender=spender, amount=300), me, secret).state == (
        ChainTxState.CONFIRMED
    )
    mint_key, me_key, spender_key = (Pubkey.from_string(x) for x in (mint, me, spender))
    source = spl.associated_token_address(me_key, mint_key)
    account = env.svm.get_account(source)
    assert account is not None
    info = spl.parse_token_account(bytes(account.data))
    assert info.delegate == spender_key
    assert info.delegated_amount == 300
    # The delegate spends 200 through a raw program call to the token program.
    env.adapter.mint_test_token(mint, spender, 1)  # creates the delegate's own ATA
    destination = spl.associated_token_address(spender_key, mint_key)
    call = ContractCall(
        to=TOKEN,
        data=struct.pack("<BQB", 12, 200, 6),
        accounts=(
            AccountSpec(pubkey=str(source), is_writable=True),
            AccountSpec(pubkey=mint),
            AccountSpec(pubkey=str(destination), is_writable=True),
            AccountSpec(pubkey=spender, is_signer=True),
        ),
    )
    assert execute(env, call, spender, spender_secret).state == ChainTxState.CONFIRMED
    assert env.adapter.get_token_balance(me, mint) == 800
    assert env.adapter.get_token_balance(spender, mint) == 201


def test_approve_without_a_token_account_creates_it(env: SolanaEnv) -> None:
    """Approving on a mint the sender never held creates the sender's ATA first."""
    secret, me = wallet(env)
    mint = env.adapter.create_test_token(0)
    unsigned = env.adapter.build(Approve(token=mint, spender=stranger(), amount=0), me)
    assert len(unsigned.payload.instructions) == 2
    signed = env.adapter.sign(unsigned, secret)
    env.adapter.submit(signed)
    assert env.adapter.wait_for_confirmation(signed).state == ChainTxState.CONFIRMED
    assert env.adapter.get_token_balance(me, mint) == 0


def test_token_balance_of_a_wallet_without_account_is_zero(env: SolanaEnv) -> None:
    """get_token_balance is 0 when the wallet's ATA does not exist."""
    mint = env.adapter.create_test_token(6)
    assert env.adapter.get_token_balance(stranger(), mint) == 0


# --------------------------------------------------------------------------- program calls


def test_program_call_to_the_memo_program(env: SolanaEnv) -> None:
    """A CONTRACT_CALL runs the program with the given accounts and data."""
    secret, me = wallet(env)
    call = ContractCall(
        to=MEMO, data=b"hello, program", accounts=(AccountSpec(pubkey=me, is_signer=True),)
    )
    status = execute(env, call, me, secret)
    assert status.state == ChainTxState.CONFIRMED
    assert "Program log: hello, program" in status.logs
    assert env.adapter.get_balance(me) == 10 * SOL - FEE


def test_program_call_rejections(env: SolanaEnv) -> None:
    """value != 0, a foreign signer and a non-program target are refused at build."""
    _, me = wallet(env)
    with pytest.raises(InvalidInputError) as info:
        env.adapter.build(ContractCall(to=MEMO, data=b"x", value=1), me)
    assert info.value.field == "value"
    with pytest.raises(InvalidInputError) as info:
        env.adapter.build(
            ContractCall(to=MEMO, accounts=(AccountSpec(pubkey=stranger(), is_signer=True),)), me
        )
    assert info.value.field == "accounts[0].is_signer"
    with pytest.raises(InvalidInputError) as info:
        env.adapter.build(ContractCall(to=me, data=b"x"), me)  # a wallet, not a program
    assert info.value.field == "to"
    with pytest.raises(InvalidInputError) as info:
        env.adapter.build(ContractCall(to=stranger(), data=b"x"), me)  # nothing there
    assert info.value.field == "to"


# --------------------------------------------------------------------------- batch


def test_batch_applies_everything_in_one_transaction(env: SolanaEnv) -> None:
    """A batch of transfer + token transfer + memo call lands as one tx, all applied."""
    secret, me = wallet(env)
    mint = env.adapter.create_test_token(6)
    env.adapter.mint_test_token(mint, me, 100)
    bob, carol = stranger(), stranger()
    batch = Batch(
        requests=(
            Transfer(to=bob, amount=SOL),
            TokenTransfer(token=mint, to=carol, amount=40),
            TokenTransfer(token=mint, to=carol, amount=2),
            ContractCall(
                to=MEMO, data=b"batch", accounts=(AccountSpec(pubkey=me, is_signer=True),)
            ),
        )
    )
    unsigned = env.adapter.build(batch, me)
    # One ATA creation for carol although two token transfers go to her.
    programs = [
        str(unsigned.payload.account_keys[ix.program_id_index])
        for ix in unsigned.payload.instructions
    ]
    assert programs.count(str(spl.ASSOCIATED_TOKEN_PROGRAM_ID)) == 1
    signed = env.adapter.sign(unsigned, secret)
    env.adapter.submit(signed)
    assert env.adapter.wait_for_confirmation(signed).state == ChainTxState.CONFIRMED
    assert env.adapter.get_balance(bob) == SOL
    assert env.adapter.get_token_balance(carol, mint) == 42
    assert env.adapter.get_token_balance(me, mint) == 58


def test_batch_is_atomic(env: SolanaEnv) -> None:
    """One failing item (token overdraft) means nothing in the batch applies."""
    secret, me = wallet(env)
    mint = env.adapter.create_test_token(6)
    env.adapter.mint_test_token(mint, me, 100)
    bob, carol = stranger(), stranger()
    batch = Batch(
        requests=(Transfer(to=bob, amount=SOL), TokenTransfer(token=mint, to=carol, amount=101))
    )
    signed = env.adapter.sign(env.adapter.build(batch, me), secret)
    with pytest.raises(InsufficientFundsError) as info:
        env.adapter.submit(signed)
    assert info.value.instruction_index == 2  # type: ignore[attr-defined]
    assert env.adapter.get_balance(bob) == 0
    assert env.adapter.get_token_balance(carol, mint) == 0
    assert env.adapter.get_token_balance(me, mint) == 100
    assert env.adapter.get_balance(me) == 10 * SOL  # preflight refused it: no fee either


def test_batch_is_atomic_even_when_it_lands() -> None:
    """Without preflight the failing batch lands: fee charged, every effect reverted."""
    for factory in (litesvm_env, rpc_env):
        with factory(preflight=False) as env:
            secret, me = wallet(env)
            bob = stranger()
            batch = Batch(
                requests=(
                    Transfer(to=bob, amount=SOL),
                    ContractCall(
                        to=MEMO, data=b"\xff", accounts=(AccountSpec(pubkey=me, is_signer=True),)
                    ),
                )
            )
            signed = env.adapter.sign(env.adapter.build(batch, me), secret)
            assert env.adapter.submit(signed) == signed.tx_hash
            status = env.adapter.wait_for_confirmation(signed)
            assert status.state == ChainTxState.FAILED
            assert isinstance(status.error, ExecutionRevertedError)
            assert status.fee == FEE
            assert env.adapter.get_balance(bob) == 0
            assert env.adapter.get_balance(me) == 10 * SOL - FEE


def test_batch_item_errors_name_the_item(env: SolanaEnv) -> None:
    """A bad item is reported with its index in the field name."""
    _, me = wallet(env)
    with pytest.raises(InvalidAddressError) as info:
        env.adapter.build(
            Batch(requests=(Transfer(to=stranger(), amount=1), Transfer(to="nope" * 10, amount=1))),
            me,
        )
    assert info.value.field == "requests[1].to"


# --------------------------------------------------------------------------- stale / status


def test_stale_blockhash_then_rebuild_once(env: SolanaEnv) -> None:
    """An expired blockhash is a stale error; rebuilding and re-signing once succeeds."""
    secret, me = wallet(env)
    bob = stranger()
    request = Transfer(to=bob, amount=SOL)
    unsigned = env.adapter.build(request, me)
    signed = env.adapter.sign(unsigned, secret)
    env.expire_blockhash()
    with pytest.raises(StaleTransactionError) as info:
        env.adapter.submit(signed)
    assert info.value.kind == "stale"
    with pytest.raises(StaleTransactionError):
        env.adapter.estimate_fee(unsigned)
    assert env.adapter.get_status(signed).state == ChainTxState.DROPPED
    rebuilt = env.adapter.sign(env.adapter.build(request, me), secret)
    assert rebuilt.tx_hash != signed.tx_hash
    env.adapter.submit(rebuilt)
    assert env.adapter.wait_for_confirmation(rebuilt).state == ChainTxState.CONFIRMED
    assert env.adapter.get_balance(bob) == SOL
    assert env.adapter.get_balance(me) == 10 * SOL - SOL - FEE


def test_status_not_found_then_dropped(env: SolanaEnv) -> None:
    """Signed but never sent: NOT_FOUND while the blockhash lives, DROPPED after."""
    secret, me = wallet(env)
    signed = env.adapter.sign(env.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret)
    assert env.adapter.get_status(signed).state == ChainTxState.NOT_FOUND
    assert env.adapter.wait_for_confirmation(signed, timeout=0).state == ChainTxState.NOT_FOUND
    env.expire_blockhash()
    assert env.adapter.get_status(signed).state == ChainTxState.DROPPED


def test_pending_until_the_commitment_is_reached() -> None:
    """A transaction only "processed" by the node is PENDING under commitment "confirmed"."""
    with rpc_env() as env:
        secret, me = wallet(env)
        signed = env.adapter.sign(
            env.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret
        )
        assert env.server is not None
        env.server.confirmation_status = "processed"
        env.adapter.submit(signed)
        assert env.adapter.get_status(signed).state == ChainTxState.PENDING
        assert env.adapter.wait_for_confirmation(signed, timeout=0.05).state == ChainTxState.PENDING
        env.server.confirmation_status = "confirmed"
        assert env.adapter.wait_for_confirmation(signed).state == ChainTxState.CONFIRMED


def test_simulate_reports_success_and_failure(env: SolanaEnv) -> None:
    """simulate returns logs, fee and compute on success, and the mapped error on failure."""
    _, me = wallet(env, SOL)
    ok = env.adapter.simulate(env.adapter.build(Transfer(to=stranger(), amount=1_000_000), me))
    assert ok.success and ok.error is None
    assert ok.fee == FEE
    assert ok.units_consumed and ok.units_consumed > 0
    assert any("11111111111111111111111111111111 success" in line for line in ok.logs)
    bad = env.adapter.simulate(env.adapter.build(Transfer(to=stranger(), amount=2 * SOL), me))
    assert not bad.success
    assert isinstance(bad.error, InsufficientFundsError)
    assert any("insufficient lamports" in line for line in bad.logs)
    assert env.adapter.get_balance(me) == SOL  # nothing committed


# --------------------------------------------------------------------------- validation


def test_build_validates_requests(env: SolanaEnv) -> None:
    """Bad requests are refused at build, naming the field, with no chain state touched."""
    _, me = wallet(env)
    mint = env.adapter.create_test_token(6)
    cases: list[tuple[object, str]] = [
        (Transfer(to=stranger(), amount=0), "amount"),
        (Transfer(to=stranger(), amount=2**64), "amount"),
        (TokenTransfer(token=mint, to=stranger(), amount=0), "amount"),
        (TokenTransfer(token=mint, to=stranger(), amount=1, decimals=9), "decimals"),
        (TokenTransfer(token=stranger(), to=stranger(), amount=1), "token"),
        (TokenTransfer(token=me, to=stranger(), amount=1), "token"),  # a wallet, not a mint
        (TokenTransfer(token=MEMO, to=stranger(), amount=1), "token"),
        (Approve(token=mint, spender=stranger(), amount=2**64), "amount"),
        (ContractCall(to=MEMO, data=b"x" * 1200), "request"),
        ({"type": "TRANSFER", "to": stranger(), "amount": 1}, "request"),
    ]
    for request, field in cases:
        with pytest.raises(InvalidInputError) as info:
            env.adapter.build(request, me)  # type: ignore[arg-type]
        assert info.value.field == field, request
    with pytest.raises(InvalidInputError) as info:
        env.adapter.build(Transfer(to=stranger(), amount=1), me, nonce=3)
    assert info.value.field == "nonce"
    with pytest.raises(InvalidAddressError) as info:
        env.adapter.build(Transfer(to=stranger(), amount=1), "not-an-address")
    assert info.value.field == "sender"


def test_token_transfer_refuses_a_token_account_as_recipient(env: SolanaEnv) -> None:
    """Sending to a token account (not a wallet) would strand the tokens: refused."""
    secret, me = wallet(env)
    mint = env.adapter.create_test_token(6)
    env.adapter.mint_test_token(mint, me, 10)
    my_ata = spl.associated_token_address(Pubkey.from_string(me), Pubkey.from_string(mint))
    with pytest.raises(InvalidInputError) as info:
        env.adapter.build(TokenTransfer(token=mint, to=str(my_ata), amount=1), me)
    assert info.value.field == "to"
    assert env.adapter.get_token_balance(me, mint) == 10
    del secret


def test_token_transfer_without_holding_the_token(env: SolanaEnv) -> None:
    """A sender with no token account for the mint gets InsufficientFundsError at build."""
    _, me = wallet(env)
    mint = env.adapter.create_test_token(6)
    with pytest.raises(InsufficientFundsError):
        env.adapter.build(TokenTransfer(token=mint, to=stranger(), amount=1), me)


def test_sign_validates_and_never_leaks_the_secret(env: SolanaEnv) -> None:
    """A wrong or malformed secret is refused without the secret in message or fields."""
    secret, me = wallet(env)
    other_secret, _ = env.adapter.generate_secret()
    unsigned = env.adapter.build(Transfer(to=stranger(), amount=SOL), me)
    for bad in (other_secret, secret[:31], secret + b"\x00", "x" * 32):
        with pytest.raises(InvalidInputError) as info:
            env.adapter.sign(unsigned, bad)  # type: ignore[arg-type]
        assert info.value.field == "secret"
        text = str(info.value.to_dict()) + repr(info.value)
        for needle in (secret.hex(), other_secret.hex()):
            assert needle not in text
    signed = env.adapter.sign(unsigned, secret)
    assert secret.hex() not in repr(signed)
    assert "raw" not in repr(signed)


def test_submit_and_status_refuse_foreign_objects(env: SolanaEnv) -> None:
    """Garbage or foreign-chain SignedTx / UnsignedTx are InvalidInputError, not crashes."""
    from waiaas.chains.base import SignedTx, UnsignedTx

    secret, me = wallet(env)
    signed = env.adapter.sign(env.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret)
    with pytest.raises(InvalidInputError):
        env.adapter.submit(SignedTx(chain="solana", raw=b"\x01garbage", tx_hash="x"))
    with pytest.raises(InvalidInputError):
        env.adapter.submit(SignedTx(chain="evm", raw=signed.raw, tx_hash=signed.tx_hash))
    with pytest.raises(InvalidInputError):
        env.adapter.get_status(SignedTx(chain="solana", raw=signed.raw, tx_hash="1" * 64))
    with pytest.raises(InvalidInputError):
        env.adapter.sign(UnsignedTx(chain="solana", sender=me, payload={"x": 1}), secret)
    with pytest.raises(InvalidInputError):
        env.adapter.wait_for_confirmation(signed, timeout=-1)


def test_fund_refuses_amounts_below_rent_for_new_accounts(env: SolanaEnv) -> None:
    """fund() of a new account below the rent-exempt minimum is refused, exact above it."""
    address = stranger()
    minimum = rent(env, 0)
    with pytest.raises(InvalidInputError) as info:
        env.adapter.fund(address, minimum - 1)
    assert str(minimum) in str(info.value)
    for bad in (0, -5, True, 1.5):
        with pytest.raises(InvalidInputError):
            env.adapter.fund(address, bad)  # type: ignore[arg-type]
    env.adapter.fund(address, minimum)
    env.adapter.fund(address, 1)  # an existing account can take any amount
    assert env.adapter.get_balance(address) == minimum + 1


def test_test_token_controls_validate(env: SolanaEnv) -> None:
    """mint_test_token refuses mints of another authority; create_test_token checks args."""
    mint = env.adapter.create_test_token(2)
    with litesvm_env() as other:
        # Same mint bytes on another chain do not matter: authority is checked on this chain.
        foreign = other.adapter.create_test_token(2)
    with pytest.raises(InvalidInputError):
        env.adapter.mint_test_token(foreign, stranger(), 1)  # does not exist here
    if env.server is None:
        neighbour = SolanaAdapter.local(svm=env.svm)  # another authority on the same chain
        theirs = neighbour.create_test_token(2)
        with pytest.raises(InvalidInputError) as info:
            env.adapter.mint_test_token(theirs, stranger(), 1)
        assert info.value.field == "token"
    with pytest.raises(InvalidInputError):
        env.adapter.create_test_token(256)
    with pytest.raises(InvalidInputError):
        env.adapter.create_test_token(6, program="spl")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        env.adapter.mint_test_token(mint, stranger(), 0)
    holder = stranger()
    env.adapter.mint_test_token(mint, holder, 1)
    env.adapter.mint_test_token(mint, holder, 2)
    assert env.adapter.get_token_balance(holder, mint) == 3


def test_constructors_validate_their_arguments() -> None:
    """Bad network, commitment, URL, timeout or compute settings are InvalidInputError."""
    bad_local: list[dict[str, object]] = [
        {"network": ""},
        {"network": " localnet"},
        {"compute_unit_limit": 0},
        {"compute_unit_limit": 1_400_001},
        {"compute_unit_price": -1},
        {"compute_unit_price": 1.5},
    ]
    for kwargs in bad_local:
        with pytest.raises(InvalidInputError):
            SolanaAdapter.local(**kwargs)  # type: ignore[arg-type]
    bad_rpc: list[tuple[object, dict[str, object]]] = [
        ("ftp://node.example", {}),
        ("http://", {}),
        ("http://node.example:99999", {}),
        (42, {}),
        ("http://node.example", {"timeout": 0}),
        ("http://node.example", {"timeout": float("inf")}),
        ("http://node.example", {"timeout": True}),
        ("http://node.example", {"commitment": "final"}),
    ]
    for url, kwargs in bad_rpc:
        with pytest.raises(InvalidInputError):
            SolanaAdapter.rpc(url, network="devnet", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError) as info:
        LocalSolanaAdapter.rpc("https://api.mainnet-beta.solana.com", network="mainnet-beta")
    assert info.value.field == "network"
    plain = SolanaAdapter.rpc("https://api.mainnet-beta.solana.com", network="mainnet-beta")
    with plain:
        assert not isinstance(plain, LocalChainControl)
        assert isinstance(plain, ChainAdapter)


# --------------------------------------------------------------------------- blockhash window


def test_local_blockhash_stays_valid_for_150_blocks_as_on_a_cluster() -> None:
    """In-process: a transaction built before others landed still lands (the blockhash it
    carries stays valid for VALID_BLOCKS blocks); after that many new blocks it is stale."""
    from waiaas.chains.solana._litesvm import VALID_BLOCKS

    with litesvm_env() as env:
        secret, me = wallet(env)
        early = env.adapter.sign(
            env.adapter.build(Transfer(to=stranger(), amount=SOL // 100), me), secret
        )
        for i in range(3):  # others land meanwhile, each on a new block
            other = env.adapter.build(Transfer(to=stranger(), amount=SOL // 100 + 2 + i), me)
            env.adapter.submit(env.adapter.sign(other, secret))
        env.adapter.submit(early)
        assert env.adapter.wait_for_confirmation(early).state == ChainTxState.CONFIRMED

        late = env.adapter.sign(
            env.adapter.build(Transfer(to=stranger(), amount=SOL // 100 + 9), me), secret
        )
        for i in range(VALID_BLOCKS + 1):  # the first lands on late's own block
            other = env.adapter.build(Transfer(to=stranger(), amount=SOL // 100 + 100 + i), me)
            env.adapter.submit(env.adapter.sign(other, secret))
        with pytest.raises(StaleTransactionError):
            env.adapter.submit(late)
        assert env.adapter.get_status(late).state == ChainTxState.DROPPED


def test_local_blockhash_expired_on_the_runtime_expires_every_earlier_one() -> None:
    """``svm.expire_blockhash()`` (a test making a transaction stale) expires every earlier
    blockhash, not only the latest."""
    with litesvm_env() as env:
        secret, me = wallet(env)
        first = env.adapter.sign(
            env.adapter.build(Transfer(to=stranger(), amount=SOL // 100), me), secret
        )
        landed = env.adapter.build(Transfer(to=stranger(), amount=SOL // 100 + 2), me)
        env.adapter.submit(env.adapter.sign(landed, secret))
        second = env.adapter.sign(
            env.adapter.build(Transfer(to=stranger(), amount=SOL // 100 + 3), me), secret
        )
        env.svm.expire_blockhash()
        for stale in (first, second):
            with pytest.raises(StaleTransactionError):
                env.adapter.submit(stale)


@pytest.mark.parametrize("preflight", [True, False])
def test_local_chain_refuses_a_blockhash_it_never_issued(preflight: bool) -> None:
    """LiteSVM's own check is off (the backend checks a cluster's window itself): a
    transaction carrying a made-up blockhash is still refused, charges nothing and moves
    nothing, with or without preflight; its simulation reports BlockhashNotFound."""
    from solders.hash import Hash
    from solders.message import MessageV0
    from solders.system_program import TransferParams, transfer
    from solders.transaction import VersionedTransaction

    from waiaas.chains.solana.errors import TxContext

    with litesvm_env() as env:
        payer, bob = Keypair(), Keypair()
        env.svm.airdrop(payer.pubkey(), SOL)
        ix = transfer(
            TransferParams(from_pubkey=payer.pubkey(), to_pubkey=bob.pubkey(), lamports=5)
        )
        message = MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.new_unique())
        tx = VersionedTransaction(message, [payer])
        backend = env.adapter._backend
        context = TxContext.from_message(tx.message)
        assert backend.simulate(tx, sig_verify=True, context=context).err == "BlockhashNotFound"
        with pytest.raises(StaleTransactionError):
            backend.send(tx, preflight=preflight, context=context)
        assert env.svm.get_balance(payer.pubkey()) == SOL
        assert not env.svm.get_balance(bob.pubkey())


def test_plans_kept_by_message_bytes_follow_the_message_and_the_network() -> None:
    """The plans read from messages are kept by the message's exact bytes and the network:
    transfers of the same shape (another amount, another recipient) get their own plans; the
    same message read by an adapter of another network gets that network; bytes signed from
    another message give that message's plan; past the bound, plans are read again."""
    import dataclasses

    from waiaas.chains.solana import adapter as solana_adapter
    from waiaas.plan import decode_plan, plan_digest

    chain = SolanaAdapter.local()
    other = SolanaAdapter.local(network="othernet")
    try:
        secret, sender = chain.generate_secret()
        chain.fund(sender, 10**10)
        bob, carol = chain.generate_secret()[1], chain.generate_secret()[1]
        first = chain.build(Transfer(to=bob, amount=1_000_000), sender)
        plans = {
            "first": chain.plan_of(first),
            "amount": chain.plan_of(chain.build(Transfer(to=bob, amount=1_000_001), sender)),
            "recipient": chain.plan_of(chain.build(Transfer(to=carol, amount=1_000_000), sender)),
        }
        assert len({plan_digest(p) for p in plans.values()}) == 3
        amounts = [decode_plan(p)[0].amount for p in plans.values()]  # type: ignore[attr-defined]
        assert amounts == [1_000_000, 1_000_001, 1_000_000]
        assert chain.plan_of(first) == plans["first"]
        elsewhere = other.plan_of(dataclasses.replace(first, payload=first.payload))
        assert elsewhere.network == "othernet" and plans["first"].network == chain.network
        assert plan_digest(elsewhere) != plan_digest(plans["first"])
        signed = chain.sign(first, secret)
        assert chain.plan_of_signed(signed) == plans["first"]
        swapped = chain.sign(chain.build(Transfer(to=carol, amount=7_000_000), sender), secret)
        assert decode_plan(chain.plan_of_signed(swapped))[0].amount == 7_000_000  # type: ignore[attr-defined]
        for amount in range(2_000_000, 2_000_000 + solana_adapter._PLANS_KEPT + 5):
            unsigned = chain.build(Transfer(to=bob, amount=amount), sender)
            assert decode_plan(chain.plan_of(unsigned))[0].amount == amount  # type: ignore[attr-defined]
        assert len(solana_adapter._plans) <= solana_adapter._PLANS_KEPT
        assert chain.plan_of_signed(signed) == plans["first"]
    finally:
        chain.close()
        other.close()
