"""A request identical to one that failed without landing is not a duplicate: it is signed
(the same bytes, when the blockhash has not moved) and confirmed, with no waiting inside
the write lock and no "byte-identical" failure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import TIER_AMOUNTS, FlakyAdapter, new_agent, recipient
from waiaas import Transfer, TxStatus
from waiaas.chains.base import SignedTx
from waiaas.chains.evm import EvmAdapter
from waiaas.chains.solana import SolanaAdapter
from waiaas.errors import PermanentChainError
from waiaas.testing import FrozenClock, local_wallet


@dataclass
class RefusesFirst(FlakyAdapter):
    """The node refuses the first submission for good (nothing lands)."""

    refuse: int = 1

    def submit(self, signed: SignedTx) -> str:
        self.submitted.append(signed.tx_hash)
        if self.refuse > 0:
            self.refuse -= 1
            raise PermanentChainError("node refused the transaction (injected)", chain="solana")
        return str(self.inner.submit(signed))


def test_identical_request_after_a_failure_that_never_landed_executes(tmp_path: Path) -> None:
    """The first request fails at submission (never landed); the same request sent again
    at once (same blockhash, so the same bytes) is CONFIRMED; the recipient is paid once and
    the failed row keeps its old hash in its metadata."""
    flaky = RefusesFirst(SolanaAdapter.local())
    sleeps: list[float] = []
    with local_wallet(tmp_path, chains=[flaky, EvmAdapter.local()], clock=FrozenClock()) as w:
        w._pipeline._sleep = sleeps.append  # type: ignore[method-assign]
        agent = new_agent(w, "solana")
        token = w.issue_session(agent.id).token
        dest = recipient("solana")
        flaky.fund(dest, 1_000_000_000)
        amount = TIER_AMOUNTS["solana"]["INSTANT"]
        first = w.send(token, Transfer(to=dest, amount=amount))
        assert first.status == TxStatus.FAILED
        second = w.send(token, Transfer(to=dest, amount=amount))
        assert second.status == TxStatus.CONFIRMED, second.error
        assert flaky.submitted == [first.tx_hash, second.tx_hash]
        assert second.tx_hash == first.tx_hash  # the very same bytes: not a duplicate
        assert sleeps == []  # nothing waited for a new blockhash
        old = w.get_transaction(first.id)
        assert old.status == TxStatus.FAILED and old.tx_hash is None
        meta = json.loads(w._pipeline.get_row(first.id).metadata_json or "{}")
        assert meta["released_hash"] == second.tx_hash
        assert flaky.get_balance(dest) == 1_000_000_000 + amount
