"""The chain port: what waiaas needs from a blockchain, as ``typing.Protocol``s.

A third party adds a chain by writing a class with these methods; nothing to inherit.
Optional capabilities are small separate protocols (:class:`SupportsNonces`,
:class:`LocalChainControl`, :class:`SupportsPlans`, :class:`SupportsPlanBuild`,
:class:`SupportsTokenInfo`, :class:`SupportsBalanceSimulation`,
:class:`SupportsExactBalanceChanges`, :class:`SupportsFeeQuote`) checked with ``isinstance``
at run time.

What the wallet knows about a chain *family* comes from the adapter too, through three more
optional protocols, each with a documented fallback for an adapter that does not implement it
(read them through :func:`native_asset_of`, :func:`batch_supported` and
:func:`call_refusal`, which apply the fallbacks):

* :class:`SupportsNativeAsset`: the native coin's symbol and decimals (human units on the
  agent's handle, notifications, the approval page). Fallback: amounts of the native coin
  are shown and taken in base units only.
* :class:`SupportsBatch`: whether ``build`` accepts a ``Batch``. Fallback: a ``Batch`` is
  refused before anything is built.
* :class:`SupportsCallGuard`: which raw ``ContractCall`` requests would move assets past the typed
  requests (a disguised transfer). Fallback: none is screened here; calls are still
  default-denied by the policies until a CONTRACT_WHITELIST names the contract.

The pipeline calls an adapter in this order::

    unsigned = adapter.build(request, sender, nonce=...)   # after policy passed
    adapter.simulate(unsigned)                              # optional dry-run
    signed = adapter.sign(unsigned, secret)                 # secret handed over for this call only
    (store signed.raw and signed.tx_hash)                   # before submitting
    adapter.submit(signed)                                  # idempotent for the same bytes
    adapter.get_status(signed)                              # until CONFIRMED, FAILED or DROPPED

Every upstream failure surfaces as a :class:`waiaas.errors.ChainError` subclass whose
``kind`` is permanent, transient or stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from waiaas.errors import ChainError
from waiaas.types import Request

if TYPE_CHECKING:
    from waiaas.plan import AccountLookup, Plan

__all__ = [
    "BalanceChanges",
    "ChainAdapter",
    "ChainTxState",
    "ChainTxStatus",
    "FeeQuote",
    "LocalChainControl",
    "NativeAsset",
    "SignedTx",
    "SimulationResult",
    "SupportsBalanceSimulation",
    "SupportsBatch",
    "SupportsCallGuard",
    "SupportsExactBalanceChanges",
    "SupportsFeeCap",
    "SupportsFeeQuote",
    "SupportsNativeAsset",
    "SupportsNonces",
    "SupportsPlanBuild",
    "SupportsPlans",
    "SupportsTokenInfo",
    "UnsignedTx",
    "batch_supported",
    "call_refusal",
    "native_asset_of",
]


@dataclass(frozen=True)
class UnsignedTx:
    """A transaction built for one sender, ready to sign.

    Attributes:
        chain: chain family (``"solana"``, ``"evm"``).
        sender: the normalised sender address.
        payload: adapter-specific content (a solders Message, an EVM tx dict, ...).
        nonce: the EVM nonce used (``None`` on chains without account nonces).
        fee_estimate: the adapter's fee estimate in native base units, when known.
        valid_until: last block height / slot at which it can land (Solana), when known.
        earliest_slot: a slot before which it cannot have landed (Solana: its blockhash's
            age limit), when known; a node whose history reaches back to it can prove the
            transaction's absence.
    """

    chain: str
    sender: str
    payload: Any
    nonce: int | None = None
    fee_estimate: int | None = None
    valid_until: int | None = None
    earliest_slot: int | None = None


@dataclass(frozen=True)
class SignedTx:
    """Signed bytes ready to submit; ``tx_hash`` is known before submission.

    Attributes:
        chain: chain family.
        raw: the exact bytes the network receives.
        tx_hash: the transaction id (Solana base58 signature, EVM 0x-hash).
        nonce: the EVM nonce, when relevant.
        valid_until: last block height / slot at which it can land, when known.
        earliest_slot: a slot before which it cannot have landed (Solana), when known.
    """

    chain: str
    raw: bytes
    tx_hash: str
    nonce: int | None = None
    valid_until: int | None = None
    earliest_slot: int | None = None

    def __repr__(self) -> str:
        return f"SignedTx(chain={self.chain!r}, tx_hash={self.tx_hash!r}, nonce={self.nonce!r})"


@dataclass(frozen=True)
class SimulationResult:
    """What a dry-run on the chain says: success, fee, logs and the mapped error if any."""

    success: bool
    fee: int | None
    logs: tuple[str, ...] = ()
    error: ChainError | None = None
    units_consumed: int | None = None


class ChainTxState(StrEnum):
    """Where a submitted transaction stands on the chain."""

    PENDING = "PENDING"  # known to the node, not final yet
    CONFIRMED = "CONFIRMED"  # included and succeeded
    FAILED = "FAILED"  # included and failed (fee paid, effects reverted)
    NOT_FOUND = "NOT_FOUND"  # unknown; it may still land
    DROPPED = "DROPPED"  # proven never to land (blockhash expired, nonce used by another tx)
    # Not found, can no longer land, but the node cannot prove it never landed (its history
    # does not reach back far enough): it may have landed. Never replaced automatically.
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ChainTxStatus:
    """A status read from the chain for one signed transaction."""

    state: ChainTxState
    fee: int | None = None
    error: ChainError | None = None
    block: int | None = None
    logs: tuple[str, ...] = field(default=())


@runtime_checkable
class ChainAdapter(Protocol):
    """The port every chain implements.

    Attributes:
        chain: the chain family (``"solana"``, ``"evm"``, or a third party's).
        network: the network name agents are bound to (``"localnet"``, ``"mainnet-beta"``...).
    """

    chain: str
    network: str

    def validate_address(self, address: str) -> str:
        """Return the normalised address, or raise ``InvalidAddressError``."""
        ...

    def generate_secret(self) -> tuple[bytes, str]:
        """Create a new private key; return ``(secret, normalised public address)``."""
        ...

    def address_of(self, secret: bytes) -> str:
        """The normalised public address of a private key."""
        ...

    def build(self, request: Request, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        """Build the transaction for ``request`` sent by ``sender``.

        Raises ``InvalidInputError`` (or ``InvalidAddressError``) for requests the chain
        cannot express, and ``ChainError`` when the node must be asked and fails.
        """
        ...

    def estimate_fee(self, unsigned: UnsignedTx) -> int:
        """The fee in native base units the transaction is expected to cost."""
        ...

    def simulate(self, unsigned: UnsignedTx) -> SimulationResult:
        """Execute without committing; report success, fee, logs and the mapped error."""
        ...

    def sign(self, unsigned: UnsignedTx, secret: bytes) -> SignedTx:
        """Sign with ``secret``, handed over by the keystore for this one call."""
        ...

    def submit(self, signed: SignedTx) -> str:
        """Send the signed bytes; return the tx hash. Re-sending the same bytes is safe."""
        ...

    def get_status(self, signed: SignedTx) -> ChainTxStatus:
        """Ask the chain where ``signed`` stands."""
        ...

    def wait_for_confirmation(self, signed: SignedTx, timeout: float = 30.0) -> ChainTxStatus:
        """Poll ``get_status`` until a final state or ``timeout`` seconds."""
        ...

    def get_balance(self, address: str) -> int:
        """Native balance in base units."""
        ...

    def get_token_balance(self, address: str, token: str) -> int:
        """Token balance of wallet ``address`` in the token's base units (0 if no account)."""
        ...


@runtime_checkable
class SupportsNonces(Protocol):
    """Chains with account nonces (EVM): lets the pipeline allocate nonces itself."""

    def pending_nonce(self, address: str) -> int:
        """The next nonce the node expects from ``address``, pending transactions included."""
        ...


@runtime_checkable
class LocalChainControl(Protocol):
    """Test-chain controls (LiteSVM, eth-tester, anvil, the LiteSVM RPC test server).

    Used by the demo, ``waiaas.testing`` and the contract tests; never by the pipeline.
    """

    def fund(self, address: str, amount: int) -> None:
        """Give ``address`` ``amount`` native base units out of thin air (or a faucet)."""
        ...

    def create_test_token(self, decimals: int = 6) -> str:
        """Create a fungible token whose mint authority the backend controls; return it."""
        ...

    def mint_test_token(self, token: str, to: str, amount: int) -> None:
        """Mint ``amount`` base units of ``token`` to wallet ``to``."""
        ...


@runtime_checkable
class SupportsPlans(Protocol):
    """Adapters that expose the canonical plan of what they will sign (both shipped ones do).

    The plan is read from the built message / transaction itself, so it is exactly what the
    signature will cover; the policy engine judges the effects decoded from it.
    """

    def plan_of(self, unsigned: UnsignedTx) -> Plan:
        """The plan of ``unsigned``, read from the exact message / tx dict that will be signed.

        Raises:
            InvalidInputError: ``unsigned`` was not built for this adapter's chain, or uses
                something a plan cannot express (e.g. Solana address lookup tables).
        """
        ...

    def plan_of_signed(self, signed: SignedTx) -> Plan:
        """The plan of signed bytes (what the network will execute).

        Raises:
            InvalidInputError: the bytes are not a transaction this adapter signs.
        """
        ...

    def account_lookup(self) -> AccountLookup | None:
        """Chain reads for :func:`waiaas.plan.decode_plan` (token account -> mint, owner)."""
        ...


@runtime_checkable
class SupportsPlanBuild(Protocol):
    """Adapters that build a transaction from a stored plan (both shipped ones do)."""

    def build_plan(self, plan: Plan, *, nonce: int | None = None) -> UnsignedTx:
        """The transaction of ``plan`` with fresh blockhash / nonce / fees / gas, such that
        ``plan_of(build_plan(plan)) == plan``.

        Raises:
            InvalidInputError: a plan of another chain, network or chain id, or one this
                adapter cannot sign (another signer on Solana).
            ChainError: the node failed (as ``build``).
        """
        ...


@runtime_checkable
class SupportsTokenInfo(Protocol):
    """Adapters that read a token's decimals from the chain."""

    def token_decimals(self, token: str) -> int:
        """Decimals of ``token`` (mint account / ERC-20 ``decimals()``), cached per adapter.

        Raises:
            InvalidAddressError: not an address of this chain.
            InvalidInputError: not a token.
            ChainError: the node could not be asked.
        """
        ...


@dataclass(frozen=True)
class FeeQuote:
    """The network fee of a built transaction, for the people who approve it.

    Attributes:
        amount: the fee in native base units (lamports, wei).
        basis: ``"maximum"``: an upper bound the transaction cannot exceed (EVM: gas limit
            times ``maxFeePerGas``); ``"exact"``: what the transaction pays (Solana: the
            signature fee plus the priority fee its compute-budget instructions set);
            ``"estimate"``: the adapter's estimate, neither.
        gas_limit / max_fee_per_gas: the EVM factors of a maximum (``None`` elsewhere).
    """

    amount: int
    basis: str
    gas_limit: int | None = None
    max_fee_per_gas: int | None = None


@runtime_checkable
class SupportsFeeCap(Protocol):
    """Adapters whose transactions price their fee when built (EVM): the pipeline rebuilds a
    queued transaction at signing and holds its fee within what was judged and shown."""

    def cap_fee(self, unsigned: UnsignedTx, limit: FeeQuote) -> UnsignedTx | None:
        """``unsigned`` with its fee held within ``limit`` (the quote of the same request
        judged earlier), ``unsigned`` itself when it already fits, or ``None`` when the
        network now needs more than ``limit`` allows (no such transaction could land).

        Raises:
            InvalidInputError: ``unsigned`` was not built by this adapter.
        """
        ...


@runtime_checkable
class SupportsFeeQuote(Protocol):
    """Adapters that say what a built transaction can cost in network fees (both shipped
    ones do); the owner's approval page, message and notifications show it."""

    def fee_quote(self, unsigned: UnsignedTx) -> FeeQuote:
        """The network fee of ``unsigned``, read from the transaction itself (no I/O).

        Raises:
            InvalidInputError: ``unsigned`` was not built by this adapter.
        """
        ...


@dataclass(frozen=True)
class BalanceChanges:
    """What simulating a transaction does to its sender's balances.

    Attributes:
        native: the signed change of the sender's native balance in base units, **fees
            excluded** (negative = outflow). On Solana it also counts every decrease of
            lamports in accounts the sender controls that the adapter recognises (its token
            accounts, address lookup tables and nonce accounts whose authority it is, stake
            accounts whose withdrawer it is), so
            closing one of them to another address shows as an outflow, while lamports put
            into one (e.g. its own token account's rent) still count as spent.
        tokens: signed change per token (mint / token contract) the sender holds in the
            accounts the simulation touched; tokens whose balance did not change are absent.
        fee: the fee the simulation charged (or would charge) the sender, when known.
    """

    native: int
    tokens: Mapping[str, int]
    fee: int | None = None


@runtime_checkable
class SupportsBalanceSimulation(Protocol):
    """Adapters that can simulate a transaction and report the sender's balance changes."""

    def simulate_balance_changes(
        self, unsigned: UnsignedTx, *, tokens: Iterable[str] = ()
    ) -> BalanceChanges | None:
        """The sender's balance changes if ``unsigned`` ran now; ``None`` when the backend
        cannot simulate state changes (the caller decides what that means).

        ``tokens``: extra token contracts to compare balances of, for backends that must be
        told which tokens to read (eth-tester); others watch every token they can see.

        A transaction that fails in simulation changes nothing but the fee: ``native`` 0.

        Raises:
            InvalidInputError: ``unsigned`` was not built by this adapter.
            ChainError: the node failed (transient).
        """
        ...


@runtime_checkable
class SupportsExactBalanceChanges(Protocol):
    """Adapters that know some transactions' balance changes exactly, without a simulation.

    The pipeline asks this before simulating; the answer goes through the same comparison
    with the judged effects as a simulation's, and counts as one for
    ``WalletConfig.require_simulation``. Answer only where nothing the chain does at
    inclusion can change the result (e.g. an EVM value transfer with exactly 21,000 gas:
    no code can run at the recipient).
    """

    def exact_balance_changes(self, unsigned: UnsignedTx) -> BalanceChanges | None:
        """The sender's balance changes of ``unsigned`` when known exactly, else ``None``
        (then the transaction is simulated).

        Raises:
            InvalidInputError: ``unsigned`` was not built by this adapter.
        """
        ...


# --------------------------------------------------------------------------- family facts


@dataclass(frozen=True)
class NativeAsset:
    """The chain's own coin, for people: its symbol and the decimals of one whole coin.

    Attributes:
        symbol: ``"SOL"``, ``"ETH"``, ... (at most 16 characters, no spaces).
        decimals: base units per whole coin as a power of ten (``9``: lamports).

    Raises:
        InvalidInputError: a symbol or decimals out of range.

    Example::

        NativeAsset("SOL", 9)
    """

    symbol: str
    decimals: int

    def __post_init__(self) -> None:
        from waiaas.errors import InvalidInputError

        if (
            not isinstance(self.symbol, str)
            or not 0 < len(self.symbol) <= 16
            or not self.symbol.isprintable()
            or " " in self.symbol
        ):
            raise InvalidInputError(
                "a native symbol is 1-16 printable characters without spaces", field="symbol"
            )
        if isinstance(self.decimals, bool) or not isinstance(self.decimals, int):
            raise InvalidInputError("decimals must be an int", field="decimals")
        if not 0 <= self.decimals <= 36:
            raise InvalidInputError("decimals must be between 0 and 36", field="decimals")


@runtime_checkable
class SupportsNativeAsset(Protocol):
    """Adapters that name their native coin (both shipped ones do: SOL / 9, ETH / 18).

    Without it, the native coin has no symbol and no known decimals: the agent's handle takes
    and shows native amounts in base units only (``handle.transfer(to, "0.5")`` is refused,
    ``handle.send(Transfer(to=..., amount=500))`` works), and notifications and the approval
    page show ``"<n> base units"``.
    """

    native_asset: NativeAsset


@runtime_checkable
class SupportsBatch(Protocol):
    """Adapters whose ``build`` accepts a ``Batch`` (several requests in one atomic
    transaction: Solana). ``supports_batch`` must be ``True`` for the pipeline to pass one on.

    Without it (or ``False``: EVM), a ``Batch`` is refused with ``InvalidInputError``
    (``field="type"``) before anything is built or recorded.
    """

    supports_batch: bool


@runtime_checkable
class SupportsCallGuard(Protocol):
    """Adapters that know which raw calls would move assets past the typed requests.

    ``Transfer``, ``TokenTransfer`` and ``Approve`` carry budgets and approval limits; a
    ``ContractCall`` that does the same thing (Solana: an instruction to the System or SPL
    Token programs; EVM: an ERC-20 ``transfer`` / ``transferFrom`` / ``approve`` /
    ``increaseAllowance``) would bypass them, so the pipeline refuses it.

    Without it, no raw call is screened by the pipeline: contract calls are still denied by
    the policies until a CONTRACT_WHITELIST names the contract, so do not whitelist such a
    chain's asset programs.
    """

    def refused_call(self, to: str, data: bytes) -> tuple[str, str] | None:
        """Why a ``ContractCall`` to ``to`` (normalised) with ``data`` is refused, as
        ``(field, message)`` (``field``: ``"to"`` or ``"data"``), or ``None`` to let it
        through to the policies. Pure: no I/O."""
        ...


def native_asset_of(adapter: object) -> NativeAsset | None:
    """The adapter's native coin, or ``None`` when it does not say (see
    :class:`SupportsNativeAsset`).

    Example::

        native_asset_of(SolanaAdapter.local())   # NativeAsset(symbol='SOL', decimals=9)
    """
    value = getattr(adapter, "native_asset", None)
    return value if isinstance(value, NativeAsset) else None


def batch_supported(adapter: object) -> bool:
    """Whether ``adapter.build`` takes a ``Batch`` (``False`` unless it says
    ``supports_batch = True``; see :class:`SupportsBatch`)."""
    return getattr(adapter, "supports_batch", False) is True


def call_refusal(adapter: object, to: str, data: bytes) -> tuple[str, str] | None:
    """``(field, message)`` when the adapter refuses a raw call to ``to`` with ``data`` as a
    disguised transfer, else ``None`` (also when it has no guard; see
    :class:`SupportsCallGuard`)."""
    if isinstance(adapter, SupportsCallGuard):
        return adapter.refused_call(to, data)
    return None
