"""Every row of the EVM error mapping, exercised with real failures.

* eth-tester / py-evm: real exceptions raised by the in-process chain;
* anvil: real JSON-RPC error objects from a running node;
* transport: real sockets (a refused port, a server that stalls, HTTP error statuses, a
  non-JSON body);
* node messages anvil never produces (geth's ``already known``, ``header not found``, code 3
  reverts; hardhat's ``VM Exception``; provider rate limits) are replayed, with the exact
  shapes those nodes send, by a small local HTTP server: no other node can run here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from evm_fixtures import EvmEnv, web3_for

from waiaas.chains.evm import ChainIdMismatchError, EvmAdapter, EvmDevAdapter, map_evm_error
from waiaas.chains.evm.abi import encode_call
from waiaas.chains.evm.addresses import to_checksum
from waiaas.errors import (
    ChainError,
    ExecutionRevertedError,
    InsufficientFundsError,
    PermanentChainError,
    StaleTransactionError,
    TransientChainError,
)
from waiaas.types import ContractCall, TokenTransfer, Transfer

BOB = to_checksum("b0" * 20)
CUSTOM_ERROR = "custom error 0xdb42144d"  # InsufficientBalance(address,uint256,uint256)
PANIC_OVERFLOW = "panic 0x11: arithmetic overflow or underflow"


def _rpc_error(exc: BaseException) -> dict[str, Any]:
    """The JSON-RPC error object a ``Web3RPCError`` carries."""
    response: Any = getattr(exc, "rpc_response", None)
    error: dict[str, Any] = response["error"]
    return error


def _raised(action: Callable[[], object]) -> BaseException:
    """The exception ``action`` raises (the test fails if it raises none)."""
    try:
        action()
    except Exception as exc:
        return exc
    pytest.fail("expected the upstream call to fail")


def _funded(adapter: EvmDevAdapter, amount: int = 10**18) -> tuple[bytes, str]:
    secret, address = adapter.generate_secret()
    adapter.fund(address, amount)
    return secret, address


def _raw(adapter: EvmAdapter, secret: bytes, **fields: Any) -> bytes:
    """A signed type-2 transfer with ``fields`` overriding sane defaults (signed directly)."""
    from eth_account import Account

    tx: dict[str, Any] = {
        "type": 2,
        "chainId": adapter.chain_id,
        "nonce": 0,
        "to": BOB,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": 10 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    tx.update(fields)
    return bytes(Account.sign_transaction(tx, secret).raw_transaction)


def _token(adapter: EvmDevAdapter, holder: str, amount: int = 100) -> str:
    token = adapter.create_test_token()
    adapter.mint_test_token(token, holder, amount)
    return token


def _call(
    token: str, sender: str, selector: str, types: list[str], args: list[Any]
) -> dict[str, Any]:
    data = encode_call(bytes.fromhex(selector), types, args)
    return {"from": sender, "to": token, "data": "0x" + data.hex()}


def _transfer_call(token: str, sender: str, amount: int) -> dict[str, Any]:
    return _call(token, sender, "a9059cbb", ["address", "uint256"], [BOB, amount])


def _mint_call(token: str, sender: str, amount: int) -> dict[str, Any]:
    return _call(token, sender, "40c10f19", ["address", "uint256"], [BOB, amount])


def _burn_call(token: str, sender: str, amount: int) -> dict[str, Any]:
    return _call(token, sender, "42966c68", ["uint256"], [amount])


# --------------------------------------------------------------------------- eth-tester


def test_tester_nonce_too_low_is_stale(tester_env: EvmEnv) -> None:
    """py-evm "Invalid transaction nonce: Expected 1, but got 0" -> stale; through submit too."""
    adapter = tester_env.adapter
    secret, sender = _funded(adapter)
    w3 = web3_for(adapter)
    w3.eth.send_raw_transaction(_raw(adapter, secret))
    exc = _raised(lambda: w3.eth.send_raw_transaction(_raw(adapter, secret, value=2)))
    assert type(exc).__name__ == "ValidationError" and "Expected 1, but got 0" in str(exc)
    assert isinstance(map_evm_error(exc), StaleTransactionError)

    again = adapter.sign(adapter.build(Transfer(to=BOB, amount=3), sender, nonce=0), secret)
    with pytest.raises(StaleTransactionError) as info:
        adapter.submit(again)
    assert info.value.kind == "stale"


def test_tester_nonce_gap_is_transient(tester_env: EvmEnv) -> None:
    """py-evm refuses a nonce ahead of the chain: transient (wait for the lower nonces)."""
    adapter = tester_env.adapter
    secret, _ = _funded(adapter)
    exc = _raised(
        lambda: web3_for(adapter).eth.send_raw_transaction(_raw(adapter, secret, nonce=5))
    )
    assert "Expected 0, but got 5" in str(exc)
    assert isinstance(map_evm_error(exc), TransientChainError)


def test_tester_insufficient_funds(tester_env: EvmEnv) -> None:
    """ "cannot afford txn gas" and "does not have enough balance" -> InsufficientFundsError."""
    adapter = tester_env.adapter
    w3 = web3_for(adapter)
    _, pauper = adapter.generate_secret()
    exc = _raised(lambda: w3.eth.estimate_gas({"from": pauper, "to": BOB, "value": 0}))
    assert "cannot afford txn gas" in str(exc)
    assert isinstance(map_evm_error(exc), InsufficientFundsError)

    secret, _ = _funded(adapter, 10**16)
    exc = _raised(lambda: w3.eth.send_raw_transaction(_raw(adapter, secret, value=10**16)))
    assert "does not have enough balance" in str(exc)
    mapped = map_evm_error(exc, op="send")
    assert isinstance(mapped, InsufficientFundsError)
    assert mapped.detail.startswith("send: ValidationError")
    with pytest.raises(InsufficientFundsError):
        adapter.build(Transfer(to=BOB, amount=1), pauper)


def test_tester_fee_below_base_fee_is_stale(tester_env: EvmEnv) -> None:
    """maxFeePerGas below the block's base fee -> stale (rebuild with current fees)."""
    adapter = tester_env.adapter
    secret, _ = _funded(adapter)
    raw = _raw(adapter, secret, maxFeePerGas=1, maxPriorityFeePerGas=1)
    exc = _raised(lambda: web3_for(adapter).eth.send_raw_transaction(raw))
    assert "lower than block's base fee" in str(exc)
    assert isinstance(map_evm_error(exc), StaleTransactionError)


def test_tester_gas_above_block_limit_is_permanent(tester_env: EvmEnv) -> None:
    """A gas limit above the block's -> permanent."""
    adapter = tester_env.adapter
    secret, _ = _funded(adapter, 10**20)
    exc = _raised(
        lambda: web3_for(adapter).eth.send_raw_transaction(_raw(adapter, secret, gas=10**9))
    )
    assert "gas limit" in str(exc)
    mapped = map_evm_error(exc)
    assert type(mapped) is PermanentChainError


def test_tester_reverts_carry_their_reason(tester_env: EvmEnv) -> None:
    """TransactionFailed: Error(string) reason, Panic code, custom error selector, bare revert."""
    adapter = tester_env.adapter
    _, sender = _funded(adapter)
    token = _token(adapter, sender)
    w3 = web3_for(adapter)
    cases = [
        (_transfer_call(token, sender, 1_000), "ERC20: insufficient balance"),
        (_burn_call(token, sender, 1_000), CUSTOM_ERROR),
        ({"from": sender, "to": token, "data": "0xdeadbeef"}, None),
    ]
    for call, reason in cases:
        exc = _raised(lambda call=call: w3.eth.estimate_gas(call))  # type: ignore[misc]
        assert type(exc).__name__ == "TransactionFailed"
        mapped = map_evm_error(exc)
        assert isinstance(mapped, ExecutionRevertedError)
        assert mapped.reason == reason
    # Minting from a stranger reverts with the owner check; an overflow is a Panic.
    exc = _raised(lambda: w3.eth.call(_mint_call(token, sender, 1)))
    assert map_evm_error(exc).reason == "TestToken: caller is not the owner"  # type: ignore[attr-defined]
    adapter.mint_test_token(token, BOB, 1)
    with pytest.raises(ExecutionRevertedError) as info:
        adapter.mint_test_token(token, BOB, 2**256 - 1)
    assert info.value.reason == PANIC_OVERFLOW


def test_tester_malformed_input_is_permanent(tester_env: EvmEnv) -> None:
    """eth-tester's own input validation and a bad signature -> permanent."""
    adapter = tester_env.adapter
    tester = adapter._backend.tester  # type: ignore[attr-defined]
    exc = _raised(lambda: tester.get_balance("0x12"))
    assert type(exc).__module__.startswith("eth_tester")
    assert type(map_evm_error(exc)) is PermanentChainError

    secret, _ = _funded(adapter)
    raw = bytearray(_raw(adapter, secret))
    raw[-5] ^= 0xFF  # corrupt the signature's s value
    exc = _raised(lambda: web3_for(adapter).eth.send_raw_transaction(bytes(raw)))
    assert isinstance(map_evm_error(exc), PermanentChainError)


# --------------------------------------------------------------------------- anvil


@pytest.mark.anvil
def test_anvil_transaction_rejections(anvil_env: EvmEnv) -> None:
    """-32003 insufficient funds / nonce too low / invalid chain id / fee below base fee,
    -32000 intrinsic gas too low / too high: each maps to its class, via the adapter too."""
    adapter = anvil_env.adapter
    secret, sender = _funded(adapter, 10**17)
    w3 = web3_for(adapter)
    from web3.exceptions import Web3RPCError

    def rejected(raw: bytes) -> tuple[int, str, ChainError]:
        exc = _raised(lambda: w3.eth.send_raw_transaction(raw))
        assert isinstance(exc, Web3RPCError)
        error = _rpc_error(exc)
        return error["code"], error["message"], map_evm_error(exc)

    code, message, mapped = rejected(_raw(adapter, secret, value=10**18))
    assert (code, "insufficient funds" in message.lower()) == (-32003, True)
    assert isinstance(mapped, InsufficientFundsError)

    first = adapter.sign(adapter.build(Transfer(to=BOB, amount=1), sender), secret)
    adapter.submit(first)
    adapter.wait_for_confirmation(first)
    code, message, mapped = rejected(_raw(adapter, secret, value=2))
    assert (code, message) == (-32003, "nonce too low")
    assert isinstance(mapped, StaleTransactionError)

    code, message, mapped = rejected(_raw(adapter, secret, nonce=1, chainId=1))
    assert (code, message) == (-32003, "invalid chain id for signer")
    assert isinstance(mapped, ChainIdMismatchError)

    code, message, mapped = rejected(
        _raw(adapter, secret, nonce=1, maxFeePerGas=1, maxPriorityFeePerGas=1)
    )
    assert code == -32003 and "base fee" in message
    assert isinstance(mapped, StaleTransactionError)

    code, message, mapped = rejected(_raw(adapter, secret, nonce=1, gas=20_000))
    assert (code, message) == (-32000, "intrinsic gas too low")
    assert type(mapped) is PermanentChainError

    code, message, mapped = rejected(
        _raw(adapter, secret, nonce=1, gas=10**9, maxFeePerGas=10**9, maxPriorityFeePerGas=1)
    )
    assert code == -32000 and "intrinsic gas too high" in message
    assert type(mapped) is PermanentChainError

    stale = adapter.sign(adapter.build(Transfer(to=BOB, amount=5), sender, nonce=0), secret)
    with pytest.raises(StaleTransactionError):
        adapter.submit(stale)


@pytest.mark.anvil
def test_anvil_pool_rejections(anvil_env: EvmEnv) -> None:
    """With mining paused: resending pool bytes ("transaction already imported") is
    transient and counts as success in submit; a cheaper replacement is stale."""
    adapter = anvil_env.adapter
    secret, sender = _funded(adapter)
    w3 = web3_for(adapter)
    assert w3.provider.make_request("evm_setAutomine", [False]).get("error") is None
    try:
        signed = adapter.sign(adapter.build(Transfer(to=BOB, amount=1), sender), secret)
        adapter.submit(signed)
        exc = _raised(lambda: w3.eth.send_raw_transaction(signed.raw))
        assert "already imported" in str(exc)
        assert isinstance(map_evm_error(exc), TransientChainError)
        assert adapter.submit(signed) == signed.tx_hash

        cheaper = _raw(
            adapter,
            secret,
            value=2,
            maxFeePerGas=signed_fee(adapter, signed),
            maxPriorityFeePerGas=10**9,
        )
        exc = _raised(lambda: w3.eth.send_raw_transaction(cheaper))
        assert "replacement transaction underpriced" in str(exc)
        assert isinstance(map_evm_error(exc), StaleTransactionError)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])


def signed_fee(adapter: EvmAdapter, signed: Any) -> int:
    """The maxFeePerGas of a signed transaction, read back from the node's pool."""
    return int(web3_for(adapter).eth.get_transaction(signed.tx_hash)["maxFeePerGas"])


@pytest.mark.anvil
def test_anvil_request_errors(anvil_env: EvmEnv) -> None:
    """-32602 (bad raw bytes, bad params) and -32601 (unknown method) -> permanent."""
    adapter = anvil_env.adapter
    w3 = web3_for(adapter)
    from web3.exceptions import Web3RPCError

    exc = _raised(lambda: w3.eth.send_raw_transaction(b"\x02\x01\x02"))
    assert isinstance(exc, Web3RPCError) and _rpc_error(exc)["code"] == -32602
    assert type(map_evm_error(exc)) is PermanentChainError

    exc = _raised(lambda: w3.eth.get_balance(BOB, block_identifier=10**9))
    assert isinstance(exc, Web3RPCError) and _rpc_error(exc)["code"] == -32602
    assert type(map_evm_error(exc)) is PermanentChainError

    exc = _raised(lambda: w3.manager.request_blocking("eth_noSuchMethod", []))
    assert isinstance(exc, Web3RPCError) and _rpc_error(exc)["code"] == -32601
    mapped = map_evm_error(exc)
    assert type(mapped) is PermanentChainError and "does not support" in mapped.message


@pytest.mark.anvil
def test_anvil_reverts_carry_their_reason(anvil_env: EvmEnv) -> None:
    """ContractLogicError / ContractCustomError / ContractPanicError and a bare revert."""
    adapter = anvil_env.adapter
    _, sender = _funded(adapter)
    token = _token(adapter, sender)
    w3 = web3_for(adapter)
    from web3 import exceptions as w3x

    cases = [
        (
            _transfer_call(token, sender, 1_000),
            w3x.ContractLogicError,
            "ERC20: insufficient balance",
        ),
        (_burn_call(token, sender, 1_000), w3x.ContractCustomError, CUSTOM_ERROR),
        (
            _mint_call(token, sender, 1),
            w3x.ContractLogicError,
            "TestToken: caller is not the owner",
        ),
        ({"from": sender, "to": token, "data": "0xdeadbeef"}, w3x.ContractLogicError, None),
    ]
    for call, kind, reason in cases:
        exc = _raised(lambda call=call: w3.eth.estimate_gas(call))  # type: ignore[misc]
        assert isinstance(exc, kind), exc
        mapped = map_evm_error(exc)
        assert isinstance(mapped, ExecutionRevertedError)
        assert mapped.reason == reason
    adapter.mint_test_token(token, BOB, 1)
    exc = _raised(
        lambda: w3.eth.estimate_gas(
            {**_mint_call(token, sender, 2**256 - 1), "from": adapter.test_authority}
        )
    )
    assert isinstance(exc, w3x.ContractPanicError)
    assert map_evm_error(exc).reason == PANIC_OVERFLOW  # type: ignore[attr-defined]
    with pytest.raises(ExecutionRevertedError) as info:
        adapter.build(ContractCall(to=token, data=_burn_call(token, sender, 1_000)["data"]), sender)
    assert info.value.reason == CUSTOM_ERROR


# --------------------------------------------------------------------------- transport


@dataclass
class Reply:
    """What the fake node answers to any method but ``eth_chainId``."""

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] | None = None
    error: dict[str, Any] | None = None
    stall: float = 0.0


class FakeNode:
    """A real HTTP server on 127.0.0.1 answering JSON-RPC.

    ``answers`` maps methods to results; any other method gets ``reply`` (an error, a
    status, a stall, a raw body). With ``refuse_batch`` a batch gets one error object, as
    nodes without batch support answer.
    """

    def __init__(self) -> None:
        self.reply = Reply()
        self.answers: dict[str, Any] = {}
        self.refuse_batch = False
        self.batches = 0
        self._release = threading.Event()
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = node.reply
                if isinstance(request, list):
                    node.batches += 1
                    if node.refuse_batch:
                        error = {"code": -32600, "message": "batch requests are not supported"}
                        body: Any = {"jsonrpc": "2.0", "id": None, "error": error}
                    else:
                        body = [node.answer(item) for item in request]
                    self._send(200, json.dumps(body).encode())
                    return
                if request["method"] == "eth_chainId" or request["method"] in node.answers:
                    self._send(200, json.dumps(node.answer(request)).encode())
                    return
                if reply.stall:
                    node._release.wait(reply.stall)
                if reply.body is not None:
                    self._send(reply.status, reply.body, reply.headers or {})
                    return
                body = {"jsonrpc": "2.0", "id": request["id"], "error": reply.error}
                self._send(reply.status, json.dumps(body).encode())

            def _send(
                self, status: int, payload: bytes, headers: dict[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.answers["eth_chainId"] = "0x7a69"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rpc/secret-api-key"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The JSON-RPC response to one request object."""
        if request["method"] in self.answers:
            return {
                "jsonrpc": "2.0",
                "id": request["id"],
                "result": self.answers[request["method"]],
            }
        return {"jsonrpc": "2.0", "id": request["id"], "error": self.reply.error}

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def fake_node() -> Iterator[tuple[FakeNode, EvmAdapter]]:
    """A fake node and an adapter on it (0.3 s timeout)."""
    node = FakeNode()
    try:
        with EvmAdapter.rpc(node.url, chain_id=31337, network="anvil", timeout=0.3) as adapter:
            adapter.connect()
            yield node, adapter
    finally:
        node.close()


def _fails(adapter: EvmAdapter) -> ChainError:
    with pytest.raises(ChainError) as info:
        adapter.get_balance(BOB)
    assert "secret-api-key" not in repr(info.value.to_dict())
    return info.value


def test_refused_connection_is_transient() -> None:
    """Nothing listens on the port: transient."""
    with pytest.raises(TransientChainError) as info:
        EvmAdapter.rpc("http://127.0.0.1:1", chain_id=1, timeout=1).connect()
    assert "could not be reached" in info.value.message


def test_stalled_node_times_out_transient(fake_node: tuple[FakeNode, EvmAdapter]) -> None:
    """A node that does not answer within the timeout: transient."""
    node, adapter = fake_node
    node.reply = Reply(stall=5.0, error={"code": -32000, "message": "late"})
    error = _fails(adapter)
    assert isinstance(error, TransientChainError)
    assert "Timeout" in error.detail


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, TransientChainError),
        (500, TransientChainError),
        (502, TransientChainError),
        (503, TransientChainError),
        (401, PermanentChainError),
        (403, PermanentChainError),
    ],
)
def test_http_statuses(fake_node: tuple[FakeNode, EvmAdapter], status: int, kind: type) -> None:
    """429 and 5xx are transient (retry later); 401/403 are permanent (fix the credentials)."""
    node, adapter = fake_node
    node.reply = Reply(status=status, body=b"{}", headers={"Retry-After": "7"})
    error = _fails(adapter)
    assert type(error) is kind
    assert str(status) in error.message
    assert error.http_status == status
    assert error.retry_after == "7"
    assert error.rpc_code is None


def test_garbage_body_is_transient(fake_node: tuple[FakeNode, EvmAdapter]) -> None:
    """A 200 answer that is not JSON-RPC (a proxy's HTML page): transient."""
    node, adapter = fake_node
    node.reply = Reply(body=b"<html>bad gateway</html>")
    assert isinstance(_fails(adapter), TransientChainError)


REVERT_DATA = "0x08c379a0" + (
    "0000000000000000000000000000000000000000000000000000000000000020"
    "000000000000000000000000000000000000000000000000000000000000000b"
    "6e6f7420616c6c6f776564000000000000000000000000000000000000000000"
)  # Error("not allowed")

NODE_MESSAGES = [
    # geth
    (
        {"code": 3, "message": "execution reverted: not allowed", "data": REVERT_DATA},
        ExecutionRevertedError,
        "not allowed",
    ),
    ({"code": -32000, "message": "already known"}, TransientChainError, None),
    (
        {"code": -32000, "message": "nonce too low: next nonce 5, tx nonce 4"},
        StaleTransactionError,
        None,
    ),
    ({"code": -32000, "message": "nonce too high"}, TransientChainError, None),
    (
        {"code": -32000, "message": "insufficient funds for gas * price + value: balance 1"},
        InsufficientFundsError,
        None,
    ),
    (
        {"code": -32000, "message": "replacement transaction underpriced"},
        StaleTransactionError,
        None,
    ),
    (
        {"code": -32000, "message": "transaction underpriced: tip needed 1, tip permitted 0"},
        StaleTransactionError,
        None,
    ),
    (
        {"code": -32000, "message": "max fee per gas less than block base fee"},
        StaleTransactionError,
        None,
    ),
    ({"code": -32000, "message": "header not found"}, TransientChainError, None),
    ({"code": -32000, "message": "exceeds block gas limit"}, PermanentChainError, None),
    ({"code": -32000, "message": "something unexpected"}, PermanentChainError, None),
    # hardhat
    (
        {
            "code": -32603,
            "message": "Error: VM Exception while processing transaction: "
            "reverted with reason string 'not allowed'",
        },
        ExecutionRevertedError,
        "not allowed",
    ),
    (
        {"code": -32602, "message": "Trying to send an incompatible EIP-155 transaction"},
        ChainIdMismatchError,
        None,
    ),
    # providers / generic JSON-RPC
    ({"code": -32005, "message": "limit exceeded"}, TransientChainError, None),
    (
        {"code": -32005, "message": "daily request count exceeded, request rate limited"},
        TransientChainError,
        None,
    ),
    ({"code": -32603, "message": "Internal error"}, TransientChainError, None),
    ({"code": -32003, "message": "transaction rejected"}, PermanentChainError, None),
    (
        {"code": -32602, "message": "invalid argument 0: hex string has length 2"},
        PermanentChainError,
        None,
    ),
    ({"code": -32601, "message": "the method eth_foo does not exist"}, PermanentChainError, None),
]


@pytest.mark.parametrize(("error", "kind", "reason"), NODE_MESSAGES)
def test_node_error_objects(
    fake_node: tuple[FakeNode, EvmAdapter], error: dict[str, Any], kind: type, reason: str | None
) -> None:
    """JSON-RPC error objects in the shapes geth, hardhat and providers send."""
    node, adapter = fake_node
    node.reply = Reply(error=error)
    mapped = _fails(adapter)
    assert type(mapped) is kind, (error, mapped)
    if reason is not None:
        assert mapped.reason == reason  # type: ignore[attr-defined]
    assert str(error["code"]) in mapped.detail
    assert mapped.rpc_code == error["code"]
    assert mapped.http_status is None


def test_chain_errors_pass_through_and_unknown_errors_are_permanent() -> None:
    """A ChainError maps to itself; anything unknown is permanent with the type named."""
    stale = StaleTransactionError("x", chain="evm")
    assert map_evm_error(stale) is stale
    mapped = map_evm_error(KeyError("boom"), op="eth_call", redact=["boom"])
    assert type(mapped) is PermanentChainError
    assert mapped.detail == "eth_call: KeyError: '<redacted>'"


def test_reason_decoding_edge_cases() -> None:
    """Revert data decoding: empty, malformed Error(string), unknown panic, short data."""
    from waiaas.chains.evm.errors import decode_revert_data

    assert decode_revert_data(b"") is None
    assert decode_revert_data(bytes.fromhex(REVERT_DATA[2:])) == "not allowed"
    assert decode_revert_data(bytes.fromhex("08c379a0") + b"\x00" * 64) == ""
    assert "malformed" in (decode_revert_data(bytes.fromhex("08c379a0") + b"\x01") or "")
    assert decode_revert_data(bytes.fromhex("4e487b71") + (0x99).to_bytes(32, "big")) == (
        "panic 0x99: unknown panic code"
    )
    assert decode_revert_data(b"\x01\x02") == "reverted with data 0x0102"


def test_status_of_a_reverted_transfer_via_adapter(tester_env: EvmEnv) -> None:
    """The adapter surfaces the mapped revert from build (estimate) on a real revert."""
    adapter = tester_env.adapter
    _, sender = _funded(adapter)
    token = _token(adapter, sender, 10)
    with pytest.raises(ExecutionRevertedError) as info:
        adapter.build(TokenTransfer(token=token, to=BOB, amount=11), sender)
    assert info.value.kind == "permanent"
    assert info.value.chain == "evm"
    assert info.value.to_dict()["reason"] == "ERC20: insufficient balance"


BUILD_ANSWERS = {
    "eth_estimateGas": "0x5208",
    "eth_feeHistory": {"baseFeePerGas": ["0x3b9aca00", "0x77359400"], "oldestBlock": "0x1"},
    "eth_maxPriorityFeePerGas": "0x77359400",
    "eth_getBalance": hex(10**18),
    "eth_getTransactionCount": "0x3",
    "eth_getCode": "0x",
}


def test_build_reads_come_in_one_batch(fake_node: tuple[FakeNode, EvmAdapter]) -> None:
    """A build asks estimate, fees, balance, nonce and (a value transfer) the recipient's
    code in one batched request."""
    node, adapter = fake_node
    node.answers.update(BUILD_ANSWERS)
    unsigned = adapter.build(Transfer(to=BOB, amount=5), "0x" + "ab" * 20)
    assert node.batches == 1
    assert unsigned.nonce == 3
    assert unsigned.payload["gas"] == 21_000
    assert unsigned.payload["maxPriorityFeePerGas"] == 2 * 10**9
    assert unsigned.payload["maxFeePerGas"] == 2 * (2 * 10**9) + 2 * 10**9  # next base fee


def test_node_without_batches_is_asked_one_by_one(fake_node: tuple[FakeNode, EvmAdapter]) -> None:
    """A node that refuses batches gets single requests (and no further batch attempts)."""
    node, adapter = fake_node
    node.answers.update(BUILD_ANSWERS)
    node.refuse_batch = True
    sender = "0x" + "ab" * 20
    assert adapter.build(Transfer(to=BOB, amount=5), sender).nonce == 3
    assert adapter.build(Transfer(to=BOB, amount=5), sender).nonce == 4
    assert node.batches == 1


def test_node_without_priority_fee_suggestion(fake_node: tuple[FakeNode, EvmAdapter]) -> None:
    """No eth_maxPriorityFeePerGas on the node: the default priority fee (1 gwei) is used."""
    from waiaas.chains.evm import DEFAULT_PRIORITY_FEE

    node, adapter = fake_node
    node.answers.update(BUILD_ANSWERS)
    del node.answers["eth_maxPriorityFeePerGas"]
    node.reply = Reply(error={"code": -32601, "message": "the method does not exist"})
    unsigned = adapter.build(Transfer(to=BOB, amount=5), "0x" + "ab" * 20)
    assert unsigned.payload["maxPriorityFeePerGas"] == DEFAULT_PRIORITY_FEE
    node.refuse_batch = True
    unsigned = adapter.build(Transfer(to=BOB, amount=5), "0x" + "ab" * 20)
    assert unsigned.payload["maxPriorityFeePerGas"] == DEFAULT_PRIORITY_FEE
