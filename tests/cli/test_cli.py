"""The operator CLI through typer's runner: every command's happy path and its error path,
``--json`` parsed, errors as one ``error:`` line with a non-zero exit code."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.e2e.conftest import EvmOwner, SolanaOwner, new_agent, recipient
from tests.support.pg_schema import pg_server, pg_url
from waiaas import Transfer

__all__ = ["pg_server", "pg_url"]  # fixtures for the PostgreSQL case

SPEND = {"instant_max": "1", "notify_max": "2", "delay_max": "3"}


# ---------------------------------------------------------------------------- basics


def test_version_and_help(cli: Cli) -> None:
    from waiaas import __version__

    assert cli.ok("version").stdout.strip() == __version__
    assert "approvals" in cli.ok("--help").stdout


def test_missing_or_unknown_database(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from waiaas.cli import app

    result = CliRunner().invoke(app, ["agents", "list"], env={"WAIAAS_DB": ""})
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: no wallet database: pass --db PATH or set WAIAAS_DB"
    missing = tmp_path / "nope.db"
    result = CliRunner().invoke(app, ["--db", str(missing), "agents", "list"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: no wallet database at {missing} (create one with `waiaas --db {missing} init`)"
    )
    assert not missing.exists()


def test_password_errors_are_one_line(cli: Cli) -> None:
    """Without a password source and without a terminal: one line naming the sources; a
    wrong password: one line, and nothing in the output repeats it."""
    line = cli.error("agents", "list", env={"WAIAAS_MASTER_PASSWORD": ""})
    assert "WAIAAS_MASTER_PASSWORD" in line
    result = cli.run("agents", "list", env={"WAIAAS_MASTER_PASSWORD": "hunter2-wrong"})
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert "hunter2-wrong" not in result.output


def test_init_creates_a_wallet_once(cli: Cli, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from waiaas.cli import app

    path = tmp_path / "new.db"
    env = {"WAIAAS_MASTER_PASSWORD": "a new password"}
    obj = {"config": {"kdf": {"opslimit": 1, "memlimit": 8192}}}
    result = CliRunner().invoke(app, ["--db", str(path), "init"], env=env, obj=obj)
    assert result.exit_code == 0, result.output
    assert path.is_file() and Path(f"{path}.keystore").is_dir()
    again = CliRunner().invoke(app, ["--db", str(path), "init"], env=env, obj=obj)
    assert again.exit_code == 1 and again.stderr.strip() == f"error: {path} already exists"


# ---------------------------------------------------------------------------- agents


def test_agents_create_list_show(cli: Cli, owner: EvmOwner) -> None:
    made = cli.json("agents", "create", "bot", "--chain", "evm", "--owner", owner.address)
    assert made["name"] == "bot" and made["owner_address"] == owner.address
    listed = cli.json("agents", "list")
    assert [a["id"] for a in listed] == [made["id"]]
    assert cli.json("agents", "show", made["id"])["public_key"] == made["public_key"]
    assert made["id"] in cli.ok("agents", "list").stdout
    assert cli.json("agents", "list", "--status", "SUSPENDED") == []
    assert "no chain adapter for dogecoin" in cli.error(
        "agents", "create", "x", "--chain", "dogecoin"
    )
    assert "owner" in cli.error("agents", "create", "x", "--chain", "evm", "--owner", "0x12")
    assert cli.error("agents", "show", "01a24a00-0000-7000-8000-000000000000").endswith("not found")


def test_agents_suspend_resume_set_owner_terminate(cli: Cli, owner: EvmOwner) -> None:
    agent = new_agent(cli.wallet, "solana")
    assert cli.json("agents", "suspend", agent.id, "--reason", "odd trades")["status"] == (
        "SUSPENDED"
    )
    assert "is SUSPENDED" in cli.error("agents", "suspend", agent.id)
    assert cli.json("agents", "resume", agent.id)["status"] == "ACTIVE"
    assert cli.error("agents", "resume", agent.id).startswith("error: agent ")
    assert cli.json("agents", "set-owner", agent.id, owner.address)["owner_address"] == (
        owner.address
    )
    assert cli.json("agents", "set-owner", agent.id, "none")["owner_address"] is None
    assert "--yes" in cli.error("agents", "terminate", agent.id)
    assert cli.wallet.get_agent(agent.id).status == "ACTIVE"
    assert cli.json("agents", "terminate", agent.id, "--yes")["status"] == "TERMINATED"


# ---------------------------------------------------------------------------- sessions


def test_sessions_issue_list_revoke(cli: Cli) -> None:
    agent = new_agent(cli.wallet, "solana")
    issued = cli.json("sessions", "issue", agent.id, "--ttl", "600")
    result = cli.wallet.send(issued["token"], Transfer(to=recipient("solana"), amount=10**7))
    assert result.status == "CONFIRMED"
    listed = cli.json("sessions", "list", agent.id)
    assert [s["session_id"] for s in listed] == [issued["session_id"]]
    assert "token" not in json.dumps(listed)
    plain = cli.ok("sessions", "issue", agent.id).stdout.splitlines()[0]
    assert plain.count(".") == 2  # the JWT alone on the first line, for `$(...)`
    assert cli.json("sessions", "revoke", issued["session_id"])["revoked"] is True
    assert cli.json("sessions", "list", agent.id)[1]["status"] in ("revoked", "active")
    assert "not found" in cli.error("sessions", "revoke", "01a24a00-0000-7000-8000-000000000000")
    assert "ttl" in cli.error("sessions", "issue", agent.id, "--ttl", "-5").lower()


# ---------------------------------------------------------------------------- policies


def test_policies_add_list_update_disable_enable(cli: Cli, tmp_path: Path) -> None:
    agent = new_agent(cli.wallet, "solana")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"max_requests": 5, "window_seconds": 60}))
    added = cli.json("policies", "add", "RATE_LIMIT", f"@{rules}", "--agent", agent.id)
    assert added["rules"]["max_requests"] == 5 and added["enabled"] is True
    assert [p["id"] for p in cli.json("policies", "list", "--agent", agent.id)] == [added["id"]]
    updated = cli.json(
        "policies", "update", added["id"], "--rules", '{"max_requests": 9, "window_seconds": 60}'
    )
    assert updated["rules"]["max_requests"] == 9
    assert cli.json("policies", "disable", added["id"])["enabled"] is False
    assert cli.json("policies", "enable", added["id"])["enabled"] is True
    assert cli.json("policies", "update", added["id"], "--priority", "7")["priority"] == 7
    assert "RATE_LIMIT" in cli.ok("policies", "list").stdout
    assert "nothing to update" in cli.error("policies", "update", added["id"])
    bad = cli.error("policies", "add", "RATE_LIMIT", '{"max_requests": -1}')
    assert "max_requests" in bad or "window_seconds" in bad
    assert "not valid JSON" in cli.error("policies", "add", "RATE_LIMIT", "{oops")
    assert "not found" in cli.error("policies", "disable", "01900000-0000-7000-8000-000000000000")


def test_policies_dry_run(cli: Cli) -> None:
    agent = new_agent(cli.wallet, "solana", owner=SolanaOwner())
    dest = recipient("solana")
    request = json.dumps({"type": "TRANSFER", "to": dest, "amount": str(11 * 10**9)})
    out = cli.json("policies", "dry-run", agent.id, request)
    assert out["decision"]["tier"] == "APPROVAL" and out["decision"]["allowed"] is True
    assert "APPROVAL" in cli.ok("policies", "dry-run", agent.id, request).stdout
    assert cli.wallet.list_transactions(agent_id=agent.id) == []  # wrote nothing
    assert cli.error("policies", "dry-run", agent.id, '{"type": "TRANSFER"}').startswith("error:")


def test_policies_replay_shows_what_would_change(cli: Cli) -> None:
    agent = new_agent(cli.wallet, "solana")
    token = cli.wallet.issue_session(agent.id).token
    for _ in range(3):
        cli.wallet.send(token, Transfer(to=recipient("solana"), amount=10**7))
    candidate = json.dumps([{"type": "SPENDING_LIMIT", "rules": SPEND}])
    diffs = cli.json("policies", "replay", agent.id, "--policies", candidate)
    assert len(diffs) == 3
    assert all(any("tier" in c or "allowed" in c for c in d["changes"]) for d in diffs)
    assert (
        "Changed decisions"
        in cli.ok("policies", "replay", agent.id, "--policies", candidate).stdout
    )
    assert cli.json("policies", "replay", agent.id, "--policies", "[]") == []
    assert "JSON list" in cli.error("policies", "replay", agent.id, "--policies", "{}")
    assert "ISO" in cli.error(
        "policies", "replay", agent.id, "--policies", "[]", "--since", "yesterday"
    )


# ---------------------------------------------------------------------------- tx


def test_tx_list_show_cancel(cli: Cli) -> None:
    agent = new_agent(cli.wallet, "solana", name="payer")
    token = cli.wallet.issue_session(agent.id).token
    dest = recipient("solana")
    delayed = cli.wallet.send(token, Transfer(to=dest, amount=2 * 10**9))
    done = cli.wallet.send(token, Transfer(to=dest, amount=10**7))
    listed = cli.json("tx", "list", "--agent", agent.id)
    assert [t["id"] for t in listed] == [done.id, delayed.id]
    assert [t["id"] for t in cli.json("tx", "list", "--status", "QUEUED")] == [delayed.id]
    shown = cli.json("tx", "show", delayed.id)
    # the text of the effect decoded from the plan that will be signed (source included)
    first = shown["display"]["effects"][0]["text"]
    assert first.startswith("send 2 SOL from ") and first.endswith(f" to {dest}")
    assert shown["status"] == "QUEUED" and shown["tier"] == "DELAY"
    assert shown["display"]["network_fee"] == {
        "text": "network fee: 0.000005 SOL",
        "amount": "0.000005 SOL",
        "base_units": "5000",
        "maximum": False,
    }
    text = cli.ok("tx", "show", delayed.id).stdout
    assert f" to {dest}" in text and "send 2 SOL from " in text and "execute_after" in text
    assert "  network fee: 0.000005 SOL\n" in text
    assert "fee paid: 0.000005 SOL" in cli.ok("tx", "show", done.id).stdout
    assert cli.json("tx", "cancel", delayed.id)["status"] == "CANCELLED"
    assert "only PENDING or QUEUED" in cli.error("tx", "cancel", done.id)
    assert "status" in cli.error("tx", "list", "--status", "LOST")
    assert "not found" in cli.error("tx", "show", "01a24a00-0000-7000-8000-000000000000")


# ---------------------------------------------------------------------------- approvals


def test_approvals_list_message_approve(cli: Cli, owner: EvmOwner) -> None:
    tx_id = cli.queue_approval(owner)
    url = "https://wallet.example.com/approvals"
    pending = cli.json("approvals", "list", env={"WAIAAS_APPROVALS_URL": url})
    assert [p["tx_id"] for p in pending] == [tx_id]
    assert pending[0]["effects"][0].startswith("send 2 ETH from 0x")
    assert pending[0]["link"].startswith(f"{url}/{tx_id}/")
    assert pending[0]["expires_iso"].endswith("Z")
    fee = pending[0]["network_fee"]
    assert fee["maximum"] is True and fee["text"].startswith("network fee: at most ")
    assert fee["amount"].endswith(" ETH") and int(fee["base_units"]) % 21000 == 0
    assert cli.json("approvals", "list")[0]["link"] is None
    message = cli.ok("approvals", "message", tx_id).stdout
    assert message.rstrip("\n") == cli.wallet.approval_message(tx_id)
    assert "TRANSFER of 2 ETH to 0x" in message  # human units, not base units
    assert f"\nNetwork fee: {fee['text'].removeprefix('network fee: ')}\n" in message
    data = cli.json("approvals", "message", tx_id, "--reject")
    assert data["owner"] == owner.address and data["owner_kind"] == "evm"
    assert data["network_fee"] == fee and data["effects"] == pending[0]["effects"]
    assert data["message"] == cli.wallet.approval_message(tx_id, "reject")
    wrong = EvmOwner().sign(cli.wallet.approval_message(tx_id))
    assert "not made by the owner" in cli.error("approvals", "approve", tx_id, "--signature", wrong)
    signature = owner.sign(message.rstrip("\n"))[2:]  # hexbytes 2 style: no 0x
    approved = cli.json("approvals", "approve", tx_id, "--signature", signature)
    assert approved["status"] == "CONFIRMED" and approved["pending_execution"] is False
    assert "already decided" in cli.error("approvals", "approve", tx_id, "--signature", signature)
    assert cli.json("approvals", "list") == []


def test_approvals_reject_with_a_solana_owner(cli: Cli) -> None:
    owner = SolanaOwner()
    tx_id = cli.queue_approval(owner, chain="solana")
    message = cli.json("approvals", "message", tx_id, "--reject")["message"]
    assert "64 bytes" in cli.error("approvals", "reject", tx_id, "--signature", "zzzz")
    rejected = cli.json("approvals", "reject", tx_id, "--signature", owner.sign(message))
    assert rejected["status"] == "CANCELLED" and rejected["decision"] == "rejected"
    assert "not found" in cli.error("approvals", "message", "01a24a00-0000-7000-8000-000000000000")
    agent_id = cli.wallet.get_transaction(tx_id).agent_id
    token = cli.wallet.issue_session(agent_id).token
    delayed = cli.wallet.send(token, Transfer(to=recipient("solana"), amount=2 * 10**9))
    assert "not waiting for an owner approval" in cli.error("approvals", "message", delayed.id)
    assert "empty" in cli.error("approvals", "approve", tx_id, "--signature", " ")


# ---------------------------------------------------------------------------- kill switch


def test_kill_switch_on_status_off(cli: Cli) -> None:
    agent = new_agent(cli.wallet, "solana")
    assert cli.json("kill-switch", "status")["active"] is False
    assert "kill switch off" in cli.ok("kill-switch", "status").stdout
    summary = cli.json("kill-switch", "on", "--reason", "drill")
    assert summary["agents_suspended"] == 1 and summary["suspended_ids"] == [agent.id]
    assert summary["reason"] == "drill"
    state = cli.json("kill-switch", "status")
    assert state["active"] is True and state["reason"] == "drill"
    assert "already" in cli.error("kill-switch", "on", "--reason", "again").lower()
    assert cli.wallet.get_agent(agent.id).status == "SUSPENDED"
    released = cli.json("kill-switch", "off", "--resume-agents")
    assert released["agents_resumed"] == 1 and released["resumed_ids"] == [agent.id]
    assert cli.wallet.get_agent(agent.id).status == "ACTIVE"
    assert "not active" in cli.error("kill-switch", "off")
    assert cli.run("kill-switch", "on").exit_code == 2  # --reason is required


# ---------------------------------------------------------------------------- audit


def test_audit_tail_filter_export(cli: Cli, tmp_path: Path) -> None:
    agent = new_agent(cli.wallet, "solana")
    token = cli.wallet.issue_session(agent.id).token
    sent = cli.wallet.send(token, Transfer(to=recipient("solana"), amount=10**7))
    tail = cli.json("audit", "tail", "-n", "5")
    assert len(tail) == 5 and tail[0]["id"] < tail[-1]["id"]
    mine = cli.json("audit", "filter", "--tx", sent.id)
    assert {e["event_type"] for e in mine} >= {"TX_REQUESTED", "TX_CONFIRMED"}
    assert all(e["tx_id"] == sent.id for e in mine)
    only = cli.json("audit", "filter", "--event", "AGENT_CREATED", "--event", "TX_CONFIRMED")
    assert {e["event_type"] for e in only} == {"AGENT_CREATED", "TX_CONFIRMED"}
    assert "AGENT_CREATED" in cli.ok("audit", "tail").stdout
    jsonl = tmp_path / "audit.jsonl"
    report = cli.json("audit", "export", str(jsonl), "--agent", agent.id)
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert report["entries"] == len(lines) > 3 and all(e["agent_id"] == agent.id for e in lines)
    every = tmp_path / "all.csv"
    cli.ok("audit", "export", str(every), "--format", "csv")
    with every.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= len(lines) and json.loads(rows[0]["details"]) is not None
    assert "already exists" in cli.error("audit", "export", str(every))
    assert "jsonl or csv" in cli.error("audit", "export", str(tmp_path / "x"), "--format", "xml")
    assert "unknown audit event" in cli.error("audit", "filter", "--event", "NOPE")
    assert not (tmp_path / "x").exists()
    since = cli.json("audit", "filter", "--since", "2100-01-01T00:00:00Z")
    assert since == []


# ---------------------------------------------------------------------------- backup


def test_backup(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "backups"
    target.mkdir()
    report = cli.json("backup", "--dir", str(target))
    con = sqlite3.connect(report["path"])
    try:
        assert con.execute("SELECT count(*) FROM agents").fetchone() == (0,)
    finally:
        con.close()
    assert report["keystore"].endswith(".keystore")
    assert "does not exist" in cli.error("backup", "--dir", str(tmp_path / "missing"))


# ---------------------------------------------------------------------------- health


def test_health_exit_codes_and_json(cli: Cli, tmp_path: Path) -> None:
    """0 when healthy, 1 on a warning (no channel), 2 when critical (kill switch on) or the
    file is not a waiaas database; --json carries every figure."""
    result = cli.run("health", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["status"] == "warning"
    assert report["schema"]["current"] is True and report["kill_switch"]["active"] is False
    assert any("notification channel" in p["message"] for p in report["problems"])
    cli.wallet.channels.add("WEBHOOK", {"url": "https://hooks.example.com/x", "secret": "s" * 32})
    owner = EvmOwner()
    cli.queue_approval(owner)
    result = cli.run("health", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert report["work"]["pending_approvals"] == 1 and report["work"]["queued"] == 1
    assert report["channels"][0]["healthy"] is True
    assert "OK" in cli.run("health").stdout
    cli.wallet.kill_switch("drill")
    result = cli.run("health")
    assert result.exit_code == 2 and "kill switch is ON: drill" in result.stdout
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    from typer.testing import CliRunner

    from waiaas.cli import app

    bad = CliRunner().invoke(app, ["--db", str(junk), "health"])
    assert bad.exit_code == 2 and "not a waiaas database" in bad.stdout


def test_health_reports_stuck_and_overdue_work(cli: Cli) -> None:
    agent = new_agent(cli.wallet, "solana")
    token = cli.wallet.issue_session(agent.id).token
    delayed = cli.wallet.send(token, Transfer(to=recipient("solana"), amount=2 * 10**9))
    con = sqlite3.connect(cli.db)
    try:
        meta = json.loads(
            con.execute("SELECT metadata FROM transactions WHERE id = ?", (delayed.id,)).fetchone()[
                0
            ]
        )
        meta["execute_after"] = 1_000
        con.execute(
            "UPDATE transactions SET metadata = ? WHERE id = ?", (json.dumps(meta), delayed.id)
        )
        con.commit()
    finally:
        con.close()
    report = json.loads(cli.run("health", "--json").stdout)
    assert report["work"]["overdue_delays"] == 1
    assert any("not being processed" in p["message"] for p in report["problems"])


@pytest.mark.parametrize("args", [["tx", "show"], ["approvals", "approve", "x"], ["nope"]])
def test_usage_errors_exit_2(cli: Cli, args: list[str]) -> None:
    assert cli.run(*args).exit_code == 2


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["policies", "list", "--agent", "x" * 300], "agent_id"),
        (["policies", "enable", "01900000-0000-7000-8000-000000000000"], "not found"),
        (["approvals", "list", "--agent", "x" * 300], "agent_id"),
        (["audit", "tail", "-n", "0"], "limit"),
        (["audit", "tail", "--severity", "loud"], "severity"),
        (["tx", "list", "--limit", "5000"], "limit"),
        (["serve-approvals", "--port", "0"], "--port"),
        (["agents", "list", "--status", "NAPPING"], "status"),
    ],
)
def test_error_paths_are_one_line(cli: Cli, args: list[str], fragment: str) -> None:
    assert fragment in cli.error(*args)


def test_kill_switch_status_with_a_wrong_password(cli: Cli) -> None:
    line = cli.error("kill-switch", "status", env={"WAIAAS_MASTER_PASSWORD": "wrong password 1"})
    assert "password" in line.lower() and "wrong password 1" not in line


def test_init_creates_a_wallet_on_postgresql_once(pg_url: str) -> None:
    """``init`` with a PostgreSQL URL as --db: the wallet and its keystore in that schema,
    a second init refused, and the URL's password never printed."""
    from typer.testing import CliRunner

    from waiaas.cli import app
    from waiaas.db import Database
    from waiaas.keystore import Keystore

    env = {"WAIAAS_MASTER_PASSWORD": "a new password"}
    obj = {"config": {"kdf": {"opslimit": 1, "memlimit": 8192}}}
    result = CliRunner().invoke(app, ["--db", pg_url, "init"], env=env, obj=obj)
    assert result.exit_code == 0, result.output
    assert "keystore in the database" in result.stdout
    db = Database.open(pg_url)
    try:
        assert Keystore.exists(db)
    finally:
        db.close()
    again = CliRunner().invoke(app, ["--db", pg_url, "init"], env=env, obj=obj)
    assert again.exit_code == 1 and "already holds a wallet" in again.stderr
    listed = CliRunner().invoke(app, ["--db", pg_url, "agents", "list"], env=env, obj=obj)
    assert listed.exit_code == 0, listed.output
