"""How many SQL statements a warm presigned INSTANT ``wallet.send`` runs, counted by SQLite
(a trace callback on every connection of the pool and on ``Database.fetch_one``'s reader
connections, BEGIN / COMMIT included), as docs/pipeline.md lists them: 15 statements and 2
commits on both chain families (EVM's nonce check rides on admission's existing statement,
and a pipeline that knows the agent has no in-flight row reads nothing for it before the
lock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from tests.e2e.conftest import TIER_AMOUNTS, events_of, new_agent, recipient
from waiaas.db import database as db_database
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import Transfer
from waiaas.wallet import Wallet

pytestmark = pytest.mark.sqlite_only  # SQLite's trace callback counts the statements

STATEMENTS = 15
COMMITS = 2


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    with local_wallet(tmp_path, clock=FrozenClock()) as w:
        yield w


def _traced(wallet: Wallet, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the wallet's connections run from now on (consecutive repeats, one
    per trigger a statement fires, count once: the caller folds them)."""
    traced: list[str] = []
    engine = wallet._db.engine
    engine.dispose()  # every pooled connection from now on is a traced one

    def trace(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(traced.append)

    sa_event.listen(engine, "connect", trace)
    for reader in wallet._db._readers:
        reader.set_trace_callback(traced.append)
    plain = db_database.connect_reader

    def connect_reader(path: Any) -> Any:
        conn = plain(path)
        conn.set_trace_callback(traced.append)
        return conn

    monkeypatch.setattr(db_database, "connect_reader", connect_reader)
    return traced


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_a_warm_presigned_send_runs_the_documented_statements(
    wallet: Wallet, monkeypatch: pytest.MonkeyPatch, chain: str
) -> None:
    agent = new_agent(wallet, chain)
    token = wallet.issue_session(agent.id).token
    amount = TIER_AMOUNTS[chain]["INSTANT"]
    dests = [recipient(chain) for _ in range(6)]
    for dest in dests[:3]:  # warm: caches, the remembered token, the agent known clear
        wallet.send(token, Transfer(to=dest, amount=amount))
    traced = _traced(wallet, monkeypatch)
    counts = []
    for dest in dests[3:]:
        traced.clear()
        result = wallet.send(token, Transfer(to=dest, amount=amount))
        folded = [s for i, s in enumerate(traced) if i == 0 or traced[i - 1] != s]
        commits = sum(1 for s in folded if s.strip().upper().startswith("COMMIT"))
        counts.append((len(folded), commits))
        assert result.status == "CONFIRMED", result.error
        assert "TX_EXECUTING" not in events_of(wallet, result.id)  # presigned, no claim
    assert counts == [(STATEMENTS, COMMITS)] * 3, counts
