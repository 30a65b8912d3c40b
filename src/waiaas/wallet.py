"""The :class:`Wallet` facade: the whole public API, one method per operation.

A wallet is one SQLite file (plus its keystore directory beside it). Open it, create agents,
give each agent a session token, set policies, and let agents send::

    from waiaas import Wallet, Transfer
    from waiaas.testing import local_chains

    with Wallet.open("wallet.db", password="correct horse", chains=local_chains()) as w:
        agent = w.create_agent("trader", chain="solana")
        session = w.issue_session(agent.id)
        result = w.send(session.token, Transfer(to="...", amount=1_000_000))
        print(result.status, result.tier, result.tx_hash)

Each method delegates to a collaborator: the agent service (:mod:`waiaas.services.agents`),
the policy service, the query service (:mod:`waiaas.services.queries`), the session manager,
the pipeline and the background runner (:mod:`waiaas.background`). They are built by one
factory, :func:`waiaas._factory.build_wallet`, which ``Wallet.open`` calls.

Thread-safe: any number of threads (and processes, on the same file) may call it at once.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from waiaas._factory import build_wallet
from waiaas._validate import check_encodable, check_id
from waiaas.chains.base import ChainAdapter
from waiaas.clock import Clock
from waiaas.config import WalletConfig
from waiaas.db import CheckpointResult
from waiaas.errors import InvalidInputError, WaiaasError
from waiaas.keystore import check_password_strength, resolve_password
from waiaas.pipeline import approvals, killswitch
from waiaas.pipeline.approvals import ApprovalRequest
from waiaas.pipeline.engine import PipelineHooks
from waiaas.pipeline.report import DueReport
from waiaas.plots import BudgetUsage
from waiaas.policy import Explanation
from waiaas.policy.model import PriceOracle
from waiaas.services import dry_runs
from waiaas.services.policies import PolicyInfo, PolicyService
from waiaas.services.queries import TransactionResult, agent_result, tx_info
from waiaas.sessions import IssuedSession, SessionConstraints, SessionInfo, SessionList
from waiaas.types import (
    AgentInfo,
    AgentList,
    AgentStatus,
    AuditCheckpoint,
    AuditEvent,
    AuditPage,
    AuditReport,
    KillSwitchRelease,
    KillSwitchState,
    KillSwitchSummary,
    Request,
    Severity,
    TransactionInfo,
    TransactionList,
    TxStatus,
)
from waiaas.web.display import TxDisplay

if TYPE_CHECKING:
    from waiaas.agent import AgentHandle
    from waiaas.background import BackgroundRunner
    from waiaas.db import Database
    from waiaas.integrity import Integrity
    from waiaas.keystore import Keystore
    from waiaas.notify import ChannelService
    from waiaas.notify.base import Notifier
    from waiaas.pipeline.engine import Pipeline
    from waiaas.services.agent_access import AgentAccess
    from waiaas.services.agents import AgentService
    from waiaas.services.queries import QueryService
    from waiaas.sessions import SessionManager

__all__ = ["TransactionResult", "Wallet"]

log = logging.getLogger("waiaas")


class Wallet:
    """An embedded wallet engine for AI agents, on one SQLite file.

    Open it with :meth:`open` (a context manager); everything else is a method.
    """

    def __init__(
        self,
        *,
        db: Database,
        keystore: Keystore,
        integrity: Integrity,
        sessions: SessionManager,
        channels: ChannelService,
        pipeline: Pipeline,
        agents: AgentService,
        policies: PolicyService,
        queries: QueryService,
        agent_access: AgentAccess,
        runner: BackgroundRunner,
        config: WalletConfig,
        clock: Clock,
    ) -> None:
        """A wallet over collaborators that are already open; use :meth:`open` instead.

        ``Wallet.open`` builds every collaborator (:func:`waiaas._factory.build_wallet`),
        finishes crash recovery and passes them here; the wallet owns them from then on
        (:meth:`close` closes the database and locks the keystore).
        """
        self._db = db
        self._keystore = keystore
        self._integrity = integrity
        self._sessions = sessions
        self._channels = channels
        self._pipeline = pipeline
        self._agents = agents
        self._policies = policies
        self._queries = queries
        self._agent_access = agent_access
        self._runner = runner
        self._config = config
        self._clock = clock
        self._closed = False

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
        self = build_wallet(
            path,
            password=password,
            chains=chains,
            config=config,
            clock=clock,
            notifier=notifier,
            price_oracle=price_oracle,
            hooks=hooks,
        )
        if background is None:
            background = clock is None
        if background:
            self.start_background()
        return self

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
            self._runner.stop()
            try:
                self._audit(AuditEvent.DAEMON_STOPPED, actor="system")
            except WaiaasError as exc:  # e.g. the disk is full: close all the same
                log.warning("could not record DAEMON_STOPPED: %s", exc)
            close_notifier = getattr(self._pipeline.notifier, "close", None)
            if close_notifier is not None:
                close_notifier(timeout=10.0)
        finally:
            # Whatever failed above, the key material is dropped and the file released.
            try:
                self._sessions.forget_secret()
            finally:
                try:
                    self._keystore.lock()
                finally:
                    self._db.close()

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
        if self._db.path is None:
            return f"Wallet(url={self._db.location!r}, {state})"
        return f"Wallet(path={str(self._db.path)!r}, {state})"

    @property
    def path(self) -> Path | None:
        """The database file; ``None`` for a wallet on PostgreSQL (see :attr:`location`)."""
        return self._db.path

    @property
    def location(self) -> str:
        """Where the database is, for display: the file path, or the PostgreSQL URL with its
        password replaced by ``***``.

        Example::

            print(wallet.location)  # postgresql+psycopg://waiaas:***@db.internal/waiaas
        """
        return self._db.location

    @property
    def config(self) -> WalletConfig:
        """The :class:`WalletConfig` the wallet was opened with (read-only).

        Example::

            wallet.config.delay_seconds
        """
        return self._config

    @property
    def clock(self) -> Clock:
        """The time source the wallet runs on (``FrozenClock`` in tests).

        Example::

            now = wallet.clock.now()
        """
        return self._clock

    @property
    def keystore_path(self) -> Path | None:
        """The keystore directory (back it up with the database); ``None`` when the keystore
        lives in the database itself (``WalletConfig.keystore_backend``, docs/keystore.md).

        Example::

            print(wallet.path, wallet.keystore_path)
        """
        return self._keystore.path

    @property
    def channels(self) -> ChannelService:
        """Notification channels: add, update, enable, disable, remove, list, send_test (a
        :class:`~waiaas.notify.ChannelService`; see the notifications guide).

        Example::

            info = wallet.channels.add("NTFY", {"topic": "my-agents"})
            wallet.channels.disable(info.id)
        """
        return self._channels

    @property
    def networks(self) -> tuple[tuple[str, str], ...]:
        """The ``(chain, network)`` pairs of the chain adapters given to :meth:`open`.

        Example::

            if ("solana", "mainnet-beta") in wallet.networks: ...
        """
        return tuple(self._pipeline.adapters)

    def network_adapter(self, chain: str, network: str | None = None) -> ChainAdapter:
        """The chain adapter given to :meth:`open` for ``chain`` (and ``network``).

        For reading the chain the way the wallet does, and in tests for the local chains'
        controls. The pipeline owns the adapter: do not sign or send through it.

        Raises:
            InvalidInputError: no adapter for that chain/network, or several networks of
                ``chain`` are configured and ``network`` is ``None``.

        Example::

            adapter = wallet.network_adapter("solana", "localnet")
            adapter.get_balance(address)
        """
        return self._agents.adapter(chain, network)

    def _audit(
        self,
        event: AuditEvent,
        *,
        actor: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        with self._db.write() as uow:
            uow.audit.append(event, actor=actor, now=self._clock.now(), details=details)
            uow.commit()

    # ================================================================== recovery

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
        return self._agents.create(name, chain, network, owner_address)

    def get_agent(self, agent_id: str) -> AgentInfo:
        """The agent with id ``agent_id``.

        Raises:
            NotFoundError: no such agent.

        Example::

            agent = wallet.get_agent(agent_id); agent.status
        """
        return self._agents.get(agent_id)

    def list_agents(self, *, status: AgentStatus | str | None = None) -> AgentList:
        """All agents (optionally only those in ``status``), oldest first.

        Raises:
            InvalidInputError: unknown status.

        Example::

            suspended = wallet.list_agents(status="SUSPENDED")
        """
        return self._agents.list(status=status)

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
        return self._agents.suspend(agent_id, reason)

    def resume_agent(self, agent_id: str) -> AgentInfo:
        """Resume a SUSPENDED agent (AGENT_RESUMED). Not while the kill switch is active.

        Raises:
            NotFoundError: no such agent, session or transaction.
            StateError: not SUSPENDED.
            KillSwitchActiveError: the kill switch is on.

        Example::

            wallet.resume_agent(agent.id)
        """
        return self._agents.resume(agent_id)

    def terminate_agent(self, agent_id: str) -> AgentInfo:
        """Terminate an agent for good: its sessions are revoked, its PENDING/QUEUED
        transactions cancelled, its key archived; its history is kept (AGENT_TERMINATED).

        Raises:
            NotFoundError: no such agent, session or transaction.
            StateError: already terminated.

        Example::

            wallet.terminate_agent(agent.id)
        """
        return self._agents.terminate(agent_id)

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
        return self._agents.set_owner(agent_id, owner_address)

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
        return self._agents.rotate_key(agent_id)

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
        with self._db.read() as uow:
            killswitch.ensure_inactive(uow)
        return self._sessions.issue(agent_id, ttl=ttl, constraints=constraints)

    def renew_session(self, token: str) -> IssuedSession:
        """Renew a session: a new token; the old one stops working at once (SESSION_RENEWED).

        Raises:
            AuthError (and subclasses): the token was refused.
            StateError: renewal limit or absolute lifetime reached.

        Example::

            token = wallet.renew_session(token).token
        """
        return self._sessions.renew(token)

    def revoke_session(self, session_id: str) -> None:
        """Revoke a session (SESSION_REVOKED); its token is refused from now on.

        Raises:
            NotFoundError: no such agent, session or transaction.
            InvalidInputError: a malformed argument.

        Example::

            wallet.revoke_session(issued.session_id)
        """
        self._sessions.revoke(check_id(session_id, "session_id"), actor="owner")

    def get_session(self, session_id: str) -> SessionInfo:
        """What is known about a session (never its token).

        Raises:
            NotFoundError: no such agent, session or transaction.
            InvalidInputError: a malformed argument.

        Example::

            info = wallet.get_session(session_id); info.usage.total()
        """
        return self._sessions.get(check_id(session_id, "session_id"))

    def list_sessions(self, agent_id: str) -> SessionList:
        """An agent's sessions, oldest first: a :class:`SessionList` (a ``list`` that renders
        as a table in a notebook and has ``to_dataframe()``). Never a token.

        Raises:
            InvalidInputError: bad agent id.

        Example::

            live = [s for s in wallet.list_sessions(agent.id) if s.status == "active"]
        """
        return self._queries.sessions(agent_id)

    # ================================================================== policies

    @property
    def policies(self) -> PolicyService:
        """Policy management: add, update, enable, disable, remove, list, dry_run, replay.

        Example::

            info = wallet.policies.add("RATE_LIMIT", {"max_requests": 10, "window_seconds": 60})
            wallet.policies.disable(info.id)
        """
        return self._policies

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

        return AgentHandle(self, token, self._agent_access)

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
        return agent_result(self._pipeline.send(token, request))

    def get_transaction(self, tx_id: str) -> TransactionResult:
        """A transaction by id, as the owner and operator see it: the policy decision (every
        reason with its policy id and figures and the budget tables checked where the
        request was refused or queued; for an INSTANT or NOTIFY one its outcome, tier and
        fees: ``budget_usage`` shows the budgets at any time, ``dry_run`` the reasons) and,
        for a denial, every reason in ``error``. An agent's handle shows
        it redacted.

        Raises:
            NotFoundError: no such agent, session or transaction.

        Example::

            tx = wallet.get_transaction(tx_id); tx.status, tx.tx_hash
        """
        return self._queries.transaction(tx_id)

    def list_transactions(
        self,
        *,
        agent_id: str | None = None,
        status: TxStatus | str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> TransactionList:
        """Transactions, newest first (by creation time, then id); page with ``before`` =
        the last id of a page (an id no transaction has gives an empty page).

        The result is a list that also renders as a table in a notebook and has
        ``to_dataframe()`` (with the ``pandas`` extra).

        Raises:
            InvalidInputError: bad limit, status or cursor.

        Example::

            page = wallet.list_transactions(agent_id=agent.id, limit=50)
            more = wallet.list_transactions(agent_id=agent.id, limit=50, before=page[-1].id)
        """
        return self._queries.transactions(
            agent_id=agent_id, status=status, limit=limit, before=before
        )

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
        return tx_info(self._pipeline.cancel(check_id(tx_id, "tx_id"), actor=actor, token=token))

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
        return tx_info(self._pipeline.resolve(tx_id, landed=landed, evidence=evidence.strip()))

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
        req = self._pipeline.approval_request(check_id(tx_id, "tx_id"))
        return approvals.build_message(req, action)

    def approval_request(self, tx_id: str) -> ApprovalRequest:
        """What the owner is asked to approve: the facts the approval message names (agent,
        chain and network, the effects as text, amount, owner address, expiry, plan digest),
        for a transaction waiting for the owner's approval.

        For hosts that present approvals themselves (a chat bot, their own page): show
        these, then have the owner sign :meth:`approval_message` and pass the signature to
        :meth:`approve` or :meth:`reject`.

        Returns:
            an :class:`~waiaas.pipeline.approvals.ApprovalRequest` (frozen).

        Raises:
            InvalidInputError: a malformed id.
            NotFoundError: no such transaction.
            ApprovalError: not waiting for an owner approval (``reason=
                "not_awaiting_approval"``), or the agent has no owner (``"no_owner"``).

        Example::

            req = wallet.approval_request(tx_id)
            print(req.agent_name, req.effects, req.owner_address, req.expires_at)
        """
        return self._pipeline.approval_request(check_id(tx_id, "tx_id"))

    def check_approval_link(self, tx_id: str, token: str) -> ApprovalRequest | None:
        """The approval an approval-page link (``<approvals_url>/<tx_id>/<token>``, see
        :meth:`approval_link`) opens, or ``None`` for any link that opens nothing.

        ``None`` alike for an unknown or malformed id, a transaction not waiting for
        approval, and a wrong token, with the same keyed-hash work each time (the answer
        does not tell whether the transaction exists). A link only shows the approval:
        deciding it still needs the owner's signature.

        Raises:
            KeystoreLockedError: the keystore is locked (links are checked with a secret it
                keeps).

        Example::

            req = wallet.check_approval_link(tx_id, token)
            if req is None:
                return not_found()
        """
        return self._queries.approval_for_link(tx_id, token)

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
        return self._queries.approval_link(tx_id)

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
        return self._queries.display(tx_id)

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
        return tx_info(self._pipeline.decide(check_id(tx_id, "tx_id"), signature, approve=True))

    def reject(self, tx_id: str, signature: str) -> TransactionInfo:
        """Reject with the owner's signature of ``approval_message(tx_id, "reject")``.

        Raises:
            ApprovalError: as for :meth:`approve`.

        Example::

            wallet.reject(tx_id, owner_signature_of(wallet.approval_message(tx_id, "reject")))
        """
        return tx_info(self._pipeline.decide(check_id(tx_id, "tx_id"), signature, approve=False))

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
        return dry_runs.dry_run(
            self._db,
            self._sessions,
            self._pipeline,
            self._agents,
            self._clock.now(),
            request,
            agent_id=agent_id,
            token=token,
        )

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
        return self._pipeline.process_due()

    def start_background(self, interval: float = 1.0) -> None:
        """Run :meth:`process_due` every ``interval`` seconds and the WAL checkpoint every
        ``config.checkpoint_interval`` seconds, in a daemon thread until :meth:`close`.

        Raises:
            InvalidInputError: the interval is not a positive number.

        Example::

            wallet.start_background(interval=1.0)
        """
        self._runner.start(interval)

    def stop_background(self) -> None:
        """Stop the background thread (if any).

        Example::

            wallet.stop_background()
        """
        self._runner.stop()

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
        return self._agents.kill_switch(reason)

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
        return self._agents.release_kill_switch(resume_agents=resume_agents)

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
        with self._db.read() as uow:
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
        return self._queries.audit(
            agent_id=agent_id,
            since=since,
            until=until,
            event_types=event_types,
            severities=severities,
            tx_id=tx_id,
            limit=limit,
            cursor=cursor,
        )

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
        return self._queries.budget_usage(agent_id, asset)

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
        path = self._db.backup(directory)
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
        return self._queries.verify_audit(self._integrity, path, checkpoint)

    def export_audit_checkpoint(self) -> AuditCheckpoint:
        """Sign and return a checkpoint of the audit log as it stands now.

        Keep it somewhere this machine cannot write: later, ``verify_audit(checkpoint=cp)``
        (on the live database or a backup) proves every row up to ``cp.seq`` is unchanged,
        and ``cp.verify(public_key)`` needs nothing but the wallet's public key.

        Example::

            cp = wallet.export_audit_checkpoint()
            Path("/mnt/offsite/checkpoint.json").write_text(cp.model_dump_json())
        """
        with self._db.write() as uow:
            head = uow.audit.head()
            row = self._integrity.write_checkpoint(uow, head)
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
        return self._db.checkpoint("TRUNCATE")

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
        return self._agents.chain_adapter(agent_id)

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
        return self._agents.balance(agent_id, token)

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
        check_password_strength(
            new_password, self._config.min_password_length, field="new_password"
        )
        self._keystore.change_password(current_password, new_password)
        self._audit(AuditEvent.KEYSTORE_PASSWORD_CHANGED, actor="owner")

    def lock(self) -> None:
        """Lock the keystore: nothing can be signed until :meth:`unlock`.

        Example::

            wallet.lock()   # nothing can be signed until wallet.unlock(password)
        """
        self._keystore.lock()
        self._sessions.forget_secret()
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
        secret = resolve_password(password, keyring_user=self._db.location)
        self._keystore.unlock(secret)
        self._audit(AuditEvent.KEYSTORE_UNLOCKED, actor="owner")
