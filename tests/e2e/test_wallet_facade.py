"""The Wallet facade: open, close, reopen, repr, and refusal of bad input everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    SOL,
    all_audit,
    new_agent,
    recipient,
    row_counts,
    snapshot,
    sol_address,
)
from tests.support import pg_redirect
from waiaas.errors import (
    AgentNotActiveError,
    ApprovalError,
    AuthError,
    InvalidInputError,
    NotFoundError,
    StateError,
    StorageError,
    WaiaasError,
    WrongPasswordError,
)
from waiaas.testing import TEST_PASSWORD, FrozenClock, local_chains, local_wallet
from waiaas.testing import fast_config as make_config
from waiaas.types import AgentStatus, Transfer
from waiaas.wallet import Wallet

UNKNOWN = "01900000-0000-7000-8000-000000000000"  # a well-formed id that names nothing


def test_wallet_constructor_takes_its_collaborators_by_name() -> None:
    """Wallet() needs its collaborators (built by Wallet.open's factory), by keyword only:
    there is no half-built wallet."""
    with pytest.raises(TypeError, match="required keyword-only arguments"):
        Wallet()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        Wallet(object())  # type: ignore[misc,call-arg]


def test_collaborators_are_private_and_the_public_ways_in_work(tmp_path: Path) -> None:
    """The wallet's database, keystore, pipeline, sessions and integrity keys are not public
    attributes; what a host needs of them has a documented way: the adapters by network or
    by agent, the configured networks, the keystore directory."""
    with local_wallet(tmp_path, clock=FrozenClock()) as wallet:
        for name in ("db", "keystore", "pipeline", "sessions", "integrity"):
            assert not hasattr(wallet, name), name
        assert ("solana", "localnet") in wallet.networks
        agent = new_agent(wallet, "solana")
        adapter = wallet.network_adapter("solana", "localnet")
        assert adapter is wallet.network_adapter("solana")  # one solana network configured
        assert adapter is wallet.chain_adapter(agent.id)
        assert adapter.get_balance(agent.public_key) >= 0
        if not pg_redirect.active():  # SQLite: the file keystore beside the database
            assert wallet.keystore_path == Path(f"{wallet.path}.keystore")
            assert wallet.keystore_path.is_dir()
        for chain, network in (("bitcoin", None), ("solana", "mainnet-beta"), ("", None)):
            with pytest.raises(InvalidInputError):
                wallet.network_adapter(chain, network)
        with pytest.raises(AttributeError):
            wallet.config = make_config()  # type: ignore[misc]


def test_context_manager_closes_and_close_is_idempotent(tmp_path: Path) -> None:
    """Leaving the with-block closes the wallet; closing again does nothing; a closed wallet
    refuses work with a WaiaasError and the file records start and stop."""
    with local_wallet(tmp_path, clock=FrozenClock()) as wallet:
        assert "open" in repr(wallet)
        if not pg_redirect.active():  # SQLite: the file
            assert wallet.path == tmp_path / "wallet.db"
            assert wallet.path.exists()
    assert "closed" in repr(wallet)
    wallet.close()
    with pytest.raises(StorageError):
        wallet.list_agents()
    with local_wallet(tmp_path, clock=FrozenClock()) as again:
        kinds = [e.event_type for e in all_audit(again)]
    assert kinds[:4] == [
        "KEYSTORE_UNLOCKED",
        "DAEMON_STARTED",
        "DAEMON_STOPPED",
        "KEYSTORE_UNLOCKED",
    ]


def test_explicit_open_and_close(tmp_path: Path) -> None:
    """Wallet.open returns an open wallet; close() locks the keystore."""
    wallet = Wallet.open(
        tmp_path / "w.db",
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=make_config(),
        clock=FrozenClock(),
    )
    try:
        assert not wallet._keystore.locked
    finally:
        wallet.close()
    assert wallet._keystore.locked


def test_reopen_keeps_agents_policies_sessions_and_transactions(tmp_path: Path) -> None:
    """Everything written survives close and reopen: agents, policies, sessions (the token
    still works), transactions and their audit trail."""
    clock = FrozenClock()
    chains = local_chains()
    dest = sol_address()
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        agent = new_agent(wallet, "solana")
        policy = wallet.add_policy(
            "SPENDING_LIMIT", {"per_transaction": str(5 * SOL)}, agent_id=agent.id
        )
        issued = wallet.issue_session(agent.id)
        first = wallet.send(issued.token, Transfer(to=dest, amount=SOL // 20))
        assert first.status == "CONFIRMED"
    with local_wallet(tmp_path, clock=clock, chains=chains) as wallet:
        assert [a.id for a in wallet.list_agents()] == [agent.id]
        assert wallet.get_agent(agent.id).status == AgentStatus.ACTIVE
        assert [p.id for p in wallet.policies.list(agent_id=agent.id)] == [policy.id]
        assert wallet.get_transaction(first.id).status == "CONFIRMED"
        assert "TX_CONFIRMED" in [e.event_type for e in all_audit(wallet, tx_id=first.id)]
        second = wallet.send(issued.token, Transfer(to=dest, amount=SOL // 20 + 1))
        assert second.status == "CONFIRMED"
        assert wallet.balance(agent.id) < 50 * SOL - SOL // 10
        with pytest.raises(WaiaasError):
            wallet.send(issued.token, Transfer(to=dest, amount=6 * SOL))


def test_reopen_with_wrong_password_is_refused(tmp_path: Path) -> None:
    """A wrong master password cannot open an existing wallet, and the file is released."""
    with local_wallet(tmp_path, clock=FrozenClock()):
        pass
    with pytest.raises(WrongPasswordError):
        Wallet.open(
            tmp_path / "wallet.db",
            password="not the password",
            chains=local_chains(),
            config=make_config(),
        )


def test_repr_has_no_secrets(tmp_path: Path) -> None:
    """No repr of the wallet, its parts or what it returns shows the password or a token."""
    with local_wallet(tmp_path, clock=FrozenClock()) as wallet:
        agent = new_agent(wallet, "solana", funds=0)
        issued = wallet.issue_session(agent.id)
        texts = [
            repr(wallet),
            str(wallet),
            repr(issued),
            str(issued),
            repr(wallet._keystore),
            repr(wallet._sessions),
            repr(wallet._pipeline.gate),
            repr(agent),
            repr(wallet.get_session(issued.session_id)),
            repr(wallet.config),
        ]
        for text in texts:
            assert TEST_PASSWORD not in text
            assert issued.token not in text
            assert issued.token.split(".")[2] not in text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"config": "not a config"}, "config"),
        ({"chains": [object()]}, "chains"),
    ],
)
def test_open_refuses_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], field: str) -> None:
    """Wallet.open names the bad argument."""
    args: dict[str, Any] = {
        "password": TEST_PASSWORD,
        "chains": local_chains(),
        "config": make_config(),
    }
    args.update(kwargs)
    with pytest.raises(InvalidInputError) as info:
        Wallet.open(tmp_path / "w.db", **args)
    assert info.value.field == field


def test_open_refuses_two_adapters_for_one_network(tmp_path: Path) -> None:
    """Two adapters for the same chain/network are ambiguous and refused."""
    from waiaas.chains.solana import SolanaAdapter

    with pytest.raises(InvalidInputError) as info:
        Wallet.open(
            tmp_path / "w.db",
            password=TEST_PASSWORD,
            config=make_config(),
            chains=[SolanaAdapter.local(), SolanaAdapter.local()],
        )
    assert info.value.field == "chains"


# --------------------------------------------------------------------------- bad input


Call = Callable[[Wallet, dict[str, str]], Any]

# (description, call, expected error, expected field or None)
BAD_CALLS: list[tuple[str, Call, type[WaiaasError], str | None]] = [
    ("empty agent name", lambda w, c: w.create_agent("", "solana"), InvalidInputError, "name"),
    (
        "name with control char",
        lambda w, c: w.create_agent("a\nb", "solana"),
        InvalidInputError,
        "name",
    ),
    ("name not a str", lambda w, c: w.create_agent(42, "solana"), InvalidInputError, "name"),  # type: ignore[arg-type]
    ("unknown chain", lambda w, c: w.create_agent("x", "bitcoin"), InvalidInputError, "chain"),
    ("chain not a str", lambda w, c: w.create_agent("x", None), InvalidInputError, "chain"),  # type: ignore[arg-type]
    (
        "unknown network",
        lambda w, c: w.create_agent("x", "solana", "mainnet-beta"),
        InvalidInputError,
        "chain",
    ),
    (
        "bad owner",
        lambda w, c: w.create_agent("x", "evm", owner_address="0x1234"),
        InvalidInputError,
        "owner_address",
    ),
    (
        "bad owner checksum",
        lambda w, c: w.create_agent(
            "x", "evm", owner_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"
        ),
        InvalidInputError,
        "owner_address",
    ),
    ("empty agent id", lambda w, c: w.get_agent(""), InvalidInputError, "agent_id"),
    (
        "unknown agent",
        lambda w, c: w.get_agent(UNKNOWN),
        NotFoundError,
        None,
    ),
    (
        "bad agent status filter",
        lambda w, c: w.list_agents(status="SLEEPING"),
        InvalidInputError,
        "status",
    ),
    (
        "suspend unknown",
        lambda w, c: w.suspend_agent(UNKNOWN),
        NotFoundError,
        None,
    ),
    ("suspend suspended", lambda w, c: w.suspend_agent(c["suspended"]), StateError, None),
    ("resume active", lambda w, c: w.resume_agent(c["agent"]), StateError, None),
    ("terminate terminated", lambda w, c: w.terminate_agent(c["terminated"]), StateError, None),
    (
        "owner of unknown agent",
        lambda w, c: w.set_owner(UNKNOWN, None),
        NotFoundError,
        None,
    ),
    (
        "invalid owner",
        lambda w, c: w.set_owner(c["agent"], "not-an-address!"),
        InvalidInputError,
        "owner_address",
    ),
    ("rotate terminated", lambda w, c: w.rotate_key(c["terminated"]), StateError, None),
    (
        "rotate unknown",
        lambda w, c: w.rotate_key(UNKNOWN),
        NotFoundError,
        None,
    ),
    (
        "session for unknown agent",
        lambda w, c: w.issue_session(UNKNOWN),
        NotFoundError,
        None,
    ),
    (
        "session for suspended agent",
        lambda w, c: w.issue_session(c["suspended"]),
        AgentNotActiveError,
        None,
    ),
    ("negative ttl", lambda w, c: w.issue_session(c["agent"], ttl=-5), InvalidInputError, None),
    (
        "unknown constraint",
        lambda w, c: w.issue_session(c["agent"], constraints={"max": 1}),
        InvalidInputError,
        None,
    ),
    ("empty session id", lambda w, c: w.revoke_session(""), InvalidInputError, "session_id"),
    (
        "unknown session",
        lambda w, c: w.get_session(UNKNOWN),
        NotFoundError,
        None,
    ),
    ("sessions of bad id", lambda w, c: w.list_sessions(""), InvalidInputError, "agent_id"),
    (
        "empty token",
        lambda w, c: w.send("", Transfer(to=c["dest"], amount=1)),
        InvalidInputError,
        "token",
    ),
    (
        "request not a request",
        lambda w, c: w.send(c["token"], "send 1 SOL"),  # type: ignore[arg-type]
        InvalidInputError,
        "request",
    ),
    (
        "request mapping with typo",
        lambda w, c: w.send(c["token"], {"type": "TRANSFER", "to": c["dest"], "amout": 1}),
        InvalidInputError,
        "request",
    ),
    (
        "unknown transaction",
        lambda w, c: w.get_transaction(UNKNOWN),
        NotFoundError,
        None,
    ),
    ("transaction id not str", lambda w, c: w.get_transaction(7), InvalidInputError, "tx_id"),  # type: ignore[arg-type]
    ("list limit 0", lambda w, c: w.list_transactions(limit=0), InvalidInputError, "limit"),
    ("list limit bool", lambda w, c: w.list_transactions(limit=True), InvalidInputError, "limit"),
    (
        "list bad status",
        lambda w, c: w.list_transactions(status="DONE"),
        InvalidInputError,
        "status",
    ),
    (
        "cancel unknown",
        lambda w, c: w.cancel(UNKNOWN),
        NotFoundError,
        None,
    ),
    ("cancel confirmed", lambda w, c: w.cancel(c["confirmed"]), StateError, None),
    (
        "approval message unknown",
        lambda w, c: w.approval_message(UNKNOWN),
        NotFoundError,
        None,
    ),
    (
        "approval message of instant tx",
        lambda w, c: w.approval_message(c["confirmed"]),
        ApprovalError,
        None,
    ),
    ("approve instant tx", lambda w, c: w.approve(c["confirmed"], "0x00"), ApprovalError, None),
    (
        "reject unknown",
        lambda w, c: w.reject(UNKNOWN, "0x00"),
        NotFoundError,
        None,
    ),
    (
        "dry run without agent",
        lambda w, c: w.dry_run(Transfer(to=c["dest"], amount=1)),
        InvalidInputError,
        "agent_id",
    ),
    (
        "dry run unknown agent",
        lambda w, c: w.dry_run(Transfer(to=c["dest"], amount=1), agent_id=UNKNOWN),
        NotFoundError,
        None,
    ),
    (
        "dry run bad request",
        lambda w, c: w.dry_run({"type": "NOPE"}, agent_id=c["agent"]),
        InvalidInputError,
        "request",
    ),
    ("kill switch empty reason", lambda w, c: w.kill_switch(""), InvalidInputError, "reason"),
    ("release when inactive", lambda w, c: w.release_kill_switch(), StateError, None),
    ("chain adapter unknown agent", lambda w, c: w.chain_adapter(UNKNOWN), NotFoundError, None),
    (
        "chain adapter bad id",
        lambda w, c: w.chain_adapter("../agent"),
        InvalidInputError,
        "agent_id",
    ),
    ("audit limit 0", lambda w, c: w.audit(limit=0), InvalidInputError, "limit"),
    ("audit cursor str", lambda w, c: w.audit(cursor="abc"), InvalidInputError, "cursor"),  # type: ignore[arg-type]
    (
        "audit bad severity",
        lambda w, c: w.audit(severities=["loud"]),
        InvalidInputError,
        "severities",
    ),
    ("background interval 0", lambda w, c: w.start_background(0), InvalidInputError, "interval"),
    (
        "background interval str",
        lambda w, c: w.start_background("1"),  # type: ignore[arg-type]
        InvalidInputError,
        "interval",
    ),
    (
        "background interval nan",
        lambda w, c: w.start_background(float("nan")),
        InvalidInputError,
        "interval",
    ),
    (
        "suspend with empty reason",
        lambda w, c: w.suspend_agent(c["agent"], reason=" "),
        InvalidInputError,
        "reason",
    ),
    (
        "suspend with int reason",
        lambda w, c: w.suspend_agent(c["agent"], reason=7),  # type: ignore[arg-type]
        InvalidInputError,
        "reason",
    ),
    (
        "list by int agent",
        lambda w, c: w.list_transactions(agent_id=7),  # type: ignore[arg-type]
        InvalidInputError,
        "agent_id",
    ),
    ("list before int", lambda w, c: w.list_transactions(before=7), InvalidInputError, "before"),  # type: ignore[arg-type]
    ("audit by int agent", lambda w, c: w.audit(agent_id=7), InvalidInputError, "agent_id"),  # type: ignore[arg-type]
    ("audit by empty tx", lambda w, c: w.audit(tx_id=""), InvalidInputError, "tx_id"),
    ("audit since str", lambda w, c: w.audit(since="yesterday"), InvalidInputError, "since"),  # type: ignore[arg-type]
    ("audit until negative", lambda w, c: w.audit(until=-1), InvalidInputError, "until"),
    (
        "audit unknown event",
        lambda w, c: w.audit(event_types=["TX_TELEPORTED"]),
        InvalidInputError,
        "event_types",
    ),
    (
        "audit event types str",
        lambda w, c: w.audit(event_types="TX_QUEUED"),
        InvalidInputError,
        "event_types",
    ),
    (
        "audit severities str",
        lambda w, c: w.audit(severities="warning"),
        InvalidInputError,
        "severities",
    ),
    ("renew empty token", lambda w, c: w.renew_session(""), AuthError, None),
    ("backup into missing dir", lambda w, c: w.backup("/nonexistent/waiaas"), StorageError, None),
    ("unlock with wrong password", lambda w, c: w.unlock("wrong"), WrongPasswordError, None),
    (
        "empty new password",
        lambda w, c: w.change_password(TEST_PASSWORD, ""),
        InvalidInputError,
        "new_password",
    ),
    (
        "balance of bad token",
        lambda w, c: w.balance(c["agent"], token="0xabc"),
        InvalidInputError,
        None,
    ),
    (
        "policy for unknown agent",
        lambda w, c: w.add_policy(
            "RATE_LIMIT",
            {"max_requests": 1, "window_seconds": 60},
            agent_id=UNKNOWN,
        ),
        NotFoundError,
        None,
    ),
    (
        "balance of unknown agent",
        lambda w, c: w.balance(UNKNOWN),
        NotFoundError,
        None,
    ),
    (
        "wrong current password",
        lambda w, c: w.change_password("wrong", "new-password"),
        WrongPasswordError,
        None,
    ),
    ("policy of unknown type", lambda w, c: w.add_policy("MAGIC", {}), InvalidInputError, None),
    (
        "policy with typo",
        lambda w, c: w.add_policy("SPENDING_LIMIT", {"per_transacton": "5"}),
        InvalidInputError,
        None,
    ),
]


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One wallet with an active, a suspended and a terminated agent, a token and a
    confirmed transaction; shared by the bad-input cases (which must change nothing)."""
    directory = tmp_path_factory.mktemp("bad-input")
    with local_wallet(directory, clock=FrozenClock()) as wallet:
        agent = new_agent(wallet, "solana")
        suspended = new_agent(wallet, "solana", funds=0, name="s")
        wallet.suspend_agent(suspended.id)
        terminated = new_agent(wallet, "evm", funds=0, name="t")
        wallet.terminate_agent(terminated.id)
        token = wallet.issue_session(agent.id).token
        dest = recipient("solana")
        confirmed = wallet.send(token, Transfer(to=dest, amount=SOL // 20))
        assert confirmed.status == "CONFIRMED"
        context = {
            "agent": agent.id,
            "suspended": suspended.id,
            "terminated": terminated.id,
            "token": token,
            "dest": dest,
            "confirmed": confirmed.id,
        }
        yield wallet, context


@pytest.mark.parametrize(
    ("what", "call", "error", "field"), BAD_CALLS, ids=[case[0] for case in BAD_CALLS]
)
def test_bad_input_is_refused_and_changes_nothing(
    populated: Any, what: str, call: Call, error: type[WaiaasError], field: str | None
) -> None:
    """Every public method refuses bad input with the right WaiaasError subclass, names the
    field, and leaves every table as it was (only refusal audit rows may be added)."""
    wallet, context = populated
    before = snapshot(wallet)
    audit_before = row_counts(wallet)["audit_log"]
    with pytest.raises(error) as info:
        call(wallet, context)
    if field is not None:
        assert getattr(info.value, "field", None) == field
    assert snapshot(wallet) == before
    added = all_audit(wallet)[audit_before:]
    assert {e.event_type for e in added} <= {"AUTH_FAILED", "REQUEST_REFUSED"}


def test_chain_adapter_is_the_agents_and_public(tmp_path: Path) -> None:
    """``Wallet.chain_adapter(agent_id)`` is the adapter the agent's transactions go through
    (the local chains' controls included); ``waiaas.testing`` and the demo use it rather
    than reaching into the wallet's private collaborators."""
    import inspect
    import re

    import waiaas.demo
    import waiaas.testing
    from waiaas.chains.base import LocalChainControl

    with local_wallet(tmp_path, clock=FrozenClock()) as wallet:
        for chain in ("solana", "evm"):
            agent = new_agent(wallet, chain, funds=0)
            adapter = wallet.chain_adapter(agent.id)
            assert (adapter.chain, adapter.network) == (agent.chain, agent.network)
            assert isinstance(adapter, LocalChainControl)
            adapter.fund(agent.public_key, 10**9)
            assert wallet.balance(agent.id) == 10**9
    for module in (waiaas.testing, waiaas.demo):
        source = inspect.getsource(module)
        private = re.findall(r"\bwallet\.(?:pipeline|db|sessions|keystore)\.", source)
        assert private == [], module.__name__


def test_checkpoint_result_is_a_named_tuple(tmp_path: Path) -> None:
    """``Wallet.checkpoint()`` unpacks as before and names its figures."""
    from waiaas import CheckpointResult

    with local_wallet(tmp_path, clock=FrozenClock()) as wallet:
        new_agent(wallet, "solana", funds=0)
        result = wallet.checkpoint()
        assert isinstance(result, CheckpointResult)
        busy, log_frames, checkpointed = result
        assert (result.busy, result.log_frames, result.checkpointed) == (
            busy,
            log_frames,
            checkpointed,
        )
        assert busy == 0 and checkpointed == log_frames
