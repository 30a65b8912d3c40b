"""Attacks on session tokens: every one is refused with the right AuthError and audited.

Each test presents a hostile token to ``SessionManager.verify`` and checks three things: the
error class (and its ``reason``), exactly one new ``AUTH_FAILED`` audit row that names the
reason but never the token, and that nothing secret leaked into the error or the logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.sessions import T0, FrozenClock, MemorySecretStore
from waiaas.config import WalletConfig
from waiaas.db import Database
from waiaas.db.repositories import AuditRecord
from waiaas.db.tables import AgentRow
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    TokenExpiredError,
    TokenRevokedError,
)
from waiaas.ids import new_id
from waiaas.keystore.keys import b58encode
from waiaas.sessions import JWT_SECRET_NAME, MAX_TOKEN_LENGTH, IssuedSession, SessionManager


class Wallet:
    """One wallet's database, secret store and session manager."""

    def __init__(self, path: Path) -> None:
        self.db = Database.open(path)
        self.store = MemorySecretStore()
        self.clock = FrozenClock()
        self.mgr = SessionManager(self.db, self.store, self.clock, WalletConfig())

    @property
    def secret(self) -> bytes:
        return self.store.data[JWT_SECRET_NAME]

    def agent(self, status: str = "ACTIVE") -> str:
        agent_id = new_id()
        with self.db.write() as uow:
            uow.agents.add(
                AgentRow(
                    id=agent_id,
                    name="agent",
                    chain="solana",
                    network="devnet",
                    public_key=b58encode(os.urandom(32)),
                    status=status,
                    created_at=T0,
                    updated_at=T0,
                )
            )
            uow.commit()
        return agent_id

    def auth_failures(self) -> list[AuditRecord]:
        with self.db.read() as uow:
            return list(reversed(uow.audit.query(event_types=["AUTH_FAILED"], limit=1000)))


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database file; each wallet starts from a copy."""
    path = tmp_path_factory.mktemp("template") / "wallet.db"
    Database.open(path).close()
    return path


def new_wallet(directory: Path, migrated: Path, name: str) -> Wallet:
    if migrated.is_file():  # SQLite: a copy of the migrated file (on PostgreSQL: a new schema)
        shutil.copyfile(migrated, directory / name)
    return Wallet(directory / name)


@pytest.fixture
def w(tmp_path: Path, migrated: Path) -> Iterator[Wallet]:
    wallet = new_wallet(tmp_path, migrated, "a.db")
    yield wallet
    wallet.db.close()


@pytest.fixture
def issued(w: Wallet) -> IssuedSession:
    return w.mgr.issue(w.agent(), ttl=600)


# --------------------------------------------------------------------------- helpers


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    h, p, s = token.split(".")
    pad = lambda x: x + "=" * (-len(x) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(h))),
        json.loads(base64.urlsafe_b64decode(pad(p))),
        s,
    )


def hs256(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """Sign by hand, so any key (even a PEM that PyJWT refuses) can be used."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def claims_of(issued: IssuedSession) -> dict[str, Any]:
    return segments(issued.token)[1]


def refused(
    w: Wallet,
    token: Any,
    cls: type[Exception],
    reason: str | None = None,
    *,
    secrets: tuple[str, ...] = (),
) -> Exception:
    """Verify must raise exactly ``cls``; one AUTH_FAILED row; nothing secret leaks."""
    before = len(w.auth_failures())
    with pytest.raises(cls) as exc:
        w.mgr.verify(token)
    assert type(exc.value) is cls
    if reason is not None:
        assert getattr(exc.value, "reason", None) == reason
    rows = w.auth_failures()
    assert len(rows) == before + 1
    row = rows[-1]
    assert row.severity == "warning"
    details = json.loads(row.details)
    assert set(details) == {"reason", "code"}
    if reason is not None:
        assert details["reason"] == reason
    hidden = [s for s in (token if isinstance(token, str) else "", *secrets) if len(s) >= 8]
    hidden += [hashlib.sha256(s.encode()).hexdigest() for s in list(hidden)]
    shown = " ".join(
        [str(exc.value), repr(exc.value), json.dumps(exc.value.to_dict()), row.details]  # type: ignore[attr-defined]
        + [str(v) for v in row._asdict().values()]
    )
    for s in hidden:
        assert s not in shown
    assert exc.value.__cause__ is None
    return exc.value


# --------------------------------------------------------------------------- signatures


def test_forged_with_a_wrong_secret(w: Wallet, issued: IssuedSession) -> None:
    """Same claims, signed with a guessed secret: bad signature, anonymous audit actor."""
    forged = jwt.encode(claims_of(issued), os.urandom(32), algorithm="HS256")
    refused(w, forged, AuthError, "bad signature")
    row = w.auth_failures()[-1]
    assert (row.actor, row.agent_id, row.session_id) == ("anonymous", None, None)


def test_token_from_another_wallet(tmp_path: Path, migrated: Path, w: Wallet) -> None:
    """A genuine token of another wallet fails here: each wallet has its own secret."""
    other = new_wallet(tmp_path, migrated, "b.db")
    try:
        token = other.mgr.issue(other.agent()).token
        w.mgr.issue(w.agent())  # A has its own secret
        refused(w, token, AuthError, "bad signature")
    finally:
        other.db.close()


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
@pytest.mark.parametrize("signature", ["", "AAAA"])
def test_alg_none(w: Wallet, issued: IssuedSession, alg: str, signature: str) -> None:
    """``alg: none`` (any spelling, with or without a signature) is refused before decoding."""
    token = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(claims_of(issued))}.{signature}"
    refused(w, token, AuthError, "token algorithm not allowed")


def test_missing_alg(w: Wallet, issued: IssuedSession) -> None:
    """A header without ``alg`` is refused."""
    token = hs256({"typ": "JWT"}, claims_of(issued), w.secret)
    refused(w, token, AuthError, "token algorithm not allowed")


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS256", "PS256", "ES256", "EdDSA", "hs256"])
def test_other_algorithms_with_the_right_secret(w: Wallet, issued: IssuedSession, alg: str) -> None:
    """Even signed with the real secret, any alg but HS256 is refused by the allow-list."""
    header = {"alg": alg, "typ": "JWT"}
    signing_input = f"{b64json(header)}.{b64json(claims_of(issued))}"
    digest = {"HS384": hashlib.sha384, "HS512": hashlib.sha512}.get(alg, hashlib.sha256)
    sig = hmac.new(w.secret, signing_input.encode(), digest).digest()
    refused(w, f"{signing_input}.{b64(sig)}", AuthError, "token algorithm not allowed")


def test_rs256_token(w: Wallet, issued: IssuedSession) -> None:
    """A genuine RS256 token (attacker's own RSA key) is refused by the allow-list."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims_of(issued), key, algorithm="RS256")
    refused(w, token, AuthError, "token algorithm not allowed")


def test_es256_token(w: Wallet, issued: IssuedSession) -> None:
    """A genuine ES256 token is refused by the allow-list."""
    token = jwt.encode(
        claims_of(issued), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"
    )
    refused(w, token, AuthError, "token algorithm not allowed")


def test_hs_rs_confusion_with_public_key_pem(w: Wallet, issued: IssuedSession) -> None:
    """HS256 keyed with an RSA public-key PEM (the classic confusion) is a bad signature."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hs256({"alg": "HS256", "typ": "JWT"}, claims_of(issued), pem)
    refused(w, token, AuthError, "bad signature")


@pytest.mark.parametrize(
    "extra",
    [
        {"kid": "../../etc/passwd"},
        {"jku": "https://evil.example/jwks.json"},
        {"jwk": {"kty": "oct", "k": "AAAA"}},
        {"x5u": "https://evil.example/cert.pem"},
        {"crit": ["exp"]},
        {"b64": False},
        {"typ": "at+jwt"},
    ],
)
def test_header_injection(w: Wallet, issued: IssuedSession, extra: dict[str, Any]) -> None:
    """Header fields beyond alg/typ (key hints, crit, b64) are refused, even when signed."""
    token = hs256({"alg": "HS256", "typ": "JWT", **extra}, claims_of(issued), w.secret)
    refused(w, token, AuthError, "unexpected token header")


@pytest.mark.parametrize(
    "change",
    [
        {"sub": "01999999-0000-7000-8000-000000000000"},
        {"exp": T0 + 10**8},
        {"sid": "01999999-0000-7000-8000-000000000001"},
        {"jti": "replayed"},
    ],
)
def test_tampered_payload_keeps_old_signature(
    w: Wallet, issued: IssuedSession, change: dict[str, Any]
) -> None:
    """Flip one claim, keep the signature: bad signature."""
    header, claims, sig = segments(issued.token)
    token = f"{b64json(header)}.{b64json({**claims, **change})}.{sig}"
    refused(w, token, AuthError, "bad signature", secrets=(issued.token,))


def test_truncated_or_swapped_signature(w: Wallet, issued: IssuedSession) -> None:
    """A cut signature, or the signature of another token, does not verify."""
    other = w.mgr.issue(w.agent())
    h, p, s = issued.token.split(".")
    refused(w, f"{h}.{p}.{s[:-3]}", AuthError, "bad signature")
    refused(w, f"{h}.{p}.{other.token.split('.')[2]}", AuthError, "bad signature")


# --------------------------------------------------------------------------- claims & state


def test_expired(w: Wallet, issued: IssuedSession) -> None:
    """An expired token: TokenExpiredError, audited with its session and agent."""
    w.clock.t = issued.expires_at
    err = refused(w, issued.token, TokenExpiredError, "token expired")
    assert getattr(err, "session_id", None) == issued.session_id
    row = w.auth_failures()[-1]
    assert (row.session_id, row.agent_id) == (issued.session_id, issued.agent_id)
    assert row.actor == f"agent:{issued.agent_id}"


def test_revoked(w: Wallet, issued: IssuedSession) -> None:
    """A revoked session's token: TokenRevokedError."""
    w.mgr.revoke(issued.session_id, actor="owner")
    refused(w, issued.token, TokenRevokedError, "session revoked")
    assert w.auth_failures()[-1].session_id == issued.session_id


def test_reuse_after_renewal(w: Wallet, issued: IssuedSession) -> None:
    """The token a renewal replaced is refused at once, and cannot be renewed again."""
    renewed = w.mgr.renew(issued.token)
    refused(w, issued.token, TokenRevokedError, "token replaced by a renewal")
    with pytest.raises(TokenRevokedError):
        w.mgr.renew(issued.token)
    assert w.mgr.verify(renewed.token).session_id == issued.session_id


def test_another_agents_session(w: Wallet, issued: IssuedSession) -> None:
    """A correctly signed token naming agent B on agent A's session is refused.

    This needs the wallet secret, so it stands for a leaked secret or a bug elsewhere:
    the database row, not the claims, decides whose session it is.
    """
    intruder = w.agent()
    claims = {**claims_of(issued), "sub": intruder}
    token = jwt.encode(claims, w.secret, algorithm="HS256")
    refused(w, token, AuthError, "token claims do not match its session")


def test_token_speaks_only_for_its_own_agent(w: Wallet) -> None:
    """Two agents: each token verifies as its own agent, never the other."""
    a, b = w.agent(), w.agent()
    ta, tb = w.mgr.issue(a).token, w.mgr.issue(b).token
    assert w.mgr.verify(ta).agent_id == a
    assert w.mgr.verify(tb).agent_id == b


def test_signed_claims_without_a_matching_row(w: Wallet, issued: IssuedSession) -> None:
    """Correct secret, right sid and sub, but not the token the row was issued for."""
    token = jwt.encode(
        {**claims_of(issued), "jti": "minted-elsewhere"}, w.secret, algorithm="HS256"
    )
    refused(w, token, TokenRevokedError, "token replaced by a renewal")


def test_deleted_session_row(w: Wallet, issued: IssuedSession) -> None:
    """A token whose session row was deleted: unknown session."""
    with w.db.write() as uow:
        uow.session.delete(uow.sessions.get(issued.session_id))
        uow.commit()
    refused(w, issued.token, AuthError, "unknown session")


def test_terminated_agent(w: Wallet, issued: IssuedSession) -> None:
    """The token is fine but the agent was terminated: AgentNotActiveError, audited."""
    with w.db.write() as uow:
        uow.agents.update_fields(issued.agent_id, status="TERMINATED")
        uow.commit()
    err = refused(w, issued.token, AgentNotActiveError)
    assert json.loads(w.auth_failures()[-1].details)["reason"] == "agent is TERMINATED"
    assert getattr(err, "status", None) == "TERMINATED"


@pytest.mark.parametrize("missing", ["sub", "sid", "iat", "exp", "jti"])
def test_missing_claim(w: Wallet, issued: IssuedSession, missing: str) -> None:
    """Every required claim must be present, even in a correctly signed token."""
    claims = claims_of(issued)
    del claims[missing]
    refused(
        w, jwt.encode(claims, w.secret, algorithm="HS256"), AuthError, f"missing claim {missing!r}"
    )


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", 42),
        ("sid", ["x"]),
        ("jti", ""),
        ("sub", "x" * 500),
        ("exp", "9999999999"),
        ("exp", True),
        ("iat", 1.5),
        ("exp", T0 - 10**6),  # exp before iat
    ],
)
def test_malformed_claim(w: Wallet, issued: IssuedSession, claim: str, value: Any) -> None:
    """Wrongly typed claims in a correctly signed token are refused."""
    claims = {**claims_of(issued), claim: value}
    token = hs256({"alg": "HS256", "typ": "JWT"}, claims, w.secret)
    err = refused(w, token, AuthError)
    assert str(getattr(err, "reason", "")).startswith(("invalid claim", "malformed"))


# --------------------------------------------------------------------------- garbage


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        " ",
        "null",
        "Bearer x",
        "a.b",
        "a.b.c",
        "...",
        "a..c",
        "eyJ.eyJ.",
        "💥.💥.💥",
        "a.b.c\x00",
        "a.b.c.d",
        "%00.%00.%00",
        b64json({"alg": "HS256"}) + ".!!!.x",
        b64json([1, 2]) + "." + b64json({}) + ".x",
        b64(b"\xff\xfe") + "." + b64json({}) + ".x",
    ],
)
def test_garbage_strings(w: Wallet, issued: IssuedSession, garbage: str) -> None:
    """Anything that is not one of our tokens is an AuthError, never a crash."""
    refused(w, garbage, AuthError)


@pytest.mark.parametrize("value", [None, 42, b"a.b.c", ["a.b.c"], {"token": "x"}])
def test_not_a_string(w: Wallet, value: Any) -> None:
    """Non-string tokens are refused as AuthError too."""
    refused(w, value, AuthError, "token must be a non-empty string")


@pytest.mark.parametrize("size", [MAX_TOKEN_LENGTH + 1, 100_000, 10_000_000])
def test_very_long_strings(w: Wallet, issued: IssuedSession, size: int) -> None:
    """Over-long input is refused before any parsing or hashing."""
    h, p, s = issued.token.split(".")
    refused(w, (h + "." + p + "A" * size)[:size] + "." + s, AuthError, "token too long")


def test_deeply_nested_header(w: Wallet) -> None:
    """A header built to exhaust the JSON parser is just a malformed token."""
    header = b64(b"[" * 1400 + b"]" * 1400)[: MAX_TOKEN_LENGTH - 20]
    refused(w, header + ".e30.AAAA", AuthError)


# --------------------------------------------------------------------------- leaks


def test_no_attack_leaks_into_logs(
    w: Wallet, issued: IssuedSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Across refusals and successes, neither tokens nor hashes reach the log."""
    caplog.set_level(logging.DEBUG)
    forged = jwt.encode(claims_of(issued), os.urandom(32), algorithm="HS256")
    renewed = w.mgr.renew(issued.token)
    for token in (forged, issued.token, "garbage." * 3):
        with pytest.raises(AuthError):
            w.mgr.verify(token)
    w.mgr.verify(renewed.token)
    assert "session token refused" in caplog.text
    for t in (forged, issued.token, renewed.token):
        assert t not in caplog.text
        assert t.split(".")[2] not in caplog.text
        assert hashlib.sha256(t.encode()).hexdigest() not in caplog.text
