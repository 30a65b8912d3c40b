"""Write docs/notebooks/policy-lab.ipynb from the cells below (outputs are produced when the
docs site is built and by the test that executes it; the file is kept without outputs).

Run: python tools/make_policy_lab.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "notebooks" / "policy-lab.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Policy lab

Design a policy set the way you would test any other code: build it, ask it questions,
replay last week's history against a candidate, and read the audit trail. Everything here
runs on a real wallet (SQLite, an in-process Solana runtime) with a clock we move by hand, so
a week of history takes a second.

You need `pip install "waiaas[notebook]"` (pandas, matplotlib, a Jupyter kernel).""",
    ),
    (
        "md",
        """## 1. A wallet, an agent, a clock

`local_wallet()` returns the wallet itself: no `with` block needed in a notebook; we call
`close()` at the end. `FrozenClock` only moves when told to.""",
    ),
    (
        "code",
        """import tempfile
from datetime import UTC, datetime

from waiaas import PolicyDeniedError, Transfer
from waiaas.testing import FrozenClock, fund, local_wallet

SOL = 10**9
MONDAY_9AM = int(datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp())   # 09:00 in Berlin
clock = FrozenClock(MONDAY_9AM)
wallet = local_wallet(tempfile.mkdtemp(), clock=clock)
agent = wallet.create_agent("procurement-bot", "solana")
fund(wallet, agent.id, 100 * SOL)
agent""",
    ),
    (
        "md",
        """## 2. Build policies

A spending limit with tiers, a whitelist of suppliers, office hours, and a rate limit.
Rules are validated when they are stored: a misspelt rule fails closed, listing every
problem.""",
    ),
    (
        "code",
        """SUPPLIER = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
EXCHANGE = "FAe4sisG95oZ42w7buUn5qEE4TAnfTTFPiguZUHmhiF"

wallet.add_policy("SPENDING_LIMIT", {
    "per_transaction": str(4 * SOL), "daily_total": str(6 * SOL), "weekly_total": str(20 * SOL),
    "instant_max": str(SOL), "notify_max": str(2 * SOL), "delay_max": str(3 * SOL),
}, agent_id=agent.id)
wallet.add_policy("ALLOWED_ADDRESSES", {"addresses": [SUPPLIER, EXCHANGE]}, agent_id=agent.id)
wallet.add_policy("TIME_RESTRICTION", {
    "allowed_hours": {"start": 8, "end": 20}, "allowed_days": [1, 2, 3, 4, 5],
    "timezone": "Europe/Berlin",
}, agent_id=agent.id)
wallet.add_policy("RATE_LIMIT", {"max_requests": 5, "window_seconds": 3600}, agent_id=agent.id)

try:
    wallet.add_policy("SPENDING_LIMIT", {"daily_totl": "1"})
except Exception as exc:          # InvalidInputError, with every problem
    print(type(exc).__name__, exc)

wallet.policies.list(agent_id=agent.id)""",
    ),
    (
        "md",
        """## 3. Dry-run and explain

`dry_run` evaluates a request without writing anything, and says which rules fired and what
would change the outcome. Every hint is verified against the evaluator.""",
    ),
    ("code", """wallet.dry_run(Transfer(to=SUPPLIER, amount=2_500_000_000), agent_id=agent.id)"""),
    (
        "code",
        """stranger = "11111111111111111111111111111112"
explanation = wallet.dry_run(Transfer(to=stranger, amount=SOL), agent_id=agent.id)
print(explanation.to_text())""",
    ),
    (
        "code",
        """import json

print(json.dumps(explanation.to_dict()["decision"]["reasons"][0], indent=2))""",
    ),
    (
        "md",
        """## 4. Record a week of history

The agent pays suppliers through the week. Some payments are denied: over the daily budget,
outside office hours, and one above `delay_max` that needs the owner's approval while this
agent has no owner. The DELAY ones execute when their cooldown has passed and
`process_due()` runs.""",
    ),
    (
        "code",
        """token = wallet.issue_session(agent.id, ttl=7 * 86_400).token
plan = [  # (hours after Monday 09:00, SOL)
    (0, 0.5), (1, 1.5), (2, 2.5), (3, 2.0),            # Monday: the last one is over 6 SOL/day
    (24, 0.2), (25, 0.8), (26, 3.0),                    # Tuesday
    (48, 1.0), (48.5, 1.0), (49, 0.05), (60, 0.3),      # Wednesday; 21:00 is outside hours
    (72, 3.5), (73, 0.7),                               # Thursday
    (96, 0.4), (97, 1.2), (98, 1.9),                    # Friday
]
for hours, amount in plan:
    clock.set(MONDAY_9AM + int(hours * 3600))
    wallet.process_due()
    try:
        wallet.send(token, Transfer(to=SUPPLIER, amount=int(amount * SOL)))
    except PolicyDeniedError:
        pass
clock.advance(3600)
wallet.process_due()
history = wallet.list_transactions(agent_id=agent.id)
history""",
    ),
    (
        "code",
        """df = history.to_dataframe()
print(df.dtypes[["created_at", "amount", "amount_base_units"]])
df[["created_at", "status", "tier", "amount", "unit", "error"]]""",
    ),
    (
        "code",
        """# Exact sums: amounts are Decimals, never floats.
df[df.status == "CONFIRMED"].groupby("tier")["amount"].sum()""",
    ),
    (
        "md",
        """## 5. Budget usage

Spend in the rolling 24 h and 7 day windows against each limit (dashed), and each request
against the per-transaction cap.""",
    ),
    (
        "code",
        """usage = wallet.budget_usage(agent.id)
usage""",
    ),
    ("code", """ax = usage.plot()"""),
    (
        "md",
        """## 6. Replay history against a candidate policy

What if the tiers had been stricter and the daily budget smaller? `replay` re-decides every
recorded request at its original time, with the history the candidate itself would have
produced, and reports what changes.""",
    ),
    (
        "code",
        """from waiaas.policy import PolicySpec

current = [p.to_spec() for p in wallet.policies.list(agent_id=agent.id)]
candidate_limit = PolicySpec(
    id="candidate-limit", agent_id=agent.id, type="SPENDING_LIMIT",
    rules={"per_transaction": str(3 * SOL), "daily_total": str(4 * SOL),
           "instant_max": str(SOL // 2), "notify_max": str(SOL), "delay_max": str(2 * SOL)},
)
candidate = [p for p in current if p.type != "SPENDING_LIMIT"] + [candidate_limit]
result = wallet.policies.replay(agent.id, candidate)
result""",
    ),
    ("code", """result.to_dataframe()"""),
    ("code", """ax = result.plot()"""),
    (
        "md",
        """Read the flips in both directions: the smaller budget denies requests the
recorded policy allowed, and can also *allow* one it denied, because the candidate denied
earlier requests that had used up the budget. Nothing above changed the wallet: dry runs and
replays write nothing.

## 7. The audit trail

Every status change wrote an audit row in the same database transaction. The log is
append-only: the database itself refuses UPDATE and DELETE.""",
    ),
    (
        "code",
        """page = wallet.audit(agent_id=agent.id, limit=200)
page""",
    ),
    (
        "code",
        """audit = page.to_dataframe()
audit.groupby(["event_type", "severity"]).size()""",
    ),
    (
        "code",
        """# Why was each request denied?
violations = wallet.audit(agent_id=agent.id, event_types=["POLICY_VIOLATION"]).to_dataframe()
for when, details in zip(violations.timestamp, violations.details):
    print(when, "|", "; ".join(r["message"] for r in details["reasons"]))""",
    ),
    ("code", """wallet.close()"""),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for kind, text in CELLS:
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
        elif kind == "code":
            nb.cells.append(nbformat.v4.new_code_cell(text))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(build(), OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")
