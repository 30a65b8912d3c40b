"""The Solana chain adapter: builds, simulates, signs, submits and confirms every request type.

Two backends run the transactions: an in-process LiteSVM (:meth:`SolanaAdapter.local`) and
a node over JSON-RPC (:meth:`SolanaAdapter.rpc`). Both map every failure through
:mod:`waiaas.chains.solana.errors`.

What each request becomes (one v0 transaction, the agent is the only signer and fee payer):

* ``Transfer``: a System ``transfer``, plus a Memo v2 instruction when ``memo`` is set.
* ``TokenTransfer``: SPL ``transfer_checked`` from the agent's associated token account to
  the recipient's. When the recipient has no associated token account yet, an ATA
  ``CreateIdempotent`` instruction is added first and **the sending agent pays its rent**
  (about 0.00204 SOL for a Token account). Token and Token-2022 mints are both supported; the
  program is read from the mint account's owner.
* ``ContractCall``: one instruction to program ``to`` with ``accounts`` and ``data``.
  ``value`` must be 0 (send SOL with a ``Transfer``); the agent is the only allowed signer.
* ``Approve``: SPL ``approve_checked`` making ``spender`` the delegate of the agent's token
  account (created first when missing, paid by the agent).
* ``Batch``: the instructions of every item, in order, in one transaction, so they all
  apply or none does.

Example::

    from waiaas.chains.solana import SolanaAdapter
    from waiaas.types import Transfer

    with SolanaAdapter.local() as chain:
        secret, me = chain.generate_secret()
        chain.fund(me, 2_000_000_000)
        signed = chain.sign(chain.build(Transfer(to=other, amount=1_000_000), me), secret)
        chain.submit(signed)
        assert chain.wait_for_confirmation(signed).state == "CONFIRMED"
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import CreateAccountParams, TransferParams, create_account, transfer
from solders.transaction import VersionedTransaction

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
from waiaas.chains.solana import spl
from waiaas.chains.solana._backend import AccountData, SolanaBackend
from waiaas.chains.solana.errors import TxContext, map_transaction_error
from waiaas.errors import (
    ChainError,
    ChainErrorKind,
    InsufficientFundsError,
    InvalidInputError,
    StaleTransactionError,
    TransientChainError,
)
from waiaas.types import Approve, Batch, ContractCall, Request, TokenTransfer, Transfer

if TYPE_CHECKING:
    from solders.litesvm import LiteSVM

    from waiaas.plan import SolanaPlan

__all__ = ["Commitment", "LocalSolanaAdapter", "SolanaAdapter"]

CHAIN = "solana"
Commitment = Literal["processed", "confirmed", "finalized"]

_U64_MAX = 2**64 - 1
_MAX_TX_SIZE = 1232  # bytes on the wire (IPv6 MTU minus headers)
_MAX_COMPUTE_UNITS = 1_400_000
_AUTHORITY_LOW_WATER = 1_000_000_000  # lamports: below this the test authority is topped up
_AUTHORITY_TOP_UP = 10_000_000_000
_FINAL_STATES = frozenset(
    {ChainTxState.CONFIRMED, ChainTxState.FAILED, ChainTxState.DROPPED, ChainTxState.UNKNOWN}
)
_MAX_BLOCKHASH_AGE = 150  # slots a blockhash stays usable (MAX_PROCESSING_AGE)
_SIMULATION_READS = 3  # tries at a simulation whose accounts did not change meanwhile


def _fail(message: str, field_name: str) -> InvalidInputError:
    return InvalidInputError(message, field=field_name)


def _check_u64(value: int, field_name: str, *, positive: bool) -> int:
    if positive and value <= 0:
        raise _fail(f"{field_name} must be greater than 0", field_name)
    if value > _U64_MAX:
        raise _fail(f"{field_name} {value} exceeds the u64 maximum {_U64_MAX}", field_name)
    return value


@dataclass
class _Plan:
    """The instructions of one transaction being built, plus lookups cached during the build."""

    sender: Pubkey
    instructions: list[Instruction] = field(default_factory=list)
    mints: dict[Pubkey, tuple[Pubkey, int]] = field(default_factory=dict)
    accounts_exist: dict[Pubkey, bool] = field(default_factory=dict)
    ata_created: set[Pubkey] = field(default_factory=set)


class SolanaAdapter:
    """A :class:`waiaas.chains.base.ChainAdapter` for Solana.

    Create one with :meth:`local` (in-process LiteSVM) or :meth:`rpc` (a node over JSON-RPC);
    the constructor takes an internal backend. Thread-safe. Use as a context manager or call
    :meth:`close` to release the HTTP connection pool.

    Attributes:
        chain: always ``"solana"``.
        network: the network name agents are bound to (``"localnet"``, ``"devnet"``,
            ``"mainnet-beta"``...).
        commitment: the commitment level at which a transaction counts as confirmed.
        preflight: whether ``submit`` asks the backend to simulate first and refuse failing
            transactions without charging a fee (the default, as wallets do).
        native_asset: SOL, 9 decimals (:class:`~waiaas.chains.base.SupportsNativeAsset`).
        supports_batch: ``True``: a ``Batch`` is one atomic transaction
            (:class:`~waiaas.chains.base.SupportsBatch`).
    """

    chain: str = CHAIN
    native_asset: NativeAsset = families.SOLANA_NATIVE
    supports_batch: bool = True

    def refused_call(self, to: str, data: bytes) -> tuple[str, str] | None:
        """A raw call to the System or an SPL Token program is refused: it would move SOL or
        tokens past the budgets (:class:`~waiaas.chains.base.SupportsCallGuard`)."""
        return families.solana_refused_call(to, data)

    def __init__(
        self,
        backend: SolanaBackend,
        *,
        network: str,
        commitment: Commitment = "confirmed",
        preflight: bool = True,
        compute_unit_price: int | None = None,
        compute_unit_limit: int | None = None,
    ) -> None:
        if not isinstance(network, str) or not network.strip() or network != network.strip():
            raise _fail("network must be a non-empty name without surrounding spaces", "network")
        if commitment not in ("processed", "confirmed", "finalized"):
            raise _fail("commitment must be processed, confirmed or finalized", "commitment")
        if compute_unit_price is not None and (
            isinstance(compute_unit_price, bool)
            or not isinstance(compute_unit_price, int)
            or not 0 <= compute_unit_price <= _U64_MAX
        ):
            raise _fail("compute_unit_price must be an int of micro-lamports", "compute_unit_price")
        if compute_unit_limit is not None and (
            isinstance(compute_unit_limit, bool)
            or not isinstance(compute_unit_limit, int)
            or not 0 < compute_unit_limit <= _MAX_COMPUTE_UNITS
        ):
            raise _fail(
                f"compute_unit_limit must be an int in 1..{_MAX_COMPUTE_UNITS}",
                "compute_unit_limit",
            )
        self._backend = backend
        self.network = network
        self.commitment: Commitment = commitment
        self.preflight = bool(preflight)
        self._mint_cache: dict[Pubkey, tuple[Pubkey, int]] = {}
        self._cu_price = compute_unit_price or 0
        self._cu_limit = compute_unit_limit
        if self._cu_price and self._cu_limit is None:
            self._cu_limit = 200_000

    # ------------------------------------------------------------------ constructors

    @classmethod
    def local(
        cls,
        network: str = "localnet",
        *,
        svm: LiteSVM | None = None,
        preflight: bool = True,
        compute_unit_price: int | None = None,
        compute_unit_limit: int | None = None,
    ) -> LocalSolanaAdapter:
        """An adapter on an in-process LiteSVM (a fresh one unless ``svm`` is given).

        The result also implements :class:`waiaas.chains.base.LocalChainControl` (``fund``,
        ``create_test_token``, ``mint_test_token``). Transactions are final when submitted.

        Args:
            network: the network name to report (default ``"localnet"``).
            svm: an existing ``solders.litesvm.LiteSVM`` to run on (the caller may keep it to
                drive the runtime directly, e.g. ``svm.expire_blockhash()``, which expires
                every earlier blockhash). Its own blockhash check is turned off: the
                backend checks a cluster's window of 150 blocks itself.
            preflight: simulate before sending and refuse failing transactions, fee-free.
            compute_unit_price: priority fee in micro-lamports per compute unit (optional).
            compute_unit_limit: compute units requested per transaction (optional).

        Raises:
            InvalidInputError: a bad argument.

        Example::

            chain = SolanaAdapter.local()
        """
        from waiaas.chains.solana._litesvm import LiteSVMBackend

        return LocalSolanaAdapter(
            LiteSVMBackend(svm),
            network=network,
            commitment="confirmed",
            preflight=preflight,
            compute_unit_price=compute_unit_price,
            compute_unit_limit=compute_unit_limit,
        )

    @classmethod
    def rpc(
        cls,
        url: str,
        *,
        network: str,
        timeout: float = 10.0,
        commitment: Commitment = "confirmed",
        preflight: bool = True,
        compute_unit_price: int | None = None,
        compute_unit_limit: int | None = None,
    ) -> Self:
        """An adapter on a Solana node's JSON-RPC endpoint (sync httpx, timeouts always set).

        Called on :class:`LocalSolanaAdapter` (``LocalSolanaAdapter.rpc(...)``) the result also
        implements ``LocalChainControl`` through the node's ``requestAirdrop``; that is refused
        for ``mainnet-beta``, which has no faucet.

        Args:
            url: ``http://`` or ``https://`` endpoint; it may carry an API key, never shown.
            network: the network name (``"mainnet-beta"``, ``"devnet"``, ``"localnet"``...).
            timeout: seconds for each HTTP request (connect, read, write, pool).
            commitment: level at which a transaction counts as confirmed.
            preflight: let the node simulate and refuse failing transactions, fee-free.
            compute_unit_price: priority fee in micro-lamports per compute unit (optional).
            compute_unit_limit: compute units requested per transaction (optional).

        Raises:
            InvalidInputError: a bad URL, timeout or other argument.

        Example::

            chain = SolanaAdapter.rpc("https://api.devnet.solana.com", network="devnet")
        """
        from urllib.parse import urlsplit

        from waiaas.chains.solana._rpc import RpcBackend

        if not isinstance(url, str):
            raise _fail("url must be a string", "url")
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port
        except ValueError:
            valid = False
        if not valid:
            raise _fail("url must be an http:// or https:// URL with a host", "url")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise _fail("timeout must be a positive number of seconds", "timeout")
        if issubclass(cls, LocalSolanaAdapter) and network == "mainnet-beta":
            raise _fail("mainnet-beta has no faucet: test-chain controls are refused", "network")
        if commitment not in ("processed", "confirmed", "finalized"):
            raise _fail("commitment must be processed, confirmed or finalized", "commitment")
        backend = RpcBackend(url, timeout=float(timeout), commitment=commitment)
        try:
            return cls(
                backend,
                network=network,
                commitment=commitment,
                preflight=preflight,
                compute_unit_price=compute_unit_price,
                compute_unit_limit=compute_unit_limit,
            )
        except BaseException:
            backend.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the backend's connections. The adapter is unusable afterwards."""
        self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(network={self.network!r}, "
            f"backend={self._backend.description!r})"
        )

    # ------------------------------------------------------------------ keys & addresses

    def validate_address(self, address: str) -> str:
        """Return ``address`` if it is a canonical base58 32-byte public key.

        The check is exact: no case folding, no surrounding spaces, no other spelling of
        the same bytes.

        Raises:
            InvalidAddressError: anything else.

        Example::

            chain.validate_address("11111111111111111111111111111111")
        """
        return str(self._pubkey(address))

    def _pubkey(self, address: object, field_name: str = "address") -> Pubkey:
        from waiaas.addresses import normalize_solana_address

        return Pubkey.from_string(normalize_solana_address(address, field=field_name))

    def generate_secret(self) -> tuple[bytes, str]:
        """Create a new ed25519 key; return ``(32-byte seed, base58 public key)``.

        Example::

            secret, address = chain.generate_secret()
        """
        from waiaas.keystore.keys import generate_keypair

        return generate_keypair(CHAIN)

    def address_of(self, secret: bytes) -> str:
        """The base58 public key of a 32-byte ed25519 seed.

        Raises:
            InvalidInputError: ``secret`` is not 32 bytes.
        """
        from waiaas.keystore.keys import public_key_for

        return public_key_for(CHAIN, secret)

    # ------------------------------------------------------------------ build

    def build(self, request: Request, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        """Build the transaction for ``request``, paid and signed by ``sender``.

        Reads what it needs from the chain: a recent blockhash, the mint (program and
        decimals) of token requests, whether token accounts exist, whether a called program
        exists. See the module docstring for what each request becomes.

        Args:
            request: a ``Transfer``, ``TokenTransfer``, ``ContractCall``, ``Approve`` or ``Batch``.
            sender: the agent's address; it pays the fee and is the only signer.
            nonce: must be ``None`` (Solana has no account nonces).

        Raises:
            InvalidAddressError: an address is not a Solana address.
            InvalidInputError: the request cannot be expressed (zero or > u64 amount, not a
                mint, ``value`` on a program call, another signer, too large, ...).
            InsufficientFundsError: the sender holds no token account for the mint.
            ChainError: the chain could not be read (transient) or the blockhash expired.

        Example::

            unsigned = chain.build(Transfer(to=bob, amount=5_000_000, memo="rent"), alice)
        """
        if nonce is not None:
            raise _fail("Solana has no account nonces; pass nonce=None", "nonce")
        payer = self._pubkey(sender, "sender")
        if not isinstance(request, Transfer | TokenTransfer | ContractCall | Approve | Batch):
            raise _fail(
                "request must be a Transfer, TokenTransfer, ContractCall, Approve or Batch",
                "request",
            )
        plan = _Plan(sender=payer)
        if isinstance(request, Batch):
            for index, item in enumerate(request.requests):
                self._add(plan, item, f"requests[{index}].")
        else:
            self._add(plan, request, "")
        return self._compile(payer, self._compute_budget() + plan.instructions, "request")

    def build_plan(self, plan: SolanaPlan, *, nonce: int | None = None) -> UnsignedTx:
        """Build the transaction of a stored plan: exactly its instructions (compute-budget
        ones included), with a fresh blockhash; ``plan_of(build_plan(p)) == p``.

        Use it to execute what was judged and approved, even if a rebuild from the request
        would now differ (e.g. the recipient's token account was created meanwhile).

        Args:
            plan: a :class:`~waiaas.plan.SolanaPlan` for this adapter's network.
            nonce: must be ``None`` (Solana has no account nonces).

        Raises:
            InvalidInputError: not a Solana plan, another network, a signer other than the
                fee payer, too large, or flags that no compiled message can carry.
            ChainError: the blockhash could not be read.

        Example::

            unsigned = chain.build_plan(plan_from_json(stored))
        """
        from waiaas.plan import SolanaPlan

        if nonce is not None:
            raise _fail("Solana has no account nonces; pass nonce=None", "nonce")
        if not isinstance(plan, SolanaPlan):
            raise _fail("plan must be a SolanaPlan", "plan")
        if plan.network != self.network:
            raise _fail(
                f"the plan is for network {plan.network!r}, this adapter for {self.network!r}",
                "plan",
            )
        payer = self._pubkey(plan.fee_payer, "fee_payer")
        instructions = [
            Instruction(
                Pubkey.from_string(ix.program_id),
                ix.data,
                [
                    AccountMeta(Pubkey.from_string(m.pubkey), m.is_signer, m.is_writable)
                    for m in ix.accounts
                ],
            )
            for ix in plan.instructions
        ]
        unsigned = self._compile(payer, instructions, "plan")
        if _plan_of_message(unsigned.payload, self.network) != plan:
            raise _fail(
                "the plan's account flags cannot be compiled into one message as given", "plan"
            )
        return unsigned

    def _compile(self, payer: Pubkey, instructions: list[Instruction], field: str) -> UnsignedTx:
        """Compile for ``payer`` with a fresh blockhash; only the payer may sign."""
        latest = self._backend.latest_blockhash()
        try:
            message = MessageV0.try_compile(payer, instructions, [], latest.blockhash)
        except Exception as exc:  # solders raises its own CompileError types
            raise _fail(f"cannot compile the transaction: {exc}", field) from exc
        if message.header.num_required_signatures != 1:
            raise _fail("only the sender may sign a transaction", field)
        size = 1 + 64 + len(to_bytes_versioned(message))
        if size > _MAX_TX_SIZE:
            raise _fail(
                f"the transaction would be {size} bytes; Solana allows {_MAX_TX_SIZE}", field
            )
        fee = self._backend.fee_for_message(message)
        return UnsignedTx(
            chain=CHAIN,
            sender=str(payer),
            payload=message,
            nonce=None,
            fee_estimate=fee,
            valid_until=latest.last_valid_block_height,
            # The blockhash is at most _MAX_BLOCKHASH_AGE slots older than the slot the
            # node answered at, and no transaction lands before its blockhash's slot.
            earliest_slot=(
                max(0, latest.slot - _MAX_BLOCKHASH_AGE) if latest.slot is not None else None
            ),
        )

    def _compute_budget(self) -> list[Instruction]:
        out: list[Instruction] = []
        if self._cu_limit is not None:
            out.append(set_compute_unit_limit(self._cu_limit))
        if self._cu_price:
            out.append(set_compute_unit_price(self._cu_price))
        return out

    def _add(self, plan: _Plan, request: object, prefix: str) -> None:
        if isinstance(request, Transfer):
            self._add_transfer(plan, request, prefix)
        elif isinstance(request, TokenTransfer):
            self._add_token_transfer(plan, request, prefix)
        elif isinstance(request, ContractCall):
            self._add_contract_call(plan, request, prefix)
        elif isinstance(request, Approve):
            self._add_approve(plan, request, prefix)
        else:
            raise _fail(
                "a batch item must be a Transfer, TokenTransfer, ContractCall or Approve",
                f"{prefix}type",
            )

    def _add_transfer(self, plan: _Plan, request: Transfer, prefix: str) -> None:
        to = self._pubkey(request.to, f"{prefix}to")
        lamports = _check_u64(request.amount, f"{prefix}amount", positive=True)
        plan.instructions.append(
            transfer(TransferParams(from_pubkey=plan.sender, to_pubkey=to, lamports=lamports))
        )
        if request.memo:
            plan.instructions.append(spl.memo(request.memo, (plan.sender,)))

    def _mint(self, plan: _Plan, token: str, field_name: str) -> tuple[Pubkey, Pubkey, int]:
        """``(mint, token program, decimals)`` read from the chain (cached for this build)."""
        mint = self._pubkey(token, field_name)
        if mint not in plan.mints:
            account = self._backend.get_account(mint)
            if account is None:
                raise _fail(f"{field_name}: mint {mint} does not exist", field_name)
            if account.owner not in spl.TOKEN_PROGRAMS:
                raise _fail(
                    f"{field_name}: {mint} is not an SPL mint (owner {account.owner})", field_name
                )
            try:
                info = spl.parse_mint(account.data)
            except ValueError:
                info = None
            if info is None or not info.is_initialized:
                raise _fail(f"{field_name}: {mint} is not an initialised mint", field_name)
            plan.mints[mint] = (account.owner, info.decimals)
        program, decimals = plan.mints[mint]
        return mint, program, decimals

    def _exists(self, plan: _Plan, key: Pubkey) -> bool:
        if key not in plan.accounts_exist:
            plan.accounts_exist[key] = self._backend.get_account(key) is not None
        return plan.accounts_exist[key]

    def _checked_decimals(self, given: int | None, actual: int, field_name: str) -> int:
        if given is not None and given != actual:
            raise _fail(f"{field_name} is {given} but the mint has {actual} decimals", field_name)
        return actual

    def _ensure_ata(self, plan: _Plan, owner: Pubkey, mint: Pubkey, program: Pubkey) -> Pubkey:
        ata = spl.associated_token_address(owner, mint, program_id=program)
        if not self._exists(plan, ata) and ata not in plan.ata_created:
            plan.instructions.append(
                spl.create_associated_token_account_idempotent(
                    plan.sender, owner, mint, program_id=program
                )
            )
            plan.ata_created.add(ata)
        return ata

    def _add_token_transfer(self, plan: _Plan, request: TokenTransfer, prefix: str) -> None:
        mint, program, actual = self._mint(plan, request.token, f"{prefix}token")
        to = self._pubkey(request.to, f"{prefix}to")
        amount = _check_u64(request.amount, f"{prefix}amount", positive=True)
        decimals = self._checked_decimals(request.decimals, actual, f"{prefix}decimals")
        recipient = self._backend.get_account(to)
        if recipient is not None and recipient.owner in spl.TOKEN_PROGRAMS:
            raise _fail(
                f"{prefix}to is a token account or mint; give the recipient's wallet address",
                f"{prefix}to",
            )
        source = spl.associated_token_address(plan.sender, mint, program_id=program)
        if not self._exists(plan, source) and source not in plan.ata_created:
            raise InsufficientFundsError(
                f"the sender holds no token account for mint {mint} (balance 0)", chain=CHAIN
            )
        destination = self._ensure_ata(plan, to, mint, program)
        plan.instructions.append(
            spl.transfer_checked(
                source, mint, destination, plan.sender, amount, decimals, program_id=program
            )
        )

    def _add_approve(self, plan: _Plan, request: Approve, prefix: str) -> None:
        mint, program, actual = self._mint(plan, request.token, f"{prefix}token")
        delegate = self._pubkey(request.spender, f"{prefix}spender")
        amount = _check_u64(request.amount, f"{prefix}amount", positive=False)
        decimals = self._checked_decimals(request.decimals, actual, f"{prefix}decimals")
        source = self._ensure_ata(plan, plan.sender, mint, program)
        plan.instructions.append(
            spl.approve_checked(
                source, mint, delegate, plan.sender, amount, decimals, program_id=program
            )
        )

    def _add_contract_call(self, plan: _Plan, request: ContractCall, prefix: str) -> None:
        program = self._pubkey(request.to, f"{prefix}to")
        if request.value != 0:
            raise _fail(
                "value must be 0 on Solana program calls; send SOL with a Transfer",
                f"{prefix}value",
            )
        metas: list[AccountMeta] = []
        for index, spec in enumerate(request.accounts):
            key = self._pubkey(spec.pubkey, f"{prefix}accounts[{index}].pubkey")
            if spec.is_signer and key != plan.sender:
                raise _fail(
                    "only the sender can sign; another account is marked as signer",
                    f"{prefix}accounts[{index}].is_signer",
                )
            metas.append(AccountMeta(key, is_signer=spec.is_signer, is_writable=spec.is_writable))
        account = self._backend.get_account(program)
        if account is None or not account.executable:
            raise _fail(f"{prefix}to: {program} is not an executable program", f"{prefix}to")
        plan.instructions.append(Instruction(program, bytes(request.data), metas))

    # ------------------------------------------------------------------ fee & simulate

    def _message(self, unsigned: UnsignedTx) -> MessageV0:
        if not isinstance(unsigned, UnsignedTx) or unsigned.chain != CHAIN:
            raise _fail("not an unsigned Solana transaction", "unsigned")
        if not isinstance(unsigned.payload, MessageV0):
            raise _fail("the payload is not a Solana v0 message", "unsigned")
        return unsigned.payload

    def estimate_fee(self, unsigned: UnsignedTx) -> int:
        """The fee in lamports the cluster charges for this transaction.

        Raises:
            StaleTransactionError: the blockhash expired; build again.
            ChainError: the node could not be asked.
        """
        return self._backend.fee_for_message(self._message(unsigned))

    def fee_quote(self, unsigned: UnsignedTx) -> FeeQuote:
        """The fee ``unsigned`` pays (basis ``"exact"``): the signature fee plus the priority
        fee its compute-budget instructions set, as the cluster priced the message when it
        was built (asked again only when the build did not record it).

        Raises:
            InvalidInputError: ``unsigned`` is not an unsigned Solana transaction.
            ChainError: the node had to be asked and failed.
        """
        message = self._message(unsigned)
        fee = unsigned.fee_estimate
        if fee is None:
            fee = self._backend.fee_for_message(message)
        return FeeQuote(int(fee), "exact")

    def simulate(self, unsigned: UnsignedTx) -> SimulationResult:
        """Execute the unsigned transaction without committing it (signatures not checked).

        Returns success, the fee, the program logs, the compute used and, on failure, the
        mapped error (not raised).

        Raises:
            ChainError: the node could not be asked (transient).
        """
        message = self._message(unsigned)
        context = TxContext.from_message(message)
        signatures = [Signature.default()] * message.header.num_required_signatures
        tx = VersionedTransaction.populate(message, signatures)
        outcome = self._backend.simulate(tx, sig_verify=False, context=context)
        error = (
            None
            if outcome.err is None
            else map_transaction_error(outcome.err, logs=outcome.logs, context=context)
        )
        try:
            fee: int | None = self._backend.fee_for_message(message)
        except ChainError:
            fee = None
        return SimulationResult(
            success=error is None,
            fee=fee,
            logs=outcome.logs,
            error=error,
            units_consumed=outcome.units_consumed,
        )

    # ------------------------------------------------------------------ plans

    def plan_of(self, unsigned: UnsignedTx) -> SolanaPlan:
        """The canonical plan of ``unsigned``, read from the compiled message that is signed.

        Each instruction's accounts carry the signer / writable flags the message gives them
        (the message merges flags across instructions, and that is what runs).

        Raises:
            InvalidInputError: not a Solana transaction of this adapter, or a message that uses
                address lookup tables (never built by this adapter).

        Example::

            plan = chain.plan_of(chain.build(Transfer(to=bob, amount=1), me))
        """
        return _plan_of_message(self._message(unsigned), self.network)

    def plan_of_signed(self, signed: SignedTx) -> SolanaPlan:
        """The canonical plan of signed transaction bytes (see :meth:`plan_of`).

        Raises:
            InvalidInputError: the bytes are not a signed v0 Solana transaction.
        """
        message = self._decode(signed).message
        if not isinstance(message, MessageV0):
            raise _fail("only v0 messages are signed by this adapter", "signed")
        return _plan_of_message(message, self.network)

    def account_lookup(self) -> _SolanaLookup:
        """Chain reads for :func:`waiaas.plan.decode_plan`: token account -> (mint, owner),
        and the exact rent of a new associated token account for a mint.

        Example::

            effects = decode_plan(plan, lookup=chain.account_lookup())
        """
        return _SolanaLookup(self)

    def token_decimals(self, token: str) -> int:
        """The decimals of mint ``token``, read from the mint account (cached per adapter).

        Raises:
            InvalidAddressError: not a Solana address.
            InvalidInputError: not an initialised SPL Token / Token-2022 mint.
            ChainError: the node could not be asked.

        Example::

            chain.token_decimals(usdc_mint)   # 6
        """
        key = self._pubkey(token, "token")
        cache = self._mint_cache
        if key not in cache:
            _, program, decimals = self._mint(_Plan(sender=key), token, "token")
            cache[key] = (program, decimals)
        return cache[key][1]

    def simulate_balance_changes(
        self, unsigned: UnsignedTx, *, tokens: Iterable[str] = ()
    ) -> BalanceChanges:
        """The sender's balance changes if ``unsigned`` ran now, without committing anything.

        Every writable account of the message is read before and simulated after (LiteSVM:
        the simulation's post-accounts; JSON-RPC: ``getMultipleAccounts`` then
        ``simulateTransaction`` with the ``accounts`` option). The two reads are not atomic
        (another transaction of the sender may land in between), so the accounts are read
        again after the simulation and it is run again until they did not change meanwhile.
        Only writable accounts can change, so nothing is missed:

        * ``native``: the change of the sender's lamports, plus every decrease of lamports in
          accounts it controls that the adapter recognises (its SPL token accounts, address
          lookup tables, stake accounts it is the withdrawer of and nonce accounts it is the
          authority of: closing one to another address is an outflow; funding one is not
          counted back), **fee excluded** (``fee``
          holds it);
        * ``tokens``: per mint, the change of the sender's token accounts.

        A transaction that fails in simulation changes nothing (``native`` 0).

        Args:
            unsigned: a transaction built by this adapter.
            tokens: ignored on Solana (every token account is watched); accepted so both
                adapters share one signature.

        Raises:
            InvalidInputError: not a Solana transaction of this adapter.
            ChainError: the node failed; transient when the accounts kept changing.

        Example::

            changes = chain.simulate_balance_changes(unsigned)
            changes.native   # -1_000_000 for a 0.001 SOL transfer
        """
        message = self._message(unsigned)
        sender = self._pubkey(unsigned.sender, "sender")
        keys = list(message.account_keys)
        writable = [keys[i] for i in range(len(keys)) if _is_writable(message, i)]
        signatures = [Signature.default()] * message.header.num_required_signatures
        tx = VersionedTransaction.populate(message, signatures)
        before = self._backend.get_accounts(writable)
        for _ in range(_SIMULATION_READS):
            outcome, after = self._backend.simulate_accounts(
                tx, writable, context=TxContext.from_message(message)
            )
            if outcome.err is not None or after is None:
                break
            again = self._backend.get_accounts(writable)
            if again == before:
                break  # nothing landed in between: the simulation ran on ``before``
            before = again
        else:
            raise TransientChainError(
                "the sender's accounts kept changing while the transaction was simulated",
                chain="solana",
            )
        fee = self._backend.fee_for_message(message)
        if outcome.err is not None or after is None:
            return BalanceChanges(native=0, tokens={}, fee=fee)
        native = 0
        token_deltas: dict[str, int] = {}
        for key, old, new in zip(writable, before, after, strict=True):
            lamports = (new.lamports if new else 0) - (old.lamports if old else 0)
            if key == sender:
                native += lamports
                continue
            controlled, mint = _controlled_by(sender, old, new)
            if controlled and lamports < 0:
                # Lamports leaving an account the sender controls are its outflow; lamports
                # parked in one are not counted back (whoever the program lets can take them).
                native += lamports
            if mint is not None:
                delta = _token_amount(new) - _token_amount(old)
                if delta:
                    token_deltas[str(mint)] = token_deltas.get(str(mint), 0) + delta
        if keys and keys[0] == sender:
            native += fee
        return BalanceChanges(
            native=native, tokens={k: v for k, v in token_deltas.items() if v}, fee=fee
        )

    # ------------------------------------------------------------------ sign & submit

    def sign(self, unsigned: UnsignedTx, secret: bytes) -> SignedTx:
        """Sign with the sender's 32-byte ed25519 seed (handed over for this call only).

        Raises:
            InvalidInputError: not a Solana transaction, a secret that is not 32 bytes, or a
                secret that does not belong to the sender. The secret never appears in it.

        Example::

            signed = chain.sign(unsigned, secret)   # signed.tx_hash is the base58 signature
        """
        message = self._message(unsigned)
        if not isinstance(secret, bytes | bytearray) or len(secret) != 32:
            raise _fail("secret must be a 32-byte ed25519 seed", "secret")
        keypair = Keypair.from_seed(bytes(secret))
        signer = keypair.pubkey()
        if str(signer) != unsigned.sender or message.account_keys[0] != signer:
            raise _fail("the secret does not belong to the transaction's sender", "secret")
        tx = VersionedTransaction(message, [keypair])
        return SignedTx(
            chain=CHAIN,
            raw=bytes(tx),
            tx_hash=str(tx.signatures[0]),
            nonce=None,
            valid_until=unsigned.valid_until,
            earliest_slot=unsigned.earliest_slot,
        )

    def _decode(self, signed: SignedTx) -> VersionedTransaction:
        if not isinstance(signed, SignedTx) or signed.chain != CHAIN:
            raise _fail("not a signed Solana transaction", "signed")
        try:
            tx = VersionedTransaction.from_bytes(bytes(signed.raw))
        except Exception as exc:  # solders raises its own error types on bad bytes
            raise _fail("signed.raw is not a serialised Solana transaction", "signed") from exc
        if not tx.signatures or str(tx.signatures[0]) != signed.tx_hash:
            raise _fail("signed.tx_hash does not match the signature in signed.raw", "signed")
        return tx

    def submit(self, signed: SignedTx) -> str:
        """Send the signed bytes; return the signature. Re-sending the same bytes is safe.

        A resubmission the cluster answers with ``AlreadyProcessed`` counts as success: the
        signature is deterministic, so it is this very transaction that landed.

        Raises:
            StaleTransactionError: the blockhash expired; build and sign again (once).
            InsufficientFundsError, ExecutionRevertedError, PermanentChainError: refused.
            TransientChainError: the node failed; retry with the same bytes.
        """
        tx = self._decode(signed)
        self._backend.send(tx, preflight=self.preflight, context=TxContext.from_message(tx.message))
        return signed.tx_hash

    # ------------------------------------------------------------------ status

    def get_status(self, signed: SignedTx) -> ChainTxStatus:
        """Where ``signed`` stands: CONFIRMED, FAILED, PENDING, NOT_FOUND, DROPPED or UNKNOWN.

        "Not found" is not proof of absence: a pruned node forgets old signatures. So:

        * NOT_FOUND: unknown to the node, and its blockhash is still valid (it may land);
        * DROPPED: unknown, its blockhash expired, *and* the node's history
          (``minimumLedgerSlot``) reaches back to the earliest slot it could have landed in
          (``signed.earliest_slot``): proven never to land, safe to replace;
        * UNKNOWN: unknown and expired, but the node cannot prove it never landed (its
          history is too short, or the slot is not known). Never replace it automatically.

        Raises:
            ChainError: the node could not be asked (transient).
        """
        tx = self._decode(signed)
        signature = tx.signatures[0]
        record = self._backend.get_transaction(signature)
        if record is None:
            if self._backend.is_blockhash_valid(tx.message.recent_blockhash):
                return ChainTxStatus(ChainTxState.NOT_FOUND)
            # It may have landed between the two questions: ask once more.
            record = self._backend.get_transaction(signature)
            if record is None:
                floor = self._backend.history_floor()
                earliest = signed.earliest_slot
                if floor is not None and earliest is not None and floor <= earliest:
                    return ChainTxStatus(ChainTxState.DROPPED)
                return ChainTxStatus(
                    ChainTxState.UNKNOWN,
                    error=StaleTransactionError(
                        "the node does not know this transaction and its blockhash expired, "
                        "but its history "
                        + ("cannot be asked" if floor is None else f"starts at slot {floor}")
                        + (
                            f", after slot {earliest} where it could have landed"
                            if earliest is not None
                            else " and the submission slot is not known"
                        )
                        + ": it may have landed",
                        chain=CHAIN,
                    ),
                )
        if not record.final:
            return ChainTxStatus(ChainTxState.PENDING, block=record.slot)
        if record.err is not None:
            error = map_transaction_error(
                record.err, logs=record.logs, context=TxContext.from_message(tx.message)
            )
            return ChainTxStatus(
                ChainTxState.FAILED,
                fee=record.fee,
                error=error,
                block=record.slot,
                logs=record.logs,
            )
        return ChainTxStatus(
            ChainTxState.CONFIRMED, fee=record.fee, block=record.slot, logs=record.logs
        )

    def wait_for_confirmation(self, signed: SignedTx, timeout: float = 30.0) -> ChainTxStatus:
        """Poll :meth:`get_status` until CONFIRMED, FAILED or DROPPED, or ``timeout`` seconds.

        Transient node failures while polling are retried until the deadline.

        Returns:
            The last status read (PENDING or NOT_FOUND when the deadline passed first).

        Raises:
            InvalidInputError: a negative or non-numeric timeout.
            TransientChainError: the node never answered before the deadline.
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise _fail("timeout must be a non-negative number of seconds", "timeout")
        self._decode(signed)
        deadline = time.monotonic() + timeout
        delay = 0.002
        last: ChainTxStatus | None = None
        last_error: TransientChainError | None = None
        while True:
            try:
                last = self.get_status(signed)
            except TransientChainError as exc:
                last_error = exc
            else:
                if last.state in _FINAL_STATES:
                    return last
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if last is None and last_error is not None:
                    raise last_error
                return last if last is not None else ChainTxStatus(ChainTxState.NOT_FOUND)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.25)

    # ------------------------------------------------------------------ balances

    def get_balance(self, address: str) -> int:
        """Lamports held by ``address`` (0 for an account that does not exist).

        Raises:
            InvalidAddressError: not a Solana address.
            ChainError: the node could not be asked.
        """
        return self._backend.get_balance(self._pubkey(address))

    def get_token_balance(self, address: str, token: str) -> int:
        """Base units of mint ``token`` in wallet ``address``'s associated token account.

        Returns 0 when that account does not exist. Tokens held in other (non-associated)
        token accounts of the wallet are not counted.

        Raises:
            InvalidAddressError: an address is not a Solana address.
            InvalidInputError: ``token`` is not an SPL mint.
            ChainError: the node could not be asked.
        """
        owner = self._pubkey(address)
        mint, program, _ = self._mint(_Plan(sender=owner), token, "token")
        ata = spl.associated_token_address(owner, mint, program_id=program)
        return self._backend.get_token_amount(ata) or 0


class LocalSolanaAdapter(SolanaAdapter):
    """A :class:`SolanaAdapter` on a test chain, with ``LocalChainControl`` (fund, test tokens).

    Returned by :meth:`SolanaAdapter.local`; ``LocalSolanaAdapter.rpc(url, network=...)``
    gives the same controls over a node that serves ``requestAirdrop`` (a local test
    validator, devnet). Test tokens are minted by an authority keypair this adapter holds in
    memory and funds through the faucet.
    """

    def __init__(self, backend: SolanaBackend, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self._authority = Keypair()
        self._authority_lock = threading.Lock()

    @property
    def test_authority(self) -> str:
        """The address of the mint authority of tokens made by :meth:`create_test_token`."""
        return str(self._authority.pubkey())

    def fund(self, address: str, amount: int) -> None:
        """Airdrop ``amount`` lamports to ``address``; returns once the airdrop is final.

        Raises:
            InvalidAddressError: not a Solana address.
            InvalidInputError: ``amount`` is not a positive int, or would leave a new account
                below the rent-exempt minimum (890,880 lamports for a plain account).
            ChainError: the faucet failed.

        Example::

            chain.fund(address, 2_000_000_000)   # 2 SOL
        """
        key = self._pubkey(address)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise _fail("amount must be an int of lamports", "amount")
        _check_u64(amount, "amount", positive=True)
        balance = self._backend.get_balance(key)
        if balance == 0:
            minimum = self._backend.rent_exempt_minimum(0)
            if amount < minimum:
                raise _fail(
                    f"amount {amount} would leave a new account below the rent-exempt "
                    f"minimum of {minimum} lamports",
                    "amount",
                )
        self._backend.airdrop(key, amount)

    def _fund_authority(self) -> None:
        """Keep the test authority able to pay rent and fees (topped up from the faucet)."""
        with self._authority_lock:
            if self._backend.get_balance(self._authority.pubkey()) < _AUTHORITY_LOW_WATER:
                self._backend.airdrop(self._authority.pubkey(), _AUTHORITY_TOP_UP)

    def _run(self, instructions: list[Instruction], signers: list[Keypair]) -> None:
        """Build, sign, send and wait for an internal transaction; raise its mapped error."""
        payer = signers[0].pubkey()
        for attempt in (1, 2):
            latest = self._backend.latest_blockhash()
            message = MessageV0.try_compile(payer, instructions, [], latest.blockhash)
            tx = VersionedTransaction(message, signers)
            context = TxContext.from_message(message)
            signed = SignedTx(chain=CHAIN, raw=bytes(tx), tx_hash=str(tx.signatures[0]))
            try:
                self._backend.send(tx, preflight=True, context=context)
            except ChainError as exc:
                if exc.kind == ChainErrorKind.STALE and attempt == 1:
                    continue
                raise
            status = self.wait_for_confirmation(signed, timeout=30.0)
            if status.state == ChainTxState.CONFIRMED:
                return
            if status.error is not None:
                raise status.error
            raise TransientChainError(
                f"test-chain transaction ended {status.state}", chain=CHAIN, detail=signed.tx_hash
            )

    def create_test_token(
        self, decimals: int = 6, *, program: Literal["token", "token-2022"] = "token"
    ) -> str:
        """Create a mint whose authority is this adapter's test authority; return its address.

        Args:
            decimals: the mint's decimals (0..255).
            program: ``"token"`` (SPL Token) or ``"token-2022"``.

        Raises:
            InvalidInputError: bad decimals or program.
            ChainError: the test chain refused.

        Example::

            usdc = chain.create_test_token(6)
        """
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 255:
            raise _fail("decimals must be an int in 0..255", "decimals")
        programs = {"token": spl.TOKEN_PROGRAM_ID, "token-2022": spl.TOKEN_2022_PROGRAM_ID}
        if program not in programs:
            raise _fail('program must be "token" or "token-2022"', "program")
        program_id = programs[program]
        self._fund_authority()
        mint = Keypair()
        rent = self._backend.rent_exempt_minimum(spl.MINT_SIZE)
        self._run(
            [
                create_account(
                    CreateAccountParams(
                        from_pubkey=self._authority.pubkey(),
                        to_pubkey=mint.pubkey(),
                        lamports=rent,
                        space=spl.MINT_SIZE,
                        owner=program_id,
                    )
                ),
                spl.initialize_mint2(
                    mint.pubkey(), decimals, self._authority.pubkey(), program_id=program_id
                ),
            ],
            [self._authority, mint],
        )
        return str(mint.pubkey())

    def mint_test_token(self, token: str, to: str, amount: int) -> None:
        """Mint ``amount`` base units of ``token`` to wallet ``to`` (its ATA made if needed).

        Raises:
            InvalidAddressError: an address is not a Solana address.
            InvalidInputError: ``token`` is not a mint made by :meth:`create_test_token` of
                this adapter, or ``amount`` is not a positive u64.
            ChainError: the test chain refused.
        """
        owner = self._pubkey(to, "to")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise _fail("amount must be an int of base units", "amount")
        _check_u64(amount, "amount", positive=True)
        plan = _Plan(sender=self._authority.pubkey())
        mint, program, decimals = self._mint(plan, token, "token")
        account = self._backend.get_account(mint)
        info = spl.parse_mint(account.data) if account is not None else None
        if info is None or info.mint_authority != self._authority.pubkey():
            raise _fail(f"token {mint} was not created by this adapter's test authority", "token")
        self._fund_authority()
        destination = spl.associated_token_address(owner, mint, program_id=program)
        self._run(
            [
                spl.create_associated_token_account_idempotent(
                    self._authority.pubkey(), owner, mint, program_id=program
                ),
                spl.mint_to_checked(
                    mint,
                    destination,
                    self._authority.pubkey(),
                    amount,
                    decimals,
                    program_id=program,
                ),
            ],
            [self._authority],
        )


def _is_writable(message: MessageV0, index: int) -> bool:
    """Whether account ``index`` is writable by the message's header (as signed)."""
    header = message.header
    signers = header.num_required_signatures
    if index < signers:
        return index < signers - header.num_readonly_signed_accounts
    return index < len(message.account_keys) - header.num_readonly_unsigned_accounts


_ALT_PROGRAM_ID = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")
_NONCE_ACCOUNT_SIZE = 80
_STAKE_PROGRAM_ID = Pubkey.from_string("Stake11111111111111111111111111111111111111")


def _controlled_by(owner: Pubkey, *states: AccountData | None) -> tuple[bool, Pubkey | None]:
    """Whether an account (in any of its ``states``) is controlled by ``owner``, and its mint
    when it is ``owner``'s SPL token account.

    Recognised: SPL token accounts whose owner is ``owner``; address lookup tables whose
    authority is ``owner``; stake accounts whose withdrawer is ``owner``; initialised nonce
    accounts whose authority is ``owner``. Other programs' vaults are not recognised.
    """
    raw_owner = bytes(owner)
    for state in states:
        if state is None:
            continue
        data = state.data
        if state.owner in spl.TOKEN_PROGRAMS:
            try:
                info = spl.parse_token_account(data)
            except (ValueError, struct.error):
                continue
            if info.owner == owner:
                return True, info.mint
        elif _authority_of(state) == raw_owner:
            return True, None
    return False, None


def _authority_of(state: AccountData) -> bytes | None:
    """The 32-byte key that controls the lamports of a lookup table, stake or nonce account."""
    data = state.data
    if state.owner == _ALT_PROGRAM_ID:
        # ProgramState::LookupTable (u32 1), deactivation slot, last extended slot and index,
        # then the authority as Option<Pubkey> at byte 21.
        if len(data) >= 54 and data[:4] == b"\x01\0\0\0" and data[21] == 1:
            return data[22:54]
    elif state.owner == _STAKE_PROGRAM_ID:
        # StakeStateV2 Initialized (1) / Stake (2), Meta { rent reserve, staker, withdrawer }:
        # the withdrawer moves its lamports.
        if len(data) >= 76 and data[:4] in (b"\x01\0\0\0", b"\x02\0\0\0"):
            return data[44:76]
    elif (
        state.owner == spl.SYSTEM_PROGRAM_ID
        and len(data) == _NONCE_ACCOUNT_SIZE
        and data[4:8] == b"\x01\0\0\0"
    ):
        # a nonce account: Versions (u32), State::Initialized (u32 1), then the authority
        return data[8:40]
    return None


def _token_amount(state: AccountData | None) -> int:
    if state is None or state.owner not in spl.TOKEN_PROGRAMS:
        return 0
    try:
        return spl.parse_token_account(state.data).amount
    except (ValueError, struct.error):
        return 0


_PLANS_KEPT = 256
"""How many plans :func:`_plan_of_message` keeps by their message's exact bytes."""
_plans: dict[tuple[str, bytes], SolanaPlan] = {}


def _plan_of_message(message: MessageV0, network: str) -> SolanaPlan:
    """The plan of a compiled v0 message (flags from its header, as the runtime reads them).

    Kept by the message's exact serialised bytes and the network (a plan is immutable and a
    function of both): the plan of a built transaction and that of the bytes signed from it
    are read once."""
    key = (network, to_bytes_versioned(message))
    plan = _plans.get(key)
    if plan is None:
        plan = _read_plan(message, network)
        if len(_plans) >= _PLANS_KEPT:
            _plans.clear()
        _plans[key] = plan
    return plan


def _read_plan(message: MessageV0, network: str) -> SolanaPlan:
    """:func:`_plan_of_message`, read from the message."""
    from waiaas.plan import SolanaAccountMeta, SolanaInstruction, SolanaPlan

    if list(message.address_table_lookups):
        raise _fail("messages with address lookup tables have no plan", "unsigned")
    keys = [str(key) for key in message.account_keys]
    signers = message.header.num_required_signatures
    metas = [
        SolanaAccountMeta(
            pubkey=key, is_signer=index < signers, is_writable=_is_writable(message, index)
        )
        for index, key in enumerate(keys)
    ]
    if not keys:
        raise _fail("the message has no fee payer", "unsigned")
    instructions = []
    for ix in message.instructions:
        indexes = [ix.program_id_index, *bytes(ix.accounts)]
        if any(i >= len(keys) for i in indexes):
            raise _fail("an instruction refers to an account the message lacks", "unsigned")
        instructions.append(
            SolanaInstruction(
                program_id=keys[ix.program_id_index],
                accounts=tuple(metas[i] for i in bytes(ix.accounts)),
                data=bytes(ix.data),
            )
        )
    return SolanaPlan(network=network, fee_payer=keys[0], instructions=tuple(instructions))


_TOKEN_2022_ACCOUNT_EXTENSION_BYTES = {1: 8, 9: 0, 14: 1, 26: 0}
"""Token-2022 mint extension type -> data bytes of the account extension a new token account
of that mint gets (TransferFeeConfig -> TransferFeeAmount, NonTransferable ->
NonTransferableAccount, TransferHook -> TransferHookAccount, Pausable -> PausableAccount)."""


class _SolanaLookup:
    """The :class:`waiaas.plan.AccountLookup` of a :class:`SolanaAdapter` (reads the chain)."""

    def __init__(self, adapter: SolanaAdapter) -> None:
        self._adapter = adapter

    def token_account(self, address: str) -> tuple[str, str] | None:
        """``(mint, owner)`` of token account ``address``; ``None`` if not one or missing."""
        try:
            key = Pubkey.from_string(address)
        except ValueError:
            return None
        account = self._adapter._backend.get_account(key)
        if account is None or account.owner not in spl.TOKEN_PROGRAMS:
            return None
        try:
            info = spl.parse_token_account(account.data)
        except (ValueError, struct.error):
            return None
        return str(info.mint), str(info.owner)

    def token_account_rent(self, mint: str, token_program: str) -> int | None:
        """Rent of a new associated token account of ``mint``: 165 bytes for Token; for
        Token-2022 the base, the ImmutableOwner extension and the account extensions the
        mint's extensions require. ``None`` when the mint cannot be read."""
        try:
            mint_key = Pubkey.from_string(mint)
            program = Pubkey.from_string(token_program)
        except ValueError:
            return None
        backend = self._adapter._backend
        if program == spl.TOKEN_PROGRAM_ID:
            return backend.rent_exempt_minimum(spl.TOKEN_ACCOUNT_SIZE)
        if program != spl.TOKEN_2022_PROGRAM_ID:
            return None
        account = backend.get_account(mint_key)
        if account is None or account.owner != program:
            return None
        size = spl.TOKEN_ACCOUNT_SIZE + 1 + 4  # account type + ImmutableOwner header
        data = account.data
        offset = spl.TOKEN_ACCOUNT_SIZE + 1  # mint TLVs start after the padded base + type
        while offset + 4 <= len(data):
            kind, length = struct.unpack_from("<HH", data, offset)
            if kind == 0:
                break
            extra = _TOKEN_2022_ACCOUNT_EXTENSION_BYTES.get(kind)
            if extra is not None:
                size += 4 + extra
            offset += 4 + length
        return backend.rent_exempt_minimum(size)
