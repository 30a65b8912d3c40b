"""Compare a simulation's balance changes with the decoded effects: what is not explained.

The second lock of issue 9: a transaction whose simulated outflow exceeds what its effects
say (a whitelisted program that moves the agent's SOL through a CPI, an ALT close, a token
contract that takes more than ``transfer`` says) must be refused.

What explains an outflow (every amount an upper bound the policies already judged):

* native: every :class:`NativeTransfer` (whoever the source: on Solana the simulation counts
  lamports leaving accounts the agent controls) and every :class:`AccountFunding`;
* a token: every :class:`TokenTransfer` of that token.

Nothing else explains anything: approvals move nothing yet, an :class:`AccountClose` or a
contract / program call has no amount the policies saw. Inflows are never a problem.

Example::

    problems = unexplained_outflows(effects, adapter.simulate_balance_changes(unsigned))
    if problems:
        refuse(problems)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from waiaas.plan.effects import AccountFunding, Effect, NativeTransfer, TokenTransfer

__all__ = ["NATIVE", "Unexplained", "unexplained_outflows"]

NATIVE = "native"
"""The ``asset`` of native-coin findings."""


class _Changes(Protocol):
    @property
    def native(self) -> int: ...

    @property
    def tokens(self) -> Mapping[str, int]: ...


@dataclass(frozen=True)
class Unexplained:
    """An outflow the effects do not explain.

    Attributes:
        asset: :data:`NATIVE` or the token (mint / contract).
        outflow: base units the simulation says leave the sender.
        explained: base units the effects account for.
    """

    asset: str
    outflow: int
    explained: int

    def __str__(self) -> str:
        return (
            f"the simulation moves {self.outflow} base units of {self.asset} out of the sender; "
            f"the decoded effects explain {self.explained}"
        )


def unexplained_outflows(effects: Iterable[Effect], changes: _Changes) -> list[Unexplained]:
    """Every asset whose simulated outflow exceeds what ``effects`` explain (empty = fine).

    Args:
        effects: the decoded effects of the transaction (:func:`~waiaas.plan.decode_plan`).
        changes: a :class:`~waiaas.chains.base.BalanceChanges` (fees excluded from
            ``native``, as the shipped adapters report it).

    Example::

        unexplained_outflows([NativeTransfer(me, bob, 5)], BalanceChanges(-7, {}))
        # [Unexplained(asset="native", outflow=7, explained=5)]
    """
    native = 0
    tokens: dict[str, int] = {}
    for effect in effects:
        if isinstance(effect, NativeTransfer | AccountFunding):
            native += effect.amount
        elif isinstance(effect, TokenTransfer) and effect.token is not None:
            key = effect.token.lower() if effect.token.startswith("0x") else effect.token
            tokens[key] = tokens.get(key, 0) + effect.amount
    out: list[Unexplained] = []
    if -changes.native > native:
        out.append(Unexplained(NATIVE, -changes.native, native))
    for token, delta in sorted(changes.tokens.items()):
        key = token.lower() if token.startswith("0x") else token
        explained = tokens.get(key, 0)
        if -delta > explained:
            out.append(Unexplained(token, -delta, explained))
    return out
