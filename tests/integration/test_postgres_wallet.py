"""A whole wallet on PostgreSQL: open with a URL, create agents, INSTANT sends on LiteSVM,
agents sending in parallel (per-agent locks, one unbroken audit chain), reopen, health."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support.pg_schema import pg_server, pg_url
from waiaas import Transfer, Wallet
from waiaas.testing import TEST_PASSWORD, fast_config, fund, local_chains

__all__ = ["pg_server", "pg_url"]

SOL = 10**9


def _recipient() -> str:
    from nacl.signing import SigningKey

    from waiaas.keystore.keys import b58encode

    return b58encode(bytes(SigningKey.generate().verify_key))


def _open(url: str, keys: Path, chains: list[object]) -> Wallet:
    return Wallet.open(
        url,
        password=TEST_PASSWORD,
        chains=chains,  # type: ignore[arg-type]
        config=fast_config(keystore_dir=str(keys), pool_size=4),
    )


def test_open_create_send_reopen(pg_url: str, tmp_path: Path) -> None:
    chains = local_chains()
    keys = tmp_path / "keys"
    wallet = _open(pg_url, keys, chains)
    try:
        assert wallet.path is None and "postgresql+psycopg://" in wallet.location
        agent = wallet.create_agent("pg-agent", "solana")
        fund(wallet, agent.id, 5 * SOL)
        session = wallet.issue_session(agent.id)
        handle = wallet.agent(session.token)
        to = _recipient()
        result = handle.send(Transfer(to=to, amount=SOL // 100))
        assert (result.status, result.tier) == ("CONFIRMED", "INSTANT"), result
    finally:
        wallet.close()
    again = _open(pg_url, keys, chains)
    try:
        assert again.get_transaction(result.id).status == "CONFIRMED"
        assert again.verify_audit().ok
    finally:
        again.close()


def test_agents_send_in_parallel_with_one_audit_chain(pg_url: str, tmp_path: Path) -> None:
    wallet = _open(pg_url, tmp_path / "keys", local_chains())
    try:
        handles = []
        for i in range(3):
            agent = wallet.create_agent(f"agent-{i}", "solana")
            fund(wallet, agent.id, 5 * SOL)
            handles.append(wallet.agent(wallet.issue_session(agent.id).token))
        results: list[object] = []
        errors: list[BaseException] = []

        def run(handle: object) -> None:
            try:
                for _ in range(3):
                    results.append(
                        handle.send(Transfer(to=_recipient(), amount=SOL // 100))  # type: ignore[attr-defined]
                    )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(h,)) for h in handles]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert len(results) == 9
        assert {r.status for r in results} == {"CONFIRMED"}  # type: ignore[attr-defined]
        report = wallet.verify_audit()
        assert report.ok, report
    finally:
        wallet.close()


def test_the_keystore_is_in_the_database_unless_a_directory_is_given(pg_url: str) -> None:
    """PostgreSQL's default keystore is the database one; a file keystore needs its
    directory (see tests/integration/test_keystore_database.py)."""
    from waiaas.errors import InvalidInputError

    with Wallet.open(pg_url, password=TEST_PASSWORD, config=fast_config()) as wallet:
        assert wallet.keystore_path is None
    with pytest.raises(InvalidInputError, match="keystore_dir"):
        Wallet.open(pg_url, password=TEST_PASSWORD, config=fast_config(keystore_backend="file"))
