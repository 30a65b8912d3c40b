"""What an :class:`~waiaas.agent.AgentHandle` needs from the wallet besides its public methods.

Internal: the factory builds one :class:`AgentAccess` per wallet and ``Wallet.agent`` hands
it to every handle it makes, so a handle never reaches into the wallet's collaborators. It
implements the handle's port, :class:`waiaas.agent.AgentPort`:

* :meth:`~AgentAccess.verify`: the session manager's remembered verification (the session
  and agent rows re-read in one statement; a refusal is recorded as ``AUTH_FAILED``);
* :meth:`~AgentAccess.applicable_policies`: the enabled policies that apply to the agent
  (MAC-checked, as ``send`` loads them);
* :meth:`~AgentAccess.own_transaction`: one of the agent's transactions, as the agent may see
  it;
* :meth:`~AgentAccess.judge`: a request evaluated the way ``send`` would, with the policies
  that apply (for ``AgentHandle.limits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from waiaas.errors import NotFoundError

if TYPE_CHECKING:
    from waiaas.chains.base import ChainAdapter, FeeQuote
    from waiaas.clock import Clock
    from waiaas.config import WalletConfig
    from waiaas.db import Database
    from waiaas.pipeline.gate import PolicyGate
    from waiaas.policy import Decision, PolicySpec
    from waiaas.services.queries import TransactionResult
    from waiaas.sessions import SessionManager, VerifiedSession
    from waiaas.types import Request

__all__ = ["AgentAccess", "Judgement"]


@dataclass(frozen=True, slots=True)
class Judgement:
    """A request judged for an agent the way ``send`` would, and what it was judged by.

    Attributes:
        decision: the evaluator's decision.
        policies: the enabled policies that apply to the agent.
        has_owner: whether the agent has an owner address (who could approve).
        approval_stands_in: whether, without an owner, a rule asking for approval waits
            (``no_owner_approval="delay"``) instead of refusing.
    """

    decision: Decision
    policies: tuple[PolicySpec, ...]
    has_owner: bool
    approval_stands_in: bool


class AgentAccess:
    """The wallet side of :class:`waiaas.agent.AgentPort` (internal; built by the factory).

    Args:
        db: the wallet database.
        sessions: the session manager (its verify remembers verified tokens).
        gate: the policy gate ``send`` judges with.
        clock: the wallet's clock.
        config: the wallet configuration.
    """

    def __init__(
        self,
        db: Database,
        sessions: SessionManager,
        gate: PolicyGate,
        clock: Clock,
        config: WalletConfig,
    ) -> None:
        self._db = db
        self._sessions = sessions
        self._gate = gate
        self._clock = clock
        self._config = config

    def __repr__(self) -> str:
        return f"AgentAccess({self._db!r})"

    def verify(self, token: str) -> VerifiedSession:
        """The session ``token`` opens, now (see ``SessionManager.verify``: no unit of work
        is opened for a remembered token; a refusal is recorded, then raised)."""
        return self._sessions.verify(token, now=self._clock.now())

    def applicable_policies(self, agent_id: str) -> list[PolicySpec]:
        """The enabled policies that apply to ``agent_id`` (its own and global ones, scoped
        to its chain and network).

        Raises:
            NotFoundError: no such agent.
            TamperDetectedError: a policy, or the set of them, fails its MAC.
        """
        from waiaas.pipeline.gate import agent_context
        from waiaas.policy import applicable

        with self._db.read() as uow:
            row = uow.agents.get(agent_id)
            if row is None:
                raise NotFoundError("agent", agent_id)
            return applicable(self._gate.policies(uow, agent_id), agent_context(row))

    def own_transaction(self, agent_id: str, tx_id: str) -> TransactionResult:
        """Transaction ``tx_id`` as agent ``agent_id`` may see it (redacted decision and
        denial text).

        Raises:
            NotFoundError: no such transaction, or another agent's (the same answer).
        """
        from waiaas.services.queries import agent_result

        with self._db.read() as uow:
            row = uow.transactions.get(tx_id)
        if row is None or row.agent_id != agent_id:
            raise NotFoundError("transaction", tx_id)
        return agent_result(row)

    def judge(
        self,
        agent_id: str,
        request: Request,
        *,
        adapter: ChainAdapter,
        fee: FeeQuote | None,
    ) -> Judgement:
        """``request`` evaluated for ``agent_id`` now, as ``send`` would (same policies,
        usage windows, prices and network fee); nothing is written.

        Raises:
            NotFoundError: no such agent.
            TamperDetectedError: a policy or the agent's owner binding fails its MAC.
        """
        from waiaas.pipeline.gate import agent_context
        from waiaas.policy import applicable

        now = self._clock.now()
        with self._db.read() as uow:
            row = uow.agents.get(agent_id)
            if row is None:
                raise NotFoundError("agent", agent_id)
            decision = self._gate.evaluate(uow, row, request, now, adapter=adapter, fee=fee)
            specs = applicable(self._gate.policies(uow, agent_id), agent_context(row))
        return Judgement(
            decision=decision,
            policies=tuple(specs),
            has_owner=row.owner_address is not None,
            approval_stands_in=self._config.no_owner_approval == "delay",
        )
