"""Several hosts on one PostgreSQL server: processes that share nothing but the server.

Each process runs ``tests/e2e/wallet_child.py`` in a temporary directory of its own (its
working directory, ``HOME`` and ``TMPDIR``), and opens the wallet by its PostgreSQL URL: the
keystore is in the database (PostgreSQL's default), so no file is shared. The chains are
services the processes reach over HTTP (anvil; the LiteSVM-backed Solana JSON-RPC test
server of this process), as the hosts of a real deployment reach their nodes.

* 4 processes x 3 threads send against one agent's daily limit: exactly the limit is spent
  (Solana's fee is exact), never more; on EVM the nonces are distinct, without gaps.
* One process is SIGKILLed in the middle of a send; another process recovers it: confirmed,
  signed and submitted once, the recipient paid once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from solders.litesvm import LiteSVM

from tests.chains.anvil import anvil_node
from tests.chains.solana_rpc_server import SolanaRpcServer
from tests.e2e.test_crash_recovery import CHILD
from tests.e2e.wallet_child import open_wallet
from tests.support.pg_redirect import ensure_schema, url_with_schema
from waiaas import Transfer, TxStatus
from waiaas.pipeline.states import audited_move, signing_record
from waiaas.types import AuditEvent

pytestmark = [pytest.mark.postgresql_only, pytest.mark.anvil]

PROCESSES = 4
THREADS = 3
PER_THREAD = 3  # 36 requests for a limit that fits LIMIT_COUNT
LIMIT_COUNT = 10
AMOUNTS = {"solana": 1_000_003, "evm": 10**14 + 3}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chain_urls() -> Iterator[dict[str, Any]]:
    """One anvil node and one Solana RPC server for the module."""
    with anvil_node(chain_id=31337) as node, SolanaRpcServer(LiteSVM()) as server:
        yield {"solana_url": server.url, "evm_url": node.url, "chain_id": node.chain_id}


@pytest.fixture
def wallet_url(postgres_url: str) -> str:
    """A fresh schema on the tests' server: the wallet every "host" opens by URL."""
    schema = "mh_" + os.urandom(6).hex()
    ensure_schema(schema)
    return url_with_schema(postgres_url, schema)


def _host(spec: dict[str, Any]) -> subprocess.Popen[str]:
    """One "host": a child process in a directory of its own, sharing only the server."""
    home = Path(tempfile.mkdtemp(prefix="waiaas-host-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAIAAS_TEST_BACKEND", "HOME"))}
    env.update(
        HOME=str(home),
        TMPDIR=str(home),
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]),
    )
    return subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=home,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _prepare(
    url: str, urls: dict[str, Any], chain: str, recipients: int
) -> tuple[dict[str, Any], str, str, list[str]]:
    """An agent with a daily limit of LIMIT_COUNT transfers (and their fees) and a session;
    returns (spec, agent id, token, recipients)."""
    amount = AMOUNTS[chain]
    spec: dict[str, Any] = {"db": url, **urls}
    with open_wallet(spec) as wallet:
        assert wallet.location.startswith("postgresql")
        agent = wallet.create_agent("shared", chain)
        adapter = wallet.network_adapter(agent.chain, agent.network)
        adapter.fund(agent.public_key, 10**19 if chain == "evm" else 10**11)  # type: ignore[attr-defined]
        to = []
        for _ in range(recipients):
            _s, address = adapter.generate_secret()
            if chain == "solana":
                adapter.fund(address, 1_000_000_000)  # type: ignore[attr-defined]
            to.append(address)
        fee_room = 5_000
        if chain == "evm":  # the maximum fee of a transfer now (gas limit x maxFeePerGas)
            unsigned = adapter.build(Transfer(to=to[0], amount=amount), agent.public_key)
            fee_room = adapter.fee_quote(unsigned).amount  # type: ignore[attr-defined]
        limit = (amount + fee_room) * LIMIT_COUNT
        big = str(amount * 100)
        wallet.add_policy(
            "SPENDING_LIMIT",
            {
                "daily_total": str(limit),
                "instant_max": big,
                "notify_max": big,
                "delay_max": big,
            },
            agent_id=agent.id,
        )
        token = wallet.issue_session(agent.id).token
    spec["limit"] = limit
    return spec, agent.id, token, to


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_four_hosts_spend_exactly_one_daily_limit(
    wallet_url: str, chain_urls: dict[str, Any], chain: str
) -> None:
    """4 processes x 3 threads x 3 requests against a limit that fits 10 transfers with
    their fees: never over the limit, no refusal while room is left; on Solana (exact fee)
    exactly 10 run; on EVM the nonces of what ran are 0..n-1."""
    amount = AMOUNTS[chain]
    spec, agent_id, token, to = _prepare(wallet_url, chain_urls, chain, PROCESSES * THREADS)
    limit = spec.pop("limit")
    hosts = [
        _host(
            {
                **spec,
                "mode": "burst",
                "token": token,
                "to": to[i],
                "amount": str(amount),
                "threads": THREADS,
                "count": THREADS * PER_THREAD,
            }
        )
        for i in range(PROCESSES)
    ]
    outcomes: list[str] = []
    for proc in hosts:
        code, out, err = _finish(proc)
        assert code == 0, err[-3000:]
        outcomes += [r["status"] for r in json.loads(out.splitlines()[-1])["results"]]
    assert len(outcomes) == PROCESSES * THREADS * PER_THREAD

    with open_wallet(spec) as wallet:
        wallet.process_due()
        rows = wallet.list_transactions(agent_id=agent_id, limit=1000)
        confirmed = [r for r in rows if r.status == TxStatus.CONFIRMED]
        denied = [r for r in rows if (r.error or "").startswith("POLICY_DENIED")]
        ran = len(confirmed)
        assert len(rows) == len(outcomes)
        assert len(denied) == len(outcomes) - ran, [(r.status, r.error) for r in rows]
        counted = [(r.spend or {}).get("native", 0) for r in confirmed]
        assert sum(counted) <= limit  # never over the budget
        assert limit - sum(counted) < amount + max(c - amount for c in counted)  # none left
        if chain == "solana":
            assert ran == LIMIT_COUNT
            assert sum(counted) == limit  # exactly the limit
        else:
            assert ran >= LIMIT_COUNT
        adapter = wallet.network_adapter(chain, wallet.get_agent(agent_id).network)
        base = 0 if chain == "evm" else 1_000_000_000 * len(to)
        assert sum(adapter.get_balance(r) for r in to) - base == amount * ran
        assert len({r.tx_hash for r in confirmed}) == ran
        if chain == "evm":
            nonces = []
            for r in confirmed:
                entries = wallet.audit(tx_id=r.id, limit=100).entries  # newest first
                # the bytes that landed: their signing, or the TX_RETRY that rebuilt them
                # after the node refused a nonce another host's transaction had just used
                landed = [
                    e.details
                    for e in entries
                    if (signing_record(e.event_type, e.details) or e.event_type == "TX_RETRY")
                    and e.details.get("tx_hash") == r.tx_hash
                ]
                assert len(landed) == 1, landed
                nonces.append(landed[0]["nonce"])
            assert sorted(nonces) == list(range(ran))  # distinct, no gaps


@pytest.mark.parametrize("stage", ["claimed", "signed", "submitted"])
@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_a_host_killed_mid_send_is_recovered_by_another(
    wallet_url: str, chain_urls: dict[str, Any], chain: str, stage: str
) -> None:
    """Host A is SIGKILLed at ``stage`` of a send; host B (another process, another
    directory) recovers it: confirmed once, signed once, the recipient paid once."""
    amount = AMOUNTS[chain]
    spec, agent_id, token, [to] = _prepare(wallet_url, chain_urls, chain, 1)
    spec.pop("limit")
    with open_wallet(spec) as wallet:
        adapter = wallet.network_adapter(chain, wallet.get_agent(agent_id).network)
        before = adapter.get_balance(to)

    code, out, err = _finish(
        _host({**spec, "mode": "crash", "stage": stage, "token": token, "to": to, "amount": amount})
    )
    assert code == -signal.SIGKILL, err[-3000:]
    tx_id = json.loads(out.splitlines()[0])["tx_id"]

    code, out, err = _finish(_host({**spec, "mode": "recover", "tx_id": tx_id}))
    assert code == 0, err[-3000:]
    assert json.loads(out.splitlines()[-1])["status"] == "CONFIRMED", err[-3000:]

    with open_wallet(spec) as wallet:
        assert [t.id for t in wallet.list_transactions(agent_id=agent_id)] == [tx_id]
        tx = wallet.get_transaction(tx_id)
        assert tx.status == TxStatus.CONFIRMED, tx.error
        adapter = wallet.network_adapter(chain, wallet.get_agent(agent_id).network)
        assert adapter.get_balance(to) - before == amount  # paid once
        entries = list(reversed(wallet.audit(tx_id=tx_id, limit=100).entries))
        events = [e.event_type for e in entries]
        # never signed twice (TX_SIGNED from a claim, or the presigned TX_REQUESTED)
        signed = [d for e in entries if (d := signing_record(e.event_type, e.details))]
        assert len(signed) == 1 and signed[0]["tx_hash"] == tx.tx_hash
        # never submitted twice (TX_SUBMITTED, or the presigned TX_REQUESTED's move)
        moves = [m for e in entries if (m := audited_move(e.event_type, e.details))]
        assert len([m for m in moves if m[1] == "SUBMITTED"]) == 1
        assert events.count(AuditEvent.TX_CONFIRMED) == 1
