"""The public surface: a pinned export list, documented, and an import that stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import waiaas
from waiaas import Wallet

EXPECTED = [
    "AccountSpec", "AgentHandle", "AgentInfo", "AgentLimits", "AgentList",
    "AgentNotActiveError", "AgentStatus", "ApprovalError", "Approve", "AssetInfo",
    "AsyncAgentHandle", "AsyncWallet", "AuditCheckpoint", "AuditEntry", "AuditEvent",
    "AuditPage", "AuditReport", "AuthError", "Balance", "Batch", "BudgetUsage", "ChainAdapter",
    "ChainError", "ChainErrorKind", "CheckpointResult", "Clock", "ConstraintViolationError",
    "ContractCall", "DatabaseAuthError", "DatabaseCorruptError", "DatabaseLockedError",
    "DatabaseMissingError", "DatabaseOpenError", "DatabaseReadOnlyError",
    "DatabaseUnreachableError", "Decision", "DiskFullError", "DueProblem", "DueReport",
    "EffectRow", "ExecutionRevertedError", "Explanation", "InsufficientFundsError",
    "InvalidAddressError", "InvalidInputError", "InvalidTransitionError", "IssuedSession",
    "KdfLimits", "KeyIntegrityError", "KeyMissingError", "KeystoreError", "KeystoreLockedError",
    "KeystoreMismatchError", "KeystoreMissingError", "KillSwitchActiveError",
    "KillSwitchRelease", "KillSwitchState", "KillSwitchSummary", "MigrationError", "NetworkFee",
    "NotADatabaseError", "NotFoundError", "NotificationError", "PasswordChangedError",
    "PasswordUnavailableError", "PermanentChainError", "PolicyDeniedError", "PolicyInfo",
    "PolicyList", "PolicySpec", "PriceOracle", "ReplayResult", "Request", "SchemaTooNewError",
    "SessionConstraints", "SessionInfo", "SessionList", "Severity", "StaleTransactionError",
    "StateError", "StorageError", "StorageIOError", "SystemClock", "TamperDetectedError",
    "Tier", "TierThresholds", "TokenExpiredError", "TokenRevokedError", "TokenTransfer",
    "TransactionInfo", "TransactionList", "TransactionResult", "Transfer",
    "TransientChainError", "TxDisplay", "TxStatus", "TxType", "WaiaasError", "Wallet",
    "WalletConfig", "WrongPasswordError", "__version__", "format_units", "parse_units",
]  # fmt: skip


def test_export_list_is_pinned_and_sorted() -> None:
    """Adding or removing a public name is a deliberate change to this list."""
    assert waiaas.__all__ == EXPECTED
    assert sorted(waiaas.__all__) == waiaas.__all__


def test_every_export_exists_and_is_documented() -> None:
    """Every exported class and function has a docstring."""
    for name in waiaas.__all__:
        obj = getattr(waiaas, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_every_error_is_a_waiaas_error() -> None:
    """The exception tree has one root."""
    for name in waiaas.__all__:
        obj = getattr(waiaas, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, waiaas.WaiaasError), name


def test_wallet_methods_are_documented() -> None:
    """Each public Wallet method says what it does."""
    for name, member in inspect.getmembers(Wallet):
        if name.startswith("_") or not callable(member):
            continue
        assert inspect.getdoc(member), f"Wallet.{name} has no docstring"


def test_import_does_not_load_chain_libraries() -> None:
    """``import waiaas`` stays free of the chain libraries and of the agent frameworks."""
    heavy = (
        "web3", "solders", "eth_tester", "eth", "eth_account", "coincurve", "mcp",
        "langchain_core", "agents", "pydantic_ai", "openai",
    )  # fmt: skip
    code = (
        "import sys, waiaas, waiaas.tools, waiaas.aio, waiaas.integrations; "
        f"print([m for m in sys.modules if m.split('.')[0] in {heavy!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_local_chain_without_the_local_extra_says_what_to_install() -> None:
    """Without eth-tester (the ``local`` extra) the in-process EVM chain says which extra to
    install; the rest of waiaas still imports."""
    code = (
        "import sys; sys.modules['eth_tester'] = None\n"
        "import waiaas\n"
        "from waiaas.chains.evm import EvmAdapter\n"
        "try:\n"
        "    EvmAdapter.local()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'waiaas[local]'" in out.stdout
