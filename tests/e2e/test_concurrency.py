"""Many threads plus two processes send against one daily limit on one database file:
exactly the limit is accepted, on EVM no nonce is used twice, and the audit chain they all
appended to links from end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_crash_recovery as crash
from tests.e2e.test_crash_recovery import CHILD, child_env
from tests.e2e.wallet_child import open_wallet
from waiaas import PolicyDeniedError, Transfer, TxStatus
from waiaas.pipeline.states import signing_record

chain_urls = crash.chain_urls  # the same module-scoped chains fixture

THREADS = 3
PER_THREAD = 4
LIMIT_COUNT = 9  # how many transfers fit the daily limit
AMOUNTS = {"solana": 1_000_003, "evm": 10**14 + 3}


def _child(spec: dict[str, Any]) -> subprocess.Popen[str]:
    env = child_env()
    return subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.anvil
@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_threads_and_processes_never_overshoot_a_daily_limit(
    tmp_path: Path, chain_urls: dict[str, Any], chain: str
) -> None:
    """3 processes x 3 threads x 4 requests against a limit that fits 9 transfers with their
    network fees: the budget never overshoots, and it refuses only when the next transfer
    and its fee no longer fit. On Solana the fee is exact (5,000 lamports), so exactly 9 run;
    on EVM each transfer reserves its maximum fee, which falls as anvil's base fee does, so
    the count follows the fees (never above the limit, never a refusal with room left)."""
    amount = AMOUNTS[chain]
    fee_room = 5_000
    spec: dict[str, Any] = {"db": str(tmp_path / "wallet.db"), **chain_urls}
    with open_wallet(spec) as wallet:
        agent = wallet.create_agent("busy", chain)
        adapter = wallet.network_adapter(agent.chain, agent.network)
        adapter.fund(agent.public_key, 10**19 if chain == "evm" else 10**11)  # type: ignore[attr-defined]
        recipients = []
        for _ in range(THREADS * 3):
            _s, address = adapter.generate_secret()
            if chain == "solana":
                adapter.fund(address, 1_000_000_000)  # type: ignore[attr-defined]
            recipients.append(address)
        if chain == "evm":  # the maximum fee of a transfer now (gas limit x maxFeePerGas)
            quote = adapter.fee_quote(
                adapter.build(Transfer(to=recipients[0], amount=amount), agent.public_key)
            )  # type: ignore[attr-defined]
            fee_room = quote.amount
        limit = (amount + fee_room) * LIMIT_COUNT
        wallet.add_policy(
            "SPENDING_LIMIT",
            {
                "daily_total": str(limit),
                "instant_max": str(amount * 100),
                "notify_max": str(amount * 100),
                "delay_max": str(amount * 100),
            },
            agent_id=agent.id,
        )
        token = wallet.issue_session(agent.id).token

        # each sender has its own recipient, so no two transfers are byte-identical
        children = [
            _child(
                {
                    **spec,
                    "mode": "burst",
                    "token": token,
                    "to": recipients[i],
                    "amount": str(amount),
                    "threads": 1,
                    "count": PER_THREAD,
                }
            )
            for i in range(2)
        ]
        outcomes: list[str] = []
        lock = threading.Lock()

        def work(to: str) -> None:
            for _ in range(PER_THREAD):
                try:
                    status = str(wallet.send(token, Transfer(to=to, amount=amount)).status)
                except PolicyDeniedError:
                    status = "DENIED"
                with lock:
                    outcomes.append(status)

        threads = [threading.Thread(target=work, args=(recipients[2 + i],)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for proc in children:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            outcomes += [r["status"] for r in json.loads(out.splitlines()[-1])["results"]]

        wallet.process_due()
        assert len(outcomes) == (2 + THREADS) * PER_THREAD
        rows = wallet.list_transactions(agent_id=agent.id, limit=1000)
        confirmed = [r for r in rows if r.status == TxStatus.CONFIRMED]
        denied = [r for r in rows if r.error and r.error.startswith("POLICY_DENIED")]
        ran = len(confirmed)
        assert len(denied) == len(outcomes) - ran, [
            (r.status, r.error)
            for r in rows
            if r.status != TxStatus.CONFIRMED and not (r.error or "").startswith("POLICY_DENIED")
        ]
        counted = [(r.spend or {}).get("native", 0) for r in confirmed]
        assert all(c > amount for c in counted)  # each holds its amount and its fee
        assert sum(counted) <= limit  # never over the budget
        assert limit - sum(counted) < amount + max(c - amount for c in counted)  # no room left
        if chain == "solana":
            assert ran == LIMIT_COUNT
        else:
            assert ran >= LIMIT_COUNT
        assert sum(int(r.amount or 0) for r in confirmed) == amount * ran
        moved = sum(adapter.get_balance(r) for r in recipients)
        base = 0 if chain == "evm" else 1_000_000_000 * len(recipients)
        assert moved - base == amount * ran
        hashes = {r.tx_hash for r in confirmed}
        assert len(hashes) == ran
        # three processes appended to one audit chain (admission's two rows in one
        # statement, the confirmations reading the head in their compare-and-swap)
        report = wallet.verify_audit()
        assert report.ok, report
        if chain == "evm":
            nonces = []
            for r in confirmed:
                entries = wallet.audit(tx_id=r.id, limit=100).entries  # newest first
                signed = [d for e in entries if (d := signing_record(e.event_type, e.details))]
                nonces.append(signed[0]["nonce"])
            assert sorted(nonces) == list(range(ran))  # distinct, no gaps
