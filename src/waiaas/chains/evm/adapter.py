"""The EVM chain adapter: EIP-1559 transactions for Ethereum-compatible chains.

:class:`EvmAdapter` implements :class:`waiaas.chains.base.ChainAdapter` and
:class:`~waiaas.chains.base.SupportsNonces`; :class:`EvmDevAdapter` adds
:class:`~waiaas.chains.base.LocalChainControl` on test chains.

Backends::

    EvmAdapter.local()                              in-process eth-tester chain, test controls
    EvmAdapter.rpc(url, chain_id=1, network="mainnet")  any JSON-RPC node; chain id verified
    EvmAdapter.anvil(url, chain_id=31337)           an anvil node, with its test cheat codes

Every transaction is EIP-1559 (type 2) and carries the configured chain id; the adapter checks
the chain id itself when it connects, builds, signs and submits, so a transaction for another
chain is refused before any node sees it.

Example::

    from waiaas.chains.evm import EvmAdapter
    from waiaas.types import Transfer

    with EvmAdapter.local() as evm:
        secret, me = evm.generate_secret()
        evm.fund(me, 10**18)
        unsigned = evm.build(Transfer(to="0x" + "11" * 20, amount=10**15), me)
        signed = evm.sign(unsigned, secret)
        evm.submit(signed)
        status = evm.wait_for_confirmation(signed)
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from waiaas.chains import families
from waiaas.chains.base import (
    BalanceChanges,
    ChainTxState,
    ChainTxStatus,
    FeeQuote,
    NativeAsset,
    SignedTx,
    SimulationResult,
    UnsignedTx,
)
from waiaas.chains.evm.abi import (
    SELECTOR_APPROVE,
    SELECTOR_BALANCE_OF,
    SELECTOR_DECIMALS,
    SELECTOR_MINT,
    SELECTOR_TRANSFER,
    SELECTOR_TRANSFER_FROM,
    UINT256_MAX,
    bundled_token_artifact,
    decode_uint,
    encode_call,
)
from waiaas.chains.evm.addresses import ZERO_ADDRESS, normalize_address
from waiaas.chains.evm.backends import Backend, HttpBackend, Receipt, TesterBackend
from waiaas.chains.evm.errors import ChainIdMismatchError, map_evm_error
from waiaas.chains.evm.nonces import NonceAllocator
from waiaas.errors import (
    ChainError,
    ExecutionRevertedError,
    InsufficientFundsError,
    InvalidInputError,
    PermanentChainError,
    StaleTransactionError,
    TransientChainError,
)
from waiaas.types import Approve, Batch, ContractCall, TokenTransfer, Transfer

if TYPE_CHECKING:
    from waiaas.plan import EvmPlan

__all__ = ["DEFAULT_PRIORITY_FEE", "EvmAdapter", "EvmDevAdapter"]

T = TypeVar("T")
_A = TypeVar("_A", bound="EvmAdapter")

DEFAULT_PRIORITY_FEE: Final = 10**9
"""Priority fee (1 gwei) used when the node cannot suggest one."""

_CHAIN: Final = "evm"
_TX_TYPE: Final = 2
_PLAIN_TRANSFER_GAS: Final = 21_000
_MAX_NONCE: Final = 2**64 - 2
_PAYLOAD_KEYS: Final = frozenset(
    {"type", "chainId", "nonce", "value", "data", "gas", "maxFeePerGas", "maxPriorityFeePerGas"}
)
_SENDER_CACHE_SIZE: Final = 4096
_NO_CODE_SECONDS: Final = 2.0
"""How long a build's "no code at this recipient" answers the disguised-transfer check."""
_NO_CODE_KEPT: Final = 4096
_TOKEN_RETURNS_BOOL: Final = (SELECTOR_TRANSFER, SELECTOR_APPROVE, SELECTOR_TRANSFER_FROM)
_FINAL_STATES: Final = frozenset(
    {ChainTxState.CONFIRMED, ChainTxState.FAILED, ChainTxState.DROPPED}
)


def _keys() -> tuple[Callable[[str], tuple[bytes, str]], Callable[[str, bytes], str]]:
    """``(generate_keypair, public_key_for)`` from the keystore's key helpers."""
    from waiaas.keystore.keys import generate_keypair, public_key_for

    return generate_keypair, public_key_for


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rlp() -> Any:
    return importlib.import_module("rlp")


def _sign_dynamic_fee(payload: Mapping[str, Any], secret: bytes) -> tuple[bytes, bytes]:
    """``(raw, hash)`` of the EIP-1559 transaction ``payload`` (validated by
    ``EvmAdapter._payload``) signed with ``secret``: the bytes ``eth_account`` produces (RFC
    6979 nonce, low ``s``), without its per-call field formatting.

    Raises:
        ValueError / TypeError: a field out of range, calldata or ``to`` not hex.
    """
    from coincurve import PrivateKey
    from eth_hash.auto import keccak

    for key in _PAYLOAD_KEYS - {"data", "type"}:
        if payload[key] > (_MAX_NONCE if key == "nonce" else UINT256_MAX):
            raise ValueError(f"{key} out of range")
    to = payload.get("to")
    recipient = b"" if to is None else bytes.fromhex(normalize_address(to)[2:])
    data = payload["data"]
    if not isinstance(data, str) or not data.startswith("0x"):
        raise ValueError("data must be 0x-hex")
    fields: list[Any] = [
        payload["chainId"],
        payload["nonce"],
        payload["maxPriorityFeePerGas"],
        payload["maxFeePerGas"],
        payload["gas"],
        recipient,
        payload["value"],
        bytes.fromhex(data[2:]),
        [],  # access list
    ]
    rlp = _rlp()
    signature = PrivateKey(secret).sign_recoverable(
        keccak(bytes([_TX_TYPE]) + rlp.encode(fields)), hasher=None
    )
    r, s, y_parity = signature[:32], signature[32:64], signature[64]
    raw = bytes([_TX_TYPE]) + rlp.encode(
        [*fields, y_parity, int.from_bytes(r, "big"), int.from_bytes(s, "big")]
    )
    return raw, keccak(raw)


def _decode_raw(raw: bytes) -> tuple[int | None, int]:
    """``(chain id, nonce)`` of signed transaction bytes (chain id ``None`` if pre-EIP-155)."""
    if not raw:
        raise InvalidInputError("signed transaction bytes are empty", field="raw")
    try:
        if raw[0] >= 0xC0:  # legacy: [nonce, gasPrice, gas, to, value, data, v, r, s]
            items = _rlp().decode(raw)
            v = int.from_bytes(items[6], "big")
            return ((v - 35) // 2 if v >= 35 else None), int.from_bytes(items[0], "big")
        if raw[0] in (1, 2, 3, 4):  # typed: [chainId, nonce, ...]
            items = _rlp().decode(raw[1:])
            return int.from_bytes(items[0], "big"), int.from_bytes(items[1], "big")
    except Exception as exc:
        raise InvalidInputError(
            f"signed transaction bytes do not decode: {type(exc).__name__}", field="raw"
        ) from None
    raise InvalidInputError("signed transaction bytes have an unknown type", field="raw")


class EvmAdapter:
    """A :class:`~waiaas.chains.base.ChainAdapter` for EVM chains (EIP-1559, chain-id checked).

    Build one with :meth:`local`, :meth:`rpc` or :meth:`anvil`; close it with :meth:`close`
    (or use it as a context manager). Thread-safe: many threads may build, sign and submit
    for the same sender at once and still get distinct nonces.

    Attributes:
        chain: always ``"evm"``.
        network: the network name agents are bound to (``"local"``, ``"mainnet"``, ...).
        chain_id: the EIP-155 chain id every transaction carries.
        priority_fee: a fixed priority fee (wei), or ``None`` to ask the node.
        gas_margin_percent: head room added to ``eth_estimateGas`` (default 20).
        native_asset: ETH, 18 decimals (:class:`~waiaas.chains.base.SupportsNativeAsset`;
            every EVM network's coin is shown as ETH).
        supports_batch: ``False``: a ``Batch`` is refused (one transaction per request).
    """

    chain: str = _CHAIN
    native_asset: NativeAsset = families.EVM_NATIVE
    supports_batch: bool = False

    def refused_call(self, to: str, data: bytes) -> tuple[str, str] | None:
        """A raw call of an ERC-20 ``transfer``, ``transferFrom``, ``approve`` or
        ``increaseAllowance`` is refused: it would move tokens past the budgets and approval
        limits (:class:`~waiaas.chains.base.SupportsCallGuard`)."""
        return families.evm_refused_call(to, data)

    def __init__(
        self,
        backend: Backend,
        *,
        chain_id: int,
        network: str,
        priority_fee: int | None = None,
        gas_margin_percent: int = 20,
        poll_interval: float = 0.005,
        max_poll_interval: float = 0.5,
    ) -> None:
        """Wrap a backend; prefer the :meth:`local`, :meth:`rpc` and :meth:`anvil` constructors."""
        if not isinstance(network, str) or not network.strip():
            raise InvalidInputError("network must be a non-empty string", field="network")
        if not _is_int(chain_id) or chain_id <= 0:
            raise InvalidInputError("chain_id must be a positive integer", field="chain_id")
        if priority_fee is not None and (not _is_int(priority_fee) or priority_fee < 0):
            raise InvalidInputError(
                "priority_fee must be a non-negative integer of wei", field="priority_fee"
            )
        if not _is_int(gas_margin_percent) or not 0 <= gas_margin_percent <= 500:
            raise InvalidInputError(
                "gas_margin_percent must be an integer from 0 to 500", field="gas_margin_percent"
            )
        self._backend = backend
        self.network = network
        self.chain_id = chain_id
        self.priority_fee = priority_fee
        self.gas_margin_percent = gas_margin_percent
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._nonces = NonceAllocator()
        self._senders: OrderedDict[str, str] = OrderedDict()
        self._senders_lock = threading.Lock()
        self._contracts: set[str] = set()
        # addresses a build just found without code -> when (monotonic seconds)
        self._no_code: OrderedDict[str, float] = OrderedDict()
        self._decimals: dict[str, int] = {}
        self._closed = False
        self._unverified = False
        self._verify_lock = threading.Lock()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def local(cls, network: str = "local", *, priority_fee: int | None = None) -> EvmDevAdapter:
        """A fresh in-process chain (eth-tester + py-evm), with test controls.

        Args:
            network: the network name reported to the engine.
            priority_fee: a fixed priority fee in wei instead of the node's suggestion.

        Example::

            evm = EvmAdapter.local()
            secret, address = evm.generate_secret()
            evm.fund(address, 10**18)
        """
        backend = TesterBackend()
        chain_id = backend.chain_id()
        return EvmDevAdapter(backend, chain_id=chain_id, network=network, priority_fee=priority_fee)

    @classmethod
    def rpc(
        cls,
        url: str,
        *,
        chain_id: int,
        network: str = "mainnet",
        timeout: float = 10.0,
        priority_fee: int | None = None,
    ) -> EvmAdapter:
        """An adapter on a JSON-RPC node that must serve ``chain_id``.

        Nothing is sent until the adapter is first used (or :meth:`connect` is called):
        then the node's chain id is checked before any other call, so opening a wallet
        never waits on a node.

        Args:
            url: ``http://`` or ``https://`` endpoint (it never appears in errors or reprs).
            chain_id: the chain id the node must report; REQUIRED so that a misconfigured URL
                can never receive (or replay) a transaction meant for another chain.
            network: the network name agents are bound to.
            timeout: seconds allowed for every HTTP request.
            priority_fee: a fixed priority fee in wei instead of the node's suggestion.

        Raises:
            InvalidInputError: bad URL, chain id or timeout.
            ChainIdMismatchError (on first use / ``connect()``): another chain id.
            TransientChainError (on first use / ``connect()``): the node cannot be reached.

        Example::

            evm = EvmAdapter.rpc("https://sepolia.example/rpc", chain_id=11155111,
                                 network="sepolia")
        """
        return cls._connect(
            cls,
            url,
            chain_id=chain_id,
            network=network,
            timeout=timeout,
            priority_fee=priority_fee,
        )

    @classmethod
    def anvil(
        cls,
        url: str,
        *,
        chain_id: int = 31337,
        network: str = "anvil",
        timeout: float = 10.0,
    ) -> EvmDevAdapter:
        """Connect to an anvil node; test controls use its ``anvil_*`` cheat codes.

        Same checks as :meth:`rpc`. Never point this at a production node: its controls
        exist only on development nodes.
        """
        return cls._connect(
            EvmDevAdapter,
            url,
            chain_id=chain_id,
            network=network,
            timeout=timeout,
            priority_fee=None,
        )

    @staticmethod
    def _connect(
        kind: type[_A],
        url: str,
        *,
        chain_id: int,
        network: str,
        timeout: float,
        priority_fee: int | None,
    ) -> _A:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInputError("url must be an http:// or https:// URL", field="url")
        if not _is_int(chain_id) or chain_id <= 0:
            raise InvalidInputError("chain_id must be a positive integer", field="chain_id")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidInputError("timeout must be a positive number of seconds", field="timeout")
        backend = HttpBackend(url, float(timeout))
        try:
            adapter = kind(
                backend,
                chain_id=chain_id,
                network=network,
                priority_fee=priority_fee,
                max_poll_interval=min(1.0, max(0.05, timeout / 10)),
            )
            # Lazy, like the Solana adapter: the node is first asked (its chain id checked)
            # when the adapter is first used, or by connect().
            adapter._unverified = True
        except BaseException:
            backend.close()
            raise
        return adapter

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the backend (HTTP session). Idempotent."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self: _A) -> _A:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(network={self.network!r}, chain_id={self.chain_id}, "
            f"backend={self._backend.name!r})"
        )

    # ------------------------------------------------------------------ plumbing

    def connect(self: _A) -> _A:
        """Ask the node now for its chain id (otherwise done on first use); return ``self``.

        Idempotent; a failure leaves the adapter unverified, so the next call asks again.

        Raises:
            ChainIdMismatchError: the node serves another chain.
            TransientChainError / PermanentChainError: the node cannot be reached or used.

        Example::

            evm = EvmAdapter.rpc(url, chain_id=11155111, network="sepolia").connect()
        """
        if self._unverified:
            with self._verify_lock:
                if self._unverified:
                    found = self._guarded("eth_chainId", self._backend.chain_id)
                    if found != self.chain_id:
                        raise ChainIdMismatchError(
                            f"the node serves chain id {found}, not the configured {self.chain_id}",
                            expected=self.chain_id,
                            found=found,
                        )
                    self._unverified = False
        return self

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        """Run one chain call under the backend's guard; map any upstream failure."""
        if self._unverified:
            self.connect()
        return self._guarded(op, fn)

    def _guarded(self, op: str, fn: Callable[[], T]) -> T:
        try:
            with self._backend.guard():
                return fn()
        except ChainError:
            raise
        except Exception as exc:
            mapped = map_evm_error(exc, op=op, redact=self._backend.redact)
            if any(secret in str(exc) for secret in self._backend.redact):
                raise mapped from None  # the cause names the URL, which may hold an API key
            raise mapped from exc

    def _remember_sender(self, tx_hash: str, sender: str) -> None:
        with self._senders_lock:
            self._senders[tx_hash] = sender
            self._senders.move_to_end(tx_hash)
            while len(self._senders) > _SENDER_CACHE_SIZE:
                self._senders.popitem(last=False)

    def _sender_of(self, signed: SignedTx) -> str:
        with self._senders_lock:
            known = self._senders.get(signed.tx_hash)
        if known is not None:
            return known
        from eth_account import Account

        try:
            sender = normalize_address(str(Account.recover_transaction(signed.raw)))
        except Exception:
            raise InvalidInputError(
                "cannot recover the sender of the signed transaction", field="raw"
            ) from None
        self._remember_sender(signed.tx_hash, sender)
        return sender

    def _receipt(self, tx_hash: str) -> Receipt | None:
        return self._call("eth_getTransactionReceipt", lambda: self._backend.receipt(tx_hash))

    def _pool_has(self, tx_hash: str) -> bool:
        if self._backend.is_queued(tx_hash):
            return True
        info = self._call("eth_getTransactionByHash", lambda: self._backend.transaction(tx_hash))
        return info is not None

    def _base_fee(self) -> int:
        return self._call("eth_feeHistory", self._backend.base_fee)

    # ------------------------------------------------------------------ keys & addresses

    def validate_address(self, address: str) -> str:
        """Return the EIP-55 form of ``address``.

        All-lowercase and all-uppercase hex are accepted; mixed case must carry a correct
        EIP-55 checksum.

        Raises:
            InvalidAddressError: not ``0x`` + 40 hex digits, or a wrong checksum.

        Example::

            evm.validate_address("0x52908400098527886e0f7030069857d2e4169ee7")
            # -> '0x52908400098527886E0F7030069857D2E4169EE7'
        """
        return normalize_address(address)

    def generate_secret(self) -> tuple[bytes, str]:
        """A new secp256k1 private key (32 bytes) and its EIP-55 address."""
        generate_keypair, _ = _keys()
        return generate_keypair(_CHAIN)

    def address_of(self, secret: bytes) -> str:
        """The EIP-55 address of a 32-byte secp256k1 private key.

        Raises:
            InvalidInputError: not 32 bytes, or not a valid secp256k1 key.
        """
        _, public_key_for = _keys()
        return public_key_for(_CHAIN, secret)

    # ------------------------------------------------------------------ building

    def build(self, request: Any, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        """Build an EIP-1559 transaction for ``request`` sent by ``sender``.

        Gas comes from ``eth_estimateGas`` plus :attr:`gas_margin_percent` (a plain transfer
        to an account without code gets exactly 21,000). ``maxFeePerGas`` is twice the next
        block's base fee plus the priority fee. The nonce is ``nonce`` when given, else
        allocated so that concurrent builds for one sender never collide.

        Args:
            request: a :class:`~waiaas.types.Transfer`, ``TokenTransfer`` (ERC-20
                ``transfer``), ``ContractCall`` (calldata + value) or ``Approve`` (ERC-20
                ``approve``). ``Batch`` is Solana-only.
            sender: the sending address.
            nonce: an explicit nonce (e.g. to replace a stuck transaction).

        Raises:
            InvalidInputError / InvalidAddressError: bad request, address, nonce or amount;
                a token address without a contract; a ``decimals`` that does not match the
                token's.
            InsufficientFundsError: the sender cannot pay value + gas * max fee.
            ExecutionRevertedError: the call would revert (with the revert reason).
            ChainError: the node failed (transient errors may be retried).

        Example::

            unsigned = evm.build(TokenTransfer(token=usdc, to=bob, amount=5_000_000), me)
        """
        sender = normalize_address(sender, field="sender")
        if nonce is not None and (not _is_int(nonce) or not 0 <= nonce <= _MAX_NONCE):
            raise InvalidInputError("nonce must be an integer from 0 to 2**64-2", field="nonce")
        to, value, data = self._encode_request(request)
        return self._prepare(sender, to, value, data, nonce=nonce)

    def build_plan(self, plan: EvmPlan, *, nonce: int | None = None) -> UnsignedTx:
        """Build the transaction of a stored plan: exactly its ``to``, ``value`` and calldata,
        with fresh gas, fees and nonce; ``plan_of(build_plan(p)) == p``.

        Args:
            plan: an :class:`~waiaas.plan.EvmPlan` for this adapter's network and chain id.
            nonce: an explicit nonce, else one is allocated as in :meth:`build`.

        Raises:
            InvalidInputError: not an EVM plan, another network or chain id, a bad nonce.
            InsufficientFundsError, ExecutionRevertedError, ChainError: as :meth:`build`.

        Example::

            unsigned = evm.build_plan(plan_from_json(stored))
        """
        from waiaas.plan import EvmPlan

        if not isinstance(plan, EvmPlan):
            raise InvalidInputError("plan must be an EvmPlan", field="plan")
        if plan.network != self.network or plan.chain_id != self.chain_id:
            raise InvalidInputError(
                f"the plan is for {plan.network!r} (chain id {plan.chain_id}), this adapter "
                f"for {self.network!r} (chain id {self.chain_id})",
                field="plan",
            )
        if nonce is not None and (not _is_int(nonce) or not 0 <= nonce <= _MAX_NONCE):
            raise InvalidInputError("nonce must be an integer from 0 to 2**64-2", field="nonce")
        return self._prepare(plan.sender, plan.to, plan.value, plan.data, nonce=nonce)

    def _encode_request(self, request: Any) -> tuple[str, int, bytes]:
        """``(to, value, calldata)`` for a request, validated."""
        if isinstance(request, Batch):
            raise InvalidInputError(
                "BATCH requests are supported on Solana only; send the items one by one",
                field="type",
            )
        if isinstance(request, Transfer):
            to = self._recipient(request.to, "to")
            return to, self._uint(request.amount, "amount"), b""
        if isinstance(request, TokenTransfer):
            token = self._token(request.token, request.decimals)
            to = self._recipient(request.to, "to")
            amount = self._uint(request.amount, "amount")
            return token, 0, encode_call(SELECTOR_TRANSFER, ["address", "uint256"], [to, amount])
        if isinstance(request, Approve):
            token = self._token(request.token, request.decimals)
            spender = self._recipient(request.spender, "spender")
            amount = self._uint(request.amount, "amount")
            return (
                token,
                0,
                encode_call(SELECTOR_APPROVE, ["address", "uint256"], [spender, amount]),
            )
        if isinstance(request, ContractCall):
            if request.accounts:
                raise InvalidInputError(
                    "accounts are for Solana program calls; EVM calls take calldata only",
                    field="accounts",
                )
            to = self._recipient(request.to, "to")
            return to, self._uint(request.value, "value"), bytes(request.data)
        raise InvalidInputError(
            "request must be a Transfer, TokenTransfer, ContractCall or Approve",
            field="request",
        )

    @staticmethod
    def _uint(value: object, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT256_MAX:
            raise InvalidInputError(f"{field} must be an integer from 0 to 2**256-1", field=field)
        return value

    @staticmethod
    def _recipient(address: str, field: str) -> str:
        normalized = normalize_address(address, field=field)
        if normalized == ZERO_ADDRESS:
            from waiaas.errors import InvalidAddressError

            raise InvalidAddressError(
                f"{field} is the zero address; anything sent there is lost",
                chain=_CHAIN,
                address=address,
                field=field,
            )
        return normalized

    def _token(self, token: str, decimals: int | None) -> str:
        address = self._recipient(token, "token")
        if address not in self._contracts:
            code = self._call("eth_getCode", lambda: self._backend.code(address))
            if not code:
                raise InvalidInputError(
                    f"no contract is deployed at token address {address}", field="token"
                )
            self._contracts.add(address)
        if decimals is not None:
            actual = self.token_decimals(address)
            if actual != decimals:
                raise InvalidInputError(
                    f"the token has {actual} decimals, the request says {decimals}",
                    field="decimals",
                )
        return address

    def token_decimals(self, token: str) -> int:
        """The ERC-20 ``decimals()`` of ``token`` (read once, then cached).

        Raises:
            InvalidAddressError: bad address.
            InvalidInputError: the contract has no ``decimals()``.
        """
        address = normalize_address(token, field="token")
        cached = self._decimals.get(address)
        if cached is not None:
            return cached
        raw = self._eth_call({"to": address, "data": "0x" + SELECTOR_DECIMALS.hex()})
        try:
            decimals = decode_uint(raw)
        except ValueError:
            raise InvalidInputError(
                f"{address} does not answer decimals() like an ERC-20 token", field="token"
            ) from None
        self._decimals[address] = decimals
        return decimals

    def _eth_call(self, params: dict[str, Any], block: str | int = "latest") -> bytes:
        return self._call("eth_call", lambda: self._backend.call(params, block))

    def _prepare(
        self, sender: str, to: str | None, value: int, data: bytes, *, nonce: int | None
    ) -> UnsignedTx:
        """Estimate gas and fees, check the balance, allocate the nonce, assemble the payload."""
        call: dict[str, Any] = {"from": sender, "value": value, "data": "0x" + data.hex()}
        if to is not None:
            call["to"] = to
        plain = to is not None and not data
        reads = self._call(
            "build",
            lambda: self._backend.build_reads(sender, call, plain=plain, nonce=nonce is None),
        )
        if to is not None and reads.to_has_code is not None:
            self._saw_code(to, reads.to_has_code)
        estimated = reads.gas_estimate
        exact = plain and estimated == _PLAIN_TRANSFER_GAS
        gas = estimated if exact else estimated + estimated * self.gas_margin_percent // 100
        base_fee = reads.base_fee
        if self.priority_fee is not None:
            priority = self.priority_fee
        elif reads.priority_fee is not None:
            priority = reads.priority_fee
        else:
            priority = DEFAULT_PRIORITY_FEE
        max_fee = 2 * base_fee + priority
        if reads.balance < value + gas * max_fee:
            raise InsufficientFundsError(
                f"the sender holds {reads.balance} wei but needs {value + gas * max_fee} "
                f"(value {value} + gas {gas} * max fee {max_fee})",
                chain=_CHAIN,
            )
        if nonce is None:
            pending = reads.pending_nonce
            if pending is None:  # a backend that ignored ``nonce=True``
                pending = self._call(
                    "eth_getTransactionCount", lambda: self._backend.nonce(sender, "pending")
                )
            nonce = self._nonces.allocate(sender, lambda: pending)
        else:
            self._nonces.reserve(sender, nonce)
        payload: dict[str, Any] = {
            "type": _TX_TYPE,
            "chainId": self.chain_id,
            "nonce": nonce,
            "value": value,
            "data": "0x" + data.hex(),
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority,
        }
        if to is not None:
            payload["to"] = to
        return UnsignedTx(
            chain=_CHAIN,
            sender=sender,
            payload=payload,
            nonce=nonce,
            fee_estimate=estimated * min(max_fee, base_fee + priority),
        )

    def _saw_code(self, address: str, has_code: bool) -> None:
        """Keep what a build read about ``address``'s code: holding code is kept for good
        (code stays), holding none for :data:`_NO_CODE_SECONDS` (a contract may be deployed
        there later), so the disguised-transfer check of the same request asks no again."""
        if has_code:
            self._contracts.add(address)
            return
        with self._senders_lock:
            self._no_code[address] = time.monotonic()
            self._no_code.move_to_end(address)
            while len(self._no_code) > _NO_CODE_KEPT:
                self._no_code.popitem(last=False)

    def _known_without_code(self, address: str) -> bool:
        """Whether a build found no code at ``address`` less than :data:`_NO_CODE_SECONDS` ago."""
        with self._senders_lock:
            seen = self._no_code.get(address)
        return seen is not None and time.monotonic() - seen < _NO_CODE_SECONDS

    def pending_nonce(self, address: str) -> int:
        """The next nonce the node expects from ``address``, its pending pool included.

        Raises:
            InvalidAddressError: bad address.
            ChainError: the node failed.
        """
        address = normalize_address(address)
        return self._call(
            "eth_getTransactionCount", lambda: self._backend.nonce(address, "pending")
        )

    def release_nonce(self, address: str, nonce: int) -> None:
        """Give back a nonce that :meth:`build` allocated for a transaction you drop unsent.

        Without it, later transactions of ``address`` would carry higher nonces and wait on
        the chain behind the gap. (A transaction the chain refuses in :meth:`submit` gives its
        nonce back by itself; transactions built with an explicit ``nonce`` need nothing.)

        Raises:
            InvalidAddressError / InvalidInputError: bad address or nonce.
        """
        sender = normalize_address(address)
        if not _is_int(nonce) or not 0 <= nonce <= _MAX_NONCE:
            raise InvalidInputError("nonce must be an integer from 0 to 2**64-2", field="nonce")
        self._nonces.release(sender, nonce)

    def _payload(self, unsigned: UnsignedTx) -> dict[str, Any]:
        """The validated payload of an unsigned transaction built for this chain."""
        if not isinstance(unsigned, UnsignedTx) or unsigned.chain != _CHAIN:
            raise InvalidInputError(
                "expected an UnsignedTx built by an EVM adapter", field="unsigned"
            )
        payload = unsigned.payload
        if not isinstance(payload, Mapping):
            raise InvalidInputError("the unsigned payload must be a mapping", field="payload")
        keys = set(payload)
        if not keys >= _PAYLOAD_KEYS or not keys <= _PAYLOAD_KEYS | {"to"}:
            raise InvalidInputError(
                "the unsigned payload has missing or unexpected fields", field="payload"
            )
        for key in _PAYLOAD_KEYS - {"data"}:
            if not _is_int(payload[key]) or payload[key] < 0:
                raise InvalidInputError(
                    f"payload {key} must be a non-negative integer", field="payload"
                )
        if payload["chainId"] != self.chain_id:
            raise ChainIdMismatchError(
                f"the transaction is for chain id {payload['chainId']}, "
                f"this adapter for {self.chain_id}",
                expected=self.chain_id,
                found=payload["chainId"],
            )
        if payload["type"] != _TX_TYPE:
            raise InvalidInputError(
                "only EIP-1559 (type 2) transactions are signed", field="payload"
            )
        if payload["maxPriorityFeePerGas"] > payload["maxFeePerGas"]:
            raise InvalidInputError("maxPriorityFeePerGas exceeds maxFeePerGas", field="payload")
        if unsigned.nonce is not None and unsigned.nonce != payload["nonce"]:
            raise InvalidInputError("the nonce differs from the payload's", field="payload")
        return dict(payload)

    # ------------------------------------------------------------------ plans

    def plan_of(self, unsigned: UnsignedTx) -> EvmPlan:
        """The canonical plan of ``unsigned``: the exact ``to``, ``value``, calldata and chain
        id of the payload that :meth:`sign` signs.

        Raises:
            InvalidInputError: not an EVM transaction of this adapter.
            ChainIdMismatchError: the payload is for another chain.

        Example::

            plan = evm.plan_of(evm.build(Transfer(to=bob, amount=1), me))
        """
        from waiaas.plan import EvmPlan

        payload = self._payload(unsigned)
        data = payload["data"]
        if not isinstance(data, str) or not data.startswith("0x"):
            raise InvalidInputError("payload data must be 0x-hex", field="payload")
        try:
            calldata = bytes.fromhex(data[2:])
        except ValueError:
            raise InvalidInputError("payload data must be 0x-hex", field="payload") from None
        to = payload.get("to")
        return EvmPlan(
            network=self.network,
            chain_id=int(payload["chainId"]),
            sender=normalize_address(unsigned.sender, field="sender"),
            to=None if to is None else normalize_address(to, field="to"),
            value=int(payload["value"]),
            data=calldata,
        )

    def plan_of_signed(self, signed: SignedTx) -> EvmPlan:
        """The canonical plan of signed EIP-1559 bytes; the sender is recovered from the
        signature (or known: this adapter signed the bytes of that hash for it).

        Raises:
            InvalidInputError: not a type-2 transaction, an access list (never signed by
                this adapter), or bytes that do not decode.
            ChainIdMismatchError: signed for another chain.
        """
        from waiaas.plan import EvmPlan

        self._check_signed(signed)
        raw = bytes(signed.raw)
        if raw[0] != _TX_TYPE:
            raise InvalidInputError("only EIP-1559 (type 2) transactions have a plan", field="raw")
        try:
            items = _rlp().decode(raw[1:])
            chain_id = int.from_bytes(items[0], "big")
            to_raw, value_raw, data, access_list = items[5], items[6], items[7], items[8]
        except Exception as exc:
            raise InvalidInputError(
                f"signed transaction bytes do not decode: {type(exc).__name__}", field="raw"
            ) from None
        if access_list:
            raise InvalidInputError("transactions with an access list have no plan", field="raw")
        # the hash was checked against the bytes: the sender this adapter signed them for, or
        # the one recovered from the signature
        sender = self._sender_of(signed)
        return EvmPlan(
            network=self.network,
            chain_id=chain_id,
            sender=sender,
            to=normalize_address("0x" + bytes(to_raw).hex(), field="to") if to_raw else None,
            value=int.from_bytes(value_raw, "big"),
            data=bytes(data),
        )

    def account_lookup(self) -> _EvmLookup:
        """Chain reads for :func:`waiaas.plan.decode_plan`: whether an address holds code (a
        plain value transfer to a contract runs its code). EVM has no token accounts.

        Example::

            effects = decode_plan(plan, lookup=evm.account_lookup())
        """
        return _EvmLookup(self)

    def simulate_balance_changes(
        self, unsigned: UnsignedTx, *, tokens: Iterable[str] = ()
    ) -> BalanceChanges | None:
        """The sender's balance changes if ``unsigned`` ran now, without committing anything.

        * eth-tester: the transaction is applied to a copy of the latest state; native and
          ``balanceOf`` (for every token the plan's effects name, the called contract and
          ``tokens``) are read before and after, plus every ``Transfer`` event.
        * JSON-RPC (anvil, geth, erigon with the debug API): ``debug_traceCall`` with the
          ``prestateTracer`` in diff mode (native) and the ``callTracer`` with logs
          (``Transfer`` events of any token). Nodes without the debug API (most public
          providers): ``None``.

        ``native`` excludes the fee; ``fee`` is the fee the simulation charged (eth-tester)
        or the build's estimate (JSON-RPC, which simulates without a gas price). A call that
        reverts changes nothing: ``native`` 0, no tokens.

        Args:
            unsigned: a transaction built by this adapter.
            tokens: more token contracts whose ``balanceOf`` to compare (eth-tester).

        Raises:
            InvalidInputError: not an EVM transaction of this adapter.
            ChainIdMismatchError: built for another chain.
            ChainError: the node failed.

        Example::

            changes = evm.simulate_balance_changes(unsigned)
            changes.native, dict(changes.tokens)   # (-10**15, {}) for a 0.001 ETH transfer
        """
        from waiaas.plan import ContractCall as CallEffect
        from waiaas.plan import TokenApproval as ApprovalEffect
        from waiaas.plan import TokenTransfer as TransferEffect
        from waiaas.plan import decode_plan

        payload = self._payload(unsigned)
        plan = self.plan_of(unsigned)
        watch = {normalize_address(t, field="tokens") for t in tokens}
        for effect in decode_plan(plan):
            if isinstance(effect, TransferEffect | ApprovalEffect) and effect.token:
                watch.add(effect.token)
            elif isinstance(effect, CallEffect) and effect.contract.startswith("0x"):
                watch.add(effect.contract)
        sender = plan.sender
        result = self._call(
            "simulate",
            lambda: self._backend.simulate_balances(sender, payload, sorted(watch)),
        )
        if result is None:
            return None
        changes = {normalize_address(k): v for k, v in result.tokens.items() if v}
        fee = result.fee if result.fee is not None else unsigned.fee_estimate
        return BalanceChanges(native=result.native, tokens=changes, fee=fee)

    def exact_balance_changes(self, unsigned: UnsignedTx) -> BalanceChanges | None:
        """The sender's balance changes of ``unsigned`` where they are known without a
        simulation, else ``None`` (then :meth:`simulate_balance_changes` is what tells).

        Known: a plain value transfer (no calldata) with a gas limit of exactly 21,000 (the
        intrinsic gas of such a transaction) to another account that held no code when this
        adapter last built a transaction to it (moments ago). With 21,000 gas no code can run
        at the recipient even if it gains some before the transaction is included (a
        ``CREATE2`` deployment, an EIP-7702 delegation): the call would run out of gas and
        revert. So the sender loses at most ``value`` (fees excluded) and no token: the
        result is ``native=-value``, no tokens, ``fee`` the build's estimate (at most gas
        limit times ``maxFeePerGas``). Anything else (calldata, another gas limit, a
        recipient with code or not read recently, a contract creation) is ``None``.

        Raises:
            InvalidInputError: not an EVM transaction of this adapter.
            ChainIdMismatchError: built for another chain.

        Example::

            evm.exact_balance_changes(evm.build(Transfer(to=bob, amount=10**15), me))
            # BalanceChanges(native=-10**15, tokens={}, fee=...)
        """
        payload = self._payload(unsigned)
        to = payload.get("to")
        if to is None or payload["data"] != "0x" or payload["gas"] != _PLAIN_TRANSFER_GAS:
            return None
        recipient = normalize_address(to, field="to")
        sender = normalize_address(unsigned.sender, field="sender")
        if recipient == sender or not self._known_without_code(recipient):
            return None
        gas, max_fee = int(payload["gas"]), int(payload["maxFeePerGas"])
        fee = unsigned.fee_estimate if unsigned.fee_estimate is not None else gas * max_fee
        return BalanceChanges(native=-int(payload["value"]), tokens={}, fee=fee)

    # ------------------------------------------------------------------ fees & simulation

    def estimate_fee(self, unsigned: UnsignedTx) -> int:
        """Expected fee in wei: estimated gas * (next base fee + priority), as of build time.

        The most the transaction can cost is :meth:`max_fee` (gas limit * ``maxFeePerGas``).
        """
        payload = self._payload(unsigned)
        if unsigned.fee_estimate is not None:
            return unsigned.fee_estimate
        base_fee = self._base_fee()
        price = min(int(payload["maxFeePerGas"]), base_fee + int(payload["maxPriorityFeePerGas"]))
        return int(payload["gas"]) * price

    def max_fee(self, unsigned: UnsignedTx) -> int:
        """The most ``unsigned`` can cost in fees: gas limit * ``maxFeePerGas`` (wei)."""
        payload = self._payload(unsigned)
        return int(payload["gas"]) * int(payload["maxFeePerGas"])

    def fee_quote(self, unsigned: UnsignedTx) -> FeeQuote:
        """The most ``unsigned`` can cost in fees, with its factors: gas limit *
        ``maxFeePerGas`` (basis ``"maximum"``). The fee paid is usually lower (gas used *
        effective gas price).

        Raises:
            InvalidInputError: ``unsigned`` was not built by an EVM adapter.
        """
        payload = self._payload(unsigned)
        gas, price = int(payload["gas"]), int(payload["maxFeePerGas"])
        return FeeQuote(gas * price, "maximum", gas_limit=gas, max_fee_per_gas=price)

    def cap_fee(self, unsigned: UnsignedTx, limit: FeeQuote) -> UnsignedTx | None:
        """``unsigned`` with gas limit times ``maxFeePerGas`` held within ``limit.amount``
        (and ``maxFeePerGas`` within ``limit.max_fee_per_gas``), lowering ``maxFeePerGas``
        (and the priority fee with it) when the network's price rose since ``limit`` was
        quoted. ``None`` when even the block's base fee no longer fits: such a transaction
        would wait in the pool, so it is not signed.

        Raises:
            InvalidInputError: ``unsigned`` was not built by an EVM adapter.
        """
        payload = dict(self._payload(unsigned))
        gas = int(payload["gas"])
        max_fee = int(payload["maxFeePerGas"])
        priority = int(payload["maxPriorityFeePerGas"])
        if gas <= 0 or limit.amount < 0:
            return None
        cap = limit.amount // gas
        if limit.max_fee_per_gas is not None:
            cap = min(cap, limit.max_fee_per_gas)
        if max_fee <= cap:
            return unsigned
        base_fee = (max_fee - priority) // 2  # as built: 2 * base fee + priority
        if cap <= base_fee:
            return None
        payload["maxFeePerGas"] = cap
        payload["maxPriorityFeePerGas"] = min(priority, cap - base_fee)
        return dataclasses.replace(unsigned, payload=payload)

    def simulate(self, unsigned: UnsignedTx) -> SimulationResult:
        """Execute ``unsigned`` with ``eth_call`` on the latest state, without committing.

        Reports failure (never raises for chain failures) when the call reverts, when the
        sender cannot pay value + gas * max fee, when the nonce is already used, or when an
        ERC-20 ``transfer``/``approve`` returns ``false``. On success ``fee`` is the gas the
        call uses times the effective gas price, and ``units_consumed`` that gas.

        Raises:
            InvalidInputError: ``unsigned`` was not built by an EVM adapter.
            ChainIdMismatchError: it is for another chain.
        """
        payload = self._payload(unsigned)
        params: dict[str, Any] = {
            "from": unsigned.sender,
            "value": payload["value"],
            "data": payload["data"],
            "gas": payload["gas"],
            "maxFeePerGas": payload["maxFeePerGas"],
            "maxPriorityFeePerGas": payload["maxPriorityFeePerGas"],
        }
        if "to" in payload:
            params["to"] = payload["to"]
        try:
            used = self._call(
                "eth_getTransactionCount",
                lambda: self._backend.nonce(unsigned.sender, "latest"),
            )
            if payload["nonce"] < used:
                raise StaleTransactionError(
                    f"nonce {payload['nonce']} is already used (next is {used}); rebuild",
                    chain=_CHAIN,
                )
            returned = self._eth_call(params)
            data = bytes.fromhex(payload["data"][2:])
            if (
                data[:4] in _TOKEN_RETURNS_BOOL
                and len(returned) == 32
                and int.from_bytes(returned, "big") == 0
            ):
                raise ExecutionRevertedError(
                    "the token returned false", chain=_CHAIN, reason="the token returned false"
                )
            estimate = {k: v for k, v in params.items() if k != "gas"}
            units = self._call("eth_estimateGas", lambda: self._backend.estimate_gas(estimate))
            base_fee = self._base_fee()
        except ChainError as error:
            return SimulationResult(success=False, fee=None, error=error)
        price = min(payload["maxFeePerGas"], base_fee + payload["maxPriorityFeePerGas"])
        return SimulationResult(success=True, fee=units * price, units_consumed=units, logs=())

    # ------------------------------------------------------------------ sign & submit

    def sign(self, unsigned: UnsignedTx, secret: bytes) -> SignedTx:
        """Sign ``unsigned`` with ``secret`` (a 32-byte secp256k1 key, used for this call only).

        Raises:
            InvalidInputError: the payload is malformed, the secret is not a key, or the key
                is not the sender's.
            ChainIdMismatchError: the payload's chain id is not this adapter's.
        """
        payload = self._payload(unsigned)
        if self.address_of(secret) != unsigned.sender:
            raise InvalidInputError("the key does not belong to the sender", field="secret")
        try:
            raw, digest = _sign_dynamic_fee(payload, bytes(secret))
        except Exception as exc:
            raise InvalidInputError(
                f"the transaction cannot be signed: {type(exc).__name__}", field="payload"
            ) from None
        tx_hash = "0x" + digest.hex()
        self._remember_sender(tx_hash, unsigned.sender)
        return SignedTx(chain=_CHAIN, raw=raw, tx_hash=tx_hash, nonce=int(payload["nonce"]))

    def _check_signed(self, signed: SignedTx) -> int:
        """Validate ``signed`` for this chain; return its nonce."""
        if not isinstance(signed, SignedTx) or signed.chain != _CHAIN:
            raise InvalidInputError("expected a SignedTx for an EVM chain", field="signed")
        if not isinstance(signed.raw, bytes | bytearray):
            raise InvalidInputError("signed.raw must be bytes", field="raw")
        if not isinstance(signed.tx_hash, str):
            raise InvalidInputError("signed.tx_hash must be a 0x-hex string", field="tx_hash")
        chain_id, nonce = _decode_raw(bytes(signed.raw))
        if chain_id != self.chain_id:
            raise ChainIdMismatchError(
                f"the transaction is signed for chain id {chain_id}, this adapter is for "
                f"{self.chain_id}; refusing to send it",
                expected=self.chain_id,
                found=chain_id,
            )
        from eth_hash.auto import keccak

        if "0x" + keccak(bytes(signed.raw)).hex() != signed.tx_hash.lower():
            raise InvalidInputError("tx_hash does not match the signed bytes", field="tx_hash")
        return nonce

    def submit(self, signed: SignedTx) -> str:
        """Send the signed bytes; return the transaction hash.

        Idempotent: re-sending bytes the chain already knows (pending or mined) returns the
        same hash and cannot spend twice. A transaction refused for good gives its nonce back
        to the allocator, so later transactions of the sender are not blocked behind a gap.

        Raises:
            ChainIdMismatchError: signed for another chain (checked before sending).
            InsufficientFundsError, ExecutionRevertedError, StaleTransactionError,
            TransientChainError, PermanentChainError: the chain refused it.
        """
        nonce = self._check_signed(signed)
        tx_hash = signed.tx_hash.lower()
        try:
            self._call(
                "eth_sendRawTransaction",
                lambda: self._backend.send_raw(
                    bytes(signed.raw), tx_hash, lambda: self._sender_of(signed)
                ),
            )
        except ChainError as error:
            if self._already_known(tx_hash):
                return tx_hash  # the same bytes were sent before: nothing more to do
            if not isinstance(error, TransientChainError):
                self._nonces.release(self._sender_of(signed), nonce)
            raise
        return tx_hash

    def _already_known(self, tx_hash: str) -> bool:
        """True when the chain holds ``tx_hash`` (mined or pending); False if unsure."""
        try:
            return self._receipt(tx_hash) is not None or self._pool_has(tx_hash)
        except ChainError:
            return False

    # ------------------------------------------------------------------ status

    def get_status(self, signed: SignedTx) -> ChainTxStatus:
        """Where ``signed`` stands: CONFIRMED / FAILED (mined), PENDING (in a pool), DROPPED
        (its nonce was used by another transaction) or NOT_FOUND.

        A FAILED status carries the fee paid and an ``ExecutionRevertedError`` whose reason
        comes from replaying the call on the parent block (``"out of gas"`` when it used all
        its gas).

        Raises:
            InvalidInputError: ``signed`` is not a well-formed EVM transaction.
            ChainIdMismatchError: it is signed for another chain.
            ChainError: the node failed (transient errors may be retried).
        """
        nonce = self._check_signed(signed)
        return self._status(signed, nonce, self._receipt(signed.tx_hash.lower()))

    def _status(self, signed: SignedTx, nonce: int, receipt: Receipt | None) -> ChainTxStatus:
        tx_hash = signed.tx_hash.lower()
        if receipt is None:
            if self._pool_has(tx_hash):
                return ChainTxStatus(state=ChainTxState.PENDING)
            sender = self._sender_of(signed)
            used = self._call(
                "eth_getTransactionCount", lambda: self._backend.nonce(sender, "latest")
            )
            if used <= nonce:
                return ChainTxStatus(state=ChainTxState.NOT_FOUND)
            receipt = self._receipt(tx_hash)  # it may have been mined meanwhile
            if receipt is None:
                return ChainTxStatus(
                    state=ChainTxState.DROPPED,
                    error=StaleTransactionError(
                        f"nonce {nonce} was used by another transaction", chain=_CHAIN
                    ),
                )
        if receipt.status == 1:
            return ChainTxStatus(
                state=ChainTxState.CONFIRMED,
                fee=receipt.fee,
                block=receipt.block,
                logs=receipt.logs,
            )
        reason = self._failure_reason(tx_hash, receipt)
        return ChainTxStatus(
            state=ChainTxState.FAILED,
            fee=receipt.fee,
            block=receipt.block,
            logs=receipt.logs,
            error=ExecutionRevertedError(
                f"the transaction reverted on chain: {reason}"
                if reason
                else "the transaction reverted on chain",
                chain=_CHAIN,
                reason=reason,
            ),
        )

    def _failure_reason(self, tx_hash: str, receipt: Receipt) -> str | None:
        """Replay a failed transaction on its parent block to learn the revert reason."""
        try:
            tx = self._call("eth_getTransactionByHash", lambda: self._backend.transaction(tx_hash))
        except ChainError:
            return None
        if tx is None:
            return None
        if receipt.gas_used >= tx.gas:
            return "out of gas"
        params: dict[str, Any] = {
            "from": tx.sender,
            "value": tx.value,
            "data": "0x" + tx.data.hex(),
            "gas": tx.gas,
        }
        if tx.to is not None:
            params["to"] = tx.to
        try:
            self._eth_call(params, max(receipt.block - 1, 0))
        except ExecutionRevertedError as error:
            return error.reason
        except ChainError:
            return None
        return None

    def wait_for_confirmation(self, signed: SignedTx, timeout: float = 30.0) -> ChainTxStatus:
        """Poll until ``signed`` is CONFIRMED, FAILED or DROPPED, or ``timeout`` seconds pass.

        Polls the receipt every few milliseconds at first, backing off to the adapter's
        maximum interval; the full :meth:`get_status` check (pool, replaced nonce) runs on
        every fourth poll and at the deadline. Transient node failures while polling are
        retried until the deadline.

        Returns:
            The final status, or the last one read (PENDING or NOT_FOUND) at the deadline.

        Raises:
            InvalidInputError: ``timeout`` is negative or not a number; ``signed`` is malformed.
            ChainIdMismatchError: ``signed`` is for another chain.
            TransientChainError: the node never answered before the deadline.
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise InvalidInputError(
                "timeout must be a non-negative number of seconds", field="timeout"
            )
        nonce = self._check_signed(signed)
        tx_hash = signed.tx_hash.lower()
        deadline = time.monotonic() + timeout
        interval = self._poll_interval
        last: ChainTxStatus | None = None
        last_error: TransientChainError | None = None
        polls = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                receipt = self._receipt(tx_hash)
                if receipt is not None or polls % 4 == 3 or remaining <= 0:
                    last = self._status(signed, nonce, receipt)
                    if last.state in _FINAL_STATES:
                        return last
            except TransientChainError as error:
                last_error = error
            polls += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if last is None:
                    if last_error is not None:
                        raise last_error
                    last = self._status(signed, nonce, None)
                return last
            time.sleep(min(interval, remaining))
            interval = min(interval * 1.5, self._max_poll_interval)

    # ------------------------------------------------------------------ balances

    def get_balance(self, address: str) -> int:
        """Native balance of ``address`` in wei (latest block)."""
        address = normalize_address(address)
        return self._call("eth_getBalance", lambda: self._backend.balance(address))

    def get_token_balance(self, address: str, token: str) -> int:
        """ERC-20 ``balanceOf(address)`` of ``token``, in the token's base units.

        Raises:
            InvalidAddressError: a bad address.
            InvalidInputError: ``token`` is not an ERC-20 contract.
        """
        owner = normalize_address(address)
        token_address = normalize_address(token, field="token")
        data = encode_call(SELECTOR_BALANCE_OF, ["address"], [owner])
        raw = self._eth_call({"to": token_address, "data": "0x" + data.hex()})
        try:
            return decode_uint(raw)
        except ValueError:
            raise InvalidInputError(
                f"{token_address} does not answer balanceOf() like an ERC-20 token",
                field="token",
            ) from None


class EvmDevAdapter(EvmAdapter):
    """An :class:`EvmAdapter` on a test chain, with :class:`~waiaas.chains.base.LocalChainControl`.

    On eth-tester, :meth:`fund` sends from a prefunded account; on anvil it uses
    ``anvil_setBalance``. Test tokens (the bundled ``TestToken`` ERC-20) are deployed and
    minted by a deployer key the adapter generates and funds itself.
    """

    _DEPLOYER_FUNDS: Final = 10**21

    def __init__(self, backend: Backend, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self._control_lock = threading.RLock()
        self._deployer: tuple[bytes, str] | None = None

    @property
    def test_authority(self) -> str:
        """The address that deploys and owns (so alone can mint) the test tokens.

        The key behind it is generated and funded on first use and never leaves the adapter.
        """
        return self._deployer_key()[1]

    def fund(self, address: str, amount: int) -> None:
        """Add ``amount`` wei to ``address``'s balance.

        Raises:
            InvalidAddressError / InvalidInputError: bad address or amount.
            ChainError: the chain refused (e.g. ``anvil_setBalance`` on a node that is not
                anvil).
        """
        target = normalize_address(address)
        amount = self._uint(amount, "amount")
        if amount == 0:
            return
        backend = self._backend
        with self._control_lock:
            if isinstance(backend, TesterBackend):
                self._call("fund", lambda: backend.faucet_fund(target, amount))
            elif isinstance(backend, HttpBackend):
                balance = self.get_balance(target)
                self._call(
                    "anvil_setBalance", lambda: backend.set_balance(target, balance + amount)
                )
            else:  # pragma: no cover - only the two shipped backends exist
                raise PermanentChainError("this backend cannot fund accounts", chain=_CHAIN)

    def _deployer_key(self) -> tuple[bytes, str]:
        with self._control_lock:
            if self._deployer is None:
                secret, address = self.generate_secret()
                self.fund(address, self._DEPLOYER_FUNDS)
                self._deployer = (secret, address)
            return self._deployer

    def _send_as_deployer(self, to: str | None, data: bytes) -> Receipt:
        secret, address = self._deployer_key()
        unsigned = self._prepare(address, to, 0, data, nonce=None)
        signed = self.sign(unsigned, secret)
        self.submit(signed)
        status = self.wait_for_confirmation(signed, timeout=60.0)
        if status.state is not ChainTxState.CONFIRMED:
            raise status.error or PermanentChainError(
                f"the deployer transaction ended {status.state}", chain=_CHAIN
            )
        receipt = self._receipt(signed.tx_hash)
        if receipt is None:  # pragma: no cover - a confirmed status was read from a receipt
            raise TransientChainError("the receipt vanished", chain=_CHAIN)
        return receipt

    def create_test_token(self, decimals: int = 6) -> str:
        """Deploy a fresh ``TestToken`` ERC-20 with ``decimals``; return its EIP-55 address.

        Raises:
            InvalidInputError: ``decimals`` is not an integer from 0 to 255.
        """
        if not _is_int(decimals) or not 0 <= decimals <= 255:
            raise InvalidInputError("decimals must be an integer from 0 to 255", field="decimals")
        artifact = bundled_token_artifact()
        data = artifact.constructor_data(
            ["string", "string", "uint8"], ["Test Token", "TEST", decimals]
        )
        receipt = self._send_as_deployer(None, data)
        if receipt.contract_address is None:
            raise PermanentChainError("the deployment created no contract", chain=_CHAIN)
        address = normalize_address(receipt.contract_address)
        self._contracts.add(address)
        self._decimals[address] = decimals
        return address

    def mint_test_token(self, token: str, to: str, amount: int) -> None:
        """Mint ``amount`` base units of a token made by :meth:`create_test_token` to ``to``.

        Raises:
            InvalidAddressError / InvalidInputError: bad address or amount.
            ExecutionRevertedError: the token was not created by this adapter.
        """
        token_address = normalize_address(token, field="token")
        recipient = normalize_address(to, field="to")
        amount = self._uint(amount, "amount")
        self._send_as_deployer(
            token_address, encode_call(SELECTOR_MINT, ["address", "uint256"], [recipient, amount])
        )


class _EvmLookup:
    """The :class:`waiaas.plan.AccountLookup` of an :class:`EvmAdapter` (reads the chain)."""

    def __init__(self, adapter: EvmAdapter) -> None:
        self._adapter = adapter

    def token_account(self, address: str) -> tuple[str, str] | None:
        """Always ``None``: EVM tokens have no separate token accounts."""
        return None

    def is_contract(self, address: str) -> bool | None:
        """Whether ``address`` holds code now (positive answers are cached: code stays)."""
        adapter = self._adapter
        try:
            normalized = normalize_address(address)
        except InvalidInputError:
            return None
        if normalized in adapter._contracts:
            return True
        if adapter._known_without_code(normalized):
            return False
        code = adapter._call("eth_getCode", lambda: adapter._backend.code(normalized))
        if code:
            adapter._contracts.add(normalized)
        return bool(code)
