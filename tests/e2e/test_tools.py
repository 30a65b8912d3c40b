"""waiaas.tools: hand-written schemas, one dispatcher, JSON outcomes, compact model-facing
errors (the deciding reason first, hard caps before owner approval, no duplicates)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import SOL, new_agent, recipient
from waiaas import (
    AgentNotActiveError,
    ChainError,
    ConstraintViolationError,
    KillSwitchActiveError,
    PolicyDeniedError,
    TransientChainError,
)
from waiaas.tools import TOOL_NAMES, Toolkit, error_payload, tool_specs
from waiaas.wallet import Wallet


def _kit(wallet: Wallet, chain: str = "solana", **kw: Any) -> tuple[Toolkit, str]:
    agent = new_agent(wallet, chain, **kw)
    return Toolkit(wallet.agent(wallet.issue_session(agent.id).token)), agent.id


def _walk(schema: dict[str, Any]) -> None:
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
        assert prop["type"] in ("string", "integer"), name


def test_schemas_are_described_and_amounts_are_strings() -> None:
    """Every tool and argument has a description; amounts are decimal strings with an asset;
    the specs are fresh copies (a caller editing one does not change the next)."""
    specs = tool_specs()
    assert [s["name"] for s in specs] == list(TOOL_NAMES)
    for spec in specs:
        assert len(spec["description"]) > 30
        _walk(spec["parameters"])
    send = next(s for s in specs if s["name"] == "send_transfer")["parameters"]
    assert send["properties"]["amount"]["type"] == "string"
    assert "STRING" in send["properties"]["amount"]["description"]
    assert send["required"] == ["to", "amount"]
    assert "asset" in send["properties"]
    send["properties"].clear()
    assert tool_specs()[1]["parameters"]["properties"]


def test_every_outcome_is_json_on_both_chains(wallet: Wallet, chain: str) -> None:
    """Each tool answers JSON-serialisable data, success or error, through call and call_json."""
    kit, _ = _kit(wallet, chain)
    dest = recipient(chain)
    amount = {"solana": "0.01", "evm": "0.001"}[chain]
    sent = kit.call("send_transfer", {"to": dest, "amount": amount})
    assert sent["ok"] and sent["transaction"]["status"] == "CONFIRMED"
    assert sent["transaction"]["amount"].startswith(amount + " ")
    tx_id = sent["transaction"]["id"]
    replies = [
        kit.call("get_balance", {}),
        kit.call("get_balance", {"asset": "native"}),
        kit.call("preview_transfer", {"to": dest, "amount": amount}),
        kit.call("get_transaction", {"tx_id": tx_id}),
        kit.call("list_transactions", {"limit": 5}),
        kit.call("list_transactions", {"status": "CONFIRMED"}),
        kit.call("cancel_transaction", {"tx_id": tx_id}),
        kit.call("get_limits", None),
        kit.call("get_limits", "{}"),
    ]
    for reply in replies:
        json.dumps(reply)
    assert [r["ok"] for r in replies] == [True] * 6 + [False, True, True]
    assert replies[6]["error"]["code"] == "INVALID_STATE"
    assert replies[2]["allowed"] is True and replies[2]["tier"] == "INSTANT"
    assert json.loads(kit.call_json("get_transaction", json.dumps({"tx_id": tx_id})))["ok"]


@pytest.mark.parametrize(
    ("name", "arguments", "needle"),
    [
        ("send_transfer", {"to": "x", "amount": 0.05}, "must be a string, not float"),
        ("send_transfer", {"to": "x", "amount": 5}, "must be a string, not int"),
        ("send_transfer", {"amount": "1"}, "to: required"),
        ("send_transfer", {"to": "x", "amount": "1", "type": "CONTRACT_CALL"}, "unknown argument"),
        ("send_transfer", {"to": "x", "amount": "1", "_name": "cancel"}, "unknown argument"),
        ("list_transactions", {"limit": 10_000}, "from 1 to 50"),
        ("list_transactions", {"limit": True}, "must be an integer"),
        ("list_transactions", {"status": "DONE"}, "must be one of"),
        ("get_limits", "not json", "JSON object"),
        ("get_limits", "[1]", "JSON object"),
        ("drain_wallet", {}, "unknown tool"),
    ],
)
def test_bad_arguments_are_answers_not_exceptions(
    wallet: Wallet, name: str, arguments: Any, needle: str
) -> None:
    """What a model gets wrong comes back as INVALID_INPUT saying what to fix."""
    kit, _ = _kit(wallet)
    reply = kit.call(name, arguments)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "INVALID_INPUT"
    assert needle in reply["error"]["message"]
    assert reply["error"]["next"]


def test_a_denial_is_compact_and_hard_caps_come_before_the_owner(wallet: Wallet) -> None:
    """Over a hard cap on an agent without an owner, the cap is the message (not "no
    owner"), with its one figure (what is still available) and a next step; the payload is
    small, lists nothing twice and names no other threshold."""
    kit, agent_id = _kit(wallet)
    wallet.add_policy(
        "SPENDING_LIMIT",
        {"instant_max": str(SOL // 10), "per_transaction": str(SOL)},
        agent_id=agent_id,
    )
    reply = kit.call("send_transfer", {"to": recipient("solana"), "amount": "2"})
    error = reply["error"]
    assert error["code"] == "POLICY_DENIED"
    assert error["rule"] == "SPENDING_LIMIT"
    assert "at most 1 SOL can be sent now" in error["message"]
    assert error["figure"] == {"asset": "native", "available": str(SOL)}
    assert "smaller amount" in error["next"]
    assert error["also"] == ["OWNER"]
    text = json.dumps(reply)
    assert len(text) < 600
    assert text.count("spending limit") == 1
    assert f'"{SOL // 10}"' not in text and "instant_max" not in text  # the other threshold


def test_error_payload_orders_dedupes_and_follows_new_attributes() -> None:
    """Built from public attributes only: a denial built from full reasons is redacted by the
    agents' rules (no rule's own figures), duplicated reasons collapse, owner reasons go
    last, extra attributes a newer pipeline adds do not break it, unknown errors say
    nothing."""
    reasons = [
        {"type": "OWNER", "effect": "deny", "message": "needs owner approval"},
        {
            "type": "RATE_LIMIT",
            "effect": "deny",
            "message": "3 requests in 60 s",
            "figures": {"max": "3"},
        },
        {
            "type": "RATE_LIMIT",
            "effect": "deny",
            "message": "3 requests in 60 s",
            "figures": {"max": "3"},
        },
        {"type": "SPENDING_LIMIT", "effect": "tier", "message": "NOTIFY"},
    ]
    exc = PolicyDeniedError("denied by policy: ...", reasons=reasons, tx_id="t1")
    exc.effects = {"native": "-5"}  # type: ignore[attr-defined]
    body = error_payload(exc)["error"]
    assert body["message"] == "denied by policy: too many requests"
    assert body["rule"] == "RATE_LIMIT"
    assert body["also"] == ["OWNER"]
    assert "figure" not in body and "60 s" not in json.dumps(body)
    assert body["tx_id"] == "t1"

    assert error_payload(ConstraintViolationError("too much", constraint="max_amount_per_tx"))[
        "error"
    ]["figure"] == {"constraint": "max_amount_per_tx"}
    assert "stop" in error_payload(KillSwitchActiveError())["error"]["next"]
    assert "stop" in error_payload(AgentNotActiveError("a", "SUSPENDED"))["error"]["next"]
    assert "again" in error_payload(TransientChainError("busy"))["error"]["next"]
    assert "refused" in error_payload(ChainError("no"))["error"]["next"]
    secret = "sk-live-very-secret"
    unknown = error_payload(RuntimeError(secret))
    assert unknown["error"]["code"] == "INTERNAL_ERROR"
    assert secret not in json.dumps(unknown)


def test_the_token_never_appears_in_any_reply(wallet: Wallet) -> None:
    """No reply, success or error, carries the session token."""
    agent = new_agent(wallet, "solana")
    issued = wallet.issue_session(agent.id)
    kit = Toolkit(wallet.agent(issued.token))
    replies = [kit.call(name, {}) for name in TOOL_NAMES]
    wallet.revoke_session(issued.session_id)
    replies += [kit.call(name, {}) for name in TOOL_NAMES]
    assert replies[-1]["error"]["code"] == "TOKEN_REVOKED"
    assert "new session" in replies[-1]["error"]["next"]
    assert issued.token not in json.dumps(replies)
