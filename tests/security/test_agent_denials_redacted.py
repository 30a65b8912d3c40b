"""What an agent learns of a denial (issue 10: hints shown to an agent are redacted; issue 13:
a compact ``PolicyDeniedError``).

The session holder gets the outcome and the one figure that decides it for this request:
``wallet.send(token, ...)``, an ``AgentHandle`` and the tools dispatcher all raise or answer the
same redacted denial, and every way of reading the denial back with the agent's token (its own
transaction, its list, a successful send's decision) is redacted the same way. The owner and
operator still read the full decision by ``tx_id`` and in the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SOL, all_audit, new_agent, recipient
from waiaas.errors import ConstraintViolationError, PolicyDeniedError
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock, local_wallet
from waiaas.tools import Toolkit
from waiaas.types import Transfer
from waiaas.wallet import Wallet

INSTANT_MAX = "123456789"
NOTIFY_MAX = "987654321"
DELAY_MAX = str(10 * SOL)
PER_TX = str(5 * SOL)
DAILY = str(2 * SOL)
# what may still be sent: the day's budget less the next transfer's network fee
AVAILABLE = str(2 * SOL - 5_000)


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    """A wallet on fresh local chains, frozen clock."""
    with local_wallet(tmp_path, clock=FrozenClock(), notifier=RecordingNotifier()) as w:
        yield w


@pytest.fixture
def setup(wallet: Wallet) -> dict[str, Any]:
    """An agent without an owner under a spending limit (distinctive thresholds) and a
    blacklist of three addresses; the strings the agent must never learn."""
    agent = new_agent(wallet, "solana", funds=20 * SOL)
    banned = [recipient("solana") for _ in range(3)]
    limit = wallet.add_policy(
        "SPENDING_LIMIT",
        {
            "instant_max": INSTANT_MAX,
            "notify_max": NOTIFY_MAX,
            "delay_max": DELAY_MAX,
            "per_transaction": PER_TX,
            "daily_total": DAILY,
        },
        agent_id=agent.id,
    )
    blacklist = wallet.add_policy(
        "ALLOWED_ADDRESSES", {"mode": "blacklist", "addresses": banned}, agent_id=agent.id
    )
    token = wallet.issue_session(agent.id).token
    return {
        "agent": agent,
        "token": token,
        "banned": banned,
        "limit": limit,
        "blacklist": blacklist,
    }


def _agent_texts(exc: PolicyDeniedError) -> str:
    """Everything the session holder can read off the error."""
    return "\n".join(
        [
            str(exc),
            repr(exc),
            exc.message,
            json.dumps(exc.to_dict()),
            repr(vars(exc)),
            repr(exc.args),
            repr(exc.reasons),
            repr(exc.figure),
            repr(exc.decision),
        ]
    )


def _assert_hidden(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked to the agent: {text[:400]}"


def _others(setup: dict[str, Any]) -> list[str]:
    """Thresholds and list members of rules that do not decide the denials below."""
    return [
        f'"{INSTANT_MAX}"',
        INSTANT_MAX,
        NOTIFY_MAX,
        DELAY_MAX,
        "instant_max",
        "notify_max",
        setup["limit"].id,
        setup["blacklist"].id,
        *setup["banned"][1:],
    ]


def test_a_budget_denial_through_send_carries_only_the_deciding_figure(
    wallet: Wallet, setup: dict[str, Any]
) -> None:
    """3 SOL against a 2 SOL day: the agent learns "at most 2 SOL now" and nothing else; the
    owner's view by tx_id and the POLICY_VIOLATION row keep every threshold."""
    with pytest.raises(PolicyDeniedError) as caught:
        wallet.send(setup["token"], Transfer(to=recipient("solana"), amount=3 * SOL))
    exc = caught.value
    assert exc.rule == "SPENDING_LIMIT"
    assert exc.figure == {"asset": "native", "available": AVAILABLE}
    assert exc.message == (
        "denied by policy: over a spending limit: at most 1.999995 SOL can be sent now"
    )
    assert exc.decision is None and "smaller amount" in (exc.next or "")
    assert exc.reasons == [{"type": "SPENDING_LIMIT", "message": "over a spending limit"}]
    _assert_hidden(
        _agent_texts(exc), [*_others(setup), PER_TX, "24h budget", "'window'", '"window"']
    )

    # the owner's view: the full decision and every reason with its rule and figures
    assert exc.tx_id is not None
    owner = wallet.get_transaction(exc.tx_id)
    full = json.dumps(owner.decision.to_dict() if owner.decision else {})
    assert INSTANT_MAX in full and NOTIFY_MAX in full and setup["limit"].id in full
    assert owner.error is not None and "exceeds the 24h budget of 2 SOL" in owner.error
    (violation,) = [
        e for e in all_audit(wallet, tx_id=exc.tx_id) if e.event_type == "POLICY_VIOLATION"
    ]
    assert violation.details["reasons"][0]["rule_id"] == setup["limit"].id
    assert violation.details["reasons"][0]["figures"]["limit"] == DAILY


def test_a_blacklist_denial_through_the_handle_names_no_other_member(
    wallet: Wallet, setup: dict[str, Any]
) -> None:
    """Sending to a blacklisted address: the refused party is the agent's own recipient; the
    rest of the list, the policy id and the tier thresholds stay hidden."""
    handle = wallet.agent(setup["token"])
    target = setup["banned"][0]
    with pytest.raises(PolicyDeniedError) as caught:
        handle.send(Transfer(to=target, amount=1_000))
    exc = caught.value
    assert exc.rule == "ALLOWED_ADDRESSES"
    assert exc.figure == {"address": target}
    assert exc.message == "denied by policy: this recipient is not allowed"
    _assert_hidden(_agent_texts(exc), [*_others(setup), "blacklist", "effects["])
    owner = wallet.get_transaction(exc.tx_id or "")
    assert owner.error is not None and "is blacklisted" in owner.error


def test_the_tools_dispatcher_answers_the_same_redacted_denial(
    wallet: Wallet, setup: dict[str, Any]
) -> None:
    """12 SOL: over the per-transaction cap and the day, and needs an owner it does not have.
    The hard cap decides (before "no owner"), its figure is what every budget still allows,
    the two spending-limit reasons are one, and no other threshold is in the JSON."""
    kit = Toolkit(wallet.agent(setup["token"]))
    reply = kit.call("send_transfer", {"to": recipient("solana"), "amount": "12"})
    assert reply["ok"] is False
    error = reply["error"]
    assert error["code"] == "POLICY_DENIED" and error["rule"] == "SPENDING_LIMIT"
    assert error["figure"] == {"asset": "native", "available": AVAILABLE}
    assert error["also"] == ["OWNER"]
    text = json.dumps(reply)
    _assert_hidden(text, [*_others(setup), PER_TX, "per-transaction"])
    assert text.count("spending limit") == 1
    owner = wallet.get_transaction(error["tx_id"])
    assert owner.error is not None
    assert "per-transaction limit of 5 SOL" in owner.error and "24h budget" in owner.error


def test_reading_the_denial_back_with_the_token_is_redacted_too(
    wallet: Wallet, setup: dict[str, Any]
) -> None:
    """Trying to get around the redaction: the agent reads its denied transaction back
    (handle, list, tools), or sends a tiny amount to read the thresholds off a successful
    result's decision. Every path shows the redacted view; the owner's stays full."""
    token = setup["token"]
    handle = wallet.agent(token)
    kit = Toolkit(handle)
    with pytest.raises(PolicyDeniedError) as caught:
        handle.send(Transfer(to=recipient("solana"), amount=3 * SOL))
    tx_id = caught.value.tx_id
    assert tx_id is not None

    mine = handle.get_transaction(tx_id)
    assert mine.error == (
        "POLICY_DENIED: denied by policy: over a spending limit: at most 1.999995 SOL can be "
        "sent now"
    )
    assert mine.decision is not None and not mine.decision.allowed
    assert mine.decision.budget == () and len(mine.decision.reasons) == 1
    assert mine.decision.reasons[0].rule_id is None and mine.decision.reasons[0].figures == {}
    listed = handle.transactions()
    seen = [
        json.dumps(mine.model_dump(mode="json")),
        json.dumps([t.model_dump(mode="json") for t in listed]),
        json.dumps(kit.call("get_transaction", {"tx_id": tx_id})),
        json.dumps(kit.call("list_transactions", {})),
    ]

    small = wallet.send(token, Transfer(to=recipient("solana"), amount=SOL // 100))
    assert small.status == "CONFIRMED" and small.tier == "INSTANT"
    assert small.decision is not None and small.decision.allowed
    assert small.decision.reasons == () and small.decision.budget == ()
    seen.append(json.dumps(small.model_dump(mode="json")))
    seen.append(json.dumps(handle.get_transaction(small.id).model_dump(mode="json")))
    _assert_hidden("\n".join(seen), [*_others(setup), PER_TX, "24h budget"])

    owner = wallet.get_transaction(small.id)
    assert owner.decision is not None
    # an allowed INSTANT row keeps its outcome, tier and fees, not the reasons: the
    # owner's dry run explains the rule and its figures in full
    assert owner.decision.allowed and owner.decision.tier == "INSTANT"
    assert owner.decision.reasons == ()
    dry = wallet.dry_run(
        Transfer(to=recipient("solana"), amount=SOL // 100), agent_id=small.agent_id
    )
    assert INSTANT_MAX in json.dumps(dry.decision.to_dict())
    assert "24h budget of 2 SOL" in (wallet.get_transaction(tx_id).error or "")


def test_a_time_window_denial_says_when_not_the_window(wallet: Wallet) -> None:
    """Outside a 09-17 UTC window: the figure is the first time it is allowed (what the
    owner's dry run computes), not the window itself."""
    agent = new_agent(wallet, "solana", funds=2 * SOL)
    wallet.add_policy(
        "TIME_RESTRICTION", {"allowed_hours": {"start": 9, "end": 17}}, agent_id=agent.id
    )
    token = wallet.issue_session(agent.id).token
    request = Transfer(to=recipient("solana"), amount=1_000)
    with pytest.raises(PolicyDeniedError) as caught:
        wallet.send(token, request)
    exc = caught.value
    owner = wallet.dry_run(request, agent_id=agent.id)
    assert exc.rule == "TIME_RESTRICTION"
    assert exc.figure == {"allowed_from": str(owner.next_allowed_at)}
    _assert_hidden(_agent_texts(exc), ["09:00-17:00", "it is "])


def test_the_compact_error_is_small_and_ordered(wallet: Wallet, setup: dict[str, Any]) -> None:
    """to_dict is a few hundred bytes (it was 2.9 kB with the reasons twice); the hard cap
    comes before the "no owner" reason that also denied; nothing is listed twice."""
    with pytest.raises(PolicyDeniedError) as caught:
        wallet.send(setup["token"], Transfer(to=recipient("solana"), amount=12 * SOL))
    data = caught.value.to_dict()
    text = json.dumps(data)
    assert len(text.encode()) < 600
    assert set(data) <= {"code", "message", "rule", "figure", "next", "also", "tx_id"}
    assert data["rule"] == "SPENDING_LIMIT" and data["also"] == ["OWNER"]
    types = [r["type"] for r in caught.value.reasons]
    assert types == ["SPENDING_LIMIT", "OWNER"]
    assert len({json.dumps(r, sort_keys=True) for r in caught.value.reasons}) == len(types)


def test_a_session_constraint_refusal_names_no_allowed_address(wallet: Wallet) -> None:
    """A session limited to two recipients: the refusal says which constraint, never the
    addresses it allows (through send, the handle and the tools)."""
    agent = new_agent(wallet, "solana", funds=2 * SOL)
    allowed = [recipient("solana"), recipient("solana")]
    token = wallet.issue_session(agent.id, constraints={"allowed_addresses": allowed}).token
    texts: list[str] = []
    for send in (
        lambda r: wallet.send(token, r),
        lambda r: wallet.agent(token).send(r),
    ):
        with pytest.raises(ConstraintViolationError) as caught:
            send(Transfer(to=recipient("solana"), amount=1_000))
        exc = caught.value
        assert exc.constraint == "allowed_addresses"
        texts += [str(exc), repr(exc), json.dumps(exc.to_dict()), repr(vars(exc))]
    reply = Toolkit(wallet.agent(token)).call(
        "send_transfer", {"to": recipient("solana"), "amount": "0.000001"}
    )
    assert reply["error"]["code"] == "SESSION_CONSTRAINT"
    texts.append(json.dumps(reply))
    _assert_hidden("\n".join(texts), allowed)


def test_an_agent_dry_run_puts_the_hard_cap_before_the_missing_owner(
    wallet: Wallet, setup: dict[str, Any]
) -> None:
    """The agent's preview of the same 12 SOL request names the spending limit (with what is
    still available), not "no owner" nor a bare "refused by policy"."""
    preview = wallet.dry_run(
        Transfer(to=recipient("solana"), amount=12 * SOL), token=setup["token"]
    )
    assert not preview.decision.allowed
    assert [r.type for r in preview.fired] == ["SPENDING_LIMIT"]
    assert preview.hints == (f"at most {AVAILABLE} base units can be sent now",)
    _assert_hidden(repr(preview) + json.dumps(preview.to_dict()), [*_others(setup), PER_TX])
