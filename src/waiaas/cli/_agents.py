"""``waiaas agents`` and ``waiaas sessions``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from waiaas.cli._common import emit_json, handle_errors, open_wallet, out, table, when

agents = typer.Typer(help="Agents: list, show, create, suspend, resume, terminate, set-owner.")
sessions = typer.Typer(help="Session tokens of agents: list, issue, revoke.")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _agent_dict(agent: Any) -> dict[str, Any]:
    return dict(agent.model_dump(mode="json"))


@agents.command("list")
@handle_errors
def agents_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only agents in this status.")] = None,
    json_: Json = False,
) -> None:
    """List the agents."""
    with open_wallet(ctx) as wallet:
        found = wallet.list_agents(status=status)
    if json_:
        emit_json([_agent_dict(a) for a in found])
        return
    table(
        "Agents",
        ["id", "name", "chain", "status", "address", "owner"],
        [
            (a.id, a.name, f"{a.chain}/{a.network}", a.status.value, a.public_key, a.owner_address)
            for a in found
        ],
    )


@agents.command("show")
@handle_errors
def agents_show(ctx: typer.Context, agent_id: str, json_: Json = False) -> None:
    """Show one agent."""
    with open_wallet(ctx) as wallet:
        agent = wallet.get_agent(agent_id)
    data = _agent_dict(agent)
    if json_:
        emit_json(data)
        return
    for key, value in data.items():
        out().print(f"[bold]{key}[/bold]: {value if value is not None else '-'}")


@agents.command("create")
@handle_errors
def agents_create(
    ctx: typer.Context,
    name: str,
    chain: Annotated[str, typer.Option(help="solana or evm.")],
    network: Annotated[str | None, typer.Option(help="Network (default: the only one).")] = None,
    owner: Annotated[str | None, typer.Option(help="The owner's wallet address.")] = None,
    json_: Json = False,
) -> None:
    """Create an agent with a new key (needs --rpc for its chain)."""
    with open_wallet(ctx) as wallet:
        agent = wallet.create_agent(name, chain, network, owner_address=owner)
    if json_:
        emit_json(_agent_dict(agent))
    else:
        out().print(f"created agent {agent.id} ({agent.chain}/{agent.network}) {agent.public_key}")


@agents.command("suspend")
@handle_errors
def agents_suspend(
    ctx: typer.Context,
    agent_id: str,
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "suspended by the operator",
    json_: Json = False,
) -> None:
    """Suspend an agent (its sessions stop working until resumed)."""
    with open_wallet(ctx) as wallet:
        agent = wallet.suspend_agent(agent_id, reason=reason)
    if json_:
        emit_json(_agent_dict(agent))
    else:
        out().print(f"agent {agent.id} is {agent.status.value}")


@agents.command("resume")
@handle_errors
def agents_resume(ctx: typer.Context, agent_id: str, json_: Json = False) -> None:
    """Resume a suspended agent."""
    with open_wallet(ctx) as wallet:
        agent = wallet.resume_agent(agent_id)
    if json_:
        emit_json(_agent_dict(agent))
    else:
        out().print(f"agent {agent.id} is {agent.status.value}")


@agents.command("terminate")
@handle_errors
def agents_terminate(
    ctx: typer.Context,
    agent_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    json_: Json = False,
) -> None:
    """Terminate an agent for good (its key is destroyed)."""
    if not yes:
        from waiaas.cli._common import fail

        raise fail("terminating an agent cannot be undone: add --yes to confirm")
    with open_wallet(ctx) as wallet:
        agent = wallet.terminate_agent(agent_id)
    if json_:
        emit_json(_agent_dict(agent))
    else:
        out().print(f"agent {agent.id} is {agent.status.value}")


@agents.command("set-owner")
@handle_errors
def agents_set_owner(
    ctx: typer.Context,
    agent_id: str,
    owner: Annotated[str, typer.Argument(help="The owner's address, or 'none' to clear.")],
    json_: Json = False,
) -> None:
    """Set (or clear) the owner who approves an agent's APPROVAL-tier transactions."""
    with open_wallet(ctx) as wallet:
        agent = wallet.set_owner(agent_id, None if owner.lower() == "none" else owner)
    if json_:
        emit_json(_agent_dict(agent))
    else:
        out().print(f"agent {agent.id} owner: {agent.owner_address or '-'}")


# ---------------------------------------------------------------------------- sessions


def _session_dict(info: Any) -> dict[str, Any]:
    return {
        "session_id": info.session_id,
        "agent_id": info.agent_id,
        "status": info.status,
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "revoked_at": info.revoked_at,
    }


@sessions.command("list")
@handle_errors
def sessions_list(ctx: typer.Context, agent_id: str, json_: Json = False) -> None:
    """List an agent's sessions (tokens are never shown again)."""
    with open_wallet(ctx) as wallet:
        found = wallet.list_sessions(agent_id)
    rows = [_session_dict(s) for s in found]
    if json_:
        emit_json(rows)
        return
    table(
        "Sessions",
        ["id", "status", "created", "expires", "revoked"],
        [
            (
                r["session_id"],
                r["status"],
                when(r["created_at"]),
                when(r["expires_at"]),
                when(r["revoked_at"]),
            )
            for r in rows
        ],
    )


@sessions.command("issue")
@handle_errors
def sessions_issue(
    ctx: typer.Context,
    agent_id: str,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
    json_: Json = False,
) -> None:
    """Issue a session token for an agent; the token is printed once (hand it to the agent)."""
    with open_wallet(ctx) as wallet:
        issued = wallet.issue_session(agent_id, ttl=ttl)
    data = {
        "session_id": issued.session_id,
        "agent_id": issued.agent_id,
        "expires_at": issued.expires_at,
        "token": issued.token,
    }
    if json_:
        emit_json(data)
    else:
        typer.echo(issued.token)
        out().print(f"session {issued.session_id} expires {when(issued.expires_at)}", style="dim")


@sessions.command("revoke")
@handle_errors
def sessions_revoke(ctx: typer.Context, session_id: str, json_: Json = False) -> None:
    """Revoke a session: its token stops working at once."""
    with open_wallet(ctx) as wallet:
        wallet.revoke_session(session_id)
    if json_:
        emit_json({"session_id": session_id, "revoked": True})
    else:
        out().print(f"session {session_id} revoked")
