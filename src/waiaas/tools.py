"""Tools for language models: JSON schemas, one dispatcher, JSON outcomes.

:class:`Toolkit` wraps an :class:`~waiaas.AgentHandle` as a small set of tools a model can
call. Each tool has a hand-written JSON schema whose descriptions tell the model what the
tool does and what to pass (amounts are decimal *strings* of whole units plus an asset,
never numbers). :meth:`Toolkit.call` is the one dispatcher every framework adapter uses::

    from waiaas.tools import Toolkit

    kit = Toolkit(wallet.agent(token))
    kit.specs()                           # [{"name", "description", "parameters"}, ...]
    kit.call("send_transfer", {"to": dest, "amount": "0.05"})
    # {"ok": true, "transaction": {"id": ..., "status": "CONFIRMED", "amount": "0.05 SOL", ...}}

Every outcome is JSON-serialisable, errors included. A refusal comes back as a compact
payload a model can act on, never as an exception::

    {"ok": false, "error": {"code": "POLICY_DENIED",
                            "message": "denied by policy: over a spending limit: at most "
                                       "0.5 SOL can be sent now",
                            "rule": "SPENDING_LIMIT",
                            "figure": {"asset": "native", "available": "500000000"},
                            "next": "send a smaller amount (get_limits shows what is left) ..."}}

The deciding reason comes first: a hard limit (spending limit, allow-list, rate limit, time
window...) before "needs the owner's approval"; the same reason is never listed twice. A
denial says only what an agent may learn (the one deciding figure; never other thresholds,
list contents or policy ids).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from waiaas.agent import AgentHandle
from waiaas.errors import (
    AgentNotActiveError,
    AuthError,
    ChainError,
    ConstraintViolationError,
    InvalidInputError,
    KeystoreError,
    KillSwitchActiveError,
    NotFoundError,
    PolicyDeniedError,
    StateError,
    WaiaasError,
)
from waiaas.policy.explain import agent_denial
from waiaas.types import TransactionInfo, TxStatus

__all__ = ["TOOL_NAMES", "Toolkit", "error_payload", "tool_specs"]

log = logging.getLogger("waiaas.tools")

# --------------------------------------------------------------------------- schemas

_AMOUNT = {
    "type": "string",
    "pattern": r"^[0-9]+(\.[0-9]+)?( [A-Za-z0-9]{1,16})?$",
    "description": (
        'The amount in whole units as a decimal STRING, e.g. "0.05" (0.05 SOL) or "12.5". '
        'Never a number. An optional symbol may follow after a space ("0.05 SOL").'
    ),
}
_ASSET = {
    "type": "string",
    "default": "native",
    "description": (
        'What to send: "native" (SOL on Solana, ETH on EVM; the default), a token symbol '
        'the wallet lists (e.g. "USDC") or a token\'s address (mint / contract).'
    ),
}
_TO = {
    "type": "string",
    "description": "The recipient address (base58 on Solana, 0x... on EVM).",
}
_TX_ID = {"type": "string", "description": "The transaction id returned by send_transfer."}

_SPECS: dict[str, dict[str, Any]] = {
    "get_balance": {
        "description": (
            "Read the agent's balances in whole units. Without an asset: the native coin "
            "and every token the wallet lists for the agent. Read-only."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "asset": {
                    "type": "string",
                    "description": 'One asset only: "native", a listed symbol or a token address.',
                }
            },
            "required": [],
            "additionalProperties": False,
        },
    },
    "send_transfer": {
        "description": (
            "Send native coins or tokens to an address. Spending policies apply: small amounts "
            "execute at once, larger ones may wait (DELAY, cancellable) or need the owner's "
            "approval, and some are refused. Check get_limits or preview_transfer first when "
            "unsure. Returns the transaction (status CONFIRMED, QUEUED or FAILED)."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "to": _TO,
                "amount": _AMOUNT,
                "asset": _ASSET,
                "memo": {
                    "type": "string",
                    "maxLength": 256,
                    "description": "An optional memo (native Solana transfers only).",
                },
            },
            "required": ["to", "amount"],
            "additionalProperties": False,
        },
    },
    "preview_transfer": {
        "description": (
            "Dry run: say whether a transfer would be allowed and at which tier (INSTANT, "
            "NOTIFY, DELAY, APPROVAL), why, and what amount would be allowed instead. "
            "Nothing is sent or recorded."
        ),
        "parameters": {
            "type": "object",
            "properties": {"to": _TO, "amount": _AMOUNT, "asset": _ASSET},
            "required": ["to", "amount"],
            "additionalProperties": False,
        },
    },
    "get_transaction": {
        "description": "Read one of the agent's own transactions by id (status, hash, error).",
        "parameters": {
            "type": "object",
            "properties": {"tx_id": _TX_ID},
            "required": ["tx_id"],
            "additionalProperties": False,
        },
    },
    "list_transactions": {
        "description": "List the agent's own recent transactions, newest first.",
        "parameters": {
            "type": "object",
            "properties": {
                "status": {
                    "type": "string",
                    "enum": [s.value for s in TxStatus],
                    "description": "Only transactions in this status (e.g. QUEUED).",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 50,
                    "default": 10,
                    "description": "How many to return (1-50, default 10).",
                },
            },
            "required": [],
            "additionalProperties": False,
        },
    },
    "cancel_transaction": {
        "description": (
            "Cancel one of the agent's own DELAY transactions while it waits (status QUEUED). "
            "Transactions waiting for the owner's approval cannot be cancelled by the agent."
        ),
        "parameters": {
            "type": "object",
            "properties": {"tx_id": _TX_ID},
            "required": ["tx_id"],
            "additionalProperties": False,
        },
    },
    "get_limits": {
        "description": (
            "What the agent may still do now: native_max_now (the most one native transfer "
            "may move right now without being refused; it may still need a delay or the "
            "owner's approval), what is left of each budget window, the session's own caps, "
            "transactions left and expiry, and the kinds of other rules in force."
        ),
        "parameters": {
            "type": "object",
            "properties": {},
            "required": [],
            "additionalProperties": False,
        },
    },
}

TOOL_NAMES: tuple[str, ...] = tuple(_SPECS)
"""The tool names, in the order :func:`tool_specs` lists them."""


def tool_specs() -> list[dict[str, Any]]:
    """Every tool as ``{"name", "description", "parameters"}`` (``parameters`` is a JSON
    Schema object). A fresh copy each call.

    Example::

        for spec in tool_specs(): print(spec["name"], spec["description"])
    """
    return [json.loads(json.dumps({"name": n, **s})) for n, s in _SPECS.items()]


# --------------------------------------------------------------------------- errors

_OWNER_TYPES = frozenset({"OWNER", "APPROVAL"})


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _denial_advice(exc: PolicyDeniedError, body: dict[str, Any]) -> tuple[Any, str]:
    """A policy denial for the model: the redacted message, the rule (and the others that
    also denied it), the transaction; returns the deciding figure and what to do next."""
    # A pipeline denial is redacted for the agent already; any other one (built from a
    # full decision or full reasons) is redacted here by the same rules.
    compact = exc.to_dict()
    if not compact.get("rule"):
        shown = agent_denial(getattr(exc, "decision", None), getattr(exc, "reasons", ()))
        compact = {
            "message": f"denied by policy: {shown.message}",
            "rule": shown.rule,
            "figure": dict(shown.figure) if shown.figure else None,
            "next": shown.next,
            "also": [r["type"] for r in shown.reasons[1:]],
        }
    body["message"] = str(compact["message"])
    body["rule"] = compact["rule"]
    if compact.get("also"):
        body["also"] = list(compact["also"])
    if getattr(exc, "tx_id", None):
        body["tx_id"] = exc.tx_id
    figure = compact.get("figure")
    return figure, str(compact.get("next") or "ask the owner why it was denied")


def _advice(exc: WaiaasError, body: dict[str, Any]) -> tuple[Any, str]:
    """Any other error for the model: the figure that matters, and what to do next."""
    figure: Any = None
    nxt = "fix the request and try again"
    if isinstance(exc, ConstraintViolationError):
        figure = {"constraint": exc.constraint}
        nxt = "stay within the session's limits (get_limits shows them)"
    elif isinstance(exc, InvalidInputError):
        if exc.field:
            figure = {"field": exc.field}
        nxt = "fix the argument named in the message and call again"
    elif isinstance(exc, AuthError):
        body["message"] = exc.message
        nxt = "stop: the session is no longer valid; ask the operator for a new session"
    elif isinstance(exc, KillSwitchActiveError):
        nxt = "stop: the owner has halted every transaction"
    elif isinstance(exc, AgentNotActiveError):
        figure = {"status": exc.status}
        nxt = "stop: the agent is not active; report to the owner"
    elif isinstance(exc, NotFoundError):
        nxt = "check the id (list_transactions shows the agent's transactions)"
    elif isinstance(exc, StateError):
        status = getattr(exc, "status", None)
        if status:
            figure = {"status": status}
        nxt = "read the transaction again (get_transaction); it may have moved on"
    elif isinstance(exc, KeystoreError):
        nxt = "try again later: the wallet cannot sign right now"
    elif isinstance(exc, ChainError):
        nxt = (
            "try again in a moment"
            if exc.kind.value == "transient"
            else "the chain refused it; check the balance and the request"
        )
    return figure, nxt


def error_payload(exc: BaseException) -> dict[str, Any]:
    """A compact JSON-able error for a model: ``code``, one ``message``, the deciding
    ``figure`` (when there is one) and ``next`` (what to do now).

    Built only from the error's public attributes, so it follows new attributes of the
    errors without changes here. Never contains a token, key or password.

    Example::

        try:
            handle.transfer(dest, "5")
        except WaiaasError as exc:
            error_payload(exc)["error"]["message"]
    """
    if not isinstance(exc, WaiaasError):
        log.error("tool call failed unexpectedly", exc_info=exc)
        return {
            "ok": False,
            "error": {
                "code": "INTERNAL_ERROR",
                "message": "the wallet failed unexpectedly",
                "next": "stop and report to the operator; do not retry",
            },
        }
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, PolicyDeniedError):
        figure, nxt = _denial_advice(exc, body)
    else:
        figure, nxt = _advice(exc, body)
    if figure:
        body["figure"] = _jsonable(figure)
    body["next"] = nxt
    return {"ok": False, "error": body}


# --------------------------------------------------------------------------- dispatcher


def _time(value: int | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, tz=UTC).isoformat().replace("+00:00", "Z")


class Toolkit:
    """The agent's tools over one :class:`~waiaas.AgentHandle`.

    Args:
        handle: the agent's handle (``wallet.agent(token)``).

    Example::

        kit = Toolkit(wallet.agent(token))
        reply = kit.call("get_balance", {})       # a dict, JSON-serialisable
        text = kit.call_json("get_limits", "{}")  # the same as JSON text
    """

    def __init__(self, handle: AgentHandle) -> None:
        if not isinstance(handle, AgentHandle):
            raise InvalidInputError("handle must be an AgentHandle", field="handle")
        self.handle = handle
        self._dispatch: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "get_balance": self._get_balance,
            "send_transfer": self._send_transfer,
            "preview_transfer": self._preview_transfer,
            "get_transaction": self._get_transaction,
            "list_transactions": self._list_transactions,
            "cancel_transaction": self._cancel_transaction,
            "get_limits": self._get_limits,
        }

    def __repr__(self) -> str:
        return f"Toolkit({self.handle!r})"

    @staticmethod
    def specs() -> list[dict[str, Any]]:
        """The tools' JSON schemas (see :func:`tool_specs`)."""
        return tool_specs()

    def call(self, name: str, arguments: Mapping[str, Any] | str | None = None) -> dict[str, Any]:
        """Run tool ``name`` with ``arguments`` (a mapping or JSON text). Never raises for a
        refusal or bad input: the outcome, success or error, is a JSON-able dict with ``ok``.

        Example::

            kit.call("send_transfer", {"to": dest, "amount": "0.05"})["transaction"]["status"]
        """
        try:
            if name not in self._dispatch:
                raise InvalidInputError(
                    f"unknown tool {name!r}; the tools are: {', '.join(TOOL_NAMES)}", field="name"
                )
            args = _check_arguments(name, arguments)
            return self._dispatch[name](args)
        except Exception as exc:
            return error_payload(exc)

    def call_json(self, name: str, arguments: Mapping[str, Any] | str | None = None) -> str:
        """:meth:`call`, returning compact JSON text."""
        return json.dumps(self.call(name, arguments), separators=(",", ":"))

    # ------------------------------------------------------------------ renderings

    def _tx(self, tx: TransactionInfo) -> dict[str, Any]:
        h = self.handle
        asset = tx.asset or "native"
        out: dict[str, Any] = {
            "id": tx.id,
            "status": tx.status.value,
            "tier": tx.tier.value if tx.tier else None,
            "type": tx.type.value,
            "to": tx.to_address,
        }
        if tx.amount is not None:
            try:
                out["amount"] = h.format_units(tx.amount, asset)
            except WaiaasError:
                out["amount"] = f"{tx.amount} base units"
            out["amount_base_units"] = str(tx.amount)
            out["asset"] = asset
        if tx.tx_hash:
            out["tx_hash"] = tx.tx_hash
        if tx.error:
            out["error"] = tx.error
        if tx.status == TxStatus.QUEUED and tx.execute_after is not None:
            out["executes_after"] = _time(tx.execute_after)
            out["note"] = "waiting out a delay; cancel_transaction can still cancel it"
        if tx.status == TxStatus.QUEUED and tx.approval_expires_at is not None:
            out["approval_expires_at"] = _time(tx.approval_expires_at)
            out["note"] = "waiting for the owner's approval"
        if tx.status == TxStatus.FAILED:
            out["note"] = "the transaction failed; nothing was transferred"
        return out

    # ------------------------------------------------------------------ tools

    def _get_balance(self, args: dict[str, Any]) -> dict[str, Any]:
        if "asset" in args:
            return {"ok": True, "balances": [self.handle.balance(args["asset"]).to_dict()]}
        return {"ok": True, "balances": [b.to_dict() for b in self.handle.balances()]}

    def _send_transfer(self, args: dict[str, Any]) -> dict[str, Any]:
        result = self.handle.transfer(
            args["to"], args["amount"], args.get("asset", "native"), memo=args.get("memo")
        )
        return {"ok": True, "transaction": self._tx(result)}

    def _preview_transfer(self, args: dict[str, Any]) -> dict[str, Any]:
        h = self.handle
        asset = args.get("asset", "native")
        request = h.transfer_request(args["to"], args["amount"], asset)
        explanation = h.dry_run(request)
        decision = explanation.decision
        reasons = [
            r.message for r in sorted(explanation.fired, key=lambda r: r.type in _OWNER_TYPES)
        ]
        out: dict[str, Any] = {
            "ok": True,
            "allowed": decision.allowed,
            "tier": decision.tier.value if decision.allowed else None,
            "reasons": list(dict.fromkeys(reasons)),
            "hints": list(explanation.hints),
        }
        return out

    def _get_transaction(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "transaction": self._tx(self.handle.get_transaction(args["tx_id"]))}

    def _list_transactions(self, args: dict[str, Any]) -> dict[str, Any]:
        txs = self.handle.transactions(status=args.get("status"), limit=args.get("limit", 10))
        return {"ok": True, "transactions": [self._tx(t) for t in txs]}

    def _cancel_transaction(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "transaction": self._tx(self.handle.cancel(args["tx_id"]))}

    def _get_limits(self, args: dict[str, Any]) -> dict[str, Any]:
        limits = self.handle.limits()
        data = limits.to_dict()
        native = self.handle.asset("native")
        data["native_max_now"] = (
            "no cap" if limits.native_max_now is None else native.format(limits.native_max_now)
        )
        data["budgets"] = [
            {"window": b["window"], "remaining": native.format(int(b["remaining"]))}
            if "remaining" in b
            else {"window": b["window"], "remaining_usd": f"{b['remaining_usd']} USD"}
            for b in limits.budgets
        ]
        data["session_expires_at"] = _time(limits.session_expires_at)
        return {"ok": True, "limits": data}


def _check_arguments(name: str, arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Validate ``arguments`` against the tool's schema (types, required, no extras)."""
    arguments = _as_object(arguments)
    schema = _SPECS[name]["parameters"]
    props: dict[str, Any] = schema["properties"]
    args = {k: v for k, v in arguments.items() if v is not None}
    problems: list[str] = []
    for key in args:
        if key not in props:
            problems.append(f"{key}: unknown argument (expected: {', '.join(props) or 'none'})")
    for key in schema["required"]:
        if key not in args:
            problems.append(f"{key}: required")
    for key, value in args.items():
        prop = props.get(key)
        problem = None if prop is None else _value_problem(key, value, prop)
        if problem is not None:
            problems.append(problem)
    if problems:
        field = problems[0].split(":", 1)[0] if len(problems) == 1 else None
        raise InvalidInputError("; ".join(problems), field=field, problems=problems)
    return dict(args)


def _as_object(arguments: Mapping[str, Any] | str | None) -> Mapping[str, Any]:
    """The arguments as a mapping (``None`` and a blank string are no arguments; a string is
    parsed as JSON)."""
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise InvalidInputError("arguments must be a JSON object", field="arguments") from None
    if not isinstance(arguments, Mapping):
        raise InvalidInputError("arguments must be a JSON object", field="arguments")
    return arguments


def _value_problem(key: str, value: Any, prop: Mapping[str, Any]) -> str | None:
    """What is wrong with one argument's value under its schema property, or ``None``."""
    kind = prop["type"]
    if kind == "string" and not isinstance(value, str):
        hint = ' (send amounts as a decimal string such as "0.05")' if key == "amount" else ""
        return f"{key}: must be a string, not {type(value).__name__}{hint}"
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{key}: must be an integer"
    if kind == "integer" and not prop["minimum"] <= value <= prop["maximum"]:
        return f"{key}: must be from {prop['minimum']} to {prop['maximum']}"
    if "enum" in prop and value not in prop["enum"]:
        return f"{key}: must be one of {', '.join(prop['enum'])}"
    if kind == "string" and len(value) > prop.get("maxLength", 400):
        return f"{key}: too long"
    return None
