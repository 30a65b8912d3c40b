"""The async API: :class:`AsyncWallet` and :class:`AsyncAgentHandle`.

The same API as :class:`~waiaas.Wallet` and :class:`~waiaas.AgentHandle`, as coroutines,
for hosts that run an event loop (FastAPI, Jupyter, async agent frameworks)::

    from waiaas import AsyncWallet

    async with await AsyncWallet.open("wallet.db", password=pw, chains=chains) as wallet:
        handle = await wallet.agent(token)
        result = await handle.transfer(dest, "0.05")

Design: a bounded thread pool around the synchronous core (see ``docs/design.md``). Every
call runs in the wallet's own pool of ``max_workers`` threads, so the event loop never waits
on SQLite, the keystore's Argon2id or a chain; budgets stay exact because the core decides
and records each request inside one ``BEGIN IMMEDIATE`` transaction, whichever thread runs
it. Cancelling an awaiting task does not undo a request already handed to the pool: the
transaction completes and can be read back with :meth:`AsyncWallet.get_transaction`.

What the pool cannot hide is the interpreter's: the pool's threads share the GIL with the
loop (Python code yields it every ``sys.getswitchinterval()``, 5 ms by default; Argon2id,
signing, SQLite and sockets release it), and a full garbage collection stops every thread.
``open`` therefore pauses automatic collection while it runs and freezes the heap it built
(``freeze_gc``). The bound that results, and what it does not cover, is in
``docs/agents.md`` ("Event-loop stalls").
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypedDict, TypeVar

from waiaas.errors import InvalidInputError
from waiaas.policy.model import NATIVE

if TYPE_CHECKING:
    from waiaas.agent import AgentHandle, AgentLimits, AssetInfo, Balance
    from waiaas.chains.base import ChainAdapter
    from waiaas.clock import Clock
    from waiaas.config import WalletConfig
    from waiaas.notify.base import Notifier
    from waiaas.pipeline.engine import PipelineHooks
    from waiaas.pipeline.report import DueReport
    from waiaas.policy import Explanation
    from waiaas.policy.model import PriceOracle
    from waiaas.services.policies import PolicyInfo
    from waiaas.sessions import IssuedSession, SessionConstraints, SessionInfo
    from waiaas.types import (
        AgentInfo,
        AgentList,
        AgentStatus,
        AuditEvent,
        AuditPage,
        KillSwitchRelease,
        KillSwitchState,
        KillSwitchSummary,
        Request,
        Severity,
        TokenTransfer,
        TransactionInfo,
        TransactionList,
        Transfer,
        TxStatus,
    )
    from waiaas.wallet import TransactionResult, Wallet

__all__ = ["AsyncAgentHandle", "AsyncWallet"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_WORKERS = 4
"""Threads an :class:`AsyncWallet` uses by default (SQLite serialises writers anyway)."""


class _GcPause:
    """Automatic garbage collection paused while wallets open, then the heap frozen.

    A full (generation 2) collection stops every thread, the event loop's included, for as
    long as it takes to walk every tracked object: 30 ms for ``import waiaas`` alone, 60 ms
    once the chain libraries are loaded, hundreds of ms in a large host. Opening a wallet
    imports those libraries and builds the chains, which is exactly what triggers such
    collections; so while any :meth:`AsyncWallet.open` runs, automatic collection is off
    (``gc.disable()``, if it was on), and when the last one ends the objects built so far are
    moved to the permanent generation (``gc.freeze()``, O(1)) and collection is turned back
    on. Later full collections then walk only what was allocated since. Both are
    process-wide, like everything about ``gc``; the freeze is never undone (a host may call
    ``gc.unfreeze()``). Cyclic garbage that existed at that moment is never reclaimed.
    """

    _lock = threading.Lock()
    _depth = 0
    _was_enabled = False

    @classmethod
    def begin(cls) -> None:
        with cls._lock:
            if cls._depth == 0:
                cls._was_enabled = gc.isenabled()
                gc.disable()
            cls._depth += 1

    @classmethod
    def end(cls) -> None:
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0:
                gc.freeze()
                if cls._was_enabled:
                    gc.enable()


def _close_adapters(adapters: list[ChainAdapter]) -> None:
    """Close the adapters a ``chains`` function built (those that have ``close``)."""
    for adapter in adapters:
        close = getattr(adapter, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # closing the others matters more
                log.warning("closing %s failed: %s", type(adapter).__name__, type(exc).__name__)
    adapters.clear()


def _close_wallet(wallet: Wallet, adapters: list[ChainAdapter]) -> None:
    try:
        wallet.close()
    finally:
        _close_adapters(adapters)


class _Runner:
    """Runs blocking calls in a bounded pool, carrying the caller's context variables."""

    def __init__(self, max_workers: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="waiaas-aio")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.pool, call)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


def _check_workers(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise InvalidInputError("max_workers must be an int from 1 to 256", field="max_workers")
    return value


class _OpenOptions(TypedDict):
    """:meth:`waiaas.Wallet.open`'s keyword arguments that :meth:`AsyncWallet.open` passes
    on as they are (a TypedDict, so the type checker checks each name and type against
    ``Wallet.open`` where they are unpacked)."""

    password: str | None
    config: WalletConfig | None
    clock: Clock | None
    notifier: Notifier | None
    price_oracle: PriceOracle | None
    background: bool | None
    hooks: PipelineHooks | None


class _Opening:
    """One :meth:`AsyncWallet.open` running in the pool: the adapters it built (when
    ``chains`` is a function) and the wallet it opened, to close if the open is abandoned."""

    def __init__(
        self,
        runner: _Runner,
        path: str | os.PathLike[str],
        chains: Iterable[ChainAdapter] | Callable[[], Iterable[ChainAdapter]],
        options: _OpenOptions,
    ) -> None:
        self.runner = runner
        self.path = path
        self.chains = chains
        self.options = options  # Wallet.open's other keyword arguments
        self.opened: list[Wallet] = []
        self.built: list[ChainAdapter] = []

    def open(self) -> Wallet:
        """In the pool: build the adapters if asked, open the wallet (the adapters built
        are closed if it fails)."""
        from waiaas.wallet import Wallet

        chains = self.chains
        if callable(chains):
            self.built.extend(chains())
        try:
            wallet = Wallet.open(
                self.path,
                chains=list(self.built) if callable(chains) else list(chains),
                **self.options,
            )
        except BaseException:
            _close_adapters(self.built)
            raise
        self.opened.append(wallet)
        return wallet

    def abandon(self) -> None:
        """The pool waits for an open still running, then it is closed (with what it
        opened)."""
        self.runner.shutdown()
        for wallet in self.opened:
            _close_wallet(wallet, self.built)


class AsyncWallet:
    """A :class:`~waiaas.Wallet` for asyncio: every method is a coroutine that never blocks
    the event loop. Open it with ``await AsyncWallet.open(...)``.

    Attributes:
        sync: the underlying :class:`~waiaas.Wallet` (for code that is not async).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use await AsyncWallet.open(path, password=..., chains=[...])")

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        password: str | None = None,
        chains: Iterable[ChainAdapter] | Callable[[], Iterable[ChainAdapter]] = (),
        config: WalletConfig | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        price_oracle: PriceOracle | None = None,
        background: bool | None = None,
        hooks: PipelineHooks | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        freeze_gc: bool = True,
    ) -> AsyncWallet:
        """Open (or create) the wallet at ``path`` without blocking the loop.

        Arguments and errors as :meth:`waiaas.Wallet.open`, plus:

        Args:
            chains: the adapters, or a function returning them (e.g.
                ``waiaas.testing.local_chains``), which then runs in the pool too: building
                an in-process chain takes seconds. Adapters built by the function belong
                to the wallet: :meth:`close` closes them.
            max_workers: the size of the wallet's thread pool (1..256, default 4).
            freeze_gc: keep the garbage collector's full collections, which stop every
                thread and so the loop, from walking the heap built so far: automatic
                collection is paused while the wallet opens (it imports the chain libraries
                and builds the chains), then ``gc.freeze()`` moves every object that exists
                at that moment to the permanent generation and collection resumes (see
                ``docs/agents.md``, "Event-loop stalls"). Process-wide and never undone;
                ``False`` leaves ``gc`` alone.

        Raises:
            InvalidInputError: ``max_workers`` or ``freeze_gc`` is not valid; otherwise as
                :meth:`waiaas.Wallet.open`.

        Example::

            wallet = await AsyncWallet.open("agents.db", password=pw, chains=local_chains)
        """
        if not isinstance(freeze_gc, bool):
            raise InvalidInputError("freeze_gc must be True or False", field="freeze_gc")
        runner = _Runner(_check_workers(max_workers))
        opening = _Opening(
            runner,
            path,
            chains,
            _OpenOptions(
                password=password,
                config=config,
                clock=clock,
                notifier=notifier,
                price_oracle=price_oracle,
                background=background,
                hooks=hooks,
            ),
        )
        if freeze_gc:
            _GcPause.begin()
        try:
            wallet = await runner.run(opening.open)
        except asyncio.CancelledError:
            # The open goes on in the pool: close what it opens there, never on the loop.
            asyncio.get_running_loop().run_in_executor(None, opening.abandon)
            raise
        except BaseException:
            await asyncio.get_running_loop().run_in_executor(None, opening.abandon)
            raise
        finally:
            if freeze_gc:
                _GcPause.end()
        self = object.__new__(cls)
        self.sync = wallet
        self._runner = runner
        self._owned = opening.built
        self._closed = False
        return self

    @classmethod
    def wrap(cls, wallet: Wallet, *, max_workers: int = DEFAULT_MAX_WORKERS) -> AsyncWallet:
        """An async view of an already open :class:`~waiaas.Wallet` (it owns a new pool;
        :meth:`close` closes the wallet too).

        Example::

            awallet = AsyncWallet.wrap(Wallet.open(...))
        """
        from waiaas.wallet import Wallet

        if not isinstance(wallet, Wallet):
            raise InvalidInputError("wallet must be a waiaas Wallet", field="wallet")
        self = object.__new__(cls)
        self.sync = wallet
        self._runner = _Runner(_check_workers(max_workers))
        self._owned = []
        self._closed = False
        return self

    sync: Wallet
    _runner: _Runner
    _owned: list[ChainAdapter]
    _closed: bool

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    async def close(self) -> None:
        """Close the wallet (as :meth:`waiaas.Wallet.close`), then the adapters it built from
        a ``chains`` function (adapters passed in stay the caller's), then the thread pool;
        all of it in threads, never on the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        owned, self._owned = self._owned, []
        try:
            await self._runner.run(_close_wallet, self.sync, owned)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self._runner.shutdown)

    async def __aenter__(self) -> AsyncWallet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ the agent's side

    async def agent(self, token: str) -> AsyncAgentHandle:
        """An :class:`AsyncAgentHandle` for session ``token`` (see :meth:`waiaas.Wallet.agent`).

        Example::

            handle = await wallet.agent(token)
        """
        handle = await self._runner.run(self.sync.agent, token)
        return AsyncAgentHandle(handle, self._runner)

    async def send(self, token: str, request: Request | Mapping[str, Any]) -> TransactionResult:
        """As :meth:`waiaas.Wallet.send`."""
        return await self._runner.run(self.sync.send, token, request)

    async def dry_run(
        self,
        request: Request | Mapping[str, Any],
        *,
        agent_id: str | None = None,
        token: str | None = None,
    ) -> Explanation:
        """As :meth:`waiaas.Wallet.dry_run`."""
        return await self._runner.run(self.sync.dry_run, request, agent_id=agent_id, token=token)

    async def get_transaction(self, tx_id: str) -> TransactionResult:
        """As :meth:`waiaas.Wallet.get_transaction`."""
        return await self._runner.run(self.sync.get_transaction, tx_id)

    async def list_transactions(
        self,
        *,
        agent_id: str | None = None,
        status: TxStatus | str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> TransactionList:
        """As :meth:`waiaas.Wallet.list_transactions`."""
        return await self._runner.run(
            self.sync.list_transactions,
            agent_id=agent_id,
            status=status,
            limit=limit,
            before=before,
        )

    async def cancel(self, tx_id: str, *, token: str | None = None) -> TransactionInfo:
        """As :meth:`waiaas.Wallet.cancel`."""
        return await self._runner.run(self.sync.cancel, tx_id, token=token)

    async def balance(self, agent_id: str, token: str | None = None) -> int:
        """As :meth:`waiaas.Wallet.balance`."""
        return await self._runner.run(self.sync.balance, agent_id, token)

    # ------------------------------------------------------------------ owner / operator

    async def create_agent(
        self,
        name: str,
        chain: str,
        network: str | None = None,
        *,
        owner_address: str | None = None,
    ) -> AgentInfo:
        """As :meth:`waiaas.Wallet.create_agent`."""
        return await self._runner.run(
            self.sync.create_agent, name, chain, network, owner_address=owner_address
        )

    async def get_agent(self, agent_id: str) -> AgentInfo:
        """As :meth:`waiaas.Wallet.get_agent`."""
        return await self._runner.run(self.sync.get_agent, agent_id)

    async def list_agents(self, *, status: AgentStatus | str | None = None) -> AgentList:
        """As :meth:`waiaas.Wallet.list_agents`."""
        return await self._runner.run(self.sync.list_agents, status=status)

    async def suspend_agent(
        self, agent_id: str, *, reason: str = "suspended by the owner"
    ) -> AgentInfo:
        """As :meth:`waiaas.Wallet.suspend_agent`."""
        return await self._runner.run(self.sync.suspend_agent, agent_id, reason=reason)

    async def resume_agent(self, agent_id: str) -> AgentInfo:
        """As :meth:`waiaas.Wallet.resume_agent`."""
        return await self._runner.run(self.sync.resume_agent, agent_id)

    async def terminate_agent(self, agent_id: str) -> AgentInfo:
        """As :meth:`waiaas.Wallet.terminate_agent`."""
        return await self._runner.run(self.sync.terminate_agent, agent_id)

    async def set_owner(self, agent_id: str, owner_address: str | None) -> AgentInfo:
        """As :meth:`waiaas.Wallet.set_owner`."""
        return await self._runner.run(self.sync.set_owner, agent_id, owner_address)

    async def issue_session(
        self,
        agent_id: str,
        *,
        ttl: int | None = None,
        constraints: SessionConstraints | Mapping[str, Any] | None = None,
    ) -> IssuedSession:
        """As :meth:`waiaas.Wallet.issue_session`."""
        return await self._runner.run(
            self.sync.issue_session, agent_id, ttl=ttl, constraints=constraints
        )

    async def renew_session(self, token: str) -> IssuedSession:
        """As :meth:`waiaas.Wallet.renew_session`."""
        return await self._runner.run(self.sync.renew_session, token)

    async def revoke_session(self, session_id: str) -> None:
        """As :meth:`waiaas.Wallet.revoke_session`."""
        await self._runner.run(self.sync.revoke_session, session_id)

    async def get_session(self, session_id: str) -> SessionInfo:
        """As :meth:`waiaas.Wallet.get_session`."""
        return await self._runner.run(self.sync.get_session, session_id)

    async def add_policy(
        self,
        type: str,
        rules: Mapping[str, Any] | str,
        *,
        agent_id: str | None = None,
        priority: int = 0,
        enabled: bool = True,
    ) -> PolicyInfo:
        """As :meth:`waiaas.Wallet.add_policy`."""
        return await self._runner.run(
            self.sync.add_policy,
            type,
            rules,
            agent_id=agent_id,
            priority=priority,
            enabled=enabled,
        )

    async def approval_message(
        self, tx_id: str, action: Literal["approve", "reject"] = "approve"
    ) -> str:
        """As :meth:`waiaas.Wallet.approval_message`."""
        return await self._runner.run(self.sync.approval_message, tx_id, action)

    async def approve(self, tx_id: str, signature: str) -> TransactionInfo:
        """As :meth:`waiaas.Wallet.approve`."""
        return await self._runner.run(self.sync.approve, tx_id, signature)

    async def reject(self, tx_id: str, signature: str) -> TransactionInfo:
        """As :meth:`waiaas.Wallet.reject`."""
        return await self._runner.run(self.sync.reject, tx_id, signature)

    async def process_due(self) -> DueReport:
        """As :meth:`waiaas.Wallet.process_due`."""
        return await self._runner.run(self.sync.process_due)

    async def kill_switch(
        self, reason: str = "kill switch activated by the owner"
    ) -> KillSwitchSummary:
        """As :meth:`waiaas.Wallet.kill_switch`."""
        return await self._runner.run(self.sync.kill_switch, reason)

    async def release_kill_switch(self, *, resume_agents: bool = False) -> KillSwitchRelease:
        """As :meth:`waiaas.Wallet.release_kill_switch`."""
        return await self._runner.run(self.sync.release_kill_switch, resume_agents=resume_agents)

    async def recover(self, *, resume_agents: bool = False) -> KillSwitchRelease:
        """Deprecated name of :meth:`release_kill_switch` (``DeprecationWarning``)."""
        import warnings

        warnings.warn(
            "AsyncWallet.recover() is deprecated: use AsyncWallet.release_kill_switch()",
            DeprecationWarning,
            stacklevel=2,
        )
        return await self.release_kill_switch(resume_agents=resume_agents)

    async def kill_switch_state(self) -> KillSwitchState:
        """As :meth:`waiaas.Wallet.kill_switch_state`."""
        return await self._runner.run(self.sync.kill_switch_state)

    async def audit(
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
        """As :meth:`waiaas.Wallet.audit`."""
        return await self._runner.run(
            self.sync.audit,
            agent_id=agent_id,
            since=since,
            until=until,
            event_types=event_types,
            severities=severities,
            tx_id=tx_id,
            limit=limit,
            cursor=cursor,
        )


class AsyncAgentHandle:
    """An :class:`~waiaas.AgentHandle` for asyncio; every method is a coroutine.

    Get one with ``await async_wallet.agent(token)``. ``repr()`` never shows the token.

    Attributes:
        sync: the underlying :class:`~waiaas.AgentHandle`.
        agent_id, session_id, chain, network, address: as on the handle.
    """

    def __init__(self, handle: AgentHandle, runner: _Runner) -> None:
        self.sync = handle
        self._runner = runner
        self.agent_id = handle.agent_id
        self.session_id = handle.session_id
        self.chain = handle.chain
        self.network = handle.network
        self.address = handle.address

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    def __reduce__(self) -> Any:
        raise TypeError("an AsyncAgentHandle holds a session token and cannot be pickled")

    async def asset(self, asset: str = NATIVE) -> AssetInfo:
        """As :meth:`waiaas.AgentHandle.asset`."""
        return await self._runner.run(self.sync.asset, asset)

    async def parse_units(self, amount: str | Decimal, asset: str = NATIVE) -> int:
        """As :meth:`waiaas.AgentHandle.parse_units`."""
        return await self._runner.run(self.sync.parse_units, amount, asset)

    async def format_units(self, amount: int, asset: str = NATIVE) -> str:
        """As :meth:`waiaas.AgentHandle.format_units`."""
        return await self._runner.run(self.sync.format_units, amount, asset)

    async def balance(self, asset: str = NATIVE) -> Balance:
        """As :meth:`waiaas.AgentHandle.balance`."""
        return await self._runner.run(self.sync.balance, asset)

    async def balances(self) -> list[Balance]:
        """As :meth:`waiaas.AgentHandle.balances`."""
        return await self._runner.run(self.sync.balances)

    async def get_transaction(self, tx_id: str) -> TransactionResult:
        """As :meth:`waiaas.AgentHandle.get_transaction`."""
        return await self._runner.run(self.sync.get_transaction, tx_id)

    async def transactions(
        self,
        *,
        status: TxStatus | str | None = None,
        limit: int = 20,
        before: str | None = None,
    ) -> list[TransactionInfo]:
        """As :meth:`waiaas.AgentHandle.transactions`."""
        return await self._runner.run(
            self.sync.transactions, status=status, limit=limit, before=before
        )

    async def send(self, request: Request | Mapping[str, Any]) -> TransactionResult:
        """As :meth:`waiaas.AgentHandle.send`."""
        return await self._runner.run(self.sync.send, request)

    async def transfer_request(
        self, to: str, amount: str | Decimal, asset: str = NATIVE, *, memo: str | None = None
    ) -> Transfer | TokenTransfer:
        """As :meth:`waiaas.AgentHandle.transfer_request`."""
        return await self._runner.run(self.sync.transfer_request, to, amount, asset, memo=memo)

    async def transfer(
        self, to: str, amount: str | Decimal, asset: str = NATIVE, *, memo: str | None = None
    ) -> TransactionResult:
        """As :meth:`waiaas.AgentHandle.transfer`."""
        return await self._runner.run(self.sync.transfer, to, amount, asset, memo=memo)

    async def dry_run(self, request: Request | Mapping[str, Any]) -> Explanation:
        """As :meth:`waiaas.AgentHandle.dry_run`."""
        return await self._runner.run(self.sync.dry_run, request)

    async def cancel(self, tx_id: str) -> TransactionInfo:
        """As :meth:`waiaas.AgentHandle.cancel`."""
        return await self._runner.run(self.sync.cancel, tx_id)

    async def limits(self) -> AgentLimits:
        """As :meth:`waiaas.AgentHandle.limits`."""
        return await self._runner.run(self.sync.limits)

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | str | None = None
    ) -> dict[str, Any]:
        """Run one of :mod:`waiaas.tools`' tools as this agent (see ``Toolkit.call``)."""
        return await self._runner.run(_call_tool, self.sync, name, arguments)


def _call_tool(
    handle: AgentHandle, name: str, arguments: Mapping[str, Any] | str | None
) -> dict[str, Any]:
    from waiaas.tools import Toolkit  # imported in the pool, never on the loop's thread

    return Toolkit(handle).call(name, arguments)
