"""What the pipeline needs from its collaborators, as small ``typing.Protocol``s.

:class:`~waiaas.pipeline.engine.Pipeline` talks to the session store and the policy gate
only through these ports; :class:`waiaas.sessions.SessionManager` and
:class:`waiaas.pipeline.gate.PolicyGate` satisfy them structurally (checked by
``mypy --strict`` where the wallet builds its pipeline). The other two ports, the keystore
(:class:`~waiaas.pipeline.base.KeySource`) and the notifier
(:class:`~waiaas.pipeline.base.EventSink`), are declared next to the pipeline; the chain
port is :class:`waiaas.chains.base.ChainAdapter`.

Every method that takes a ``uow`` runs inside the caller's unit of work and commits
nothing; the others (:meth:`SessionPort.record_failure`, :meth:`SessionPort.sweep_expired`)
write in their own.

Internal to the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from waiaas.chains.base import ChainAdapter, FeeQuote
    from waiaas.db.tables import AgentRow
    from waiaas.db.uow import UnitOfWork
    from waiaas.errors import AgentNotActiveError, AuthError
    from waiaas.plan import Effect
    from waiaas.policy import AgentContext, Decision, PolicySpec
    from waiaas.policy.explain import Explanation
    from waiaas.sessions import SessionUsage, VerifiedSession
    from waiaas.types import Request

__all__ = ["GatePort", "SessionPort"]


class SessionPort(Protocol):
    """The session store as the pipeline uses it (:class:`waiaas.sessions.SessionManager`)."""

    def verify_in(self, uow: UnitOfWork, token: str, now: int) -> VerifiedSession:
        """The session of ``token`` (nothing written).

        Raises:
            AuthError, AgentNotActiveError: the token is refused.
        """
        ...

    def recall_in(
        self, uow: UnitOfWork, token: str, now: int, *, state: Iterable[str] = ()
    ) -> VerifiedSession | None:
        """The session of a token verified before while it is still live, with the
        ``wallet_state`` keys ``state`` prefetched in the same read; ``None`` otherwise
        (:meth:`verify_in` then checks the token in full). Never refuses."""
        ...

    def remembered_agent(self, token: object, now: int) -> tuple[str, str, str] | None:
        """``(agent id, chain, network)`` of a token verified before (no read, nothing
        established: admission verifies it again under its lock)."""
        ...

    def record_failure(
        self, error: AuthError | AgentNotActiveError, *, now: int | None = None
    ) -> None:
        """Commit an ``AUTH_FAILED`` audit row for a refused token, in its own transaction."""
        ...

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
        """Check ``request`` against the session's constraints and charge it to the session.

        Raises:
            ConstraintViolationError: a constraint refuses it (nothing charged).
        """
        ...

    def release(
        self, uow: UnitOfWork, session_id: str, asset: str, amount: int
    ) -> SessionUsage | None:
        """Give back ``amount`` of ``asset`` charged by a request that did not go through."""
        ...

    def revoke_all_for_agent(
        self,
        uow: UnitOfWork,
        agent_id: str,
        now: int,
        reason: str,
        *,
        actor: str = "system",
    ) -> int:
        """Revoke every live session of an agent; how many were revoked."""
        ...

    def sweep_expired(self, now: int | None = None) -> int:
        """Audit the sessions that expired unreported; how many were reported."""
        ...


class GatePort(Protocol):
    """The policy gate as the pipeline uses it (:class:`waiaas.pipeline.gate.PolicyGate`)."""

    def policies(self, uow: UnitOfWork, agent_id: str) -> list[PolicySpec]:
        """The enabled policies that apply to ``agent_id``.

        Raises:
            TamperDetectedError: a policy, or the set of them, fails its MAC.
        """
        ...

    def token_decimals(
        self,
        agent: AgentContext,
        tokens: Iterable[str],
        specs: list[PolicySpec],
        adapter: ChainAdapter,
    ) -> dict[str, int]:
        """Decimals of ``tokens`` from the chain, else from ALLOWED_TOKENS (unknown ones
        left out)."""
        ...

    def evaluate(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        req: Request,
        now: int,
        *,
        exclude_tx_id: str | None = None,
        adapter: ChainAdapter | None = None,
        effects: Sequence[Effect] | None = None,
        calldata: bytes = b"",
        fee: FeeQuote | None = None,
    ) -> Decision:
        """The policy decision on ``req`` for ``agent`` at ``now``."""
        ...

    def explain(
        self,
        uow: UnitOfWork,
        agent: AgentRow,
        req: Request,
        now: int,
        *,
        adapter: ChainAdapter | None = None,
        effects: Sequence[Effect] | None = None,
        calldata: bytes = b"",
        fee: FeeQuote | None = None,
    ) -> Explanation:
        """:meth:`evaluate` with explanations (the dry runs)."""
        ...

    def refusal_auto_stop_reason(self, uow: UnitOfWork, agent: AgentRow, now: int) -> str | None:
        """After a refusal: the ``max_denials`` AUTO_STOP trigger it crosses, if any."""
        ...

    def auto_stop_reason(self, uow: UnitOfWork, agent: AgentRow, now: int) -> str | None:
        """After an on-chain failure: the ``consecutive_failures`` trigger that fired, if
        any."""
        ...
