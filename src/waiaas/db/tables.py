"""SQLModel table classes: CORE-02's seven tables plus what later migrations add.

These classes are internal: the public API returns pydantic values, never rows. Every column,
type, nullability, default, CHECK constraint, index and foreign key matches
``sql/core-02-schema.sql`` (migration 0001) as upgraded by the later migrations; a test compares
the two table by table, and alembic's autogenerate compare must find no difference.

Amounts are TEXT decimal strings (wei exceeds SQLite's 64-bit integers); timestamps are
integer Unix seconds, UTC; JSON columns are TEXT.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    text,
)
from sqlmodel import Field, SQLModel

__all__ = [
    "CHANNEL_TYPES",
    "IN_FLIGHT",
    "NOT_CONFIRMED",
    "POLICY_TYPES",
    "RARE_SEVERITY",
    "AgentRow",
    "ApprovalRow",
    "AuditCheckpointRow",
    "AuditRow",
    "ChannelRow",
    "KeystoreRecordRow",
    "PolicyRow",
    "SessionRow",
    "TransactionRow",
    "UsageBucketRow",
    "WalletStateRow",
    "metadata",
]

# A private MetaData, so two copies of the package (or user SQLModel tables) never collide.
metadata = MetaData()


class _Base(SQLModel):
    metadata = metadata


AGENT_STATUSES = ("CREATING", "ACTIVE", "SUSPENDED", "TERMINATING", "TERMINATED")
TX_STATUSES = (
    "PENDING",
    "QUEUED",
    "EXECUTING",
    "SUBMITTED",
    "CONFIRMED",
    "FAILED",
    "CANCELLED",
    "EXPIRED",
)
TIERS = ("INSTANT", "NOTIFY", "DELAY", "APPROVAL")
SEVERITIES = ("info", "warning", "critical")
# CORE-02's four types (migration 0001) and those migration 0003 adds.
CORE_POLICY_TYPES = ("SPENDING_LIMIT", "ALLOWED_ADDRESSES", "TIME_RESTRICTION", "AUTO_STOP")
POLICY_TYPES = (
    *CORE_POLICY_TYPES,
    "RATE_LIMIT",
    "ALLOWED_TOKENS",
    "CONTRACT_WHITELIST",
    "METHOD_WHITELIST",
    "APPROVED_SPENDERS",
    "APPROVE_AMOUNT_LIMIT",
    "ALLOWED_NETWORKS",
)
#: The WHERE clause of the partial severity indexes (migration 0008); a query must contain
#: this exact term for SQLite to use them.
RARE_SEVERITY = "severity != 'info'"
# The audit rows spending windows count (waiaas.db.usage.REFUSAL_SQL): the partial index of
# migration 0011 holds these only.
_REFUSALS = (
    "(event_type IN ('REQUEST_REFUSED', 'DRY_RUN') "
    "OR (event_type = 'POLICY_VIOLATION' AND tx_id IS NULL))"
)
#: The WHERE clause of the partial ``idx_transactions_agent_status`` (migration 0014): the
#: in-flight statuses. A query must contain this exact term for SQLite (and PostgreSQL's
#: generic plans) to use the index.
IN_FLIGHT = "status IN ('PENDING', 'QUEUED', 'EXECUTING', 'SUBMITTED')"
#: The WHERE clause of the partial ``idx_transactions_agent_unconfirmed`` and
#: ``idx_transactions_status_unconfirmed`` (migration 0015): every row not CONFIRMED (in
#: flight, failed, cancelled, expired), a small share of a wallet's rows. A query by a status
#: other than CONFIRMED names this term so SQLite and PostgreSQL read them.
NOT_CONFIRMED = "status <> 'CONFIRMED'"
CORE_CHANNEL_TYPES = ("TELEGRAM", "DISCORD", "NTFY")
CHANNEL_TYPES = (*CORE_CHANNEL_TYPES, "WEBHOOK")


def in_list(column: str, values: tuple[str, ...]) -> str:
    """SQL text ``column IN ('A', 'B')`` for a CHECK constraint."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _blob() -> Column[bytes]:
    return Column(LargeBinary, nullable=True)


def _text(nullable: bool = True, *, default: str | None = None, **kw: object) -> Column[str]:
    return Column(
        Text,
        nullable=nullable,
        server_default=text(repr(default)) if default is not None else None,
        **kw,  # type: ignore[arg-type]
    )


def _spec_pk(type_: type[Text] | type[Integer]) -> Column[Any]:
    """The ``id`` column of a table still as CORE-02's DDL created it.

    SQLite does not make ``id TEXT PRIMARY KEY`` (nor ``INTEGER PRIMARY KEY``) NOT NULL, and
    reports such a column as nullable; the declaration says so too, so that alembic's
    autogenerate compare finds no difference. Tables rebuilt by a migration (``policies``,
    ``notification_channels``) and new tables get ``NOT NULL`` and use a plain primary key.
    """
    return Column(type_, primary_key=True, nullable=True)


#: Epoch seconds and counters that outgrow 32 bits: INTEGER on SQLite, BIGINT on PostgreSQL.
_EPOCH = Integer().with_variant(BigInteger(), "postgresql")


def _int(nullable: bool = True, *, default: int | None = None) -> Column[int]:
    return Column(
        Integer,
        nullable=nullable,
        server_default=text(str(default)) if default is not None else None,
    )


class AgentRow(_Base, table=True):
    """``agents``: one agent, bound to one chain and network (CORE-02 §2.1)."""

    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint(in_list("status", AGENT_STATUSES)),
        Index("idx_agents_public_key", "public_key", unique=True),
        Index("idx_agents_status", "status"),
        Index("idx_agents_chain_network", "chain", "network"),
    )

    id: str = Field(sa_column=_spec_pk(Text))
    name: str = Field(sa_column=_text(False))
    chain: str = Field(sa_column=_text(False))
    network: str = Field(sa_column=_text(False))
    public_key: str = Field(sa_column=_text(False))
    status: str = Field(default="CREATING", sa_column=_text(False, default="CREATING"))
    owner_address: str | None = Field(default=None, sa_column=_text())
    created_at: int = Field(sa_column=_int(False))
    updated_at: int = Field(sa_column=_int(False))
    suspended_at: int | None = Field(default=None, sa_column=_int())
    suspension_reason: str | None = Field(default=None, sa_column=_text())
    # migration 0007: MAC over (agent id, owner address) under the wallet's integrity key
    owner_mac: str | None = Field(default=None, sa_column=_text())


class SessionRow(_Base, table=True):
    """``sessions``: a session token's hash, constraints and usage (CORE-02 §2.2)."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("idx_sessions_agent_id", "agent_id"),
        Index("idx_sessions_expires_at", "expires_at"),
        Index("idx_sessions_token_hash", "token_hash"),
    )

    id: str = Field(sa_column=_spec_pk(Text))
    agent_id: str = Field(
        sa_column=Column(Text, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False)
    )
    token_hash: str = Field(sa_column=_text(False))
    expires_at: int = Field(sa_column=_int(False))
    constraints: str | None = Field(default=None, sa_column=_text())
    usage_stats: str | None = Field(default=None, sa_column=_text())
    revoked_at: int | None = Field(default=None, sa_column=_int())
    created_at: int = Field(sa_column=_int(False))


class TransactionRow(_Base, table=True):
    """``transactions``: one request and its way through the pipeline (CORE-02 §2.3)."""

    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint(in_list("status", TX_STATUSES)),
        CheckConstraint(f"{in_list('tier', TIERS)} OR tier IS NULL"),
        # migration 0014: the in-flight rows only, and the queued rows only
        Index(
            "idx_transactions_agent_status",
            "agent_id",
            "status",
            sqlite_where=text(IN_FLIGHT),
        ),
        Index("idx_transactions_session_id", "session_id"),
        Index("idx_transactions_tx_hash", "tx_hash", unique=True),
        Index(
            "idx_transactions_queued_at",
            "queued_at",
            sqlite_where=text("queued_at IS NOT NULL"),
        ),
        Index("idx_transactions_created_at", "created_at"),
        # migration 0015: listings and scans by a status other than CONFIRMED, newest first
        Index(
            "idx_transactions_agent_unconfirmed",
            "agent_id",
            "status",
            "created_at",
            sqlite_where=text(NOT_CONFIRMED),
        ),
        Index(
            "idx_transactions_status_unconfirmed",
            "status",
            "created_at",
            sqlite_where=text(NOT_CONFIRMED),
        ),
        # migration 0003: budgets read an agent's window without scanning its history;
        # migration 0016: with ``error``, a window's requests and denials from the index alone
        Index("idx_transactions_agent_created", "agent_id", "created_at", "error"),
    )

    id: str = Field(sa_column=_spec_pk(Text))
    agent_id: str = Field(
        sa_column=Column(Text, ForeignKey("agents.id", ondelete="RESTRICT"), nullable=False)
    )
    session_id: str | None = Field(
        default=None,
        sa_column=Column(Text, ForeignKey("sessions.id", ondelete="SET NULL"), nullable=True),
    )
    chain: str = Field(sa_column=_text(False))
    tx_hash: str | None = Field(default=None, sa_column=_text())
    type: str = Field(sa_column=_text(False))
    amount: str | None = Field(default=None, sa_column=_text())
    to_address: str | None = Field(default=None, sa_column=_text())
    status: str = Field(default="PENDING", sa_column=_text(False, default="PENDING"))
    tier: str | None = Field(default=None, sa_column=_text())
    queued_at: int | None = Field(default=None, sa_column=_int())
    executed_at: int | None = Field(default=None, sa_column=_int())
    created_at: int = Field(sa_column=_int(False))
    error: str | None = Field(default=None, sa_column=_text())
    metadata_json: str | None = Field(default=None, sa_column=Column("metadata", Text))
    # migration 0006: per-asset amounts this transaction spends (JSON of decimal strings)
    spend: str | None = Field(default=None, sa_column=_text())
    # migration 0007: MAC over the stored request (what is evaluated, approved and signed)
    integrity: str | None = Field(default=None, sa_column=_text())


class PolicyRow(_Base, table=True):
    """``policies``: one rule set, global (agent_id NULL) or per agent (CORE-02 §2.4)."""

    __tablename__ = "policies"
    __table_args__ = (
        CheckConstraint(in_list("type", POLICY_TYPES)),
        Index("idx_policies_agent_id", "agent_id"),
        Index("idx_policies_type", "type"),
        Index("idx_policies_enabled", "enabled"),
    )

    id: str = Field(sa_column=Column(Text, primary_key=True))
    agent_id: str | None = Field(
        default=None,
        sa_column=Column(Text, ForeignKey("agents.id", ondelete="CASCADE"), nullable=True),
    )
    type: str = Field(sa_column=_text(False))
    rules: str = Field(sa_column=_text(False))
    priority: int = Field(default=0, sa_column=_int(False, default=0))
    enabled: int = Field(default=1, sa_column=_int(False, default=1))
    created_at: int = Field(sa_column=_int(False))
    updated_at: int = Field(sa_column=_int(False))
    # migration 0007: MAC over every column above
    mac: str | None = Field(default=None, sa_column=_text())


class AuditRow(_Base, table=True):
    """``audit_log``: append-only; UPDATE and DELETE abort (triggers, migration 0002)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(in_list("severity", SEVERITIES)),
        Index("idx_audit_log_timestamp", "timestamp"),
        Index("idx_audit_log_agent_timestamp", "agent_id", "timestamp"),
        # migration 0008: one index per filter shape, each ending in timestamp (then rowid),
        # so every query reads its page in (timestamp, id) order; see AuditRepository.query
        Index("idx_audit_log_event_timestamp", "event_type", "timestamp"),
        Index("idx_audit_log_agent_event_timestamp", "agent_id", "event_type", "timestamp"),
        Index(
            "idx_audit_log_severity_timestamp",
            "severity",
            "timestamp",
            sqlite_where=text(RARE_SEVERITY),
        ),
        Index(
            "idx_audit_log_agent_severity_timestamp",
            "agent_id",
            "severity",
            "timestamp",
            sqlite_where=text(RARE_SEVERITY),
        ),
        Index("idx_audit_log_tx_id", "tx_id", sqlite_where=text("tx_id IS NOT NULL")),
        # migration 0011: one agent's refusals and dry runs (what spending windows count)
        Index(
            "idx_audit_log_agent_refusals",
            "agent_id",
            "timestamp",
            sqlite_where=text(_REFUSALS),
        ),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=_spec_pk(Integer))
    timestamp: int = Field(sa_column=_int(False))
    event_type: str = Field(sa_column=_text(False))
    actor: str = Field(sa_column=_text(False))
    agent_id: str | None = Field(default=None, sa_column=_text())
    session_id: str | None = Field(default=None, sa_column=_text())
    tx_id: str | None = Field(default=None, sa_column=_text())
    details: str = Field(sa_column=_text(False))
    severity: str = Field(default="info", sa_column=_text(False, default="info"))
    ip_address: str | None = Field(default=None, sa_column=_text())
    # migration 0007: the hash chain (see waiaas.db.chain) and the row's MAC; migration
    # 0013: their 32 bytes (BLOB, bytea), not 64 hex characters
    prev_hash: bytes | None = Field(default=None, sa_column=_blob())
    row_hash: bytes | None = Field(default=None, sa_column=_blob())
    mac: bytes | None = Field(default=None, sa_column=_blob())


class AuditCheckpointRow(_Base, table=True):
    """``audit_checkpoints`` (migration 0007): ed25519-signed statements of the chain head."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("idx_audit_checkpoints_seq", "seq"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    seq: int = Field(sa_column=_int(False))
    head_hash: str = Field(sa_column=_text(False))
    created_at: int = Field(sa_column=_int(False))
    wallet_id: str = Field(sa_column=_text(False))
    public_key: str = Field(sa_column=_text(False))
    signature: str = Field(sa_column=_text(False))


class ApprovalRow(_Base, table=True):
    """``pending_approvals``: an APPROVAL-tier transaction waiting for its owner (§2.6)."""

    __tablename__ = "pending_approvals"
    __table_args__ = (
        Index("idx_pending_approvals_tx_id", "tx_id"),
        Index("idx_pending_approvals_expires_at", "expires_at"),
    )

    id: str = Field(sa_column=_spec_pk(Text))
    tx_id: str = Field(
        sa_column=Column(Text, ForeignKey("transactions.id", ondelete="CASCADE"), nullable=False)
    )
    required_by: int = Field(sa_column=_int(False))
    expires_at: int = Field(sa_column=_int(False))
    approved_at: int | None = Field(default=None, sa_column=_int())
    rejected_at: int | None = Field(default=None, sa_column=_int())
    owner_signature: str | None = Field(default=None, sa_column=_text())
    created_at: int = Field(sa_column=_int(False))
    # migration 0007: MAC over (id, tx id, expiry, creation time)
    mac: str | None = Field(default=None, sa_column=_text())


class ChannelRow(_Base, table=True):
    """``notification_channels``: where notifications go (CORE-02 §2.7; WEBHOOK from 0004)."""

    __tablename__ = "notification_channels"
    __table_args__ = (
        CheckConstraint(in_list("type", CHANNEL_TYPES)),
        Index("idx_notification_channels_type", "type"),
        Index("idx_notification_channels_enabled", "enabled"),
    )

    id: str = Field(sa_column=Column(Text, primary_key=True))
    type: str = Field(sa_column=_text(False))
    config: str = Field(sa_column=_text(False))
    priority: int = Field(default=0, sa_column=_int(False, default=0))
    enabled: int = Field(default=1, sa_column=_int(False, default=1))
    last_success_at: int | None = Field(default=None, sa_column=_int())
    last_failure_at: int | None = Field(default=None, sa_column=_int())
    created_at: int = Field(sa_column=_int(False))


class WalletStateRow(_Base, table=True):
    """``wallet_state`` (migration 0005): persisted wallet-wide state such as the kill switch."""

    __tablename__ = "wallet_state"

    key: str = Field(sa_column=Column(Text, primary_key=True))
    value: str = Field(sa_column=_text(False))
    updated_at: int = Field(sa_column=_int(False))


def _zero() -> Column[int]:
    return _int(False, default=0)


class UsageBucketRow(_Base, table=True):
    """``usage_buckets`` (migration 0009): an agent's per-hour request counts and per-asset
    spend sums, kept by triggers (see :mod:`waiaas.db.usage`)."""

    __tablename__ = "usage_buckets"
    __table_args__ = (
        Index("idx_usage_buckets_unsealed", "agent_id", "start", sqlite_where=text("mac IS NULL")),
        {"sqlite_with_rowid": False},
    )

    agent_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    start: int = Field(sa_column=Column(Integer, primary_key=True, nullable=False))
    kind: int = Field(sa_column=Column(Integer, primary_key=True, nullable=False))
    asset: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    requests: int = Field(default=0, sa_column=_zero())
    denials: int = Field(default=0, sa_column=_zero())
    refused: int = Field(default=0, sa_column=_zero())
    refused_denials: int = Field(default=0, sa_column=_zero())
    odd: int = Field(default=0, sa_column=_zero())
    s0: int = Field(default=0, sa_column=_zero())
    s1: int = Field(default=0, sa_column=_zero())
    s2: int = Field(default=0, sa_column=_zero())
    s3: int = Field(default=0, sa_column=_zero())
    s4: int = Field(default=0, sa_column=_zero())
    s5: int = Field(default=0, sa_column=_zero())
    s6: int = Field(default=0, sa_column=_zero())
    s7: int = Field(default=0, sa_column=_zero())
    s8: int = Field(default=0, sa_column=_zero())
    mac: str | None = Field(default=None, sa_column=_text())


class KeystoreRecordRow(_Base, table=True):
    """``keystore_records`` (migration 0010): the sealed records of a keystore kept in the
    database (``WalletConfig.keystore_backend = "database"``), one row per record of the file
    layout; see :mod:`waiaas.keystore._dbstore`."""

    __tablename__ = "keystore_records"
    __table_args__ = (CheckConstraint("generation >= 0", name="ck_keystore_records_generation"),)

    name: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    generation: int = Field(sa_column=Column(_EPOCH, nullable=False))
    body: str = Field(sa_column=_text(False))
    updated_at: int = Field(sa_column=Column(_EPOCH, nullable=False))
