"""Agent sessions: HS256 JWT issue, verify, revoke, renew, expiry, and session constraints.

An agent never holds a key; it holds a *session token*. The token is an HS256 JWT carrying
``sub`` (the agent id), ``sid`` (the session id), ``iat``, ``exp`` and a random ``jti``. It is
signed with a per-wallet secret of 32 random bytes, created on first use and kept sealed in the
keystore under the name ``"session-jwt-secret"``. The database stores only SHA-256(token) in
hex (``sessions.token_hash``); the token itself exists only in the :class:`IssuedSession`
returned to the owner, whose ``repr`` masks it.

Verification (:meth:`SessionManager.verify`) checks, in this order: the token's shape and
length, the JOSE header against an allow-list (``alg`` must be ``HS256``; ``none``, RS256,
ES256, ... and any extra header field are refused before the signature is even computed),
the signature, the required claims, expiry, the database row found by the token's hash (its
session id and agent must match the claims, and it must be neither revoked nor replaced by a
renewal), and finally that the agent is ACTIVE. Every refusal writes an ``AUTH_FAILED`` audit
row in its own committed transaction and raises an :class:`~waiaas.errors.AuthError`
subclass (or :class:`~waiaas.errors.AgentNotActiveError` when only the agent's status is
wrong). Neither the token nor its hash ever appears in an audit row, a log line, a ``repr``
or an exception.

Constraints (:class:`SessionConstraints`) narrow what one session may do; they are enforced
by :meth:`SessionManager.enforce_and_record` inside the pipeline's unit of work, which also
updates the session's usage (:class:`SessionUsage`) in the same database transaction.

Example::

    from waiaas.sessions import SessionConstraints, SessionManager

    sessions = SessionManager(db, keystore, clock, config)
    issued = sessions.issue(agent_id, ttl=600,
                            constraints=SessionConstraints(max_amount_per_tx=10**9))
    verified = sessions.verify(issued.token)     # VerifiedSession(session_id=..., ...)
    sessions.revoke(issued.session_id, actor="owner")
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets as _secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, SupportsIndex, overload, runtime_checkable

import jwt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)
from sqlalchemy import func
from sqlmodel import col, select

from waiaas import _display as _d
from waiaas._validate import shown
from waiaas.clock import Clock
from waiaas.config import WalletConfig
from waiaas.db.database import Database
from waiaas.db.portable import as_json
from waiaas.db.statements import built, cas_params, compare_and_set
from waiaas.db.tables import AgentRow, SessionRow
from waiaas.db.uow import UnitOfWork
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    ConstraintViolationError,
    InvalidAddressError,
    InvalidInputError,
    KeystoreError,
    NotFoundError,
    StateError,
    StorageError,
    TokenExpiredError,
    TokenRevokedError,
    WaiaasError,
)
from waiaas.ids import new_id
from waiaas.policy import NATIVE, normalize_address, spend_of
from waiaas.types import (
    MAX_AMOUNT,
    AgentStatus,
    Amount,
    Approve,
    AuditEvent,
    Batch,
    ContractCall,
    TokenTransfer,
    Transfer,
    TxType,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "JWT_SECRET_NAME",
    "MAX_TOKEN_LENGTH",
    "NATIVE",
    "IssuedSession",
    "SecretStore",
    "SessionConstraints",
    "SessionInfo",
    "SessionList",
    "SessionManager",
    "SessionUsage",
    "VerifiedSession",
]

log = logging.getLogger("waiaas.sessions")

#: Name of the per-wallet JWT signing secret in the keystore.
JWT_SECRET_NAME = "session-jwt-secret"  # noqa: S105  (a name, not a secret)
#: Tokens longer than this are refused before any parsing (ours are about 300 characters).
MAX_TOKEN_LENGTH = 2048

_ALGORITHM = "HS256"
_SECRET_BYTES = 32
_ALLOWED_HEADER = frozenset({"alg", "typ"})
_REQUIRED_CLAIMS = ("sub", "sid", "iat", "exp", "jti")
_MAX_CLAIM_TEXT = 128
# header.payload.signature in base64url; an empty signature still reaches the alg check.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SWEEP_BATCH = 500
# Audit actor for a refusal where no claim could be trusted (bad signature, garbage, ...).
_ANONYMOUS = "anonymous"

Request = Transfer | TokenTransfer | ContractCall | Approve | Batch


# --------------------------------------------------------------------------- ports


@runtime_checkable
class SecretStore(Protocol):
    """Where the session signing secret is kept: an unlocked keystore.

    ``get_secret`` raises :class:`~waiaas.errors.NotFoundError` (or ``KeyError``) when no
    secret of that name exists yet, and :class:`~waiaas.errors.KeystoreLockedError` when the
    keystore is locked.
    """

    def put_secret(self, name: str, value: bytes) -> None:
        """Seal and store ``value`` under ``name`` (replacing any previous value)."""
        ...

    def get_secret(self, name: str) -> bytes:
        """The secret stored under ``name``."""
        ...


# --------------------------------------------------------------------------- values


def _dedupe_sorted(values: object) -> object:
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | set | frozenset):
        raise ValueError("must be a list of strings")
    if not all(isinstance(v, str) for v in values):
        raise ValueError("entries must be strings")
    return tuple(sorted({v.strip() for v in values}))


def _per_asset(value: object) -> object:
    # A bare amount is shorthand for a limit on the native asset.
    if value is None or isinstance(value, Mapping):
        return value
    return {NATIVE: value}


class SessionConstraints(BaseModel):
    """What one session may do, on top of the agent's policies. ``None`` means "no limit".

    An empty list means "nothing": ``allowed_networks=[]`` forbids every network.

    Attributes:
        max_amount_per_tx: per asset, the largest amount (base units) one request may move,
            and the largest allowance one approval may grant. Keys are ``"native"`` or a
            token's address; a bare amount means ``{"native": amount}``. Assets not listed
            are not limited by it.
        max_total_amount: per asset, the most the session may move over its whole life
            (renewals included; amounts of failed or cancelled requests are given back).
            Same keys and shorthand as ``max_amount_per_tx``. Approvals move nothing, so
            they do not count here.
        max_tx_count: how many requests the session may make in its whole life.
        allowed_tx_types: the request types it may make (``TRANSFER``, ``BATCH``, ...). A
            ``BATCH`` needs ``BATCH`` and the type of every request inside it.
        allowed_addresses: the only destinations (recipient, contract, spender) allowed.
            Normalised with the agent's chain rules when the session is issued: EVM
            addresses compare case-insensitively, Solana addresses exactly.
        allowed_networks: the networks (``"devnet"``, ``"mainnet"``, ...) it may use.

    Example::

        SessionConstraints(max_amount_per_tx=10**9, max_tx_count=20,
                           allowed_tx_types=["TRANSFER"])
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_amount_per_tx: dict[str, Amount] | None = None
    max_total_amount: dict[str, Amount] | None = None
    max_tx_count: StrictInt | None = Field(default=None, ge=0)
    allowed_tx_types: tuple[TxType, ...] | None = None
    allowed_addresses: tuple[str, ...] | None = None
    allowed_networks: tuple[str, ...] | None = None

    if TYPE_CHECKING:  # the inputs accepted, for type checkers without the pydantic plugin

        def __init__(
            self,
            *,
            max_amount_per_tx: int | str | Mapping[str, int | str] | None = None,
            max_total_amount: int | str | Mapping[str, int | str] | None = None,
            max_tx_count: int | None = None,
            allowed_tx_types: Sequence[TxType | str] | None = None,
            allowed_addresses: Sequence[str] | None = None,
            allowed_networks: Sequence[str] | None = None,
        ) -> None: ...

    @field_validator("max_amount_per_tx", "max_total_amount", mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return _per_asset(value)

    @field_validator("allowed_tx_types", "allowed_addresses", "allowed_networks", mode="before")
    @classmethod
    def _as_sorted_set(cls, value: object) -> object:
        return _dedupe_sorted(value)

    @field_validator("allowed_addresses", "allowed_networks")
    @classmethod
    def _non_blank(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(not v for v in value):
            raise ValueError("entries must be non-empty strings")
        return value

    @field_validator("max_amount_per_tx", "max_total_amount")
    @classmethod
    def _asset_keys(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and any(not k.strip() for k in value):
            raise ValueError("asset keys must be 'native' or a token address")
        return value


class SessionUsage(BaseModel):
    """What a session has used so far (stored as JSON in ``sessions.usage_stats``).

    Attributes:
        tx_count: requests accepted under the session (never given back).
        totals: per asset key, base units charged and not released (decimal strings in JSON).
        renewals: how often the session was renewed.
        last_used_at: when a request was last charged to it.
        renewed_at: when it was last renewed.
        expired_reported: the expiry sweep has written its ``SESSION_EXPIRED`` row.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tx_count: StrictInt = Field(default=0, ge=0)
    totals: dict[str, Amount] = Field(default_factory=dict)
    renewals: StrictInt = Field(default=0, ge=0)
    last_used_at: StrictInt | None = None
    renewed_at: StrictInt | None = None
    expired_reported: StrictBool = False

    def total(self, asset: str = NATIVE) -> int:
        """The amount of ``asset`` charged so far (0 when none)."""
        return self.totals.get(asset, 0)


@dataclass(frozen=True, slots=True, repr=False)
class IssuedSession:
    """A freshly issued (or renewed) session. ``token`` is shown here and nowhere else.

    Hand ``token`` to the agent; waiaas keeps only its hash, so it cannot be recovered later.
    ``repr()`` and ``str()`` mask it.

    Attributes:
        token: the JWT the agent presents.
        session_id: the session's id (stable across renewals).
        agent_id: the agent it belongs to.
        expires_at: Unix seconds after which the token is refused.
        constraints: the constraints it carries.
    """

    token: str
    session_id: str
    agent_id: str
    expires_at: int
    constraints: SessionConstraints

    def __repr__(self) -> str:
        return (
            f"IssuedSession(session_id={self.session_id!r}, agent_id={self.agent_id!r}, "
            f"expires_at={self.expires_at}, token='***')"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class VerifiedSession:
    """A session whose token was accepted: who it is, what it may do, what it has used.

    Attributes:
        session_id, agent_id: the session and its agent.
        chain, network: the agent's chain family and network.
        issued_at: when the session was first issued (renewals keep it).
        expires_at: when the presented token expires.
        constraints: the session's constraints.
        usage: its usage at verification time.
    """

    session_id: str
    agent_id: str
    chain: str
    network: str
    issued_at: int
    expires_at: int
    constraints: SessionConstraints
    usage: SessionUsage
    # the session row's (constraints, usage_stats) texts these were read from, when known:
    # enforce_and_record charges the request on them with a compare-and-set
    _read: tuple[str | None, str | None] | None = field(default=None, repr=False, compare=False)
    # the remembered verification these came from (SessionManager._cached), which learns
    # the usage enforce_and_record writes: the next verify then finds that text parsed
    _entry: _Verified | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the owner can see about a session (never the token or its hash).

    Attributes:
        session_id, agent_id: the session and its agent.
        status: ``"active"``, ``"revoked"`` or ``"expired"`` (at the time asked).
        created_at: when it was first issued; expires_at: when its current token expires.
        revoked_at: when it was revoked, if it was.
        constraints, usage: what it may do and what it has used.
    """

    session_id: str
    agent_id: str
    status: Literal["active", "revoked", "expired"]
    created_at: int
    expires_at: int
    revoked_at: int | None
    constraints: SessionConstraints
    usage: SessionUsage

    def __repr__(self) -> str:
        return _d.short_repr(
            "SessionInfo",
            [
                ("session_id", self.session_id),
                ("agent_id", self.agent_id),
                ("status", self.status),
                ("expires", _d.fmt_time(self.expires_at)),
                ("revoked", _d.fmt_time(self.revoked_at) if self.revoked_at else None),
                ("requests", self.usage.tx_count),
                ("constraints", self.constraints_text() or None),
            ],
        )

    def constraints_text(self) -> str:
        """The constraints that are set, as ``name=value`` pairs (empty when none are)."""
        data = self.constraints.model_dump(mode="json", exclude_none=True)
        return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(data.items()))

    def _row(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "status": self.status,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.usage.last_used_at,
            "requests": self.usage.tx_count,
            "totals": {k: str(v) for k, v in sorted(self.usage.totals.items())} or None,
            "constraints": self.constraints_text() or None,
        }

    def _repr_html_(self) -> str:
        return _d.fields_html(
            f"Session {self.status}",
            [
                ("session", self.session_id),
                ("agent", self.agent_id),
                ("created", _d.fmt_time(self.created_at)),
                ("expires", _d.fmt_time(self.expires_at)),
                ("revoked", _d.fmt_time(self.revoked_at) if self.revoked_at else None),
                ("last used", _d.fmt_time(self.usage.last_used_at)),
                ("requests", self.usage.tx_count),
                ("totals (base units)", _totals_text(self.usage.totals) or None),
                ("constraints", self.constraints_text() or None),
            ],
        )


def _totals_text(totals: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(totals.items()))


class SessionList(list[SessionInfo]):
    """A list of sessions (what ``Wallet.list_sessions`` returns) with a table rendering and
    :meth:`to_dataframe`. Never a token: sessions are shown by id.

    Example::

        sessions = wallet.list_sessions(agent.id)
        sessions.to_dataframe()   # needs the pandas extra
    """

    @overload
    def __getitem__(self, index: SupportsIndex) -> SessionInfo: ...

    @overload
    def __getitem__(self, index: slice) -> SessionList: ...

    def __getitem__(self, index: SupportsIndex | slice) -> SessionInfo | SessionList:
        if isinstance(index, slice):
            return SessionList(super().__getitem__(index))
        return super().__getitem__(index)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for s in self:
            counts[s.status] = counts.get(s.status, 0) + 1
        inner = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        return f"SessionList({len(self)} sessions{' {' + inner + '}' if inner else ''})"

    def _repr_html_(self) -> str:
        rows = [
            (
                s.session_id,
                s.agent_id,
                _d.raw(_d.badge(s.status)),
                _d.fmt_time(s.created_at),
                _d.fmt_time(s.expires_at),
                _d.fmt_time(s.revoked_at) if s.revoked_at else None,
                s.usage.tx_count,
                s.constraints_text() or None,
            )
            for s in self
        ]
        return _d.table_html(
            (
                "session",
                "agent",
                "status",
                "created",
                "expires",
                "revoked",
                "requests",
                "constraints",
            ),
            rows,
            caption=f"{len(self)} sessions",
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per session (needs the ``pandas`` extra): times are UTC datetimes, the
        per-asset totals exact base-unit strings (never floats)."""
        return _d.frame(
            [s._row() for s in self],
            (
                "session_id",
                "agent_id",
                "status",
                "created_at",
                "expires_at",
                "revoked_at",
                "last_used_at",
                "requests",
                "totals",
                "constraints",
            ),
            times=("created_at", "expires_at", "revoked_at", "last_used_at"),
            exact=("totals",),
        )


# --------------------------------------------------------------------------- helpers


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _check_int(value: object, field: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{field} must be an integer", field=field)
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"{field} must be at least {minimum}", field=field)
    return value


def _check_text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InvalidInputError(f"{field} must be a non-empty string", field=field)
    return value.strip()


def _problems(exc: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in err['loc']) or 'constraints'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    ]


def _normalize_asset(chain: str, asset: str, field: str) -> str:
    key = asset.strip()
    if key == NATIVE:
        return NATIVE
    return normalize_address(chain, key, field=field)


def _allowances(request: Request, chain: str) -> dict[str, int]:
    """The largest allowance per token that the request's approvals grant."""
    items: Sequence[Any] = request.requests if isinstance(request, Batch) else (request,)
    out: dict[str, int] = {}
    for item in items:
        if isinstance(item, Approve):
            key = normalize_address(chain, item.token, field="token")
            out[key] = max(out.get(key, 0), item.amount)
    return out


def _destinations(request: Request) -> list[str]:
    items: Sequence[Any] = request.requests if isinstance(request, Batch) else (request,)
    out: list[str] = []
    for item in items:
        out.append(item.spender if isinstance(item, Approve) else item.to)
    return out


def _types(request: Request) -> list[TxType]:
    if isinstance(request, Batch):
        return [TxType.BATCH, *(item.type for item in request.requests)]
    return [request.type]


# --------------------------------------------------------------------------- verified-token cache

#: How many verified tokens a :class:`SessionManager` remembers (oldest forgotten first).
VERIFIED_CACHE_SIZE = 4096


# One indexed read that re-checks, against the rows as they are now, everything a cached
# verification depends on: the session is this token's (hash), live (not revoked, not
# expired), still the agent's; the agent is ACTIVE on the same chain and network. The
# constraints and usage come back so that the caller can tell whether they changed.
def _store_usage(
    uow: UnitOfWork, session_id: str, read: tuple[str | None, str | None], usage: SessionUsage
) -> str | None:
    """Write ``usage`` to the session if its row is still live and holds the ``read``
    (constraints, usage) texts: the JSON text written, or ``None`` when it did not. Two
    writers that read the same usage can never both write theirs: the second finds the row
    changed."""
    text = usage.model_dump_json()
    constraints, before = read
    sql = compare_and_set(
        "sessions",
        ("usage_stats",),
        (
            ("id", False),
            ("revoked_at", True),
            ("constraints", constraints is None),
            ("usage_stats", before is None),
        ),
    )
    params = cas_params((text,), (session_id, None, constraints, before))
    done = uow.execute(sql, params)[0] == 1
    held = uow.session.identity_map.get(uow.session.identity_key(SessionRow, session_id))
    if done and held is not None:
        uow.session.expire(held)  # read again if used later in this unit of work
    return text if done else None


#: the agent's columns the live read also returns (after the session's four)
_AGENT_COLUMNS = tuple(AgentRow.__table__.columns.keys())  # type: ignore[attr-defined]


def _hold_agent(uow: UnitOfWork, values: Sequence[Any]) -> None:
    """Keep the agent's row read by the live statement (``values`` in
    :data:`_AGENT_COLUMNS` order) in ``uow`` (:meth:`AgentRepository.hold`): what
    ``uow.agents.get`` returns for it there, with no ORM session built."""
    uow.agents.hold(built(AgentRow, dict(zip(_AGENT_COLUMNS, values, strict=True))))


_LIVE_FROM = (
    " FROM sessions AS s JOIN agents AS a ON a.id = s.agent_id "
    "WHERE s.id = ? AND s.token_hash = ? AND s.agent_id = ? AND s.revoked_at IS NULL "
    "AND s.expires_at > ? AND a.status = 'ACTIVE' AND a.chain = ? AND a.network = ?"
)
_LIVE_SQL = "SELECT s.constraints, s.usage_stats, s.expires_at, s.created_at" + _LIVE_FROM
# In a unit of work the same read also returns the agent's row, which it then keeps.
_LIVE_SQL_WITH_AGENT = (
    "SELECT s.constraints, s.usage_stats, s.expires_at, s.created_at, "
    + ", ".join(f"a.{c}" for c in _AGENT_COLUMNS)
    + _LIVE_FROM
)


@dataclass(slots=True)
class _Verified:
    """What a full verification established about one token (never the token itself)."""

    session_id: str
    agent_id: str
    token_hash: str  # hex, as stored in sessions.token_hash
    claims_exp: int
    chain: str
    network: str
    constraints_text: str | None
    constraints: SessionConstraints
    # (usage_stats text, parsed) as one tuple: replaced together, read together
    usage: tuple[str | None, SessionUsage]


# --------------------------------------------------------------------------- manager


class SessionManager:
    """Issues, verifies, renews and revokes agent sessions, and enforces their constraints.

    Args:
        db: the wallet's database.
        secrets: an unlocked keystore (anything with ``put_secret`` / ``get_secret``).
        clock: the time source.
        config: the wallet configuration (``session_ttl``, ``session_max_renewals``,
            ``session_absolute_lifetime``).

    The signing secret is read from ``secrets`` once and then held in memory; call
    :meth:`forget_secret` when the keystore is locked.

    Example::

        sessions = SessionManager(db, keystore, SystemClock(), WalletConfig())
        issued = sessions.issue(agent_id)
        sessions.verify(issued.token).agent_id == agent_id
    """

    def __init__(
        self, db: Database, secrets: SecretStore, clock: Clock, config: WalletConfig
    ) -> None:
        if not isinstance(db, Database):
            raise InvalidInputError("db must be a waiaas Database", field="db")
        if not isinstance(secrets, SecretStore):
            raise InvalidInputError(
                "secrets must provide put_secret() and get_secret()", field="secrets"
            )
        if not isinstance(clock, Clock):
            raise InvalidInputError("clock must provide now()", field="clock")
        if not isinstance(config, WalletConfig):
            raise InvalidInputError("config must be a WalletConfig", field="config")
        self._db = db
        self._store = secrets
        self._clock = clock
        self._config = config
        self._secret: bytes | None = None
        self._lock = threading.Lock()
        # SHA-256(token) -> what its full verification established (see _cached)
        self._verified: dict[bytes, _Verified] = {}

    def __repr__(self) -> str:
        return f"SessionManager(db={self._db!r})"

    # ------------------------------------------------------------------ secret

    def forget_secret(self) -> None:
        """Drop the in-memory copy of the signing secret (it is read again when needed), and
        every remembered verification with it: the next verify needs the secret again."""
        with self._lock:
            self._secret = None
            self._verified.clear()

    def _load_secret(self, *, create: bool) -> bytes | None:
        with self._lock:
            if self._secret is not None:
                return self._secret
            try:
                value = self._store.get_secret(JWT_SECRET_NAME)
            except (NotFoundError, KeyError):
                if not create:
                    return None
                value = _secrets.token_bytes(_SECRET_BYTES)
                self._store.put_secret(JWT_SECRET_NAME, value)
                log.info("created the session signing secret")
            if not isinstance(value, bytes | bytearray) or len(value) < _SECRET_BYTES:
                raise KeystoreError("the stored session signing secret is malformed")
            self._secret = bytes(value)
            return self._secret

    # ------------------------------------------------------------------ issue

    def issue(
        self,
        agent_id: str,
        *,
        ttl: int | None = None,
        constraints: SessionConstraints | Mapping[str, Any] | None = None,
        actor: str = "owner",
    ) -> IssuedSession:
        """Issue a new session for an ACTIVE agent and return its token (once).

        Args:
            agent_id: the agent.
            ttl: lifetime in seconds (default ``config.session_ttl``); at most
                ``config.session_absolute_lifetime``.
            constraints: a :class:`SessionConstraints` or a mapping of its fields.
                Addresses and token asset keys are validated and normalised for the
                agent's chain.
            actor: who issues it, for the audit log (``"owner"``, ``"cli"``, ...).

        Returns:
            The :class:`IssuedSession`; its ``token`` is not stored anywhere.

        Raises:
            InvalidInputError: a bad argument (``field`` names it; ``problems`` lists every
                constraint problem), or constraints the agent could never satisfy
                (``allowed_networks`` without its network, ``allowed_tx_types`` with no
                request type it can make).
            InvalidAddressError: a constrained address is not valid on the agent's chain.
            NotFoundError: no such agent.
            AgentNotActiveError: the agent is not ACTIVE.
            KeystoreLockedError: the signing secret must be created or read, and the
                keystore is locked.

        Example::

            issued = sessions.issue(agent_id, ttl=900, constraints={"max_tx_count": 5})
        """
        agent_id = _check_text(agent_id, "agent_id")
        actor = _check_text(actor, "actor")
        ttl = self._check_ttl(ttl)
        parsed = self._parse_constraints(constraints)
        now = self._clock.now()
        # The agent's own lock, once the signing secret exists; creating it is global (two
        # processes issuing the first tokens of two agents must not create two secrets).
        lock = agent_id if self._load_secret(create=False) is not None else None
        with self._db.write(agent_id=lock) as uow:
            agent = uow.agents.get(agent_id)
            if agent is None:
                raise NotFoundError("agent", agent_id)
            if agent.status != AgentStatus.ACTIVE:
                raise AgentNotActiveError(agent_id, agent.status, agent.suspension_reason)
            parsed = self._normalize_constraints(parsed, agent.chain)
            _check_reachable(parsed, agent.chain, agent.network)
            key = self._load_secret(create=True)
            assert key is not None
            session_id = new_id()
            expires_at = now + ttl
            token = self._encode(key, agent_id, session_id, now, expires_at)
            usage = SessionUsage()
            uow.sessions.add(
                SessionRow(
                    id=session_id,
                    agent_id=agent_id,
                    token_hash=_token_hash(token),
                    expires_at=expires_at,
                    constraints=parsed.model_dump_json(),
                    usage_stats=usage.model_dump_json(),
                    created_at=now,
                )
            )
            uow.audit.append(
                AuditEvent.SESSION_ISSUED,
                actor=actor,
                now=now,
                agent_id=agent_id,
                session_id=session_id,
                details={
                    "expires_at": expires_at,
                    "constraints": parsed.model_dump(mode="json", exclude_none=True),
                },
            )
            uow.commit()
        log.info("issued session %s for agent %s (expires %s)", session_id, agent_id, expires_at)
        return IssuedSession(token, session_id, agent_id, expires_at, parsed)

    def _check_ttl(self, ttl: int | None) -> int:
        """A session's lifetime: ``config.session_ttl`` by default, never longer than
        ``config.session_absolute_lifetime``."""
        lifetime = self._config.session_absolute_lifetime
        if ttl is None:
            ttl = min(self._config.session_ttl, lifetime)
        ttl = _check_int(ttl, "ttl", minimum=1)
        if ttl > lifetime:
            raise InvalidInputError(
                f"ttl must not exceed the absolute session lifetime ({lifetime} s)", field="ttl"
            )
        return ttl

    def _parse_constraints(
        self, constraints: SessionConstraints | Mapping[str, Any] | None
    ) -> SessionConstraints:
        if constraints is None:
            return SessionConstraints()
        if isinstance(constraints, SessionConstraints):
            return constraints
        if not isinstance(constraints, Mapping):
            raise InvalidInputError(
                "constraints must be a SessionConstraints or a mapping", field="constraints"
            )
        try:
            return SessionConstraints.model_validate(dict(constraints))
        except ValidationError as exc:
            problems = _problems(exc)
            raise InvalidInputError(
                f"invalid session constraints: {'; '.join(problems)}",
                field="constraints",
                problems=problems,
            ) from None

    @staticmethod
    def _normalize_constraints(parsed: SessionConstraints, chain: str) -> SessionConstraints:
        update: dict[str, Any] = {}
        if parsed.allowed_addresses is not None:
            field = "constraints.allowed_addresses"
            update["allowed_addresses"] = tuple(
                sorted({normalize_address(chain, a, field=field) for a in parsed.allowed_addresses})
            )
        for name in ("max_amount_per_tx", "max_total_amount"):
            limits: dict[str, int] | None = getattr(parsed, name)
            if limits is not None:
                normal: dict[str, int] = {}
                for asset, value in limits.items():
                    key = _normalize_asset(chain, asset, f"constraints.{name}")
                    if key in normal:
                        raise InvalidInputError(
                            f"constraints.{name} lists asset {shown(key)} twice",
                            field=f"constraints.{name}",
                        )
                    normal[key] = value
                update[name] = normal
        return parsed.model_copy(update=update) if update else parsed

    @staticmethod
    def _encode(key: bytes, agent_id: str, session_id: str, iat: int, exp: int) -> str:
        claims = {
            "sub": agent_id,
            "sid": session_id,
            "iat": iat,
            "exp": exp,
            "jti": _secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, key, algorithm=_ALGORITHM, headers={"typ": "JWT"})

    # ------------------------------------------------------------------ verify

    def verify(self, token: str, *, now: int | None = None) -> VerifiedSession:
        """Check a session token and return the session it opens.

        Args:
            token: the JWT the agent presented.
            now: the time to check expiry against (default: the clock).

        Returns:
            The :class:`VerifiedSession`.

        Raises:
            AuthError: malformed, too long, disallowed algorithm or header, bad signature,
                missing claims, unknown session, or claims that do not match the session.
            TokenExpiredError: the token (or its session) has expired.
            TokenRevokedError: the session was revoked, or the token was replaced by a
                renewal.
            AgentNotActiveError: the token is good but the agent is not ACTIVE.
            KeystoreLockedError: the signing secret is not in memory and the keystore is
                locked (no audit row: the token was not judged).

        Every refusal above (but the last) is recorded as an ``AUTH_FAILED`` audit row,
        committed before the error is raised.

        Example::

            verified = sessions.verify(token)
            verified.agent_id, verified.constraints.max_tx_count
        """
        when = self._now(now)
        hit = self._cached(self._db.fetch_one, token, when)
        if hit is not None:
            return hit
        try:
            with self._db.read() as uow:
                return self._check(uow, token, when)
        except (AuthError, AgentNotActiveError) as exc:
            self.record_failure(exc, now=when)
            raise

    def verify_in(self, uow: UnitOfWork, token: str, now: int) -> VerifiedSession:
        """Verify ``token`` inside the caller's unit of work (nothing is written).

        The pipeline uses this to verify, enforce constraints and record usage atomically.
        On a refusal nothing is recorded here: the caller leaves its unit of work and then
        calls :meth:`record_failure` with the error, so the ``AUTH_FAILED`` row is committed
        even though the caller's transaction is rolled back.

        Raises:
            The same errors as :meth:`verify`.

        Example::

            try:
                with db.write() as uow:
                    verified = sessions.verify_in(uow, token, now)
                    sessions.enforce_and_record(uow, verified, request, network=net, now=now)
                    ...
                    uow.commit()
            except (AuthError, AgentNotActiveError) as exc:
                sessions.record_failure(exc, now=now)
                raise
        """
        when = self._now(now)
        hit = self._cached(uow.fetch_one, token, when, uow)
        if hit is not None:
            return hit
        return self._check(uow, token, when)

    def recall_in(
        self, uow: UnitOfWork, token: str, now: int, *, state: Iterable[str] = ()
    ) -> VerifiedSession | None:
        """What :meth:`verify_in` finds for a token this manager verified before, when its
        session is still live (the one statement of :meth:`_cached`), with
        ``uow.state.prefetch(state)`` in that same statement; ``None`` otherwise
        (:meth:`verify_in` then reads nothing more of the remembered token: it runs the
        full check, which raises its precise error). Never raises a refusal: a caller checks what it
        prefetched (the kill switch) before it verifies the token.

        Raises:
            StorageError: the database failed.
        """
        when = self._now(now)
        keys = tuple(state)

        def fetch(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
            return uow.state.prefetch_along(uow.fetch_one, keys, sql, params)

        hit = self._cached(fetch, token, when, uow)
        uow.state.prefetch(keys)  # on its own when nothing was read above
        return hit

    def record_failure(
        self, error: AuthError | AgentNotActiveError, *, now: int | None = None
    ) -> None:
        """Commit an ``AUTH_FAILED`` audit row for a refused token, in its own transaction.

        The row holds the reason, and the session and agent ids when they come from a token
        whose signature was good; never the token or its hash.

        Raises:
            InvalidInputError: ``error`` is not a refusal raised by this module.
        """
        if not isinstance(error, AuthError | AgentNotActiveError):
            raise InvalidInputError(
                "error must be an AuthError or AgentNotActiveError", field="error"
            )
        when = self._now(now)
        session_id: str | None = getattr(error, "session_id", None)
        agent_id: str | None = getattr(error, "agent_id", None)
        if isinstance(error, AuthError):
            reason = str(getattr(error, "reason", "refused"))
        else:
            reason = f"agent is {getattr(error, 'status', 'not active')}"
        with self._db.write(agent_id=agent_id) as uow:
            uow.audit.append(
                AuditEvent.AUTH_FAILED,
                actor=f"agent:{agent_id}" if agent_id else _ANONYMOUS,
                now=when,
                agent_id=agent_id,
                session_id=session_id,
                details={"reason": reason, "code": error.code},
            )
            uow.commit()
        log.warning(
            "session token refused: %s (session %s, agent %s)", reason, session_id, agent_id
        )

    def _check(self, uow: UnitOfWork, token: object, now: int) -> VerifiedSession:
        claims = self._verified_claims(token)
        agent_id: str = claims["sub"]
        session_id: str = claims["sid"]
        if claims["exp"] <= now:
            raise _refuse(TokenExpiredError, "token expired", session_id, agent_id)
        assert isinstance(token, str)
        row = uow.sessions.by_token_hash(_token_hash(token), now)
        if row is None:
            raise self._why_not_live(uow, session_id, agent_id, now)
        if row.id != session_id or row.agent_id != agent_id:
            raise _refuse(AuthError, "token claims do not match its session", session_id)
        agent = uow.agents.get(agent_id)
        if agent is None:
            raise _refuse(AuthError, "unknown agent", session_id)
        if agent.status != AgentStatus.ACTIVE:
            err = AgentNotActiveError(agent_id, agent.status, agent.suspension_reason)
            setattr(err, "session_id", session_id)  # noqa: B010  (not a declared field)
            raise err
        constraints = _load_constraints(row)
        usage = _load_usage(row)
        self._remember(
            token,
            _Verified(
                session_id=row.id,
                agent_id=agent_id,
                token_hash=row.token_hash,
                claims_exp=claims["exp"],
                chain=agent.chain,
                network=agent.network,
                constraints_text=row.constraints,
                constraints=constraints,
                usage=(row.usage_stats, usage),
            ),
        )
        return VerifiedSession(
            session_id=row.id,
            agent_id=agent_id,
            chain=agent.chain,
            network=agent.network,
            issued_at=row.created_at,
            expires_at=row.expires_at,
            constraints=constraints,
            usage=usage,
            _read=(row.constraints, row.usage_stats),
        )

    # ------------------------------------------------------------------ verified-token cache

    def _cached(
        self,
        fetch_one: Callable[[str, Sequence[Any]], tuple[Any, ...] | None],
        token: object,
        now: int,
        uow: UnitOfWork | None = None,
    ) -> VerifiedSession | None:
        """The session ``token`` opens, from a remembered verification, or ``None``.

        A token that passed :meth:`_check` is remembered under SHA-256(token) with what the
        check established: the JWT part (header allow-list, signature, claims) depends only
        on the token and the signing secret, so it is not repeated. Everything that lives
        in the database is read again, now, in one indexed statement (``_LIVE_SQL``): the
        session row is this token's, live and still the agent's, and the agent is ACTIVE.
        Expiry is checked against ``now``. So a revocation, renewal, suspension, kill switch
        or expiry, made by this process or any other, is seen by the very next verify: the
        row no longer matches and the full check runs, with its precise error and its
        ``AUTH_FAILED`` row. Refusals are never remembered.

        Only parsed JSON is reused: the constraints while their text is unchanged, the
        usage likewise (it changes with every request, and is parsed again then).

        In ``uow``, the agent's row read by the same statement is kept in the unit of work
        (``uow.agents.get`` of it reads no more there).
        """
        if type(token) is not str or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            return None
        key = hashlib.sha256(token.encode("ascii")).digest()
        entry = self._verified.get(key)
        if entry is None or entry.claims_exp <= now:
            return None
        row = fetch_one(
            _LIVE_SQL if uow is None else _LIVE_SQL_WITH_AGENT,
            (
                entry.session_id,
                entry.token_hash,
                entry.agent_id,
                now,
                entry.chain,
                entry.network,
            ),
        )
        if row is None or row[0] != entry.constraints_text:
            self._verified.pop(key, None)
            return None
        usage_text, usage = entry.usage
        if row[1] != usage_text:
            try:
                usage = SessionUsage.model_validate_json(row[1] or "{}")
            except ValidationError:
                self._verified.pop(key, None)
                return None  # the full check reports the unreadable row
            entry.usage = (row[1], usage)
        if uow is not None:
            _hold_agent(uow, row[4:])
        return VerifiedSession(
            session_id=entry.session_id,
            agent_id=entry.agent_id,
            chain=entry.chain,
            network=entry.network,
            issued_at=row[3],
            expires_at=row[2],
            constraints=entry.constraints,
            usage=usage,
            _read=(row[0], row[1]),
            _entry=entry,
        )

    def remembered_agent(self, token: object, now: int) -> tuple[str, str, str] | None:
        """``(agent id, chain, network)`` of ``token`` when this manager verified it before
        and its claims have not expired at ``now``; ``None`` otherwise. Nothing is read and
        nothing is established: the session may have been revoked, the agent suspended
        meanwhile. Callers verify the token again (:meth:`verify_in`) before acting on it."""
        if type(token) is not str or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            return None
        entry = self._verified.get(hashlib.sha256(token.encode("ascii")).digest())
        if entry is None or entry.claims_exp <= now:
            return None
        return entry.agent_id, entry.chain, entry.network

    def _remember(self, token: object, entry: _Verified) -> None:
        assert isinstance(token, str)  # _check refused anything else
        verified = self._verified
        with self._lock:
            if self._secret is None:
                return  # forgotten meanwhile (the keystore was locked)
            while len(verified) >= VERIFIED_CACHE_SIZE:
                verified.pop(next(iter(verified)), None)
            verified[hashlib.sha256(token.encode("ascii")).digest()] = entry

    def _verified_claims(self, token: object) -> dict[str, Any]:
        """Shape, header allow-list, signature and claim types; no database access."""
        token = _check_token_shape(token)
        key = self._load_secret(create=False)
        if key is None:  # no session was ever issued on this wallet
            raise _refuse(AuthError, "bad signature")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                options={
                    "verify_exp": False,  # checked against the wallet clock below
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": list(_REQUIRED_CLAIMS),
                },
            )
        except jwt.InvalidSignatureError:
            raise _refuse(AuthError, "bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse(AuthError, f"missing claim {exc.claim!r}") from None
        except jwt.PyJWTError:
            raise _refuse(AuthError, "malformed token") from None
        _check_claim_types(claims)
        return claims

    @staticmethod
    def _why_not_live(uow: UnitOfWork, session_id: str, agent_id: str, now: int) -> AuthError:
        """Explain why a correctly signed token has no live session row."""
        row = uow.sessions.get(session_id)
        if row is None:
            return _refuse(AuthError, "unknown session", session_id)
        if row.agent_id != agent_id:
            return _refuse(AuthError, "token claims do not match its session", session_id)
        if row.revoked_at is not None:
            return _refuse(TokenRevokedError, "session revoked", session_id, agent_id)
        if row.expires_at <= now:
            return _refuse(TokenExpiredError, "session expired", session_id, agent_id)
        return _refuse(TokenRevokedError, "token replaced by a renewal", session_id, agent_id)

    # ------------------------------------------------------------------ renew

    def renew(self, token: str, *, now: int | None = None) -> IssuedSession:
        """Exchange a valid token for a new one; the presented token stops working at once.

        The session keeps its id, constraints and usage. The new token lives as long as the
        presented one did (``exp - iat``), but never past ``issued_at +
        config.session_absolute_lifetime``. A session can be renewed at most
        ``config.session_max_renewals`` times.

        Raises:
            AuthError, TokenExpiredError, TokenRevokedError, AgentNotActiveError: the token
                was refused (an ``AUTH_FAILED`` row is recorded, as for :meth:`verify`).
            StateError: the session reached its renewal limit (``reason="max_renewals"``) or
                its absolute lifetime (``reason="absolute_lifetime"``). The token stays valid
                until it expires.

        Example::

            issued = sessions.renew(old_token)   # old_token is now refused
        """
        when = self._now(now)
        lock = _claimed_agent(token)
        try:
            with self._db.write(agent_id=lock) as uow:
                issued = self._renew_in(uow, token, when, lock)
                uow.commit()
        except (AuthError, AgentNotActiveError) as exc:
            self.record_failure(exc, now=when)
            raise
        log.info("renewed session %s (expires %s)", issued.session_id, issued.expires_at)
        return issued

    def _renew_in(
        self, uow: UnitOfWork, token: str, now: int, lock: str | None = None
    ) -> IssuedSession:
        verified = self._check(uow, token, now)
        if lock is not None and verified.agent_id != lock:
            raise StorageError("the session's agent changed during renewal")
        claims = jwt.decode(token, options={"verify_signature": False})
        usage = verified.usage
        session_id = verified.session_id
        limit = self._config.session_max_renewals
        if usage.renewals >= limit:
            raise StateError(
                f"session {session_id} reached its renewal limit ({limit})",
                session_id=session_id,
                reason="max_renewals",
            )
        end_of_life = verified.issued_at + self._config.session_absolute_lifetime
        if end_of_life <= now:
            raise StateError(
                f"session {session_id} reached its absolute lifetime",
                session_id=session_id,
                reason="absolute_lifetime",
            )
        ttl = int(claims["exp"]) - int(claims["iat"])
        expires_at = min(now + ttl, end_of_life)
        key = self._load_secret(create=False)
        assert key is not None  # _check succeeded, so the secret exists
        new_token = self._encode(key, verified.agent_id, session_id, now, expires_at)
        row = uow.sessions.get(session_id)
        assert row is not None
        new_usage = usage.model_copy(update={"renewals": usage.renewals + 1, "renewed_at": now})
        row.token_hash = _token_hash(new_token)
        row.expires_at = expires_at
        row.usage_stats = new_usage.model_dump_json()
        uow.session.add(row)
        uow.session.flush()
        uow.audit.append(
            AuditEvent.SESSION_RENEWED,
            actor=f"agent:{verified.agent_id}",
            now=now,
            agent_id=verified.agent_id,
            session_id=session_id,
            details={"expires_at": expires_at, "renewals": new_usage.renewals},
        )
        return IssuedSession(
            new_token, session_id, verified.agent_id, expires_at, verified.constraints
        )

    # ------------------------------------------------------------------ revoke & expire

    def revoke(self, session_id: str, *, actor: str, reason: str | None = None) -> None:
        """Revoke a session: its token is refused from now on.

        Revoking an already revoked session changes nothing and writes no audit row.

        Args:
            session_id: the session.
            actor: who revokes it (``"owner"``, ``"cli"``, ...), for the audit log.
            reason: optional free text for the audit log.

        Raises:
            InvalidInputError: a bad argument.
            NotFoundError: no such session.

        Example::

            sessions.revoke(issued.session_id, actor="owner")
        """
        session_id = _check_text(session_id, "session_id")
        actor = _check_text(actor, "actor")
        if reason is not None:
            reason = _check_text(reason, "reason")
        now = self._clock.now()
        lock = self._agent_of_session(session_id)
        with self._db.write(agent_id=lock) as uow:
            row = uow.sessions.get(session_id)
            if row is None:
                raise NotFoundError("session", session_id)
            if lock is not None and row.agent_id != lock:
                raise StorageError(f"session {session_id} changed agents")
            if self._revoke_row(uow, row, now, actor=actor, reason=reason):
                uow.commit()
                log.info("revoked session %s", session_id)

    def _agent_of_session(self, session_id: str) -> str | None:
        """The agent of a session, for its unit of work's lock (PostgreSQL; ``None`` on
        SQLite, where one writer runs at a time, or when there is no such session)."""
        if self._db.dialect == "sqlite":
            return None
        found = self._db.fetch_one("SELECT agent_id FROM sessions WHERE id = ?", (session_id,))
        return None if found is None else str(found[0])

    def revoke_all_for_agent(
        self,
        uow: UnitOfWork,
        agent_id: str,
        now: int,
        reason: str,
        *,
        actor: str = "system",
    ) -> int:
        """Revoke every live session of an agent inside the caller's unit of work.

        Used by agent termination and the kill switch; one ``SESSION_REVOKED`` row per
        session. Nothing is committed here.

        Returns:
            How many sessions were revoked.

        Raises:
            InvalidInputError: a bad argument.
        """
        agent_id = _check_text(agent_id, "agent_id")
        reason = _check_text(reason, "reason")
        actor = _check_text(actor, "actor")
        now = _check_int(now, "now", minimum=0)
        count = 0
        for row in uow.sessions.for_agent(agent_id, live_at=now):
            if self._revoke_row(uow, row, now, actor=actor, reason=reason):
                count += 1
        return count

    @staticmethod
    def _revoke_row(
        uow: UnitOfWork, row: SessionRow, now: int, *, actor: str, reason: str | None
    ) -> bool:
        if not uow.sessions.revoke(row.id, now):
            return False
        details: dict[str, Any] = {"reason": reason} if reason else {}
        uow.audit.append(
            AuditEvent.SESSION_REVOKED,
            actor=actor,
            now=now,
            agent_id=row.agent_id,
            session_id=row.id,
            details=details,
        )
        return True

    def sweep_expired(self, now: int | None = None) -> int:
        """Write one ``SESSION_EXPIRED`` audit row for each session that expired unrevoked.

        A reported session is marked in its usage (``expired_reported``), so later sweeps
        skip it; ``revoked_at`` stays NULL, so "expired" and "revoked" remain distinct.
        Renewal cannot revive an expired session (its token is refused first).

        Returns:
            How many sessions were reported by this call.
        """
        when = self._now(now)
        reported = 0
        with self._db.write() as uow:
            while True:
                rows = _expired_unreported(uow, when, _SWEEP_BATCH)
                for row in rows:
                    usage = _load_usage(row).model_copy(update={"expired_reported": True})
                    row.usage_stats = usage.model_dump_json()
                    uow.session.add(row)
                    uow.audit.append(
                        AuditEvent.SESSION_EXPIRED,
                        actor="system",
                        now=when,
                        agent_id=row.agent_id,
                        session_id=row.id,
                        details={"expired_at": row.expires_at},
                    )
                uow.session.flush()
                reported += len(rows)
                if len(rows) < _SWEEP_BATCH:
                    break
            uow.commit()
        if reported:
            log.info("reported %d expired session(s)", reported)
        return reported

    # ------------------------------------------------------------------ constraints

    def enforce_and_record(
        self,
        uow: UnitOfWork,
        verified: VerifiedSession,
        request: Request,
        *,
        network: str,
        now: int,
        asset: str | None = None,
        amount: int | None = None,
        spend: Mapping[str, int] | None = None,
        fees: int = 0,
    ) -> SessionUsage:
        """Check a request against the session's constraints and charge it to the session.

        Call it inside the unit of work that records the request: the usage update commits
        or rolls back with it, and the write lock (``BEGIN IMMEDIATE``) means two concurrent
        requests can never both fit under a limit only one of them fits under.

        Args:
            uow: the caller's write unit of work.
            verified: the session, from :meth:`verify_in`.
            request: the request (``Transfer``, ``TokenTransfer``, ``ContractCall``,
                ``Approve`` or ``Batch``).
            network: the network it will run on.
            now: the time, Unix seconds.
            asset, amount: what the request moves; give both or neither. When neither is
                given they are :func:`waiaas.policy.spend_of` (native amount or call value
                as ``"native"``, token transfers under the token address, batches summed,
                approvals counting their full allowance), the same figures the pipeline releases.
            spend: instead of ``asset``/``amount``: every asset the request takes out of the
                wallet (the policy decision's ``spend``: transfers, rent, fees and
                approvals' allowances decoded from the transaction that will be signed).
            fees: the native network fees inside ``spend`` (the decision's ``fees``): the
                session's total counts them, its per-request cap does not.

        Returns:
            The session's usage after this request.

        Raises:
            ConstraintViolationError: a constraint refused it (``constraint`` names which:
                ``allowed_networks``, ``allowed_tx_types``, ``allowed_addresses``,
                ``max_amount_per_tx``, ``max_tx_count`` or ``max_total_amount``).
            AuthError / TokenRevokedError: the session row is gone or was revoked meanwhile.
            InvalidInputError: a bad argument.
        """
        if not isinstance(verified, VerifiedSession):
            raise InvalidInputError("verified must be a VerifiedSession", field="verified")
        if not isinstance(request, Transfer | TokenTransfer | ContractCall | Approve | Batch):
            raise InvalidInputError("request must be a waiaas request", field="request")
        network = _check_text(network, "network")
        now = _check_int(now, "now", minimum=0)
        args = (request, network, now, asset, amount, spend, fees)
        if verified._read is not None:
            # Charged on the values verify_in read (under the caller's lock), written only if
            # the row still holds them: no second read, and no concurrent writer overwritten.
            try:
                charged = self._charge(verified, verified.constraints, verified.usage, *args)
            except WaiaasError:
                charged = None  # the path below reads the row and raises the precise error
            text = None
            if charged is not None:
                text = _store_usage(uow, verified.session_id, verified._read, charged)
            if charged is not None and text is not None:
                entry = verified._entry
                if entry is not None and _reads_back(charged):
                    # The text is exactly what this usage parses from; a write that does not
                    # commit leaves another text in the row, which is then parsed again.
                    entry.usage = (text, charged)
                return charged
        row = uow.sessions.get(verified.session_id)
        if row is None:
            raise _refuse(AuthError, "unknown session", verified.session_id)
        if row.revoked_at is not None:
            raise _refuse(TokenRevokedError, "session revoked", verified.session_id)
        new_usage = self._charge(verified, _load_constraints(row), _load_usage(row), *args)
        row.usage_stats = new_usage.model_dump_json()
        uow.session.add(row)
        uow.session.flush()
        return new_usage

    def _charge(
        self,
        verified: VerifiedSession,
        c: SessionConstraints,
        usage: SessionUsage,
        request: Request,
        network: str,
        now: int,
        asset: str | None,
        amount: int | None,
        spend: Mapping[str, int] | None,
        fees: int,
    ) -> SessionUsage:
        """The session's usage after ``request`` given its constraints ``c`` and ``usage``
        (:meth:`enforce_and_record`'s checks; nothing read or written)."""
        sid = verified.session_id
        _check_destination(c, request, network, verified.chain, sid)
        amounts = self._charged(verified.chain, request, asset, amount, spend)
        fees = _check_int(fees, "fees", minimum=0)
        if c.max_amount_per_tx is not None:
            # An approval moves nothing now, but its allowance may not exceed the cap either.
            # Network fees count toward the session's total, not toward one request's cap.
            per_request = dict(amounts)
            if fees and NATIVE in per_request:
                per_request[NATIVE] = max(0, per_request[NATIVE] - fees)
            for key, value in _allowances(request, verified.chain).items():
                per_request[key] = max(per_request.get(key, 0), value)
            _check_per_request(c.max_amount_per_tx, per_request, sid)
        if c.max_tx_count is not None and usage.tx_count + 1 > c.max_tx_count:
            raise _violation(
                "max_tx_count", f"the session may make at most {c.max_tx_count} requests", sid
            )
        totals = _charged_totals(c, usage, amounts, sid)
        return usage.model_copy(
            update={"tx_count": usage.tx_count + 1, "totals": totals, "last_used_at": now}
        )

    def _charged(
        self,
        chain: str,
        request: Request,
        asset: str | None,
        amount: int | None,
        spend: Mapping[str, int] | None,
    ) -> dict[str, int]:
        """What :meth:`enforce_and_record` charges, per asset key: ``spend`` (checked and
        normalised), else ``asset``/``amount`` or the request's own figures."""
        if spend is None:
            return self._amounts(chain, request, asset, amount)
        if asset is not None or amount is not None:
            raise InvalidInputError("give spend or asset/amount, not both", field="spend")
        return {
            _normalize_asset(chain, _check_text(k, "spend"), "spend"): _check_int(
                v, "spend", minimum=0
            )
            for k, v in spend.items()
        }

    def release(
        self, uow: UnitOfWork, session_id: str, asset: str, amount: int
    ) -> SessionUsage | None:
        """Give back ``amount`` of ``asset`` charged by a request that FAILED or was CANCELLED.

        Only amounts are given back; the request count is not (it counts attempts, so an
        agent cannot loop on failing requests forever). ``asset`` is ``"native"`` or a token
        address (normalised with the session agent's chain). A total never goes below zero:
        releasing more than was charged releases what there is and logs a warning.

        Returns:
            The usage after the release, or ``None`` when the session row no longer exists.

        Raises:
            InvalidInputError: a bad argument.
        """
        session_id = _check_text(session_id, "session_id")
        asset = _check_text(asset, "asset")
        amount = _check_int(amount, "amount", minimum=0)
        row = uow.sessions.get(session_id)
        if row is None:
            return None
        agent = uow.agents.get(row.agent_id)
        chain = agent.chain if agent is not None else ""
        key = _normalize_asset(chain, asset, "asset") if chain else asset
        usage = _load_usage(row)
        totals = dict(usage.totals)
        held = totals.get(key, 0)
        if amount > held:
            log.warning(
                "session %s: releasing %d of %s but only %d is charged",
                session_id,
                amount,
                key,
                held,
            )
        left = max(held - amount, 0)
        if left:
            totals[key] = left
        else:
            totals.pop(key, None)
        new_usage = usage.model_copy(update={"totals": totals})
        row.usage_stats = new_usage.model_dump_json()
        uow.session.add(row)
        uow.session.flush()
        return new_usage

    @staticmethod
    def _amounts(
        chain: str, request: Request, asset: str | None, amount: int | None
    ) -> dict[str, int]:
        if asset is None and amount is None:
            return spend_of(request, chain)
        if asset is None or amount is None:
            raise InvalidInputError("give both asset and amount, or neither", field="asset")
        key = _normalize_asset(chain, _check_text(asset, "asset"), "asset")
        return {key: _check_int(amount, "amount", minimum=0)}

    # ------------------------------------------------------------------ queries

    def get(self, session_id: str, *, now: int | None = None) -> SessionInfo:
        """What is known about a session: status, expiry, constraints, usage.

        Raises:
            InvalidInputError: a bad argument.
            NotFoundError: no such session.
        """
        session_id = _check_text(session_id, "session_id")
        when = self._now(now)
        with self._db.read() as uow:
            row = uow.sessions.get(session_id)
            if row is None:
                raise NotFoundError("session", session_id)
            return _info(row, when)

    def list_for_agent(
        self, agent_id: str, *, live_only: bool = False, now: int | None = None
    ) -> list[SessionInfo]:
        """An agent's sessions, oldest first (only live ones with ``live_only=True``)."""
        agent_id = _check_text(agent_id, "agent_id")
        when = self._now(now)
        with self._db.read() as uow:
            rows = uow.sessions.for_agent(agent_id, live_at=when if live_only else None)
            return [_info(row, when) for row in rows]

    def _now(self, now: int | None) -> int:
        if now is None:
            return self._clock.now()
        return _check_int(now, "now", minimum=0)


# --------------------------------------------------------------------------- private


def _check_reachable(c: SessionConstraints, chain: str, network: str) -> None:
    """Refuse constraints under which the agent could never make a request: a network list
    without the agent's network, or types that leave nothing sendable on its chain."""
    if c.allowed_networks is not None and network not in c.allowed_networks:
        raise InvalidInputError(
            f"constraints.allowed_networks {list(c.allowed_networks)} does not include the "
            f"agent's network {network!r}: the session could never send anything",
            field="constraints.allowed_networks",
        )
    if c.allowed_tx_types is not None:
        # A BATCH also needs the type of each request inside it, and only Solana batches.
        usable = {t for t in c.allowed_tx_types if t != TxType.BATCH}
        if not usable:
            raise InvalidInputError(
                f"constraints.allowed_tx_types {[t.value for t in c.allowed_tx_types]} "
                f"allows no request a {chain} agent can make: the session could never send "
                "anything (a BATCH also needs the types of the requests inside it)",
                field="constraints.allowed_tx_types",
            )


def _refuse(
    cls: type[AuthError],
    reason: str,
    session_id: str | None = None,
    agent_id: str | None = None,
) -> AuthError:
    err = cls(reason, session_id=session_id)
    # Only ids from a correctly signed token get here; the audit row uses them.
    setattr(err, "agent_id", agent_id)  # noqa: B010  (not a declared field of AuthError)
    return err


def _check_token_shape(token: object) -> str:
    """The token, if its shape and JOSE header pass (checked before any signature work)."""
    if not isinstance(token, str) or not token:
        raise _refuse(AuthError, "token must be a non-empty string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise _refuse(AuthError, "token too long")
    if not token.isascii() or _TOKEN_SHAPE.fullmatch(token) is None:
        raise _refuse(AuthError, "malformed token")
    header = _parse_header(token.split(".", 1)[0])
    if header is None:
        raise _refuse(AuthError, "malformed token header")
    if header.get("alg") != _ALGORITHM:
        raise _refuse(AuthError, "token algorithm not allowed")
    if not set(header) <= _ALLOWED_HEADER or header.get("typ", "JWT") != "JWT":
        raise _refuse(AuthError, "unexpected token header")
    return token


def _check_claim_types(claims: Mapping[str, Any]) -> None:
    """Text claims are short non-empty strings, times are ints, and ``exp`` follows ``iat``."""
    for name in ("sub", "sid", "jti"):
        value = claims[name]
        if not isinstance(value, str) or not value or len(value) > _MAX_CLAIM_TEXT:
            raise _refuse(AuthError, f"invalid claim {name!r}")
    for name in ("iat", "exp"):
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _refuse(AuthError, f"invalid claim {name!r}")
    if claims["exp"] <= claims["iat"]:
        raise _refuse(AuthError, "invalid claim 'exp'")


def _parse_header(segment: str) -> dict[str, Any] | None:
    """The JOSE header as a dict, parsed here (not by the JWT library) so it is judged first."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def _check_destination(
    c: SessionConstraints, request: Request, network: str, chain: str, sid: str
) -> None:
    """``allowed_networks``, ``allowed_tx_types`` and ``allowed_addresses``."""
    if c.allowed_networks is not None and network not in c.allowed_networks:
        raise _violation("allowed_networks", f"network {shown(network)} is not allowed", sid)
    if c.allowed_tx_types is not None:
        for kind in _types(request):
            if kind not in c.allowed_tx_types:
                raise _violation("allowed_tx_types", f"{kind.value} requests are not allowed", sid)
    if c.allowed_addresses is not None:
        for dest in _destinations(request):
            try:
                normal = normalize_address(chain, dest)
            except InvalidAddressError:
                normal = None
            if normal is None or normal not in c.allowed_addresses:
                raise _violation(
                    "allowed_addresses", "the destination is not an allowed address", sid
                )


def _check_per_request(caps: Mapping[str, int], per_request: Mapping[str, int], sid: str) -> None:
    for key, value in per_request.items():
        cap = caps.get(key)
        if cap is not None and value > cap:
            raise _violation(
                "max_amount_per_tx", f"{value} of {key} exceeds the per-request limit {cap}", sid
            )


def _charged_totals(
    c: SessionConstraints, usage: SessionUsage, amounts: Mapping[str, int], sid: str
) -> dict[str, int]:
    """The session's totals with ``amounts`` charged, refused over ``max_total_amount``."""
    totals = dict(usage.totals)
    for key, value in amounts.items():
        totals[key] = totals.get(key, 0) + value
        cap = None if c.max_total_amount is None else c.max_total_amount.get(key)
        if cap is not None and totals[key] > cap:
            raise _violation(
                "max_total_amount",
                f"{key}: {usage.total(key)} used + {value} exceeds the session total {cap}",
                sid,
            )
    return totals


def _reads_back(usage: SessionUsage) -> bool:
    """Whether ``usage``'s JSON parses back to it: its totals are amounts (a sum past
    ``MAX_AMOUNT`` is refused when read, so the row's text must be parsed to refuse it)."""
    return all(0 <= value <= MAX_AMOUNT for value in usage.totals.values())


def _violation(constraint: str, message: str, session_id: str) -> ConstraintViolationError:
    return ConstraintViolationError(
        f"session constraint {constraint}: {message}",
        constraint=constraint,
        session_id=session_id,
    )


def _claimed_agent(token: object) -> str | None:
    """The agent a token names, unverified: only to choose a unit of work's lock (the check
    inside verifies the token and that it is this agent's); ``None`` if it names none."""
    if type(token) is not str or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and 0 < len(sub) <= 128 else None


def _load_constraints(row: SessionRow) -> SessionConstraints:
    try:
        return SessionConstraints.model_validate_json(row.constraints or "{}")
    except ValidationError:
        raise StorageError(f"session {row.id} has unreadable constraints") from None


def _load_usage(row: SessionRow) -> SessionUsage:
    try:
        return SessionUsage.model_validate_json(row.usage_stats or "{}")
    except ValidationError:
        raise StorageError(f"session {row.id} has unreadable usage stats") from None


def _expired_unreported(uow: UnitOfWork, now: int, limit: int) -> list[SessionRow]:
    # JSON_EXTRACT on SQLite, CAST(... AS JSON) ->> on PostgreSQL (see waiaas.db.portable).
    reported = as_json(col(SessionRow.usage_stats))["expired_reported"].as_boolean()
    stmt = (
        select(SessionRow)
        .where(
            SessionRow.expires_at <= now,
            col(SessionRow.revoked_at).is_(None),
            func.coalesce(reported, False).is_(False),
        )
        .order_by(col(SessionRow.expires_at), col(SessionRow.id))
        .limit(limit)
    )
    return list(uow.session.exec(stmt))


def _info(row: SessionRow, now: int) -> SessionInfo:
    status: Literal["active", "revoked", "expired"]
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return SessionInfo(
        session_id=row.id,
        agent_id=row.agent_id,
        status=status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        constraints=_load_constraints(row),
        usage=_load_usage(row),
    )
