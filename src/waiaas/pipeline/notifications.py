"""From pipeline events to :class:`~waiaas.notify.NotificationEvent`\\ s, after commit.

The pipeline gathers plain event dicts while a unit of work is open and hands them here only
after it commits. This module fills in what a person needs to read (agent name, amount with
its unit, recipient, tier) and passes the event to the notifier. Nothing here may raise into
the pipeline: a failing notifier is logged and ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from waiaas.clock import Clock
from waiaas.db import Database
from waiaas.types import AuditEvent, Severity

__all__ = ["PipelineNotifier"]

log = logging.getLogger("waiaas.notify")

_NATIVE_UNITS = {"solana": ("SOL", 9), "evm": ("ETH", 18)}


class PipelineNotifier:
    """Adapts pipeline events to a ``Notifier`` (``notify(NotificationEvent)``, ``close()``).

    Args:
        db: the wallet database (to look up agents and transactions).
        clock: the wallet's clock (event timestamps).
        target: the notifier to deliver to; ``None`` delivers nowhere.
    """

    def __init__(self, db: Database, target: Any, clock: Clock) -> None:
        self.db = db
        self.target = target
        self.clock = clock

    def notify(self, raw: Mapping[str, Any]) -> None:
        """Build the notification for one committed pipeline event and deliver it."""
        if self.target is None:
            return
        try:
            event = self.build(raw)
        except Exception:  # building must never break the pipeline
            log.exception("could not build a notification for %s", raw.get("event"))
            return
        try:
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
        fields: dict[str, Any] = {}
        with self.db.read() as uow:
            agent = uow.agents.get(agent_id) if agent_id else None
            row = uow.transactions.get(tx_id) if tx_id else None
        if agent is not None:
            fields.update(
                agent_id=agent.id, agent_name=agent.name, chain=agent.chain, network=agent.network
            )
        if row is not None:
            meta = json.loads(row.metadata_json) if row.metadata_json else {}
            asset = meta.get("asset", "native")
            fields.update(tx_id=row.id, to_address=row.to_address, tier=row.tier)
            if row.amount is not None:
                fields["amount"] = int(row.amount)
                if asset == "native" and row.chain in _NATIVE_UNITS:
                    symbol, decimals = _NATIVE_UNITS[row.chain]
                    fields.update(asset_symbol=symbol, decimals=decimals)
                else:  # token decimals are not known here: shown in base units
                    fields.update(asset_symbol=asset, decimals=None)
        reason = data.pop("reason", None)
        message = _message(str(event_type), reason, data)
        extra = {k: v for k, v in data.items() if isinstance(v, str | int | bool | None)}
        if tx_id and row is None:
            extra["tx_id"] = tx_id
        return NotificationEvent(
            event_type=event_type,
            timestamp=self.clock.now(),
            severity=Severity(severity) if severity else None,
            message=message,
            extra=extra,
            **fields,
        )

    def close(self, timeout: float | None = None) -> None:
        """Drain and close the target notifier, if it can."""
        close = getattr(self.target, "close", None)
        if close is not None:
            try:
                close(timeout=timeout)
            except Exception:
                log.exception("notifier close failed")


def _message(event_type: str, reason: Any, data: Mapping[str, Any]) -> str:
    if event_type == AuditEvent.POLICY_VIOLATION and data.get("reasons"):
        return "; ".join(str(r.get("message", "")) for r in data["reasons"])
    if reason:
        return str(reason)
    return ""
