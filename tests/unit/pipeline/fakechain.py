"""An in-memory chain for the pipeline's stage tests: no node, no process, microseconds a call.

:class:`FakeChain` implements the :class:`waiaas.chains.base.ChainAdapter` port, account
nonces (:class:`~waiaas.chains.base.SupportsNonces`) and its native coin;
:class:`PlannedFakeChain` shows its plans too (:class:`~waiaas.chains.base.SupportsPlans`).
Keys are
ed25519; an address is the EIP-55 form of the last 20 bytes of SHA-256 of the public key.
Signed bytes are ``public key || signature || canonical JSON body``; the hash is SHA-256 of
the bytes, so it is known before submission and the same bytes always have the same hash.

The chain checks every signature, charges a fixed fee, consumes the sender's nonce, and runs
one hash at most once (re-sending the same bytes is harmless, as on a real chain). Like a
recent blockhash, an ``epoch`` is built into every transaction: bytes of an older epoch can
never land (submitting them is stale; their status is DROPPED).

Tests steer it on demand:

* ``refuse``: the next n submissions are refused for good (``PermanentChainError``);
* ``transient``: the next n submissions fail as a node outage (``TransientChainError``);
* ``stale``: the next n submissions find the epoch moved on (``StaleTransactionError``);
* ``hold``: submitted transactions stay PENDING (a confirmation that times out) until
  :meth:`FakeChain.mine`.

``submissions`` counts every ``submit`` call per hash (refused ones included), so a test can
prove that bytes were never sent twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from waiaas.chains.base import (
    ChainTxState,
    ChainTxStatus,
    NativeAsset,
    SignedTx,
    SimulationResult,
    UnsignedTx,
)
from waiaas.errors import (
    InvalidAddressError,
    InvalidInputError,
    PermanentChainError,
    StaleTransactionError,
    TransientChainError,
)
from waiaas.plan import AccountLookup, EvmPlan, plan_digest
from waiaas.policy.addresses import to_checksum_address
from waiaas.types import Request, Transfer

CHAIN = "fake"
NETWORK = "local"
CHAIN_ID = 4242
FEE = 21  # native base units per transaction, charged whether it succeeds or not

_HEX = frozenset("0123456789abcdefABCDEF")


def address_of_key(verify_key: bytes) -> str:
    """The fake chain's address of an ed25519 public key."""
    return to_checksum_address("0x" + hashlib.sha256(verify_key).digest()[-20:].hex())


def new_address() -> str:
    """A fresh address nobody holds the key of (a recipient)."""
    return address_of_key(os.urandom(32))


@dataclass(frozen=True)
class _Decoded:
    sender: str
    to: str
    value: int
    nonce: int
    epoch: int


class FakeChain:
    """The in-memory chain and its adapter in one object (see the module docstring)."""

    chain = CHAIN
    network = NETWORK
    chain_id = CHAIN_ID
    native_asset = NativeAsset("FAKE", 6)

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self.nonces: dict[str, int] = {}
        self.epoch = 0
        self.executed: dict[str, bool] = {}  # hash -> succeeded
        self.pending: dict[str, _Decoded] = {}  # accepted, not executed yet (``hold``)
        self.submissions: Counter[str] = Counter()
        self.sent: dict[str, bytes] = {}  # hash -> the bytes first submitted under it
        self.refuse = 0
        self.transient = 0
        self.stale = 0
        self.hold = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the port

    def validate_address(self, address: str) -> str:
        text = address.strip() if isinstance(address, str) else ""
        body = text[2:]
        if not text.startswith("0x") or len(body) != 40 or not set(body) <= _HEX:
            shown = str(address)[:60]
            raise InvalidAddressError(
                f"not a fake-chain address: {shown!r}", chain=CHAIN, address=shown
            )
        try:
            return to_checksum_address(text)
        except InvalidInputError as exc:
            raise InvalidAddressError(exc.message, chain=CHAIN, address=text) from None

    def generate_secret(self) -> tuple[bytes, str]:
        secret = os.urandom(32)
        return secret, self.address_of(secret)

    def address_of(self, secret: bytes) -> str:
        return address_of_key(bytes(SigningKey(bytes(secret)).verify_key))

    def build(self, request: Request, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        if not isinstance(request, Transfer):
            raise InvalidInputError(f"the fake chain cannot express {request.type}", field="type")
        source = self.validate_address(sender)
        number = self.pending_nonce(source) if nonce is None else nonce
        payload = {
            "from": source,
            "to": self.validate_address(request.to),
            "value": request.amount,
            "nonce": number,
            "epoch": self.epoch,
        }
        return UnsignedTx(
            chain=CHAIN, sender=source, payload=payload, nonce=number, fee_estimate=FEE
        )

    def estimate_fee(self, unsigned: UnsignedTx) -> int:
        return FEE

    def simulate(self, unsigned: UnsignedTx) -> SimulationResult:
        spent = int(unsigned.payload["value"]) + FEE
        with self._lock:
            ok = self.balances.get(unsigned.sender, 0) >= spent
        return SimulationResult(success=ok, fee=FEE)

    def sign(self, unsigned: UnsignedTx, secret: bytes) -> SignedTx:
        key = SigningKey(bytes(secret))
        if address_of_key(bytes(key.verify_key)) != unsigned.sender:
            raise InvalidInputError("not the sender's key", field="secret")
        body = json.dumps(unsigned.payload, sort_keys=True, separators=(",", ":")).encode()
        raw = bytes(key.verify_key) + key.sign(body).signature + body
        return SignedTx(
            chain=CHAIN,
            raw=raw,
            tx_hash="0x" + hashlib.sha256(raw).hexdigest(),
            nonce=unsigned.nonce,
        )

    def submit(self, signed: SignedTx) -> str:
        tx = self._decode(signed)
        with self._lock:
            self.submissions[signed.tx_hash] += 1
            self.sent.setdefault(signed.tx_hash, signed.raw)
            if signed.tx_hash in self.executed or signed.tx_hash in self.pending:
                return signed.tx_hash  # the same bytes again: nothing new happens
            if self.transient > 0:
                self.transient -= 1
                raise TransientChainError("node unavailable (injected)", chain=CHAIN)
            if self.refuse > 0:
                self.refuse -= 1
                raise PermanentChainError("refused by the node (injected)", chain=CHAIN)
            if self.stale > 0:
                self.stale -= 1
                self.epoch += 1
            if tx.epoch < self.epoch or tx.nonce < self.nonces.get(tx.sender, 0):
                raise StaleTransactionError("built in an older epoch or nonce", chain=CHAIN)
            if tx.nonce > self.nonces.get(tx.sender, 0):
                raise PermanentChainError("nonce gap", chain=CHAIN)
            self.nonces[tx.sender] = tx.nonce + 1
            if self.hold:
                self.pending[signed.tx_hash] = tx
            else:
                self._execute(signed.tx_hash, tx)
        return signed.tx_hash

    def get_status(self, signed: SignedTx) -> ChainTxStatus:
        tx = self._decode(signed)
        with self._lock:
            done = self.executed.get(signed.tx_hash)
            if done is not None:
                if done:
                    return ChainTxStatus(ChainTxState.CONFIRMED, fee=FEE)
                failed = PermanentChainError("insufficient funds on chain", chain=CHAIN)
                return ChainTxStatus(ChainTxState.FAILED, fee=FEE, error=failed)
            if signed.tx_hash in self.pending:
                return ChainTxStatus(ChainTxState.PENDING)
            if tx.epoch < self.epoch or tx.nonce < self.nonces.get(tx.sender, 0):
                return ChainTxStatus(ChainTxState.DROPPED)  # can never land now
            return ChainTxStatus(ChainTxState.NOT_FOUND)

    def wait_for_confirmation(self, signed: SignedTx, timeout: float = 30.0) -> ChainTxStatus:
        return self.get_status(signed)  # never waits: a held transaction stays PENDING

    def get_balance(self, address: str) -> int:
        with self._lock:
            return self.balances.get(address, 0)

    def get_token_balance(self, address: str, token: str) -> int:
        return 0

    # ------------------------------------------------------------------ nonces

    def pending_nonce(self, address: str) -> int:
        with self._lock:
            return self.nonces.get(address, 0)

    # ------------------------------------------------------------------ test controls

    def fund(self, address: str, amount: int) -> None:
        with self._lock:
            self.balances[address] = self.balances.get(address, 0) + amount

    def mine(self) -> None:
        """Execute every held transaction (in the order they were submitted)."""
        with self._lock:
            held, self.pending = self.pending, {}
            for tx_hash, tx in held.items():
                self._execute(tx_hash, tx)

    def landed(self) -> list[str]:
        """The hashes that executed successfully."""
        with self._lock:
            return [h for h, ok in self.executed.items() if ok]

    # ------------------------------------------------------------------ internals

    def _execute(self, tx_hash: str, tx: _Decoded) -> None:
        """Run one transaction (the lock is held): the fee is paid either way."""
        held = self.balances.get(tx.sender, 0)
        ok = held >= tx.value + FEE
        if ok:
            self.balances[tx.sender] = held - tx.value - FEE
            self.balances[tx.to] = self.balances.get(tx.to, 0) + tx.value
        else:
            self.balances[tx.sender] = max(0, held - FEE)
        self.executed[tx_hash] = ok

    @staticmethod
    def _decode(signed: SignedTx) -> _Decoded:
        raw = signed.raw
        if not isinstance(raw, bytes) or len(raw) < 96:
            raise InvalidInputError("not fake-chain bytes", field="raw")
        key, signature, body = raw[:32], raw[32:96], raw[96:]
        try:
            VerifyKey(key).verify(body, signature)
        except BadSignatureError:
            raise InvalidInputError("bad signature", field="raw") from None
        data: dict[str, Any] = json.loads(body)
        if address_of_key(key) != data["from"]:
            raise InvalidInputError("signed by another key than the sender's", field="raw")
        return _Decoded(
            sender=str(data["from"]),
            to=str(data["to"]),
            value=int(data["value"]),
            nonce=int(data["nonce"]),
            epoch=int(data["epoch"]),
        )


class PlannedFakeChain(FakeChain):
    """:class:`FakeChain` that also shows its plans (:class:`~waiaas.chains.base.SupportsPlans`):
    a transfer's plan is an ``EvmPlan`` with no calldata, so the pipeline digests and judges
    exactly what is signed, and refuses bytes of another plan.

    ``skim``: a dishonest adapter, adding that many base units to every transfer it builds
    with a nonce (for signing) but not to the one built without (judged at admission).
    """

    skim = 0

    def build(self, request: Request, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        unsigned = super().build(request, sender, nonce=nonce)
        if nonce is None or not self.skim:
            return unsigned
        payload = {**unsigned.payload, "value": unsigned.payload["value"] + self.skim}
        return dataclasses.replace(unsigned, payload=payload)

    def plan_of(self, unsigned: UnsignedTx) -> EvmPlan:
        p = unsigned.payload
        return self._plan(str(p["from"]), str(p["to"]), int(p["value"]))

    def plan_of_signed(self, signed: SignedTx) -> EvmPlan:
        tx = self._decode(signed)
        return self._plan(tx.sender, tx.to, tx.value)

    def account_lookup(self) -> AccountLookup | None:
        return None

    def plan_digest_of(self, tx_hash: str) -> str:
        """The plan digest of the bytes submitted under ``tx_hash``."""
        signed = SignedTx(chain=CHAIN, raw=self.sent[tx_hash], tx_hash=tx_hash)
        return plan_digest(self.plan_of_signed(signed))

    @staticmethod
    def _plan(sender: str, to: str, value: int) -> EvmPlan:
        return EvmPlan(
            network=NETWORK, chain_id=CHAIN_ID, sender=sender, to=to, value=value, data=b""
        )
