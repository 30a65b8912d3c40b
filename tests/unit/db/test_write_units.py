"""Every write unit of work in the code base is classified: per agent or global.

On PostgreSQL ``db.write(agent_id=X)`` takes the global lock shared and agent X's lock
exclusive, so units of work of different agents run in parallel; ``db.write()`` takes the
global lock exclusive and runs alone (docs/postgresql.md). A per-agent unit of work may write
only that agent's rows (its agent, sessions, transactions, approvals, policies, its own
``wallet_state`` keys: the policy-set MAC and the AUTO_STOP mark), its usage buckets (kept by
triggers) and the audit chain (which takes its own lock); anything touching several agents or
wallet-wide state (kill switch, channels, global policies, the keystore record, the signing
secret) must be global.

This test reads the sources with ``ast`` and finds every ``db.write(...)`` /
``_db.write(...)`` call and every ``_tx_write(...)`` of the pipeline (a per-agent unit for one
transaction): a new call site fails it until it is added to :data:`UNITS` with its class and
the reason it is safe.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "waiaas"

AGENT, GLOBAL = "agent", "global"

#: (file, function) -> the kind of each write unit of work in it, in source order, and why.
UNITS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    # ------------------------------------------------------------------ pipeline: one agent
    ("pipeline/base.py", "_PipelineBase._tx_write"): (
        (AGENT,),
        "the helper: one transaction's unit, locked to its agent (read first, checked inside)",
    ),
    ("pipeline/admission.py", "AdmissionStage.send"): (
        (AGENT,),
        "admission: the token's agent (found before the lock, checked inside); its session "
        "charge, its row, its usage buckets; a token whose agent was not found runs global",
    ),
    ("pipeline/admission.py", "AdmissionStage._refuse_tampered"): (
        (AGENT,),
        "TAMPER_DETECTED and the transaction FAILED: that transaction's agent (global if none)",
    ),
    ("pipeline/admission.py", "AdmissionStage.record_refusal"): (
        (AGENT,),
        "REQUEST_REFUSED and the AUTO_STOP check suspending that agent only",
    ),
    ("pipeline/admission.py", "AdmissionStage._record_constraint_violation"): (
        (AGENT,),
        "POLICY_VIOLATION and that agent's AUTO_STOP check (global without an agent)",
    ),
    ("pipeline/execution.py", "ExecutionStage._claim_unit"): (
        (AGENT,),
        "the claim: re-checks, the agent's nonce reserved among its own transactions",
    ),
    ("pipeline/execution.py", "ExecutionStage._record_signed"): (
        (AGENT,),
        "recording the signed bytes",
    ),
    ("pipeline/execution.py", "ExecutionStage._checked_nonce"): (
        (AGENT,),
        "re-reserving the agent's nonce among its own transactions",
    ),
    ("pipeline/execution.py", "ExecutionStage._release_claim"): (
        (AGENT,),
        "a stale claim released",
    ),
    ("pipeline/execution.py", "ExecutionStage._clear_for_broadcast"): (
        (AGENT,),
        "the last check before sending (kill switch and agent read) and -> SUBMITTED",
    ),
    ("pipeline/execution.py", "ExecutionStage._audit_retry"): ((AGENT,), "TX_RETRY audit row"),
    ("pipeline/execution.py", "ExecutionStage._mark_unresolved"): (
        (AGENT,),
        "one transaction's flag",
    ),
    ("pipeline/execution.py", "ExecutionStage._record_rebuilt"): (
        (AGENT,),
        "compare-and-swap on the hash",
    ),
    ("pipeline/execution.py", "ExecutionStage.apply_chain_status"): (
        (AGENT,),
        "confirmation or failure, the session release and the agent's AUTO_STOP check",
    ),
    ("pipeline/execution.py", "ExecutionStage._confirm_held"): (
        (AGENT,),
        "a confirmation of a row held as written: its agent's lock; a row under another "
        "agent is not as held (the compare-and-swap names agent_id) and is left alone",
    ),
    ("pipeline/base.py", "_PipelineBase._fail"): ((AGENT,), "one transaction FAILED"),
    ("pipeline/owner.py", "OwnerStage.resolve"): ((AGENT,), "the operator resolves one row"),
    ("pipeline/owner.py", "OwnerStage.cancel"): ((AGENT,), "one transaction cancelled"),
    ("pipeline/owner.py", "OwnerStage.decide"): ((AGENT,), "the owner's decision on one approval"),
    ("pipeline/due.py", "DueStage._expire_due"): (
        (AGENT,),
        "expired approvals, one unit per agent (one for all on SQLite)",
    ),
    ("pipeline/recovery.py", "RecoveryStage.reconcile"): ((AGENT,), "crash recovery of one row"),
    ("pipeline/recovery.py", "RecoveryStage._rejudge_held"): ((AGENT,), "held bytes judged again"),
    ("pipeline/recovery.py", "RecoveryStage._record_recovery"): (
        (AGENT,),
        "TX_RECOVERED audit row",
    ),
    # ------------------------------------------------------------------ sessions
    ("sessions.py", "SessionManager.issue"): (
        (AGENT,),
        "a session of one agent; global while the signing secret is created (once)",
    ),
    ("sessions.py", "SessionManager.record_failure"): (
        (AGENT,),
        "AUTH_FAILED audit row of the token's agent (global when unknown)",
    ),
    ("sessions.py", "SessionManager.renew"): (
        (AGENT,),
        "the agent the token names (checked inside): one session replaced by another",
    ),
    ("sessions.py", "SessionManager.revoke"): ((AGENT,), "one session (its agent read first)"),
    ("sessions.py", "SessionManager.sweep_expired"): (
        (GLOBAL,),
        "expired sessions of every agent in one pass (background)",
    ),
    # ------------------------------------------------------------------ agents
    ("services/agents.py", "AgentService.create"): (
        (AGENT, AGENT),
        "the new agent's row and policy-set MAC; then CREATING -> ACTIVE",
    ),
    ("services/agents.py", "AgentService.suspend"): (
        (AGENT,),
        "the agent, its sessions and queued transactions",
    ),
    ("services/agents.py", "AgentService.resume"): (
        (AGENT,),
        "the agent and its AUTO_STOP mark (the kill switch is read: its writers are global)",
    ),
    ("services/agents.py", "AgentService.terminate"): ((AGENT,), "the agent -> TERMINATING"),
    ("services/agents.py", "AgentService._finish_termination"): (
        (AGENT,),
        "the agent's sessions and transactions, then TERMINATED",
    ),
    ("services/agents.py", "AgentService.set_owner"): (
        (AGENT,),
        "the owner and the agent's pending approvals",
    ),
    ("services/agents.py", "AgentService.rotate_key"): ((AGENT,), "the agent's key"),
    ("services/agents.py", "AgentService.kill_switch"): (
        (GLOBAL,),
        "every agent, session and in-flight transaction, and the kill-switch state",
    ),
    ("services/agents.py", "AgentService.release_kill_switch"): (
        (GLOBAL,),
        "the kill-switch state and (optionally) every agent",
    ),
    ("services/agents.py", "AgentService.recover"): ((GLOBAL,), "open-time repair of all agents"),
    ("services/agents.py", "AgentService.reconcile_keys"): (
        (GLOBAL,),
        "open-time check of every agent's key",
    ),
    # ------------------------------------------------------------------ policies, dry runs
    ("services/policies.py", "PolicyService.add"): (
        (AGENT,),
        "an agent's policy under its lock; a global policy (agent_id None) runs global",
    ),
    ("services/policies.py", "PolicyService.update"): (
        (AGENT,),
        "the policy's agent (read first, checked inside); a global policy runs global",
    ),
    ("services/policies.py", "PolicyService.remove"): (
        (AGENT,),
        "the policy's agent (read first, checked inside); a global policy runs global",
    ),
    ("services/dry_runs.py", "dry_run"): ((AGENT,), "the agent's DRY_RUN audit row"),
    # ------------------------------------------------------------------ wallet-wide
    ("_factory.py", "_audit"): ((GLOBAL,), "open-time audit rows"),
    ("_factory.py", "_report_tamper"): ((GLOBAL,), "a broken chain and a new checkpoint"),
    ("_factory.py", "_record_keystore"): ((GLOBAL,), "the keystore id in wallet_state"),
    ("integrity.py", "seal"): ((GLOBAL,), "first-time integrity keys, MACs of every row"),
    ("keystore/_dbstore.py", "DatabaseBackend.writer"): (
        (GLOBAL,),
        "a keystore write with no unit of work to join (inside one it joins that unit: a "
        "rotation in the agent's own unit touches only that agent's key rows); a password "
        "change rewrites every row",
    ),
    ("keystore/migrate.py", "_move"): ((GLOBAL,), "the whole file keystore copied in"),
    ("wallet.py", "Wallet._audit"): ((GLOBAL,), "wallet-level audit rows (no agent)"),
    ("wallet.py", "Wallet.export_audit_checkpoint"): (
        (GLOBAL,),
        "a signed checkpoint of the chain head, with no writer in between",
    ),
    ("notify/service.py", "DatabaseChannelSource.record"): ((GLOBAL,), "a channel's delivery"),
    ("notify/service.py", "ChannelService.add"): ((GLOBAL,), "channels are wallet-wide"),
    ("notify/service.py", "ChannelService.update"): ((GLOBAL,), "channels are wallet-wide"),
    ("notify/service.py", "ChannelService.remove"): ((GLOBAL,), "channels are wallet-wide"),
    ("notify/service.py", "ChannelService.send_test"): ((GLOBAL,), "channels are wallet-wide"),
    ("notify/service.py", "ChannelService._set_enabled"): ((GLOBAL,), "channels are wallet-wide"),
}

# The storage engine's own units (SQLite's background checkpoint record) are its business.
_ENGINE = {"db/database.py", "db/uow.py", "db/engine.py", "db/migrate.py"}


def _write_units() -> dict[tuple[str, str], tuple[str, ...]]:
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in _ENGINE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node: ast.AST, scope: list[str], rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    visit(child, [*scope, child.name])
                    continue
                kind = _kind(child)
                if kind is not None:
                    found.setdefault((rel, ".".join(scope)), []).append(kind)
                visit(child, scope)

        visit(tree, [])
    return {key: tuple(kinds) for key, kinds in found.items()}


def _kind(node: ast.AST) -> str | None:
    """AGENT or GLOBAL for a write unit of work call, else None."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    func = node.func
    if func.attr == "_tx_write":
        return AGENT
    if func.attr != "write":
        return None
    base = func.value
    name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
    if name not in ("db", "_db"):
        return None
    return AGENT if any(k.arg == "agent_id" for k in node.keywords) else GLOBAL


def test_every_write_unit_of_work_is_classified() -> None:
    found = _write_units()
    unlisted = sorted(set(found) - set(UNITS))
    gone = sorted(set(UNITS) - set(found))
    assert not unlisted, f"classify these write units of work in UNITS: {unlisted}"
    assert not gone, f"these write units of work are gone; remove them from UNITS: {gone}"
    wrong = {key: (found[key], UNITS[key][0]) for key in found if found[key] != UNITS[key][0]}
    assert not wrong, f"(found, documented) kinds differ: {wrong}"


def test_the_scan_sees_both_kinds() -> None:
    """The scan is not vacuous: it finds the known units of both kinds."""
    found = _write_units()
    assert found[("pipeline/admission.py", "AdmissionStage.send")] == (AGENT,)
    assert found[("services/agents.py", "AgentService.kill_switch")] == (GLOBAL,)
    assert sum(len(k) for k in found.values()) >= 50
    assert all(reason.strip() for _kinds, reason in UNITS.values())
