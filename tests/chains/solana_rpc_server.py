"""A real Solana JSON-RPC server over one LiteSVM, for tests and benchmarks.

It speaks HTTP on 127.0.0.1 (a free port), runs in a thread, and answers the methods the
waiaas Solana RPC backend uses with the request and response shapes of a Solana node:
getLatestBlockhash, isBlockhashValid, getBalance, getAccountInfo (base64), getBlockHeight,
getSlot, minimumLedgerSlot, getHealth, getVersion, getMinimumBalanceForRentExemption,
getFeeForMessage, simulateTransaction, sendTransaction (base64 or base58; preflight like a
node: errors come back as JSON-RPC error objects, e.g. -32002 with the simulation result in
``data``), getSignatureStatuses, getTransaction, getTokenAccountBalance and requestAirdrop (a real
transfer from a faucet account). Batch requests work.

Blocks: LiteSVM's blockhash only moves when told. Like the in-process backend, the server
starts a new block the first time a blockhash is asked for after a transaction landed on the
current one. As on a cluster, a blockhash stays valid for :data:`VALID_BLOCKS` blocks (the
server checks it; LiteSVM's own check, which knows only the latest blockhash, is off), so
transactions built concurrently do not expire each other; :meth:`SolanaRpcServer.expire_blockhash`
starts a new block at once and expires every earlier blockhash.

History: :meth:`SolanaRpcServer.prune` makes it a node with a short ledger (it forgets older
signatures and ``minimumLedgerSlot`` moves up), as pruned RPC nodes are.

Failures can be injected for transient-error tests: HTTP statuses (500, 429...), stalls
longer than the client's timeout, JSON-RPC error objects, and non-JSON bodies.

Example::

    with SolanaRpcServer() as server:
        adapter = LocalSolanaAdapter.rpc(server.url, network="localnet", timeout=2)
        server.inject(Fault.http(429), method="getBalance")

Out of process: :func:`solana_rpc_process` runs the server in a child Python process (as a
real node would be: its work never shares this process's GIL), yielding its URL;
``python tests/chains/solana_rpc_server.py`` prints the URL and serves until stdin closes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import MessageV0, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import TransactionStatus

__all__ = ["VALID_BLOCKS", "Fault", "RpcError", "SolanaRpcServer", "solana_rpc_process"]

_TOKEN_PROGRAMS = {
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
}
_COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"
#: Blocks a blockhash stays valid for (a cluster's MAX_PROCESSING_AGE).
VALID_BLOCKS = 150
# What a node's simulation answers for a transaction whose blockhash it does not know.
_BLOCKHASH_NOT_FOUND: dict[str, Any] = {
    "err": "BlockhashNotFound",
    "logs": [],
    "accounts": None,
    "unitsConsumed": 0,
    "loadedAccountsDataSize": None,
    "returnData": None,
    "innerInstructions": None,
    "replacementBlockhash": None,
    "fee": None,
    "preBalances": None,
    "postBalances": None,
    "preTokenBalances": None,
    "postTokenBalances": None,
    "loadedAddresses": None,
}
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# Display texts of transaction errors, as a node puts them in "Transaction simulation failed: ...".
_ERROR_TEXT = {
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "AlreadyProcessed": "This transaction has already been processed",
    "BlockhashNotFound": "Blockhash not found",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidProgramForExecution": "Attempt to load a program that does not exist",
    "SignatureFailure": "Transaction did not pass signature verification",
}


class RpcError(Exception):
    """A JSON-RPC error object the server answers with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        """The ``error`` member of the response."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


@dataclass(frozen=True)
class Fault:
    """One injected failure, consumed by the next matching HTTP request.

    Attributes:
        kind: ``"http"`` (answer ``status``), ``"stall"`` (wait ``seconds`` before answering),
            ``"rpc"`` (answer a JSON-RPC error object) or ``"garbage"`` (200 with a non-JSON body).
    """

    kind: str
    status: int = 500
    seconds: float = 0.0
    code: int = -32005
    message: str = "Node is unhealthy"
    retry_after: str | None = None

    @classmethod
    def http(cls, status: int, retry_after: str | None = None) -> Fault:
        """Answer with HTTP ``status`` and an empty JSON object."""
        return cls("http", status=status, retry_after=retry_after)

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Hold the request ``seconds`` before answering it normally."""
        return cls("stall", seconds=seconds)

    @classmethod
    def rpc(cls, code: int, message: str) -> Fault:
        """Answer with a JSON-RPC error object."""
        return cls("rpc", code=code, message=message)

    @classmethod
    def garbage(cls) -> Fault:
        """Answer 200 with a body that is not JSON."""
        return cls("garbage")


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58_ALPHABET.find(char)
        if index < 0:
            raise ValueError("not base58")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def _err_json(err: Any) -> Any:
    """A solders TransactionError rendered as a node's JSON (through solders' own serde)."""
    return json.loads(TransactionStatus(0, None, err, err, None).to_json())["err"]


def _err_text(err_json: Any) -> str:
    if isinstance(err_json, str):
        return _ERROR_TEXT.get(err_json, err_json)
    if isinstance(err_json, dict) and "InstructionError" in err_json:
        index, inner = err_json["InstructionError"]
        if isinstance(inner, dict) and "Custom" in inner:
            return (
                f"Error processing Instruction {index}: custom program error: {inner['Custom']:#x}"
            )
        return f"Error processing Instruction {index}: {inner}"
    if isinstance(err_json, dict) and "InsufficientFundsForRent" in err_json:
        index = err_json["InsufficientFundsForRent"]["account_index"]
        return f"Transaction results in an account ({index}) with insufficient funds for rent"
    return json.dumps(err_json)


def _fee(message: Any) -> int:
    """5000 lamports per signature plus the compute-budget prioritisation fee."""
    keys = [str(k) for k in message.account_keys]
    price, limit, others = 0, None, 0
    for ix in message.instructions:
        data = bytes(ix.data)
        if keys[ix.program_id_index] == _COMPUTE_BUDGET and data:
            if data[0] == 2:
                limit = int.from_bytes(data[1:5], "little")
            elif data[0] == 3:
                price = int.from_bytes(data[1:9], "little")
        else:
            others += 1
    units = limit if limit is not None else min(200_000 * others, 1_400_000)
    priority = -(-price * units // 1_000_000)
    return 5000 * message.header.num_required_signatures + priority


class SolanaRpcServer:
    """The server. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        svm: the LiteSVM to serve (a fresh one by default).
    """

    def __init__(self, svm: LiteSVM | None = None) -> None:
        self.svm = svm if svm is not None else LiteSVM()
        self.svm.with_blockhash_check(False)  # checked here, against the recent blockhashes
        self.lock = threading.RLock()
        self.requests: list[str] = []
        self.confirmation_status = "finalized"  # what getSignatureStatuses reports
        self._faults: list[tuple[str | None, Fault]] = []
        self._stopping = threading.Event()
        self._height = 1
        self._used = False
        self._recent: dict[Hash, int] = {self.svm.latest_blockhash(): self._height}
        self._landed: dict[str, tuple[int, bytes]] = {}
        self._forgotten: set[str] = set()
        self.minimum_ledger_slot = 0  # what minimumLedgerSlot reports
        self._faucet = Keypair()
        self.svm.set_account(
            self._faucet.pubkey(),
            Account(
                lamports=2**62, data=b"", owner=SYSTEM_PROGRAM_ID, executable=False, rent_epoch=0
            ),
        )
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[list[Any]], Any]] = {
            "getAccountInfo": self._get_account_info,
            "getBalance": self._get_balance,
            "getBlockHeight": lambda params: self._height,
            "getFeeForMessage": self._get_fee_for_message,
            "getHealth": lambda params: "ok",
            "getLatestBlockhash": self._get_latest_blockhash,
            "getMultipleAccounts": self._get_multiple_accounts,
            "getMinimumBalanceForRentExemption": self._get_minimum_balance,
            "getSignatureStatuses": self._get_signature_statuses,
            "getSlot": lambda params: self.svm.get_clock().slot,
            "getTokenAccountBalance": self._get_token_account_balance,
            "getTransaction": self._get_transaction,
            "getVersion": lambda params: {"solana-core": "2.2.0-litesvm", "feature-set": 0},
            "isBlockhashValid": self._is_blockhash_valid,
            "minimumLedgerSlot": lambda params: self.minimum_ledger_slot,
            "requestAirdrop": self._request_airdrop,
            "sendTransaction": self._send_transaction,
            "simulateTransaction": self._simulate_transaction,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms per request

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, headers, payload = server._handle(body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                try:
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (a stalled request outlived its timeout).
                    self.close_connection = True

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (stalled requests are released too)."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls

    def inject(self, fault: Fault, *, method: str | None = None, count: int = 1) -> None:
        """Make the next ``count`` requests (for ``method``, or any) fail with ``fault``."""
        with self.lock:
            self._faults.extend([(method, fault)] * count)

    def expire_blockhash(self) -> None:
        """Start a new block now: every earlier blockhash stops being valid."""
        with self.lock:
            self._new_block(expire=True)

    def advance(self, slots: int) -> None:
        """Move the chain ``slots`` slots on (a new block: earlier blockhashes expire)."""
        with self.lock:
            self._new_block(expire=True)
            self.svm.warp_to_slot(self.svm.get_clock().slot + slots)

    def prune(self, keep_slots: int) -> None:
        """Behave like a node with a short ledger: forget every transaction that landed
        before the last ``keep_slots`` slots (getSignatureStatuses and getTransaction no
        longer know them) and report the new floor through minimumLedgerSlot."""
        with self.lock:
            floor = max(0, self.svm.get_clock().slot - keep_slots)
            self.minimum_ledger_slot = floor
            self._forgotten.update(s for s, (slot, _) in self._landed.items() if slot < floor)

    def _new_block(self, *, expire: bool = False) -> None:
        self.svm.expire_blockhash()
        self.svm.warp_to_slot(self.svm.get_clock().slot + 1)
        self._height += 1
        self._used = False
        if expire:
            self._recent.clear()
        self._recent[self.svm.latest_blockhash()] = self._height
        for blockhash, height in list(self._recent.items()):
            if height <= self._height - VALID_BLOCKS:
                del self._recent[blockhash]

    def _valid(self, blockhash: Hash) -> bool:
        return blockhash in self._recent

    # ------------------------------------------------------------------ HTTP -> JSON-RPC

    def _take_fault(self, methods: list[str]) -> Fault | None:
        with self.lock:
            for i, (method, fault) in enumerate(self._faults):
                if method is None or method in methods:
                    del self._faults[i]
                    return fault
        return None

    def _handle(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        json_headers = {"Content-Type": "application/json"}
        try:
            request = json.loads(body)
        except ValueError:
            error = {"code": -32700, "message": "Parse error"}
            return 200, json_headers, self._dump({"jsonrpc": "2.0", "error": error, "id": None})
        calls = request if isinstance(request, list) else [request]
        methods = [c.get("method", "") for c in calls if isinstance(c, dict)]
        with self.lock:
            self.requests.extend(methods)
        fault = self._take_fault(methods)
        if fault is not None:
            if fault.kind == "http":
                headers = dict(json_headers)
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                return fault.status, headers, b"{}"
            if fault.kind == "garbage":
                return 200, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"
            if fault.kind == "stall":
                self._stopping.wait(fault.seconds)
            if fault.kind == "rpc":
                answers = [
                    {
                        "jsonrpc": "2.0",
                        "id": c.get("id") if isinstance(c, dict) else None,
                        "error": RpcError(fault.code, fault.message).to_json(),
                    }
                    for c in calls
                ]
                return (
                    200,
                    json_headers,
                    self._dump(answers if isinstance(request, list) else answers[0]),
                )
        answers = [self._answer(call) for call in calls]
        return 200, json_headers, self._dump(answers if isinstance(request, list) else answers[0])

    @staticmethod
    def _dump(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def _answer(self, call: Any) -> dict[str, Any]:
        if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or "method" not in call:
            error = {"code": -32600, "message": "Invalid request"}
            return {"jsonrpc": "2.0", "error": error, "id": None}
        request_id = call.get("id")
        handler = self._methods.get(call["method"])
        if handler is None:
            error = {"code": -32601, "message": "Method not found"}
            return {"jsonrpc": "2.0", "error": error, "id": request_id}
        params = call.get("params", [])
        try:
            if not isinstance(params, list):
                raise RpcError(-32602, "Invalid params: expected an array")
            with self.lock:
                result = handler(params)
        except RpcError as exc:
            return {"jsonrpc": "2.0", "error": exc.to_json(), "id": request_id}
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            error = {"code": -32602, "message": f"Invalid params: {exc}"}
            return {"jsonrpc": "2.0", "error": error, "id": request_id}
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    # ------------------------------------------------------------------ helpers

    def _context(self) -> dict[str, Any]:
        return {"apiVersion": "2.2.0", "slot": self.svm.get_clock().slot}

    def _with_context(self, value: Any) -> dict[str, Any]:
        return {"context": self._context(), "value": value}

    @staticmethod
    def _pubkey(text: Any) -> Pubkey:
        try:
            return Pubkey.from_string(text)
        except (TypeError, ValueError) as exc:
            raise RpcError(-32602, "Invalid param: Invalid") from exc

    @staticmethod
    def _decode_tx(text: Any, encoding: str) -> VersionedTransaction:
        try:
            raw = (
                base64.b64decode(text, validate=True) if encoding == "base64" else _b58decode(text)
            )
            return VersionedTransaction.from_bytes(raw)
        except Exception as exc:
            raise RpcError(-32602, f"invalid transaction: failed to deserialize: {exc}") from exc

    def _land(self, tx: VersionedTransaction) -> Any:
        """Send to LiteSVM; remember what landed (the caller holds the lock)."""
        result = self.svm.send_transaction(tx)
        signature = tx.signatures[0]
        if self.svm.get_transaction(signature) is not None:
            self._landed.setdefault(str(signature), (self.svm.get_clock().slot, bytes(tx)))
            if tx.message.recent_blockhash == self.svm.latest_blockhash():
                self._used = True
        return result

    def _simulation_json(self, result: Any) -> dict[str, Any]:
        if isinstance(result, FailedTransactionMetadata):
            err, meta = result.err(), result.meta()
        else:
            err, meta = None, result.meta()
        value = RpcSimulateTransactionResult(
            err=err,
            logs=list(meta.logs()),
            accounts=None,
            units_consumed=meta.compute_units_consumed(),
            return_data=None,
        )
        out: dict[str, Any] = json.loads(value.to_json())
        return out

    # ------------------------------------------------------------------ methods

    def _get_latest_blockhash(self, params: list[Any]) -> Any:
        if self._used:
            self._new_block()
        value = {
            "blockhash": str(self.svm.latest_blockhash()),
            "lastValidBlockHeight": self._height + VALID_BLOCKS - 1,
        }
        return self._with_context(value)

    def _is_blockhash_valid(self, params: list[Any]) -> Any:
        try:
            blockhash = Hash.from_string(params[0])
        except ValueError as exc:
            raise RpcError(-32602, "Invalid param: invalid blockhash") from exc
        return self._with_context(self._valid(blockhash))

    def _get_balance(self, params: list[Any]) -> Any:
        return self._with_context(self.svm.get_balance(self._pubkey(params[0])) or 0)

    def _get_account_info(self, params: list[Any]) -> Any:
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        account = self.svm.get_account(self._pubkey(params[0]))
        return self._with_context(self._account_json(account, config.get("encoding", "base58")))

    def _get_multiple_accounts(self, params: list[Any]) -> Any:
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        keys = params[0] if params and isinstance(params[0], list) else None
        if keys is None or len(keys) > 100:
            raise RpcError(-32602, "Invalid params: expected at most 100 addresses")
        encoding = config.get("encoding", "base58")
        return self._with_context(
            [self._account_json(self.svm.get_account(self._pubkey(k)), encoding) for k in keys]
        )

    def _account_json(self, account: Any, encoding: str) -> Any:
        """An account as a node returns it (``None`` when missing or emptied)."""
        if account is None or (account.lamports == 0 and not bytes(account.data)):
            return None
        data = bytes(account.data)
        if encoding == "base64":
            encoded: Any = [base64.b64encode(data).decode(), "base64"]
        else:
            raise RpcError(
                -32602, f"Invalid params: this test server serves base64, not {encoding}"
            )
        return {
            "data": encoded,
            "executable": account.executable,
            "lamports": account.lamports,
            "owner": str(account.owner),
            "rentEpoch": account.rent_epoch,
            "space": len(data),
        }

    def _get_minimum_balance(self, params: list[Any]) -> Any:
        size = params[0]
        if not isinstance(size, int) or size < 0:
            raise RpcError(-32602, "Invalid params: data length must be a non-negative integer")
        return self.svm.minimum_balance_for_rent_exemption(size)

    def _get_fee_for_message(self, params: list[Any]) -> Any:
        try:
            message = from_bytes_versioned(base64.b64decode(params[0], validate=True))
        except Exception as exc:
            raise RpcError(-32602, f"invalid message: {exc}") from exc
        if not self._valid(message.recent_blockhash):
            return self._with_context(None)
        return self._with_context(_fee(message))

    def _simulate_transaction(self, params: list[Any]) -> Any:
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        tx = self._decode_tx(params[0], config.get("encoding", "base58"))
        sig_verify = bool(config.get("sigVerify", False))
        if sig_verify and config.get("replaceRecentBlockhash"):
            raise RpcError(-32602, "sigVerify may not be used with replaceRecentBlockhash")
        if config.get("replaceRecentBlockhash"):
            raise RpcError(-32602, "replaceRecentBlockhash is not supported by this test server")
        if not self._valid(tx.message.recent_blockhash):
            return self._with_context(_BLOCKHASH_NOT_FOUND)
        before = self.svm.get_sigverify()
        self.svm.with_sigverify(sig_verify)
        try:
            result = self.svm.simulate_transaction(tx)
        finally:
            self.svm.with_sigverify(before)
        out = self._simulation_json(result)
        wanted = config.get("accounts")
        if isinstance(wanted, dict) and not isinstance(result, FailedTransactionMetadata):
            # Like a node: the requested accounts' state after the simulated transaction.
            post = dict(result.post_accounts())
            encoding = wanted.get("encoding", "base64")
            accounts = []
            for address in wanted.get("addresses") or []:
                key = self._pubkey(address)
                state = post.get(key, self.svm.get_account(key))
                accounts.append(self._account_json(state, encoding))
            out["accounts"] = accounts
        return self._with_context(out)

    def _send_transaction(self, params: list[Any]) -> Any:
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        tx = self._decode_tx(params[0], config.get("encoding", "base58"))
        if not all(tx.verify_with_results()):
            raise RpcError(-32003, "Transaction signature verification failure")
        if not self._valid(tx.message.recent_blockhash):
            if config.get("skipPreflight", False):
                return str(tx.signatures[0])  # accepted, and never lands
            raise RpcError(
                -32002, "Transaction simulation failed: Blockhash not found", _BLOCKHASH_NOT_FOUND
            )
        if not config.get("skipPreflight", False):
            simulated = self.svm.simulate_transaction(tx)
            if isinstance(simulated, FailedTransactionMetadata):
                data = self._simulation_json(simulated)
                text = _err_text(data["err"])
                raise RpcError(-32002, f"Transaction simulation failed: {text}", data)
        self._land(tx)
        return str(tx.signatures[0])

    def _status_of(self, signature: Signature) -> dict[str, Any] | None:
        if str(signature) in self._forgotten:
            return None
        result = self.svm.get_transaction(signature)
        if result is None:
            return None
        err = _err_json(result.err()) if isinstance(result, FailedTransactionMetadata) else None
        slot = self._landed.get(str(signature), (self.svm.get_clock().slot, b""))[0]
        return {
            "slot": slot,
            "confirmations": None,
            "err": err,
            "status": {"Ok": None} if err is None else {"Err": err},
            "confirmationStatus": self.confirmation_status,
        }

    def _get_signature_statuses(self, params: list[Any]) -> Any:
        signatures = params[0]
        if not isinstance(signatures, list) or len(signatures) > 256:
            raise RpcError(-32602, "Invalid params: at most 256 signatures")
        out = []
        for text in signatures:
            try:
                signature = Signature.from_string(text)
            except ValueError as exc:
                raise RpcError(-32602, "Invalid param: Invalid") from exc
            out.append(self._status_of(signature))
        return self._with_context(out)

    def _get_transaction(self, params: list[Any]) -> Any:
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        signature = Signature.from_string(params[0])
        result = self.svm.get_transaction(signature)
        landed = self._landed.get(str(signature))
        if result is None or landed is None or str(signature) in self._forgotten:
            return None
        slot, raw = landed
        tx = VersionedTransaction.from_bytes(raw)
        version: Any = 0 if isinstance(tx.message, MessageV0) else "legacy"
        if version == 0 and config.get("maxSupportedTransactionVersion") is None:
            raise RpcError(
                -32015,
                "Transaction version (0) is not supported by the requesting client. Please try "
                "the request again with the following configuration parameter: "
                '"maxSupportedTransactionVersion": 0',
            )
        if isinstance(result, TransactionMetadata):
            err, meta = None, result
        else:
            err, meta = _err_json(result.err()), result.meta()
        return {
            "slot": slot,
            "blockTime": None,
            "version": version,
            "transaction": [base64.b64encode(raw).decode(), "base64"],
            "meta": {
                "err": err,
                "status": {"Ok": None} if err is None else {"Err": err},
                "fee": meta.fee(),
                "logMessages": list(meta.logs()),
                "computeUnitsConsumed": meta.compute_units_consumed(),
                "preBalances": [],
                "postBalances": [],
                "innerInstructions": [],
                "preTokenBalances": [],
                "postTokenBalances": [],
                "rewards": [],
                "loadedAddresses": {"readonly": [], "writable": []},
            },
        }

    def _get_token_account_balance(self, params: list[Any]) -> Any:
        account = self.svm.get_account(self._pubkey(params[0]))
        if account is None:
            raise RpcError(-32602, "Invalid param: could not find account")
        data = bytes(account.data)
        if (
            str(account.owner) not in _TOKEN_PROGRAMS
            or len(data) < 165
            or (len(data) > 165 and data[165] != 2)
        ):
            raise RpcError(-32602, "Invalid param: not a Token account")
        mint = self.svm.get_account(Pubkey.from_bytes(data[0:32]))
        if mint is None:
            raise RpcError(-32602, "Invalid param: could not find mint")
        decimals = bytes(mint.data)[44]
        amount = int.from_bytes(data[64:72], "little")
        whole, frac = divmod(amount, 10**decimals) if decimals else (amount, 0)
        ui = f"{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(amount)
        return self._with_context(
            {
                "amount": str(amount),
                "decimals": decimals,
                "uiAmount": float(ui),
                "uiAmountString": ui,
            }
        )

    def _request_airdrop(self, params: list[Any]) -> Any:
        to = self._pubkey(params[0])
        lamports = params[1]
        if not isinstance(lamports, int) or lamports <= 0:
            raise RpcError(-32602, "Invalid params: lamports must be a positive integer")
        if self._used:
            self._new_block()
        ix = transfer(
            TransferParams(from_pubkey=self._faucet.pubkey(), to_pubkey=to, lamports=lamports)
        )
        message = MessageV0.try_compile(
            self._faucet.pubkey(), [ix], [], self.svm.latest_blockhash()
        )
        tx = VersionedTransaction(message, [self._faucet])
        result = self._land(tx)
        if isinstance(result, FailedTransactionMetadata):
            raise RpcError(-32603, f"airdrop request failed: {_err_text(_err_json(result.err()))}")
        return str(tx.signatures[0])


@contextlib.contextmanager
def solana_rpc_process() -> Iterator[str]:
    """Run a :class:`SolanaRpcServer` in a child process; yield its URL; stop it on exit."""
    process = subprocess.Popen(
        [sys.executable, __file__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError("the Solana RPC test server did not start")
        yield url
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()


if __name__ == "__main__":
    with SolanaRpcServer() as _server:
        print(_server.url, flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin
