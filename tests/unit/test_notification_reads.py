"""Building a notification reads only what the committed unit of work did not pass along:
the agent's name once per agent (it never changes), the transaction row not at all when the
event carries it (``ROW_KEY``). The event is the same either way."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from waiaas.notify.testing import RecordingNotifier
from waiaas.pipeline.notifications import ROW_KEY, PipelineNotifier
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import AuditEvent, Transfer

DEST = "So11111111111111111111111111111111111111112"


class _CountingDb:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.reads = 0

    def read(self) -> AbstractContextManager[Any]:
        self.reads += 1
        cm: AbstractContextManager[Any] = self.db.read()
        return cm

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_a_passed_row_and_a_known_agent_read_nothing(tmp_path: Path) -> None:
    clock = FrozenClock()
    with local_wallet(tmp_path, clock=clock) as wallet:
        agent = wallet.create_agent("notified", "solana")
        wallet.network_adapter("solana", agent.network).fund(agent.public_key, 10**10)
        token = wallet.issue_session(agent.id).token
        result = wallet.send(token, Transfer(to=DEST, amount=10**6))
        db = _CountingDb(wallet._db)
        recorder = RecordingNotifier()
        notifier = PipelineNotifier(db, recorder, clock)  # type: ignore[arg-type]
        with wallet._db.read() as uow:
            row = uow.transactions.get(result.id)
        raw = {"event": AuditEvent.TX_CONFIRMED, "tx_id": result.id, "agent_id": agent.id}

        notifier.notify(raw)  # nothing known yet: one read for the agent and the row
        assert db.reads == 1
        notifier.notify({**raw, ROW_KEY: row})  # agent known, row passed: no read
        assert db.reads == 1
        notifier.notify(raw)  # agent known, row not passed: one read for the row
        assert db.reads == 2

        first, passed, read = recorder.events
        assert first == passed == read
        assert (passed.agent_name, passed.chain, passed.tx_id) == ("notified", "solana", result.id)
        assert passed.amount == 10**6 and passed.to_address == DEST
        assert ROW_KEY not in passed.extra
