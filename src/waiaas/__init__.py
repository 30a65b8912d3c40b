"""waiaas: an embedded wallet engine for AI agents.

Agents get keys they never see, session tokens with constraints, and policies they cannot
escape; every transaction runs one audited pipeline (session -> policy -> tier -> delay or
owner approval -> sign -> submit -> confirm) on the host's own SQLite file.

Example::

    from waiaas import Transfer, Wallet
    from waiaas.testing import local_chains

    with Wallet.open("wallet.db", password="...", chains=local_chains()) as wallet:
        agent = wallet.create_agent("trader", "solana")
        token = wallet.issue_session(agent.id).token
        result = wallet.send(token, Transfer(to="...", amount=1_000_000))

``import waiaas`` does no I/O and does not import the chain libraries (web3, solders).
"""

import logging as _logging

from waiaas.agent import AgentHandle, AgentLimits, AssetInfo, Balance
from waiaas.aio import AsyncAgentHandle, AsyncWallet
from waiaas.chains.base import ChainAdapter
from waiaas.clock import Clock, SystemClock
from waiaas.config import KdfLimits, TierThresholds, WalletConfig
from waiaas.db import CheckpointResult
from waiaas.errors import (
    AgentNotActiveError,
    ApprovalError,
    AuthError,
    ChainError,
    ChainErrorKind,
    ConstraintViolationError,
    DatabaseAuthError,
    DatabaseCorruptError,
    DatabaseLockedError,
    DatabaseMissingError,
    DatabaseOpenError,
    DatabaseReadOnlyError,
    DatabaseUnreachableError,
    DiskFullError,
    ExecutionRevertedError,
    InsufficientFundsError,
    InvalidAddressError,
    InvalidInputError,
    InvalidTransitionError,
    KeyIntegrityError,
    KeyMissingError,
    KeystoreError,
    KeystoreLockedError,
    KeystoreMismatchError,
    KeystoreMissingError,
    KillSwitchActiveError,
    MigrationError,
    NotADatabaseError,
    NotFoundError,
    NotificationError,
    PasswordChangedError,
    PasswordUnavailableError,
    PermanentChainError,
    PolicyDeniedError,
    SchemaTooNewError,
    StaleTransactionError,
    StateError,
    StorageError,
    StorageIOError,
    TamperDetectedError,
    TokenExpiredError,
    TokenRevokedError,
    TransientChainError,
    WaiaasError,
    WrongPasswordError,
)
from waiaas.pipeline.report import DueProblem, DueReport
from waiaas.plots import BudgetUsage
from waiaas.policy import Decision, Explanation, PolicySpec, PriceOracle, ReplayResult
from waiaas.services.policies import PolicyInfo, PolicyList
from waiaas.sessions import IssuedSession, SessionConstraints, SessionInfo, SessionList
from waiaas.types import (
    AccountSpec,
    AgentInfo,
    AgentList,
    AgentStatus,
    Approve,
    AuditCheckpoint,
    AuditEntry,
    AuditEvent,
    AuditPage,
    AuditReport,
    Batch,
    ContractCall,
    KillSwitchRelease,
    KillSwitchState,
    KillSwitchSummary,
    Request,
    Severity,
    Tier,
    TokenTransfer,
    TransactionInfo,
    TransactionList,
    Transfer,
    TxStatus,
    TxType,
)
from waiaas.units import format_units, parse_units
from waiaas.wallet import TransactionResult, Wallet
from waiaas.web.display import EffectRow, NetworkFee, TxDisplay

__version__ = "0.1.0.dev0"

# A library never configures logging; hosts that do see waiaas's records as usual.
_logging.getLogger("waiaas").addHandler(_logging.NullHandler())

__all__ = [
    "AccountSpec",
    "AgentHandle",
    "AgentInfo",
    "AgentLimits",
    "AgentList",
    "AgentNotActiveError",
    "AgentStatus",
    "ApprovalError",
    "Approve",
    "AssetInfo",
    "AsyncAgentHandle",
    "AsyncWallet",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditEvent",
    "AuditPage",
    "AuditReport",
    "AuthError",
    "Balance",
    "Batch",
    "BudgetUsage",
    "ChainAdapter",
    "ChainError",
    "ChainErrorKind",
    "CheckpointResult",
    "Clock",
    "ConstraintViolationError",
    "ContractCall",
    "DatabaseAuthError",
    "DatabaseCorruptError",
    "DatabaseLockedError",
    "DatabaseMissingError",
    "DatabaseOpenError",
    "DatabaseReadOnlyError",
    "DatabaseUnreachableError",
    "Decision",
    "DiskFullError",
    "DueProblem",
    "DueReport",
    "EffectRow",
    "ExecutionRevertedError",
    "Explanation",
    "InsufficientFundsError",
    "InvalidAddressError",
    "InvalidInputError",
    "InvalidTransitionError",
    "IssuedSession",
    "KdfLimits",
    "KeyIntegrityError",
    "KeyMissingError",
    "KeystoreError",
    "KeystoreLockedError",
    "KeystoreMismatchError",
    "KeystoreMissingError",
    "KillSwitchActiveError",
    "KillSwitchRelease",
    "KillSwitchState",
    "KillSwitchSummary",
    "MigrationError",
    "NetworkFee",
    "NotADatabaseError",
    "NotFoundError",
    "NotificationError",
    "PasswordChangedError",
    "PasswordUnavailableError",
    "PermanentChainError",
    "PolicyDeniedError",
    "PolicyInfo",
    "PolicyList",
    "PolicySpec",
    "PriceOracle",
    "ReplayResult",
    "Request",
    "SchemaTooNewError",
    "SessionConstraints",
    "SessionInfo",
    "SessionList",
    "Severity",
    "StaleTransactionError",
    "StateError",
    "StorageError",
    "StorageIOError",
    "SystemClock",
    "TamperDetectedError",
    "Tier",
    "TierThresholds",
    "TokenExpiredError",
    "TokenRevokedError",
    "TokenTransfer",
    "TransactionInfo",
    "TransactionList",
    "TransactionResult",
    "Transfer",
    "TransientChainError",
    "TxDisplay",
    "TxStatus",
    "TxType",
    "WaiaasError",
    "Wallet",
    "WalletConfig",
    "WrongPasswordError",
    "__version__",
    "format_units",
    "parse_units",
]
