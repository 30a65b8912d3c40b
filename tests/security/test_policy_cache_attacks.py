"""A thief with write access to the database, while a wallet that keeps its verified
policies between sends is open: nothing they write is used.

The wallet keeps an agent's policies under the values its send read of ``wallet_state``
(the policies' generation and the policy-set MACs). Edits with the triggers in place move
the generation: the next send reads the rows again and refuses them as without the cache.
Edits after dropping the triggers leave the kept (verified) policies in force; the next
change made through waiaas moves the generation and the edit is refused. Moving the counter
back to a value an older state had matches no kept entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SOL, new_agent, recipient
from tests.support.rawdb import raw_connect
from waiaas import Transfer, TxStatus, Wallet
from waiaas.chains.solana import SolanaAdapter
from waiaas.db import generations
from waiaas.errors import PolicyDeniedError, TamperDetectedError
from waiaas.testing import TEST_PASSWORD, fast_config


def _open(path: Path, adapter: SolanaAdapter) -> Wallet:
    return Wallet.open(
        path, password=TEST_PASSWORD, chains=[adapter], config=fast_config(), background=False
    )


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[Wallet, Wallet, str, str, str]]:
    """Two open wallets on one file; an agent allowed to pay ``friend`` only, whose policies
    the first wallet has verified and kept (two sends); its token and the policy id."""
    adapter = SolanaAdapter.local()
    path = tmp_path / "wallet.db"
    first = _open(path, adapter)
    second = _open(path, adapter)
    try:
        agent = new_agent(first, "solana", funds=10 * SOL)
        friend = recipient("solana")
        policy = first.add_policy("ALLOWED_ADDRESSES", {"addresses": [friend]}, agent_id=agent.id)
        token = first.issue_session(agent.id, ttl=86_400).token
        for _ in range(2):
            assert _send(first, token, friend).status == TxStatus.CONFIRMED
        yield first, second, token, friend, policy.id
    finally:
        second.close()
        first.close()
        adapter.close()


def _send(wallet: Wallet, token: str, to: str) -> Any:
    return wallet.send(token, Transfer(to=to, amount=SOL // 1000))


def _thief(wallet: Wallet, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with raw_connect(wallet) as conn:
        for sql, params in statements:
            conn.execute(sql, params)


def _drop_triggers(wallet: Wallet) -> None:
    with raw_connect(wallet) as conn:
        for stmt in generations.drop_sql(conn.dialect):
            if "FUNCTION" not in stmt:
                conn.execute(stmt)


def _loosened(wallet: Wallet, policy_id: str, thief: str) -> tuple[str, tuple[Any, ...]]:
    with raw_connect(wallet) as conn:
        row = conn.one("SELECT rules FROM policies WHERE id = ?", (policy_id,))
    assert row is not None
    rules = json.loads(row[0])
    rules["addresses"].append(thief)
    return "UPDATE policies SET rules = ? WHERE id = ?", (json.dumps(rules), policy_id)


def _admitted(wallet: Wallet) -> int:
    return len(wallet.list_transactions(limit=1000))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE policies SET enabled = 0 WHERE id = ?",
        "DELETE FROM policies WHERE id = ?",
        "loosen",
    ],
    ids=["disabled", "deleted", "loosened"],
)
def test_a_policy_edited_in_the_file_is_refused_although_kept(
    guarded: tuple[Wallet, Wallet, str, str, str], statement: str
) -> None:
    """The triggers move the generation: the next send rereads and refuses the rows."""
    first, _second, token, _friend, policy_id = guarded
    thief = recipient("solana")
    edit = (
        _loosened(first, policy_id, thief) if statement == "loosen" else (statement, (policy_id,))
    )
    _thief(first, edit)
    before = _admitted(first)
    with pytest.raises(TamperDetectedError) as caught:
        _send(first, token, thief)
    assert caught.value.entity == "policy"
    assert _admitted(first) == before


def test_with_the_triggers_dropped_an_edit_gains_nothing(
    guarded: tuple[Wallet, Wallet, str, str, str],
) -> None:
    """The kept policies were verified: the loosened row is not used. The next change made
    through waiaas (here by another process) moves the generation, and the edit is refused."""
    first, second, token, friend, policy_id = guarded
    thief = recipient("solana")
    _drop_triggers(first)
    _thief(first, _loosened(first, policy_id, thief))
    with pytest.raises(PolicyDeniedError):
        _send(first, token, thief)
    _thief(first, ("DELETE FROM policies WHERE id = ?", (policy_id,)))
    with pytest.raises(PolicyDeniedError):
        _send(first, token, thief)
    second.add_policy("RATE_LIMIT", {"max_requests": 100, "window_seconds": 60})
    with pytest.raises(TamperDetectedError):
        _send(first, token, friend)


def test_moving_the_counter_back_matches_no_kept_entry(
    guarded: tuple[Wallet, Wallet, str, str, str],
) -> None:
    """Only the newest verified entry of an agent is kept: a generation copied back from an
    older state (when a looser policy was in force) does not bring that policy back."""
    first, second, token, friend, policy_id = guarded
    other = recipient("solana")
    second.policies.update(policy_id, rules={"addresses": [friend, other]})
    assert _send(first, token, other).status == TxStatus.CONFIRMED  # kept: the loose set
    with raw_connect(first) as conn:
        loose = conn.one("SELECT value FROM wallet_state WHERE key = ?", (generations.POLICIES,))
    assert loose is not None
    second.policies.update(policy_id, rules={"addresses": [friend]})
    assert _send(first, token, friend).status == TxStatus.CONFIRMED  # kept: the tight set
    _thief(
        first,
        ("UPDATE wallet_state SET value = ? WHERE key = ?", (loose[0], generations.POLICIES)),
    )
    with pytest.raises(PolicyDeniedError):
        _send(first, token, other)


def test_a_deleted_counter_turns_the_cache_off(
    guarded: tuple[Wallet, Wallet, str, str, str],
) -> None:
    """Without the counter's row nothing is kept or reused: every send reads and checks."""
    first, _second, token, _friend, policy_id = guarded
    thief = recipient("solana")
    _drop_triggers(first)
    _thief(first, ("DELETE FROM wallet_state WHERE key = ?", (generations.POLICIES,)))
    _thief(first, _loosened(first, policy_id, thief))
    with pytest.raises(TamperDetectedError):
        _send(first, token, thief)
