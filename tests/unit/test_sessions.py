"""Sessions: issue, verify, renew, revoke, expiry sweep, on a real SQLite file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa

from tests.support import sessions as shared
from tests.support.sessions import T0, FrozenClock, MemorySecretStore
from waiaas.config import KdfLimits, WalletConfig
from waiaas.db import Database
from waiaas.db.repositories import AuditRecord
from waiaas.db.tables import AgentRow, SessionRow
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    InvalidAddressError,
    InvalidInputError,
    KeystoreError,
    KeystoreLockedError,
    NotFoundError,
    StateError,
    StorageError,
    TokenExpiredError,
    TokenRevokedError,
)
from waiaas.ids import new_id
from waiaas.keystore import Keystore
from waiaas.keystore.keys import b58encode
from waiaas.sessions import (
    JWT_SECRET_NAME,
    IssuedSession,
    SecretStore,
    SessionConstraints,
    SessionManager,
    SessionUsage,
)

# shared fixtures: a migrated template and a fresh copy of it per test
migrated = shared.migrated
db = shared.db

_BATCH = 500  # the sweep works in batches of this size
EVM_ADDR = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def store() -> MemorySecretStore:
    return MemorySecretStore()


@pytest.fixture
def config() -> WalletConfig:
    return WalletConfig(session_ttl=3600, session_max_renewals=3, session_absolute_lifetime=86_400)


@pytest.fixture
def mgr(
    db: Database, store: MemorySecretStore, clock: FrozenClock, config: WalletConfig
) -> SessionManager:
    return SessionManager(db, store, clock, config)


def add_agent(
    db: Database, *, chain: str = "solana", network: str = "devnet", status: str = "ACTIVE"
) -> str:
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
                status=status,
                created_at=T0,
                updated_at=T0,
            )
        )
        uow.commit()
    return agent_id


def audit_rows(db: Database, event: str) -> list[AuditRecord]:
    with db.read() as uow:
        return list(reversed(uow.audit.query(event_types=[event], limit=10_000)))


def session_row(db: Database, session_id: str) -> SessionRow:
    with db.read() as uow:
        row = uow.sessions.get(session_id)
        assert row is not None
        return row


def set_agent_status(db: Database, agent_id: str, status: str) -> None:
    with db.write() as uow:
        uow.agents.update_fields(agent_id, status=status)
        uow.commit()


# --------------------------------------------------------------------------- construction


def test_constructor_validates_its_collaborators(
    db: Database, store: MemorySecretStore, clock: FrozenClock, config: WalletConfig
) -> None:
    """Each wrong collaborator is named in the InvalidInputError."""
    with pytest.raises(InvalidInputError) as e1:
        SessionManager("db", store, clock, config)  # type: ignore[arg-type]
    assert e1.value.field == "db"
    with pytest.raises(InvalidInputError) as e2:
        SessionManager(db, object(), clock, config)  # type: ignore[arg-type]
    assert e2.value.field == "secrets"
    with pytest.raises(InvalidInputError) as e3:
        SessionManager(db, store, object(), config)  # type: ignore[arg-type]
    assert e3.value.field == "clock"
    with pytest.raises(InvalidInputError) as e4:
        SessionManager(db, store, clock, {})  # type: ignore[arg-type]
    assert e4.value.field == "config"
    assert isinstance(store, SecretStore)


# --------------------------------------------------------------------------- issue


def test_issue_returns_hs256_jwt_with_required_claims(
    mgr: SessionManager, db: Database, store: MemorySecretStore, config: WalletConfig
) -> None:
    """The token is HS256 over sub/sid/iat/exp/jti, signed with the wallet secret."""
    agent = add_agent(db)
    issued = mgr.issue(agent)
    assert jwt.get_unverified_header(issued.token) == {"alg": "HS256", "typ": "JWT"}
    secret = store.data[JWT_SECRET_NAME]
    claims = jwt.decode(issued.token, secret, algorithms=["HS256"], options={"verify_exp": False})
    assert set(claims) == {"sub", "sid", "iat", "exp", "jti"}
    assert claims["sub"] == agent
    assert claims["sid"] == issued.session_id
    assert claims["iat"] == T0
    assert claims["exp"] == T0 + config.session_ttl == issued.expires_at
    assert len(claims["jti"]) >= 16
    assert issued.agent_id == agent
    assert issued.constraints == SessionConstraints()


def test_secret_is_32_random_bytes_created_once_and_shared(
    db: Database, store: MemorySecretStore, clock: FrozenClock, config: WalletConfig
) -> None:
    """First issue creates the secret; later issues and other managers reuse it."""
    agent = add_agent(db)
    first = SessionManager(db, store, clock, config)
    a = first.issue(agent)
    first.issue(agent)
    assert store.puts == 1
    assert len(store.data[JWT_SECRET_NAME]) == 32
    second = SessionManager(db, store, clock, config)
    assert second.verify(a.token).session_id == a.session_id
    assert store.puts == 1


@pytest.mark.sqlite_only  # the database files; the rows on either backend: the test below
def test_only_the_token_hash_is_stored(mgr: SessionManager, db: Database) -> None:
    """The row holds SHA-256(token) hex; the token's bytes are nowhere in the database files."""
    agent = add_agent(db)
    issued = mgr.issue(agent)
    row = session_row(db, issued.session_id)
    assert row.token_hash == hashlib.sha256(issued.token.encode()).hexdigest()
    files = [p for p in db.path.parent.iterdir() if p.name.startswith(db.path.name)]
    signature = issued.token.rsplit(".", 1)[1].encode()
    for path in files:
        data = path.read_bytes()
        assert issued.token.encode() not in data
        assert signature not in data


def test_no_row_holds_the_token(mgr: SessionManager, db: Database) -> None:
    """On either backend: no column of any row, in any table, holds the token or its
    signature (only SHA-256(token) is stored)."""
    agent = add_agent(db)
    issued = mgr.issue(agent)
    signature = issued.token.rsplit(".", 1)[1]
    tables = sa.inspect(db.engine).get_table_names()
    assert "sessions" in tables and "audit_log" in tables
    seen = 0
    with db.read() as uow:
        for table in tables:
            for row in uow.session.execute(sa.text(f'SELECT * FROM "{table}"')):
                for value in row:
                    shown = value.hex() if isinstance(value, bytes) else str(value)
                    assert issued.token not in shown and signature not in shown, table
                    seen += 1
    assert seen > 0


def test_each_token_has_a_distinct_jti(mgr: SessionManager, db: Database) -> None:
    """Two sessions issued in the same second never share a jti or a hash."""
    agent = add_agent(db)
    a, b = mgr.issue(agent), mgr.issue(agent)
    ja = jwt.decode(a.token, options={"verify_signature": False})["jti"]
    jb = jwt.decode(b.token, options={"verify_signature": False})["jti"]
    assert ja != jb
    assert session_row(db, a.session_id).token_hash != session_row(db, b.session_id).token_hash


def test_issue_writes_audit_row_with_session_id_only(mgr: SessionManager, db: Database) -> None:
    """SESSION_ISSUED names the session and agent, never the token or its hash."""
    agent = add_agent(db)
    issued = mgr.issue(agent, ttl=120, constraints={"max_tx_count": 3}, actor="cli")
    (row,) = audit_rows(db, "SESSION_ISSUED")
    assert row.session_id == issued.session_id
    assert row.agent_id == agent
    assert row.actor == "cli"
    details = json.loads(row.details)
    assert details == {"expires_at": T0 + 120, "constraints": {"max_tx_count": 3}}
    token_hash = session_row(db, issued.session_id).token_hash
    assert issued.token not in row.details
    assert token_hash not in row.details


def test_custom_ttl_and_limits(mgr: SessionManager, db: Database, config: WalletConfig) -> None:
    """ttl is honoured; zero, negative, bool, str or above the absolute lifetime are refused."""
    agent = add_agent(db)
    assert mgr.issue(agent, ttl=60).expires_at == T0 + 60
    top = config.session_absolute_lifetime
    assert mgr.issue(agent, ttl=top).expires_at == T0 + top
    for bad in (0, -5, True, "60", 1.5, top + 1):
        with pytest.raises(InvalidInputError) as exc:
            mgr.issue(agent, ttl=bad)  # type: ignore[arg-type]
        assert exc.value.field == "ttl"


def test_default_ttl_is_capped_by_absolute_lifetime(
    db: Database, store: MemorySecretStore, clock: FrozenClock
) -> None:
    """A config whose default ttl exceeds the absolute lifetime issues capped sessions."""
    cfg = WalletConfig(session_ttl=5000, session_absolute_lifetime=1000)
    agent = add_agent(db)
    assert SessionManager(db, store, clock, cfg).issue(agent).expires_at == T0 + 1000


@pytest.mark.parametrize("status", ["CREATING", "SUSPENDED", "TERMINATING", "TERMINATED"])
def test_non_active_agent_gets_no_session(mgr: SessionManager, db: Database, status: str) -> None:
    """Only an ACTIVE agent can get a session; nothing is written otherwise."""
    agent = add_agent(db, status=status)
    with pytest.raises(AgentNotActiveError) as exc:
        mgr.issue(agent)
    assert exc.value.agent_id == agent
    assert exc.value.status == status
    assert mgr.list_for_agent(agent) == []
    assert audit_rows(db, "SESSION_ISSUED") == []


def test_issue_for_unknown_agent_or_bad_input(mgr: SessionManager, db: Database) -> None:
    """Unknown agent: NotFoundError; blank ids or actors: InvalidInputError."""
    with pytest.raises(NotFoundError) as exc:
        mgr.issue(new_id())
    assert exc.value.entity == "agent"
    agent = add_agent(db)
    for kwargs, field in (({"actor": ""}, "actor"), ({"actor": 5}, "actor")):
        with pytest.raises(InvalidInputError) as bad:
            mgr.issue(agent, **kwargs)
        assert bad.value.field == field
    with pytest.raises(InvalidInputError):
        mgr.issue("  ")
    with pytest.raises(InvalidInputError):
        mgr.issue(None)  # type: ignore[arg-type]


def test_constraints_are_validated_with_every_problem(mgr: SessionManager, db: Database) -> None:
    """Unknown fields and bad values are all listed; a typo fails closed."""
    agent = add_agent(db)
    with pytest.raises(InvalidInputError) as exc:
        mgr.issue(
            agent,
            constraints={"max_tx_cnt": 3, "max_amount_per_tx": 1.5, "allowed_tx_types": ["SWAP"]},
        )
    assert exc.value.field == "constraints"
    text = " ".join(exc.value.problems)
    assert "max_tx_cnt" in text
    assert "max_amount_per_tx" in text
    assert "allowed_tx_types" in text
    with pytest.raises(InvalidInputError):
        mgr.issue(agent, constraints={"max_tx_count": True})
    with pytest.raises(InvalidInputError):
        mgr.issue(agent, constraints={"max_tx_count": -1})
    with pytest.raises(InvalidInputError):
        mgr.issue(agent, constraints={"allowed_networks": "devnet"})
    with pytest.raises(InvalidInputError):
        mgr.issue(agent, constraints={"allowed_networks": ["devnet", 7]})
    with pytest.raises(InvalidInputError):
        mgr.issue(agent, constraints={"allowed_addresses": [" "]})
    with pytest.raises(InvalidInputError):
        mgr.issue(agent, constraints=[("max_tx_count", 1)])  # type: ignore[arg-type]
    assert mgr.list_for_agent(agent) == []


def test_constraints_are_normalised_for_the_agent_chain(mgr: SessionManager, db: Database) -> None:
    """EVM addresses and token keys are stored lower-case; bare amounts mean native."""
    agent = add_agent(db, chain="evm", network="sepolia")
    issued = mgr.issue(
        agent,
        constraints={
            "max_amount_per_tx": 10**30,
            "max_total_amount": {EVM_ADDR: "5000", "native": 7},
            "allowed_addresses": [EVM_ADDR, EVM_ADDR.lower()],
            "allowed_tx_types": ["TRANSFER", "TRANSFER", "APPROVE"],
            "allowed_networks": ["sepolia"],
        },
    )
    c = issued.constraints
    assert c.max_amount_per_tx == {"native": 10**30}
    assert c.max_total_amount == {EVM_ADDR.lower(): 5000, "native": 7}
    assert c.allowed_addresses == (EVM_ADDR.lower(),)
    assert [t.value for t in c.allowed_tx_types or ()] == ["APPROVE", "TRANSFER"]
    stored = json.loads(session_row(db, issued.session_id).constraints or "")
    assert stored["max_amount_per_tx"] == {"native": str(10**30)}
    assert mgr.get(issued.session_id).constraints == c


def test_constraint_addresses_must_be_valid_on_the_chain(mgr: SessionManager, db: Database) -> None:
    """A Solana session cannot allow an EVM address, nor a token key that is no address."""
    agent = add_agent(db, chain="solana")
    with pytest.raises(InvalidAddressError) as exc:
        mgr.issue(agent, constraints={"allowed_addresses": [EVM_ADDR]})
    assert exc.value.field == "constraints.allowed_addresses"
    with pytest.raises(InvalidAddressError):
        mgr.issue(agent, constraints={"max_total_amount": {"not-a-mint": 1}})
    evm = add_agent(db, chain="evm")
    with pytest.raises(InvalidInputError):  # the same token twice, in two spellings
        mgr.issue(evm, constraints={"max_total_amount": {EVM_ADDR: 1, EVM_ADDR.lower(): 2}})


def test_issued_session_masks_token(mgr: SessionManager, db: Database) -> None:
    """repr() and str() never show the token."""
    issued = mgr.issue(add_agent(db))
    for text in (repr(issued), str(issued), f"{issued}", repr([issued])):
        assert issued.token not in text
        assert "***" in text
    assert issued.session_id in repr(issued)
    assert isinstance(issued, IssuedSession)


# --------------------------------------------------------------------------- verify


def test_verify_returns_the_session(mgr: SessionManager, db: Database) -> None:
    """A good token yields its session, agent chain/network, constraints and usage."""
    agent = add_agent(db, chain="solana", network="devnet")
    issued = mgr.issue(agent, constraints={"max_tx_count": 2})
    v = mgr.verify(issued.token)
    assert (v.session_id, v.agent_id, v.chain, v.network) == (
        issued.session_id,
        agent,
        "solana",
        "devnet",
    )
    assert v.issued_at == T0
    assert v.expires_at == issued.expires_at
    assert v.constraints.max_tx_count == 2
    assert v.usage == SessionUsage()
    assert audit_rows(db, "AUTH_FAILED") == []


def test_verify_uses_the_wallet_clock(
    mgr: SessionManager, db: Database, clock: FrozenClock
) -> None:
    """Expiry is judged by the wallet clock or an explicit ``now``, never the system clock."""
    issued = mgr.issue(add_agent(db), ttl=100)
    assert mgr.verify(issued.token, now=T0 + 99).session_id == issued.session_id
    with pytest.raises(TokenExpiredError):
        mgr.verify(issued.token, now=T0 + 100)
    clock.t = T0 + 50
    assert mgr.verify(issued.token).session_id == issued.session_id
    clock.t = T0 + 10_000
    with pytest.raises(TokenExpiredError) as exc:
        mgr.verify(issued.token)
    assert exc.value.session_id == issued.session_id
    with pytest.raises(InvalidInputError):
        mgr.verify(issued.token, now="soon")  # type: ignore[arg-type]


def test_verify_refuses_when_agent_is_suspended(mgr: SessionManager, db: Database) -> None:
    """A good token of a SUSPENDED agent: AgentNotActiveError and an AUTH_FAILED row."""
    agent = add_agent(db)
    issued = mgr.issue(agent)
    set_agent_status(db, agent, "SUSPENDED")
    with pytest.raises(AgentNotActiveError) as exc:
        mgr.verify(issued.token)
    assert exc.value.status == "SUSPENDED"
    (row,) = audit_rows(db, "AUTH_FAILED")
    assert row.session_id == issued.session_id
    assert row.agent_id == agent
    assert json.loads(row.details)["reason"] == "agent is SUSPENDED"
    set_agent_status(db, agent, "ACTIVE")
    assert mgr.verify(issued.token).agent_id == agent


def test_verify_in_writes_nothing_and_record_failure_commits(
    mgr: SessionManager, db: Database
) -> None:
    """verify_in raises without writing; record_failure commits the AUTH_FAILED row."""
    agent = add_agent(db)
    issued = mgr.issue(agent)
    mgr.revoke(issued.session_id, actor="owner")
    with pytest.raises(TokenRevokedError) as exc, db.write() as uow:
        mgr.verify_in(uow, issued.token, T0)
    assert audit_rows(db, "AUTH_FAILED") == []
    mgr.record_failure(exc.value, now=T0 + 1)
    (row,) = audit_rows(db, "AUTH_FAILED")
    assert row.timestamp == T0 + 1
    assert row.session_id == issued.session_id
    assert row.actor == f"agent:{agent}"
    assert json.loads(row.details) == {"reason": "session revoked", "code": "TOKEN_REVOKED"}
    with pytest.raises(InvalidInputError):
        mgr.record_failure(ValueError("x"))  # type: ignore[arg-type]


def test_verify_in_inside_a_write_unit_of_work(mgr: SessionManager, db: Database) -> None:
    """The pipeline can verify inside its own (write) transaction."""
    issued = mgr.issue(add_agent(db))
    with db.write() as uow:
        v = mgr.verify_in(uow, issued.token, T0 + 1)
        assert v.session_id == issued.session_id


def test_verify_before_any_issue_is_refused_without_creating_a_secret(
    mgr: SessionManager, store: MemorySecretStore, db: Database
) -> None:
    """With no secret yet, every token is refused and no secret is created by verify."""
    forged = jwt.encode(
        {"sub": "a", "sid": "s", "iat": T0, "exp": T0 + 9, "jti": "j" * 22},
        os.urandom(32),
        algorithm="HS256",
    )
    with pytest.raises(AuthError) as exc:
        mgr.verify(forged)
    assert exc.value.reason == "bad signature"
    assert store.data == {}
    assert len(audit_rows(db, "AUTH_FAILED")) == 1


def test_malformed_stored_secret_is_a_keystore_error(
    mgr: SessionManager, store: MemorySecretStore, db: Database
) -> None:
    """A secret shorter than 32 bytes in the store is refused loudly."""
    store.data[JWT_SECRET_NAME] = b"short"
    with pytest.raises(KeystoreError):
        mgr.issue(add_agent(db))


# --------------------------------------------------------------------------- real keystore


def test_with_the_real_keystore(
    tmp_path: Path, db: Database, clock: FrozenClock, config: WalletConfig
) -> None:
    """The keystore seals the secret; a locked keystore stops issue and uncached verify."""
    ks = Keystore.create(tmp_path / "ks", "correct horse", kdf=KdfLimits.minimum())
    agent = add_agent(db)
    mgr = SessionManager(db, ks, clock, config)
    issued = mgr.issue(agent)
    assert JWT_SECRET_NAME in ks.secret_names()
    sealed = b"".join(p.read_bytes() for p in (tmp_path / "ks").rglob("*") if p.is_file())
    assert ks.get_secret(JWT_SECRET_NAME) not in sealed
    assert mgr.verify(issued.token).agent_id == agent

    ks.lock()
    assert mgr.verify(issued.token).agent_id == agent  # held in memory
    mgr.forget_secret()
    with pytest.raises(KeystoreLockedError):
        mgr.verify(issued.token)
    with pytest.raises(KeystoreLockedError):
        SessionManager(db, ks, clock, config).issue(agent)
    assert audit_rows(db, "AUTH_FAILED") == []

    ks.unlock("correct horse")
    reopened = SessionManager(db, ks, clock, config)
    assert reopened.verify(issued.token).session_id == issued.session_id
    ks.lock()


# --------------------------------------------------------------------------- renew


def test_renew_replaces_the_token(mgr: SessionManager, db: Database, clock: FrozenClock) -> None:
    """The new token works, the old one is refused at once, the session id is kept."""
    agent = add_agent(db)
    issued = mgr.issue(agent, ttl=600, constraints={"max_tx_count": 4})
    clock.t = T0 + 100
    renewed = mgr.renew(issued.token)
    assert renewed.session_id == issued.session_id
    assert renewed.token != issued.token
    assert renewed.expires_at == T0 + 100 + 600
    assert renewed.constraints == issued.constraints
    assert mgr.verify(renewed.token).expires_at == renewed.expires_at
    with pytest.raises(TokenRevokedError) as exc:
        mgr.verify(issued.token)
    assert exc.value.reason == "token replaced by a renewal"
    usage = mgr.get(issued.session_id).usage
    assert (usage.renewals, usage.renewed_at) == (1, T0 + 100)
    (row,) = audit_rows(db, "SESSION_RENEWED")
    assert row.session_id == issued.session_id
    assert row.actor == f"agent:{agent}"
    assert json.loads(row.details) == {"expires_at": T0 + 700, "renewals": 1}
    assert renewed.token not in row.details


def test_renew_limit(mgr: SessionManager, db: Database, config: WalletConfig) -> None:
    """After session_max_renewals renewals, renew is refused and the token stays valid."""
    token = mgr.issue(add_agent(db)).token
    for _ in range(config.session_max_renewals):
        token = mgr.renew(token).token
    with pytest.raises(StateError) as exc:
        mgr.renew(token)
    assert exc.value.reason == "max_renewals"
    assert mgr.verify(token).usage.renewals == config.session_max_renewals
    assert len(audit_rows(db, "SESSION_RENEWED")) == config.session_max_renewals


def test_renew_never_passes_the_absolute_lifetime(
    db: Database, store: MemorySecretStore, clock: FrozenClock
) -> None:
    """Renewal is capped at issue + absolute lifetime, counted from the FIRST issue."""
    cfg = WalletConfig(session_ttl=600, session_absolute_lifetime=1000, session_max_renewals=50)
    mgr = SessionManager(db, store, clock, cfg)
    issued = mgr.issue(add_agent(db))
    clock.t = T0 + 500
    renewed = mgr.renew(issued.token)
    assert renewed.expires_at == T0 + 1000
    clock.t = T0 + 999
    again = mgr.renew(renewed.token)
    assert again.expires_at == T0 + 1000
    clock.t = T0 + 1000
    with pytest.raises(TokenExpiredError):
        mgr.renew(again.token)
    # A lifetime lowered by configuration after issue is enforced too.
    issued2 = mgr.issue(add_agent(db))
    shorter = SessionManager(
        db, store, clock, WalletConfig(session_ttl=600, session_absolute_lifetime=10)
    )
    clock.t += 20
    with pytest.raises(StateError) as exc:
        shorter.renew(issued2.token)
    assert exc.value.reason == "absolute_lifetime"


def test_renew_refused_token_is_audited(mgr: SessionManager, db: Database) -> None:
    """A revoked token cannot be renewed; the refusal is an AUTH_FAILED row."""
    issued = mgr.issue(add_agent(db))
    mgr.revoke(issued.session_id, actor="owner")
    with pytest.raises(TokenRevokedError):
        mgr.renew(issued.token)
    assert [json.loads(r.details)["reason"] for r in audit_rows(db, "AUTH_FAILED")] == [
        "session revoked"
    ]
    assert audit_rows(db, "SESSION_RENEWED") == []


# --------------------------------------------------------------------------- revoke


def test_revoke(mgr: SessionManager, db: Database, clock: FrozenClock) -> None:
    """Revoked tokens are refused; revoking twice writes one audit row."""
    agent = add_agent(db)
    issued = mgr.issue(agent)
    clock.t = T0 + 5
    mgr.revoke(issued.session_id, actor="owner", reason="lost laptop")
    mgr.revoke(issued.session_id, actor="owner")
    with pytest.raises(TokenRevokedError):
        mgr.verify(issued.token)
    (row,) = audit_rows(db, "SESSION_REVOKED")
    assert (row.actor, row.session_id, row.agent_id) == ("owner", issued.session_id, agent)
    assert json.loads(row.details) == {"reason": "lost laptop"}
    info = mgr.get(issued.session_id)
    assert (info.status, info.revoked_at) == ("revoked", T0 + 5)
    with pytest.raises(NotFoundError):
        mgr.revoke(new_id(), actor="owner")
    with pytest.raises(InvalidInputError):
        mgr.revoke(issued.session_id, actor="")


def test_revoke_all_for_agent_in_callers_unit_of_work(mgr: SessionManager, db: Database) -> None:
    """Only the agent's live sessions are revoked, and only if the caller commits."""
    agent, other = add_agent(db), add_agent(db)
    live = [mgr.issue(agent), mgr.issue(agent)]
    gone = mgr.issue(agent, ttl=10)
    mgr.revoke(mgr.issue(agent).session_id, actor="owner")
    theirs = mgr.issue(other)
    now = T0 + 20  # ``gone`` has expired by then
    with db.write() as uow:
        assert mgr.revoke_all_for_agent(uow, agent, now, "kill switch") == 2
        # not committed: rolled back
    assert mgr.verify(live[0].token, now=now).agent_id == agent
    with db.write() as uow:
        assert mgr.revoke_all_for_agent(uow, agent, now, "kill switch") == 2
        uow.commit()
    for s in live:
        with pytest.raises(TokenRevokedError):
            mgr.verify(s.token, now=now)
    assert mgr.get(gone.session_id, now=now).status == "expired"
    assert mgr.verify(theirs.token, now=now).agent_id == other
    rows = audit_rows(db, "SESSION_REVOKED")
    assert [json.loads(r.details)["reason"] for r in rows[-2:]] == ["kill switch"] * 2
    assert all(r.actor == "system" for r in rows[-2:])


# --------------------------------------------------------------------------- sweep


def test_sweep_reports_each_expiry_once(
    mgr: SessionManager, db: Database, clock: FrozenClock
) -> None:
    """SESSION_EXPIRED once per expired, unrevoked session; revoked_at stays NULL."""
    agent = add_agent(db)
    short = mgr.issue(agent, ttl=10)
    short2 = mgr.issue(agent, ttl=20)
    revoked = mgr.issue(agent, ttl=10)
    mgr.revoke(revoked.session_id, actor="owner")
    long = mgr.issue(agent, ttl=1000)
    assert mgr.sweep_expired(T0 + 5) == 0
    assert mgr.sweep_expired(T0 + 30) == 2
    assert mgr.sweep_expired(T0 + 30) == 0
    clock.t = T0 + 40
    assert mgr.sweep_expired() == 0
    rows = audit_rows(db, "SESSION_EXPIRED")
    assert sorted(r.session_id or "" for r in rows) == sorted([short.session_id, short2.session_id])
    assert {json.loads(r.details)["expired_at"] for r in rows} == {T0 + 10, T0 + 20}
    assert all(r.actor == "system" for r in rows)
    row = session_row(db, short.session_id)
    assert row.revoked_at is None
    assert json.loads(row.usage_stats or "")["expired_reported"] is True
    assert mgr.get(short.session_id).status == "expired"
    assert mgr.get(long.session_id).status == "active"
    assert mgr.sweep_expired(T0 + 2000) == 1


def test_sweep_handles_more_than_one_batch(mgr: SessionManager, db: Database) -> None:
    """Sessions beyond the sweep's batch size are all reported, each once."""
    agent = add_agent(db)
    with db.write() as uow:
        for i in range(_BATCH + 101):
            uow.session.add(
                SessionRow(
                    id=new_id(),
                    agent_id=agent,
                    token_hash=f"{i:064x}",
                    expires_at=T0 + i % 7,
                    created_at=T0 - 10,
                )
            )
        uow.commit()
    assert mgr.sweep_expired(T0 + 100) == _BATCH + 101
    assert mgr.sweep_expired(T0 + 100) == 0
    with db.read() as uow:
        assert uow.audit.count(event_type="SESSION_EXPIRED") == _BATCH + 101


# --------------------------------------------------------------------------- queries & logs


def test_get_and_list(mgr: SessionManager, db: Database) -> None:
    """Owners can see sessions (status, usage) but never their tokens or hashes."""
    agent = add_agent(db)
    a = mgr.issue(agent, ttl=10)
    b = mgr.issue(agent)
    assert [s.session_id for s in mgr.list_for_agent(agent)] == [a.session_id, b.session_id]
    assert [s.session_id for s in mgr.list_for_agent(agent, live_only=True, now=T0 + 11)] == [
        b.session_id
    ]
    info = mgr.get(b.session_id)
    assert info.status == "active"
    assert b.token not in repr(info)
    assert session_row(db, b.session_id).token_hash not in repr(info)
    with pytest.raises(NotFoundError):
        mgr.get(new_id())


def test_tokens_never_logged(
    mgr: SessionManager, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, issue/verify/renew/revoke/refusals log ids but never a token or hash."""
    caplog.set_level(logging.DEBUG)
    agent = add_agent(db)
    issued = mgr.issue(agent)
    v = mgr.verify(issued.token)
    renewed = mgr.renew(issued.token)
    with pytest.raises(TokenRevokedError):
        mgr.verify(issued.token)
    mgr.revoke(renewed.session_id, actor="owner")
    with pytest.raises(TokenRevokedError):
        mgr.verify(renewed.token)
    secrets_ = [issued.token, renewed.token]
    secrets_ += [hashlib.sha256(t.encode()).hexdigest() for t in secrets_]
    secrets_ += [t.rsplit(".", 1)[1] for t in (issued.token, renewed.token)]
    assert caplog.records
    assert issued.session_id in caplog.text
    for s in secrets_:
        assert s not in caplog.text
        for obj in (mgr, issued, renewed, v):
            assert s not in repr(obj)
            assert s not in str(obj)


def test_corrupt_usage_json_fails_closed(mgr: SessionManager, db: Database) -> None:
    """Unreadable stored constraints refuse verification instead of ignoring limits."""
    issued = mgr.issue(add_agent(db), constraints={"max_tx_count": 1})
    with db.write() as uow:
        row = uow.sessions.get(issued.session_id)
        assert row is not None
        row.constraints = '{"max_tx_count": "lots"}'
        uow.session.add(row)
        uow.commit()
    with pytest.raises(StorageError):
        mgr.verify(issued.token)
