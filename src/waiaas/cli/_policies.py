"""``waiaas policies``: list, add, update, enable, disable, dry-run, replay."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from waiaas.cli._common import (
    emit_json,
    err,
    handle_errors,
    load_json_arg,
    open_wallet,
    out,
    parse_time,
    table,
)
from waiaas.errors import InvalidInputError

policies = typer.Typer(
    help="Policies: list, add, update, enable, disable, dry-run a request, replay history."
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@policies.command("list")
@handle_errors
def policies_list(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option(help="An agent's policies (and global ones).")
    ] = None,
    json_: Json = False,
) -> None:
    """List the policies, highest priority first."""
    with open_wallet(ctx) as wallet:
        found = wallet.policies.list(agent_id=agent)
    data = [p.to_dict() for p in found]
    if json_:
        emit_json(data)
        return
    table(
        "Policies",
        ["id", "type", "agent", "priority", "enabled", "rules"],
        [
            (
                p["id"],
                p["type"],
                p["agent_id"] or "(global)",
                p["priority"],
                p["enabled"],
                p["rules"],
            )
            for p in data
        ],
    )


@policies.command("add")
@handle_errors
def policies_add(
    ctx: typer.Context,
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="SPENDING_LIMIT, RATE_LIMIT, ...")],
    rules: Annotated[str, typer.Argument(help="The rules as JSON, or @file.")],
    agent: Annotated[str | None, typer.Option(help="The agent (default: global).")] = None,
    priority: int = 0,
    disabled: Annotated[bool, typer.Option("--disabled", help="Store it disabled.")] = False,
    json_: Json = False,
) -> None:
    """Add a policy (validated; every problem is listed)."""
    with open_wallet(ctx) as wallet:
        info = wallet.policies.add(
            type_,
            load_json_arg(rules, "rules"),
            agent_id=agent,
            priority=priority,
            enabled=not disabled,
        )
    if json_:
        emit_json(info.to_dict())
    else:
        out().print(f"added policy {info.id} ({info.type.value})")


@policies.command("update")
@handle_errors
def policies_update(
    ctx: typer.Context,
    policy_id: str,
    rules: Annotated[str | None, typer.Option(help="New rules as JSON, or @file.")] = None,
    priority: Annotated[int | None, typer.Option()] = None,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    json_: Json = False,
) -> None:
    """Replace a policy's rules and/or change its priority or whether it is enforced."""
    if rules is None and priority is None and enabled is None:
        raise InvalidInputError(
            "nothing to update: give --rules, --priority or --enabled/--disabled"
        )
    with open_wallet(ctx) as wallet:
        info = wallet.policies.update(
            policy_id,
            rules=load_json_arg(rules, "rules") if rules is not None else None,
            priority=priority,
            enabled=enabled,
        )
    if json_:
        emit_json(info.to_dict())
    else:
        out().print(f"updated policy {info.id}")


@policies.command("disable")
@handle_errors
def policies_disable(ctx: typer.Context, policy_id: str, json_: Json = False) -> None:
    """Stop enforcing a policy (it stays stored)."""
    with open_wallet(ctx) as wallet:
        info = wallet.policies.disable(policy_id)
    if json_:
        emit_json(info.to_dict())
    else:
        out().print(f"policy {info.id} disabled")


@policies.command("enable")
@handle_errors
def policies_enable(ctx: typer.Context, policy_id: str, json_: Json = False) -> None:
    """Enforce a disabled policy again."""
    with open_wallet(ctx) as wallet:
        info = wallet.policies.enable(policy_id)
    if json_:
        emit_json(info.to_dict())
    else:
        out().print(f"policy {info.id} enabled")


@policies.command("dry-run")
@handle_errors
def policies_dry_run(
    ctx: typer.Context,
    agent_id: str,
    request: Annotated[str, typer.Argument(help="The request as JSON, or @file.")],
    json_: Json = False,
) -> None:
    """What the policies would do with a request (writes nothing).

    Example: waiaas --db w.db policies dry-run AGENT '{"type":"TRANSFER","to":"...","amount":"5"}'
    """
    with open_wallet(ctx) as wallet:
        explanation = wallet.dry_run(load_json_arg(request, "request"), agent_id=agent_id)
    if json_:
        emit_json(
            {
                "decision": explanation.decision.model_dump(mode="json"),
                "hints": list(explanation.hints),
                "amount_for_tier": {k: str(v) for k, v in explanation.amount_for_tier.items()},
                "next_allowed_at": explanation.next_allowed_at,
            }
        )
        return
    out().print(explanation.to_text(), markup=False)


def _candidates(value: str, agent_id: str, current: list[Any]) -> list[Any]:
    from waiaas.policy.model import PolicySpec

    data = load_json_arg(value, "policies")
    if not isinstance(data, list):
        raise InvalidInputError("--policies must be a JSON list of policies", field="policies")
    specs = list(current)
    for n, item in enumerate(data):
        if not isinstance(item, dict) or "type" not in item or "rules" not in item:
            raise InvalidInputError(
                f"policy #{n} must be an object with 'type' and 'rules'", field="policies"
            )
        specs.append(
            PolicySpec(
                id=str(item.get("id", f"candidate-{n}")),
                agent_id=item.get("agent_id", agent_id),
                type=item["type"],
                rules=item["rules"],
                priority=int(item.get("priority", 0)),
                enabled=bool(item.get("enabled", True)),
            )
        )
    return specs


@policies.command("replay")
@handle_errors
def policies_replay(
    ctx: typer.Context,
    agent_id: str,
    candidate: Annotated[
        str, typer.Option("--policies", help="Candidate policies: a JSON list, or @file.")
    ],
    with_current: Annotated[
        bool,
        typer.Option("--with-current/--alone", help="Add them to the stored policies (default)."),
    ] = True,
    since: Annotated[str | None, typer.Option(help="Unix seconds or ISO time.")] = None,
    until: Annotated[str | None, typer.Option(help="Unix seconds or ISO time.")] = None,
    json_: Json = False,
) -> None:
    """Replay the agent's recorded requests against candidate policies; show what changes."""
    with open_wallet(ctx) as wallet:
        current = (
            [p.to_spec() for p in wallet.policies.list(agent_id=agent_id)] if with_current else []
        )
        specs = _candidates(candidate, agent_id, current)
        with Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err(),
            transient=True,
        ) as bar:
            task = bar.add_task("replay", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            diffs = wallet.policies.replay(
                agent_id,
                specs,
                since=parse_time(since, "since"),
                until=parse_time(until, "until"),
                progress=progress,
            )
    rows: list[dict[str, Any]] = [
        {
            "tx_id": d.tx_id,
            "created_at": d.created_at,
            "changes": list(d.changes),
            "recorded": d.recorded.summary() if d.recorded is not None else None,
            "candidate": d.candidate.summary(),
        }
        for d in diffs
    ]
    if json_:
        emit_json(rows)
        return
    table(
        "Changed decisions",
        ["tx", "changes", "recorded", "candidate"],
        [(r["tx_id"], "; ".join(r["changes"]), r["recorded"], r["candidate"]) for r in rows],
    )
