"""The in-process backend: a real Solana runtime (``solders.litesvm.LiteSVM``) in this process.

LiteSVM executes transactions synchronously, so a transaction is final as soon as it is sent.
Two things differ from a cluster and are handled here:

* LiteSVM's blockhash never advances by itself, so two identical transfers would produce the
  same signature and the second would be refused as ``AlreadyProcessed``. This backend
  starts a new block lazily: the first time a blockhash is asked for after a transaction
  landed on the current one.
* LiteSVM knows only its latest blockhash: after one ``expire_blockhash()`` every earlier one
  is refused, where a cluster accepts a blockhash for about 150 blocks. This backend turns
  LiteSVM's own check off (``with_blockhash_check(False)``, on the ``svm`` it is given too)
  and checks itself, as a cluster does: a blockhash stays valid for :data:`VALID_BLOCKS`
  blocks, so transactions built concurrently (parallel agents, a presigned request and a
  claim) do not expire each other. A caller that expires the runtime's blockhash directly
  (``svm.expire_blockhash()``, as tests do to make a transaction stale) expires every
  earlier blockhash at once, as before.
* A node simulates before accepting a transaction ("preflight") and refuses failing ones
  without charging a fee. With ``preflight=True`` (the default) this backend does the same.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from waiaas.chains.solana import spl
from waiaas.chains.solana._backend import (
    AccountData,
    LatestBlockhash,
    SendResult,
    SimOutcome,
    TxRecord,
    message_fee,
)
from waiaas.chains.solana._fpu import leave_mmx_state
from waiaas.chains.solana.errors import (
    TxContext,
    is_already_processed,
    map_transaction_error,
    transaction_error_to_json,
)

VALID_BLOCKS = 150
"""Blocks a blockhash stays valid for (a cluster's ``MAX_PROCESSING_AGE``)."""

# What a cluster's simulation answers for a transaction whose blockhash expired.
_STALE = SimOutcome(err="BlockhashNotFound", logs=(), units_consumed=0)


class LiteSVMBackend:
    """A backend over one LiteSVM instance; every call holds one lock (LiteSVM is not shared-safe).

    Args:
        svm: the runtime to use; a fresh ``LiteSVM()`` when ``None``.
    """

    def __init__(self, svm: LiteSVM | None = None) -> None:
        self._svm = svm if svm is not None else LiteSVM()
        self._svm.with_blockhash_check(False)  # checked here, with a cluster's window
        self._lock = threading.RLock()
        self._blockhash_used = False
        self._height = 0
        # valid blockhashes -> the block (counted here) that started with each
        self._recent: dict[Hash, int] = {}
        self._latest = self._svm.latest_blockhash()
        self._recent[self._latest] = self._height

    @property
    def svm(self) -> LiteSVM:
        """The underlying runtime (for tests that need to drive it directly)."""
        return self._svm

    @property
    def description(self) -> str:
        return "litesvm"

    def _note_landed(self, blockhash: Hash) -> None:
        if blockhash == self._svm.latest_blockhash():
            self._blockhash_used = True

    def _synced(self) -> Hash:
        """The runtime's latest blockhash; if it was expired behind this backend's back
        (``svm.expire_blockhash()``), every earlier blockhash expires with it."""
        latest = self._svm.latest_blockhash()
        if latest != self._latest:
            self._height += 1
            self._recent = {latest: self._height}
            self._latest = latest
            self._blockhash_used = False
        return latest

    def _new_block(self) -> None:
        """A new block: a new latest blockhash; those older than VALID_BLOCKS expire."""
        self._svm.expire_blockhash()
        self._height += 1
        self._latest = self._svm.latest_blockhash()
        self._recent[self._latest] = self._height
        floor = self._height - VALID_BLOCKS
        for blockhash, height in list(self._recent.items()):
            if height <= floor:
                del self._recent[blockhash]
        self._blockhash_used = False

    def latest_blockhash(self) -> LatestBlockhash:
        with self._lock:
            self._synced()
            if self._blockhash_used:
                self._new_block()
            return LatestBlockhash(self._latest, None, self._svm.get_clock().slot)

    def history_floor(self) -> int | None:
        # The runtime lives in this process and keeps the statuses of what it ran (up to
        # LiteSVM's history capacity, far beyond what a test or a demo sends).
        return 0

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        with self._lock:
            self._synced()
            return blockhash in self._recent

    def get_account(self, pubkey: Pubkey) -> AccountData | None:
        with self._lock:
            account = self._svm.get_account(pubkey)
        if account is None or (account.lamports == 0 and not account.data):
            return None
        return AccountData(
            lamports=account.lamports,
            owner=account.owner,
            data=bytes(account.data),
            executable=account.executable,
        )

    def get_balance(self, pubkey: Pubkey) -> int:
        with self._lock:
            return self._svm.get_balance(pubkey) or 0

    def get_accounts(self, pubkeys: Sequence[Pubkey]) -> list[AccountData | None]:
        with self._lock:
            return [self.get_account(key) for key in pubkeys]

    def simulate_accounts(
        self, tx: VersionedTransaction, pubkeys: Sequence[Pubkey], *, context: TxContext
    ) -> tuple[SimOutcome, list[AccountData | None] | None]:
        with self._lock:
            if not self.is_blockhash_valid(tx.message.recent_blockhash):
                return _STALE, None
            before = self._svm.get_sigverify()
            self._svm.with_sigverify(False)
            try:
                result = self._svm.simulate_transaction(tx)
            finally:
                leave_mmx_state()  # the JIT leaves MMX on (see _fpu)
                self._svm.with_sigverify(before)
            if isinstance(result, FailedTransactionMetadata):
                meta = result.meta()
                outcome = SimOutcome(
                    err=transaction_error_to_json(result.err()),
                    logs=tuple(meta.logs()),
                    units_consumed=meta.compute_units_consumed(),
                )
                return outcome, None
            meta = result.meta()
            outcome = SimOutcome(
                err=None, logs=tuple(meta.logs()), units_consumed=meta.compute_units_consumed()
            )
            post = dict(result.post_accounts())
            out: list[AccountData | None] = []
            for key in pubkeys:
                account = post.get(key)
                if account is None:
                    out.append(self.get_account(key))  # not written by the transaction
                elif account.lamports == 0 and not account.data:
                    out.append(None)  # closed / emptied
                else:
                    out.append(
                        AccountData(
                            lamports=account.lamports,
                            owner=account.owner,
                            data=bytes(account.data),
                            executable=account.executable,
                        )
                    )
            return outcome, out

    def get_token_amount(self, token_account: Pubkey) -> int | None:
        account = self.get_account(token_account)
        if account is None:
            return None
        return spl.parse_token_account(account.data).amount

    def rent_exempt_minimum(self, size: int) -> int:
        with self._lock:
            return self._svm.minimum_balance_for_rent_exemption(size)

    def fee_for_message(self, message: MessageV0) -> int:
        if not self.is_blockhash_valid(message.recent_blockhash):
            raise map_transaction_error("BlockhashNotFound")
        return message_fee(message)

    def simulate(
        self, tx: VersionedTransaction, *, sig_verify: bool, context: TxContext
    ) -> SimOutcome:
        with self._lock:
            if not self.is_blockhash_valid(tx.message.recent_blockhash):
                return _STALE
            before = self._svm.get_sigverify()
            self._svm.with_sigverify(sig_verify)
            try:
                result = self._svm.simulate_transaction(tx)
            finally:
                leave_mmx_state()  # the JIT leaves MMX on (see _fpu)
                self._svm.with_sigverify(before)
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            return SimOutcome(
                err=transaction_error_to_json(result.err()),
                logs=tuple(meta.logs()),
                units_consumed=meta.compute_units_consumed(),
            )
        meta = result.meta()
        return SimOutcome(
            err=None, logs=tuple(meta.logs()), units_consumed=meta.compute_units_consumed()
        )

    def send(self, tx: VersionedTransaction, *, preflight: bool, context: TxContext) -> SendResult:
        signature = tx.signatures[0]
        with self._lock:
            if not self.is_blockhash_valid(tx.message.recent_blockhash):
                raise map_transaction_error("BlockhashNotFound", context=context)
            if preflight:
                try:
                    sim = self._svm.simulate_transaction(tx)
                finally:
                    leave_mmx_state()
                if isinstance(sim, FailedTransactionMetadata):
                    err = transaction_error_to_json(sim.err())
                    if is_already_processed(err):
                        return SendResult.ALREADY_PROCESSED
                    raise map_transaction_error(err, logs=sim.meta().logs(), context=context)
            try:
                result = self._svm.send_transaction(tx)
            finally:
                leave_mmx_state()
            if isinstance(result, FailedTransactionMetadata):
                err = transaction_error_to_json(result.err())
                if is_already_processed(err):
                    return SendResult.ALREADY_PROCESSED
                if self._svm.get_transaction(signature) is None:
                    # Refused before execution (stale blockhash, bad signature, no fee payer...).
                    raise map_transaction_error(err, logs=result.meta().logs(), context=context)
                # Otherwise it landed and failed, fee charged: get_status reports FAILED.
            self._note_landed(tx.message.recent_blockhash)
            return SendResult.SENT

    def get_transaction(self, signature: Signature) -> TxRecord | None:
        with self._lock:
            result = self._svm.get_transaction(signature)
        if result is None:
            return None
        if isinstance(result, TransactionMetadata):
            return TxRecord(err=None, final=True, fee=result.fee(), logs=tuple(result.logs()))
        meta = result.meta()
        return TxRecord(
            err=transaction_error_to_json(result.err()),
            final=True,
            fee=meta.fee(),
            logs=tuple(meta.logs()),
        )

    def airdrop(self, pubkey: Pubkey, lamports: int) -> None:
        with self._lock:
            self._synced()
            if self._blockhash_used:
                self._new_block()
            try:
                result = self._svm.airdrop(pubkey, lamports)
            finally:
                leave_mmx_state()
            self._blockhash_used = True
        if isinstance(result, FailedTransactionMetadata):
            raise map_transaction_error(result.err(), logs=result.meta().logs())

    def close(self) -> None:
        """Nothing to release: the runtime lives as long as this object."""
