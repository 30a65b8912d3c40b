"""Session constraints: enforcement, usage recorded in the caller's transaction, release."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import sessions as shared
from tests.support.rawdb import target_of
from tests.support.sessions import T0, FrozenClock, MemorySecretStore
from waiaas.config import WalletConfig
from waiaas.db import Database
from waiaas.db.tables import AgentRow
from waiaas.errors import (
    AuthError,
    ConstraintViolationError,
    InvalidAddressError,
    InvalidInputError,
    TokenRevokedError,
)
from waiaas.ids import new_id
from waiaas.keystore.keys import b58encode
from waiaas.sessions import (
    NATIVE,
    SessionConstraints,
    SessionManager,
    SessionUsage,
)
from waiaas.types import Approve, Batch, ContractCall, TokenTransfer, Transfer

# shared fixtures: a migrated template and a fresh copy of it per test
migrated = shared.migrated
db = shared.db

SOL_TO = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
SOL_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
EVM_TO = "0x52908400098527886E0F7030069857D2E4169EE7"
EVM_TOKEN = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"


@pytest.fixture
def mgr(db: Database) -> SessionManager:
    return SessionManager(db, MemorySecretStore(), FrozenClock(), WalletConfig())


def add_agent(db: Database, *, chain: str = "solana", network: str = "devnet") -> str:
    agent_id = new_id()
    pub = b58encode(os.urandom(32)) if chain == "solana" else "0x" + os.urandom(20).hex()
    with db.write() as uow:
        uow.agents.add(
            AgentRow(
                id=agent_id,
                name="agent",
                chain=chain,
                network=network,
                public_key=pub,
                status="ACTIVE",
                created_at=T0,
                updated_at=T0,
            )
        )
        uow.commit()
    return agent_id


def session(
    mgr: SessionManager, db: Database, constraints: dict[str, Any], *, chain: str = "solana"
) -> tuple[str, str]:
    """Issue a session with ``constraints``; return (token, session id)."""
    network = "devnet" if chain == "solana" else "sepolia"
    issued = mgr.issue(add_agent(db, chain=chain, network=network), constraints=constraints)
    return issued.token, issued.session_id


def charge(
    mgr: SessionManager,
    db: Database,
    token: str,
    request: Any,
    *,
    network: str = "devnet",
    commit: bool = True,
    **kw: Any,
) -> SessionUsage:
    """Verify + enforce in one write unit of work, as the pipeline does."""
    with db.write() as uow:
        verified = mgr.verify_in(uow, token, T0 + 1)
        usage = mgr.enforce_and_record(uow, verified, request, network=network, now=T0 + 1, **kw)
        if commit:
            uow.commit()
    return usage


def stored_usage(db: Database, session_id: str) -> dict[str, Any]:
    with db.read() as uow:
        row = uow.sessions.get(session_id)
        assert row is not None
        return dict(json.loads(row.usage_stats or "{}"))


# --------------------------------------------------------------------------- each constraint


def test_no_constraints_allows_and_counts(mgr: SessionManager, db: Database) -> None:
    """Without constraints every request passes and is still counted."""
    token, sid = session(mgr, db, {})
    usage = charge(mgr, db, token, Transfer(to=SOL_TO, amount=10**12))
    assert (usage.tx_count, usage.totals) == (1, {NATIVE: 10**12})
    assert stored_usage(db, sid)["totals"] == {NATIVE: str(10**12)}
    assert stored_usage(db, sid)["last_used_at"] == T0 + 1


@pytest.mark.parametrize(
    ("constraints", "request_", "network", "named"),
    [
        (
            {"allowed_networks": ["devnet"]},
            Transfer(to=SOL_TO, amount=1),
            "mainnet",
            "allowed_networks",
        ),
        (
            {"allowed_tx_types": ["TOKEN_TRANSFER"]},
            Transfer(to=SOL_TO, amount=1),
            "devnet",
            "allowed_tx_types",
        ),
        (
            {"allowed_tx_types": ["BATCH", "TRANSFER"]},
            Batch(requests=(Transfer(to=SOL_TO, amount=1), ContractCall(to=SOL_TO))),
            "devnet",
            "allowed_tx_types",
        ),
        (
            {"allowed_tx_types": ["TRANSFER"]},
            Batch(requests=(Transfer(to=SOL_TO, amount=1),)),
            "devnet",
            "allowed_tx_types",
        ),
        (
            {"allowed_addresses": [SOL_MINT]},
            Transfer(to=SOL_TO, amount=1),
            "devnet",
            "allowed_addresses",
        ),
        (
            {"allowed_addresses": [SOL_TO]},
            Transfer(to=SOL_TO.lower(), amount=1),  # base58 is case-sensitive
            "devnet",
            "allowed_addresses",
        ),
        (
            {"allowed_addresses": [SOL_TO]},
            Transfer(to="not an address", amount=1),
            "devnet",
            "allowed_addresses",
        ),
        (
            {"allowed_addresses": [SOL_TO]},
            Batch(requests=(Transfer(to=SOL_TO, amount=1), Transfer(to=SOL_MINT, amount=1))),
            "devnet",
            "allowed_addresses",
        ),
        ({"max_amount_per_tx": 10}, Transfer(to=SOL_TO, amount=11), "devnet", "max_amount_per_tx"),
        (
            {"max_amount_per_tx": {SOL_MINT: 10}},
            TokenTransfer(token=SOL_MINT, to=SOL_TO, amount=11),
            "devnet",
            "max_amount_per_tx",
        ),
        ({"max_tx_count": 0}, Transfer(to=SOL_TO, amount=1), "devnet", "max_tx_count"),
        ({"max_total_amount": 10}, Transfer(to=SOL_TO, amount=11), "devnet", "max_total_amount"),
    ],
)
def test_each_constraint_refuses_and_names_itself(
    mgr: SessionManager,
    db: Database,
    constraints: dict[str, Any],
    request_: Any,
    network: str,
    named: str,
) -> None:
    """A violation names its constraint and the session, and leaves usage untouched."""
    token, sid = session(mgr, db, constraints)
    before = stored_usage(db, sid)
    with pytest.raises(ConstraintViolationError) as exc:
        charge(mgr, db, token, request_, network=network)
    assert exc.value.constraint == named
    assert exc.value.session_id == sid
    assert exc.value.code == "SESSION_CONSTRAINT"
    assert stored_usage(db, sid) == before


def test_limits_at_the_boundary_pass(mgr: SessionManager, db: Database) -> None:
    """Limits are inclusive: exactly the cap passes, one more fails."""
    token, _ = session(
        mgr, db, {"max_amount_per_tx": 10, "max_total_amount": 15, "max_tx_count": 3}
    )
    charge(mgr, db, token, Transfer(to=SOL_TO, amount=10))
    charge(mgr, db, token, Transfer(to=SOL_TO, amount=5))
    with pytest.raises(ConstraintViolationError) as exc:
        charge(mgr, db, token, Transfer(to=SOL_TO, amount=1))
    assert exc.value.constraint == "max_total_amount"
    usage = charge(mgr, db, token, TokenTransfer(token=SOL_MINT, to=SOL_TO, amount=1))
    assert usage.tx_count == 3
    with pytest.raises(ConstraintViolationError) as exc2:
        charge(mgr, db, token, ContractCall(to=SOL_TO))
    assert exc2.value.constraint == "max_tx_count"


def test_totals_are_per_asset_and_exact(mgr: SessionManager, db: Database) -> None:
    """Native and each token have their own total; wei-sized sums stay exact."""
    big = 2**70 + 1
    token, sid = session(
        mgr,
        db,
        {"max_total_amount": {"native": 2 * big, EVM_TOKEN: 100}},
        chain="evm",
    )
    charge(mgr, db, token, Transfer(to=EVM_TO, amount=big), network="sepolia")
    charge(mgr, db, token, Transfer(to=EVM_TO, amount=big), network="sepolia")
    usage = charge(
        mgr,
        db,
        token,
        TokenTransfer(token=EVM_TOKEN.lower(), to=EVM_TO, amount=100),
        network="sepolia",
    )
    assert usage.totals == {NATIVE: 2 * big, EVM_TOKEN.lower(): 100}
    assert stored_usage(db, sid)["totals"][NATIVE] == str(2 * big)
    with pytest.raises(ConstraintViolationError):
        charge(mgr, db, token, Transfer(to=EVM_TO, amount=1), network="sepolia")
    # An approval counts its full allowance (the spender may take it all): over the total.
    with pytest.raises(ConstraintViolationError) as exc:
        charge(
            mgr,
            db,
            token,
            Approve(token=EVM_TOKEN, spender=EVM_TO, amount=10**9),
            network="sepolia",
        )
    assert exc.value.constraint == "max_total_amount"
    assert stored_usage(db, sid)["totals"][EVM_TOKEN.lower()] == "100"


def test_amounts_come_from_the_policy_engines_spend(mgr: SessionManager, db: Database) -> None:
    """Charges use waiaas.policy.spend_of, the figures the pipeline later releases."""
    from waiaas.policy import spend_of

    token, _ = session(mgr, db, {}, chain="evm")
    requests = [
        Transfer(to=EVM_TO, amount=5),
        ContractCall(to=EVM_TO, value=3),
        ContractCall(to=EVM_TO),
        TokenTransfer(token=EVM_TOKEN, to=EVM_TO, amount=7),
        Approve(token=EVM_TOKEN, spender=EVM_TO, amount=9),
    ]
    expected: dict[str, int] = {}
    for req in requests:
        for key, value in spend_of(req, "evm").items():
            expected[key] = expected.get(key, 0) + value
        usage = charge(mgr, db, token, req, network="sepolia")
    # approvals count their full allowance against the token's total
    assert usage.totals == {NATIVE: 8, EVM_TOKEN.lower(): 7 + 9} == expected


def test_per_request_cap_also_bounds_approvals(mgr: SessionManager, db: Database) -> None:
    """An allowance above max_amount_per_tx for its token is refused."""
    token, _ = session(mgr, db, {"max_amount_per_tx": {EVM_TOKEN: 100}}, chain="evm")
    charge(mgr, db, token, Approve(token=EVM_TOKEN, spender=EVM_TO, amount=100), network="sepolia")
    with pytest.raises(ConstraintViolationError) as exc:
        charge(
            mgr, db, token, Approve(token=EVM_TOKEN, spender=EVM_TO, amount=101), network="sepolia"
        )
    assert exc.value.constraint == "max_amount_per_tx"


def test_evm_addresses_compare_case_insensitively(mgr: SessionManager, db: Database) -> None:
    """An EVM allow-list given checksummed matches the same address in lower case."""
    token, _ = session(mgr, db, {"allowed_addresses": [EVM_TO]}, chain="evm")
    charge(mgr, db, token, Transfer(to=EVM_TO.lower(), amount=1), network="sepolia")
    charge(mgr, db, token, Approve(token=EVM_TOKEN, spender=EVM_TO, amount=1), network="sepolia")
    with pytest.raises(ConstraintViolationError):
        charge(mgr, db, token, ContractCall(to=EVM_TOKEN), network="sepolia")


def test_batch_checks_every_item(mgr: SessionManager, db: Database) -> None:
    """A batch passes only if BATCH and each inner type and destination are allowed."""
    token, _ = session(
        mgr,
        db,
        {
            "allowed_tx_types": ["BATCH", "TRANSFER", "TOKEN_TRANSFER"],
            "allowed_addresses": [SOL_TO],
            "max_amount_per_tx": {"native": 5, SOL_MINT: 50},
        },
    )
    batch = Batch(
        requests=(
            Transfer(to=SOL_TO, amount=2),
            Transfer(to=SOL_TO, amount=3),
            TokenTransfer(token=SOL_MINT, to=SOL_TO, amount=50),
        )
    )
    usage = charge(mgr, db, token, batch)
    assert (usage.tx_count, usage.totals) == (1, {NATIVE: 5, SOL_MINT: 50})
    over = Batch(requests=(Transfer(to=SOL_TO, amount=3), Transfer(to=SOL_TO, amount=3)))
    with pytest.raises(ConstraintViolationError) as exc:
        charge(mgr, db, token, over)
    assert exc.value.constraint == "max_amount_per_tx"


def test_explicit_asset_and_amount(mgr: SessionManager, db: Database) -> None:
    """The caller may name the asset and amount; giving only one is refused."""
    token, _ = session(mgr, db, {"max_total_amount": {SOL_MINT: 10}})
    req = ContractCall(to=SOL_TO)
    usage = charge(mgr, db, token, req, asset=SOL_MINT, amount=10)
    assert usage.totals == {SOL_MINT: 10}
    with pytest.raises(ConstraintViolationError):
        charge(mgr, db, token, req, asset=SOL_MINT, amount=1)
    with pytest.raises(InvalidInputError):
        charge(mgr, db, token, req, asset=SOL_MINT)
    with pytest.raises(InvalidInputError):
        charge(mgr, db, token, req, amount=1)
    with pytest.raises(InvalidInputError):
        charge(mgr, db, token, req, asset=NATIVE, amount=-1)
    with pytest.raises(InvalidAddressError):
        charge(mgr, db, token, req, asset="not-a-mint", amount=1)


def test_bad_arguments(mgr: SessionManager, db: Database) -> None:
    """Non-session, non-request, blank network or bad ``now`` are InvalidInputError."""
    token, _ = session(mgr, db, {})
    with db.write() as uow:
        v = mgr.verify_in(uow, token, T0)
        req = Transfer(to=SOL_TO, amount=1)
        for kwargs, field in (
            ({"verified": "x"}, "verified"),
            ({"request": {"to": SOL_TO}}, "request"),
            ({"network": ""}, "network"),
            ({"now": "now"}, "now"),
        ):
            args: dict[str, Any] = {"verified": v, "request": req, "network": "devnet", "now": T0}
            args.update(kwargs)
            with pytest.raises(InvalidInputError) as exc:
                mgr.enforce_and_record(
                    uow, args["verified"], args["request"], network=args["network"], now=args["now"]
                )
            assert exc.value.field == field


# --------------------------------------------------------------------------- atomicity


def test_usage_commits_or_rolls_back_with_the_callers_transaction(
    mgr: SessionManager, db: Database
) -> None:
    """Usage is written in the caller's unit of work: no commit, no usage."""
    token, sid = session(mgr, db, {"max_tx_count": 1})
    charge(mgr, db, token, Transfer(to=SOL_TO, amount=4), commit=False)
    assert stored_usage(db, sid)["tx_count"] == 0
    with pytest.raises(RuntimeError), db.write() as uow:
        v = mgr.verify_in(uow, token, T0 + 1)
        mgr.enforce_and_record(uow, v, Transfer(to=SOL_TO, amount=4), network="devnet", now=T0)
        raise RuntimeError("the chain adapter blew up")
    assert stored_usage(db, sid)["tx_count"] == 0
    charge(mgr, db, token, Transfer(to=SOL_TO, amount=4))
    assert stored_usage(db, sid)["tx_count"] == 1


def test_concurrent_requests_cannot_overshoot(mgr: SessionManager, db: Database) -> None:
    """Eight threads race for a budget of three requests: exactly three win."""
    token, sid = session(mgr, db, {"max_total_amount": 30})
    wins: list[int] = []
    losses: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            charge(mgr, db, token, Transfer(to=SOL_TO, amount=10))
            wins.append(1)
        except ConstraintViolationError as exc:
            losses.append(exc.constraint)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 3
    assert losses == ["max_total_amount"] * 5
    assert stored_usage(db, sid)["totals"] == {NATIVE: "30"}


def test_usage_read_before_the_lock_cannot_overshoot(mgr: SessionManager, db: Database) -> None:
    """The usage is charged on the values verification read, written only if the row still
    holds them: sessions verified before another request was charged (stale usage) never
    let more than ``max_tx_count`` requests through."""
    token, sid = session(mgr, db, {"max_tx_count": 2})
    stale = []
    for _ in range(4):
        with db.read() as uow:
            stale.append(mgr.verify_in(uow, token, T0 + 1))
    assert {v.usage.tx_count for v in stale} == {0}
    refused = []
    for v in stale:
        try:
            with db.write() as uow:
                mgr.enforce_and_record(
                    uow, v, Transfer(to=SOL_TO, amount=1), network="devnet", now=T0 + 1
                )
                uow.commit()
        except ConstraintViolationError as exc:
            refused.append(exc.constraint)
    assert refused == ["max_tx_count"] * 2
    assert stored_usage(db, sid)["tx_count"] == 2


def test_two_processes_racing_cannot_overshoot(db: Database) -> None:
    """Two wallets on one file (two processes), each with its own verified-token cache,
    race eight requests for a session allowed three: exactly three are charged."""
    secrets = MemorySecretStore()
    mine = SessionManager(db, secrets, FrozenClock(), WalletConfig())
    other_db = Database.open(target_of(db))  # the same database, on either backend
    try:
        other = SessionManager(other_db, secrets, FrozenClock(), WalletConfig())
        token, sid = session(mine, db, {"max_tx_count": 3})
        for m, d in ((mine, db), (other, other_db)):  # both remember the token
            with d.read() as uow:
                m.verify_in(uow, token, T0 + 1)
        wins: list[int] = []
        losses: list[str] = []
        barrier = threading.Barrier(8)

        def worker(m: SessionManager, d: Database) -> None:
            barrier.wait()
            try:
                charge(m, d, token, Transfer(to=SOL_TO, amount=1))
                wins.append(1)
            except ConstraintViolationError as exc:
                losses.append(exc.constraint)

        threads = [
            threading.Thread(target=worker, args=(mine, db) if i % 2 else (other, other_db))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 3
        assert losses == ["max_tx_count"] * 5
        assert stored_usage(db, sid)["tx_count"] == 3
    finally:
        other_db.close()


def test_revoked_or_deleted_session_cannot_be_charged(mgr: SessionManager, db: Database) -> None:
    """A VerifiedSession kept past a revocation or deletion is refused at enforcement."""
    token, sid = session(mgr, db, {})
    with db.read() as uow:
        v = mgr.verify_in(uow, token, T0)
    mgr.revoke(sid, actor="owner")
    with pytest.raises(TokenRevokedError), db.write() as uow:
        mgr.enforce_and_record(uow, v, Transfer(to=SOL_TO, amount=1), network="devnet", now=T0)
    with db.write() as uow:
        row = uow.sessions.get(sid)
        uow.session.delete(row)
        uow.commit()
    with pytest.raises(AuthError) as exc, db.write() as uow:
        mgr.enforce_and_record(uow, v, Transfer(to=SOL_TO, amount=1), network="devnet", now=T0)
    assert exc.value.reason == "unknown session"


# --------------------------------------------------------------------------- release


def test_release_gives_back_amounts_not_counts(mgr: SessionManager, db: Database) -> None:
    """After a failed transaction the amount is available again; the count is not."""
    token, sid = session(mgr, db, {"max_total_amount": 10, "max_tx_count": 5}, chain="solana")
    charge(mgr, db, token, Transfer(to=SOL_TO, amount=10))
    charge(mgr, db, token, TokenTransfer(token=SOL_MINT, to=SOL_TO, amount=8))
    with db.write() as uow:
        usage = mgr.release(uow, sid, NATIVE, 10)
        uow.commit()
    assert usage is not None
    assert (usage.tx_count, usage.totals) == (2, {SOL_MINT: 8})
    with db.write() as uow:
        usage = mgr.release(uow, sid, SOL_MINT, 3)
        uow.commit()
    assert usage is not None and usage.totals == {SOL_MINT: 5}
    charge(mgr, db, token, Transfer(to=SOL_TO, amount=10))
    assert stored_usage(db, sid)["tx_count"] == 3


def test_release_normalises_and_clamps(
    mgr: SessionManager, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Token keys are normalised like at charge time; totals never go below zero."""
    token, sid = session(mgr, db, {}, chain="evm")
    charge(mgr, db, token, TokenTransfer(token=EVM_TOKEN, to=EVM_TO, amount=4), network="sepolia")
    with db.write() as uow:
        usage = mgr.release(uow, sid, EVM_TOKEN.lower(), 1)
        assert usage is not None and usage.totals == {EVM_TOKEN.lower(): 3}
        usage = mgr.release(uow, sid, EVM_TOKEN, 100)
        assert usage is not None and usage.totals == {}
        uow.commit()
    assert "releasing 100" in caplog.text
    with db.write() as uow:
        assert mgr.release(uow, new_id(), NATIVE, 1) is None
        with pytest.raises(InvalidInputError):
            mgr.release(uow, sid, NATIVE, -1)
        with pytest.raises(InvalidInputError):
            mgr.release(uow, sid, "", 1)


# --------------------------------------------------------------------------- properties


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["charge", "release"]), st.integers(0, 2**80)),
        min_size=1,
        max_size=12,
    ),
    cap=st.integers(0, 2**81),
)
def test_total_never_exceeds_cap_and_matches_a_model(
    mgr: SessionManager, db: Database, ops: list[tuple[str, int]], cap: int
) -> None:
    """Any sequence of charges and releases keeps the total exact and under the cap."""
    token, sid = session(mgr, db, {"max_total_amount": cap})
    model = 0
    for op, amount in ops:
        if op == "charge":
            try:
                charge(mgr, db, token, Transfer(to=SOL_TO, amount=amount))
                model += amount
            except ConstraintViolationError:
                assert model + amount > cap
        else:
            with db.write() as uow:
                mgr.release(uow, sid, NATIVE, amount)
                uow.commit()
            model = max(model - amount, 0)
        total = int(stored_usage(db, sid)["totals"].get(NATIVE, "0"))
        assert total == model <= cap


def test_constraint_model_round_trips_through_json() -> None:
    """What is stored is what is read back, with amounts as decimal strings."""
    c = SessionConstraints(
        max_amount_per_tx={"native": 2**90},
        max_total_amount=5,
        max_tx_count=2,
        allowed_tx_types=["APPROVE", "TRANSFER"],  # type: ignore[list-item]
        allowed_networks=["devnet"],  # type: ignore[arg-type]
    )
    text = c.model_dump_json()
    assert json.loads(text)["max_amount_per_tx"] == {"native": str(2**90)}
    assert SessionConstraints.model_validate_json(text) == c
