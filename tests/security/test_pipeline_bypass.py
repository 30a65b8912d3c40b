"""Attempts to get a transaction past the pipeline's checks: inexact or negative amounts,
addresses of another chain, requests a chain cannot run, forged / expired / revoked /
replaced tokens, terminated agents and session constraints. Every one is refused, nothing
moves on chain, and each refusal is recorded where there is something to record."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ETH,
    SOL,
    TIER_AMOUNTS,
    all_audit,
    evm_address,
    new_agent,
    recipient,
    row_counts,
    sol_address,
)
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    ConstraintViolationError,
    InvalidAddressError,
    InvalidInputError,
    PolicyDeniedError,
    TokenExpiredError,
    TokenRevokedError,
    WaiaasError,
)
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock, local_wallet
from waiaas.types import Batch, ContractCall, TokenTransfer, Transfer
from waiaas.wallet import Wallet


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on fresh local chains, frozen clock."""
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RecordingNotifier()) as w:
        yield w


@pytest.fixture(params=["solana", "evm"])
def chain(request: pytest.FixtureRequest) -> str:
    """Each chain family in turn."""
    return str(request.param)


def _agent(wallet: Wallet, chain: str, **session: Any) -> tuple[str, str]:
    agent = new_agent(wallet, chain)
    return agent.id, wallet.issue_session(agent.id, **session).token


def _nothing_moved(wallet: Wallet, agent_id: str, chain: str) -> None:
    agent = wallet.get_agent(agent_id)
    expected = 50 * SOL if chain == "solana" else 10 * ETH
    assert wallet.balance(agent_id) == expected, agent.name
    assert all(t.status != "CONFIRMED" for t in wallet.list_transactions(agent_id=agent_id))


def _auth_failures(wallet: Wallet) -> list[Any]:
    return [e for e in all_audit(wallet) if e.event_type == "AUTH_FAILED"]


# --------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    "amount",
    [
        1.5,
        1e9,
        float("nan"),
        float("inf"),
        -1,
        -(10**9),
        True,
        False,
        "1e9",
        "-5",
        "0x10",
        " ",
        "1_000",
        "\uff11\uff12",
        None,
        [1],
        {"v": 1},
    ],
)
def test_inexact_or_negative_amounts_are_refused(wallet: Wallet, amount: object) -> None:
    """A float, bool, negative, exponent, hex, blank or non-ASCII-digit amount never reaches
    the pipeline: InvalidInputError naming the request; nothing is recorded."""
    agent_id, token = _agent(wallet, "solana")
    before = row_counts(wallet)["transactions"]
    with pytest.raises(InvalidInputError) as info:
        wallet.send(token, {"type": "TRANSFER", "to": sol_address(), "amount": amount})
    assert info.value.field == "request"
    assert any("amount" in p for p in info.value.problems)
    assert row_counts(wallet)["transactions"] == before
    _nothing_moved(wallet, agent_id, "solana")


def test_request_models_refuse_floats_themselves() -> None:
    """The request types refuse a float amount at construction (a ValueError)."""
    with pytest.raises(ValueError, match="amount"):
        Transfer(to=sol_address(), amount=1.5)
    with pytest.raises(ValueError, match="amount"):
        TokenTransfer(token=evm_address(), to=evm_address(), amount=-1)


def test_huge_exact_amounts_stay_exact(wallet: Wallet) -> None:
    """An amount beyond 64 bits is kept exact (no float, no overflow) and judged by policy:
    denied for an agent without an owner, with the exact figure recorded."""
    agent_id, token = _agent(wallet, "evm")
    huge = 2**200 + 1
    with pytest.raises(PolicyDeniedError) as info:
        wallet.send(token, {"type": "TRANSFER", "to": evm_address(), "amount": str(huge)})
    assert info.value.tx_id is not None
    assert wallet.get_transaction(info.value.tx_id).amount == huge
    _nothing_moved(wallet, agent_id, "evm")


# --------------------------------------------------------------------------- chains


@pytest.mark.parametrize(
    ("chain", "make"),
    [
        ("solana", lambda: Transfer(to=evm_address(), amount=1)),
        ("evm", lambda: Transfer(to=sol_address(), amount=1)),
        ("evm", lambda: Transfer(to="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", amount=1)),
        ("evm", lambda: Transfer(to="0x1234", amount=1)),
        ("solana", lambda: Transfer(to="not-base58-0OIl", amount=1)),
        ("solana", lambda: TokenTransfer(token=evm_address(), to=sol_address(), amount=1)),
        ("evm", lambda: TokenTransfer(token=sol_address(), to=evm_address(), amount=1)),
        ("evm", lambda: ContractCall(to=sol_address(), data=b"\x00" * 4)),
    ],
)
def test_addresses_of_another_chain_are_refused(wallet: Wallet, chain: str, make: Any) -> None:
    """An address that is not valid on the agent's chain (another chain's, a bad EIP-55
    checksum, too short, not base58) is refused before anything is recorded."""
    agent_id, token = _agent(wallet, chain)
    before = row_counts(wallet)["transactions"]
    with pytest.raises(InvalidAddressError):
        wallet.send(token, make())
    assert row_counts(wallet)["transactions"] == before
    _nothing_moved(wallet, agent_id, chain)


def test_batch_on_evm_is_refused(wallet: Wallet) -> None:
    """A BATCH is Solana-only: on EVM it is refused before anything is recorded, charged,
    signed or sent."""
    agent_id, token = _agent(wallet, "evm")
    batch = Batch(
        requests=(Transfer(to=evm_address(), amount=1), Transfer(to=evm_address(), amount=2))
    )
    with pytest.raises(InvalidInputError) as refused:
        wallet.send(token, batch)
    assert refused.value.field == "type"
    assert wallet.list_transactions(agent_id=agent_id) == []
    assert wallet.list_sessions(agent_id)[0].usage.total() == 0
    _nothing_moved(wallet, agent_id, "evm")


def test_contract_call_cannot_disguise_a_transfer(wallet: Wallet) -> None:
    """A raw call to the System program (a transfer in disguise) or an ERC-20 transfer
    selector is refused: those must go through the typed requests and their limits."""
    sol_id, sol_token = _agent(wallet, "solana")
    system_transfer = bytes([2, 0, 0, 0]) + (10**9).to_bytes(8, "little")
    with pytest.raises(InvalidInputError):
        wallet.send(
            sol_token,
            ContractCall(to="11111111111111111111111111111111", data=system_transfer),
        )
    evm_id, evm_token = _agent(wallet, "evm")
    calldata = (
        bytes.fromhex("a9059cbb")
        + bytes(12)
        + bytes.fromhex(evm_address()[2:])
        + (10**18).to_bytes(32, "big")
    )
    with pytest.raises(InvalidInputError):
        wallet.send(evm_token, ContractCall(to=evm_address(), data=calldata))
    _nothing_moved(wallet, sol_id, "solana")
    _nothing_moved(wallet, evm_id, "evm")


# --------------------------------------------------------------------------- tokens


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forgeries(token: str, other_agent: str) -> dict[str, str]:
    import hashlib
    import hmac

    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    stolen = dict(claims, sub=other_agent)
    later = dict(claims, exp=claims["exp"] + 10**6)
    wrong_key = (
        base64.urlsafe_b64encode(
            hmac.new(b"guessed secret", f"{head}.{body}".encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    return {
        "random text": "not a token at all",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "alg RS256": f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{body}.{sig}",
        "signature cut": f"{head}.{body}.",
        "signature of zeros": f"{head}.{body}.{'A' * len(sig)}",
        "wrong key": f"{head}.{body}.{wrong_key}",
        "other agent claimed": f"{head}.{_b64(stolen)}.{sig}",
        "expiry extended": f"{head}.{_b64(later)}.{sig}",
        "extra header": f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': '../x'})}.{body}.{sig}",
        "too long": token + "A" * 20_000,
    }


def test_forged_tokens_are_refused_and_audited(wallet: Wallet) -> None:
    """Forged tokens (alg none/RS256, cut or zeroed signature, wrong key, edited claims,
    extra header, oversized) are refused with AuthError, each audited, none recorded as a
    transaction, and the token is never written into the audit log."""
    agent_id, token = _agent(wallet, "solana")
    other_id, _other = _agent(wallet, "solana")
    for label, forged in _forgeries(token, other_id).items():
        before = len(_auth_failures(wallet))
        with pytest.raises(AuthError):
            wallet.send(forged, Transfer(to=sol_address(), amount=SOL // 20))
        assert len(_auth_failures(wallet)) == before + 1, label
    assert row_counts(wallet)["transactions"] == 0
    dump = json.dumps([e.details for e in all_audit(wallet)])
    assert token not in dump and token.split(".")[2] not in dump
    _nothing_moved(wallet, agent_id, "solana")
    _nothing_moved(wallet, other_id, "solana")


def test_expired_token_is_refused(wallet: Wallet) -> None:
    """A token past its expiry is refused (TokenExpiredError) and audited."""
    clock = wallet.clock
    assert isinstance(clock, FrozenClock)
    agent_id, token = _agent(wallet, "evm", ttl=60)
    clock.advance(60)
    with pytest.raises(TokenExpiredError):
        wallet.send(token, Transfer(to=evm_address(), amount=1))
    assert _auth_failures(wallet)[-1].details["code"] == "TOKEN_EXPIRED"
    _nothing_moved(wallet, agent_id, "evm")


def test_revoked_and_replaced_tokens_are_refused(wallet: Wallet) -> None:
    """A revoked session's token, and the old token of a renewed session, are refused."""
    agent_id, token = _agent(wallet, "solana")
    renewed = wallet.renew_session(token)
    with pytest.raises(TokenRevokedError):
        wallet.send(token, Transfer(to=sol_address(), amount=SOL // 20))
    wallet.revoke_session(renewed.session_id)
    with pytest.raises(TokenRevokedError):
        wallet.send(renewed.token, Transfer(to=sol_address(), amount=SOL // 20))
    assert len(_auth_failures(wallet)) == 2
    _nothing_moved(wallet, agent_id, "solana")


def test_sending_after_terminate_is_refused(wallet: Wallet, chain: str) -> None:
    """A terminated agent's token is refused, and so is any new session for it."""
    agent_id, token = _agent(wallet, chain)
    wallet.terminate_agent(agent_id)
    with pytest.raises((AuthError, AgentNotActiveError)):
        wallet.send(token, Transfer(to=recipient(chain), amount=TIER_AMOUNTS[chain]["INSTANT"]))
    with pytest.raises(WaiaasError):
        wallet.issue_session(agent_id)
    assert _auth_failures(wallet)
    _nothing_moved(wallet, agent_id, chain)


def test_a_token_only_speaks_for_its_own_agent(wallet: Wallet) -> None:
    """Agent A's token spends A's funds only: B's balance never changes."""
    a_id, a_token = _agent(wallet, "solana")
    b_id, _b_token = _agent(wallet, "solana")
    result = wallet.send(a_token, Transfer(to=sol_address(), amount=SOL // 20))
    assert result.agent_id == a_id
    assert wallet.balance(a_id) < 50 * SOL
    _nothing_moved(wallet, b_id, "solana")


# --------------------------------------------------------------------------- constraints


@pytest.mark.parametrize(
    ("constraints", "request_of", "constraint"),
    [
        (
            {"max_amount_per_tx": SOL // 100},
            lambda dest: Transfer(to=dest, amount=SOL // 100 + 1),
            "max_amount_per_tx",
        ),
        (
            {"allowed_addresses": ["11111111111111111111111111111112"]},
            lambda dest: Transfer(to=dest, amount=1_000_000),
            "allowed_addresses",
        ),
        (
            {"allowed_tx_types": ["TOKEN_TRANSFER"]},
            lambda dest: Transfer(to=dest, amount=1_000_000),
            "allowed_tx_types",
        ),
        (
            {"max_total_amount": 2_000_000},
            lambda dest: Batch(
                requests=(Transfer(to=dest, amount=1_500_000), Transfer(to=dest, amount=1_500_000))
            ),
            "max_total_amount",
        ),
    ],
)
def test_session_constraints_are_enforced_and_recorded(
    wallet: Wallet, constraints: dict[str, Any], request_of: Any, constraint: str
) -> None:
    """A request outside its session's constraints is refused (ConstraintViolationError
    naming the constraint), nothing moves or is charged, and the refusal is audited."""
    agent_id, token = _agent(wallet, "solana", constraints=constraints)
    with pytest.raises(ConstraintViolationError) as info:
        wallet.send(token, request_of(sol_address()))
    assert info.value.constraint == constraint
    session = wallet.list_sessions(agent_id)[0]
    assert session.usage.tx_count == 0 and session.usage.total() == 0
    rows = [e for e in all_audit(wallet, agent_id=agent_id) if e.event_type == "POLICY_VIOLATION"]
    assert rows and rows[-1].details.get("constraint") == constraint
    _nothing_moved(wallet, agent_id, "solana")


def test_max_tx_count_is_enforced(wallet: Wallet) -> None:
    """A session limited to two requests refuses the third."""
    agent_id, token = _agent(wallet, "evm", constraints={"max_tx_count": 2})
    for i in range(2):
        assert wallet.send(token, Transfer(to=evm_address(), amount=10**12 + i)).status == (
            "CONFIRMED"
        )
    with pytest.raises(ConstraintViolationError) as info:
        wallet.send(token, Transfer(to=evm_address(), amount=10**12))
    assert info.value.constraint == "max_tx_count"
    assert len(wallet.list_transactions(agent_id=agent_id)) == 2


def test_allowed_address_passes_and_others_do_not(wallet: Wallet) -> None:
    """With allowed_addresses, the listed recipient (any letter case on EVM) is paid and an
    unlisted one is refused."""
    allowed = evm_address()
    agent_id, token = _agent(wallet, "evm", constraints={"allowed_addresses": [allowed.lower()]})
    ok = wallet.send(token, Transfer(to=allowed, amount=10**12))
    assert ok.status == "CONFIRMED"
    with pytest.raises(ConstraintViolationError):
        wallet.send(token, Transfer(to=evm_address(), amount=10**12))
    assert [t.id for t in wallet.list_transactions(agent_id=agent_id)] == [ok.id]


def test_no_secret_reaches_logs_errors_or_audit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a run with forged tokens, refusals, a failing notifier and every tier, no log
    record, exception text or audit row ever shows the master password, a session token or
    an agent's private key."""
    import logging

    from tests.e2e.conftest import RaisingNotifier, drive_every_path
    from waiaas.keystore.keys import b58encode
    from waiaas.testing import TEST_PASSWORD

    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RaisingNotifier()) as wallet:
        drive_every_path(wallet, "solana")
        drive_every_path(wallet, "evm")
        _agent_id, token = _agent(wallet, "solana")
        other_id, _other = _agent(wallet, "evm")
        for forged in _forgeries(token, other_id).values():
            try:
                wallet.send(forged, Transfer(to=sol_address(), amount=1))
            except WaiaasError as exc:
                texts.append(str(exc))
                texts.append(json.dumps(exc.to_dict()))
        try:
            wallet.change_password("not it", "new password")
        except WaiaasError as exc:
            texts.append(str(exc))
        secrets: list[str] = [TEST_PASSWORD, token, token.split(".")[2]]
        for agent in wallet.list_agents():
            if wallet._keystore.has_key(agent.id):
                with wallet._keystore.use_key(agent.id) as secret:
                    raw = bytes(secret)
                secrets += [raw.hex(), b58encode(raw), raw[:32].hex(), b58encode(raw[:32])]
        texts += [json.dumps(e.details) + e.actor for e in all_audit(wallet)]
        texts += [repr(t) for t in wallet.list_transactions(limit=1000)]
    texts += [record.getMessage() for record in caplog.records]
    texts.append(caplog.text)  # formatted, with tracebacks
    assert caplog.records  # the failing notifier and the refusals were logged
    blob = "\n".join(texts)
    for needle in secrets:
        assert needle not in blob
