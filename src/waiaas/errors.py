"""The waiaas exception tree.

Every error the library raises on purpose is a :class:`WaiaasError`. Each carries a stable
machine-readable ``code`` and structured attributes, so a caller (or an agent) can branch on
them without parsing the message. Third-party errors are translated at one boundary per
component and chained with ``raise ... from exc``.

::

    WaiaasError
    ├── InvalidInputError              bad input to a public entry point (.field, .problems);
    │   │                              also a ValueError
    │   └── InvalidAddressError        an address is not valid for the chain (.chain, .address)
    ├── NotFoundError                  no such agent, session, transaction... (.entity, .entity_id)
    ├── StateError                     an operation is not allowed in the current state
    │   ├── InvalidTransitionError     a status change that the state machine forbids
    │   ├── AgentNotActiveError        the agent is suspended, terminated, ... (.agent_id, .status)
    │   └── KillSwitchActiveError      the kill switch is on; nothing moves
    ├── StorageError                   the database file cannot be used (.operation, .path)
    │   ├── DatabaseOpenError          missing directory, permissions, ...
    │   │   ├── DatabaseUnreachableError   the PostgreSQL server cannot be reached
    │   │   ├── DatabaseAuthError          the PostgreSQL server refused the credentials
    │   │   └── DatabaseMissingError       the PostgreSQL database does not exist
    │   ├── NotADatabaseError          the file is not SQLite
    │   ├── SchemaTooNewError          written by a newer waiaas (.found, .known)
    │   ├── MigrationError             a migration failed; the file was left as it was
    │   ├── DatabaseReadOnlyError      the file (or its directory) cannot be written
    │   ├── DiskFullError              the disk (or a file size limit) is full
    │   ├── DatabaseCorruptError       the file or a stored value is damaged (.table, .column)
    │   ├── DatabaseLockedError        another writer held the lock too long
    │   └── StorageIOError             the operating system reported an I/O error
    ├── KeystoreError
    │   ├── KeystoreLockedError        the keystore must be unlocked first
    │   │   └── PasswordChangedError   another process changed the master password
    │   ├── KeystoreMissingError       the database has agents but its keystore is gone
    │   ├── KeyMissingError            an agent's key file is not in the keystore (.agent_id)
    │   ├── KeystoreMismatchError      the keystore is not the one the database recorded
    │   ├── WrongPasswordError         the master password does not open the keystore
    │   ├── KeyIntegrityError          a sealed key failed authentication (.key_id)
    │   └── PasswordUnavailableError   no password source worked (the message says what to do)
    ├── AuthError                      a session token was refused (.reason)
    │   ├── TokenExpiredError
    │   └── TokenRevokedError
    ├── PolicyDeniedError              a policy refused the request (.rule, .figure, .next)
    ├── ConstraintViolationError       a session constraint refused the request (.constraint)
    ├── ApprovalError                  an owner approval or rejection was refused (.tx_id, .reason)
    ├── ChainError                     a chain failed the request (.kind: permanent|transient|stale)
    │   ├── PermanentChainError
    │   │   ├── InsufficientFundsError
    │   │   └── ExecutionRevertedError (.reason)
    │   ├── TransientChainError
    │   └── StaleTransactionError      blockhash expired / nonce too low: rebuild (up to 3 times)
    ├── NotificationError              a notification channel failed (never fails a transaction)
    └── TamperDetectedError            stored data fails its integrity check (.entity, .problem)

Secrets (keys, passwords, tokens) never appear in a message or attribute of these errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the policy package imports this module; only the type is needed here
    from waiaas.policy.model import Decision

__all__ = [
    "AgentNotActiveError",
    "ApprovalError",
    "AuthError",
    "ChainError",
    "ChainErrorKind",
    "ConstraintViolationError",
    "DatabaseAuthError",
    "DatabaseCorruptError",
    "DatabaseLockedError",
    "DatabaseMissingError",
    "DatabaseOpenError",
    "DatabaseReadOnlyError",
    "DatabaseUnreachableError",
    "DiskFullError",
    "ExecutionRevertedError",
    "InsufficientFundsError",
    "InvalidAddressError",
    "InvalidInputError",
    "InvalidTransitionError",
    "KeyIntegrityError",
    "KeyMissingError",
    "KeystoreError",
    "KeystoreLockedError",
    "KeystoreMismatchError",
    "KeystoreMissingError",
    "KillSwitchActiveError",
    "MigrationError",
    "NotADatabaseError",
    "NotFoundError",
    "NotificationError",
    "PasswordChangedError",
    "PasswordUnavailableError",
    "PermanentChainError",
    "PolicyDeniedError",
    "SchemaTooNewError",
    "StaleTransactionError",
    "StateError",
    "StorageError",
    "StorageIOError",
    "TamperDetectedError",
    "TokenExpiredError",
    "TokenRevokedError",
    "TransientChainError",
    "WaiaasError",
    "WrongPasswordError",
]


class WaiaasError(Exception):
    """Root of every error waiaas raises on purpose.

    Attributes:
        code: a stable, machine-readable identifier (``"POLICY_DENIED"``, ...).
        message: the human-readable message (also ``str(error)``).
    """

    code: str = "WAIAAS_ERROR"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for name, value in fields.items():
            setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Return the code, message and structured fields as plain JSON-able data."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for name, value in vars(self).items():
            if name in ("message", "args") or name.startswith("_"):
                continue
            out[name] = _jsonable(value)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | bool | float | None):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return str(value)


# --------------------------------------------------------------------------- input


class InvalidInputError(WaiaasError, ValueError):
    """A public entry point received input it cannot accept.

    It is also a :class:`ValueError`, so pydantic treats it as a validation failure: a
    request model (``Transfer(amount=1.5)``) raises ``InvalidInputError`` directly, and
    the same model nested in your own pydantic model makes that model raise pydantic's
    ``ValidationError`` as usual.

    Attributes:
        field: the name of the offending argument or field (``None`` when several).
        problems: every problem found, as ``"field: message"`` strings.
    """

    code = "INVALID_INPUT"
    field: str | None
    problems: list[str]

    def __init__(
        self, message: str, *, field: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message, field=field, problems=list(problems) or [message])


class InvalidAddressError(InvalidInputError):
    """An address is not valid for the chain it is used on."""

    code = "INVALID_ADDRESS"
    chain: str
    address: str

    def __init__(self, message: str, *, chain: str, address: str, field: str = "address") -> None:
        super().__init__(message, field=field)
        self.chain = chain
        self.address = address


class NotFoundError(WaiaasError):
    """No entity with that id exists (``entity`` is ``"agent"``, ``"transaction"``, ...)."""

    code = "NOT_FOUND"
    entity: str
    entity_id: str

    def __init__(self, entity: str, entity_id: str) -> None:
        super().__init__(f"{entity} {entity_id!r} not found", entity=entity, entity_id=entity_id)


# --------------------------------------------------------------------------- state


class StateError(WaiaasError):
    """The operation is not allowed in the entity's current state."""

    code = "INVALID_STATE"


class InvalidTransitionError(StateError):
    """A status change the state machine forbids, or a compare-and-swap that lost a race."""

    code = "INVALID_TRANSITION"
    entity: str
    entity_id: str
    current: str
    target: str

    def __init__(self, entity: str, entity_id: str, current: str, target: str) -> None:
        super().__init__(
            f"{entity} {entity_id} cannot go from {current} to {target}",
            entity=entity,
            entity_id=entity_id,
            current=current,
            target=target,
        )


class AgentNotActiveError(StateError):
    """The agent is not ACTIVE (suspended, terminated, ...), so it cannot transact."""

    code = "AGENT_NOT_ACTIVE"
    agent_id: str
    status: str
    reason: str | None

    def __init__(self, agent_id: str, status: str, reason: str | None = None) -> None:
        text = f"agent {agent_id} is {status}"
        if reason:
            text += f" ({reason})"
        super().__init__(text, agent_id=agent_id, status=status, reason=reason)


class KillSwitchActiveError(StateError):
    """The kill switch is active: no transaction is accepted until ``recover()``."""

    code = "KILL_SWITCH_ACTIVE"

    def __init__(self, message: str = "the kill switch is active; call recover() first") -> None:
        super().__init__(message)


# --------------------------------------------------------------------------- storage


class StorageError(WaiaasError):
    """The database file cannot be opened or used.

    Every SQLite failure, wherever it happens (open, begin, read, write, commit), reaches the
    caller as a subclass of this error; the SQLite / SQLAlchemy exception is chained as
    ``__cause__``. Nothing half-written is ever committed: the transaction that failed was
    rolled back, and the history before it is intact.

    Attributes:
        operation: what waiaas was doing (``"open"``, ``"begin"``, ``"read"``, ``"write"``,
            ``"commit"``, ``"checkpoint"``, ``"backup"``), when known.
        path: the database file, when known.
    """

    code = "STORAGE_ERROR"
    operation: str | None = None
    path: str | None = None


class DatabaseOpenError(StorageError):
    """The database path cannot be opened (missing directory, permissions, ...)."""

    code = "DATABASE_OPEN_FAILED"
    path: str

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message, path=path)


class DatabaseUnreachableError(DatabaseOpenError):
    """The PostgreSQL server cannot be reached (refused, unknown host, timed out, or the
    connection was closed before it was established).

    ``path`` is the URL with its password replaced by ``***``.
    """

    code = "DATABASE_UNREACHABLE"


class DatabaseAuthError(DatabaseOpenError):
    """The PostgreSQL server refused the user or password in the URL (or ``pg_hba.conf``
    has no entry for this client). The password never appears in the message."""

    code = "DATABASE_AUTH_FAILED"


class DatabaseMissingError(DatabaseOpenError):
    """The PostgreSQL database named in the URL does not exist (waiaas creates tables, not
    databases: ``CREATE DATABASE`` it first)."""

    code = "DATABASE_MISSING"


class NotADatabaseError(StorageError):
    """The file exists but is not an SQLite database."""

    code = "NOT_A_DATABASE"
    path: str

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not an SQLite database", path=path)


class SchemaTooNewError(StorageError):
    """The database was written by a newer waiaas: its schema version is unknown here."""

    code = "SCHEMA_TOO_NEW"
    path: str
    found: str
    known: str

    def __init__(self, path: str, found: str, known: str) -> None:
        super().__init__(
            f"{path} has schema revision {found!r}, newer than this waiaas knows "
            f"(head {known!r}); upgrade waiaas to open it",
            path=path,
            found=found,
            known=known,
        )


class MigrationError(StorageError):
    """A schema migration failed; the database file was left exactly as it was."""

    code = "MIGRATION_FAILED"
    path: str
    revision: str | None

    def __init__(self, message: str, *, path: str, revision: str | None = None) -> None:
        super().__init__(message, path=path, revision=revision)


class DatabaseReadOnlyError(StorageError):
    """The database file, its directory or its WAL/SHM files cannot be written.

    Fix the file's permissions (or remount the disk read-write) and open it again.
    """

    code = "STORAGE_READ_ONLY"


class DiskFullError(StorageError):
    """The disk holding the database (or the process's file size limit) is full.

    The write that failed was rolled back; free space and retry.
    """

    code = "STORAGE_FULL"


class DatabaseCorruptError(StorageError):
    """The database file, or a value stored in it, is damaged.

    Attributes:
        table: the table involved, when known.
        column: the column involved, when known (a stored value that does not decode).

    Restore the file from a backup (``Wallet.backup``) with its keystore directory.
    """

    code = "STORAGE_CORRUPT"
    table: str | None = None
    column: str | None = None


class DatabaseLockedError(StorageError):
    """Another connection held the database lock longer than the timeout allows."""

    code = "DATABASE_BUSY"


class StorageIOError(StorageError):
    """The operating system reported an I/O error while reading or writing the file."""

    code = "STORAGE_IO"


# --------------------------------------------------------------------------- keystore


class KeystoreError(WaiaasError):
    """The keystore failed."""

    code = "KEYSTORE_ERROR"


class KeystoreLockedError(KeystoreError):
    """The keystore is locked; unlock it with the master password first."""

    code = "KEYSTORE_LOCKED"

    def __init__(self, message: str = "the keystore is locked; unlock it first") -> None:
        super().__init__(message)


class PasswordChangedError(KeystoreLockedError):
    """Another process changed the master password; this one was locked.

    Unlock again with the new password (``Wallet.unlock``). Nothing was signed.
    """

    code = "KEYSTORE_PASSWORD_CHANGED"

    def __init__(
        self,
        message: str = "the master password was changed by another process; "
        "unlock again with the new password",
    ) -> None:
        super().__init__(message)


class KeystoreMissingError(KeystoreError):
    """The database has agents (or recorded a keystore) but no keystore is at the path.

    A new, empty keystore would make every agent's key unusable, so waiaas refuses to open
    instead. Restore the keystore directory from the backup taken with the database, or
    point ``WalletConfig.keystore_dir`` at it.

    Attributes:
        path: where the keystore was looked for.
        expected_id: the keystore id the database recorded (``None`` for a database from
            before keystore ids were recorded).
    """

    code = "KEYSTORE_MISSING"
    path: str
    expected_id: str | None

    def __init__(self, message: str, *, path: str, expected_id: str | None) -> None:
        super().__init__(message, path=path, expected_id=expected_id)


class KeyMissingError(KeystoreError):
    """An agent's key is not in the keystore (a keystore restored from an older backup?).

    The transaction that needed it is FAILED with this code and its budget released; the
    agent's other work and every other agent carry on. Restore the key file (the keystore
    directory from the backup that has it) to let the agent sign again.
    """

    code = "KEY_MISSING"
    agent_id: str

    def __init__(self, agent_id: str) -> None:
        super().__init__(
            f"the key of agent {agent_id} is missing from the keystore; restore the keystore "
            "directory from a backup that has it",
            agent_id=agent_id,
        )


class KeystoreMismatchError(KeystoreError):
    """The keystore at the path is not the one the database was created with.

    Attributes:
        path: the keystore directory.
        expected_id: the keystore id the database recorded.
        found_id: the id of the keystore found at ``path``.
    """

    code = "KEYSTORE_MISMATCH"
    path: str
    expected_id: str
    found_id: str

    def __init__(self, message: str, *, path: str, expected_id: str, found_id: str) -> None:
        super().__init__(message, path=path, expected_id=expected_id, found_id=found_id)


class WrongPasswordError(KeystoreError):
    """The master password does not open the keystore. Nothing was changed."""

    code = "WRONG_PASSWORD"

    def __init__(self, message: str = "the master password is wrong") -> None:
        super().__init__(message)


class KeyIntegrityError(KeystoreError):
    """A sealed key failed authentication: tampered, truncated or moved to another agent."""

    code = "KEY_INTEGRITY"
    key_id: str

    def __init__(self, key_id: str, detail: str = "failed authentication") -> None:
        super().__init__(f"sealed key {key_id} {detail}", key_id=key_id)


class PasswordUnavailableError(KeystoreError):
    """No master password source was available; the message says how to provide one."""

    code = "PASSWORD_UNAVAILABLE"


# --------------------------------------------------------------------------- auth & policy


class AuthError(WaiaasError):
    """A session token was refused. ``reason`` says why, never the token itself."""

    code = "AUTH_FAILED"
    reason: str
    session_id: str | None
    agent_id: str | None

    def __init__(
        self, reason: str, *, session_id: str | None = None, agent_id: str | None = None
    ) -> None:
        super().__init__(
            f"session token refused: {reason}",
            reason=reason,
            session_id=session_id,
            agent_id=agent_id,
        )


class TokenExpiredError(AuthError):
    """The session token has expired."""

    code = "TOKEN_EXPIRED"


class TokenRevokedError(AuthError):
    """The session token was revoked (or replaced by a renewal)."""

    code = "TOKEN_REVOKED"


class PolicyDeniedError(WaiaasError):
    """A policy denied the request.

    Raised to the session holder (``wallet.send(token, ...)``, an :class:`~waiaas.AgentHandle`,
    the tools), so it says only what an agent may learn: the outcome and the one figure that
    decides it for this request, never list contents, other thresholds or policy ids. The
    owner and operator read the full decision by ``tx_id``: ``wallet.get_transaction(tx_id)``
    (``.decision`` and ``.error``) and the ``POLICY_VIOLATION`` audit row.

    Attributes:
        rule: the type of the rule that decided it (``SPENDING_LIMIT``, ``RATE_LIMIT``,
            ``ALLOWED_ADDRESSES``, ``OWNER``...); hard caps come before "needs the owner".
        figure: the one deciding figure as strings (``{"asset": "native", "available":
            "2000000000"}`` for a budget, ``{"allowed_from": "<unix time>"}`` for a time
            window, the refused party of this request for a list rule), or ``None``.
        next: what to do next, in one sentence.
        reasons: every refusing rule as ``{"type", "message"}`` (redacted), the deciding one
            first, none twice.
        tx_id: the id of the recorded (failed) transaction, when one was recorded.
        decision: ``None`` on a denial raised to an agent (the full decision stays with the
            owner: ``wallet.get_transaction(tx_id).decision``).

    Example::

        try:
            wallet.send(token, Transfer(to=dest, amount=3 * 10**9))
        except PolicyDeniedError as exc:
            exc.rule, exc.figure, exc.next     # what the agent may know
            wallet.get_transaction(exc.tx_id).decision   # the owner's full view
    """

    code = "POLICY_DENIED"
    rule: str | None
    figure: dict[str, str] | None
    next: str | None
    decision: Decision | None
    reasons: list[dict[str, Any]]
    tx_id: str | None

    def __init__(
        self,
        message: str,
        *,
        rule: str | None = None,
        figure: dict[str, str] | None = None,
        next: str | None = None,
        decision: Decision | None = None,
        reasons: Sequence[dict[str, Any]] = (),
        tx_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            rule=rule,
            figure=dict(figure) if figure else None,
            next=next,
            decision=decision,
            reasons=list(reasons),
            tx_id=tx_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-able data: ``code``, one ``message``, ``rule``, ``figure`` (when there
        is one), ``next``, ``also`` (the types of the other refusing rules, when any, none
        twice) and ``tx_id``. A few hundred bytes; never the full decision."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for name in ("rule", "figure", "next"):
            value = getattr(self, name, None)
            if value:
                out[name] = _jsonable(value)
        first = out.get("rule")
        also = list(dict.fromkeys(str(r.get("type", "")) for r in self.reasons))
        also = [t for t in also if t and t != first]
        if also:
            out["also"] = also
        if self.tx_id:
            out["tx_id"] = self.tx_id
        return out


class ConstraintViolationError(WaiaasError):
    """A session constraint refused the request (``constraint`` names which)."""

    code = "SESSION_CONSTRAINT"
    constraint: str
    session_id: str | None

    def __init__(self, message: str, *, constraint: str, session_id: str | None = None) -> None:
        super().__init__(message, constraint=constraint, session_id=session_id)


class ApprovalError(WaiaasError):
    """An owner approval or rejection was refused (bad signature, replay, expired, ...)."""

    code = "APPROVAL_REFUSED"
    tx_id: str | None
    reason: str

    def __init__(self, message: str, *, tx_id: str | None = None, reason: str = "") -> None:
        super().__init__(message, tx_id=tx_id, reason=reason or message)


# --------------------------------------------------------------------------- chains


class ChainErrorKind(StrEnum):
    """How the pipeline reacts to a chain failure."""

    PERMANENT = "permanent"  # fail the transaction now
    TRANSIENT = "transient"  # retry with bounded backoff
    STALE = "stale"  # rebuild (new blockhash / nonce) and sign once more


class ChainError(WaiaasError):
    """A chain (or its node) failed the request.

    Attributes:
        kind: permanent, transient or stale (see :class:`ChainErrorKind`).
        chain: the chain family (``"solana"``, ``"evm"``).
        detail: the upstream error, rendered as text (no secrets).
    """

    code = "CHAIN_ERROR"
    chain: str
    detail: str
    # set by the adapters' error mappings when known
    retry_after: str | None
    rpc_code: int | None
    http_status: int | None
    kind: ChainErrorKind = ChainErrorKind.PERMANENT

    def __init__(self, message: str, *, chain: str = "", detail: str = "") -> None:
        super().__init__(message, chain=chain, detail=detail)
        self.retry_after = None
        self.rpc_code = None
        self.http_status = None


class PermanentChainError(ChainError):
    """The chain refused the transaction for good; retrying will not help."""

    code = "CHAIN_PERMANENT"
    kind = ChainErrorKind.PERMANENT


class InsufficientFundsError(PermanentChainError):
    """The sender cannot pay the amount, the fee or the rent."""

    code = "INSUFFICIENT_FUNDS"


class ExecutionRevertedError(PermanentChainError):
    """The program or contract failed (``reason`` holds the revert reason when known)."""

    code = "EXECUTION_REVERTED"
    logs: tuple[str, ...]

    def __init__(
        self, message: str, *, chain: str = "", detail: str = "", reason: str | None = None
    ) -> None:
        super().__init__(message, chain=chain, detail=detail)
        self.reason = reason
        self.logs = ()


class TransientChainError(ChainError):
    """A passing failure (network, rate limit, node busy): retry with backoff."""

    code = "CHAIN_TRANSIENT"
    kind = ChainErrorKind.TRANSIENT


class StaleTransactionError(ChainError):
    """The built transaction went stale (expired blockhash, used nonce): rebuild (up to 3 times)."""

    code = "CHAIN_STALE"
    kind = ChainErrorKind.STALE


# --------------------------------------------------------------------------- notify


class NotificationError(WaiaasError):
    """A notification channel failed. Notifications never fail a transaction."""

    code = "NOTIFICATION_FAILED"


# --------------------------------------------------------------------------- integrity


class TamperDetectedError(WaiaasError):
    """Stored data failed its integrity check: changed outside waiaas.

    Raised by :meth:`Wallet.open` when the audit chain written since the last verified
    checkpoint is broken or rows the wallet committed are gone (a lost WAL), and by the
    pipeline when the owner binding, a policy or a stored request fails its MAC (the
    transaction is refused, a critical ``TAMPER_DETECTED`` audit row is written and the owner
    is notified).

    Attributes:
        entity: ``audit_log``, ``agent``, ``policy``, ``transaction`` or ``approval``.
        entity_id: the row concerned, when known.
        problem: what was found (``altered``, ``forged``, ``deleted``, ``reordered``,
            ``truncated``, ``checkpoint``, ``mac``).
        report: for the audit log, the :class:`~waiaas.types.AuditReport`.
        tx_id: the transaction refused, if any.
    """

    code = "TAMPER_DETECTED"
    entity: str
    entity_id: str | None
    problem: str

    def __init__(
        self,
        message: str,
        *,
        entity: str,
        problem: str,
        entity_id: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message, entity=entity, problem=problem, entity_id=entity_id, **fields)
