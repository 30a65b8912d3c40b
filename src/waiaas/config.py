"""Configuration: one frozen :class:`WalletConfig`, passed explicitly to ``Wallet.open``.

This is the only module that reads environment variables (:func:`password_from_env`).

Shipped tier defaults (used when no SPENDING_LIMIT rule applies to a request), per chain,
in base units::

    solana: INSTANT <= 0.1 SOL, NOTIFY <= 1 SOL, DELAY <= 10 SOL, above: APPROVAL
    evm:    INSTANT <= 0.01 ETH, NOTIFY <= 0.1 ETH, DELAY <= 1 ETH, above: APPROVAL
    other chains, and requests without a native amount (token transfers, approvals,
    contract calls without value): NOTIFY

Example::

    from waiaas import WalletConfig, TierThresholds
    cfg = WalletConfig(tier_defaults={"solana": TierThresholds(instant_max=0, notify_max=10**9,
                                                               delay_max=10**10)})
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from waiaas.types import Amount, Tier

__all__ = ["KdfLimits", "TierThresholds", "WalletConfig", "password_from_env"]

PASSWORD_ENV = "WAIAAS_MASTER_PASSWORD"  # noqa: S105 - the variable name, not a secret
_AUTHORITY = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


class TierThresholds(BaseModel):
    """Amount thresholds (base units, inclusive) that map a native amount to a tier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instant_max: Amount
    notify_max: Amount
    delay_max: Amount

    if TYPE_CHECKING:  # the inputs accepted, for type checkers without the pydantic plugin

        def __init__(
            self, *, instant_max: int | str, notify_max: int | str, delay_max: int | str
        ) -> None: ...

    @model_validator(mode="after")
    def _ordered(self) -> TierThresholds:
        if not self.instant_max <= self.notify_max <= self.delay_max:
            raise ValueError("thresholds must satisfy instant_max <= notify_max <= delay_max")
        return self

    def tier_for(self, amount: int) -> Tier:
        """The tier for ``amount``: the first threshold it does not exceed."""
        if amount <= self.instant_max:
            return Tier.INSTANT
        if amount <= self.notify_max:
            return Tier.NOTIFY
        if amount <= self.delay_max:
            return Tier.DELAY
        return Tier.APPROVAL


def _default_tiers() -> dict[str, TierThresholds]:
    return {
        "solana": TierThresholds(
            instant_max=100_000_000, notify_max=1_000_000_000, delay_max=10_000_000_000
        ),
        "evm": TierThresholds(instant_max=10**16, notify_max=10**17, delay_max=10**18),
    }


class KdfLimits(BaseModel):
    """Argon2id cost for deriving the master key (pynacl ``argon2id`` ops/mem limits).

    ``KdfLimits.moderate()`` is the default (~0.8 s, 256 MiB); ``KdfLimits.minimum()`` is for
    tests only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    opslimit: int = Field(ge=1)
    memlimit: int = Field(ge=8192)

    @classmethod
    def moderate(cls) -> KdfLimits:
        """libsodium MODERATE: opslimit 3, memlimit 256 MiB."""
        return cls(opslimit=3, memlimit=268_435_456)

    @classmethod
    def interactive(cls) -> KdfLimits:
        """libsodium INTERACTIVE: opslimit 2, memlimit 64 MiB."""
        return cls(opslimit=2, memlimit=67_108_864)

    @classmethod
    def minimum(cls) -> KdfLimits:
        """The smallest limits libsodium accepts. For tests only: it protects nothing."""
        return cls(opslimit=1, memlimit=8192)


class WalletConfig(BaseModel):
    """Every tunable of a wallet, validated and frozen.

    Attributes:
        tier_defaults: per-chain tier thresholds used when no SPENDING_LIMIT applies.
        default_tier: tier for requests no threshold applies to (no native amount).
        delay_seconds: default DELAY cooldown.
        approval_timeout: default seconds an APPROVAL waits for the owner.
        no_owner_approval: what APPROVAL means for an agent with no owner address:
            ``"deny"`` (default: refuse, since nobody can approve) or ``"delay"``.
        session_ttl: default session lifetime, seconds.
        session_max_renewals: how often a session may be renewed.
        session_absolute_lifetime: a session never outlives this many seconds from issue.
        kdf: Argon2id limits for new keystores.
        min_password_length: the shortest master password a *new* keystore (or a password
            change) accepts; such passwords also need 5 different characters and must not
            be a run like ``abcdef...`` or ``qwerty...``. ``0`` turns the check off (tests).
        keystore_dir: where key files live (default: ``<db file>.keystore`` beside the DB).
            Only for the file backend.
        keystore_backend: where the keystore keeps its sealed records: ``"file"`` (a
            directory, ``keystore_dir``), ``"database"`` (the ``keystore_records`` table of the
            wallet's own database, for wallets on several hosts) or ``"auto"`` (default:
            files for SQLite, the database for PostgreSQL). A PostgreSQL wallet may use
            ``"file"`` only with ``keystore_dir`` set. An existing wallet keeps the backend
            it was created with (``waiaas keystore migrate-to-database`` moves a file
            keystore into the database); see docs/keystore.md.
        checkpoint_interval: seconds between background WAL checkpoints.
        pool_size: database connections kept open per wallet (the pool may open as many
            again under load); at least 1. On PostgreSQL every process's pool counts against
            the server's ``max_connections``.
        max_retries: transient chain failures retried this many times (backoff 1, 2, 4 s...).
        retry_base_delay: first backoff delay, seconds.
        confirm_timeout: seconds to wait for confirmation inline before leaving it to
            ``process_due()``.
        approvals_url: the base URL where the owner approval page is served (``waiaas
            serve-approvals`` or ``waiaas.web.approvals_app`` mounted by the host), e.g.
            ``"https://wallet.example.com/approvals"``. When set, APPROVAL notifications carry
            a link to the page, and the signed message's domain and URI default to it.
        approval_domain: the SIWE/SIWS ``domain`` of approval messages (``host[:port]``; a
            wallet such as MetaMask warns when it differs from the page's host). Default:
            the host of ``approvals_url``, else ``"waiaas.local"``.
        approval_uri: the SIWE/SIWS ``URI`` of approval messages (the action and the
            transaction id are appended). Default: ``approvals_url``, else
            ``"waiaas://approval"``.
        audit_checkpoint_rows: a signed audit checkpoint is written every this many audit
            rows; ``Wallet.open`` verifies the rows written since the last one.
        on_tamper: what ``Wallet.open`` does when the audit chain since the last checkpoint is
            broken or committed rows are gone (lost WAL): ``"refuse"`` (default: raise
            :class:`~waiaas.errors.TamperDetectedError`, write nothing) or ``"report"`` (open,
            write a critical ``TAMPER_DETECTED`` row, notify, and checkpoint the log as found
            so the next open verifies from there; ``verify_audit`` keeps naming the break).
        allow_unlisted_contracts: **dangerous; off by default.** When ``False`` a contract
            call / program call effect (code the decoder cannot read as a transfer,
            approval, rent or fee) is denied unless a CONTRACT_WHITELIST names that contract
            or program. ``True`` lets calls to any contract through when no
            CONTRACT_WHITELIST applies (a whitelist that exists is still enforced): arbitrary
            code can move funds in ways no budget sees; only the simulation check remains.
        require_simulation: when ``True`` a transaction whose chain backend cannot simulate
            it (see docs/pipeline.md) is refused before signing; by default it proceeds on
            the decoded effects alone (the refusal of unknown code still applies). An EVM
            plain transfer whose balance changes are known exactly without a simulation
            (21,000 gas, no calldata, a recipient without code) counts as simulated.

    The domain and URI are fixed into each approval when it is created, so a signature
    stays valid whatever configuration the process that checks it runs with.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tier_defaults: dict[str, TierThresholds] = Field(default_factory=_default_tiers)
    default_tier: Tier = Tier.NOTIFY
    delay_seconds: int = Field(default=900, ge=0)
    approval_timeout: int = Field(default=3600, ge=1)
    no_owner_approval: Literal["deny", "delay"] = "deny"
    session_ttl: int = Field(default=3600, ge=1)
    session_max_renewals: int = Field(default=10, ge=0)
    session_absolute_lifetime: int = Field(default=7 * 86_400, ge=1)
    kdf: KdfLimits = Field(default_factory=KdfLimits.moderate)
    min_password_length: int = Field(default=12, ge=0, le=1024)
    keystore_dir: str | None = None
    keystore_backend: Literal["auto", "file", "database"] = "auto"
    checkpoint_interval: float = Field(default=300.0, gt=0)
    pool_size: int = Field(default=8, ge=1, le=1024)
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_base_delay: float = Field(default=1.0, ge=0)
    confirm_timeout: float = Field(default=30.0, ge=0)
    approvals_url: str | None = None
    approval_domain: str | None = None
    approval_uri: str | None = None
    audit_checkpoint_rows: int = Field(default=1_000, ge=1)
    on_tamper: Literal["refuse", "report"] = "refuse"
    allow_unlisted_contracts: bool = False
    require_simulation: bool = False

    @model_validator(mode="after")
    def _keystore_location(self) -> WalletConfig:
        if self.keystore_backend == "database" and self.keystore_dir is not None:
            raise ValueError(
                "keystore_dir names a directory for the file keystore; it cannot be combined "
                "with keystore_backend='database'"
            )
        return self

    @field_validator("approvals_url")
    @classmethod
    def _check_approvals_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
            or any(c.isspace() or ord(c) < 32 for c in value)
            or len(value) > 500
        ):
            raise ValueError(
                "approvals_url must be an http(s) URL without user info, query or fragment"
            )
        return value.rstrip("/")

    @field_validator("approval_domain")
    @classmethod
    def _check_domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _AUTHORITY.fullmatch(value):
            raise ValueError("approval_domain must be a host or host:port (RFC 3986 authority)")
        return value

    @field_validator("approval_uri")
    @classmethod
    def _check_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if (
            not parts.scheme
            or any(c.isspace() or ord(c) < 32 for c in value)
            or parts.query
            or parts.fragment
            or len(value) > 500
        ):
            raise ValueError("approval_uri must be an absolute URI without query or fragment")
        return value.rstrip("/")

    def siwe_domain(self) -> str:
        """The SIWE/SIWS domain new approval messages use."""
        if self.approval_domain is not None:
            return self.approval_domain
        if self.approvals_url is not None:
            return urlsplit(self.approvals_url).netloc
        return "waiaas.local"

    def siwe_uri(self) -> str:
        """The SIWE/SIWS URI (before ``/<action>/<tx id>``) new approval messages use."""
        if self.approval_uri is not None:
            return self.approval_uri
        if self.approvals_url is not None:
            return self.approvals_url
        return "waiaas://approval"

    def tier_thresholds(self, chain: str) -> TierThresholds | None:
        """The default thresholds for ``chain``, if any."""
        return self.tier_defaults.get(chain)


def password_from_env() -> str | None:
    """The master password from ``WAIAAS_MASTER_PASSWORD``, or ``None`` when unset/empty."""
    value = os.environ.get(PASSWORD_ENV)
    return value or None
