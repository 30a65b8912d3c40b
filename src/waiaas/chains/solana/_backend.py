"""The small internal port between :class:`SolanaAdapter` and where transactions really run.

Two implementations: :mod:`._litesvm` (an in-process LiteSVM) and :mod:`._rpc` (a node over
JSON-RPC). Both raise only waiaas ``ChainError`` subclasses, built by :mod:`.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from waiaas.chains.solana.errors import TransactionErrorJson, TxContext

LAMPORTS_PER_SIGNATURE = 5000
"""The base fee per signature on every Solana cluster."""


@dataclass(frozen=True)
class AccountData:
    """An account as the chain stores it."""

    lamports: int
    owner: Pubkey
    data: bytes
    executable: bool


@dataclass(frozen=True)
class LatestBlockhash:
    """A recent blockhash, the last block height at which it is accepted, and the slot the
    node was at when it answered (each when known)."""

    blockhash: Hash
    last_valid_block_height: int | None
    slot: int | None = None


@dataclass(frozen=True)
class SimOutcome:
    """A simulation: the error in JSON form (``None`` on success), logs and compute used."""

    err: TransactionErrorJson | None
    logs: tuple[str, ...]
    units_consumed: int | None


@dataclass(frozen=True)
class TxRecord:
    """A transaction the chain knows about.

    Attributes:
        err: its error in JSON form, ``None`` when it succeeded.
        final: True once it reached the adapter's commitment level.
        slot: the slot it landed in, when known.
        fee: the fee charged, when known.
        logs: program logs, when known.
    """

    err: TransactionErrorJson | None
    final: bool
    slot: int | None = None
    fee: int | None = None
    logs: tuple[str, ...] = ()


class SendResult(Enum):
    """What happened to a submitted transaction."""

    SENT = "sent"
    ALREADY_PROCESSED = "already_processed"


class SolanaBackend(Protocol):
    """Where transactions run. Every method raises only ``waiaas.errors.ChainError``."""

    @property
    def description(self) -> str:
        """A short, secret-free description for reprs (``"litesvm"``, ``"rpc https://..."``)."""
        ...

    def latest_blockhash(self) -> LatestBlockhash:
        """A blockhash new transactions can use."""
        ...

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        """Whether a transaction with this blockhash can still land."""
        ...

    def get_account(self, pubkey: Pubkey) -> AccountData | None:
        """The account, or ``None`` when it does not exist."""
        ...

    def get_balance(self, pubkey: Pubkey) -> int:
        """Lamports held by ``pubkey`` (0 when the account does not exist)."""
        ...

    def get_accounts(self, pubkeys: Sequence[Pubkey]) -> list[AccountData | None]:
        """Several accounts at once, in order (``None`` for missing ones)."""
        ...

    def simulate_accounts(
        self, tx: VersionedTransaction, pubkeys: Sequence[Pubkey], *, context: TxContext
    ) -> tuple[SimOutcome, list[AccountData | None] | None]:
        """Execute without committing (signatures not checked); return the outcome and the
        state of ``pubkeys`` after it (``None`` when the transaction failed)."""
        ...

    def get_token_amount(self, token_account: Pubkey) -> int | None:
        """Base units in a token account, ``None`` when the account does not exist."""
        ...

    def rent_exempt_minimum(self, size: int) -> int:
        """Lamports an account of ``size`` data bytes needs to be rent-exempt."""
        ...

    def fee_for_message(self, message: MessageV0) -> int:
        """The fee the cluster charges for ``message``; stale error if its blockhash expired."""
        ...

    def simulate(
        self, tx: VersionedTransaction, *, sig_verify: bool, context: TxContext
    ) -> SimOutcome:
        """Execute without committing."""
        ...

    def send(self, tx: VersionedTransaction, *, preflight: bool, context: TxContext) -> SendResult:
        """Submit signed bytes; ``ALREADY_PROCESSED`` when this very transaction already landed."""
        ...

    def get_transaction(self, signature: Signature) -> TxRecord | None:
        """What the chain knows about a signature, ``None`` when nothing."""
        ...

    def history_floor(self) -> int | None:
        """The lowest slot whose transaction statuses the node can still report (its
        ``minimumLedgerSlot``), ``None`` when it cannot say. A signature the node does not
        know is proven absent only for slots at or above this floor."""
        ...

    def airdrop(self, pubkey: Pubkey, lamports: int) -> None:
        """Create ``lamports`` for ``pubkey`` (test chains only); returns once final."""
        ...

    def close(self) -> None:
        """Release connections; the backend is unusable afterwards."""
        ...


def priority_fee(message: MessageV0) -> int:
    """The prioritisation fee in lamports set by the message's compute-budget instructions.

    ``ceil(compute_unit_price * compute_unit_limit / 1_000_000)``; without an explicit limit the
    cluster default of 200,000 units per non-compute-budget instruction (at most 1,400,000).
    """
    keys = message.account_keys
    price = 0
    limit: int | None = None
    others = 0
    for ix in message.instructions:
        program = str(keys[ix.program_id_index])
        data = bytes(ix.data)
        if program == "ComputeBudget111111111111111111111111111111" and data:
            if data[0] == 2 and len(data) >= 5:
                limit = int.from_bytes(data[1:5], "little")
            elif data[0] == 3 and len(data) >= 9:
                price = int.from_bytes(data[1:9], "little")
        else:
            others += 1
    if price == 0:
        return 0
    units = limit if limit is not None else min(200_000 * others, 1_400_000)
    return -(-price * units // 1_000_000)


def message_fee(message: MessageV0) -> int:
    """Base fee (per signature) plus prioritisation fee, in lamports."""
    signatures = message.header.num_required_signatures
    return LAMPORTS_PER_SIGNATURE * signatures + priority_fee(message)
