"""Public value types: enums and the transaction request models.

Amounts are Python ``int`` of base units (lamports, wei), from 0 to ``MAX_AMOUNT``
(2**256 - 1, the largest amount any supported chain can express). In JSON they are decimal
strings. Floats are refused everywhere: ``Transfer(to=..., amount=1.5)`` raises
:class:`~waiaas.errors.InvalidInputError` (naming the field), which is also a ``ValueError``.

Example::

    from waiaas import Transfer, TokenTransfer

    Transfer(to="9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin", amount=1_000_000)
    TokenTransfer(token="0x...", to="0x...", amount="250000000")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, SupportsIndex, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WrapValidator,
    field_validator,
)

# The metaclass of BaseModel (a stable name across pydantic 2.x; public only as a type).
from pydantic._internal._model_construction import ModelMetaclass

from waiaas import _display as _d
from waiaas.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAX_AMOUNT",
    "AccountSpec",
    "AgentInfo",
    "AgentList",
    "AgentStatus",
    "Amount",
    "Approve",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditEvent",
    "AuditPage",
    "AuditReport",
    "Batch",
    "BatchItem",
    "Chain",
    "ContractCall",
    "KillSwitchRelease",
    "KillSwitchState",
    "KillSwitchSummary",
    "Request",
    "Severity",
    "Tier",
    "TokenTransfer",
    "TransactionInfo",
    "TransactionList",
    "Transfer",
    "TxStatus",
    "TxType",
    "parse_amount",
    "parse_data",
]


class Chain(StrEnum):
    """Chain families waiaas ships adapters for (third-party adapters may add more)."""

    SOLANA = "solana"
    EVM = "evm"


class AgentStatus(StrEnum):
    """Lifecycle of an agent (CORE-02 §2.1)."""

    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"


class TxStatus(StrEnum):
    """Pipeline status of a transaction (CORE-02 §2.3)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    SUBMITTED = "SUBMITTED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        """True for CONFIRMED, FAILED, CANCELLED and EXPIRED."""
        return self in _TERMINAL


_TERMINAL = frozenset({TxStatus.CONFIRMED, TxStatus.FAILED, TxStatus.CANCELLED, TxStatus.EXPIRED})


class Tier(StrEnum):
    """Security tier a policy decision assigns, lowest first."""

    INSTANT = "INSTANT"
    NOTIFY = "NOTIFY"
    DELAY = "DELAY"
    APPROVAL = "APPROVAL"

    @property
    def rank(self) -> int:
        """0 for INSTANT up to 3 for APPROVAL; higher is stricter."""
        return _TIER_RANK[self]

    @staticmethod
    def highest(*tiers: Tier) -> Tier:
        """The strictest of ``tiers`` (INSTANT when none)."""
        return max(tiers, key=lambda t: t.rank, default=Tier.INSTANT)


_TIER_RANK = {Tier.INSTANT: 0, Tier.NOTIFY: 1, Tier.DELAY: 2, Tier.APPROVAL: 3}


class TxType(StrEnum):
    """Request types the pipeline handles."""

    TRANSFER = "TRANSFER"
    TOKEN_TRANSFER = "TOKEN_TRANSFER"  # noqa: S105
    CONTRACT_CALL = "CONTRACT_CALL"
    APPROVE = "APPROVE"
    BATCH = "BATCH"


class Severity(StrEnum):
    """Audit severities (CORE-02 §2.5)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AuditEvent(StrEnum):
    """Audit event types: the spec's list (CORE-02 §2.5) plus what later features need."""

    AGENT_CREATED = "AGENT_CREATED"
    AGENT_ACTIVATED = "AGENT_ACTIVATED"
    AGENT_SUSPENDED = "AGENT_SUSPENDED"
    AGENT_RESUMED = "AGENT_RESUMED"
    AGENT_TERMINATED = "AGENT_TERMINATED"
    AGENT_OWNER_SET = "AGENT_OWNER_SET"
    SESSION_ISSUED = "SESSION_ISSUED"
    SESSION_RENEWED = "SESSION_RENEWED"
    SESSION_REVOKED = "SESSION_REVOKED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    TX_REQUESTED = "TX_REQUESTED"
    TX_QUEUED = "TX_QUEUED"
    TX_EXECUTING = "TX_EXECUTING"
    TX_SIGNED = "TX_SIGNED"
    TX_SUBMITTED = "TX_SUBMITTED"
    TX_CONFIRMED = "TX_CONFIRMED"
    TX_FAILED = "TX_FAILED"
    TX_CANCELLED = "TX_CANCELLED"
    TX_EXPIRED = "TX_EXPIRED"
    TX_RETRY = "TX_RETRY"
    TX_APPROVED = "TX_APPROVED"
    TX_REJECTED = "TX_REJECTED"
    TX_RECOVERED = "TX_RECOVERED"
    TX_UNRESOLVED = "TX_UNRESOLVED"  # may have landed; the node cannot prove either way
    TX_RESOLVED = "TX_RESOLVED"  # an operator settled an unresolved transaction
    POLICY_VIOLATION = "POLICY_VIOLATION"
    POLICY_UPDATED = "POLICY_UPDATED"
    KEYSTORE_UNLOCKED = "KEYSTORE_UNLOCKED"
    KEYSTORE_LOCKED = "KEYSTORE_LOCKED"
    KEYSTORE_PASSWORD_CHANGED = "KEYSTORE_PASSWORD_CHANGED"  # noqa: S105
    KEY_ROTATED = "KEY_ROTATED"
    KILL_SWITCH_ACTIVATED = "KILL_SWITCH_ACTIVATED"
    KILL_SWITCH_RECOVERED = "KILL_SWITCH_RECOVERED"
    DAEMON_STARTED = "DAEMON_STARTED"
    DAEMON_STOPPED = "DAEMON_STOPPED"
    AUTH_FAILED = "AUTH_FAILED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    AUTO_STOP_TRIGGERED = "AUTO_STOP_TRIGGERED"
    NOTIFICATION_CHANNEL_UPDATED = "NOTIFICATION_CHANNEL_UPDATED"
    NOTIFICATION_FAILED = "NOTIFICATION_FAILED"
    BACKUP_CREATED = "BACKUP_CREATED"
    TAMPER_DETECTED = "TAMPER_DETECTED"
    APPROVAL_INVALIDATED = "APPROVAL_INVALIDATED"
    REQUEST_REFUSED = "REQUEST_REFUSED"
    DRY_RUN = "DRY_RUN"

    @property
    def default_severity(self) -> Severity:
        """The severity the spec gives this event (info unless listed otherwise)."""
        return _EVENT_SEVERITY.get(self, Severity.INFO)


_EVENT_SEVERITY = {
    AuditEvent.AGENT_SUSPENDED: Severity.WARNING,
    AuditEvent.TX_FAILED: Severity.WARNING,
    AuditEvent.POLICY_VIOLATION: Severity.WARNING,
    AuditEvent.AUTH_FAILED: Severity.WARNING,
    AuditEvent.RATE_LIMIT_EXCEEDED: Severity.WARNING,
    AuditEvent.NOTIFICATION_FAILED: Severity.WARNING,
    AuditEvent.AUTO_STOP_TRIGGERED: Severity.CRITICAL,
    AuditEvent.KILL_SWITCH_ACTIVATED: Severity.CRITICAL,
    AuditEvent.KILL_SWITCH_RECOVERED: Severity.WARNING,
    AuditEvent.TAMPER_DETECTED: Severity.CRITICAL,
    AuditEvent.APPROVAL_INVALIDATED: Severity.WARNING,
    AuditEvent.REQUEST_REFUSED: Severity.WARNING,
    AuditEvent.TX_UNRESOLVED: Severity.CRITICAL,
    AuditEvent.TX_RESOLVED: Severity.WARNING,
}


# --------------------------------------------------------------------------- amounts


MAX_AMOUNT = 2**256 - 1
"""The largest amount accepted anywhere (an EVM uint256; Solana amounts are u64)."""

_MAX_AMOUNT_DIGITS = len(str(MAX_AMOUNT))


def parse_amount(value: object, *, field: str = "amount") -> int:
    """Parse a base-unit amount: an ``int`` or decimal-digit string from 0 to ``MAX_AMOUNT``.

    Floats, bools, signs, exponents, blanks, non-digits and values above ``MAX_AMOUNT``
    are refused with :class:`~waiaas.errors.InvalidInputError` (a ``ValueError``), because
    an inexact amount must never reach a signature.

    >>> parse_amount("1000000000000000000000")
    1000000000000000000000
    """
    if isinstance(value, bool):
        raise InvalidInputError(
            f"{field} must be an integer of base units, not a bool", field=field
        )
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if not text or not text.isascii() or not text.isdigit():
            shown = repr(text[:40].encode("ascii", "backslashreplace").decode("ascii"))
            raise InvalidInputError(
                f"{field} must be a decimal string of base units, got {shown}", field=field
            )
        if len(text.lstrip("0")) > _MAX_AMOUNT_DIGITS:
            raise InvalidInputError(f"{field} must be at most 2**256 - 1", field=field)
        result = int(text)
    else:
        raise InvalidInputError(
            f"{field} must be an integer of base units (int or decimal string), "
            f"not {type(value).__name__}",
            field=field,
        )
    if result < 0:
        raise InvalidInputError(f"{field} must not be negative", field=field)
    if result > MAX_AMOUNT:
        raise InvalidInputError(f"{field} must be at most 2**256 - 1", field=field)
    return result


def _amount_validator(value: Any, handler: Any) -> int:
    return parse_amount(value)


Amount = Annotated[
    int,
    WrapValidator(_amount_validator),
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
]
"""An exact, non-negative amount of base units. Serialised to JSON as a decimal string."""


# --------------------------------------------------------------------------- requests


def _invalid(model: str, exc: ValidationError) -> InvalidInputError:
    """One InvalidInputError for every problem pydantic found (the first names ``field``)."""
    problems = []
    fields = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or model
        fields.append(loc)
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}")
    first = fields[0] if fields else None
    return InvalidInputError(
        f"invalid {model}: " + "; ".join(problems), field=first, problems=problems
    )


class _RequestMeta(ModelMetaclass):
    """Building a request model (``Transfer(...)``) raises InvalidInputError instead of
    pydantic's ValidationError. Only direct construction goes through here: validation of a
    request nested in another model (a Batch, a user's model, the Request union) stays
    pydantic's, so every problem is still reported at once there."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise _invalid(cls.__name__, exc) from None


class _Request(BaseModel, metaclass=_RequestMeta):
    """Base of the request models: construction and ``model_validate*`` raise
    :class:`~waiaas.errors.InvalidInputError` instead of pydantic's ``ValidationError``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    @field_validator("to", "token", "spender", check_fields=False)
    @classmethod
    def _non_blank(cls, value: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty address string")
        return value.strip()

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Validate ``obj``; raises :class:`~waiaas.errors.InvalidInputError`."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise _invalid(cls.__name__, exc) from None

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Any:
        """Validate a JSON document; raises :class:`~waiaas.errors.InvalidInputError`."""
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise _invalid(cls.__name__, exc) from None


class Transfer(_Request):
    """Send the chain's native asset (SOL, ETH) to ``to``.

    Args:
        to: recipient address (validated and normalised per chain by the adapter).
        amount: base units (lamports, wei).
        memo: optional memo (Solana memo program; ignored on EVM).
    """

    type: Literal[TxType.TRANSFER] = TxType.TRANSFER
    to: str
    amount: Amount
    memo: str | None = Field(default=None, max_length=256)

    if TYPE_CHECKING:  # the inputs accepted, for type checkers without the pydantic plugin

        def __init__(self, *, to: str, amount: int | str, memo: str | None = None) -> None: ...


class TokenTransfer(_Request):
    """Send a fungible token (SPL mint on Solana, ERC-20 contract on EVM).

    Args:
        token: the mint (Solana) or token contract (EVM) address.
        to: the recipient *wallet* address (Solana: its associated token account is derived,
            and created when missing, paid by the sending agent).
        amount: base units of the token.
        decimals: the token's decimals, when known (Solana ``transfer_checked`` needs it;
            the adapter reads it from the mint when omitted).
    """

    type: Literal[TxType.TOKEN_TRANSFER] = TxType.TOKEN_TRANSFER
    token: str
    to: str
    amount: Amount
    decimals: int | None = Field(default=None, ge=0, le=255)

    if TYPE_CHECKING:

        def __init__(
            self, *, token: str, to: str, amount: int | str, decimals: int | None = None
        ) -> None: ...


class AccountSpec(BaseModel):
    """One account of a Solana program instruction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pubkey: str
    is_signer: bool = False
    is_writable: bool = False


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
MAX_DATA_BYTES = 128 * 1024
"""Most bytes of calldata / instruction data one request may carry."""


def parse_data(value: object, *, field: str = "data") -> bytes:
    """Calldata / instruction data from ``bytes`` or ``0x``-hex text.

    Text must be ``0x`` followed by an even number of hex digits and nothing else (no
    spaces, no bare hex, no other encoding): a string is never taken as its UTF-8 bytes and
    bare text is never guessed to be hex, so what is evaluated is what is signed.

    Raises:
        ValueError: anything else.

    >>> parse_data("0x18160ddd").hex()
    '18160ddd'
    """
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        if not value.startswith(("0x", "0X")):
            raise ValueError(
                f"{field} given as text must be 0x-prefixed hex (e.g. '0x18160ddd'); "
                "pass bytes for raw data"
            )
        body = value[2:]
        if len(body) % 2 or not _HEX_DIGITS.issuperset(body):
            raise ValueError(f"{field} must be 0x followed by an even number of hex digits")
        data = bytes.fromhex(body)
    else:
        raise ValueError(f"{field} must be bytes or a 0x-hex string, not {type(value).__name__}")
    if len(data) > MAX_DATA_BYTES:
        raise ValueError(f"{field} is longer than {MAX_DATA_BYTES} bytes")
    return data


def _data_validator(value: Any, handler: Any) -> bytes:
    return parse_data(value)


HexBytes = Annotated[
    bytes,
    WrapValidator(_data_validator),
    PlainSerializer(lambda v: "0x" + v.hex(), return_type=str, when_used="json"),
]
"""Bytes given as ``bytes`` or ``0x``-hex text; serialised to JSON as ``0x``-hex (lossless)."""


class ContractCall(_Request):
    """Call a contract (EVM calldata) or a program (Solana instruction).

    Args:
        to: the contract (EVM) or program id (Solana).
        data: calldata (EVM; the first 4 bytes are the method selector) or instruction data,
            as ``bytes`` or ``0x``-hex text (anything else is refused; JSON shows it as
            ``0x``-hex and reads it back byte for byte).
        value: native amount sent with the call (EVM only).
        accounts: the instruction's accounts (Solana only).
    """

    type: Literal[TxType.CONTRACT_CALL] = TxType.CONTRACT_CALL
    to: str
    data: HexBytes = b""
    value: Amount = 0
    accounts: tuple[AccountSpec, ...] = Field(default=(), max_length=64)

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            to: str,
            data: bytes | str = b"",
            value: int | str = 0,
            accounts: Sequence[AccountSpec] = (),
        ) -> None: ...

    @property
    def selector(self) -> str | None:
        """The EVM 4-byte method selector as ``0x`` + 8 hex digits, if the data has one."""
        return "0x" + self.data[:4].hex() if len(self.data) >= 4 else None


class Approve(_Request):
    """Let ``spender`` move up to ``amount`` of ``token`` (ERC-20 approve / SPL approve)."""

    type: Literal[TxType.APPROVE] = TxType.APPROVE
    token: str
    spender: str
    amount: Amount
    decimals: int | None = Field(default=None, ge=0, le=255)

    if TYPE_CHECKING:

        def __init__(
            self, *, token: str, spender: str, amount: int | str, decimals: int | None = None
        ) -> None: ...


BatchItem = Annotated[
    Transfer | TokenTransfer | ContractCall | Approve, Field(discriminator="type")
]


class Batch(_Request):
    """Several requests executed atomically in one transaction (Solana only)."""

    type: Literal[TxType.BATCH] = TxType.BATCH
    requests: tuple[BatchItem, ...] = Field(min_length=1, max_length=16)

    if TYPE_CHECKING:

        def __init__(
            self, *, requests: Sequence[Transfer | TokenTransfer | ContractCall | Approve]
        ) -> None: ...


Request = Annotated[
    Transfer | TokenTransfer | ContractCall | Approve | Batch, Field(discriminator="type")
]
"""Any transaction request; discriminated on ``type``."""


# --------------------------------------------------------------------------- results


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgentInfo(_Result):
    """An agent as the public API shows it (never any key material)."""

    id: str
    name: str
    chain: str
    network: str
    public_key: str
    status: AgentStatus
    owner_address: str | None
    created_at: int
    updated_at: int
    suspended_at: int | None = None
    suspension_reason: str | None = None

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return _d.short_repr(
            "AgentInfo",
            [
                ("name", self.name),
                ("id", self.id),
                ("chain", f"{self.chain}/{self.network}"),
                ("status", self.status),
                ("public_key", self.public_key),
                ("owner", self.owner_address),
            ],
        )

    def _repr_html_(self) -> str:
        return _d.fields_html(
            f"Agent {self.name!r}",
            [
                ("id", self.id),
                ("chain", f"{self.chain}/{self.network}"),
                ("status", _d.raw(_d.badge(self.status))),
                ("public key", self.public_key),
                ("owner", self.owner_address),
                ("created", _d.fmt_time(self.created_at)),
                ("suspended", _d.fmt_time(self.suspended_at)),
                ("suspension reason", self.suspension_reason),
            ],
        )

    def _row(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "chain": self.chain,
            "network": self.network,
            "status": self.status.value,
            "public_key": self.public_key,
            "owner_address": self.owner_address,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "suspended_at": self.suspended_at,
            "suspension_reason": self.suspension_reason,
        }


class TransactionInfo(_Result):
    """A recorded transaction and where it stands.

    Attributes:
        id: the waiaas transaction id (UUIDv7).
        status: the pipeline status.
        tier: the tier the policy decision assigned (``None`` when denied).
        tx_hash: the chain's transaction id once signed (the audit names it in the row
            recording the signing: ``TX_SIGNED``, or ``TX_REQUESTED`` for bytes presigned
            at admission; see :class:`AuditEntry`).
        request: the full request, exactly as it will be (or was) executed.
        asset: ``"native"`` or the token address the amount is in.
        error: the error code and message when FAILED / CANCELLED / EXPIRED.
        execute_after: for DELAY, when ``process_due()`` may execute it.
        approval_expires_at: for APPROVAL, when the owner's window closes.
        fee: the fee the chain charged, once known.
        spend: what the transaction counts against budgets, per asset key (``"native"`` or
            a token address), in base units: amounts, token allowances, rent and network
            fees (on EVM the maximum fee). ``None`` for rows recorded without it.

    The policy decision (``Wallet.get_transaction(...).decision``) is kept whole, every
    reason with its sentence and figures and the budgets checked, for a request that was
    refused, queued (DELAY, APPROVAL) or fired AUTO_STOP: what the owner reads to decide
    and to understand. For an allowed INSTANT or NOTIFY request only its outcome, tier and
    fees are kept: it reads back with no reasons (rows written before this form keep what
    identified each reason: rule id, policy type, effect, tier, with a short sentence and no
    ``figures``), and ``spend`` is this row's. ``Wallet.dry_run`` or a policy replay shows
    the reasons and figures again.
    """

    id: str
    agent_id: str
    session_id: str | None
    chain: str
    network: str | None
    type: TxType
    status: TxStatus
    tier: Tier | None
    tx_hash: str | None
    amount: Amount | None
    to_address: str | None
    asset: str | None
    request: dict[str, Any] | None
    created_at: int
    queued_at: int | None
    executed_at: int | None
    execute_after: int | None = None
    approval_expires_at: int | None = None
    fee: Amount | None = None
    error: str | None = None
    spend: dict[str, Amount] | None = None

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return _d.short_repr(
            type(self).__name__,
            [
                ("id", self.id),
                ("type", self.type),
                ("status", self.status),
                ("tier", self.tier),
                ("amount", _d.amount_cells(self.chain, self.asset, self.amount) or None),
                ("to", self.to_address),
                ("tx_hash", self.tx_hash),
                ("error", self.error),
            ],
        )

    def _repr_html_(self) -> str:
        decision = getattr(self, "decision", None)
        pairs: list[tuple[str, object]] = [
            ("id", self.id),
            ("agent", self.agent_id),
            ("chain", f"{self.chain}/{self.network}" if self.network else self.chain),
            ("type", self.type),
            ("status", _d.raw(_d.badge(self.status))),
            ("tier", _d.raw(_d.badge(self.tier)) if self.tier else None),
            ("amount", _d.amount_cells(self.chain, self.asset, self.amount)),
            ("asset", self.asset if self.asset not in (None, "native") else None),
            ("to", self.to_address),
            ("tx hash", self.tx_hash),
            ("fee", _d.amount_cells(self.chain, None, self.fee)),
            ("created", _d.fmt_time(self.created_at)),
            ("queued", _d.fmt_time(self.queued_at)),
            ("executed", _d.fmt_time(self.executed_at)),
            ("executes after", _d.fmt_time(self.execute_after)),
            ("approval expires", _d.fmt_time(self.approval_expires_at)),
            ("error", self.error),
        ]
        if decision is not None:
            pairs.append(("decision", decision.summary()))
        return _d.fields_html(f"{self.type.value} transaction", pairs)

    def _row(self) -> dict[str, object]:
        value, unit = (
            _d.human_amount(self.chain, self.asset, self.amount)
            if self.amount is not None
            else (None, None)
        )
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "session_id": self.session_id,
            "chain": self.chain,
            "network": self.network,
            "type": self.type.value,
            "status": self.status.value,
            "tier": self.tier.value if self.tier else None,
            "amount": value,
            "unit": unit,
            "amount_base_units": None if self.amount is None else str(self.amount),
            "to_address": self.to_address,
            "asset": self.asset,
            "tx_hash": self.tx_hash,
            "fee_base_units": None if self.fee is None else str(self.fee),
            "created_at": self.created_at,
            "queued_at": self.queued_at,
            "executed_at": self.executed_at,
            "error": self.error,
        }


class AuditEntry(_Result):
    """One audit-log row.

    ``details`` holds no null values: a key with nothing to say is left out (read it with
    ``details.get(...)``). A transaction's status change names ``from`` / ``to`` only where
    its event type does not imply them (``TX_CONFIRMED`` from SUBMITTED to CONFIRMED,
    ``TX_SUBMITTED`` from EXECUTING to SUBMITTED), and ``session_id`` only where the agent
    moved it (the transaction's session is on its ``TX_REQUESTED`` row). Its hash (and
    nonce) is in the row that records its signing: ``TX_SIGNED`` when it was signed from a
    claim, or, for bytes presigned at admission (no ``TX_SIGNED`` or ``TX_SUBMITTED`` row),
    its ``TX_REQUESTED`` row, which then also records the move from PENDING to SUBMITTED
    (in a database written before: a ``TX_SUBMITTED`` row whose ``from`` is ``PENDING``;
    :func:`waiaas.pipeline.states.signing_record` and ``audited_move`` read each form).

    A ``TX_REQUESTED`` row of an admitted request stores only its tier (none for INSTANT)
    and that hash: the request's ``type``, ``amount``, ``asset``, ``to`` and its
    ``plan_digest`` are its transaction's, covered by that row's MAC, and ``Wallet.audit``
    puts them back (and the
    ``fee`` of a final move) from a row whose MAC verifies; ``details`` read as stored
    otherwise.
    """

    id: int
    timestamp: int
    event_type: str
    actor: str
    agent_id: str | None
    session_id: str | None
    tx_id: str | None
    details: dict[str, Any]
    severity: Severity
    ip_address: str | None = None

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return _d.short_repr(
            "AuditEntry",
            [
                ("id", self.id),
                ("at", _d.fmt_time(self.timestamp)),
                ("event_type", self.event_type),
                ("severity", self.severity),
                ("actor", self.actor),
                ("tx_id", self.tx_id),
            ],
        )

    def _repr_html_(self) -> str:
        return _d.fields_html(
            f"Audit entry {self.id}: {self.event_type}",
            [
                ("time", _d.fmt_time(self.timestamp)),
                ("severity", _d.raw(_d.badge(self.severity))),
                ("actor", self.actor),
                ("agent", self.agent_id),
                ("session", self.session_id),
                ("transaction", self.tx_id),
                ("details", self.details),
                ("ip address", self.ip_address),
            ],
        )

    def _row(self) -> dict[str, object]:
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "event_type": self.event_type,
            "severity": self.severity.value,
            "actor": self.actor,
            "agent_id": self.agent_id,
            "session_id": self.session_id,
            "tx_id": self.tx_id,
            "details": self.details,
            "ip_address": self.ip_address,
        }


class AuditPage(_Result):
    """A page of audit entries, newest first; pass ``next_cursor`` to get the next page."""

    entries: tuple[AuditEntry, ...]
    next_cursor: int | None

    def __len__(self) -> int:
        return len(self.entries)

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        events: dict[str, int] = {}
        for entry in self.entries:
            events[entry.event_type] = events.get(entry.event_type, 0) + 1
        top = ", ".join(f"{k}: {v}" for k, v in sorted(events.items(), key=lambda kv: -kv[1])[:4])
        more = ", ..." if len(events) > 4 else ""
        return (
            f"AuditPage({len(self.entries)} entries"
            f"{' {' + top + more + '}' if top else ''}, next_cursor={self.next_cursor})"
        )

    def _repr_html_(self) -> str:
        rows = [
            (
                e.id,
                _d.fmt_time(e.timestamp),
                e.event_type,
                _d.raw(_d.badge(e.severity)),
                e.actor,
                _d.short(e.tx_id) if e.tx_id else None,
                e.details,
            )
            for e in self.entries
        ]
        more = f"; next_cursor={self.next_cursor}" if self.next_cursor is not None else ""
        return _d.table_html(
            ("id", "time", "event", "severity", "actor", "transaction", "details"),
            rows,
            caption=f"Audit log: {len(self.entries)} entries, newest first{more}",
        )

    def to_dataframe(self) -> pd.DataFrame:
        """The entries as a pandas DataFrame (needs the ``pandas`` extra).

        ``timestamp`` is a UTC datetime; ``details`` holds the decoded dicts.

        Example::

            df = wallet.audit(limit=500).to_dataframe()
            df[df.severity == "warning"]
        """
        return _d.frame(
            [e._row() for e in self.entries],
            (
                "id",
                "timestamp",
                "event_type",
                "severity",
                "actor",
                "agent_id",
                "session_id",
                "tx_id",
                "details",
                "ip_address",
            ),
            times=("timestamp",),
            exact=("id", "details"),
        )


class AuditCheckpoint(_Result):
    """A signed statement "the audit log of wallet ``wallet_id`` had ``seq`` rows ending in
    ``head_hash`` at ``created_at``" (ed25519, key sealed in the wallet's keystore).

    Keep exported checkpoints somewhere the wallet's host cannot write (another machine, a
    ticket, an email): :meth:`Wallet.verify_audit` with ``checkpoint=`` then proves the log
    still holds what existed then. :meth:`verify` needs only the public key.

    Attributes:
        wallet_id: the keystore id of the wallet.
        seq: the id of the audit row the checkpoint ends at.
        head_hash: that row's chain hash (hex SHA-256).
        created_at: Unix seconds.
        public_key: the wallet's checkpoint public key (hex ed25519).
        signature: hex ed25519 signature of :meth:`message`.

    Example::

        cp = wallet.export_audit_checkpoint()
        saved = cp.model_dump_json()
        assert AuditCheckpoint.model_validate_json(saved).verify()
    """

    wallet_id: str
    seq: int
    head_hash: str
    created_at: int
    public_key: str
    signature: str

    def message(self) -> bytes:
        """The exact bytes the signature covers."""
        from waiaas.integrity import checkpoint_message

        return checkpoint_message(self.wallet_id, self.seq, self.head_hash, self.created_at)

    def verify(self, public_key: str | None = None) -> bool:
        """Whether the signature is valid (for ``public_key`` if given, else the embedded one).

        Pass the public key you recorded when you first trusted the wallet: the embedded one
        proves only self-consistency.
        """
        from waiaas.integrity import verify_checkpoint_signature

        return verify_checkpoint_signature(
            self.wallet_id,
            self.seq,
            self.head_hash,
            self.created_at,
            public_key if public_key is not None else self.public_key,
            self.signature,
        )


class AuditReport(_Result):
    """What :meth:`Wallet.verify_audit` found.

    Attributes:
        ok: no broken link, every stored checkpoint matches, the recorded head is present.
        source: the database file checked.
        rows_checked: audit rows whose hash and MAC were verified.
        head_id, head_hash: the last row verified (``0`` / the genesis hash for none).
        first_broken_id: the audit row id where the first problem is (None when ok, or when
            the problem is missing rows after the last one).
        problem: ``altered`` (content does not match its hash), ``forged`` (inserted or
            rewritten without the key), ``deleted``, ``reordered``, ``truncated`` (rows the
            wallet committed are gone: tail deleted or WAL lost), ``checkpoint`` (a signed
            checkpoint does not match the log), or None.
        message: a sentence naming what was found.
        checkpoints_checked: signed checkpoints compared against the log.
    """

    ok: bool
    source: str
    rows_checked: int
    head_id: int
    head_hash: str
    first_broken_id: int | None = None
    problem: str | None = None
    message: str | None = None
    checkpoints_checked: int = 0


class KillSwitchState(_Result):
    """Whether the kill switch is active, since when, why and by whom."""

    active: bool
    activated_at: int | None = None
    reason: str | None = None
    actor: str | None = None

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        if not self.active:
            return "KillSwitchState(active=False)"
        return _d.short_repr(
            "KillSwitchState",
            [
                ("active", True),
                ("since", _d.fmt_time(self.activated_at)),
                ("reason", self.reason),
                ("actor", self.actor),
            ],
        )

    def _repr_html_(self) -> str:
        return _d.fields_html(
            "Kill switch " + ("ON" if self.active else "off"),
            [
                ("since", _d.fmt_time(self.activated_at) if self.active else None),
                ("reason", self.reason),
                ("by", self.actor),
            ],
        )


class _KillSwitchResult(_Result):
    """Shared by the kill-switch results: mapping-style access (earlier versions returned a
    dict), JSON-able data, and a one-line repr / HTML view from :meth:`_rows`."""

    _title: ClassVar[str] = ""

    def __getitem__(self, name: str) -> object:
        """Mapping-style access (``summary["agents_suspended"]``)."""
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (ids as lists)."""
        return self.model_dump(mode="json")

    def _rows(self) -> list[tuple[str, object]]:
        raise NotImplementedError

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return _d.short_repr(type(self).__name__, self._rows())

    def _repr_html_(self) -> str:
        return _d.fields_html(
            self._title, [(name.replace("_", " "), value) for name, value in self._rows()]
        )


class KillSwitchSummary(_KillSwitchResult):
    """What :meth:`waiaas.Wallet.kill_switch` stopped, in the one database transaction that
    turned the kill switch on.

    Attributes:
        reason: why it was turned on (audited, sent to every channel).
        activated_at: when, Unix seconds.
        agents_suspended / sessions_revoked / transactions_cancelled: how many.
        suspended_ids / revoked_ids / cancelled_ids: which agents, sessions and PENDING or
            QUEUED transactions (transactions already signed are reconciled as usual).

    Example::

        summary = wallet.kill_switch("suspicious activity")
        summary.agents_suspended, summary.cancelled_ids
        json.dumps(summary.to_dict())
    """

    _title: ClassVar[str] = "Kill switch activated"

    reason: str
    activated_at: int
    agents_suspended: int
    sessions_revoked: int
    transactions_cancelled: int
    suspended_ids: tuple[str, ...] = ()
    revoked_ids: tuple[str, ...] = ()
    cancelled_ids: tuple[str, ...] = ()

    def _rows(self) -> list[tuple[str, object]]:
        return [
            ("reason", self.reason),
            ("at", _d.fmt_time(self.activated_at)),
            ("agents_suspended", self.agents_suspended),
            ("sessions_revoked", self.sessions_revoked),
            ("transactions_cancelled", self.transactions_cancelled),
        ]


class KillSwitchRelease(_KillSwitchResult):
    """What :meth:`waiaas.Wallet.release_kill_switch` did when it turned the kill switch off.

    Attributes:
        activated_at: when the kill switch had been turned on, Unix seconds.
        released_at: when it was turned off.
        agents_resumed: how many agents it suspended are ACTIVE again (only with
            ``resume_agents=True``); ``resumed_ids`` names them.

    Example::

        release = wallet.release_kill_switch(resume_agents=True)
        release.agents_resumed
    """

    _title: ClassVar[str] = "Kill switch released"

    activated_at: int | None
    released_at: int
    agents_resumed: int
    resumed_ids: tuple[str, ...] = ()

    def _rows(self) -> list[tuple[str, object]]:
        return [
            ("activated", _d.fmt_time(self.activated_at)),
            ("released", _d.fmt_time(self.released_at)),
            ("agents_resumed", self.agents_resumed),
        ]


# --------------------------------------------------------------------------- listings

_TX_COLUMNS = (
    "id",
    "agent_id",
    "session_id",
    "chain",
    "network",
    "type",
    "status",
    "tier",
    "amount",
    "unit",
    "amount_base_units",
    "to_address",
    "asset",
    "tx_hash",
    "fee_base_units",
    "created_at",
    "queued_at",
    "executed_at",
    "error",
)


class TransactionList(list[TransactionInfo]):
    """A list of transactions (what ``Wallet.list_transactions`` returns) that also renders
    as a table in a notebook and converts to a DataFrame.

    Example::

        txs = wallet.list_transactions(agent_id=agent.id)
        df = txs.to_dataframe()          # needs the pandas extra
        df.groupby("tier").amount.sum()  # exact Decimals, never floats
    """

    @overload
    def __getitem__(self, index: SupportsIndex) -> TransactionInfo: ...

    @overload
    def __getitem__(self, index: slice) -> TransactionList: ...

    def __getitem__(self, index: SupportsIndex | slice) -> TransactionInfo | TransactionList:
        if isinstance(index, slice):
            return TransactionList(super().__getitem__(index))
        return super().__getitem__(index)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for tx in self:
            counts[tx.status.value] = counts.get(tx.status.value, 0) + 1
        inner = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        return f"TransactionList({len(self)} transactions{' {' + inner + '}' if inner else ''})"

    def _repr_html_(self) -> str:
        rows = [
            (
                _d.short(t.id),
                _d.fmt_time(t.created_at),
                t.type,
                _d.raw(_d.badge(t.status)),
                _d.raw(_d.badge(t.tier)) if t.tier else None,
                _d.amount_cells(t.chain, t.asset, t.amount),
                _d.short(t.to_address) if t.to_address else None,
                _d.short(t.tx_hash) if t.tx_hash else None,
                t.error,
            )
            for t in self
        ]
        return _d.table_html(
            ("id", "created", "type", "status", "tier", "amount", "to", "tx hash", "error"),
            rows,
            caption=f"{len(self)} transactions, newest first",
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per transaction (needs the ``pandas`` extra).

        Times (``created_at``, ``queued_at``, ``executed_at``) are UTC datetimes. ``amount``
        is an exact :class:`~decimal.Decimal` in whole units of ``unit`` (SOL, ETH; ``None``
        for a token of unknown decimals); ``amount_base_units`` and ``fee_base_units`` are
        exact decimal strings. Nothing is a float.
        """
        return _d.frame(
            [t._row() for t in self],
            _TX_COLUMNS,
            times=("created_at", "queued_at", "executed_at"),
            exact=("amount", "amount_base_units", "fee_base_units"),
        )


class AgentList(list[AgentInfo]):
    """A list of agents (what ``Wallet.list_agents`` returns) with a table rendering and
    :meth:`to_dataframe`."""

    @overload
    def __getitem__(self, index: SupportsIndex) -> AgentInfo: ...

    @overload
    def __getitem__(self, index: slice) -> AgentList: ...

    def __getitem__(self, index: SupportsIndex | slice) -> AgentInfo | AgentList:
        if isinstance(index, slice):
            return AgentList(super().__getitem__(index))
        return super().__getitem__(index)

    def __repr__(self) -> str:
        names = ", ".join(f"{a.name} ({a.status.value})" for a in self[:5])
        more = ", ..." if len(self) > 5 else ""
        return f"AgentList({len(self)} agents{': ' + names + more if names else ''})"

    def _repr_html_(self) -> str:
        rows = [
            (
                a.name,
                a.id,
                f"{a.chain}/{a.network}",
                _d.raw(_d.badge(a.status)),
                a.public_key,
                a.owner_address,
                _d.fmt_time(a.created_at),
            )
            for a in self
        ]
        return _d.table_html(
            ("name", "id", "chain", "status", "public key", "owner", "created"),
            rows,
            caption=f"{len(self)} agents",
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per agent (needs the ``pandas`` extra); times are UTC datetimes."""
        return _d.frame(
            [a._row() for a in self],
            (
                "id",
                "name",
                "chain",
                "network",
                "status",
                "public_key",
                "owner_address",
                "created_at",
                "updated_at",
                "suspended_at",
                "suspension_reason",
            ),
            times=("created_at", "updated_at", "suspended_at"),
        )


def _plain_enum_reprs(classes: Iterable[type[StrEnum]]) -> None:
    for cls in classes:
        cls.__repr__ = _d.enum_repr  # type: ignore[method-assign,assignment]


# Enums print as ``TxStatus.CONFIRMED``, not ``<TxStatus.CONFIRMED: 'CONFIRMED'>``.
_plain_enum_reprs((Chain, AgentStatus, TxStatus, Tier, TxType, Severity, AuditEvent))
