"""The examples in ``examples/`` run as a user would run them: each script in its own
Python process, on the in-process chains, with warnings as errors; each must exit 0 and
print the lines that show its story happened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# For each example, lines (substrings) its output must contain, in this order.
EXPECTED: dict[str, list[str]] = {
    "quickstart.py": [
        "agent 'trader' created: ACTIVE",
        "funded: balance 2 SOL",
        "policy SPENDING_LIMIT added",
        "token='***'",
        ": CONFIRMED (INSTANT)",
        "decision  allowed as INSTANT",
        "recipient balance: 0.05 SOL",
        "1 SOL transfer denied",
        "[SPENDING_LIMIT] 1 SOL exceeds the per-transaction limit of 0.5 SOL",
        "TX_REQUESTED",
        "TX_CONFIRMED",
        "POLICY_VIOLATION",
        "quickstart finished",
    ],
    "policy_design.py": [
        "a misspelt rule is refused: InvalidInputError",
        "0.5 SOL to the supplier: allowed as INSTANT",
        "2.5 SOL to the supplier: allowed as DELAY",
        "<= 1 SOL would be INSTANT",
        "4 SOL to the exchange: allowed as APPROVAL",
        "1 SOL to a stranger: denied: effects[0]: recipient",
        "(ALLOWED_ADDRESSES) to allow it",
        "Mon 10:00     1 SOL  -> CONFIRMED (INSTANT)",
        "Mon 12:00     2 SOL  -> CONFIRMED (NOTIFY)",
        "Mon 13:00  1.5 SOL  -> DENIED",
        "1.5 SOL + 0.000005 SOL network fee exceeds the 24h budget of 6 SOL (0.999985 SOL left)",
        "dry run says: <= 0.99998 SOL would be allowed as NOTIFY",
        "Tue 10:30  1.5 SOL  -> CONFIRMED (NOTIFY)",
        "Tue 20:15 dry run: denied: outside the allowed time",
        "allowed after 09:00 Europe/Berlin",
        "Wed 09:00 the same request -> CONFIRMED (INSTANT)",
        "quick request 4 -> DENIED: RATE_LIMIT",
        "61 s later -> CONFIRMED",
        "payment to a stranger #2 -> DENIED + AUTO_STOP fired",
        "agent is now SUSPENDED",
        "even a valid request is refused: TokenRevokedError",
        "the owner resumes it -> ACTIVE",
        "Mon 10:00     1 SOL  tier: INSTANT -> NOTIFY",
        "Mon 12:00     2 SOL  allowed: True -> False",
        "policy design finished",
    ],
    "owner_approval.py": [
        "1 ETH request: QUEUED (APPROVAL)",
        "wants you to sign in with your Ethereum account:",
        "owner signed -> CONFIRMED, tx hash 0x",
        "vendor balance: 1000000000000000000 wei",
        "-> CANCELLED (REJECTED",
        "the first signature again, on its own transaction: refused (already_decided)",
        "the first signature, on another transaction: refused",
        "a signature of the right message by someone else: refused (wrong_signer)",
        "AUTH_FAILED audit rows for this agent: 3",
        "the 2 ETH request is still QUEUED",
        "the owner's own signature -> CONFIRMED",
        "5 SOL request: QUEUED (APPROVAL)",
        "owner signed -> CONFIRMED",
        "vendor balance: 5000000000 lamports",
        "owner approval finished",
    ],
    "agent_langchain.py": [
        "tools: get_balance, send_transfer, preview_transfer",
        "'display': '2 SOL'",
        '"status": "CONFIRMED"',
        '"amount": "0.05 SOL"',
        '"code": "POLICY_DENIED", "message": "denied by policy: over a spending limit: '
        'at most 0.5 SOL can be sent now"',
        '"next": "send a smaller amount',
        "langchain example finished",
    ],
    "agent_openai_agents.py": [
        "agent tools: get_balance, send_transfer",
        # the agent's preview is redacted: the deciding figure only, no thresholds
        "preview 0.5 ETH: False ['at most 100000000000000000 base units can be sent now']",
        '"status": "CONFIRMED"',
        '"amount": "0.01 ETH"',
        # what is left now, not the tier thresholds
        "most one transfer may move now: 0.1 ETH",
        "openai agents example finished",
    ],
    "agent_pydantic_ai.py": [
        'get_limits -> {"ok": true, "limits":',
        'send_transfer -> {"ok": true,',
        '"amount": "0.02 SOL"',
        'send_transfer -> {"ok": false, "error": {"code": "INVALID_INPUT"',
        "agent says: paid 0.02 SOL",
        "pydantic-ai example finished",
    ],
    "agent_mcp.py": [
        "tools: get_balance, send_transfer",
        '"status":"CONFIRMED"',
        "send 5 -> error: True",
        '"message":"denied by policy: over a spending limit: at most 1 SOL can be sent now"',
        "over stdio: 7 tools",
        "over stdio, most one transfer may move now: 1 SOL",
        "mcp example finished",
    ],
    "fastapi_async.py": [
        "GET /balance: {'balance': '1 SOL'}",
        "POST /pay 0.05: 200 CONFIRMED",
        "POST /pay 0.5: 403 denied by policy: over a spending limit: at most 0.1 SOL can be",
        "bad token: 403 AUTH_FAILED",
        "fastapi example finished",
    ],
}


def _run(script: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("WAIAAS_MASTER_PASSWORD", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=120,
        check=False,
    )


def test_every_example_is_covered() -> None:
    """Each script in examples/ is run below and listed in examples/README.md."""
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(EXPECTED)
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name in scripts:
        assert f"`{name}`" in readme


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
@pytest.mark.sqlite_only  # each example is its own process, on its own SQLite file
def test_example_runs(script: str) -> None:
    """The example exits 0, writes nothing to stderr, and prints its key lines in order."""
    result = _run(script)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr == ""
    out = result.stdout
    position = 0
    for line in EXPECTED[script]:
        found = out.find(line, position)
        assert found >= 0, f"{script}: {line!r} missing (after offset {position}):\n{out}"
        position = found + len(line)
    assert "unexpected" not in out
