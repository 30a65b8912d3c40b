"""``waiaas tx`` and ``waiaas approvals``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from waiaas.cli._common import emit_json, fail, handle_errors, open_wallet, out, table, when

tx = typer.Typer(help="Transactions: list, show, cancel.")
approvals = typer.Typer(
    help="Owner approvals: list pending ones, print the message to sign, approve, reject."
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _native_amount(chain: str, amount: int) -> str:
    from waiaas.notify._format import format_amount
    from waiaas.web.display import native_unit

    unit = native_unit(chain)
    if unit is None:
        return f"{amount} base units"
    return format_amount(amount, unit[1], unit[0])


def _fee(shown: Any) -> dict[str, Any] | None:
    return shown.network_fee.to_dict() if shown.network_fee is not None else None


def _tx_dict(info: Any) -> dict[str, Any]:
    data = dict(info.model_dump(mode="json"))
    data.pop("decision", None)
    return data


@tx.command("list")
@handle_errors
def tx_list(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option(help="Only this agent's.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status (QUEUED, ...).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-1000).")] = 50,
    json_: Json = False,
) -> None:
    """List transactions, newest first."""
    with open_wallet(ctx) as wallet:
        found = wallet.list_transactions(agent_id=agent, status=status, limit=limit)
    if json_:
        emit_json([_tx_dict(t) for t in found])
        return
    table(
        "Transactions",
        ["id", "agent", "type", "status", "tier", "amount", "to", "created"],
        [
            (
                t.id,
                t.agent_id,
                t.type.value,
                t.status.value,
                t.tier.value if t.tier else "-",
                t.amount,
                t.to_address,
                when(t.created_at),
            )
            for t in found
        ],
    )


@tx.command("show")
@handle_errors
def tx_show(ctx: typer.Context, tx_id: str, json_: Json = False) -> None:
    """Show one transaction: every effect in human units, status, tier, why."""
    with open_wallet(ctx) as wallet:
        info = wallet.get_transaction(tx_id)
        shown = wallet.transaction_display(tx_id)
    data = _tx_dict(info)
    data["display"] = shown.to_dict()
    if json_:
        emit_json(data)
        return
    console = out()
    console.print(f"[bold]{shown.summary}[/bold]", markup=True)
    for effect in shown.effects:
        console.print(f"  - {effect.text}", markup=False)
    if shown.network_fee is not None:
        console.print(f"  {shown.network_fee.text}", markup=False)
    for reason in shown.reasons:
        console.print(f"  why {info.tier.value if info.tier else ''}: {reason}", markup=False)
    for key in ("id", "status", "tier", "tx_hash", "error"):
        value = data.get(key)
        if value is not None:
            console.print(f"{key}: {value}", markup=False)
    if info.fee is not None:
        console.print(f"fee paid: {_native_amount(info.chain, info.fee)}", markup=False)
    for key in ("created_at", "queued_at", "executed_at", "execute_after", "approval_expires_at"):
        if data.get(key) is not None:
            console.print(f"{key}: {when(data[key])}", markup=False)


@tx.command("cancel")
@handle_errors
def tx_cancel(ctx: typer.Context, tx_id: str, json_: Json = False) -> None:
    """Cancel a PENDING or QUEUED transaction (a DELAY cooldown or an APPROVAL wait)."""
    with open_wallet(ctx) as wallet:
        info = wallet.cancel(tx_id)
    if json_:
        emit_json(_tx_dict(info))
    else:
        out().print(f"transaction {info.id} is {info.status.value}")


# ---------------------------------------------------------------------------- approvals


@approvals.command("list")
@handle_errors
def approvals_list(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option(help="Only this agent's.")] = None,
    json_: Json = False,
) -> None:
    """List the transactions waiting for their owner's approval, with expiry and link."""
    rows: list[dict[str, Any]] = []
    with open_wallet(ctx) as wallet:
        before: str | None = None
        while True:
            page = wallet.list_transactions(
                agent_id=agent, status="QUEUED", limit=1000, before=before
            )
            for t in page:
                if t.tier is None or t.tier.value != "APPROVAL":
                    continue
                shown = wallet.transaction_display(t.id)
                rows.append(
                    {
                        "tx_id": t.id,
                        "agent_id": t.agent_id,
                        "summary": shown.summary,
                        "effects": [e.text for e in shown.effects],
                        "network_fee": _fee(shown),
                        "reasons": list(shown.reasons),
                        "expires_at": t.approval_expires_at,
                        "expires_iso": shown.expires_iso,
                        "link": wallet.approval_link(t.id),
                    }
                )
            if len(page) < 1000:
                break
            before = page[-1].id
    if json_:
        emit_json(rows)
        return
    table(
        "Pending approvals",
        ["tx", "what", "expires", "link"],
        [(r["tx_id"], "; ".join(r["effects"]), r["expires_iso"], r["link"] or "-") for r in rows],
    )


@approvals.command("message")
@handle_errors
def approvals_message(
    ctx: typer.Context,
    tx_id: str,
    reject: Annotated[bool, typer.Option("--reject", help="The message that rejects.")] = False,
    json_: Json = False,
) -> None:
    """Print the exact message the owner signs (EVM: personal_sign; Solana: signMessage)."""
    from waiaas.pipeline.approvals import owner_kind

    action: Literal["approve", "reject"] = "reject" if reject else "approve"
    with open_wallet(ctx) as wallet:
        message = wallet.approval_message(tx_id, action)
        req = wallet.approval_request(tx_id)
        shown = wallet.transaction_display(tx_id)
    if json_:
        emit_json(
            {
                "tx_id": tx_id,
                "action": action,
                "owner": req.owner_address,
                "owner_kind": owner_kind(req.owner_address),
                "message": message,
                "effects": [e.text for e in shown.effects],
                "network_fee": _fee(shown),
            }
        )
    else:
        typer.echo(message)


def _decide(ctx: typer.Context, tx_id: str, signature: str, *, approve: bool, json_: bool) -> None:
    verb = "approved" if approve else "rejected"
    with open_wallet(ctx) as wallet:
        info = wallet.approve(tx_id, signature) if approve else wallet.reject(tx_id, signature)
    # Approved but still QUEUED: this process has no adapter for the agent's chain (no
    # --rpc); the wallet process that has one executes it on its next pass.
    pending_execution = approve and info.status.value == "QUEUED"
    data = _tx_dict(info)
    data["decision"] = verb
    data["pending_execution"] = pending_execution
    if json_:
        emit_json(data)
        return
    line = f"{verb}: transaction {info.id} is {info.status.value}"
    if info.tx_hash:
        line += f" (hash {info.tx_hash})"
    if pending_execution:
        line += (
            "; no chain adapter here (--rpc), so the wallet process with one executes it on "
            "its next pass"
        )
    out().print(line, markup=False)


Signature = Annotated[
    str, typer.Option("--signature", help="The owner's signature (hex or base58).")
]


@approvals.command("approve")
@handle_errors
def approvals_approve(
    ctx: typer.Context, tx_id: str, signature: Signature, json_: Json = False
) -> None:
    """Approve with the owner's signature of `approvals message TX`; then it executes."""
    if not signature.strip():
        raise fail("--signature must not be empty")
    _decide(ctx, tx_id, signature, approve=True, json_=json_)


@approvals.command("reject")
@handle_errors
def approvals_reject(
    ctx: typer.Context, tx_id: str, signature: Signature, json_: Json = False
) -> None:
    """Reject with the owner's signature of `approvals message TX --reject`."""
    if not signature.strip():
        raise fail("--signature must not be empty")
    _decide(ctx, tx_id, signature, approve=False, json_=json_)
