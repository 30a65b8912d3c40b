"""Fixtures for the policy engine tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from policy_helpers import EVM_A, NOW, SOL_OWNER, Decide, usage_for

from waiaas.policy import AgentContext, Decision, PolicySpec, UsageRow, evaluate


@pytest.fixture
def sol_agent() -> AgentContext:
    """An ACTIVE Solana devnet agent with an owner."""
    return AgentContext(id="agent-sol", chain="solana", network="devnet", owner_address=SOL_OWNER)


@pytest.fixture
def evm_agent() -> AgentContext:
    """An ACTIVE EVM agent with an owner."""
    return AgentContext(id="agent-evm", chain="evm", network="sepolia", owner_address=EVM_A)


@pytest.fixture
def decide() -> Decide:
    """evaluate() with usage built from ``rows`` for the given policies."""

    def run(
        request: Any,
        agent: AgentContext,
        specs: list[PolicySpec],
        rows: Iterable[UsageRow] = (),
        now: int = NOW,
        **kwargs: Any,
    ) -> Decision:
        return evaluate(request, agent, specs, usage_for(specs, rows, now), now, **kwargs)

    return run
