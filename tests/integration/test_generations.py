"""Policies and notification channels kept per process, invalidated exactly across processes.

Two :class:`~waiaas.Wallet` objects on one database stand for two processes: what the second
changes (policies added, tightened, disabled; channels added, disabled) is what the first's
next send applies, although the first keeps its policies and channels between sends and,
warm, reads neither. The generation counters in ``wallet_state`` move on every change, by
trigger and by the services (so also without the triggers), and not on delivery outcomes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.e2e.conftest import SOL, new_agent, recipient
from tests.support.notify_server import NotifyServer
from tests.support.rawdb import raw_connect
from waiaas import Transfer, TxStatus, Wallet
from waiaas.chains.solana import SolanaAdapter
from waiaas.db import generations
from waiaas.errors import PolicyDeniedError
from waiaas.testing import TEST_PASSWORD, fast_config


def _open(path: Path, adapter: SolanaAdapter) -> Wallet:
    return Wallet.open(
        path, password=TEST_PASSWORD, chains=[adapter], config=fast_config(), background=False
    )


@pytest.fixture
def adapter() -> Iterator[SolanaAdapter]:
    chain = SolanaAdapter.local()
    yield chain
    chain.close()


@pytest.fixture
def pair(tmp_path: Path, adapter: SolanaAdapter) -> Iterator[tuple[Wallet, Wallet]]:
    """Two wallets on one database and one chain (two processes, one file)."""
    path = tmp_path / "wallet.db"
    first = _open(path, adapter)
    second = _open(path, adapter)
    try:
        yield first, second
    finally:
        second.close()
        first.close()


class _Reads:
    """The statements a wallet's engine runs that name ``table``."""

    def __init__(self, wallet: Wallet, table: str) -> None:
        self.engine = wallet._db.engine
        self.table = table
        self.seen: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._hook)

    def _hook(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if f"FROM {self.table}" in statement:
            self.seen.append(statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._hook)


def _generation(wallet: Wallet, key: str) -> int | None:
    with raw_connect(wallet) as conn:
        row = conn.one("SELECT value FROM wallet_state WHERE key = ?", (key,))
    return None if row is None else int(json.loads(row[0]))


def _drop_triggers(wallet: Wallet) -> None:
    """What a thief with write access can do: drop the counters' triggers."""
    with raw_connect(wallet) as conn:
        for stmt in generations.drop_sql(conn.dialect):
            if "FUNCTION" not in stmt:
                conn.execute(stmt)


def _agent(wallet: Wallet) -> tuple[str, str]:
    agent = new_agent(wallet, "solana", funds=10 * SOL)
    return agent.id, wallet.issue_session(agent.id, ttl=86_400).token


def _send(wallet: Wallet, token: str, to: str) -> Any:
    return wallet.send(token, Transfer(to=to, amount=SOL // 1000))


def test_a_warm_send_reads_no_policy_row(pair: tuple[Wallet, Wallet]) -> None:
    """The policies verified by one send are the next send's, without a read."""
    first, _second = pair
    agent_id, token = _agent(first)
    friend = recipient("solana")
    first.add_policy("ALLOWED_ADDRESSES", {"addresses": [friend]}, agent_id=agent_id)
    assert _send(first, token, friend).status == TxStatus.CONFIRMED
    reads = _Reads(first, "policies")
    try:
        assert _send(first, token, friend).status == TxStatus.CONFIRMED
        assert reads.seen == []
        with pytest.raises(PolicyDeniedError):  # the kept policies still judge
            _send(first, token, recipient("solana"))
        assert reads.seen == []
    finally:
        reads.close()


def test_a_policy_added_by_another_process_applies_to_the_next_send(
    pair: tuple[Wallet, Wallet],
) -> None:
    first, second = pair
    agent_id, token = _agent(first)
    friend, stranger = recipient("solana"), recipient("solana")
    assert _send(first, token, stranger).status == TxStatus.CONFIRMED  # warm, no policy
    second.add_policy("ALLOWED_ADDRESSES", {"addresses": [friend]}, agent_id=agent_id)
    with pytest.raises(PolicyDeniedError):
        _send(first, token, stranger)
    assert _send(first, token, friend).status == TxStatus.CONFIRMED


def test_a_global_policy_added_by_another_process_applies(pair: tuple[Wallet, Wallet]) -> None:
    first, second = pair
    _agent_id, token = _agent(first)
    friend, stranger = recipient("solana"), recipient("solana")
    assert _send(first, token, stranger).status == TxStatus.CONFIRMED
    second.add_policy("ALLOWED_ADDRESSES", {"addresses": [friend]})
    with pytest.raises(PolicyDeniedError):
        _send(first, token, stranger)


def test_a_policy_tightened_then_disabled_by_another_process(pair: tuple[Wallet, Wallet]) -> None:
    """Rules edited in place (the policy set's MAC does not change) and a policy disabled:
    each applies to the first wallet's next send."""
    first, second = pair
    agent_id, token = _agent(first)
    friend, other = recipient("solana"), recipient("solana")
    policy = first.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [friend, other]}, agent_id=agent_id
    )
    assert _send(first, token, other).status == TxStatus.CONFIRMED
    assert _send(first, token, other).status == TxStatus.CONFIRMED  # warm
    second.policies.update(policy.id, rules={"addresses": [friend]})
    with pytest.raises(PolicyDeniedError):
        _send(first, token, other)
    second.policies.disable(policy.id)
    assert _send(first, token, other).status == TxStatus.CONFIRMED
    second.policies.enable(policy.id)
    with pytest.raises(PolicyDeniedError):
        _send(first, token, other)


def test_a_priority_change_moves_the_generation(pair: tuple[Wallet, Wallet]) -> None:
    first, second = pair
    agent_id, _token = _agent(first)
    policy = first.add_policy("RATE_LIMIT", {"max_requests": 5, "window_seconds": 60})
    before = _generation(first, generations.POLICIES)
    second.policies.update(policy.id, priority=7)
    after = _generation(first, generations.POLICIES)
    assert before is not None and after is not None and after > before
    assert agent_id


def test_without_triggers_a_change_through_waiaas_still_invalidates(
    pair: tuple[Wallet, Wallet],
) -> None:
    """The services bump the counter themselves: dropped triggers lose nothing waiaas
    changes (a policy tightened in another process is applied)."""
    first, second = pair
    agent_id, token = _agent(first)
    friend, other = recipient("solana"), recipient("solana")
    policy = first.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [friend, other]}, agent_id=agent_id
    )
    assert _send(first, token, other).status == TxStatus.CONFIRMED
    _drop_triggers(first)
    before = _generation(first, generations.POLICIES)
    second.policies.update(policy.id, rules={"addresses": [friend]})
    assert _generation(first, generations.POLICIES) == (before or 0) + 1  # the service's bump
    with pytest.raises(PolicyDeniedError):
        _send(first, token, other)
    second.policies.remove(policy.id)
    assert _send(first, token, other).status == TxStatus.CONFIRMED


# --------------------------------------------------------------------------- channels


@pytest.fixture
def server() -> Iterator[NotifyServer]:
    with NotifyServer() as srv:
        yield srv


def _flush(wallet: Wallet) -> None:
    assert wallet._pipeline.notifier.target.flush(timeout=30)  # type: ignore[union-attr]


def _topics(server: NotifyServer) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in server.requests("ntfy")]


def test_channels_changed_by_another_process_are_honoured(
    pair: tuple[Wallet, Wallet], server: NotifyServer
) -> None:
    """A channel added in another process receives the first wallet's next events; one
    disabled there receives none of them; a warm event reads no channel row."""
    first, second = pair
    _agent_id, token = _agent(first)
    to = recipient("solana")
    first.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "one"}, priority=5)
    assert _send(first, token, to).status == TxStatus.CONFIRMED
    _flush(first)
    assert _topics(server) == ["one"]
    reads = _Reads(first, "notification_channels")
    try:
        _send(first, token, to)
        _flush(first)
        assert reads.seen == []  # delivered on the kept channels
        assert _topics(server) == ["one", "one"]
        added = second.channels.add(
            "NTFY", {"server_url": server.ntfy_base, "topic": "two"}, priority=9
        )
        _send(first, token, to)
        _flush(first)
        assert len(reads.seen) == 1  # the generation moved: read again
        assert _topics(server)[-1] == "two"  # the higher priority delivers first
        second.channels.disable(added.id)
        _send(first, token, to)
        _flush(first)
        assert _topics(server)[-1] == "one"
        assert _topics(server).count("two") == 1
        second.channels.remove(added.id)
        _send(first, token, to)
        _flush(first)
        assert _topics(server).count("two") == 1
    finally:
        reads.close()


def test_delivery_outcomes_do_not_move_the_generation(
    pair: tuple[Wallet, Wallet], server: NotifyServer
) -> None:
    first, _second = pair
    _agent_id, token = _agent(first)
    info = first.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "marks"})
    before = _generation(first, generations.CHANNELS)
    for _ in range(2):
        _send(first, token, recipient("solana"))
    _flush(first)
    assert first.channels.get(info.id).last_success_at is not None  # outcomes were recorded
    assert _generation(first, generations.CHANNELS) == before
    with raw_connect(first) as conn:
        conn.execute(
            "UPDATE notification_channels SET last_failure_at = 5, last_success_at = 6 "
            "WHERE id = ?",
            (info.id,),
        )
    assert _generation(first, generations.CHANNELS) == before
    with raw_connect(first) as conn:
        conn.execute("UPDATE notification_channels SET enabled = 0 WHERE id = ?", (info.id,))
    assert _generation(first, generations.CHANNELS) == (before or 0) + 1


def test_without_triggers_a_channel_change_through_waiaas_still_invalidates(
    pair: tuple[Wallet, Wallet], server: NotifyServer
) -> None:
    first, second = pair
    _agent_id, token = _agent(first)
    info = first.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "gone"})
    _send(first, token, recipient("solana"))
    _flush(first)
    assert _topics(server) == ["gone"]
    _drop_triggers(first)
    second.channels.disable(info.id)
    _send(first, token, recipient("solana"))
    _flush(first)
    assert _topics(server) == ["gone"]


def test_every_change_of_a_table_moves_its_counter(tmp_path: Path, adapter: SolanaAdapter) -> None:
    """Insert, update, delete of either table, written in the file directly."""
    with _open(tmp_path / "wallet.db", adapter) as wallet:
        steps = [
            (
                generations.POLICIES,
                "INSERT INTO policies (id, agent_id, type, rules, priority, enabled, "
                "created_at, updated_at) VALUES ('p1', NULL, 'RATE_LIMIT', "
                '\'{"max_requests": 1, "window_seconds": 60}\', 0, 1, 1, 1)',
            ),
            (generations.POLICIES, "UPDATE policies SET updated_at = 2 WHERE id = 'p1'"),
            (generations.POLICIES, "DELETE FROM policies WHERE id = 'p1'"),
            (
                generations.CHANNELS,
                "INSERT INTO notification_channels (id, type, config, priority, enabled, "
                "created_at) VALUES ('c1', 'NTFY', '{}', 0, 1, 1)",
            ),
            (generations.CHANNELS, "UPDATE notification_channels SET priority = 3"),
            (generations.CHANNELS, "DELETE FROM notification_channels WHERE id = 'c1'"),
        ]
        for key, sql in steps:
            before = _generation(wallet, key)
            with raw_connect(wallet) as conn:
                conn.execute(sql)
            assert _generation(wallet, key) == (before or 0) + 1, sql
        with raw_connect(wallet) as conn:  # a missing or unreadable counter starts again
            conn.execute("DELETE FROM wallet_state WHERE key = ?", (generations.CHANNELS,))
            conn.execute(
                "UPDATE wallet_state SET value = 'x' WHERE key = ?", (generations.POLICIES,)
            )
            conn.execute("UPDATE notification_channels SET priority = 1")  # no row: no bump
            conn.execute("DELETE FROM policies")
        assert _generation(wallet, generations.CHANNELS) is None
        with raw_connect(wallet) as conn:
            conn.execute(
                "INSERT INTO notification_channels (id, type, config, priority, enabled, "
                "created_at) VALUES ('c2', 'NTFY', '{}', 0, 1, 1)"
            )
            conn.execute(
                "INSERT INTO policies (id, agent_id, type, rules, priority, enabled, "
                "created_at, updated_at) VALUES ('p2', NULL, 'RATE_LIMIT', "
                '\'{"max_requests": 1, "window_seconds": 60}\', 0, 1, 1, 1)'
            )
        # they start again at random values, not at 1, where a value kept before could be met
        restarted = (
            _generation(wallet, generations.CHANNELS),
            _generation(wallet, generations.POLICIES),
        )
        assert all(isinstance(v, int) and 1 <= v <= 2**52 for v in restarted)
        assert restarted != (1, 1)


def test_migration_0012_on_postgresql(postgres_url: str) -> None:
    """Downgrading 0012 drops the triggers, their functions and the counters; upgrading an
    0011 database with rows creates them again, and they move."""
    import psycopg
    from alembic import command

    from tests.support.pg_schema import create_schema, drop_schema, libpq, schema_url
    from waiaas.db import Database, migrate
    from waiaas.db.engine import make_pg_engine, parse_target

    name = create_schema(postgres_url, prefix="gen")
    target = schema_url(postgres_url, name)
    functions = (
        "SELECT proname FROM pg_proc WHERE pronamespace = to_regnamespace(%s)::oid "
        "AND proname LIKE '%%_generation'"
    )
    counters = "SELECT key, value FROM wallet_state WHERE key LIKE 'generation:%%' ORDER BY key"
    try:
        Database.open(target).close()
        engine = make_pg_engine(parse_target(target).url)  # type: ignore[arg-type]
        try:
            with engine.connect() as sa_conn, sa_conn.begin():
                cfg = migrate.alembic_config()
                cfg.attributes["connection"] = sa_conn
                command.downgrade(cfg, "0011")
        finally:
            engine.dispose()
        with psycopg.connect(libpq(target), autocommit=True) as conn:
            assert conn.execute(functions, (name,)).fetchall() == []
            assert conn.execute(counters).fetchall() == []
            conn.execute(
                "INSERT INTO policies (id, agent_id, type, rules, priority, enabled, "
                "created_at, updated_at) VALUES ('p', NULL, 'RATE_LIMIT', '{}', 0, 1, 1, 1)"
            )
        Database.open(target).close()
        with psycopg.connect(libpq(target), autocommit=True) as conn:
            assert len(conn.execute(functions, (name,)).fetchall()) == 2
            start = dict(conn.execute(counters).fetchall())
            assert sorted(start) == [generations.CHANNELS, generations.POLICIES]
            assert all(v.isdigit() and 1 <= int(v) <= 2**52 for v in start.values())
            conn.execute("UPDATE policies SET priority = 4")
            conn.execute("TRUNCATE policies")
            conn.execute(
                "INSERT INTO notification_channels (id, type, config, priority, enabled, "
                "created_at) VALUES ('c', 'NTFY', '{}', 0, 1, 1)"
            )
            conn.execute("UPDATE notification_channels SET last_success_at = 3")
            assert dict(conn.execute(counters).fetchall()) == {
                generations.CHANNELS: str(int(start[generations.CHANNELS]) + 1),
                generations.POLICIES: str(int(start[generations.POLICIES]) + 2),
            }
    finally:
        drop_schema(postgres_url, name)


# --------------------------------------------------------------------------- carried generation


class _GenerationReads:
    """The channels' generation reads of a wallet's ``Database.fetch_one`` (the reader
    connections the channel source reads it on, outside the pool)."""

    def __init__(self, wallet: Wallet) -> None:
        self.db = wallet._db
        self.seen = 0
        plain = self.db.fetch_one

        def traced(sql: str, params: Any = ()) -> Any:
            if generations.CHANNELS in tuple(params):
                self.seen += 1
            return plain(sql, params)

        self.db.fetch_one = traced  # type: ignore[method-assign]

    def close(self) -> None:
        del self.db.fetch_one  # the class's method again


def test_a_confirmation_carries_the_channels_generation(
    pair: tuple[Wallet, Wallet], server: NotifyServer
) -> None:
    """The confirmation reads the channels' generation in its compare-and-set, under the
    write lock: its TX_CONFIRMED goes to the channels as committed then, with no
    generation read. A channel added, disabled or removed by another process before a send
    is honoured by that send's notification."""
    first, second = pair
    _agent_id, token = _agent(first)
    to = recipient("solana")
    first.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "one"}, priority=5)
    _send(first, token, to)
    _flush(first)
    gens, reads = _GenerationReads(first), _Reads(first, "notification_channels")
    try:
        assert _send(first, token, to).status == TxStatus.CONFIRMED
        _flush(first)
        assert (gens.seen, reads.seen) == (0, [])  # kept channels, nothing read
        assert _topics(server) == ["one", "one"]
        added = second.channels.add(
            "NTFY", {"server_url": server.ntfy_base, "topic": "two"}, priority=9
        )
        _send(first, token, to)
        _flush(first)
        assert _topics(server)[-1] == "two"
        assert (gens.seen, len(reads.seen)) == (0, 1)  # another generation: loaded again
        second.channels.disable(added.id)
        _send(first, token, to)
        _flush(first)
        assert _topics(server)[-1] == "one" and _topics(server).count("two") == 1
        second.channels.enable(added.id)
        second.channels.remove(added.id)
        _send(first, token, to)
        _flush(first)
        assert _topics(server)[-1] == "one" and _topics(server).count("two") == 1
        assert (gens.seen, len(reads.seen)) == (0, 3)
    finally:
        reads.close()
        gens.close()


def test_a_channel_edited_in_the_file_is_honoured(
    pair: tuple[Wallet, Wallet], server: NotifyServer
) -> None:
    """An edit behind waiaas's back moves the generation by trigger: the next confirmation
    reads the new value under its lock and its notification loads the channels again."""
    first, _second = pair
    _agent_id, token = _agent(first)
    info = first.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "edited"})
    _send(first, token, recipient("solana"))
    _flush(first)
    with raw_connect(first) as conn:
        conn.execute("UPDATE notification_channels SET enabled = 0 WHERE id = ?", (info.id,))
    gens = _GenerationReads(first)
    try:
        _send(first, token, recipient("solana"))
        _flush(first)
        assert gens.seen == 0
    finally:
        gens.close()
    assert _topics(server) == ["edited"]


def test_events_of_other_units_of_work_still_read_the_generation(
    pair: tuple[Wallet, Wallet], server: NotifyServer
) -> None:
    """A refusal's POLICY_VIOLATION carries no generation: the source reads it, and a
    channel disabled in another process just before gets nothing."""
    first, second = pair
    agent_id, token = _agent(first)
    friend = recipient("solana")
    info = first.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "deny"})
    first.add_policy("ALLOWED_ADDRESSES", {"addresses": [friend]}, agent_id=agent_id)
    _send(first, token, friend)
    _flush(first)
    assert _topics(server) == ["deny"]
    gens = _GenerationReads(first)
    try:
        with pytest.raises(PolicyDeniedError):
            _send(first, token, recipient("solana"))
        _flush(first)
        assert gens.seen == 1
        assert _topics(server) == ["deny", "deny"]
        second.channels.disable(info.id)
        with pytest.raises(PolicyDeniedError):
            _send(first, token, recipient("solana"))
        _flush(first)
        assert gens.seen == 2
        assert _topics(server) == ["deny", "deny"]
    finally:
        gens.close()


@pytest.mark.sqlite_only  # PostgreSQL always returns from an UPDATE
def test_without_returning_the_notification_reads_the_generation(
    pair: tuple[Wallet, Wallet], server: NotifyServer
) -> None:
    """Where the database cannot return from an UPDATE (SQLite before 3.35) the
    confirmation reads no generation: its notification reads it, as any event's does."""
    first, second = pair
    _agent_id, token = _agent(first)
    first.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "old"}, priority=1)
    dialect = first._db.engine.dialect
    saved = dialect.update_returning, dialect.insert_returning
    dialect.update_returning = dialect.insert_returning = False
    gens = _GenerationReads(first)
    try:
        assert _send(first, token, recipient("solana")).status == TxStatus.CONFIRMED
        _flush(first)
        second.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "new"}, priority=9)
        assert _send(first, token, recipient("solana")).status == TxStatus.CONFIRMED
        _flush(first)
        assert gens.seen == 2
    finally:
        gens.close()
        dialect.update_returning, dialect.insert_returning = saved
    assert _topics(server) == ["old", "new"]


def test_a_generation_of_another_database_is_not_taken(
    tmp_path: Path, adapter: SolanaAdapter, server: NotifyServer
) -> None:
    """A wallet whose notifier delivers to another wallet's channels: its confirmations'
    generation counts another database's changes, so the source never takes it for its
    own (the same number there says nothing)."""
    from waiaas.notify import NotificationDispatcher

    with _open(tmp_path / "channels.db", adapter) as owner:
        first_channel = owner.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "c1"})
        dispatcher = NotificationDispatcher(owner.channels.source())
        with Wallet.open(
            tmp_path / "sends.db",
            password=TEST_PASSWORD,
            chains=[adapter],
            config=fast_config(),
            background=False,
            notifier=dispatcher,
        ) as sender:
            _agent_id, token = _agent(sender)
            _send(sender, token, recipient("solana"))
            assert dispatcher.flush(timeout=30)
            assert _topics(server) == ["c1"]  # the source keeps [c1] at the owner's 2
            sender.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "unused"})
            # the same number in both databases (counters start at random values: set it)
            with raw_connect(sender) as conn:
                conn.execute(
                    "UPDATE wallet_state SET value = ? WHERE key = ?",
                    (str(_generation(owner, generations.CHANNELS)), generations.CHANNELS),
                )
            assert _generation(sender, generations.CHANNELS) == _generation(
                owner, generations.CHANNELS
            )
            owner.channels.disable(first_channel.id)
            owner.channels.add("NTFY", {"server_url": server.ntfy_base, "topic": "c2"})
            _send(sender, token, recipient("solana"))
            assert dispatcher.flush(timeout=30)
    assert _topics(server) == ["c1", "c2"]
