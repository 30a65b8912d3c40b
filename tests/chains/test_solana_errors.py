"""Every Solana error mapping, checked with real failures on LiteSVM and over JSON-RPC."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import httpx
import pytest
from solders.account import Account
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import (
    InstructionErrorCustom,
    InstructionErrorFieldless,
    TransactionErrorDuplicateInstruction,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
    TransactionErrorProgramExecutionTemporarilyRestricted,
    TransactionStatus,
)

from waiaas.chains.base import ChainTxState, SignedTx
from waiaas.chains.solana import SolanaAdapter, spl
from waiaas.chains.solana.errors import (
    TxContext,
    is_already_processed,
    map_http_status,
    map_rpc_error,
    map_transaction_error,
    map_transport_error,
    redact_url,
    transaction_error_to_json,
)
from waiaas.errors import (
    ChainError,
    ExecutionRevertedError,
    InsufficientFundsError,
    PermanentChainError,
    StaleTransactionError,
    TransientChainError,
)
from waiaas.types import AccountSpec, ContractCall, TokenTransfer, Transfer

try:  # tests/chains as a package, or as a rootdir-relative module directory
    from .solana_fixtures import SolanaEnv, litesvm_env, rpc_env
    from .solana_rpc_server import Fault
except ImportError:
    from solana_fixtures import SolanaEnv, litesvm_env, rpc_env
    from solana_rpc_server import Fault

SOL = 1_000_000_000
MEMO = str(spl.MEMO_PROGRAM_ID)
TOKEN = str(spl.TOKEN_PROGRAM_ID)
SYSTEM = "11111111111111111111111111111111"


@pytest.fixture(params=["litesvm", "solana-rpc"])
def env(request: pytest.FixtureRequest) -> Iterator[SolanaEnv]:
    factory = litesvm_env if request.param == "litesvm" else rpc_env
    with factory() as solana:
        yield solana


@pytest.fixture
def rpc() -> Iterator[SolanaEnv]:
    with rpc_env(timeout=0.5) as solana:
        yield solana


def funded(env: SolanaEnv, lamports: int = 10 * SOL) -> tuple[bytes, str]:
    secret, address = env.adapter.generate_secret()
    env.adapter.fund(address, lamports)
    return secret, address


def set_lamports(env: SolanaEnv, address: str, lamports: int) -> None:
    account = Account(
        lamports=lamports, data=b"", owner=SYSTEM_PROGRAM_ID, executable=False, rent_epoch=0
    )
    if env.server is not None:
        with env.server.lock:
            env.svm.set_account(Pubkey.from_string(address), account)
    else:
        env.svm.set_account(Pubkey.from_string(address), account)


def submit_error(env: SolanaEnv, request: object, sender: str, secret: bytes) -> ChainError:
    signed = env.adapter.sign(env.adapter.build(request, sender), secret)  # type: ignore[arg-type]
    with pytest.raises(ChainError) as info:
        env.adapter.submit(signed)
    assert info.value.chain == "solana"
    return info.value


def stranger() -> str:
    return str(Keypair().pubkey())


def node_json(err: object) -> object:
    """How solders' own serde renders a TransactionError (what a node sends)."""
    return json.loads(TransactionStatus(0, None, err, err, None).to_json())["err"]


# --------------------------------------------------------------------------- real failures


def test_system_transfer_overdraft_is_insufficient_funds(env: SolanaEnv) -> None:
    """System custom error 1 -> InsufficientFundsError, with program, code and logs."""
    secret, me = funded(env, SOL)
    error = submit_error(env, Transfer(to=stranger(), amount=2 * SOL), me, secret)
    assert isinstance(error, InsufficientFundsError)
    assert error.kind == "permanent"
    assert error.custom_code == 1  # type: ignore[attr-defined]
    assert error.program_id == SYSTEM  # type: ignore[attr-defined]
    assert error.solana_error == '{"InstructionError":[0,{"Custom":1}]}'  # type: ignore[attr-defined]
    assert any("insufficient lamports" in line for line in error.logs)  # type: ignore[attr-defined]
    assert "insufficient lamports" in error.message


def test_spl_overdraft_is_insufficient_funds(env: SolanaEnv) -> None:
    """SPL Token custom error 1 -> InsufficientFundsError naming the token program."""
    secret, me = funded(env)
    mint = env.adapter.create_test_token(6)
    env.adapter.mint_test_token(mint, me, 10)
    error = submit_error(env, TokenTransfer(token=mint, to=stranger(), amount=11), me, secret)
    assert isinstance(error, InsufficientFundsError)
    assert error.program_id == TOKEN  # type: ignore[attr-defined]
    assert error.custom_code == 1  # type: ignore[attr-defined]


def test_fee_payer_without_enough_for_the_fee(env: SolanaEnv) -> None:
    """InsufficientFundsForFee -> InsufficientFundsError."""
    secret, me = env.adapter.generate_secret()
    set_lamports(env, me, 1000)
    error = submit_error(env, Transfer(to=stranger(), amount=1), me, secret)
    assert isinstance(error, InsufficientFundsError)
    assert error.solana_error == '"InsufficientFundsForFee"'  # type: ignore[attr-defined]


def test_fee_payer_that_never_existed(env: SolanaEnv) -> None:
    """AccountNotFound (a never-funded fee payer) -> InsufficientFundsError."""
    secret, me = env.adapter.generate_secret()
    error = submit_error(env, Transfer(to=stranger(), amount=SOL), me, secret)
    assert isinstance(error, InsufficientFundsError)
    assert error.solana_error == '"AccountNotFound"'  # type: ignore[attr-defined]
    assert "never funded" in error.message


def test_insufficient_funds_for_rent_names_the_account(env: SolanaEnv) -> None:
    """InsufficientFundsForRent -> InsufficientFundsError naming the account left short."""
    secret, me = funded(env)
    bob = stranger()
    error = submit_error(env, Transfer(to=bob, amount=100), me, secret)
    assert isinstance(error, InsufficientFundsError)
    assert error.solana_error == '{"InsufficientFundsForRent":{"account_index":1}}'  # type: ignore[attr-defined]
    assert bob in error.message
    assert env.adapter.get_balance(me) == 10 * SOL


def test_expired_blockhash_is_stale(env: SolanaEnv) -> None:
    """BlockhashNotFound -> StaleTransactionError (kind stale)."""
    secret, me = funded(env)
    signed = env.adapter.sign(env.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret)
    env.expire_blockhash()
    with pytest.raises(StaleTransactionError) as info:
        env.adapter.submit(signed)
    assert info.value.kind == "stale"
    assert info.value.solana_error == '"BlockhashNotFound"'  # type: ignore[attr-defined]


def test_bad_signature_is_permanent(env: SolanaEnv) -> None:
    """SignatureFailure (and the node's -32003) -> PermanentChainError."""
    secret, me = funded(env)
    signed = env.adapter.sign(env.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret)
    raw = bytearray(signed.raw)
    data = struct.pack("<IQ", 2, SOL)  # the system transfer's instruction data
    at = raw.index(data) + 4
    raw[at] ^= 0x01  # alter the amount after signing: the signature no longer verifies
    forged = SignedTx(chain="solana", raw=bytes(raw), tx_hash=signed.tx_hash)
    with pytest.raises(PermanentChainError) as info:
        env.adapter.submit(forged)
    assert type(info.value) is PermanentChainError
    assert info.value.solana_error == '"SignatureFailure"'  # type: ignore[attr-defined]
    if env.server is not None:
        assert info.value.rpc_code == -32003  # type: ignore[attr-defined]
    assert env.adapter.get_balance(me) == 10 * SOL


def test_program_failure_is_execution_reverted_with_logs(env: SolanaEnv) -> None:
    """An instruction error of a program -> ExecutionRevertedError with reason and logs."""
    secret, me = funded(env)
    call = ContractCall(
        to=MEMO, data=b"\xff\xfe", accounts=(AccountSpec(pubkey=me, is_signer=True),)
    )
    error = submit_error(env, call, me, secret)
    assert isinstance(error, ExecutionRevertedError)
    assert error.reason == "ProgramFailedToComplete"
    assert error.program_id == MEMO  # type: ignore[attr-defined]
    assert any("invalid utf-8" in line for line in error.logs)  # type: ignore[attr-defined]
    assert "invalid utf-8" in error.message


def test_named_token_program_error(env: SolanaEnv) -> None:
    """A token custom error other than 1 -> ExecutionRevertedError with the TokenError name."""
    secret, me = funded(env)
    mint = env.adapter.create_test_token(6)
    env.adapter.mint_test_token(mint, me, 10)
    env.adapter.mint_test_token(mint, (bob := stranger()), 1)
    me_key, mint_key = Pubkey.from_string(me), Pubkey.from_string(mint)
    source = spl.associated_token_address(me_key, mint_key)
    dest = spl.associated_token_address(Pubkey.from_string(bob), mint_key)
    call = ContractCall(
        to=TOKEN,
        data=struct.pack("<BQB", 12, 1, 9),  # transfer_checked with the wrong decimals
        accounts=(
            AccountSpec(pubkey=str(source), is_writable=True),
            AccountSpec(pubkey=mint),
            AccountSpec(pubkey=str(dest), is_writable=True),
            AccountSpec(pubkey=me, is_signer=True),
        ),
    )
    error = submit_error(env, call, me, secret)
    assert isinstance(error, ExecutionRevertedError)
    assert error.reason == "TokenError::MintDecimalsMismatch"
    assert error.custom_code == 18  # type: ignore[attr-defined]


def test_ata_creation_the_sender_cannot_pay_is_insufficient_funds(env: SolanaEnv) -> None:
    """The recipient ATA's rent, unaffordable, fails inside System (CPI): InsufficientFunds."""
    secret, me = funded(env)
    mint = env.adapter.create_test_token(6)
    env.adapter.mint_test_token(mint, me, 10)
    unsigned = env.adapter.build(TokenTransfer(token=mint, to=stranger(), amount=1), me)
    set_lamports(env, me, 900_000)  # pays the fee, not the ATA's rent-exempt deposit
    with pytest.raises(InsufficientFundsError) as info:
        env.adapter.submit(env.adapter.sign(unsigned, secret))
    assert info.value.program_id == SYSTEM  # type: ignore[attr-defined]
    assert info.value.instruction_index == 0  # type: ignore[attr-defined]


def test_failure_that_lands_is_reported_by_status() -> None:
    """Without preflight a failing tx lands: get_status is FAILED with the mapped error."""
    for factory in (litesvm_env, rpc_env):
        with factory(preflight=False) as env:
            secret, me = funded(env, SOL)
            signed = env.adapter.sign(
                env.adapter.build(Transfer(to=stranger(), amount=2 * SOL), me), secret
            )
            env.adapter.submit(signed)
            status = env.adapter.wait_for_confirmation(signed)
            assert status.state == ChainTxState.FAILED
            assert isinstance(status.error, InsufficientFundsError)
            assert status.fee == 5000
            assert any("insufficient lamports" in line for line in status.logs)
            assert env.adapter.submit(signed) == signed.tx_hash  # AlreadyProcessed: fine


def test_skip_preflight_with_an_expired_blockhash_is_dropped() -> None:
    """A node accepts a stale tx without preflight; it never lands and turns DROPPED."""
    with rpc_env(preflight=False) as env:
        secret, me = funded(env)
        signed = env.adapter.sign(
            env.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret
        )
        env.expire_blockhash()
        assert env.adapter.submit(signed) == signed.tx_hash
        assert env.adapter.wait_for_confirmation(signed, timeout=1).state == ChainTxState.DROPPED


def test_already_processed_is_success_on_resubmit(env: SolanaEnv) -> None:
    """AlreadyProcessed on a resubmission counts as success; elsewhere it is permanent."""
    secret, me = funded(env)
    signed = env.adapter.sign(env.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret)
    env.adapter.submit(signed)
    assert env.adapter.submit(signed) == signed.tx_hash
    assert is_already_processed("AlreadyProcessed")
    error = map_transaction_error("AlreadyProcessed")
    assert type(error) is PermanentChainError


def test_litesvm_errors_render_like_a_node() -> None:
    """transaction_error_to_json agrees with solders' serde for real LiteSVM failures."""
    with litesvm_env() as env:
        svm = env.svm
        svm.with_blockhash_check(True)  # LiteSVM's own errors (the backend checks itself)
        payer = Keypair()
        svm.airdrop(payer.pubkey(), SOL)
        seen = []

        def send(ixs: list[Instruction], signer: Keypair = payer) -> object:
            message = MessageV0.try_compile(signer.pubkey(), ixs, [], svm.latest_blockhash())
            tx = VersionedTransaction(message, [signer])
            result = svm.send_transaction(tx)
            assert isinstance(result, FailedTransactionMetadata)
            seen.append(result.err())
            return tx

        from solders.system_program import TransferParams, transfer

        send(
            [
                transfer(
                    TransferParams(
                        from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=2 * SOL
                    )
                )
            ]
        )
        send(
            [
                transfer(
                    TransferParams(
                        from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=10
                    )
                )
            ]
        )
        send([Instruction(spl.MEMO_PROGRAM_ID, b"\xff", [])])
        send([Instruction(Keypair().pubkey(), b"", [])])
        nobody = Keypair()
        send(
            [
                transfer(
                    TransferParams(
                        from_pubkey=nobody.pubkey(), to_pubkey=payer.pubkey(), lamports=1
                    )
                )
            ],
            nobody,
        )
        good = MessageV0.try_compile(
            payer.pubkey(),
            [
                transfer(
                    TransferParams(
                        from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=SOL // 2
                    )
                )
            ],
            [],
            svm.latest_blockhash(),
        )
        tx = VersionedTransaction(good, [payer])
        svm.send_transaction(tx)
        again = svm.send_transaction(tx)
        assert isinstance(again, FailedTransactionMetadata)
        seen.append(again.err())
        svm.expire_blockhash()
        stale = svm.send_transaction(tx)
        assert isinstance(stale, FailedTransactionMetadata)
        seen.append(stale.err())
        rendered = [transaction_error_to_json(err) for err in seen]
        assert rendered == [node_json(err) for err in seen]
        assert rendered[4:] == ["AccountNotFound", "AlreadyProcessed", "BlockhashNotFound"]


def test_every_solders_error_shape_renders_and_maps() -> None:
    """All fieldless errors and every tagged shape render like solders and map to a kind."""
    names = [n for n in dir(TransactionErrorFieldless) if not n.startswith("_")]
    names = [
        n
        for n in names
        if isinstance(getattr(TransactionErrorFieldless, n), TransactionErrorFieldless)
    ]
    assert "BlockhashNotFound" in names and len(names) > 25
    transient = {
        "AccountInUse",
        "ClusterMaintenance",
        "CommitCancelled",
        "ProgramCacheHitMaxLimit",
        "WouldExceedAccountDataBlockLimit",
        "WouldExceedAccountDataTotalLimit",
        "WouldExceedMaxAccountCostLimit",
        "WouldExceedMaxBlockCostLimit",
        "WouldExceedMaxVoteCostLimit",
    }
    for name in names:
        err = getattr(TransactionErrorFieldless, name)
        assert transaction_error_to_json(err) == node_json(err) == name
        mapped = map_transaction_error(err)
        if name == "BlockhashNotFound":
            assert isinstance(mapped, StaleTransactionError)
        elif name in ("InsufficientFundsForFee", "AccountNotFound"):
            assert isinstance(mapped, InsufficientFundsError)
        elif name in transient:
            assert isinstance(mapped, TransientChainError)
        else:
            assert type(mapped) is PermanentChainError, name
    tagged = [
        TransactionErrorInstructionError(2, InstructionErrorCustom(7)),
        TransactionErrorInstructionError(0, InstructionErrorFieldless.InsufficientFunds),
        TransactionErrorInstructionError(1, InstructionErrorFieldless.ComputationalBudgetExceeded),
        TransactionErrorInsufficientFundsForRent(3),
        TransactionErrorDuplicateInstruction(1),
        TransactionErrorProgramExecutionTemporarilyRestricted(4),
    ]
    expected: list[type[ChainError]] = [
        ExecutionRevertedError,
        InsufficientFundsError,
        ExecutionRevertedError,
        InsufficientFundsError,
        PermanentChainError,
        TransientChainError,
    ]
    for err, cls in zip(tagged, expected, strict=True):
        assert transaction_error_to_json(err) == node_json(err)
        assert type(map_transaction_error(err)) is cls


def test_custom_code_1_of_an_unknown_program_is_a_revert() -> None:
    """Custom error 1 only means "insufficient funds" for System and the token programs."""
    program = str(Keypair().pubkey())
    context = TxContext(account_keys=(program,), instruction_programs=(program,))
    mapped = map_transaction_error({"InstructionError": [0, {"Custom": 1}]}, context=context)
    assert isinstance(mapped, ExecutionRevertedError)
    assert mapped.reason == "custom program error 0x1"
    system = TxContext(instruction_programs=(SYSTEM,))
    named = map_transaction_error({"InstructionError": [0, {"Custom": 0}]}, context=system)
    assert isinstance(named, ExecutionRevertedError)
    assert named.reason == "SystemError::AccountAlreadyInUse"


# --------------------------------------------------------------------------- node failures


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        (Fault.http(500), TransientChainError),
        (Fault.http(502), TransientChainError),
        (Fault.http(503), TransientChainError),
        (Fault.http(429, retry_after="2"), TransientChainError),
        (Fault.http(408), TransientChainError),
        (Fault.http(404), PermanentChainError),
        (Fault.http(403), PermanentChainError),
        (Fault.garbage(), TransientChainError),
        (Fault.stall(2.0), TransientChainError),
        (Fault.rpc(-32004, "Block not available for slot 1"), TransientChainError),
        (Fault.rpc(-32005, "Node is unhealthy"), TransientChainError),
        (Fault.rpc(-32007, "Slot 1 was skipped"), TransientChainError),
        (Fault.rpc(-32014, "Block status not yet available"), TransientChainError),
        (Fault.rpc(-32016, "Minimum context slot has not been reached"), TransientChainError),
        (Fault.rpc(-32603, "Internal error"), TransientChainError),
        (Fault.rpc(-32601, "Method not found"), PermanentChainError),
        (Fault.rpc(-32602, "Invalid params"), PermanentChainError),
        (Fault.rpc(-32600, "Invalid request"), PermanentChainError),
        (Fault.rpc(-32700, "Parse error"), PermanentChainError),
        (Fault.rpc(-32013, "Transaction signature length mismatch"), PermanentChainError),
        (Fault.rpc(-32015, "Transaction version (0) is not supported"), PermanentChainError),
        (Fault.rpc(-32003, "Transaction signature verification failure"), PermanentChainError),
    ],
)
def test_node_failures_map_by_kind(rpc: SolanaEnv, fault: Fault, cls: type[ChainError]) -> None:
    """HTTP statuses, timeouts, garbage and JSON-RPC error codes map to the right kind."""
    address = stranger()
    assert rpc.server is not None
    rpc.server.inject(fault, method="getBalance")
    with pytest.raises(ChainError) as info:
        rpc.adapter.get_balance(address)
    assert type(info.value) is cls
    assert rpc.adapter.get_balance(address) == 0  # the next call goes through
    if fault.kind == "http" and fault.status == 429:
        assert info.value.retry_after == "2"  # type: ignore[attr-defined]
        assert info.value.http_status == 429  # type: ignore[attr-defined]
    if fault.kind == "rpc":
        assert info.value.rpc_code == fault.code  # type: ignore[attr-defined]


def test_unreachable_node_is_transient() -> None:
    """A refused connection is a TransientChainError naming only scheme and host."""
    with rpc_env() as env:
        url = env.server.url if env.server else ""
    chain = SolanaAdapter.rpc(url + "/path?api-key=SECRET", network="localnet", timeout=0.5)
    with chain, pytest.raises(TransientChainError) as info:
        chain.get_balance(stranger())
    assert "SECRET" not in str(info.value.to_dict())


def test_send_timeout_then_resubmit_is_idempotent(rpc: SolanaEnv) -> None:
    """A send that times out may have landed; resubmitting the same bytes moves money once."""
    secret, me = funded(rpc)
    bob = stranger()
    signed = rpc.adapter.sign(rpc.adapter.build(Transfer(to=bob, amount=SOL), me), secret)
    assert rpc.server is not None
    rpc.server.inject(Fault.stall(1.0), method="sendTransaction")
    with pytest.raises(TransientChainError):
        rpc.adapter.submit(signed)
    status = rpc.adapter.wait_for_confirmation(signed, timeout=5)  # it landed after the stall
    assert status.state == ChainTxState.CONFIRMED
    assert rpc.adapter.submit(signed) == signed.tx_hash
    assert rpc.adapter.get_balance(bob) == SOL
    assert rpc.adapter.get_balance(me) == 10 * SOL - SOL - 5000


def test_wait_for_confirmation_rides_out_transient_failures(rpc: SolanaEnv) -> None:
    """Polling retries through 500s and rate limits until the final state."""
    secret, me = funded(rpc)
    signed = rpc.adapter.sign(rpc.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret)
    rpc.adapter.submit(signed)
    assert rpc.server is not None
    rpc.server.inject(Fault.http(500), method="getSignatureStatuses", count=2)
    rpc.server.inject(Fault.http(429), method="getTransaction")
    assert rpc.adapter.wait_for_confirmation(signed, timeout=5).state == ChainTxState.CONFIRMED


def test_wait_for_confirmation_raises_when_the_node_never_answers(rpc: SolanaEnv) -> None:
    """If every poll fails until the deadline, the last transient error is raised."""
    secret, me = funded(rpc)
    signed = rpc.adapter.sign(rpc.adapter.build(Transfer(to=stranger(), amount=SOL), me), secret)
    assert rpc.server is not None
    rpc.server.inject(Fault.http(503), method="getSignatureStatuses", count=1000)
    with pytest.raises(TransientChainError):
        rpc.adapter.wait_for_confirmation(signed, timeout=0.1)


def test_preflight_error_object_shape(rpc: SolanaEnv) -> None:
    """The test node answers a failing preflight like a node: -32002 with the simulation."""
    secret, me = funded(rpc, SOL)
    signed = rpc.adapter.sign(
        rpc.adapter.build(Transfer(to=stranger(), amount=2 * SOL), me), secret
    )
    import base64

    assert rpc.server is not None
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "sendTransaction",
        "params": [base64.b64encode(signed.raw).decode(), {"encoding": "base64"}],
    }
    answer = httpx.post(rpc.server.url, json=body, timeout=5).json()
    assert answer["id"] == 7
    error = answer["error"]
    assert error["code"] == -32002
    assert error["message"] == (
        "Transaction simulation failed: Error processing Instruction 0: custom program error: 0x1"
    )
    assert error["data"]["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert any("insufficient lamports" in line for line in error["data"]["logs"])
    assert isinstance(map_rpc_error(error), InsufficientFundsError)


# --------------------------------------------------------------------------- pure helpers


def test_malformed_rpc_errors_and_statuses() -> None:
    """Malformed error objects are transient; HTTP/transport helpers keep URLs redacted."""
    assert isinstance(map_rpc_error("boom"), TransientChainError)
    assert isinstance(map_rpc_error({"message": "no code"}), TransientChainError)
    assert isinstance(map_rpc_error({"code": -32002, "message": "x"}), PermanentChainError)
    assert isinstance(map_rpc_error({"code": -31999, "message": "unknown"}), PermanentChainError)
    url = "https://user:pw@rpc.example.com:8899/key/SECRET?api-key=SECRET"
    assert redact_url(url) == "https://rpc.example.com:8899"
    assert redact_url("not a url") == "<invalid url>"
    assert "SECRET" not in str(map_http_status(500, endpoint=url).to_dict())
    timeout = map_transport_error(httpx.ReadTimeout("timed out"), endpoint=url)
    assert isinstance(timeout, TransientChainError)
    assert "SECRET" not in str(timeout.to_dict())
