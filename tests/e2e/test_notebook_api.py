"""What a notebook user looks at: short reprs, HTML reprs with the key fields (escaped),
DataFrames with datetimes and exact amounts, charts rendered to PNG, and explanations that
serialise. Everything runs on a real wallet (SQLite, LiteSVM) on a frozen clock.

The PNGs are kept in ``tests/artifacts/`` (git-ignored) for a person to look at."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from waiaas import (
    AgentNotActiveError,
    InvalidInputError,
    PolicyDeniedError,
    SessionList,
    TokenRevokedError,
    Transfer,
    TxStatus,
    Wallet,
)
from waiaas.policy import PolicySpec, ReplayResult
from waiaas.testing import FrozenClock, fund, local_wallet
from waiaas.types import AuditPage, TransactionList

pd = pytest.importorskip("pandas")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
SOL = 10**9
START = 1_700_000_000
DEST = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Wallet, str, str, FrozenClock]:
    """A funded Solana agent with a spending limit and a little history: INSTANT, NOTIFY and
    DELAY transfers over two days, and one denial."""
    clock = FrozenClock(START)
    wallet = local_wallet(tmp_path, clock=clock)
    agent = wallet.create_agent("<b>trader</b>", "solana")
    fund(wallet, agent.id, 100 * SOL)
    wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "per_transaction": str(3 * SOL),
            "daily_total": str(5 * SOL),
            "weekly_total": str(20 * SOL),
            "instant_max": str(SOL // 10),
            "notify_max": str(SOL),
            "delay_max": str(3 * SOL),
        },
        agent_id=agent.id,
    )
    token = wallet.issue_session(agent.id, ttl=7 * 86_400).token
    for amount in (SOL // 20, SOL // 2, 2 * SOL):
        wallet.send(token, Transfer(to=DEST, amount=amount))
        clock.advance(3_600)
    with pytest.raises(PolicyDeniedError):
        wallet.send(token, Transfer(to=DEST, amount=4 * SOL))
    clock.advance(86_400)
    wallet.send(token, Transfer(to=DEST, amount=SOL // 20))
    yield wallet, agent.id, token, clock
    wallet.close()


def test_short_reprs_are_one_line_with_plain_enums(
    lab: tuple[Wallet, str, str, FrozenClock],
) -> None:
    """Reprs fit on a line, show enums as plain values and never dump whole pages."""
    wallet, agent_id, _, _ = lab
    txs = wallet.list_transactions(agent_id=agent_id)
    page = wallet.audit(limit=15)
    explanation = wallet.dry_run(Transfer(to=DEST, amount=SOL), agent_id=agent_id)
    things = [
        txs,
        txs[0],
        wallet.get_transaction(txs[0].id),
        wallet.get_agent(agent_id),
        wallet.list_agents(),
        page,
        page.entries[0],
        explanation,
        explanation.decision,
        wallet.policies.list(),
        wallet.policies.list()[0],
        wallet.budget_usage(agent_id),
    ]
    for thing in things:
        text = repr(thing)
        assert "\n" not in text
        assert len(text) < 400, text
        assert "<TxStatus" not in text and "<Tier" not in text and "<AgentStatus" not in text
    assert len(page.entries) == 15 and len(repr(page)) < 200
    assert "status=CONFIRMED" in repr(txs[0])
    assert repr(TxStatus.CONFIRMED) == "TxStatus.CONFIRMED"


def test_html_reprs_show_the_key_fields_escaped(lab: tuple[Wallet, str, str, FrozenClock]) -> None:
    """Each result renders as HTML tables with the fields a person looks for; text from the
    database (an agent name with markup) is escaped."""
    wallet, agent_id, _, _ = lab
    txs = wallet.list_transactions(agent_id=agent_id)
    confirmed = next(t for t in txs if t.status == "CONFIRMED" and t.tier == "INSTANT")
    result = wallet.get_transaction(confirmed.id)
    html = result._repr_html_()
    for needed in (result.id, "CONFIRMED", "INSTANT", "0.05 SOL (50000000)", DEST):
        assert needed in html
    assert result.tx_hash is not None and result.tx_hash in html
    assert "allowed as INSTANT" in html  # the decision

    listing = txs._repr_html_()
    assert listing.count("<tr>") == len(txs) + 1
    assert "FAILED" in listing and "QUEUED" in listing and "DELAY" in listing

    agent_html = wallet.get_agent(agent_id)._repr_html_()
    assert "&lt;b&gt;trader&lt;/b&gt;" in agent_html and "<b>trader" not in agent_html
    assert "ACTIVE" in agent_html

    page_html = wallet.audit(agent_id=agent_id, limit=50)._repr_html_()
    for event in ("TX_REQUESTED", "TX_CONFIRMED", "POLICY_VIOLATION", "SESSION_ISSUED"):
        assert event in page_html

    denied = wallet.dry_run(Transfer(to=DEST, amount=4 * SOL), agent_id=agent_id)
    dry_html = denied._repr_html_()
    assert "DENIED" in dry_html and "per-transaction limit" in dry_html
    assert "would be" in dry_html  # the hints table
    assert "Budgets checked" in dry_html

    policy_html = wallet.policies.list(agent_id=agent_id)[0]._repr_html_()
    assert "SPENDING_LIMIT" in policy_html and "rules.daily_total" in policy_html
    assert "5000000000" in policy_html

    budget_html = wallet.budget_usage(agent_id)._repr_html_()
    assert "24h" in budget_html and "7d" in budget_html and "5 SOL" in budget_html


def test_denied_transaction_says_why(lab: tuple[Wallet, str, str, FrozenClock]) -> None:
    """A denied transaction's ``error`` carries the deny reason, not only the code."""
    wallet, agent_id, _, _ = lab
    failed = wallet.list_transactions(agent_id=agent_id, status="FAILED")
    assert len(failed) == 1
    error = failed[0].error or ""
    assert error.startswith("POLICY_DENIED: denied by policy: ")
    assert "exceeds the per-transaction limit of 3 SOL" in error


def test_explanation_serialises(lab: tuple[Wallet, str, str, FrozenClock]) -> None:
    """``Explanation.to_dict()`` is JSON-able and keeps amounts exact (strings)."""
    wallet, agent_id, _, _ = lab
    explanation = wallet.dry_run(Transfer(to=DEST, amount=4 * SOL), agent_id=agent_id)
    data = json.loads(json.dumps(explanation.to_dict()))
    assert data["decision"]["allowed"] is False
    assert data["hints"] == list(explanation.hints) and data["hints"]
    assert all(isinstance(v, str) for v in data["amount_for_tier"].values())
    assert "SPENDING_LIMIT" in {r["type"] for r in data["fired"]}
    limits = {b["window"]: b["limit"] for b in data["decision"]["budget"]}
    assert limits == {"transaction": str(3 * SOL), "24h": str(5 * SOL), "7d": str(20 * SOL)}


def _no_floats(df: pd.DataFrame) -> None:
    for name, dtype in df.dtypes.items():
        assert not pd.api.types.is_float_dtype(dtype), name
        for value in df[name].dropna():
            assert not isinstance(value, float), (name, value)


def test_transactions_to_dataframe(lab: tuple[Wallet, str, str, FrozenClock]) -> None:
    """Times are UTC datetimes; amounts are exact Decimals of SOL and base-unit strings."""
    wallet, agent_id, _, _ = lab
    txs = wallet.list_transactions(agent_id=agent_id)
    df = txs.to_dataframe()
    assert len(df) == len(txs) == 5
    assert str(df["created_at"].dtype).startswith("datetime64") and "UTC" in str(
        df["created_at"].dtype
    )
    assert df["created_at"].iloc[-1] == pd.Timestamp(START, unit="s", tz="UTC")
    assert all(isinstance(v, Decimal) for v in df["amount"])
    assert sorted(df["amount"]) == sorted(
        [Decimal("0.05"), Decimal("0.5"), Decimal("2"), Decimal("4"), Decimal("0.05")]
    )
    assert set(df["amount_base_units"]) == {"50000000", "500000000", "2000000000", "4000000000"}
    assert set(df["unit"]) == {"SOL"}
    assert set(df["status"]) == {"CONFIRMED", "QUEUED", "FAILED"}
    assert df["executed_at"].isna().sum() >= 2  # queued and denied never executed
    _no_floats(df)
    # a slice of the listing is still a listing
    assert isinstance(txs[:2], TransactionList) and len(txs[:2].to_dataframe()) == 2


def test_other_listings_to_dataframe(lab: tuple[Wallet, str, str, FrozenClock]) -> None:
    """Audit pages, agents, policies and replay results convert too, without floats."""
    wallet, agent_id, _, _ = lab
    page = wallet.audit(agent_id=agent_id, limit=100)
    audit = page.to_dataframe()
    assert len(audit) == len(page.entries)
    assert "UTC" in str(audit["timestamp"].dtype)
    assert isinstance(audit["details"].iloc[0], dict)
    agents = wallet.list_agents().to_dataframe()
    assert list(agents["name"]) == ["<b>trader</b>"]
    policies = wallet.policies.list().to_dataframe()
    assert policies["rules"].iloc[0]["daily_total"] == str(5 * SOL)
    stricter = PolicySpec(
        id="stricter", agent_id=agent_id, type="SPENDING_LIMIT",
        rules={"per_transaction": str(SOL), "instant_max": "0"},
    )  # fmt: skip
    result = wallet.policies.replay(agent_id, [stricter])
    replayed = result.to_dataframe()
    assert len(replayed) == len(result) > 0
    assert "UTC" in str(replayed["created_at"].dtype)
    usage = wallet.budget_usage(agent_id).to_dataframe()
    assert set(usage["window"]) == {"24h", "7d"}
    assert all(isinstance(v, str) for v in usage["spent"])
    for df in (audit, agents, policies, replayed, usage):
        _no_floats(df)


def test_replay_result_counts_every_outcome(lab: tuple[Wallet, str, str, FrozenClock]) -> None:
    """The replay result is still the list of diffs, and counts outcomes over all records."""
    wallet, agent_id, _, _ = lab
    stricter = PolicySpec(
        id="stricter", agent_id=agent_id, type="SPENDING_LIMIT",
        rules={"per_transaction": str(SOL), "instant_max": "0", "notify_max": str(SOL)},
    )  # fmt: skip
    result = wallet.policies.replay(agent_id, [stricter])
    assert isinstance(result, ReplayResult) and isinstance(result, list)
    assert result.compared == 5
    assert sum(result.transitions.values()) == 5
    flips = result.flips()
    assert flips[("DELAY", "DENIED")] == 1  # the 2 SOL transfer
    assert flips[("INSTANT", "NOTIFY")] == 2  # both 0.05 SOL transfers
    assert len(result) == sum(flips.values())
    counts = result.counts()
    assert counts["DENIED"] == {"recorded": 1, "candidate": 2}
    assert "of 5 decisions change" in repr(result)
    assert "INSTANT" in result._repr_html_()
    diff = next(d for d in result if d.candidate.allowed is False)
    diff_html = diff._repr_html_()
    assert diff.tx_id in diff_html and "DELAY" in diff_html and "DENIED" in diff_html
    assert "allowed: True -&gt; False" in diff_html
    assert "changes=" in repr(diff) and "\n" not in repr(diff)
    decision_html = diff.candidate._repr_html_()
    assert "DENIED" in decision_html and "per-transaction limit" in decision_html
    spec_html = stricter._repr_html_()
    assert "SPENDING_LIMIT" in spec_html and "rules.per_transaction" in spec_html
    assert "stricter" in repr(stricter)


def test_budget_usage_matches_the_rolling_windows(
    lab: tuple[Wallet, str, str, FrozenClock],
) -> None:
    """Spent and remaining follow the evaluator's windows: the denied request counts nothing,
    the queued DELAY counts, and yesterday's requests fall out of the 24 h window."""
    wallet, agent_id, _, _ = lab
    usage = wallet.budget_usage(agent_id)
    fee = 5_000  # each transfer's signature fee counts too
    total = SOL // 20 + SOL // 2 + 2 * SOL + SOL // 20 + 4 * fee
    assert usage.spent("7d") == total
    assert usage.spent("24h") == SOL // 20 + fee
    assert usage.remaining() == {"24h": 5 * SOL - SOL // 20 - fee, "7d": 20 * SOL - total}
    explanation = wallet.dry_run(Transfer(to=DEST, amount=SOL // 20), agent_id=agent_id)
    figures = {b.window: b.spent for b in explanation.decision.budget}
    assert figures["24h"] == usage.spent("24h") and figures["7d"] == usage.spent("7d")
    with pytest.raises(InvalidInputError):
        usage.spent("1h")


CHART_CHILD = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from waiaas import PolicyDeniedError, Transfer
from waiaas.plots import budget_chart, replay_chart
from waiaas.policy import PolicySpec
from waiaas.testing import FrozenClock, fund, local_wallet

SOL, DEST, out = 10**9, sys.argv[1], sys.argv[2]
clock = FrozenClock(1_700_000_000)
with local_wallet(sys.argv[3], clock=clock) as wallet:
    agent = wallet.create_agent("trader", "solana")
    fund(wallet, agent.id, 100 * SOL)
    wallet.add_policy("SPENDING_LIMIT", {
        "per_transaction": str(3 * SOL), "daily_total": str(5 * SOL),
        "weekly_total": str(20 * SOL), "instant_max": str(SOL // 10),
        "notify_max": str(SOL), "delay_max": str(3 * SOL)}, agent_id=agent.id)
    token = wallet.issue_session(agent.id, ttl=7 * 86_400).token
    for amount in (SOL // 20, SOL // 2, 2 * SOL, 4 * SOL, SOL // 20):
        try:
            wallet.send(token, Transfer(to=DEST, amount=amount))
        except PolicyDeniedError:
            pass
        clock.advance(20_000)
    ax = budget_chart(wallet.budget_usage(agent.id))
    ax.figure.savefig(f"{out}/budget_usage.png", dpi=80)
    stricter = PolicySpec(id="stricter", agent_id=agent.id, type="SPENDING_LIMIT",
                          rules={"per_transaction": str(SOL), "instant_max": "0"})
    ax2 = replay_chart(wallet.policies.replay(agent.id, [stricter]))
    ax2.figure.savefig(f"{out}/replay_comparison.png", dpi=80)
    print(json.dumps({
        "legend": [t.get_text() for t in ax.get_legend().get_texts()],
        "ylabel": ax.get_ylabel(),
        "xticks": [t.get_text() for t in ax2.get_xticklabels()],
        "texts": [t.get_text() for t in ax2.texts],
    }))
    plt.close("all")
"""


@pytest.mark.slow
@pytest.mark.sqlite_only  # a fresh interpreter with its own SQLite wallet: charts, not storage
def test_charts_render_to_png(tmp_path: Path) -> None:
    """The budget chart and the replay comparison draw real PNGs (kept in tests/artifacts/).

    Drawn in a fresh interpreter, with warnings as errors: earlier tests in this process run
    SPL Token programs on an in-process LiteSVM, which leaves this thread's x87 FPU state
    dirty (seen on x86-64), after which numpy inside matplotlib's tick locator computes NaN.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", CHART_CHILD, DEST, str(ARTIFACTS), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"limit 24h", "limit 7d", "spent, rolling 24h", "each request"} <= set(shown["legend"])
    assert shown["ylabel"] == "SOL"
    assert shown["xticks"][:2] == ["INSTANT", "NOTIFY"]
    assert any("->" in text for text in shown["texts"])
    for name in ("budget_usage.png", "replay_comparison.png"):
        data = (ARTIFACTS / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_local_wallet_works_without_with(tmp_path: Path) -> None:
    """``local_wallet(...)`` stays open outside a ``with`` block (nothing closes it behind
    the user's back), closes with ``close()``, and still works as a context manager."""
    wallet = local_wallet(tmp_path)
    gc.collect()
    agent = wallet.create_agent("bot", "solana")
    assert wallet.get_agent(agent.id).status == "ACTIVE"
    wallet.close()
    with pytest.raises(Exception, match="closed"):
        wallet.get_agent(agent.id)
    with local_wallet(tmp_path) as again:
        assert [a.name for a in again.list_agents()] == ["bot"]


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("…", "too short"),
        ("hunter2", "too short"),
        ("aaaaaaaaaaaaaaaa", "different"),
        ("abababababababab", "different"),
        ("abcdefghijklmnop", "run"),
        ("1234567890123", "run"),
        ("QWERTYUIOPASD", "run"),
        ("9876543210987", "run"),
    ],
)
def test_weak_master_password_is_refused_for_a_new_wallet(
    tmp_path: Path, password: str, why: str
) -> None:
    """A new wallet refuses a weak master password before creating any file; the message
    says why and never echoes the password."""
    with pytest.raises(InvalidInputError) as info:
        Wallet.open(tmp_path / "w.db", password=password)
    assert info.value.field == "password"
    assert why in str(info.value) and password not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_password_strength_can_be_lowered_for_tests(tmp_path: Path) -> None:
    """``WalletConfig(min_password_length=0)`` turns the check off; an existing wallet opens
    with whatever password it was created with; a weak new password is refused."""
    from waiaas.testing import fast_config

    with Wallet.open(tmp_path / "w.db", password="pw", config=fast_config(min_password_length=0)):
        pass
    with Wallet.open(tmp_path / "w.db", password="pw", config=fast_config()) as wallet:
        with pytest.raises(InvalidInputError) as info:
            wallet.change_password("pw", "short")
        assert info.value.field == "new_password"
        wallet.change_password("pw", "a much better passphrase")
    with Wallet.open(tmp_path / "w.db", password="a much better passphrase", config=fast_config()):
        pass


@pytest.mark.parametrize(
    ("constraints", "field"),
    [
        ({"allowed_networks": ["devnet"]}, "constraints.allowed_networks"),
        ({"allowed_networks": []}, "constraints.allowed_networks"),
        ({"allowed_tx_types": ["BATCH"]}, "constraints.allowed_tx_types"),
        ({"allowed_tx_types": []}, "constraints.allowed_tx_types"),
    ],
)
def test_sessions_that_can_never_send_are_refused(
    lab: tuple[Wallet, str, str, FrozenClock], constraints: dict[str, list[str]], field: str
) -> None:
    """A session whose networks or types can never match its (localnet) agent is refused at
    issue, and nothing is stored or audited as issued."""
    wallet, agent_id, _, _ = lab
    before = len(wallet.list_sessions(agent_id))
    with pytest.raises(InvalidInputError) as info:
        wallet.issue_session(agent_id, constraints=constraints)
    assert info.value.field == field
    assert len(wallet.list_sessions(agent_id)) == before
    ok = wallet.issue_session(agent_id, constraints={"allowed_networks": ["localnet"]})
    assert ok.constraints.allowed_networks == ("localnet",)


def test_audit_page_len_and_suspended_agent_repr(
    lab: tuple[Wallet, str, str, FrozenClock],
) -> None:
    """An audit page has a length; a suspended agent shows its state in both reprs."""
    wallet, agent_id, token, _ = lab
    page: AuditPage = wallet.audit(limit=3)
    assert len(page) == 3
    wallet.suspend_agent(agent_id, reason="looked odd")
    agent = wallet.get_agent(agent_id)
    assert "status=SUSPENDED" in repr(agent)
    assert "looked odd" in agent._repr_html_()
    with pytest.raises((AgentNotActiveError, TokenRevokedError)):  # suspension revokes
        wallet.send(token, Transfer(to=DEST, amount=1))


def test_sessions_render_and_convert_without_tokens(
    lab: tuple[Wallet, str, str, FrozenClock],
) -> None:
    """``list_sessions`` is a listing like the others: a one-line repr, an HTML table with
    times and constraints, a DataFrame with UTC datetimes and exact totals; no token, ever."""
    wallet, agent_id, token, _ = lab
    constrained = wallet.issue_session(
        agent_id, constraints={"max_tx_count": 3, "allowed_addresses": [DEST]}
    )
    wallet.send(constrained.token, Transfer(to=DEST, amount=SOL // 20))
    wallet.revoke_session(constrained.session_id)
    sessions = wallet.list_sessions(agent_id)
    assert isinstance(sessions, SessionList) and isinstance(sessions, list)
    assert isinstance(sessions[:1], SessionList)
    assert repr(sessions) == "SessionList(2 sessions {active: 1, revoked: 1})"
    one = sessions[1]
    text = repr(one)
    assert "\n" not in text and len(text) < 400 and "status=revoked" in text
    assert "max_tx_count=3" in text and "2023-" in text  # times as ISO, not Unix seconds
    html = sessions._repr_html_() + one._repr_html_()
    for needed in ("revoked", "active", "max_tx_count=3", DEST, "2023-11-14"):
        assert needed in html, needed
    df = sessions.to_dataframe()
    assert list(df["status"]) == ["active", "revoked"]
    for col in ("created_at", "expires_at", "revoked_at", "last_used_at"):
        assert "UTC" in str(df[col].dtype), col
    assert df["totals"].iloc[1] == {"native": str(SOL // 20 + 5_000)}  # with its fee
    assert list(df["requests"]) == [4, 1]  # the denied request was never charged
    _no_floats(df)
    everything = text + html + df.to_string() + repr(sessions)
    assert token not in everything and constrained.token not in everything


def test_kill_switch_state_renders(lab: tuple[Wallet, str, str, FrozenClock]) -> None:
    """The kill-switch state is short when off, says since when and why when on."""
    wallet, _, _, _ = lab
    assert repr(wallet.kill_switch_state()) == "KillSwitchState(active=False)"
    assert "Kill switch off" in wallet.kill_switch_state()._repr_html_()
    wallet.kill_switch("<script>drill</script>")
    state = wallet.kill_switch_state()
    assert "active=True" in repr(state) and "2023-" in repr(state)
    html = state._repr_html_()
    assert "Kill switch ON" in html and "&lt;script&gt;" in html and "<script>" not in html
