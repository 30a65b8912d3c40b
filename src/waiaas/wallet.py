"""The :class:`Wallet` facade: the composition root and the whole public API.

A wallet is one SQLite file (plus its keystore directory beside it). Open it, create agents,
give each agent a session token, set policies, and let agents send::

    from waiaas import Wallet, Transfer
    from waiaas.testing import local_chains

    with Wallet.open("wallet.db", password="correct horse", chains=local_chains()) as w:
        agent = w.create_agent("trader", chain="solana")
        session = w.issue_session(agent.id)
        result = w.send(session.token, Transfer(to="...", amount=1_000_000))
        print(result.status, result.tier, result.tx_hash)

Thread-safe: any number of threads (and processes, on the same file) may call it at once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from waiaas import integrity
from waiaas._validate import MAX_TIME, check_encodable, check_id, check_time, shown
from waiaas.chains.base import ChainAdapter
from waiaas.clock import Clock, SystemClock
from waiaas.config import WalletConfig
from waiaas.db import CheckpointResult, Database, UnitOfWork
from waiaas.db.engine import check_path
from waiaas.db.faults import stored_json
from waiaas.db.tables import AgentRow, AuditRow, TransactionRow
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    DatabaseOpenError,
    InvalidInputError,
    KeystoreMismatchError,
    KeystoreMissingError,
    NotADatabaseError,
    NotFoundError,
    StateError,
    TamperDetectedError,
    WaiaasError,
)
from waiaas.ids import new_id
from waiaas.keystore import Keystore, check_password_strength, resolve_password
from waiaas.pipeline import approvals, killswitch
from waiaas.pipeline.engine import Pipeline, PipelineHooks
from waiaas.pipeline.gate import PolicyGate, restart_auto_stop
from waiaas.pipeline.report import DueReport
from waiaas.pipeline.requests import normalize_request, parse_request
from waiaas.plots import BudgetUsage
from waiaas.policy import Decision, Explanation
from waiaas.policy.model import POLICY_DENIED, PriceOracle
from waiaas.services.policies import PolicyInfo, PolicyService
from waiaas.sessions import (
    IssuedSession,
    SessionConstraints,
    SessionInfo,
    SessionList,
    SessionManager,
)
from waiaas.types import (
    AgentInfo,
    AgentList,
    AgentStatus,
    AuditCheckpoint,
    AuditEntry,
    AuditEvent,
    AuditPage,
    AuditReport,
    KillSwitchRelease,
    KillSwitchState,
    KillSwitchSummary,
    Request,
    Severity,
    Tier,
    TransactionInfo,
    TransactionList,
    TxStatus,
    TxType,
)
from waiaas.web.display import TxDisplay, describe_transaction

if TYPE_CHECKING:
    from waiaas.agent import AgentHandle
    from waiaas.notify.base import Notifier

__all__ = ["TransactionResult", "Wallet"]

log = logging.getLogger("waiaas")

_KEYSTORE_STATE = "keystore"  # wallet_state key: {"id": <keystore id>}


class TransactionResult(TransactionInfo):
    """What ``send`` returns: the transaction as it stands, plus the policy decision.

    Attributes:
        decision: the policy decision (allowed, tier, every reason, budget figures).
    """

    decision: Decision | None = None


def _info(row: TransactionRow) -> dict[str, Any]:
    meta: dict[str, Any] = stored_json(
        row.metadata_json, table="transactions", column="metadata", default={}
    )
    err = meta.get("error") or {}
    return {
        "id": row.id,
        "agent_id": row.agent_id,
        "session_id": row.session_id,
        "chain": row.chain,
        "network": meta.get("network"),
        "type": TxType(row.type),
        "status": TxStatus(row.status),
        "tier": Tier(row.tier) if row.tier else None,
        "tx_hash": row.tx_hash,
        "amount": int(row.amount) if row.amount is not None else None,
        "to_address": row.to_address,
        "asset": meta.get("asset"),
        "request": meta.get("request"),
        "created_at": row.created_at,
        "queued_at": row.queued_at,
        "executed_at": row.executed_at,
        "execute_after": meta.get("execute_after"),
        "approval_expires_at": (meta.get("approval") or {}).get("expires_at"),
        "fee": int(meta["fee"]) if meta.get("fee") is not None else None,
        "error": (f"{err.get('code')}: {err.get('message')}" if err else row.error),
        "_decision": meta.get("decision"),
    }


def _tx_info(row: TransactionRow) -> TransactionInfo:
    data = _info(row)
    data.pop("_decision")
    return TransactionInfo(**data)


def _tx_result(row: TransactionRow) -> TransactionResult:
    data = _info(row)
    decision = data.pop("_decision")
    return TransactionResult(
        **data, decision=Decision.model_validate(decision) if decision else None
    )


def _agent_result(row: TransactionRow) -> TransactionResult:
    """A transaction as its agent (the session holder) may see it: the decision redacted
    (outcome, tier, the deciding rule's kind; no budgets, thresholds, lists or policy ids)
    and a policy denial's ``error`` reduced to what the agent's denial said. The owner and
    operator read the full row with :meth:`Wallet.get_transaction`."""
    from waiaas.policy.explain import agent_denial, redact_decision

    data = _info(row)
    stored = data.pop("_decision")
    full = Decision.model_validate(stored) if stored else None
    error = data["error"]
    if isinstance(error, str) and error.startswith(POLICY_DENIED):
        if full is not None and not full.allowed:
            text = agent_denial(full, chain=row.chain).message
        elif row.tier is None:  # refused at admission: it needed an owner it does not have
            text = agent_denial(None, [{"type": "APPROVAL", "message": ""}]).message
        else:
            text = "denied when re-checked before execution"
        data["error"] = f"{POLICY_DENIED}: denied by policy: {text}"
    return TransactionResult(**data, decision=redact_decision(full) if full else None)


def _agent_info(row: AgentRow) -> AgentInfo:
    return AgentInfo(
        id=row.id,
        name=row.name,
        chain=row.chain,
        network=row.network,
        public_key=row.public_key,
        status=AgentStatus(row.status),
        owner_address=row.owner_address,
        created_at=row.created_at,
        updated_at=row.updated_at,
        suspended_at=row.suspended_at,
        suspension_reason=row.suspension_reason,
    )


def _audit_entry(row: AuditRow) -> AuditEntry:
    assert row.id is not None
    return AuditEntry(
        id=row.id,
        timestamp=row.timestamp,
        event_type=row.event_type,
        actor=row.actor,
        agent_id=row.agent_id,
        session_id=row.session_id,
        tx_id=row.tx_id,
        details=stored_json(row.details, table="audit_log", column="details", default={}),
        severity=Severity(row.severity),
        ip_address=row.ip_address,
    )


def _plain(text: str) -> str:
    """``text`` for a message: printable ASCII, other characters escaped."""
    return "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in text)


def _new_keystore_at(path: object, keystore_dir: str | None) -> bool:
    """Whether opening ``path`` would create a new keystore (False when unsure: the path is
    validated, with a proper error, by ``Database.open``)."""
    if not isinstance(path, str | os.PathLike):
        return False
    try:
        return not Keystore.exists(Path(keystore_dir or f"{Path(path)}.keystore"))
    except (OSError, ValueError):
        return False


def _check_reason(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError("reason must be a non-empty string", field="reason")
    if len(value) > 500 or any(ord(c) < 32 for c in value):
        raise InvalidInputError("reason must be at most 500 printable characters", field="reason")
    return check_encodable(value, "reason").strip()


def _check_time(value: object, field: str) -> int | None:
    return check_time(value, field)


def _check_event_types(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidInputError(
            "event_types must be a list of audit event types", field="event_types"
        )
    out = []
    for item in value:
        try:
            out.append(AuditEvent(item).value)
        except (ValueError, TypeError):
            raise InvalidInputError(
                f"unknown audit event type {shown(item)}", field="event_types"
            ) from None
    return out or None


def _check_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError("name must be a non-empty string", field="name")
    if len(value) > 200 or any(ord(c) < 32 for c in value):
        raise InvalidInputError("name must be at most 200 printable characters", field="name")
    return check_encodable(value, "name").strip()


def _move_agent(
    uow: UnitOfWork, agent_id: str, expected: list[str], target: str, **fields: Any
) -> None:
    """Compare-and-swap an agent's status; :class:`StateError` names the status it had."""
    if not uow.agents.cas_status(agent_id, expected, target, **fields):
        row = uow.agents.get(agent_id)
        found = row.status if row is not None else "missing"
        raise StateError(
            f"agent {agent_id} is {found}, not {' or '.join(expected)}", agent_id=agent_id
        )


class Wallet:
    """An embedded wallet engine for AI agents, on one SQLite file.

    Open it with :meth:`open` (a context manager); everything else is a method.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use Wallet.open(path, password=..., chains=[...])")

    # ================================================================== open / close

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        password: str | None = None,
        chains: Iterable[ChainAdapter] = (),
        config: WalletConfig | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        price_oracle: PriceOracle | None = None,
        background: bool | None = None,
        hooks: PipelineHooks | None = None,
    ) -> Wallet:
        """Open (or create) the wallet at ``path`` and recover anything a crash left behind.

        Args:
            path: the SQLite file. A new file gets the schema; an older one is upgraded.
            password: the master password. When ``None``, ``WAIAAS_MASTER_PASSWORD`` or the
                OS keyring (service ``waiaas``, user = the absolute path) are tried; nothing
                ever prompts.
            chains: the chain adapters agents may use, e.g. ``waiaas.testing.local_chains()``
                or ``[SolanaAdapter.rpc(url, network="mainnet-beta")]``. The caller owns
                them: ``close()`` does not close them (so they can outlive the wallet).
            config: a :class:`WalletConfig` (defaults documented there).
            clock: the time source (``waiaas.testing.FrozenClock`` in tests).
            notifier: where events go after commit (a ``Notifier``); when ``None``, a
                background dispatcher delivers them to the channels managed through
                ``wallet.channels`` (Telegram, Discord, ntfy, signed webhooks).
            price_oracle: USD prices for ``*_usd`` policy rules.
            background: run :meth:`process_due` (DELAY cooldowns, approval and session
                expiry, confirmations) and the WAL checkpoint in a thread, so due work happens
                by itself. ``None`` (the default) means on, unless ``clock`` is given: a host
                that drives time itself (``FrozenClock`` in tests) calls :meth:`process_due`.
                ``False`` opts out.
            hooks: test hooks called at each pipeline stage boundary.

        Raises:
            InvalidInputError: a bad argument (e.g. two adapters for one network), or a
                master password too weak for a new wallet (``field="password"``; see
                ``WalletConfig.min_password_length``).
            DatabaseOpenError: the file cannot be opened (missing directory, permissions).
            NotADatabaseError: the file is not a SQLite database.
            SchemaTooNewError: the file was written by a newer waiaas.
            MigrationError: a schema upgrade failed; the file was left as it was.
            PasswordUnavailableError: no password was given, and none was found in the
                environment or the OS keyring.
            WrongPasswordError: the password does not open the keystore.
            KeystoreError: the keystore cannot be used.

        Example::

            wallet = Wallet.open("agents.db", password=pw, chains=[SolanaAdapter.local()])
        """
        self = object.__new__(cls)
        self._init(path, password, chains, config, clock, notifier, price_oracle, hooks)
        if background is None:
            background = clock is None
        if background:
            self.start_background()
        return self

    def _init(
        self,
        path: str | os.PathLike[str],
        password: str | None,
        chains: Iterable[ChainAdapter],
        config: WalletConfig | None,
        clock: Clock | None,
        notifier: Notifier | None,
        price_oracle: PriceOracle | None,
        hooks: PipelineHooks | None,
    ) -> None:
        self.config = config if config is not None else WalletConfig()
        if not isinstance(self.config, WalletConfig):
            raise InvalidInputError("config must be a WalletConfig", field="config")
        self.clock: Clock = clock if clock is not None else SystemClock()
        adapters: dict[tuple[str, str], ChainAdapter] = {}
        for adapter in chains:
            if not isinstance(adapter, ChainAdapter):
                raise InvalidInputError(
                    f"{adapter!r} does not implement the ChainAdapter protocol", field="chains"
                )
            key = (adapter.chain, adapter.network)
            if key in adapters:
                raise InvalidInputError(f"two adapters for {key[0]}/{key[1]}", field="chains")
            adapters[key] = adapter
        self._closed = False
        self._bg_stop = threading.Event()
        self._bg_thread: threading.Thread | None = None
        if password is not None and _new_keystore_at(path, self.config.keystore_dir):
            # A new wallet: refuse a weak password before any file is created.
            check_password_strength(password, self.config.min_password_length)
        self.db = Database.open(path)
        try:
            keystore_dir = Path(self.config.keystore_dir or f"{self.db.path}.keystore")
            secret = resolve_password(password, keyring_user=str(self.db.path))
            self.keystore = self._open_keystore(keystore_dir, secret)
            del secret
            self.integrity = integrity.seal(
                self.db,
                self.keystore,
                clock=self.clock,
                checkpoint_rows=self.config.audit_checkpoint_rows,
            )
            tampered = self._verify_on_open()
            self.sessions = SessionManager(self.db, self.keystore, self.clock, self.config)
            from waiaas.notify import ChannelService, NotificationDispatcher

            self.channels = ChannelService(self.db, self.keystore, self.clock)
            if notifier is None:
                notifier = NotificationDispatcher(self.channels.source(), clock=self.clock)
            self.pipeline = Pipeline(
                db=self.db,
                keys=self.keystore,
                adapters=adapters,
                sessions=self.sessions,
                gate=PolicyGate(self.config, price_oracle),
                clock=self.clock,
                config=self.config,
                notifier=self._bridge(notifier),
                hooks=hooks,
            )
            if tampered is not None:
                self._report_tamper(tampered)
            self._audit(AuditEvent.KEYSTORE_UNLOCKED, actor="system")
            self._audit(
                AuditEvent.DAEMON_STARTED,
                actor="system",
                details={"chains": [f"{c}/{n}" for c, n in adapters]},
            )
            self._recover()
        except BaseException:
            self.db.close()
            raise

    def _verify_on_open(self) -> AuditReport | None:
        """Verify the audit rows since the last signed checkpoint and the recorded head.

        Returns the report when broken and ``config.on_tamper == "report"``; raises
        :class:`TamperDetectedError` when broken and ``"refuse"``; None when intact.
        """
        report = AuditReport(**integrity.verify_recent(self.db, self.integrity))
        if report.ok:
            return None
        log.critical("audit log integrity: %s", report.message)
        if self.config.on_tamper == "refuse":
            raise TamperDetectedError(
                f"the audit log was tampered with: {report.message} (verify_audit() from a "
                "backup, or open with WalletConfig(on_tamper='report') to investigate)",
                entity="audit_log",
                problem=report.problem or "altered",
                entity_id=str(report.first_broken_id) if report.first_broken_id else None,
                report=report,
            )
        return report

    def _report_tamper(self, report: AuditReport) -> None:
        """Record a broken chain found at open, notify, and re-anchor at the log as found."""
        details = report.model_dump(mode="json", exclude={"source"})
        with self.db.write() as uow:
            uow.audit.append(
                AuditEvent.TAMPER_DETECTED, actor="system", now=self.clock.now(), details=details
            )
            head = uow.audit.head()
            self.integrity.write_checkpoint(uow, head)
            uow.commit()
        self.integrity.reset_head(*head)
        self.pipeline.publish(
            AuditEvent.TAMPER_DETECTED,
            severity="critical",
            entity="audit_log",
            problem=report.problem,
            reason=report.message,
        )

    def _open_keystore(self, keystore_dir: Path, secret: str) -> Keystore:
        """Open the keystore that belongs to this database, or create one for a new database.

        The database records its keystore's id (``wallet_state`` key ``keystore``). A
        database that has agents, or that recorded an id, never gets a new empty keystore:
        its keys would be lost for good, so opening is refused with what to restore.
        """
        with self.db.read() as uow:
            recorded = uow.state.get(_KEYSTORE_STATE)
            has_agents = bool(uow.agents.list())
        expected = recorded.get("id") if isinstance(recorded, dict) else None
        if Keystore.exists(keystore_dir):
            keystore = Keystore.open(keystore_dir, clock=self.clock)
            found = keystore.keystore_id
            if expected is not None and found != expected:
                raise KeystoreMismatchError(
                    f"the keystore at {str(keystore_dir)!r} (id {found}) is not the one this "
                    f"database was created with (id {expected}); restore that keystore "
                    "directory from the backup taken with the database, or point "
                    "WalletConfig.keystore_dir at it",
                    path=str(keystore_dir),
                    expected_id=str(expected),
                    found_id=found,
                )
            keystore.unlock(secret)
        elif expected is not None or has_agents:
            raise KeystoreMissingError(
                f"no keystore at {str(keystore_dir)!r}, but this database "
                + (f"was created with keystore {expected}" if expected else "has agents")
                + ": restore the keystore directory from the backup taken with the database "
                "(or point WalletConfig.keystore_dir at it); a new keystore would lose every "
                "agent's key",
                path=str(keystore_dir),
                expected_id=None if expected is None else str(expected),
            )
        else:
            check_password_strength(secret, self.config.min_password_length)
            keystore = Keystore.create(keystore_dir, secret, kdf=self.config.kdf, clock=self.clock)
        if expected is None:
            try:
                with self.db.write() as uow:
                    if uow.state.get(_KEYSTORE_STATE) is None:
                        uow.state.put(
                            _KEYSTORE_STATE, {"id": keystore.keystore_id}, now=self.clock.now()
                        )
                        uow.commit()
            except BaseException:
                keystore.lock()
                raise
        return keystore

    def _bridge(self, notifier: Any) -> Any:
        from waiaas.pipeline.notifications import PipelineNotifier

        return PipelineNotifier(
            self.db, notifier, self.clock, link=self._quiet_link, display=self._quiet_display
        )

    def _quiet_link(self, tx_id: str) -> str | None:
        try:
            return self.approval_link(tx_id)
        except WaiaasError as exc:
            log.warning("no approval link for %s: %s", tx_id, exc)
            return None

    def _quiet_display(self, tx_id: str) -> Any:
        try:
            return self.transaction_display(tx_id)
        except WaiaasError as exc:
            log.warning("cannot describe %s: %s", tx_id, exc)
            return None

    def close(self) -> None:
        """Stop background work, flush notifications, lock the keystore, close the database.

        Idempotent.

        Example::

            wallet.close()   # or: with Wallet.open(...) as wallet: ...
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.stop_background()
            try:
                self._audit(AuditEvent.DAEMON_STOPPED, actor="system")
            except WaiaasError as exc:  # e.g. the disk is full: close all the same
                log.warning("could not record DAEMON_STOPPED: %s", exc)
            close_notifier = getattr(self.pipeline.notifier, "close", None)
            if close_notifier is not None:
                close_notifier(timeout=10.0)
        finally:
            # Whatever failed above, the key material is dropped and the file released.
            try:
                self.sessions.forget_secret()
            finally:
                try:
                    self.keystore.lock()
                finally:
                    self.db.close()

    def __enter__(self) -> Wallet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Wallet(path={str(self.db.path)!r}, {state})"

    @property
    def path(self) -> Path:
        """The database file."""
        return self.db.path

    def _audit(
        self,
        event: AuditEvent,
        *,
        actor: str,
        agent_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        with self.db.write() as uow:
            uow.audit.append(
                event, actor=actor, now=self.clock.now(), agent_id=agent_id, details=details
            )
            uow.commit()

    # ================================================================== recovery

    def _recover(self) -> None:
        """Finish what a crash interrupted: agent creation/termination, in-flight transactions."""
        now = self.clock.now()
        with self.db.write() as uow:
            for agent in uow.agents.list(status="CREATING"):
                if self.keystore.has_key(agent.id):
                    if uow.agents.cas_status(agent.id, ["CREATING"], "ACTIVE", updated_at=now):
                        uow.audit.append(
                            AuditEvent.AGENT_ACTIVATED,
                            actor="system",
                            now=now,
                            agent_id=agent.id,
                            details={"recovered": True},
                        )
                elif uow.agents.cas_status(
                    agent.id,
                    ["CREATING"],
                    "TERMINATED",
                    updated_at=now,
                    suspension_reason="creation interrupted before the key was stored",
                ):
                    uow.audit.append(
                        AuditEvent.AGENT_TERMINATED,
                        actor="system",
                        now=now,
                        agent_id=agent.id,
                        details={"reason": "creation interrupted"},
                    )
            uow.commit()
        for agent in self._agent_rows(status="TERMINATING"):
            self._finish_termination(agent.id, actor="system")
        self._reconcile_keys()
        self.pipeline.recover()

    def _reconcile_keys(self, agent_ids: Iterable[str] | None = None) -> None:
        """The keystore is the truth about an agent's key: a rotation whose database write
        did not commit (crash) is recorded now, with a KEY_ROTATED row."""
        wanted = set(agent_ids) if agent_ids is not None else None
        now = self.clock.now()
        with self.db.write() as uow:
            for agent in uow.agents.list():
                if wanted is not None and agent.id not in wanted:
                    continue
                if agent.status == "TERMINATED" or not self.keystore.has_key(agent.id):
                    continue
                current = self.keystore.public_key(agent.id)
                if current != agent.public_key:
                    uow.agents.update_fields(agent.id, public_key=current, updated_at=now)
                    uow.audit.append(
                        AuditEvent.KEY_ROTATED,
                        actor="system",
                        now=now,
                        agent_id=agent.id,
                        details={
                            "old_public_key": agent.public_key,
                            "new_public_key": current,
                            "recovered": True,
                        },
                    )
            uow.commit()

    # ================================================================== agents

    def create_agent(
        self,
        name: str,
        chain: str,
        network: str | None = None,
        *,
        owner_address: str | None = None,
    ) -> AgentInfo:
        """Create an agent with a new key sealed in the keystore.

        The agent goes CREATING -> ACTIVE (AGENT_CREATED, AGENT_ACTIVATED audited). A crash in
        between is finished by the next ``Wallet.open``.

        Args:
            name: a label for people.
            chain: ``"solana"``, ``"evm"`` or a third-party adapter's chain.
            network: which network (default: the only configured one for that chain).
            owner_address: the owner's wallet address (approves APPROVAL-tier requests).

        Raises:
            InvalidInputError: bad name, unknown chain/network, invalid owner address.

        Example::

            agent = wallet.create_agent("trader", "solana", owner_address=owner_pubkey)
        """
        name = _check_name(name)
        adapter = self._adapter(chain, network)
        owner = (
            approvals.validate_owner_address(owner_address) if owner_address is not None else None
        )
        secret, public_key = adapter.generate_secret()
        now = self.clock.now()
        agent_id = new_id()
        with self.db.write() as uow:
            uow.agents.add(
                AgentRow(
                    id=agent_id,
                    name=name,
                    chain=adapter.chain,
                    network=adapter.network,
                    public_key=public_key,
                    status="CREATING",
                    owner_address=owner,
                    created_at=now,
                    updated_at=now,
                )
            )
            uow.audit.append(
                AuditEvent.AGENT_CREATED,
                actor="owner",
                now=now,
                agent_id=agent_id,
                details={
                    "name": name,
                    "chain": adapter.chain,
                    "network": adapter.network,
                    "public_key": public_key,
                    "owner_address": owner,
                },
            )
            uow.commit()
        self.keystore.add_key(agent_id, adapter.chain, secret, public_key)
        del secret
        with self.db.write() as uow:
            uow.agents.cas_status(agent_id, ["CREATING"], "ACTIVE", updated_at=now)
            uow.audit.append(AuditEvent.AGENT_ACTIVATED, actor="system", now=now, agent_id=agent_id)
            uow.commit()
        return self.get_agent(agent_id)

    def _adapter(self, chain: object, network: str | None) -> ChainAdapter:
        if not isinstance(chain, str) or not chain or len(chain) > 64:
            raise InvalidInputError("chain must be a non-empty string", field="chain")
        if network is not None and (not isinstance(network, str) or len(network) > 64):
            raise InvalidInputError("network must be a network name", field="network")
        candidates = [
            a
            for (c, n), a in self.pipeline.adapters.items()
            if c == chain and (network is None or n == network)
        ]
        if not candidates:
            known = ", ".join(f"{c}/{n}" for c, n in self.pipeline.adapters) or "none"
            raise InvalidInputError(
                f"no chain adapter for {_plain(chain)}/{_plain(network) if network else '*'} "
                f"(configured: {known})",
                field="chain",
            )
        if len(candidates) > 1:
            raise InvalidInputError(
                f"several {chain} networks are configured; name the network", field="network"
            )
        return candidates[0]

    def _agent_row(self, agent_id: str) -> AgentRow:
        check_id(agent_id, "agent_id")
        with self.db.read() as uow:
            row = uow.agents.get(agent_id)
        if row is None:
            raise NotFoundError("agent", agent_id)
        return row

    def _agent_rows(self, status: str | None = None) -> list[AgentRow]:
        with self.db.read() as uow:
            return uow.agents.list(status=status)

    def get_agent(self, agent_id: str) -> AgentInfo:
        """The agent with id ``agent_id``.

        Raises:
            NotFoundError: no such agent.

        Example::

            agent = wallet.get_agent(agent_id); agent.status
        """
        return _agent_info(self._agent_row(agent_id))

    def list_agents(self, *, status: AgentStatus | str | None = None) -> AgentList:
        """All agents (optionally only those in ``status``), oldest first.

        Raises:
            InvalidInputError: unknown status.

        Example::

            suspended = wallet.list_agents(status="SUSPENDED")
        """
        if status is not None:
            try:
                status = AgentStatus(status)
            except ValueError:
                raise InvalidInputError(
                    f"unknown agent status {shown(status)}", field="status"
                ) from None
        return AgentList(_agent_info(r) for r in self._agent_rows(status=status))

    def suspend_agent(self, agent_id: str, *, reason: str = "suspended by the owner") -> AgentInfo:
        """Suspend an ACTIVE agent: it cannot transact until resumed (AGENT_SUSPENDED).

        Its live sessions are revoked and its queued DELAY and APPROVAL transactions
        cancelled (budget released), each audited. Resuming does not bring revoked sessions
        back: issue new ones.

        Raises:
            NotFoundError: no such agent, session or transaction.
            StateError: not ACTIVE.
            InvalidInputError: empty reason.

        Example::

            wallet.suspend_agent(agent.id, reason="investigating")
        """
        reason = _check_reason(reason)
        self._agent_row(agent_id)
        now = self.clock.now()
        with self.db.write() as uow:
            _move_agent(
                uow,
                agent_id,
                ["ACTIVE"],
                "SUSPENDED",
                suspended_at=now,
                suspension_reason=reason,
                updated_at=now,
            )
            uow.audit.append(
                AuditEvent.AGENT_SUSPENDED,
                actor="owner",
                now=now,
                agent_id=agent_id,
                details={"reason": reason},
            )
            _counts, outbox = self.pipeline.contain_suspended(
                uow, agent_id, actor="owner", reason=reason, now=now
            )
            uow.commit()
        self.pipeline.publish_events(outbox)
        self.pipeline.publish(AuditEvent.AGENT_SUSPENDED, agent_id=agent_id, reason=reason)
        return self.get_agent(agent_id)

    def resume_agent(self, agent_id: str) -> AgentInfo:
        """Resume a SUSPENDED agent (AGENT_RESUMED). Not while the kill switch is active.

        Raises:
            NotFoundError: no such agent, session or transaction.
            StateError: not SUSPENDED.
            KillSwitchActiveError: the kill switch is on.

        Example::

            wallet.resume_agent(agent.id)
        """
        self._agent_row(agent_id)
        now = self.clock.now()
        with self.db.write() as uow:
            killswitch.ensure_inactive(uow)
            _move_agent(
                uow,
                agent_id,
                ["SUSPENDED"],
                "ACTIVE",
                suspended_at=None,
                suspension_reason=None,
                updated_at=now,
            )
            restart_auto_stop(uow, agent_id, now)
            uow.audit.append(AuditEvent.AGENT_RESUMED, actor="owner", now=now, agent_id=agent_id)
            uow.commit()
        return self.get_agent(agent_id)

    def terminate_agent(self, agent_id: str) -> AgentInfo:
        """Terminate an agent for good: its sessions are revoked, its PENDING/QUEUED
        transactions cancelled, its key archived; its history is kept (AGENT_TERMINATED).

        Raises:
            NotFoundError: no such agent, session or transaction.
            StateError: already terminated.

        Example::

            wallet.terminate_agent(agent.id)
        """
        self._agent_row(agent_id)
        now = self.clock.now()
        with self.db.write() as uow:
            if not uow.agents.cas_status(
                agent_id, ["CREATING", "ACTIVE", "SUSPENDED"], "TERMINATING", updated_at=now
            ):
                raise StateError(f"agent {agent_id} is already terminated", agent_id=agent_id)
            uow.commit()
        return self._finish_termination(agent_id, actor="owner")

    def _finish_termination(self, agent_id: str, *, actor: str) -> AgentInfo:
        now = self.clock.now()
        with self.db.write() as uow:
            revoked = self.sessions.revoke_all_for_agent(uow, agent_id, now, "agent terminated")
            cancelled = 0
            for row in uow.transactions.active_for_agent(agent_id):
                previous = row.status  # the CAS refreshes ``row``: keep the status it had
                if previous in (
                    TxStatus.PENDING,
                    TxStatus.QUEUED,
                ) and uow.transactions.cas_status(
                    row.id, previous, "CANCELLED", error="AGENT_TERMINATED"
                ):
                    cancelled += 1
                    uow.audit.append(
                        AuditEvent.TX_CANCELLED,
                        actor=actor,
                        now=now,
                        agent_id=agent_id,
                        session_id=row.session_id,
                        tx_id=row.id,
                        details={
                            "from": previous,
                            "to": "CANCELLED",
                            "reason": "agent terminated",
                        },
                    )
            uow.agents.cas_status(agent_id, ["TERMINATING"], "TERMINATED", updated_at=now)
            uow.audit.append(
                AuditEvent.AGENT_TERMINATED,
                actor=actor,
                now=now,
                agent_id=agent_id,
                details={"sessions_revoked": revoked, "transactions_cancelled": cancelled},
            )
            uow.commit()
        if self.keystore.has_key(agent_id):
            self.keystore.remove_key(agent_id)
        return self.get_agent(agent_id)

    def set_owner(self, agent_id: str, owner_address: str | None) -> AgentInfo:
        """Set (or clear, with ``None``) the owner address that approves APPROVAL requests.

        An EVM owner (``0x...``) signs with SIWE (EIP-4361 + EIP-191); a Solana owner
        (base58) signs the same fields with ed25519. A change invalidates every pending
        approval of the agent: each waiting transaction gets a fresh approval message for the
        new owner (old signatures, by anyone, are refused; APPROVAL_INVALIDATED rows); with
        ``None``, waiting transactions are cancelled (nobody could approve them).

        Raises:
            NotFoundError: no such agent, session or transaction.
            InvalidInputError: not a valid EVM or Solana address.

        Example::

            wallet.set_owner(agent.id, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
        """
        self._agent_row(agent_id)
        owner = (
            approvals.validate_owner_address(owner_address) if owner_address is not None else None
        )
        now = self.clock.now()
        with self.db.write() as uow:
            previous = uow.agents.get(agent_id)
            before = previous.owner_address if previous is not None else None
            uow.agents.update_fields(agent_id, owner_address=owner, updated_at=now)
            changed = before != owner
            touched, outbox = (
                self.pipeline.reset_approvals(uow, agent_id, owner, now=now)
                if changed
                else ([], None)
            )
            uow.audit.append(
                AuditEvent.AGENT_OWNER_SET,
                actor="owner",
                now=now,
                agent_id=agent_id,
                details={"owner_address": owner, "approvals_invalidated": touched},
            )
            uow.commit()
        if outbox is not None:
            self.pipeline.publish_events(outbox)
        return self.get_agent(agent_id)

    def rotate_key(self, agent_id: str) -> AgentInfo:
        """Give an agent a new key; the old one is archived (KEY_ROTATED).

        Funds stay with the old address: move them first. Not while transactions of the
        agent are in flight.

        Raises:
            NotFoundError: no such agent, session or transaction.
            StateError: terminated, or transactions in flight.

        Example::

            agent = wallet.rotate_key(agent.id); agent.public_key   # the new address
        """
        agent = self._agent_row(agent_id)
        if agent.status in ("TERMINATING", "TERMINATED"):
            raise StateError(f"agent {agent_id} is {agent.status}", agent_id=agent_id)
        adapter = self._adapter(agent.chain, agent.network)
        now = self.clock.now()
        try:
            with self.db.write() as uow:
                if uow.transactions.active_for_agent(agent_id):
                    raise StateError(
                        "the agent has transactions in flight; rotate later", agent_id=agent_id
                    )
                secret, public_key = adapter.generate_secret()
                rotation = self.keystore.rotate_key(agent_id, secret, public_key)
                del secret
                uow.agents.update_fields(agent_id, public_key=public_key, updated_at=now)
                uow.audit.append(
                    AuditEvent.KEY_ROTATED,
                    actor="owner",
                    now=now,
                    agent_id=agent_id,
                    details={
                        "old_public_key": rotation.old_public_key,
                        "new_public_key": rotation.new_public_key,
                    },
                )
                uow.commit()
        except WaiaasError:
            self._reconcile_keys([agent_id])  # the keystore may have rotated already
            raise
        return self.get_agent(agent_id)

    # ================================================================== sessions

    def issue_session(
        self,
        agent_id: str,
        *,
        ttl: int | None = None,
        constraints: SessionConstraints | Mapping[str, Any] | None = None,
    ) -> IssuedSession:
        """Issue a session token for an ACTIVE agent (SESSION_ISSUED). The token is shown once.

        Raises:
            NotFoundError: no such agent, session or transaction.
            AgentNotActiveError: the agent is not ACTIVE.
            InvalidInputError: bad ttl/constraints.
            KillSwitchActiveError: the kill switch is on.

        Example::

            issued = wallet.issue_session(agent.id, ttl=3600,
                                          constraints={"max_amount_per_tx": "1000000000"})
            hand_to_agent(issued.token)
        """
        with self.db.read() as uow:
            killswitch.ensure_inactive(uow)
        return self.sessions.issue(agent_id, ttl=ttl, constraints=constraints)

    def renew_session(self, token: str) -> IssuedSession:
        """Renew a session: a new token; the old one stops working at once (SESSION_RENEWED).

        Raises:
            AuthError (and subclasses): the token was refused.
            StateError: renewal limit or absolute lifetime reached.

        Example::

            token = wallet.renew_session(token).token
        """
        return self.sessions.renew(token)

    def revoke_session(self, session_id: str) -> None:
        """Revoke a session (SESSION_REVOKED); its token is refused from now on.

        Raises:
            NotFoundError: no such agent, session or transaction.
            InvalidInputError: a malformed argument.

        Example::

            wallet.revoke_session(issued.session_id)
        """
        self.sessions.revoke(check_id(session_id, "session_id"), actor="owner")

    def get_session(self, session_id: str) -> SessionInfo:
        """What is known about a session (never its token).

        Raises:
            NotFoundError: no such agent, session or transaction.
            InvalidInputError: a malformed argument.

        Example::

            info = wallet.get_session(session_id); info.usage.total()
        """
        return self.sessions.get(check_id(session_id, "session_id"))

    def list_sessions(self, agent_id: str) -> SessionList:
        """An agent's sessions, oldest first: a :class:`SessionList` (a ``list`` that renders
        as a table in a notebook and has ``to_dataframe()``). Never a token.

        Raises:
            InvalidInputError: bad agent id.

        Example::

            live = [s for s in wallet.list_sessions(agent.id) if s.status == "active"]
        """
        return SessionList(self.sessions.list_for_agent(check_id(agent_id, "agent_id")))

    # ================================================================== policies

    @property
    def policies(self) -> PolicyService:
        """Policy management: add, update, enable, disable, remove, list, dry_run, replay.

        Example::

            info = wallet.policies.add("RATE_LIMIT", {"max_requests": 10, "window_seconds": 60})
            wallet.policies.disable(info.id)
        """
        service: PolicyService | None = getattr(self, "_policy_service", None)
        if service is None:
            service = PolicyService(
                self.db, self.clock, self.config, networks=tuple(self.pipeline.adapters)
            )
            self._policy_service = service
        return service

    def add_policy(
        self,
        type: str,
        rules: Mapping[str, Any] | str,
        *,
        agent_id: str | None = None,
        priority: int = 0,
        enabled: bool = True,
    ) -> PolicyInfo:
        """Add a policy, global (``agent_id=None``) or for one agent (POLICY_UPDATED).

        Raises:
            InvalidInputError: unknown type or invalid rules, with every problem listed.

        Example::

            wallet.add_policy("RATE_LIMIT", {"max_requests": 10, "window_seconds": 60})
        """
        return self.policies.add(type, rules, agent_id=agent_id, priority=priority, enabled=enabled)

    # ================================================================== agents' side

    def agent(self, token: str) -> AgentHandle:
        """A handle for the agent holding session ``token``: send, dry_run, balance,
        its own transactions, cancel its own DELAY transactions, limits. Nothing on it
        reaches another agent or an owner/operator action. Give it to the agent framework
        (directly, or through ``waiaas.tools`` and ``waiaas.integrations``).

        Raises:
            InvalidInputError: the token is not a non-empty string.
            AuthError (TokenExpiredError, TokenRevokedError): the token was refused.

        Example::

            handle = wallet.agent(issued.token)
            handle.transfer(dest, "0.05")
        """
        from waiaas.agent import AgentHandle

        return AgentHandle(self, token)

    # ================================================================== transactions

    def send(self, token: str, request: Request | Mapping[str, Any]) -> TransactionResult:
        """Run an agent's request through the pipeline, as far as its tier allows now.

        INSTANT and NOTIFY execute at once (and are confirmed within
        ``config.confirm_timeout``); DELAY returns QUEUED with ``execute_after``; APPROVAL
        returns QUEUED waiting for the owner's signature.

        Args:
            token: the agent's session token.
            request: a :class:`Transfer`, :class:`TokenTransfer`, :class:`ContractCall`,
                :class:`Approve` or :class:`Batch` (or a mapping with a ``type``).

        Raises:
            InvalidInputError / InvalidAddressError: malformed request.
            AuthError (TokenExpiredError, TokenRevokedError): the token was refused.
            KillSwitchActiveError: the kill switch is on.
            AgentNotActiveError: the agent is not ACTIVE.
            ConstraintViolationError: a session constraint refused it.
            PolicyDeniedError: a policy denied it. The error is the agent's view (``.rule``,
                the one deciding ``.figure``, ``.next``, ``.tx_id``): no list contents, other
                thresholds or policy ids. The full decision is the owner's:
                ``wallet.get_transaction(exc.tx_id).decision`` and the POLICY_VIOLATION row.

        Returns:
            The transaction as the agent may see it: ``decision`` redacted (outcome and tier,
            no budgets, thresholds or policy ids). :meth:`get_transaction` gives the owner's
            full view.

        Example::

            result = wallet.send(token, Transfer(to=dest, amount=5_000_000))
            if result.status == "QUEUED": ...
        """
        row = self.pipeline.send(token, request)
        return _agent_result(row)

    def get_transaction(self, tx_id: str) -> TransactionResult:
        """A transaction by id, as the owner and operator see it: the full policy decision
        (every reason, budget figures, policy ids) and, for a denial, every reason in
        ``error``. An agent's handle shows it redacted.

        Raises:
            NotFoundError: no such agent, session or transaction.

        Example::

            tx = wallet.get_transaction(tx_id); tx.status, tx.tx_hash
        """
        return _tx_result(self.pipeline.get_row(check_id(tx_id, "tx_id")))

    def list_transactions(
        self,
        *,
        agent_id: str | None = None,
        status: TxStatus | str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> TransactionList:
        """Transactions, newest first; page with ``before`` = the last id of a page.

        The result is a list that also renders as a table in a notebook and has
        ``to_dataframe()`` (with the ``pandas`` extra).

        Raises:
            InvalidInputError: bad limit, status or cursor.

        Example::

            page = wallet.list_transactions(agent_id=agent.id, limit=50)
            more = wallet.list_transactions(agent_id=agent.id, limit=50, before=page[-1].id)
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be an int from 1 to 1000", field="limit")
        if status is not None:
            try:
                status = TxStatus(status)
            except ValueError:
                raise InvalidInputError(f"unknown status {shown(status)}", field="status") from None
        if agent_id is not None:
            agent_id = check_id(agent_id, "agent_id")
        if before is not None:
            before = check_id(before, "before")
        with self.db.read() as uow:
            rows = uow.transactions.list(
                agent_id=agent_id, status=status, limit=limit, before_id=before
            )
        return TransactionList(_tx_info(r) for r in rows)

    def cancel(self, tx_id: str, *, token: str | None = None) -> TransactionInfo:
        """Cancel a PENDING or QUEUED transaction (during a DELAY cooldown or APPROVAL wait).

        Without ``token`` the operator/owner cancels; with the agent's session token the
        agent cancels its own transaction.

        Raises:
            NotFoundError: no such agent, session or transaction.
            AuthError: the session token was refused.
            StateError: already executing or final.

        Example::

            wallet.cancel(tx_id)                   # the owner / operator
            wallet.cancel(tx_id, token=agent_token)  # the agent itself
        """
        actor = "operator" if token is None else "agent"
        return _tx_info(self.pipeline.cancel(check_id(tx_id, "tx_id"), actor=actor, token=token))

    def resolve_transaction(self, tx_id: str, *, landed: bool, evidence: str) -> TransactionInfo:
        """Settle a transaction the chain could not account for (operator only; audited).

        A submitted transaction whose node forgot it (pruned history) and whose blockhash
        expired may or may not have landed; waiaas never replaces it on its own (that could
        pay twice). It stays SUBMITTED, a critical ``TX_UNRESOLVED`` audit row and a
        notification are raised, and an operator who has checked (an explorer, an archive
        node) settles it here. The chain is asked once more first; if it now knows the
        transaction, its answer wins and this call is refused.

        Args:
            tx_id: the unresolved transaction.
            landed: ``True`` when it did land (recorded CONFIRMED); ``False`` when it never
                did (recorded FAILED with ``NOT_LANDED``, its budget released, so the agent
                may send the same request again).
            evidence: what the decision rests on (an explorer URL, an archive node's answer),
                kept in the ``TX_RESOLVED`` audit row.

        Raises:
            InvalidInputError: a bad id, ``landed`` not a bool, or empty evidence.
            NotFoundError: no such transaction.
            StateError: it is not unresolved, or the chain now knows it.

        Example::

            for e in wallet.audit(event_types=["TX_UNRESOLVED"]).entries:
                wallet.resolve_transaction(e.tx_id, landed=False,
                                           evidence="archive node: signature unknown")
        """
        tx_id = check_id(tx_id, "tx_id")
        if not isinstance(landed, bool):
            raise InvalidInputError("landed must be a bool", field="landed")
        if not isinstance(evidence, str) or not evidence.strip() or len(evidence) > 2000:
            raise InvalidInputError(
                "evidence must be a non-empty string of at most 2000 characters",
                field="evidence",
            )
        check_encodable(evidence, "evidence")
        return _tx_info(self.pipeline.resolve(tx_id, landed=landed, evidence=evidence.strip()))

    def approval_message(self, tx_id: str, action: Literal["approve", "reject"] = "approve") -> str:
        """The exact text the owner signs to approve (or reject) an APPROVAL transaction.

        EVM owners sign it with ``personal_sign`` (EIP-191) - it is an EIP-4361 message;
        Solana owners sign its UTF-8 bytes with ed25519.

        Raises:
            NotFoundError: no such agent, session or transaction.
            ApprovalError: not waiting for approval.
            InvalidInputError: a malformed argument.

        Example::

            text = wallet.approval_message(tx_id)          # show it to the owner's wallet
        """
        req = self.pipeline.approval_request(check_id(tx_id, "tx_id"))
        return approvals.build_message(req, action)

    def approval_link(self, tx_id: str) -> str | None:
        """The owner's link to the approval page of an APPROVAL transaction.

        ``<WalletConfig.approvals_url>/<tx id>/<token>``, where the token is an HMAC under a
        secret sealed in the keystore (see :mod:`waiaas.web.links`): unguessable, and dead
        once the approval is decided or expires. ``None`` when no ``approvals_url`` is
        configured.

        Raises:
            NotFoundError: no such transaction.
            ApprovalError: the transaction never needed an owner approval.
            KeystoreLockedError: the keystore is locked.

        Example::

            print(wallet.approval_link(result.id))   # https://wallet.example.com/approvals/...
        """
        from waiaas.web.links import link_token

        req = self.pipeline.approval_request(check_id(tx_id, "tx_id"))
        base = self.config.approvals_url
        if base is None:
            return None
        token = link_token(self.keystore, req.tx_id, req.approval_id, req.expires_at)
        return f"{base}/{req.tx_id}/{token}"

    def transaction_display(self, tx_id: str) -> TxDisplay:
        """What a person reads about a transaction: every effect in human units (full
        addresses), a one-line summary, why its tier was chosen, its expiry, and the network
        fee of the transaction as built when it was requested (EVM: the most it can cost).

        The effects are those decoded from the plan that will be signed when the pipeline
        stored them, else those of the stored request.

        Raises:
            NotFoundError: no such transaction.

        Example::

            shown = wallet.transaction_display(tx_id)
            for effect in shown.effects:
                print(effect.text)     # "send 1.5 SOL to 9xQe..."
        """
        with self.db.read() as uow:
            row = uow.transactions.get(check_id(tx_id, "tx_id"))
            if row is None:
                raise NotFoundError("transaction", tx_id)
            agent = uow.agents.get(row.agent_id)
        data = _info(row)
        adapter = self.pipeline.adapters.get((row.chain, agent.network if agent else ""))
        lookup = getattr(adapter, "token_decimals", None)
        meta = stored_json(row.metadata_json, table="transactions", column="metadata", default={})
        return describe_transaction(
            chain=row.chain,
            request=data["request"],
            agent_name=agent.name if agent is not None else row.agent_id,
            agent_id=row.agent_id,
            decision=data["_decision"],
            approval_expires_at=data["approval_expires_at"],
            execute_after=data["execute_after"],
            token_decimals=lookup if callable(lookup) else None,
            effects=meta.get("effects"),
            network_fee=meta.get("network_fee"),
        )

    def approve(self, tx_id: str, signature: str) -> TransactionInfo:
        """Approve with the owner's signature of :meth:`approval_message`; then execute.

        The signature may be hex with or without ``0x`` (what ``eth_account`` and
        ``personal_sign`` give) or, for a Solana owner, base58.

        Raises:
            ApprovalError: wrong signer, replay, another transaction's or action's signature,
                expired (the transaction becomes EXPIRED), or not waiting for approval.

        Example::

            sig = owner.sign_message(encode_defunct(text=wallet.approval_message(tx_id)))
            wallet.approve(tx_id, sig.signature.hex())
        """
        return _tx_info(self.pipeline.decide(check_id(tx_id, "tx_id"), signature, approve=True))

    def reject(self, tx_id: str, signature: str) -> TransactionInfo:
        """Reject with the owner's signature of ``approval_message(tx_id, "reject")``.

        Raises:
            ApprovalError: as for :meth:`approve`.

        Example::

            wallet.reject(tx_id, owner_signature_of(wallet.approval_message(tx_id, "reject")))
        """
        return _tx_info(self.pipeline.decide(check_id(tx_id, "tx_id"), signature, approve=False))

    def dry_run(
        self,
        request: Request | Mapping[str, Any],
        *,
        agent_id: str | None = None,
        token: str | None = None,
    ) -> Explanation:
        """What ``send`` would decide for ``request`` now, without sending it: an explanation
        that says which rules fired and what would change the outcome.

        The request goes through the same gate as :meth:`send`: normalised for the agent's
        chain, built into the transaction that would be signed, and judged on its decoded
        effects against the same policies, usage windows (budgets, velocity tiers, rate
        limits), price-oracle valuations and the no-owner rule. So a request that ``send``
        would make INSTANT is INSTANT here too, and one it would refuse is refused for the
        same kind of rule. Session constraints and the kill switch are ``send``'s own
        checks (an agent's dry run is refused with :class:`AuthError` when the kill switch
        has revoked its session).

        Name the agent by ``agent_id`` (owner or operator: the full explanation, nothing is
        written) or ``token`` (the agent itself: a compact ``DRY_RUN`` audit row, counted by
        RATE_LIMIT, and a redacted explanation: the outcome and the one figure that decides it
        for this request, never list contents or thresholds; a malformed request counts as a
        refusal).

        Raises:
            InvalidInputError: a malformed argument.
            NotFoundError: no such agent, session or transaction.
            AuthError: the session token was refused.

        Example::

            preview = wallet.dry_run(Transfer(to=dest, amount=2 * 10**9), agent_id=agent.id)
            print(preview.decision.tier, preview.hints)
        """
        from waiaas.pipeline import plans
        from waiaas.policy.explain import redact_for_agent

        now = self.clock.now()
        session_id: str | None = None
        if token is not None:
            try:
                with self.db.read() as uow:
                    verified = self.sessions.verify_in(uow, token, now)
                    agent_id, session_id = verified.agent_id, verified.session_id
            except (AuthError, AgentNotActiveError) as exc:
                self.sessions.record_failure(exc, now=now)
                raise
        try:
            req = parse_request(request)
        except InvalidInputError as exc:
            if token is not None and agent_id is not None:
                self.pipeline.record_refusal(agent_id, session_id, "malformed", exc, now)
            raise
        if agent_id is None:
            raise InvalidInputError("give agent_id or token", field="agent_id")
        agent_id = check_id(agent_id, "agent_id")
        refused: InvalidInputError | None = None
        with self.db.read() as uow:
            agent = uow.agents.get(agent_id)
            if agent is None:
                raise NotFoundError("agent", agent_id)
            adapter = self._adapter(agent.chain, agent.network)
            try:
                req = normalize_request(adapter, req)
            except InvalidInputError as exc:
                refused = exc  # a guard, an address or network the agent's chain refuses
            else:
                prepared = plans.prepare_or_defer(adapter, req, agent.public_key)
                result: Explanation = self.pipeline.gate.explain(
                    uow,
                    agent,
                    req,
                    now,
                    adapter=adapter,
                    effects=prepared.effects,
                    calldata=prepared.calldata,
                )
        if refused is not None:
            if token is not None:  # counted as send counts it
                self.pipeline.record_refusal(agent.id, session_id, "guard", refused, now)
            raise refused
        if token is None:
            return result  # the owner or operator: the full explanation
        # The agent itself: a compact DRY_RUN row (RATE_LIMIT counts it) and a redacted view.
        with self.db.write() as uow:
            uow.audit.append(
                AuditEvent.DRY_RUN,
                actor=f"agent:{agent.id}",
                now=now,
                agent_id=agent.id,
                session_id=session_id,
                details={
                    "type": str(req.type),
                    "allowed": result.decision.allowed,
                    "tier": str(result.decision.tier),
                },
            )
            uow.commit()
        return redact_for_agent(result)

    # ================================================================== operations

    def process_due(self) -> DueReport:
        """One pass of due work (delays, approval expiry, session expiry, confirmations).

        Each transaction is handled on its own: one agent's failure (a missing key, an
        adapter error) fails or parks that transaction and is listed in
        ``report.problems``; the pass goes on for everyone else. Counts include only work
        this call won (two concurrent passes never both count the same DELAY).

        Returns:
            a :class:`DueReport` (``report.delays``, ``report.problems``, ...; ``report["delays"]``
            works too).

        Raises:
            StorageError: the database cannot be used.

        Example::

            report = wallet.process_due()
            if report.problems:
                log.warning("due work problems: %s", report.problems)
        """
        return self.pipeline.process_due()

    def start_background(self, interval: float = 1.0) -> None:
        """Run :meth:`process_due` every ``interval`` seconds and the WAL checkpoint every
        ``config.checkpoint_interval`` seconds, in a daemon thread until :meth:`close`.

        Raises:
            InvalidInputError: the interval is not a positive number.

        Example::

            wallet.start_background(interval=1.0)
        """
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise InvalidInputError(
                "interval must be a positive number of seconds", field="interval"
            )
        if self._bg_thread is not None:
            return
        self._bg_stop.clear()
        self.db.start_checkpointer(self.config.checkpoint_interval)

        def run() -> None:
            while not self._bg_stop.wait(interval):
                try:
                    self.process_due()
                except WaiaasError as exc:
                    log.warning("background pass failed (will retry): %s", exc)
                except Exception:
                    log.exception("background pass crashed (will retry)")

        self._bg_thread = threading.Thread(target=run, name="waiaas-due", daemon=True)
        self._bg_thread.start()

    def stop_background(self) -> None:
        """Stop the background thread (if any).

        Example::

            wallet.stop_background()
        """
        self._bg_stop.set()
        if self._bg_thread is not None:
            self._bg_thread.join(timeout=30)
            self._bg_thread = None
        self.db.stop_checkpointer()

    def kill_switch(self, reason: str = "kill switch activated by the owner") -> KillSwitchSummary:
        """Stop everything at once, atomically: suspend every agent, revoke every session,
        cancel every PENDING/QUEUED transaction (critical KILL_SWITCH_ACTIVATED).

        The state is persisted: it survives a restart until :meth:`release_kill_switch`.

        Returns:
            A :class:`KillSwitchSummary`: how many agents, sessions and transactions it
            stopped, and which (``summary.to_dict()`` is JSON-able).

        Raises:
            InvalidInputError: the reason is empty.
            StateError: already active.

        Example::

            summary = wallet.kill_switch("suspicious activity")
            print(summary.agents_suspended, summary.transactions_cancelled)
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError("reason must be a non-empty string", field="reason")
        now = self.clock.now()
        with self.db.write() as uow:
            summary = killswitch.activate(uow, actor="owner", reason=reason, now=now)
            uow.commit()
        self.pipeline.publish(
            AuditEvent.KILL_SWITCH_ACTIVATED, reason=reason, severity=Severity.CRITICAL
        )
        return KillSwitchSummary(
            reason=reason,
            activated_at=now,
            agents_suspended=summary["agents_suspended"],
            sessions_revoked=summary["sessions_revoked"],
            transactions_cancelled=summary["transactions_cancelled"],
            suspended_ids=tuple(summary.get("suspended_ids", ())),
            revoked_ids=tuple(summary.get("revoked_ids", ())),
            cancelled_ids=tuple(summary.get("cancelled_ids", ())),
        )

    def release_kill_switch(self, *, resume_agents: bool = False) -> KillSwitchRelease:
        """Turn the kill switch off (KILL_SWITCH_RECOVERED). With ``resume_agents``, the
        agents it suspended become ACTIVE again (not those suspended for another reason);
        otherwise resume them one by one with :meth:`resume_agent`. Sessions it revoked stay
        revoked: issue new ones.

        Returns:
            A :class:`KillSwitchRelease` (``release.agents_resumed``, ``release.resumed_ids``).

        Raises:
            StateError: the kill switch is not active.

        Example::

            wallet.release_kill_switch(resume_agents=True)
        """
        now = self.clock.now()
        with self.db.write() as uow:
            summary = killswitch.recover(
                uow, actor="owner", now=now, resume_agents=bool(resume_agents)
            )
            uow.commit()
        self.pipeline.publish(AuditEvent.KILL_SWITCH_RECOVERED)
        return KillSwitchRelease(
            activated_at=summary.get("activated_at"),
            released_at=now,
            agents_resumed=summary["agents_resumed"],
            resumed_ids=tuple(summary.get("resumed_ids", ())),
        )

    def recover(self, *, resume_agents: bool = False) -> KillSwitchRelease:
        """Deprecated name of :meth:`release_kill_switch` (it emits ``DeprecationWarning``).

        Example::

            wallet.release_kill_switch(resume_agents=True)  # instead of wallet.recover(...)
        """
        warnings.warn(
            "Wallet.recover() is deprecated: use Wallet.release_kill_switch()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.release_kill_switch(resume_agents=resume_agents)

    def kill_switch_state(self) -> KillSwitchState:
        """Whether the kill switch is active.

        Example::

            if wallet.kill_switch_state().active: ...
        """
        with self.db.read() as uow:
            return killswitch.state(uow)

    def audit(
        self,
        *,
        agent_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        event_types: Sequence[AuditEvent | str] | None = None,
        severities: Sequence[Severity | str] | None = None,
        tx_id: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> AuditPage:
        """Audit entries, newest first, filtered; pass ``next_cursor`` back as ``cursor``.

        Raises:
            InvalidInputError: bad limit, cursor, id, time, event type or severity.

        Example::

            page = wallet.audit(agent_id=agent.id, severities=["warning", "critical"])
            older = wallet.audit(agent_id=agent.id, cursor=page.next_cursor)
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be an int from 1 to 1000", field="limit")
        if cursor is not None and (
            not isinstance(cursor, int) or isinstance(cursor, bool) or not 0 < cursor <= MAX_TIME
        ):
            raise InvalidInputError("cursor must be an int from a previous page", field="cursor")
        if agent_id is not None:
            agent_id = check_id(agent_id, "agent_id")
        if tx_id is not None:
            tx_id = check_id(tx_id, "tx_id")
        since = _check_time(since, "since")
        until = _check_time(until, "until")
        kinds = _check_event_types(event_types)
        if severities is not None and (
            isinstance(severities, str | bytes) or not isinstance(severities, Sequence)
        ):
            raise InvalidInputError("severities must be a list of severities", field="severities")
        sev: list[str] | None = None
        if severities:
            try:
                sev = [Severity(s).value for s in severities]
            except (ValueError, TypeError):
                raise InvalidInputError("unknown severity", field="severities") from None
        with self.db.read() as uow:
            rows = uow.audit.query(
                agent_id=agent_id,
                since=since,
                until=until,
                event_types=kinds,
                severities=sev,
                tx_id=tx_id,
                before_id=cursor,
                limit=limit + 1,
            )
        entries = tuple(_audit_entry(r) for r in rows[:limit])
        next_cursor = entries[-1].id if len(rows) > limit and entries else None
        return AuditPage(entries=entries, next_cursor=next_cursor)

    def budget_usage(self, agent_id: str, *, asset: str = "native") -> BudgetUsage:
        """The agent's spend of ``asset`` in each rolling window, with the limits of the
        SPENDING_LIMIT policies that apply to it (for a table, or ``.plot()`` in a notebook).

        Counts what the budgets count: in-flight and confirmed requests of the last 7 days.

        Raises:
            NotFoundError: no such agent, session or transaction.
            InvalidInputError: a malformed argument.

        Example::

            usage = wallet.budget_usage(agent.id)
            usage.remaining()      # {"24h": 4000000000}
            usage.plot()           # needs the plot extra
        """
        from waiaas.plots import build_budget_usage
        from waiaas.policy import normalize_asset_key

        agent = self.get_agent(agent_id)
        if not isinstance(asset, str) or not asset.strip():
            raise InvalidInputError("asset must be 'native' or a token address", field="asset")
        key = normalize_asset_key(asset)
        now = self.clock.now()
        txs: list[TransactionInfo] = []
        before: str | None = None
        while True:
            page = self.list_transactions(agent_id=agent.id, limit=1000, before=before)
            txs += page
            if len(page) < 1000 or page[-1].created_at <= now - 7 * 86_400:
                break
            before = page[-1].id
        policies = self.policies.list(agent_id=agent.id)
        return build_budget_usage(agent.id, agent.chain, key, now, txs, policies)

    def backup(self, directory: str | os.PathLike[str] | None = None) -> Path:
        """A consistent copy of the database (``VACUUM INTO``); returns its path.

        The keystore directory is not part of it: back it up alongside (its files are
        useless without the master password).

        Raises:
            DatabaseOpenError: the directory does not exist.
            StorageError: SQLite refused.

        Example::

            path = wallet.backup("/var/backups/waiaas")
        """
        path = self.db.backup(directory)
        self._audit(AuditEvent.BACKUP_CREATED, actor="owner", details={"path": str(path)})
        return path

    def verify_audit(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        checkpoint: AuditCheckpoint | None = None,
    ) -> AuditReport:
        """Walk the whole audit chain and report the first broken link.

        Every row's hash and MAC (key sealed in the keystore) are checked, and its link to the
        row before; then every stored signed checkpoint, the given ``checkpoint`` (one you
        exported and kept elsewhere) and, for the live database, the chain head this machine
        recorded in the keystore (rows cut off the end or lost with the WAL).

        Args:
            path: a backup of this wallet's database to check instead of the live one. It is
                opened read-only and not changed; the recorded head is not checked (a backup
                is older than the live log).
            checkpoint: an exported :class:`AuditCheckpoint` the log must still match.

        Returns:
            an :class:`AuditReport`; ``report.ok`` is False with ``first_broken_id``,
            ``problem`` and ``message`` set when something was changed.

        Raises:
            InvalidInputError: ``path`` or ``checkpoint`` is not what it should be.
            DatabaseOpenError, NotADatabaseError: ``path`` cannot be read as a database.

        Example::

            report = wallet.verify_audit()
            if not report.ok:
                print(report.problem, report.first_broken_id, report.message)
            wallet.verify_audit("/backups/agents-20260101T000000Z.db", checkpoint=saved)
        """
        if checkpoint is not None and not isinstance(checkpoint, AuditCheckpoint):
            raise InvalidInputError("checkpoint must be an AuditCheckpoint", field="checkpoint")
        if path is None:
            head = self.integrity.read_head()
            with self.db.read() as uow:
                data = integrity.verify_file(
                    integrity._raw(uow),
                    self.integrity,
                    str(self.db.path),
                    head=head,
                    checkpoint=checkpoint,
                )
            return AuditReport(**data)
        if not isinstance(path, str | os.PathLike) or not str(path).strip():
            raise InvalidInputError("path must be a file path", field="path")
        target = Path(path).expanduser().absolute()
        if not target.is_file():
            raise DatabaseOpenError(f"{str(target)!r} is not a file", path=str(target))
        check_path(target)
        import sqlite3
        import urllib.parse

        uri = f"file:{urllib.parse.quote(str(target))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True)
        except sqlite3.Error as exc:
            raise DatabaseOpenError(
                f"cannot open {str(target)!r}: {exc}", path=str(target)
            ) from exc
        try:
            data = integrity.verify_file(
                conn, self.integrity, str(target), head=None, checkpoint=checkpoint
            )
        except sqlite3.DatabaseError as exc:
            raise NotADatabaseError(str(target)) from exc
        finally:
            conn.close()
        return AuditReport(**data)

    def export_audit_checkpoint(self) -> AuditCheckpoint:
        """Sign and return a checkpoint of the audit log as it stands now.

        Keep it somewhere this machine cannot write: later, ``verify_audit(checkpoint=cp)``
        (on the live database or a backup) proves every row up to ``cp.seq`` is unchanged,
        and ``cp.verify(public_key)`` needs nothing but the wallet's public key.

        Example::

            cp = wallet.export_audit_checkpoint()
            Path("/mnt/offsite/checkpoint.json").write_text(cp.model_dump_json())
        """
        with self.db.write() as uow:
            head = uow.audit.head()
            row = self.integrity.write_checkpoint(uow, head)
            uow.commit()
        return AuditCheckpoint(
            wallet_id=row.wallet_id,
            seq=row.seq,
            head_hash=row.head_hash,
            created_at=row.created_at,
            public_key=row.public_key,
            signature=row.signature,
        )

    def checkpoint(self) -> CheckpointResult:
        """Checkpoint the WAL now (TRUNCATE).

        Returns:
            A :class:`CheckpointResult`: the ``(busy, log_frames, checkpointed)`` tuple
            ``PRAGMA wal_checkpoint`` gives, with those names as attributes.

        Example::

            busy, log_frames, checkpointed = wallet.checkpoint()
        """
        return self.db.checkpoint("TRUNCATE")

    def chain_adapter(self, agent_id: str) -> ChainAdapter:
        """The chain adapter an agent's transactions go through (its chain and network).

        For reading the chain the way the wallet does, and in tests for the local chains'
        controls (``isinstance(adapter, LocalChainControl)``: fund, create and mint test
        tokens). The pipeline owns the adapter: do not sign or send through it.

        Raises:
            InvalidInputError: a malformed id, or no adapter for the agent's network was given
                to :meth:`open`.
            NotFoundError: no such agent.

        Example::

            adapter = wallet.chain_adapter(agent.id)
            adapter.get_balance(agent.public_key)
        """
        row = self._agent_row(agent_id)
        return self.pipeline.adapter_for(row.chain, row.network)

    def balance(self, agent_id: str, token: str | None = None) -> int:
        """The agent's native balance, or its balance of ``token``, in base units.

        Raises:
            NotFoundError: no such agent, session or transaction.
            InvalidAddressError: bad token.
            ChainError: the chain failed the request.

        Example::

            lamports = wallet.balance(agent.id)
            usdc = wallet.balance(agent.id, token=USDC_MINT)
        """
        agent = self._agent_row(agent_id)
        adapter = self._adapter(agent.chain, agent.network)
        if token is None:
            return adapter.get_balance(agent.public_key)
        return adapter.get_token_balance(agent.public_key, adapter.validate_address(token))

    def change_password(self, current_password: str, new_password: str) -> None:
        """Re-seal every key under a new master password (all or nothing).

        The new password must pass the same strength check as a new keystore's
        (``WalletConfig.min_password_length``).

        Raises:
            InvalidInputError: the new password is too weak (``field="new_password"``).
            WrongPasswordError: ``current_password`` is wrong; nothing changed.

        Example::

            wallet.change_password(old_password, new_password)
        """
        check_password_strength(new_password, self.config.min_password_length, field="new_password")
        self.keystore.change_password(current_password, new_password)
        self._audit(AuditEvent.KEYSTORE_PASSWORD_CHANGED, actor="owner")

    def lock(self) -> None:
        """Lock the keystore: nothing can be signed until :meth:`unlock`.

        Example::

            wallet.lock()   # nothing can be signed until wallet.unlock(password)
        """
        self.keystore.lock()
        self.sessions.forget_secret()
        self._audit(AuditEvent.KEYSTORE_LOCKED, actor="owner")

    def unlock(self, password: str | None = None) -> None:
        """Unlock the keystore again (same password sources as :meth:`open`).

        Raises:
            WrongPasswordError: the password does not open the keystore.
            PasswordUnavailableError: no password was given, and none was found in the
                environment or the OS keyring.

        Example::

            wallet.unlock(password)
        """
        secret = resolve_password(password, keyring_user=str(self.db.path))
        self.keystore.unlock(secret)
        self._audit(AuditEvent.KEYSTORE_UNLOCKED, actor="owner")
