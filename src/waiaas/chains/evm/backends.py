"""Transports behind :class:`~waiaas.chains.evm.adapter.EvmAdapter` (internal).

Both backends answer the same small set of questions with plain Python values
(:class:`Receipt`, :class:`TxInfo`, :class:`BuildReads`, ints, bytes) and raise the upstream
exception unchanged on failure; the adapter maps it in one place
(:func:`waiaas.chains.evm.errors.map_evm_error`).

* :class:`TesterBackend`: an in-process chain (eth-tester + py-evm; coincurve makes its
  signature checks fast). It is not thread-safe, so every call runs under one re-entrant
  lock (:meth:`Backend.guard`). It mines each transaction at once and has no mempool, so a
  transaction whose nonce is ahead of the sender's (a sibling thread submits the lower nonce
  a moment later) is *queued* here and sent as soon as the gap closes, the way a node's
  queued pool behaves.
* :class:`HttpBackend`: a JSON-RPC node over HTTP (anvil, geth, a provider) through web3's
  ``HTTPProvider``, with a timeout on every request, raw JSON-RPC (no per-call formatting
  layers) and one batched request for the reads a build needs. Its URL is kept out of error
  details and out of the provider's debug logs, since it often embeds an API key.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from waiaas.chains.evm.addresses import to_checksum

__all__ = [
    "Backend",
    "BuildReads",
    "HttpBackend",
    "Receipt",
    "SimBalances",
    "TesterBackend",
    "TxInfo",
]

_NONCE_GAP_RE = re.compile(r"Invalid transaction nonce: Expected (\d+), but got (\d+)")
TRANSFER_TOPIC = 0xDDF252AD1BE2C89B69C2B068FC378DAA952BA7F163C4A11628F55A4DF523B3EF
"""keccak("Transfer(address,address,uint256)"): ERC-20 (3 topics) and ERC-721 (4 topics)."""
_BALANCE_OF = bytes.fromhex("70a08231")


@dataclass(frozen=True)
class Receipt:
    """The parts of a transaction receipt the adapter uses."""

    status: int
    gas_used: int
    effective_gas_price: int
    block: int
    blob_fee: int = 0
    contract_address: str | None = None
    logs: tuple[str, ...] = ()

    @property
    def fee(self) -> int:
        """Wei paid: gas used * effective gas price (+ blob gas * blob gas price)."""
        return self.gas_used * self.effective_gas_price + self.blob_fee


@dataclass(frozen=True)
class TxInfo:
    """A transaction as the node reports it (for replaying a failed one)."""

    sender: str
    to: str | None
    value: int
    data: bytes
    gas: int
    block: int | None


@dataclass(frozen=True)
class BuildReads:
    """What a build reads from the chain, fetched together."""

    gas_estimate: int
    base_fee: int
    priority_fee: int | None  # None: the node cannot suggest one
    balance: int
    pending_nonce: int | None  # None: not asked for (the build's nonce was given)
    to_has_code: bool | None = None  # a plain transfer's recipient holds code; None: not read


@dataclass(frozen=True)
class SimBalances:
    """A simulated transaction's effect on its sender.

    Attributes:
        native: wei change of the sender, fees excluded.
        tokens: token contract (lowercase hex) -> change of the sender's balance.
        fee: the fee the simulation charged, ``None`` when it ran without a gas price.
        success: False when the call reverted (then nothing but the fee changes).
    """

    native: int
    tokens: dict[str, int]
    fee: int | None
    success: bool


def _log_token_deltas(
    sender: str, logs: Sequence[tuple[str, Sequence[int], bytes]]
) -> dict[str, int]:
    """Sender balance changes read from ``Transfer`` events (ERC-20 amount, ERC-721 one token)."""
    me = int(sender, 16)
    out: dict[str, int] = {}
    for address, topics, data in logs:
        if not topics or topics[0] != TRANSFER_TOPIC:
            continue
        if len(topics) == 3 and len(data) == 32:
            amount = int.from_bytes(data, "big")
        elif len(topics) == 4 and not data:
            amount = 1
        else:
            continue
        source, destination = topics[1], topics[2]
        if source == destination:
            continue
        delta = (amount if destination == me else 0) - (amount if source == me else 0)
        if delta:
            out[address.lower()] = out.get(address.lower(), 0) + delta
    return out


def _quantity(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16)
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big")
    raise ValueError(f"not a JSON-RPC quantity: {value!r}")


def _data(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)
    raise ValueError(f"not JSON-RPC data: {value!r}")


def _hex_text(value: Any) -> str:
    return "0x" + _data(value).hex()


def _render_log(log: Mapping[str, Any]) -> str:
    topics = ", ".join(_hex_text(topic) for topic in log.get("topics") or ())
    return f"{log.get('address')} topics=[{topics}] data={_hex_text(log.get('data') or b'')}"


def _receipt(raw: Mapping[str, Any]) -> Receipt:
    blob_gas = raw.get("blobGasUsed")
    blob_fee = _quantity(blob_gas) * _quantity(raw.get("blobGasPrice") or 0) if blob_gas else 0
    contract = raw.get("contractAddress")
    return Receipt(
        status=_quantity(raw["status"]),
        gas_used=_quantity(raw["gasUsed"]),
        effective_gas_price=_quantity(raw["effectiveGasPrice"]),
        block=_quantity(raw["blockNumber"]),
        blob_fee=blob_fee,
        contract_address=str(contract) if contract else None,
        logs=tuple(_render_log(log) for log in raw.get("logs") or ()),
    )


def _tx_info(raw: Mapping[str, Any]) -> TxInfo:
    block = raw.get("blockNumber")
    to = raw.get("to")
    return TxInfo(
        sender=str(raw["from"]),
        to=str(to) if to else None,
        value=_quantity(raw["value"]),
        data=_data(raw.get("input") or raw.get("data") or b""),
        gas=_quantity(raw["gas"]),
        block=_quantity(block) if block is not None else None,
    )


def _base_fee(history: Mapping[str, Any], latest_block: Callable[[], Mapping[str, Any]]) -> int:
    """The next block's base fee from ``eth_feeHistory`` (the latest block's as a fallback)."""
    bases = history.get("baseFeePerGas") or []
    if bases:
        return _quantity(bases[-1])
    base_fee = latest_block().get("baseFeePerGas")
    if base_fee is None:
        raise LookupError("the node reports no base fee; only EIP-1559 chains are supported")
    return _quantity(base_fee)


_PLAIN_GAS = 21_000
_DYNAMIC_FEE_TX = 2


def _checksum(address: bytes) -> str:
    return to_checksum(bytes(address).hex())


#: build reads a node may fail without failing the build (a default / "unknown" is used)
_OPTIONAL_READS = frozenset({"eth_maxPriorityFeePerGas", "eth_getCode"})


class Backend:
    """The questions the adapter asks a chain. Every method raises upstream errors as is."""

    name: str = "backend"
    #: strings removed from error details (the RPC URL may embed an API key)
    redact: tuple[str, ...] = ()

    def guard(self) -> AbstractContextManager[Any]:
        """A context manager held around every call into the chain."""
        return nullcontext()

    def chain_id(self) -> int:
        """The chain id the node reports."""
        raise NotImplementedError

    def build_reads(
        self, sender: str, call: dict[str, Any], *, plain: bool, nonce: bool = True
    ) -> BuildReads:
        """Gas estimate, next base fee, suggested priority fee, balance, pending nonce.

        ``plain``: a value transfer without calldata; the backend then says whether the
        recipient holds code (``to_has_code``), and when it holds none its gas is exactly
        21,000 (a backend may skip the estimate). ``nonce``: read the pending nonce
        (``False`` when the build already has its nonce: ``pending_nonce`` is then ``None``).
        """
        raise NotImplementedError

    def base_fee(self) -> int:
        """The next block's base fee."""
        raise NotImplementedError

    def estimate_gas(self, call: dict[str, Any]) -> int:
        """``eth_estimateGas``."""
        raise NotImplementedError

    def call(self, params: dict[str, Any], block: str | int = "latest") -> bytes:
        """``eth_call`` on ``block``."""
        raise NotImplementedError

    def balance(self, address: str) -> int:
        """``eth_getBalance`` at the latest block."""
        raise NotImplementedError

    def nonce(self, address: str, block: str) -> int:
        """``eth_getTransactionCount`` at ``block`` (``"latest"`` or ``"pending"``)."""
        raise NotImplementedError

    def code(self, address: str) -> bytes:
        """``eth_getCode`` at the latest block."""
        raise NotImplementedError

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt, or ``None`` when the transaction is not mined (or unknown)."""
        raise NotImplementedError

    def transaction(self, tx_hash: str) -> TxInfo | None:
        """The transaction (mined or pending), or ``None`` when the node does not know it."""
        raise NotImplementedError

    def send_raw(self, raw: bytes, tx_hash: str, sender_of: Callable[[], str]) -> None:
        """Hand signed bytes to the chain."""
        raise NotImplementedError

    def is_queued(self, tx_hash: str) -> bool:
        """True when the transaction waits in this backend's own queue."""
        return False

    def simulate_balances(
        self, sender: str, payload: Mapping[str, Any], tokens: Sequence[str]
    ) -> SimBalances | None:
        """Run ``payload`` from ``sender`` on the latest state without committing and report
        the sender's balance changes; ``None`` when this backend cannot."""
        return None

    def close(self) -> None:
        """Release the transport's resources."""


class TesterBackend(Backend):
    """The in-process eth-tester chain (a fresh chain per instance)."""

    name = "eth-tester"

    def __init__(self) -> None:
        try:
            from eth_tester import EthereumTester, PyEVMBackend
        except ImportError as exc:
            raise ImportError(
                "the in-process EVM chain needs the 'local' extra: "
                "pip install 'waiaas[local]' (eth-tester and py-evm)"
            ) from exc
        from web3 import EthereumTesterProvider, Web3

        self.tester = EthereumTester(PyEVMBackend())
        # web3's NewType-heavy signatures add nothing here: addresses are validated upstream
        self.w3: Any = Web3(EthereumTesterProvider(self.tester), middleware=[])
        self._lock = threading.RLock()
        # sender -> nonce -> (tx_hash, raw): transactions waiting for a lower nonce
        self._queued: dict[str, dict[int, tuple[str, bytes]]] = {}
        self._queued_hashes: set[str] = set()
        self._head: tuple[bytes, Any] | None = None  # (head block hash, its VM)
        # (head block hash, its accounts): the reads of builds and balances
        self._accounts: tuple[bytes, Any] | None = None

    def guard(self) -> AbstractContextManager[Any]:
        return self._lock

    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def _head_vm(self) -> Any:
        """The VM of the latest mined block, kept while that block stays the head (its state
        is the latest state; reads through it share one account cache). Callers hold the
        lock; whoever changes the state (a simulation, a balance read) reverts it."""
        chain = self.tester.backend.chain
        head = chain.get_canonical_head()
        kept = self._head
        if kept is not None and kept[0] == head.hash:
            return kept[1]
        vm = chain.get_vm(at_header=head)
        self._head = (head.hash, vm)
        return vm

    def _head_accounts(self) -> Any:
        """The accounts (balance, nonce, code) of the latest mined block's state, read from
        its state root and kept while that block stays the head; callers hold the lock.

        What :meth:`_head_vm`'s state reads for them, without building a VM state (which
        prepares the next block: execution context, system contracts) for reads alone. The
        view only reads: nothing writes through it, so it never drifts from the root.
        """
        chain = self.tester.backend.chain
        head = chain.get_canonical_head()
        kept = self._accounts
        if kept is not None and kept[0] == head.hash:
            return kept[1]
        state_class = chain.get_vm_class(head).get_state_class()
        accounts = state_class.account_db_class(chain.chaindb.db, head.state_root)
        self._accounts = (head.hash, accounts)
        return accounts

    def build_reads(
        self, sender: str, call: dict[str, Any], *, plain: bool, nonce: bool = True
    ) -> BuildReads:
        """The reads of a build on one state of the latest block (the chain mines every
        transaction at once, so its pending state is the latest one)."""
        with self._lock:
            state = self._head_accounts()
            me = bytes.fromhex(sender[2:])
            has_code = bool(state.get_code(bytes.fromhex(call["to"][2:]))) if plain else None
            # a value transfer to an account without code: no execution to estimate
            gas = _PLAIN_GAS if has_code is False else int(self.w3.eth.estimate_gas(call))
            return BuildReads(
                gas_estimate=gas,
                base_fee=self.base_fee(),
                priority_fee=_quantity(
                    self.w3.provider.make_request("eth_maxPriorityFeePerGas", [])["result"]
                ),
                balance=int(state.get_balance(me)),
                pending_nonce=int(state.get_nonce(me)) if nonce else None,
                to_has_code=has_code,
            )

    def base_fee(self) -> int:
        """What ``eth_feeHistory(1, "latest")`` reports on this chain (the base fee of the
        latest block's parent; the latest block's own for the genesis), read from the
        headers."""
        with self._lock:
            chain = self.tester.backend.chain
            head = chain.get_canonical_head()
            parent = chain.get_block_header_by_hash(head.parent_hash) if head.block_number else head
            base_fee = parent.base_fee_per_gas
        if base_fee is None:
            raise LookupError("the node reports no base fee; only EIP-1559 chains are supported")
        return int(base_fee)

    def estimate_gas(self, call: dict[str, Any]) -> int:
        return int(self.w3.eth.estimate_gas(call))

    def call(self, params: dict[str, Any], block: str | int = "latest") -> bytes:
        return bytes(self.w3.eth.call(params, block))

    def balance(self, address: str) -> int:
        with self._lock:
            return int(self._head_accounts().get_balance(bytes.fromhex(address[2:])))

    def nonce(self, address: str, block: str) -> int:
        if block not in ("latest", "pending"):
            return int(self.w3.eth.get_transaction_count(address, block))
        with self._lock:  # every transaction is mined at once: pending is latest
            return int(self._head_accounts().get_nonce(bytes.fromhex(address[2:])))

    def code(self, address: str) -> bytes:
        with self._lock:
            return bytes(self._head_accounts().get_code(bytes.fromhex(address[2:])))

    def receipt(self, tx_hash: str) -> Receipt | None:
        with self._lock:
            found = self._indexed_receipt(tx_hash)
        if found is not None:
            return found
        from web3.exceptions import TransactionNotFound

        try:
            return _receipt(self.w3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None

    def _indexed_receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined EIP-1559 transaction read through the chain's hash index
        (what eth-tester reports, without its search block by block); ``None`` for anything
        else (not mined, another type), which eth-tester then answers."""
        from eth.exceptions import TransactionNotFound

        chain = self.tester.backend.chain
        db = chain.chaindb
        try:
            number, index = db.get_transaction_index(bytes.fromhex(tx_hash[2:]))
        except (TransactionNotFound, ValueError):
            return None
        header = chain.get_canonical_block_header_by_number(number)
        block_class = chain.get_vm_class(header).get_block_class()
        tx = db.get_transaction_by_index(number, index, block_class.get_transaction_builder())
        if getattr(tx, "type_id", None) != _DYNAMIC_FEE_TX or header.base_fee_per_gas is None:
            return None
        receipts = block_class.get_receipt_builder()
        raw = db.get_receipt_by_index(number, index, receipts)
        before = db.get_receipt_by_index(number, index - 1, receipts).gas_used if index else 0
        price = min(tx.max_fee_per_gas, tx.max_priority_fee_per_gas + header.base_fee_per_gas)
        contract = None
        if tx.to == b"":
            from eth._utils.address import generate_contract_address

            contract = _checksum(generate_contract_address(tx.sender, tx.nonce))
        return Receipt(
            status=int.from_bytes(raw.state_root, "big"),
            gas_used=raw.gas_used - before,
            effective_gas_price=price,
            block=number,
            contract_address=contract,
            logs=tuple(
                _render_log(
                    {
                        "address": _checksum(log.address),
                        "topics": [topic.to_bytes(32, "big") for topic in log.topics],
                        "data": log.data,
                    }
                )
                for log in raw.logs
            ),
        )

    def transaction(self, tx_hash: str) -> TxInfo | None:
        from web3.exceptions import TransactionNotFound

        try:
            return _tx_info(self.w3.eth.get_transaction(tx_hash))
        except TransactionNotFound:
            return None

    def send_raw(self, raw: bytes, tx_hash: str, sender_of: Callable[[], str]) -> None:
        with self._lock:
            if tx_hash in self._queued_hashes:
                return
            try:
                self.w3.eth.send_raw_transaction(raw)
            except Exception as exc:
                match = _NONCE_GAP_RE.search(str(exc))
                if match is None or int(match.group(2)) <= int(match.group(1)):
                    raise
                self._enqueue(sender_of(), int(match.group(2)), tx_hash, raw)
                return
            self.flush()

    def _enqueue(self, sender: str, nonce: int, tx_hash: str, raw: bytes) -> None:
        book = self._queued.setdefault(sender, {})
        previous = book.get(nonce)
        if previous is not None:
            self._queued_hashes.discard(previous[0])
        book[nonce] = (tx_hash, raw)
        self._queued_hashes.add(tx_hash)

    def flush(self) -> None:
        """Send every queued transaction whose nonce is now next; drop the stale ones."""
        with self._lock:
            progress = True
            while progress and self._queued:
                progress = False
                for sender in list(self._queued):
                    book = self._queued[sender]
                    expected = self.nonce(sender, "latest")
                    for nonce in [n for n in book if n < expected]:
                        self._queued_hashes.discard(book.pop(nonce)[0])
                    entry = book.pop(expected, None)
                    if entry is not None:
                        self._queued_hashes.discard(entry[0])
                        try:
                            self.w3.eth.send_raw_transaction(entry[1])
                        except Exception:  # noqa: S110  (a node drops such a tx silently too)
                            pass
                        else:
                            progress = True
                    if not book:
                        del self._queued[sender]

    def is_queued(self, tx_hash: str) -> bool:
        with self._lock:
            if tx_hash in self._queued_hashes:
                self.flush()
            return tx_hash in self._queued_hashes

    def simulate_balances(
        self, sender: str, payload: Mapping[str, Any], tokens: Sequence[str]
    ) -> SimBalances | None:
        """Apply the transaction to a copy of the latest state (py-evm), read the sender's
        balances (native, ``balanceOf`` of ``tokens``, ``Transfer`` events), then discard it.

        The transaction runs with the payload's fee fields, at the sender's current nonce; the
        fee it is charged is measured and taken out of ``native``.
        """
        from eth.vm.spoof import SpoofTransaction

        me = bytes.fromhex(sender[2:])
        with self._lock:
            vm = self._head_vm()
            state = vm.state
            snapshot = state.snapshot()
            try:
                before = state.get_balance(me)
                tokens_before = {t: self._balance_of(vm, t, me) for t in tokens}
                to = payload.get("to")
                unsigned = vm.get_transaction_builder().new_unsigned_dynamic_fee_transaction(
                    chain_id=int(payload["chainId"]),
                    nonce=state.get_nonce(me),
                    max_priority_fee_per_gas=int(payload["maxPriorityFeePerGas"]),
                    max_fee_per_gas=int(payload["maxFeePerGas"]),
                    gas=int(payload["gas"]),
                    to=bytes.fromhex(to[2:]) if to else b"",
                    value=int(payload["value"]),
                    data=bytes.fromhex(str(payload["data"])[2:]),
                    access_list=(),
                )
                spoof = SpoofTransaction(unsigned, from_=me)
                computation = state.apply_transaction(spoof)
                fee = type(vm).finalize_gas_used(spoof, computation) * state.get_gas_price(spoof)
                after = state.get_balance(me)
                success = not computation.is_error
                logs = [
                    ("0x" + bytes(address).hex(), list(topics), bytes(data))
                    for address, topics, data in computation.get_log_entries()
                ]
                tokens_after = {t: self._balance_of(vm, t, me) for t in tokens}
            finally:
                state.revert(snapshot)
        deltas = _log_token_deltas(sender, logs) if success else {}
        for token in tokens:  # balanceOf is authoritative where the token answers it
            old, new = tokens_before[token], tokens_after[token]
            key = token.lower()
            if old is not None and new is not None:
                deltas.pop(key, None)
                if new != old:
                    deltas[key] = new - old
        return SimBalances(
            native=after - before + fee,
            tokens={k: v for k, v in deltas.items() if v},
            fee=fee,
            success=success,
        )

    @staticmethod
    def _balance_of(vm: Any, token: str, holder: bytes) -> int | None:
        """``token.balanceOf(holder)`` on ``vm``'s current state (undone afterwards)."""
        from eth.vm.spoof import SpoofTransaction

        state = vm.state
        reader = b"\x7a" * 20  # any address; it is funded and reverted with the read
        snapshot = state.snapshot()
        try:
            state.set_balance(reader, 10**30)
            call = vm.get_transaction_builder().new_unsigned_dynamic_fee_transaction(
                chain_id=vm.chain_context.chain_id,
                nonce=state.get_nonce(reader),
                max_priority_fee_per_gas=0,
                max_fee_per_gas=state.base_fee,
                gas=200_000,
                to=bytes.fromhex(token[2:]),
                value=0,
                data=_BALANCE_OF + b"\0" * 12 + holder,
                access_list=(),
            )
            computation = state.apply_transaction(SpoofTransaction(call, from_=reader))
            output = bytes(computation.output)
        finally:
            state.revert(snapshot)
        if computation.is_error or len(output) != 32:
            return None
        return int.from_bytes(output, "big")

    def faucet_fund(self, address: str, amount: int) -> None:
        """Send ``amount`` wei to ``address`` from eth-tester's first prefunded account."""
        with self._lock:
            eth = self.w3.eth
            faucet = eth.accounts[0]
            call = {"from": faucet, "to": address, "value": amount}
            gas = int(eth.estimate_gas(call))
            base_fee = self.base_fee()
            tx_hash = eth.send_transaction(
                {
                    **call,
                    "gas": gas,
                    "maxFeePerGas": 2 * base_fee + 10**9,
                    "maxPriorityFeePerGas": 10**9,
                }
            )
            receipt = self.receipt("0x" + bytes(tx_hash).hex())
            if receipt is None or receipt.status != 1:
                raise RuntimeError("the faucet transfer failed")
            self.flush()


class _BatchRefused(Exception):
    """The node answered a JSON-RPC batch with something other than one result per call."""


def _silent_logger(name: str) -> logging.Logger:
    """A logger outside the logging tree that drops everything (web3 logs the URL)."""
    logger = logging.Logger(name)
    logger.disabled = True
    return logger


class HttpBackend(Backend):
    """A JSON-RPC node over HTTP(S), every request bounded by ``timeout`` seconds."""

    name = "rpc"

    def __init__(self, url: str, timeout: float) -> None:
        from web3 import HTTPProvider

        requests = importlib.import_module("requests")
        adapters = importlib.import_module("requests.adapters")
        self._session = requests.Session()
        for scheme in ("http://", "https://"):  # room for many threads on one adapter
            self._session.mount(scheme, adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32))
        self._batching = True
        self._provider = HTTPProvider(
            url,
            request_kwargs={"timeout": timeout},
            session=self._session,
            exception_retry_configuration=None,
        )
        quiet = _silent_logger("waiaas.chains.evm.rpc")
        self._provider.logger = quiet
        self._provider._request_session_manager.logger = quiet
        self.redact = _url_secrets(url)

    # -- raw JSON-RPC

    @staticmethod
    def _result(response: Any) -> Any:
        from web3.exceptions import Web3RPCError

        if not isinstance(response, Mapping):
            raise Web3RPCError(f"malformed JSON-RPC response: {str(response)[:200]}")
        error = response.get("error")
        if error:
            raise Web3RPCError(str(error), rpc_response=response)  # type: ignore[arg-type]
        if "result" not in response:
            raise Web3RPCError(f"JSON-RPC response without result: {str(response)[:200]}")
        return response["result"]

    def request(self, method: str, params: Sequence[Any]) -> Any:
        """One JSON-RPC call; returns ``result`` or raises ``Web3RPCError`` with the error."""
        return self._result(self._provider.make_request(method, list(params)))

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several calls in one HTTP request; each item is a result or the exception it gives."""
        responses = self._provider.make_batch_request(
            [(method, list(params)) for method, params in calls]  # type: ignore[misc]
        )
        if not isinstance(responses, list) or len(responses) != len(calls):
            raise _BatchRefused("the node does not answer JSON-RPC batches")
        out: list[Any] = []
        for response in responses:
            try:
                out.append(self._result(response))
            except Exception as exc:
                out.append(exc)
        return out

    # -- the questions

    def chain_id(self) -> int:
        return _quantity(self.request("eth_chainId", []))

    def build_reads(
        self, sender: str, call: dict[str, Any], *, plain: bool, nonce: bool = True
    ) -> BuildReads:
        calls: list[tuple[str, Sequence[Any]]] = [
            ("eth_estimateGas", [_json_call(call)]),
            ("eth_feeHistory", ["0x1", "latest", []]),
            ("eth_maxPriorityFeePerGas", []),
            ("eth_getBalance", [sender, "latest"]),
        ]
        if nonce:
            calls.append(("eth_getTransactionCount", [sender, "pending"]))
        if plain:  # in the same request: whether the recipient of a value transfer holds code
            calls.append(("eth_getCode", [call["to"], "latest"]))
        results: list[Any] | None = None
        if self._batching:
            try:
                results = self.batch(calls)
            except _BatchRefused:
                self._batching = False  # a node without batch support: ask one by one
        if results is None:
            results = []
            for method, params in calls:
                try:
                    results.append(self.request(method, params))
                except Exception as exc:
                    if method not in _OPTIONAL_READS:
                        raise
                    results.append(exc)
        estimate, history, priority, balance = results[:4]
        pending = results[4] if nonce else None
        code = results[-1] if plain and not isinstance(results[-1], Exception) else None
        for item in (estimate, history, balance, pending):
            if isinstance(item, Exception):
                raise item
        if isinstance(history, Mapping) and not history.get("baseFeePerGas"):
            base_fee = self.base_fee()
        else:
            base_fee = _base_fee(history, lambda: {})
        return BuildReads(
            gas_estimate=_quantity(estimate),
            base_fee=base_fee,
            priority_fee=None if isinstance(priority, Exception) else _quantity(priority),
            balance=_quantity(balance),
            pending_nonce=None if pending is None else _quantity(pending),
            to_has_code=None if code is None else bool(_data(code)),
        )

    def base_fee(self) -> int:
        return _base_fee(
            self.request("eth_feeHistory", ["0x1", "latest", []]),
            lambda: self.request("eth_getBlockByNumber", ["latest", False]) or {},
        )

    def priority_fee(self) -> int:
        """``eth_maxPriorityFeePerGas``."""
        return _quantity(self.request("eth_maxPriorityFeePerGas", []))

    def estimate_gas(self, call: dict[str, Any]) -> int:
        return _quantity(self.request("eth_estimateGas", [_json_call(call)]))

    def call(self, params: dict[str, Any], block: str | int = "latest") -> bytes:
        tag = hex(block) if isinstance(block, int) else block
        return _data(self.request("eth_call", [_json_call(params), tag]))

    def balance(self, address: str) -> int:
        return _quantity(self.request("eth_getBalance", [address, "latest"]))

    def nonce(self, address: str, block: str) -> int:
        return _quantity(self.request("eth_getTransactionCount", [address, block]))

    def code(self, address: str) -> bytes:
        return _data(self.request("eth_getCode", [address, "latest"]))

    def receipt(self, tx_hash: str) -> Receipt | None:
        raw = self.request("eth_getTransactionReceipt", [tx_hash])
        return _receipt(raw) if raw else None

    def transaction(self, tx_hash: str) -> TxInfo | None:
        raw = self.request("eth_getTransactionByHash", [tx_hash])
        return _tx_info(raw) if raw else None

    def send_raw(self, raw: bytes, tx_hash: str, sender_of: Callable[[], str]) -> None:
        self.request("eth_sendRawTransaction", ["0x" + raw.hex()])

    def simulate_balances(
        self, sender: str, payload: Mapping[str, Any], tokens: Sequence[str]
    ) -> SimBalances | None:
        """``debug_traceCall`` twice on the latest block: the ``prestateTracer`` in diff mode
        for the sender's native balance and the ``callTracer`` with logs for ``Transfer``
        events (token changes). The call carries no gas price, so no fee is charged and
        ``native`` is the value flow alone. Nodes without the debug API (most public
        providers) answer with an error: ``None``."""
        from web3.exceptions import Web3RPCError

        call: dict[str, Any] = {
            "from": sender,
            "value": int(payload["value"]),
            "data": payload["data"],
            "gas": int(payload["gas"]),
        }
        if payload.get("to"):
            call["to"] = payload["to"]
        params = _json_call(call)
        try:
            diff = self.request(
                "debug_traceCall",
                [
                    params,
                    "latest",
                    {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}},
                ],
            )
            trace = self.request(
                "debug_traceCall",
                [params, "latest", {"tracer": "callTracer", "tracerConfig": {"withLog": True}}],
            )
        except Web3RPCError:
            return None
        if not isinstance(diff, Mapping) or not isinstance(trace, Mapping):
            return None
        key = sender.lower()
        pre = (diff.get("pre") or {}).get(key) or {}
        post = (diff.get("post") or {}).get(key) or {}
        before = _quantity(pre.get("balance", "0x0"))
        after = _quantity(post.get("balance", pre.get("balance", "0x0")))
        success = not trace.get("error")
        logs: list[tuple[str, Sequence[int], bytes]] = []

        def walk(frame: Mapping[str, Any]) -> None:
            if frame.get("error"):
                return  # a reverted frame's logs (and its children's) are discarded
            for log in frame.get("logs") or ():
                topics = [int(t, 16) for t in log.get("topics") or ()]
                logs.append((str(log.get("address", "")), topics, _data(log.get("data", "0x"))))
            for child in frame.get("calls") or ():
                walk(child)

        walk(trace)
        return SimBalances(
            native=after - before,
            tokens=_log_token_deltas(sender, logs) if success else {},
            fee=None,
            success=success,
        )

    def set_balance(self, address: str, amount: int) -> None:
        """anvil's ``anvil_setBalance`` cheat code."""
        self.request("anvil_setBalance", [address, hex(amount)])

    def close(self) -> None:
        self._session.close()


def _json_call(params: dict[str, Any]) -> dict[str, Any]:
    """A call object with JSON-RPC quantities as hex strings."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, bool):
            raise TypeError(f"{key} must not be a bool")
        out[key] = hex(value) if isinstance(value, int) else value
    return out


def _url_secrets(url: str) -> tuple[str, ...]:
    """The parts of ``url`` that must never appear in an error: all but scheme and host."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    secrets = [url]
    if parts.path not in ("", "/"):
        secrets.append(parts.path)
    if parts.query:
        secrets.append(parts.query)
    if parts.username or parts.password:
        secrets.append(parts.netloc)
    return tuple(sorted(secrets, key=len, reverse=True))
