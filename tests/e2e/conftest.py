"""Shared pieces of the end-to-end tests: a wallet on fresh in-process chains (LiteSVM and
eth-tester, real SQLite) driven by a frozen clock, owners who sign approvals with real
wallets, a recording notifier, and a chain adapter that fails on purpose."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.rawdb import raw_connect
from waiaas.chains.base import ChainTxStatus, SignedTx, SimulationResult, UnsignedTx
from waiaas.errors import PolicyDeniedError, StaleTransactionError, TransientChainError
from waiaas.notify.testing import RecordingNotifier
from waiaas.pipeline.states import signing_record
from waiaas.testing import FrozenClock, fund, local_chains, local_wallet
from waiaas.types import AgentInfo, AuditEntry, Request, Transfer
from waiaas.wallet import Wallet

START = 1_700_000_000
SOL = 10**9
ETH = 10**18
CHAINS = ("solana", "evm")

# Amounts per tier under the shipped WalletConfig.tier_defaults (no SPENDING_LIMIT set).
TIER_AMOUNTS: dict[str, dict[str, int]] = {
    "solana": {"INSTANT": SOL // 20, "NOTIFY": SOL // 2, "DELAY": 2 * SOL, "APPROVAL": 11 * SOL},
    "evm": {"INSTANT": ETH // 200, "NOTIFY": ETH // 20, "DELAY": ETH // 2, "APPROVAL": 2 * ETH},
}
FUNDING = {"solana": 50 * SOL, "evm": 10 * ETH}

TABLES = (
    "agents",
    "sessions",
    "transactions",
    "policies",
    "pending_approvals",
    "audit_log",
    "wallet_state",
)


# --------------------------------------------------------------------------- addresses, owners


def sol_address() -> str:
    """A fresh Solana address (base58 ed25519 public key)."""
    from nacl.signing import SigningKey

    from waiaas.keystore.keys import b58encode

    return b58encode(bytes(SigningKey.generate().verify_key))


def evm_address() -> str:
    """A fresh EIP-55 EVM address."""
    from eth_account import Account

    return str(Account.create().address)


def recipient(chain: str) -> str:
    """A fresh recipient address on ``chain``."""
    return sol_address() if chain == "solana" else evm_address()


class Owner:
    """A human owner with a real wallet of one family; signs approval messages."""

    address: str

    def sign(self, message: str) -> str:
        """The owner's signature of ``message`` as the wallet would give it."""
        raise NotImplementedError


class EvmOwner(Owner):
    """An EVM owner: EIP-191 ``personal_sign`` with eth-account."""

    def __init__(self) -> None:
        from eth_account import Account

        self.account = Account.create()
        self.address = str(self.account.address)

    def sign(self, message: str) -> str:
        from eth_account.messages import encode_defunct

        signature = self.account.sign_message(encode_defunct(text=message)).signature
        return "0x" + bytes(signature).hex()


class SolanaOwner(Owner):
    """A Solana owner: ed25519 over the UTF-8 message, base58 signature."""

    def __init__(self) -> None:
        from nacl.signing import SigningKey

        from waiaas.keystore.keys import b58encode

        self.key = SigningKey.generate()
        self.address = b58encode(bytes(self.key.verify_key))

    def sign(self, message: str) -> str:
        from waiaas.keystore.keys import b58encode

        return b58encode(self.key.sign(message.encode("utf-8")).signature)


def owner_for(chain: str) -> Owner:
    """An owner whose wallet family matches ``chain`` (either family works for either chain)."""
    return SolanaOwner() if chain == "solana" else EvmOwner()


# --------------------------------------------------------------------------- wallet helpers


def new_agent(
    wallet: Wallet,
    chain: str,
    *,
    owner: Owner | None = None,
    funds: int | None = None,
    name: str | None = None,
) -> AgentInfo:
    """Create an agent on ``chain`` and fund it (``FUNDING[chain]`` unless ``funds`` says)."""
    agent = wallet.create_agent(
        name or f"{chain}-agent",
        chain,
        owner_address=owner.address if owner is not None else None,
    )
    amount = FUNDING[chain] if funds is None else funds
    if amount:
        fund(wallet, agent.id, amount)
    return agent


def events_of(wallet: Wallet, tx_id: str) -> list[str]:
    """The audit event types recorded for one transaction, oldest first."""
    return [e.event_type for e in all_audit(wallet, tx_id=tx_id)]


def all_audit(wallet: Wallet, **filters: Any) -> list[AuditEntry]:
    """Every audit entry matching ``filters``, oldest first (walks every page)."""
    out: list[AuditEntry] = []
    cursor: int | None = None
    while True:
        page = wallet.audit(limit=1000, cursor=cursor, **filters)
        out.extend(page.entries)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return list(reversed(out))


def signings(wallet: Wallet, tx_id: str) -> list[dict[str, Any]]:
    """The signings the audit records for one transaction, oldest first: the details
    (``tx_hash``, ``nonce``) of its TX_SIGNED rows, or of its presigned TX_REQUESTED row
    (a TX_SUBMITTED row in a database written before)
    (``states.signing_record``)."""
    entries = all_audit(wallet, tx_id=tx_id)
    return [dict(d) for e in entries if (d := signing_record(e.event_type, e.details))]


def row_counts(target: Wallet | Path) -> dict[str, int]:
    """Row count of every CORE-02 table, read straight from the database (not through
    waiaas): ``target`` is the wallet, or its path."""
    with raw_connect(target) as con:
        return {t: int((con.one(f"SELECT count(*) FROM {t}") or (0,))[0]) for t in TABLES}


def snapshot(target: Wallet | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the audit log (whose growth is checked separately)."""
    with raw_connect(target) as con:
        return {
            t: sorted(con.all(f"SELECT * FROM {t}"), key=repr) for t in TABLES if t != "audit_log"
        }


def drive_every_path(wallet: Wallet, chain: str) -> dict[str, str]:
    """Drive one transaction of an owned agent on ``chain`` down each path of the pipeline
    (INSTANT, NOTIFY, DELAY failed on re-check, cancelled, approved, rejected, expired,
    denied); return ``{label: tx_id}``."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    owner = SolanaOwner() if chain == "solana" else EvmOwner()
    agent = new_agent(wallet, chain, owner=owner)
    token = wallet.issue_session(agent.id).token
    amounts = TIER_AMOUNTS[chain]
    dest = recipient(chain)
    ids = {}
    ids["instant"] = wallet.send(token, Transfer(to=dest, amount=amounts["INSTANT"])).id
    ids["notify"] = wallet.send(token, Transfer(to=dest, amount=amounts["NOTIFY"])).id
    ids["delay"] = wallet.send(token, Transfer(to=dest, amount=amounts["DELAY"])).id
    ids["cancelled"] = wallet.send(token, Transfer(to=dest, amount=amounts["DELAY"] + 1)).id
    wallet.cancel(ids["cancelled"])
    approval = wallet.send(token, Transfer(to=dest, amount=amounts["APPROVAL"])).id
    wallet.approve(approval, owner.sign(wallet.approval_message(approval)))
    ids["approved"] = approval
    rejected = wallet.send(token, Transfer(to=dest, amount=amounts["APPROVAL"] + 1)).id
    wallet.reject(rejected, owner.sign(wallet.approval_message(rejected, "reject")))
    ids["rejected"] = rejected
    ids["expired"] = wallet.send(token, Transfer(to=dest, amount=amounts["APPROVAL"] + 2)).id
    wallet.add_policy(
        "ALLOWED_ADDRESSES", {"addresses": [dest], "mode": "blacklist"}, agent_id=agent.id
    )
    with pytest.raises(PolicyDeniedError) as info:
        wallet.send(token, Transfer(to=dest, amount=amounts["INSTANT"]))
    assert info.value.tx_id is not None
    ids["denied"] = info.value.tx_id
    clock.advance(wallet.config.delay_seconds)
    wallet.process_due()  # the delay is due: FAILED on re-check (blacklisted meanwhile)
    clock.advance(wallet.config.approval_timeout)
    wallet.process_due()  # the last approval: EXPIRED
    return ids


# --------------------------------------------------------------------------- notifiers


class ProbeNotifier(RecordingNotifier):
    """Records events and, for each event with a transaction, the row status it could read
    from a separate connection to the database at that moment (committed state only);
    ``target`` is the wallet (or its path), set once it is open."""

    def __init__(self) -> None:
        super().__init__()
        self.target: Wallet | Path | None = None
        self.seen: list[tuple[str, str | None, str | None]] = []

    def notify(self, event: Any) -> None:
        status = None
        if self.target is not None and event.tx_id:
            with raw_connect(self.target) as con:
                found = con.one("SELECT status FROM transactions WHERE id = ?", (event.tx_id,))
            status = found[0] if found else None
        self.seen.append((str(event.event_type), event.tx_id, status))
        super().notify(event)


class RaisingNotifier:
    """A notifier that fails on every event."""

    def __init__(self) -> None:
        self.calls = 0

    def notify(self, event: Any) -> None:
        self.calls += 1
        raise RuntimeError("notification channel exploded")


# --------------------------------------------------------------------------- flaky chain


@dataclass
class FlakyAdapter:
    """Delegates to a real adapter, but fails the first ``transient`` submits with
    :class:`TransientChainError` and the first ``stale`` submits with
    :class:`StaleTransactionError` (after calling ``on_stale``, which can make the staleness
    real, e.g. by expiring the blockhash). Records every hash it was asked to submit."""

    inner: Any
    transient: int = 0
    stale: int = 0
    on_stale: Callable[[], None] | None = None
    submitted: list[str] = field(default_factory=list)

    @property
    def chain(self) -> str:
        return str(self.inner.chain)

    @property
    def network(self) -> str:
        return str(self.inner.network)

    def __getattr__(self, name: str) -> Any:
        # optional capabilities (pending_nonce, fund, chain_id, ...) of the real adapter
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def validate_address(self, address: str) -> str:
        return str(self.inner.validate_address(address))

    def generate_secret(self) -> tuple[bytes, str]:
        secret, public = self.inner.generate_secret()
        return secret, public

    def address_of(self, secret: bytes) -> str:
        return str(self.inner.address_of(secret))

    def build(self, request: Request, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        unsigned: UnsignedTx = self.inner.build(request, sender, nonce=nonce)
        return unsigned

    def estimate_fee(self, unsigned: UnsignedTx) -> int:
        return int(self.inner.estimate_fee(unsigned))

    def simulate(self, unsigned: UnsignedTx) -> SimulationResult:
        result: SimulationResult = self.inner.simulate(unsigned)
        return result

    def sign(self, unsigned: UnsignedTx, secret: bytes) -> SignedTx:
        signed: SignedTx = self.inner.sign(unsigned, secret)
        return signed

    def submit(self, signed: SignedTx) -> str:
        self.submitted.append(signed.tx_hash)
        if self.transient > 0:
            self.transient -= 1
            raise TransientChainError("node unavailable (injected)", chain=self.chain)
        if self.stale > 0:
            self.stale -= 1
            if self.on_stale is not None:
                self.on_stale()
            raise StaleTransactionError("blockhash expired (injected)", chain=self.chain)
        return str(self.inner.submit(signed))

    def get_status(self, signed: SignedTx) -> ChainTxStatus:
        status: ChainTxStatus = self.inner.get_status(signed)
        return status

    def wait_for_confirmation(self, signed: SignedTx, timeout: float = 30.0) -> ChainTxStatus:
        status: ChainTxStatus = self.inner.wait_for_confirmation(signed, timeout=timeout)
        return status

    def get_balance(self, address: str) -> int:
        return int(self.inner.get_balance(address))

    def get_token_balance(self, address: str, token: str) -> int:
        return int(self.inner.get_token_balance(address, token))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> FrozenClock:
    """A frozen clock at ``START``."""
    return FrozenClock(START)


@pytest.fixture
def notifier() -> RecordingNotifier:
    """Records every notification the wallet sends."""
    return RecordingNotifier()


@pytest.fixture
def wallet(tmp_path: Path, clock: FrozenClock, notifier: RecordingNotifier) -> Iterator[Wallet]:
    """A wallet on fresh local chains (Solana LiteSVM + EVM eth-tester) in ``tmp_path``."""
    with local_wallet(tmp_path, clock=clock, notifier=notifier) as w:
        yield w


@pytest.fixture(params=CHAINS)
def chain(request: pytest.FixtureRequest) -> str:
    """Each chain family in turn."""
    return str(request.param)


@pytest.fixture(scope="session", autouse=True)
def _warm_chain_imports() -> None:
    """Import the chain libraries once, so the first test does not pay for it alone."""
    local_chains()


@pytest.fixture(autouse=True)
def _unfrozen_heap() -> Iterator[None]:
    """AsyncWallet.open freezes the heap (gc.freeze); the next test starts unfrozen."""
    yield
    import gc

    if gc.get_freeze_count():
        gc.unfreeze()
