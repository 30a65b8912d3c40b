"""The optional background thread: it runs process_due() and the WAL checkpoint by itself."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.conftest import TIER_AMOUNTS, new_agent, recipient
from tests.support import pg_redirect
from waiaas import Transfer
from waiaas.testing import FrozenClock, fast_config, local_wallet


def _wait_for(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_background_thread_executes_a_due_delay_and_checkpoints(tmp_path: Path) -> None:
    """With background work on, a DELAY executes once its cooldown is over, with no call to
    process_due(), and the WAL file is truncated by the periodic checkpoint."""
    clock = FrozenClock()
    config = fast_config(checkpoint_interval=0.1)
    with local_wallet(tmp_path, clock=clock, config=config) as wallet:
        agent = new_agent(wallet, "solana")
        token = wallet.issue_session(agent.id).token
        dest = recipient("solana")
        queued = wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS["solana"]["DELAY"]))
        assert queued.status == "QUEUED"
        wallet.start_background(interval=0.05)
        time.sleep(0.3)
        assert wallet.get_transaction(queued.id).status == "QUEUED"  # still cooling down
        clock.advance(wallet.config.delay_seconds)
        assert _wait_for(lambda: wallet.get_transaction(queued.id).status == "CONFIRMED")
        if not pg_redirect.active():  # SQLite: the WAL was checkpointed
            wal = Path(str(wallet.path) + "-wal")
            assert _wait_for(lambda: not wal.exists() or wal.stat().st_size == 0)
        wallet.stop_background()
        assert wallet._runner.thread is None


def test_background_flag_on_open_and_close_stops_it(tmp_path: Path) -> None:
    """Wallet.open(background=True) starts the thread; close() stops and joins it."""
    with local_wallet(tmp_path, clock=FrozenClock(), background=True) as wallet:
        thread = wallet._runner.thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()


def test_due_work_runs_by_itself_by_default_unless_the_host_opts_out(tmp_path: Path) -> None:
    """Opened with the system clock and no background argument, the wallet runs due work by
    itself: a 1 s DELAY executes with no call to process_due(). background=False opts out; a
    host-driven clock (FrozenClock) does not start the thread unless asked."""
    config = fast_config(delay_seconds=1)
    with local_wallet(tmp_path, config=config, name="default.db") as wallet:
        assert wallet._runner.thread is not None
        agent = new_agent(wallet, "solana")
        token = wallet.issue_session(agent.id).token
        amount = TIER_AMOUNTS["solana"]["DELAY"]
        queued = wallet.send(token, Transfer(to=recipient("solana"), amount=amount))
        assert queued.status == "QUEUED"
        assert _wait_for(lambda: wallet.get_transaction(queued.id).status == "CONFIRMED")
    with local_wallet(tmp_path, config=config, name="off.db", background=False) as wallet:
        assert wallet._runner.thread is None
    with local_wallet(tmp_path, config=config, name="frozen.db", clock=FrozenClock()) as wallet:
        assert wallet._runner.thread is None


def test_async_wallet_has_the_same_default(tmp_path: Path) -> None:
    """AsyncWallet.open starts the background thread by default too, and close() stops it."""
    import asyncio

    from waiaas import AsyncWallet
    from waiaas.testing import TEST_PASSWORD

    async def scenario() -> None:
        wallet = await AsyncWallet.open(
            tmp_path / "a.db", password=TEST_PASSWORD, config=fast_config()
        )
        assert wallet.sync._runner.thread is not None
        await wallet.close()
        assert wallet.sync._runner.thread is None
        off = await AsyncWallet.open(
            tmp_path / "b.db", password=TEST_PASSWORD, config=fast_config(), background=False
        )
        assert off.sync._runner.thread is None
        await off.close()

    asyncio.run(scenario())
