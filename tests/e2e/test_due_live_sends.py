"""Due work and a send running at once on the claim path (nothing presigned).

A request admitted PENDING is claimed by its own send right after the admission commit.
Due work running meanwhile must not take it from under the send in the same pipeline (it
is not orphaned); another executor on the file (another wallet, another process) may win
the claim, and then the send waits for that executor's outcome and returns the final
status, never the EXECUTING it found. A send truly interrupted after admission is still
resumed by due work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import TIER_AMOUNTS, new_agent, recipient
from waiaas import DueReport, Transfer
from waiaas.pipeline.engine import PipelineHooks
from waiaas.testing import FrozenClock, fast_config, local_wallet
from waiaas.wallet import Wallet

_LONG = 60.0  # a bound on waits for another thread, never reached when all goes well


class _DueAtAdmission:
    """Runs ``due`` in another thread when the main thread's send reaches ``admitted``,
    and lets the send go on once that pass either claimed a row (then it is held there
    until :attr:`release` is set) or finished."""

    def __init__(self, due: Callable[[], DueReport]) -> None:
        self._due = due
        self._main = threading.current_thread()
        self.ready = threading.Event()
        self.release = threading.Event()
        self.reports: list[DueReport] = []
        self.claimed: list[str] = []
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            self.reports.append(self._due())
        finally:
            self.ready.set()

    def sender_stage(self, stage: str, tx_id: str) -> None:
        """The send's hook: due work starts right after its admission committed."""
        if threading.current_thread() is not self._main:
            self.due_stage(stage, tx_id)
            return
        if stage == "admitted" and self.thread is None:
            self.thread = threading.Thread(target=self._run)
            self.thread.start()
            assert self.ready.wait(_LONG)
        if stage == "waiting":
            self.release.set()  # the send lost its claim and waits: the winner goes on

    def due_stage(self, stage: str, tx_id: str) -> None:
        """The due pass's hook: it holds its claim until released."""
        if stage == "claimed":
            self.claimed.append(tx_id)
            self.ready.set()
            self.release.wait(_LONG)

    def finish(self) -> None:
        self.release.set()
        if self.thread is not None:
            self.thread.join(_LONG)


def _claim_path_send(wallet: Wallet) -> tuple[str, str]:
    """A Solana agent with a session, the wallet on the claim path; (token, recipient)."""
    wallet._pipeline.presign = False
    agent = new_agent(wallet, "solana")
    return wallet.issue_session(agent.id).token, recipient("solana")


def test_due_work_leaves_a_live_send_its_row(tmp_path: Path) -> None:
    """process_due() running between a send's admission and its claim, in the same
    wallet, does not resume the row: the send claims it and returns CONFIRMED, paid once."""
    race: list[_DueAtAdmission] = []
    hooks = PipelineHooks(on_stage=lambda stage, tx_id: race[0].sender_stage(stage, tx_id))
    with local_wallet(tmp_path, clock=FrozenClock(), hooks=hooks) as wallet:
        race.append(_DueAtAdmission(wallet.process_due))
        token, dest = _claim_path_send(wallet)
        amount = TIER_AMOUNTS["solana"]["INSTANT"]
        try:
            result = wallet.send(token, Transfer(to=dest, amount=amount))
        finally:
            race[0].finish()
        assert result.status == "CONFIRMED"
        assert race[0].claimed == []
        [report] = race[0].reports
        assert report.resumed == 0 and report.problems == ()
        assert wallet.network_adapter("solana").get_balance(dest) == amount


def test_send_returns_the_outcome_of_another_wallet_that_took_its_row(tmp_path: Path) -> None:
    """A second wallet on the same file (as another process) runs process_due() between
    the send's admission and its claim and wins the row: the send waits for that wallet's
    outcome and returns CONFIRMED, not EXECUTING; the transfer is paid once."""
    clock = FrozenClock()
    race: list[_DueAtAdmission] = []
    hooks = PipelineHooks(on_stage=lambda stage, tx_id: race[0].sender_stage(stage, tx_id))
    with local_wallet(tmp_path, clock=clock, hooks=hooks) as wallet:
        token, dest = _claim_path_send(wallet)
        chains = [wallet.network_adapter(c, n) for c, n in wallet.networks]
        other_hooks = PipelineHooks(on_stage=lambda stage, tx_id: race[0].due_stage(stage, tx_id))
        with local_wallet(tmp_path, chains=chains, clock=clock, hooks=other_hooks) as other:
            race.append(_DueAtAdmission(other.process_due))
            amount = TIER_AMOUNTS["solana"]["INSTANT"]
            try:
                result = wallet.send(token, Transfer(to=dest, amount=amount))
            finally:
                race[0].finish()
            assert race[0].claimed == [result.id]
            [report] = race[0].reports
            assert report.resumed == 1
        assert result.status == "CONFIRMED"
        assert wallet.get_transaction(result.id).status == "CONFIRMED"
        assert wallet.network_adapter("solana").get_balance(dest) == amount


def test_send_waits_for_another_executor_at_most_the_confirm_timeout(tmp_path: Path) -> None:
    """Another wallet holds the send's row and does not finish: the send returns the row
    as it is (EXECUTING) once the confirm timeout passed, and that wallet completes it."""
    clock = FrozenClock()
    race: list[_DueAtAdmission] = []

    def sender(stage: str, tx_id: str) -> None:
        if stage != "waiting":  # never release the other wallet while the send waits
            race[0].sender_stage(stage, tx_id)

    config = fast_config(confirm_timeout=0.05)
    with local_wallet(
        tmp_path, clock=clock, config=config, hooks=PipelineHooks(on_stage=sender)
    ) as wallet:
        token, dest = _claim_path_send(wallet)
        chains = [wallet.network_adapter(c, n) for c, n in wallet.networks]
        other_hooks = PipelineHooks(on_stage=lambda stage, tx_id: race[0].due_stage(stage, tx_id))
        with local_wallet(tmp_path, chains=chains, clock=clock, hooks=other_hooks) as other:
            race.append(_DueAtAdmission(other.process_due))
            amount = TIER_AMOUNTS["solana"]["INSTANT"]
            try:
                result = wallet.send(token, Transfer(to=dest, amount=amount))
            finally:
                race[0].finish()
            assert result.status == "EXECUTING"
        assert wallet.get_transaction(result.id).status == "CONFIRMED"
        assert wallet.network_adapter("solana").get_balance(dest) == amount


class _Interrupted(Exception):
    """Raised by a stage hook: the send stops right after its admission committed."""


def test_an_interrupted_send_is_still_resumed_by_due_work(tmp_path: Path) -> None:
    """A send stopped after admission (as a crash would) no longer counts as live: the
    next process_due() of the same wallet resumes its PENDING row and pays it once."""
    interrupt = {"on": True}

    def stop(stage: str, tx_id: str) -> None:
        if stage == "admitted" and interrupt["on"]:
            raise _Interrupted(tx_id)

    with local_wallet(tmp_path, clock=FrozenClock(), hooks=PipelineHooks(on_stage=stop)) as w:
        token, dest = _claim_path_send(w)
        amount = TIER_AMOUNTS["solana"]["INSTANT"]
        try:
            w.send(token, Transfer(to=dest, amount=amount))
        except _Interrupted as exc:
            tx_id = str(exc)
        else:  # pragma: no cover - the hook always interrupts
            raise AssertionError("the send was not interrupted")
        assert w.get_transaction(tx_id).status == "PENDING"
        interrupt["on"] = False
        report = w.process_due()
        assert report.resumed == 1
        assert w.get_transaction(tx_id).status == "CONFIRMED"
        assert w.network_adapter("solana").get_balance(dest) == amount


class _NotifierDown(BaseException):
    """Raised by a notifier past ``except Exception`` (an interrupt while publishing)."""


class _FailingOnce:
    """A notifier whose first call raises :class:`_NotifierDown`; records the rest."""

    def __init__(self) -> None:
        self.calls = 0

    def notify(self, event: object) -> None:
        self.calls += 1
        if self.calls == 1:
            raise _NotifierDown(str(event))


def test_a_send_stopped_while_publishing_its_admission_is_resumed_by_due_work(
    tmp_path: Path,
) -> None:
    """The admission committed and its events' publication raised before the send ran
    its row: the row is not left marked live (which would keep this wallet's due work off
    it for the process's life): the next process_due() resumes it, paid once."""
    notifier = _FailingOnce()
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=notifier) as w:
        token, dest = _claim_path_send(w)
        amount = TIER_AMOUNTS["solana"]["NOTIFY"]  # a NOTIFY request publishes at admission
        try:
            w.send(token, Transfer(to=dest, amount=amount))
        except _NotifierDown:
            pass
        else:  # pragma: no cover - the notifier always raises first
            raise AssertionError("publishing did not raise")
        assert notifier.calls == 1
        (row,) = [t for t in w.list_transactions() if t.to_address == dest]
        assert row.status == "PENDING"
        assert not w._pipeline._live_sends
        report = w.process_due()
        assert report.resumed == 1
        assert w.get_transaction(row.id).status == "CONFIRMED"
        assert w.network_adapter("solana").get_balance(dest) == amount
