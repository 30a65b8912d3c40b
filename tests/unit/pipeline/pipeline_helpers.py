"""Shared pieces of the pipeline's stage tests: a wallet on the in-memory :class:`FakeChain`
(real SQLite file, real ``Wallet`` and ``Pipeline``, a frozen clock), an owner who signs
approvals, tier amounts, a stage hook that stops a request where a crash would, and readers
of the audit trail."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakechain import FakeChain, new_address

from waiaas.notify.testing import RecordingNotifier
from waiaas.pipeline.engine import PipelineHooks
from waiaas.testing import FrozenClock, local_wallet
from waiaas.wallet import Wallet

START = 1_700_000_000
FUNDS = 1_000_000
DELAY = 600  # the cooldown the SPENDING_LIMIT below sets for DELAY
APPROVAL_WINDOW = 1_800  # and the owner's window for APPROVAL

# Per-request tier bounds (the velocity tiers are set high, so each request tiers alone).
TIERS = {
    "instant_max": "100",
    "notify_max": "1000",
    "delay_max": "10000",
    "daily_instant_max": "900000",
    "daily_notify_max": "900000",
    "daily_delay_max": "900000",
    "delay_seconds": DELAY,
    "approval_timeout": APPROVAL_WINDOW,
}
AMOUNT = {"INSTANT": 50, "NOTIFY": 500, "DELAY": 5_000, "APPROVAL": 50_000}


class Stopped(Exception):
    """Raised by the stage hook where a test stops a request (``args[0]``: the tx id)."""


@dataclass
class Stopper:
    """The wallet's stage hook: raises :class:`Stopped` at the armed stages (a crash there:
    whatever was committed stays, nothing after it happens)."""

    at: set[str] = field(default_factory=set)
    seen: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, stage: str, tx_id: str) -> None:
        self.seen.append((stage, tx_id))
        if stage in self.at:
            raise Stopped(tx_id)


class Owner:
    """An agent's owner with a Solana wallet (ed25519 over the UTF-8 message)."""

    def __init__(self) -> None:
        from nacl.signing import SigningKey

        from waiaas.keystore.keys import b58encode

        self.key = SigningKey.generate()
        self.address = b58encode(bytes(self.key.verify_key))

    def sign(self, message: str) -> str:
        from waiaas.keystore.keys import b58encode

        return b58encode(self.key.sign(message.encode("utf-8")).signature)


@dataclass
class Stage:
    """One wallet on one fake chain, with one funded, owned agent and a session of it."""

    wallet: Wallet
    chain: FakeChain
    clock: FrozenClock
    stopper: Stopper
    owner: Owner
    agent_id: str
    address: str
    token: str
    session_id: str
    dest: str

    def events(self, tx_id: str) -> list[str]:
        """The audit event types of one transaction, oldest first."""
        return [e.event_type for e in audit(self.wallet, tx_id=tx_id)]

    def session_total(self) -> int:
        """What the session has been charged (amounts and fees), all assets."""
        return self.wallet.get_session(self.session_id).usage.total()

    def budget_spent(self) -> int:
        """The agent's native spend counted against its daily budget now."""
        return self.wallet.budget_usage(self.agent_id).spent("24h")


def audit(wallet: Wallet, **filters: Any) -> list[Any]:
    """Every audit entry matching ``filters``, oldest first."""
    out: list[Any] = []
    cursor: int | None = None
    while True:
        page = wallet.audit(limit=1000, cursor=cursor, **filters)
        out.extend(page.entries)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return list(reversed(out))


def open_wallet(
    path: Path,
    chain: FakeChain,
    clock: FrozenClock,
    stopper: Stopper | None = None,
    notifier: RecordingNotifier | None = None,
) -> Wallet:
    """A wallet in ``path`` on ``chain`` only, with no background thread (the clock is
    frozen); notifications are recorded (no delivery threads)."""
    return local_wallet(
        path,
        chains=[chain],
        clock=clock,
        notifier=notifier or RecordingNotifier(),
        hooks=PipelineHooks(on_stage=stopper or Stopper()),
    )


def setup_stage(wallet: Wallet, chain: FakeChain, clock: FrozenClock, stopper: Stopper) -> Stage:
    """An owned agent funded with ``FUNDS``, the tier policy and a session."""
    owner = Owner()
    agent = wallet.create_agent("stage-bot", "fake", owner_address=owner.address)
    chain.fund(agent.public_key, FUNDS)
    wallet.add_policy("SPENDING_LIMIT", TIERS, agent_id=agent.id)
    issued = wallet.issue_session(agent.id)
    return Stage(
        wallet=wallet,
        chain=chain,
        clock=clock,
        stopper=stopper,
        owner=owner,
        agent_id=agent.id,
        address=agent.public_key,
        token=issued.token,
        session_id=issued.session_id,
        dest=new_address(),
    )


def presign_mode(wallet: Wallet, want: bool | None = None) -> bool:
    """Whether INSTANT requests are signed at admission (``Pipeline.presign``), after
    setting it to ``want`` when given."""
    pipeline = wallet._pipeline
    if want is not None:
        pipeline.presign = want
    return bool(pipeline.presign)


def sent_events(presign: bool) -> list[str]:
    """The audit events of an INSTANT request up to its first broadcast: from a claim
    (``TX_EXECUTING``, ``TX_SIGNED``) or signed at admission (its one ``TX_REQUESTED`` row
    names the hash: no ``TX_SIGNED`` or ``TX_SUBMITTED`` row)."""
    if presign:
        return ["TX_REQUESTED"]
    return ["TX_REQUESTED", "TX_EXECUTING", "TX_SIGNED", "TX_SUBMITTED"]
