"""The CLI as operators run it: ``python -m waiaas`` in its own process, on a wallet a test
process holds open (real SQLite file shared by two processes). The CLI process has no chain
adapter: it reads, decides and records; the wallet process executes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import ENV
from tests.e2e.conftest import TIER_AMOUNTS, EvmOwner, new_agent, recipient
from tests.web.conftest import free_port
from waiaas import Transfer, Wallet
from waiaas.testing import fast_config, local_chains, local_wallet

ROOT = Path(__file__).resolve().parents[2]


def waiaas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "waiaas", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=300,
        check=False,
    )


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    with local_wallet(tmp_path, chains=local_chains(), config=fast_config()) as w:
        yield w


def _queue(wallet: Wallet, owner: EvmOwner) -> str:
    agent = new_agent(wallet, "evm", owner=owner)
    token = wallet.issue_session(agent.id).token
    result = wallet.send(
        token, Transfer(to=recipient("evm"), amount=TIER_AMOUNTS["evm"]["APPROVAL"])
    )
    return result.id


def test_version_and_usage_errors() -> None:
    from waiaas import __version__

    done = waiaas("version")
    assert (done.returncode, done.stdout.strip()) == (0, __version__)
    bad = waiaas("frobnicate")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: No such command 'frobnicate'. (see 'waiaas --help')"
    missing = waiaas("--db", "/nonexistent/w.db", "tx", "list")
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1


def _settled(wallet: Wallet, tx_id: str, patience: float = 60.0) -> str:
    """The transaction's status once no pass is still working on it (process_due until it
    leaves QUEUED / EXECUTING / SUBMITTED, or ``patience`` seconds)."""
    deadline = time.monotonic() + patience
    while True:
        wallet.process_due()
        status = str(wallet.get_transaction(tx_id).status)
        if status not in ("QUEUED", "EXECUTING", "SUBMITTED") or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_operator_approves_from_another_process(wallet: Wallet) -> None:
    """List and print the message in the CLI process, sign it as the owner, approve there;
    the wallet process (which has the chain) executes it on its next pass."""
    owner = EvmOwner()
    tx_id = _queue(wallet, owner)
    db = str(wallet.path)
    listed = waiaas("--db", db, "approvals", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [p["tx_id"] for p in json.loads(listed.stdout)] == [tx_id]
    message = waiaas("--db", db, "approvals", "message", tx_id)
    assert message.stdout.rstrip("\n") == wallet.approval_message(tx_id)
    signature = owner.sign(wallet.approval_message(tx_id))
    wrong = waiaas("--db", db, "approvals", "approve", tx_id, "--signature", EvmOwner().sign("x"))
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: signature was not made")
    done = waiaas("--db", db, "approvals", "approve", tx_id, "--signature", signature, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "QUEUED" and report["pending_execution"] is True
    # This wallet's background runner passes too: whichever pass claims it executes it once.
    assert _settled(wallet, tx_id) == "CONFIRMED"


def test_kill_switch_audit_export_and_health(wallet: Wallet, tmp_path: Path) -> None:
    db = str(wallet.path)
    agent = new_agent(wallet, "solana")
    on = waiaas("--db", db, "kill-switch", "on", "--reason", "incident 42", "--json")
    assert on.returncode == 0, on.stderr
    assert wallet.get_agent(agent.id).status == "SUSPENDED"
    health = waiaas("--db", db, "health", "--json")
    assert health.returncode == 2
    assert json.loads(health.stdout)["kill_switch"]["reason"] == "incident 42"
    assert waiaas("--db", db, "kill-switch", "off", "--resume-agents").returncode == 0
    out = tmp_path / "audit.csv"
    export = waiaas("--db", db, "audit", "export", str(out), "--format", "csv", "--json")
    assert export.returncode == 0, export.stderr
    assert json.loads(export.stdout)["entries"] == len(out.read_text().splitlines()) - 1
    assert "KILL_SWITCH_ACTIVATED" in out.read_text()


def test_serve_approvals_serves_the_page(tmp_path: Path) -> None:
    """`waiaas serve-approvals` in its own process serves the page of a transaction queued by
    the wallet process; the owner's POSTed signature is recorded there and executed here."""
    port = free_port()
    public = f"http://127.0.0.1:{port}/approvals"
    config = fast_config(approvals_url=public)
    with local_wallet(tmp_path, chains=local_chains(), config=config) as wallet:
        owner = EvmOwner()
        tx_id = _queue(wallet, owner)
        link = wallet.approval_link(tx_id)
        assert link is not None
        full = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **ENV}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "waiaas",
                "--db",
                str(wallet.path),
                "serve-approvals",
                "--port",
                str(port),
                "--public-url",
                public,
            ],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            page = None
            while time.monotonic() < deadline:
                assert server.poll() is None, server.communicate()
                try:
                    page = httpx.get(link, timeout=5)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert page is not None and page.status_code == 200
            assert "send 2 ETH from" in page.text
            signature = owner.sign(wallet.approval_message(tx_id))
            answer = httpx.post(
                link, json={"action": "approve", "signature": signature}, timeout=30
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["message"] == (
                "Approved. The wallet executes the transaction on its next pass."
            )
        finally:
            server.terminate()
            server.communicate(timeout=30)
        wallet.process_due()
        assert wallet.get_transaction(tx_id).status == "CONFIRMED"


@pytest.mark.slow
def test_demo_still_runs() -> None:
    done = waiaas("demo", "--delay", "0")
    assert done.returncode == 0, done.stderr
    assert "demo finished" in done.stdout
