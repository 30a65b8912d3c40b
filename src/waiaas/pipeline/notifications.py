"""From pipeline events to :class:`~waiaas.notify.NotificationEvent`\\ s, after commit.

The pipeline gathers plain event dicts while a unit of work is open and hands them here only
after it commits. This module fills in what a person needs to read (agent name, amount with
its unit, recipient, tier) and passes the event to the notifier. Nothing here may raise into
the pipeline: a failing notifier is logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from waiaas.chains.base import NativeAsset
from waiaas.chains.families import native_asset_for
from waiaas.clock import Clock
from waiaas.db import Database
from waiaas.db.faults import stored_json
from waiaas.db.generations import Observed
from waiaas.notify.base import Notifier
from waiaas.notify.dispatcher import NotificationDispatcher
from waiaas.pipeline.txmeta import as_meta
from waiaas.types import AuditEvent, Severity

__all__ = ["CHANNELS_KEY", "ROW_KEY", "PipelineNotifier"]

log = logging.getLogger("waiaas.notify")

#: The key under which a pipeline event may carry the transaction row its unit of work
#: committed, so that building the notification reads nothing again.
ROW_KEY: Final = "_row"
#: The key under which a pipeline event may carry the channels' generation its unit of work
#: read under its write lock (a :class:`~waiaas.db.generations.Observed`): the dispatcher's
#: database channel source then reuses the channels it keeps at that generation unread.
CHANNELS_KEY: Final = "_channels"
_AGENTS_KEPT: Final = 4096


@dataclass(frozen=True)
class _Who:
    """What a notification names of an agent (none of it ever changes)."""

    id: str
    name: str
    chain: str
    network: str


class PipelineNotifier:
    """Adapts pipeline events to a ``Notifier`` (``notify(NotificationEvent)``, ``close()``).

    Args:
        db: the wallet database (to look up agents and transactions).
        clock: the wallet's clock (event timestamps).
        target: the notifier to deliver to; ``None`` delivers nowhere.
        link: gives the approval page link of a transaction (``None``: no page configured).
        display: gives the :class:`~waiaas.web.display.TxDisplay` of a transaction.
        native: gives the native coin of a chain (symbol and decimals), or ``None`` when its
            adapter does not say; default: the shipped families' (SOL, ETH).

    An event that carries the channels' generation its unit of work read (``CHANNELS_KEY``)
    goes to a :class:`~waiaas.notify.NotificationDispatcher` target with it
    (``notify(event, channels_at=...)``): it is delivered to the channels as committed with
    that unit of work (the channel source reads nothing when it keeps them at that
    generation); any other target gets ``notify(event)``.

    A queued APPROVAL transaction becomes a warning that carries the summary of every
    effect, why the owner must approve, the expiry as ISO time and the link to the approval
    page (or the command that prints the message to sign); a queued DELAY transaction says
    when it executes and how to cancel it.
    """

    def __init__(
        self,
        db: Database,
        target: Notifier | None,
        clock: Clock,
        *,
        link: Callable[[str], str | None] | None = None,
        display: Callable[[str], Any] | None = None,
        native: Callable[[str], NativeAsset | None] | None = None,
    ) -> None:
        self.db = db
        self.target = target
        self.clock = clock
        self.link = link
        self.display = display
        self.native = native if native is not None else native_asset_for
        self._agents: dict[str, _Who] = {}

    def notify(self, raw: Mapping[str, Any]) -> None:
        """Build the notification for one committed pipeline event and deliver it."""
        if self.target is None:
            return
        try:
            event = self.build(raw)
        except Exception:  # building must never break the pipeline
            log.exception("could not build a notification for %s", raw.get("event"))
            return
        at = raw.get(CHANNELS_KEY)
        try:
            if isinstance(at, Observed) and isinstance(self.target, NotificationDispatcher):
                self.target.notify(event, channels_at=at)
            else:
                self.target.notify(event)
        except Exception:
            log.exception("notifier failed for %s", raw.get("event"))

    def build(self, raw: Mapping[str, Any]) -> Any:
        """The :class:`~waiaas.notify.NotificationEvent` for a raw pipeline event."""
        from waiaas.notify import NotificationEvent

        data = dict(raw)
        event_type = data.pop("event")
        agent_id = data.pop("agent_id", None)
        tx_id = data.pop("tx_id", None)
        severity = data.pop("severity", None)
        # The row as the committed unit of work left it, when the pipeline passed it along.
        row = data.pop(ROW_KEY, None)
        data.pop(CHANNELS_KEY, None)  # for the dispatcher (notify), not the message
        fields: dict[str, Any] = {}
        who = self._agents.get(agent_id) if agent_id else None
        if (agent_id and who is None) or (tx_id and row is None):
            with self.db.read() as uow:
                agent = uow.agents.get(agent_id) if agent_id and who is None else None
                row = uow.transactions.get(tx_id) if tx_id and row is None else row
            if agent is not None:
                # An agent's id, name, chain and network never change: kept for later events.
                if len(self._agents) >= _AGENTS_KEPT:
                    self._agents.clear()
                who = self._agents[agent.id] = _Who(
                    agent.id, agent.name, agent.chain, agent.network
                )
        if who is not None:
            fields.update(
                agent_id=who.id, agent_name=who.name, chain=who.chain, network=who.network
            )
        if row is not None:
            meta = as_meta(
                stored_json(row.metadata_json, table="transactions", column="metadata", default={})
            )
            asset = meta.get("asset", "native")
            fields.update(tx_id=row.id, to_address=row.to_address, tier=row.tier)
            if row.amount is not None:
                fields["amount"] = int(row.amount)
                coin = self.native(row.chain) if asset == "native" else None
                if coin is not None:
                    fields.update(asset_symbol=coin.symbol, decimals=coin.decimals)
                else:  # token (or unnamed native) decimals are not known here: base units
                    fields.update(asset_symbol=asset, decimals=None)
        reason = data.pop("reason", None)
        message = _message(str(event_type), reason, data)
        title = ""
        if event_type == AuditEvent.TX_QUEUED and row is not None and tx_id:
            named = f"Agent {who.name} ({who.id})" if who is not None else "The agent"
            title, message, severity = self._queued(row, data, message, severity, named)
        extra = {k: v for k, v in data.items() if isinstance(v, str | int | bool | None)}
        if tx_id and row is None:
            extra["tx_id"] = tx_id
        return NotificationEvent(
            event_type=event_type,
            timestamp=self.clock.now(),
            severity=Severity(severity) if severity else None,
            title=title,
            message=message,
            extra=extra,
            **fields,
        )

    def _queued(
        self, row: Any, data: dict[str, Any], message: str, severity: Any, who: str
    ) -> tuple[str, str, Any]:
        """Title, message and severity of a TX_QUEUED event; rewrites times in ``data``."""
        from waiaas.pipeline.approvals import iso_time

        shown = self.display(row.id) if self.display is not None else None
        link = self.link(row.id) if self.link is not None and row.tier == "APPROVAL" else None
        where = (
            "every one is on the approval page"
            if link
            else f"every one: `waiaas --db {self.db.location} tx show {row.id}`"
        )
        lines = _what(shown, who, where)
        if row.tier == "APPROVAL":
            expires = data.get("approval_expires_at")
            if shown is not None and shown.reasons:
                lines.append("Needs the owner's approval: " + "; ".join(shown.reasons) + ".")
            if isinstance(expires, int):
                data["approval_expires_at"] = iso_time(expires)
                lines.append(f"Expires at {iso_time(expires)} unless the owner decides.")
            if link:
                data["approval_link"] = link
                lines.append(f"Approve or reject: {link}")
            else:
                lines.append(
                    f"To decide, sign the message of `waiaas --db {self.db.location} approvals "
                    f"message {row.id}` with the owner's wallet."
                )
            return "Owner approval needed", _bounded(lines), severity or Severity.WARNING
        execute_after = data.get("execute_after")
        if isinstance(execute_after, int):
            data["execute_after"] = iso_time(execute_after)
            lines.append(f"Executes at {iso_time(execute_after)} unless cancelled.")
        lines.append(
            f"To cancel: `waiaas --db {self.db.location} tx cancel {row.id}` "
            f'(or wallet.cancel("{row.id}")).'
        )
        return "Transaction delayed", _bounded(lines), severity

    def close(self, timeout: float | None = None) -> None:
        """Drain and close the target notifier, if it can."""
        close = getattr(self.target, "close", None)
        if close is not None:
            try:
                close(timeout=timeout)
            except Exception:
                log.exception("notifier close failed")


def _what(shown: Any, who: str, where: str) -> list[str]:
    """What the transaction does, for the message: the one-line summary of a single effect,
    else a head line and one list item per effect (channels that must shorten the message
    drop list items first, never part of an address); then the network fee."""
    from waiaas.notify._format import BULLET

    if shown is None:
        return []
    effects = [e.text for e in shown.effects]
    if len(effects) > 1:
        lines = [f"{who} asks to do {len(effects)} things ({where}):"]
        lines += [BULLET + text for text in effects]
    else:
        lines = [shown.summary + "."]
    if shown.network_fee is not None:
        lines.append("N" + shown.network_fee.text[1:] + ".")
    return lines


def _bounded(lines: list[str]) -> str:
    """The message, shortened by whole lines to what a notification may carry."""
    from waiaas.notify._format import fit_message
    from waiaas.notify.base import MAX_MESSAGE

    return fit_message("\n".join(lines), MAX_MESSAGE, measure=len)


def _message(event_type: str, reason: Any, data: Mapping[str, Any]) -> str:
    if event_type == AuditEvent.POLICY_VIOLATION and data.get("reasons"):
        return "; ".join(str(r.get("message", "")) for r in data["reasons"])
    if reason:
        return str(reason)
    return ""
