"""Adapters expose the plan of exactly what they sign, and what it decodes to.

Runs on litesvm, solana-rpc, eth-tester and anvil (``conftest.adapter``). Requests are built
by the adapters; the plan is read from the built message / tx dict, compared with the plan
read back from the signed bytes, and decoded into the effects the request should have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waiaas.chains.base import SupportsPlans, SupportsTokenInfo, UnsignedTx
from waiaas.errors import InvalidInputError
from waiaas.plan import (
    AccountFunding,
    ContractCall,
    Effect,
    Memo,
    NativeTransfer,
    ProgramCall,
    TokenApproval,
    TokenTransfer,
    decode_plan,
    plan_digest,
    plan_from_json,
    plan_to_json,
)
from waiaas.types import Approve, Batch, Request, Transfer
from waiaas.types import ContractCall as CallRequest
from waiaas.types import TokenTransfer as TokenRequest

MEMO_PROGRAM = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
TOKEN_RENT = 2_039_280  # rent of a 165-byte SPL token account


@dataclass
class World:
    """A funded sender with a test token on a fresh chain."""

    adapter: Any
    secret: bytes
    sender: str
    token: str
    others: list[str]

    @property
    def chain(self) -> str:
        return str(self.adapter.chain)


@pytest.fixture
def world(adapter: Any) -> World:
    secret, sender = adapter.generate_secret()
    fund = 100 * 10**9 if adapter.chain == "solana" else 10**20
    adapter.fund(sender, fund)
    token = adapter.create_test_token(6)
    adapter.mint_test_token(token, sender, 10**12)
    others = [adapter.generate_secret()[1] for _ in range(3)]
    return World(adapter, secret, sender, token, others)


def _ata(owner: str, mint: str) -> str:
    from solders.pubkey import Pubkey

    from waiaas.chains.solana import spl

    return str(spl.associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint)))


def expected_effects(w: World, request: Request, fresh: set[str]) -> list[Effect]:
    """The effects a request must decode to (``fresh``: recipients without a token account)."""
    me = w.sender
    if isinstance(request, Batch):
        out: list[Effect] = []
        for item in request.requests:
            out += expected_effects(w, item, fresh)
        return out
    if isinstance(request, Transfer):
        out = [NativeTransfer(me, request.to, request.amount)]
        if request.memo and w.chain == "solana":
            out.append(Memo(request.memo))
        return out
    if isinstance(request, TokenRequest):
        if w.chain == "evm":
            return [TokenTransfer(w.token, me, request.to, request.to, request.amount, me)]
        dest = _ata(request.to, w.token)
        out = []
        if request.to in fresh:
            out.append(AccountFunding(me, dest, TOKEN_RENT, "token_account_rent"))
            fresh.discard(request.to)
        out.append(TokenTransfer(w.token, _ata(me, w.token), dest, request.to, request.amount, me))
        return out
    if isinstance(request, Approve):
        owner = me if w.chain == "evm" else _ata(me, w.token)
        return [TokenApproval(w.token, owner, request.spender, request.amount)]
    raise AssertionError(request)


def plan_and_effects(w: World, unsigned: UnsignedTx) -> tuple[Any, tuple[Effect, ...]]:
    plan = w.adapter.plan_of(unsigned)
    return plan, decode_plan(plan, lookup=w.adapter.account_lookup())


def test_adapters_support_plans_and_token_info(world: World) -> None:
    """Both shipped adapters implement the plan and token-info capabilities."""
    assert isinstance(world.adapter, SupportsPlans)
    assert isinstance(world.adapter, SupportsTokenInfo)
    assert world.adapter.token_decimals(world.token) == 6
    assert world.adapter.token_decimals(world.token) == 6  # cached


def test_token_decimals_refuses_non_tokens(world: World) -> None:
    """A wallet address is not a token."""
    with pytest.raises(InvalidInputError):
        world.adapter.token_decimals(world.others[0])


amounts = st.integers(min_value=1, max_value=10**6)


@st.composite
def requests(draw: st.DrawFn, w: World) -> Request:
    kind = draw(st.sampled_from(["transfer", "token", "approve", "batch"]))
    to = draw(st.sampled_from(w.others))
    if kind == "transfer":
        memo = draw(st.none() | st.text(min_size=1, max_size=20)) if w.chain == "solana" else None
        floor = 10**6 if w.chain == "solana" else 0  # a fresh Solana account needs its rent
        return Transfer(to=to, amount=floor + draw(amounts), memo=memo)
    if kind == "token":
        return TokenRequest(token=w.token, to=to, amount=draw(amounts))
    if kind == "approve":
        return Approve(token=w.token, spender=to, amount=draw(st.integers(0, 2**64 - 1)))
    if w.chain == "evm":
        return TokenRequest(token=w.token, to=to, amount=draw(amounts))
    items = draw(
        st.lists(st.sampled_from(["transfer", "token", "approve"]), min_size=2, max_size=4).map(
            tuple
        )
    )
    built: list[Any] = []
    for item in items:
        if item == "transfer":
            built.append(Transfer(to=draw(st.sampled_from(w.others)), amount=10**6))
        elif item == "token":
            built.append(TokenRequest(token=w.token, to=draw(st.sampled_from(w.others)), amount=1))
        else:
            built.append(Approve(token=w.token, spender=to, amount=draw(amounts)))
    return Batch(requests=tuple(built))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_property_decoded_plan_equals_the_requests_effects(world: World, data: Any) -> None:
    """For random requests built by the adapter, the effects decoded from the plan of the
    built transaction, and from the signed bytes, are the request's effects; the signed
    transaction then really executes."""
    w = world
    request = data.draw(requests(w))
    lookup = w.adapter.account_lookup()
    fresh = set()
    if w.chain == "solana":
        fresh = {o for o in w.others if lookup.token_account(_ata(o, w.token)) is None}
    unsigned = w.adapter.build(request, w.sender)
    plan, effects = plan_and_effects(w, unsigned)
    assert list(effects) == expected_effects(w, request, fresh)
    signed = w.adapter.sign(unsigned, w.secret)
    signed_plan = w.adapter.plan_of_signed(signed)
    assert signed_plan == plan
    assert plan_digest(signed_plan) == plan_digest(plan)
    assert plan_from_json(json.loads(json.dumps(plan_to_json(plan)))) == plan
    w.adapter.submit(signed)
    assert w.adapter.wait_for_confirmation(signed).state == "CONFIRMED"


def test_contract_call_calldata_is_decoded_not_trusted(world: World) -> None:
    """A ContractCall carrying ERC-20 transfer calldata (EVM) or memo data (Solana) decodes
    to the transfer / memo it really is."""
    w = world
    to = w.others[0]
    if w.chain == "evm":
        data = bytes.fromhex("a9059cbb") + encode(["address", "uint256"], [to, 5])
        unsigned = w.adapter.build(CallRequest(to=w.token, data=data), w.sender)
        _, effects = plan_and_effects(w, unsigned)
        assert effects == (TokenTransfer(w.token, w.sender, to, to, 5, w.sender),)
    else:
        from waiaas.types import AccountSpec

        unsigned = w.adapter.build(
            CallRequest(
                to=MEMO_PROGRAM,
                data=b"hello",
                accounts=(AccountSpec(pubkey=w.sender, is_signer=True),),
            ),
            w.sender,
        )
        _, effects = plan_and_effects(w, unsigned)
        assert effects == (Memo("hello"),)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    payload=st.one_of(
        st.binary(min_size=1, max_size=200),
        st.text(alphabet="0123456789abcdefx", min_size=1, max_size=80).map(str.encode),
    )
)
def test_calldata_round_trips_byte_exactly_to_the_signed_transaction(
    world: World, payload: bytes
) -> None:
    """Random calldata (non-UTF-8, hex-looking ASCII) is the exact data of the plan, of the
    signed bytes and of their plan; EVM goes to an account without code, Solana to the memo
    program (data must be UTF-8 there to run, but any bytes are signed as given)."""
    w = world
    if w.chain == "evm":
        request = CallRequest(to=w.others[1], data=payload)
    else:
        from waiaas.types import AccountSpec

        request = CallRequest(
            to=MEMO_PROGRAM, data=payload, accounts=(AccountSpec(pubkey=w.sender, is_signer=True),)
        )
    unsigned = w.adapter.build(request, w.sender)
    plan = w.adapter.plan_of(unsigned)
    signed_plan = w.adapter.plan_of_signed(w.adapter.sign(unsigned, w.secret))
    assert signed_plan == plan
    if w.chain == "evm":
        assert plan.data == payload
    else:
        (ix,) = plan.instructions
        assert ix.data == payload
    effects = decode_plan(plan, lookup=w.adapter.account_lookup())
    if w.chain == "evm" and len(payload) >= 4:
        assert any(isinstance(e, ContractCall | TokenTransfer | TokenApproval) for e in effects)
    if w.chain == "solana":
        try:
            assert effects == (Memo(payload.decode("utf-8")),)
        except UnicodeDecodeError:
            assert isinstance(effects[0], ProgramCall) and effects[0].malformed


def test_plan_of_refuses_other_chains_payloads(world: World) -> None:
    """A transaction of the other chain family, or a tampered payload, has no plan here."""
    w = world
    other = UnsignedTx(
        chain="evm" if w.chain == "solana" else "solana", sender=w.sender, payload={}
    )
    with pytest.raises(InvalidInputError):
        w.adapter.plan_of(other)
    bogus = UnsignedTx(chain=w.chain, sender=w.sender, payload="not a message")
    with pytest.raises(InvalidInputError):
        w.adapter.plan_of(bogus)


def test_build_plan_signs_exactly_the_stored_plan(world: World) -> None:
    """A plan stored as JSON rebuilds to a transaction with the same plan and digest, even
    after the chain changed (Solana: the recipient's token account now exists, so a rebuild
    from the request would drop the account creation), and it executes."""
    from waiaas.chains.base import SupportsPlanBuild

    w = world
    assert isinstance(w.adapter, SupportsPlanBuild)
    to = w.others[2]
    unsigned = w.adapter.build(TokenRequest(token=w.token, to=to, amount=7), w.sender)
    stored = json.dumps(plan_to_json(w.adapter.plan_of(unsigned)))
    if w.chain == "evm":
        w.adapter.release_nonce(w.sender, unsigned.nonce)  # dropped unsent
    w.adapter.mint_test_token(w.token, to, 1)  # the recipient's token account appears
    plan = plan_from_json(json.loads(stored))
    rebuilt = w.adapter.build_plan(plan)
    assert w.adapter.plan_of(rebuilt) == plan
    assert plan_digest(w.adapter.plan_of(rebuilt)) == plan_digest(plan)
    other = w.adapter.build(TokenRequest(token=w.token, to=to, amount=7), w.sender)
    fresh = w.adapter.plan_of(other)
    if w.chain == "evm":
        w.adapter.release_nonce(w.sender, other.nonce)
    else:
        assert plan_digest(fresh) != plan_digest(plan)  # the request would build another plan
    signed = w.adapter.sign(rebuilt, w.secret)
    assert w.adapter.plan_of_signed(signed) == plan
    w.adapter.submit(signed)
    assert w.adapter.wait_for_confirmation(signed).state == "CONFIRMED"


def test_build_plan_refuses_foreign_or_unsignable_plans(world: World) -> None:
    """Another network or chain id, the other chain family, or a second signer: refused."""
    import dataclasses

    from waiaas.plan import SolanaAccountMeta, SolanaInstruction

    w = world
    plan = w.adapter.plan_of(w.adapter.build(Transfer(to=w.others[0], amount=10**6), w.sender))
    with pytest.raises(InvalidInputError):
        w.adapter.build_plan(dataclasses.replace(plan, network="elsewhere"))
    if w.chain == "evm":
        with pytest.raises(InvalidInputError):
            w.adapter.build_plan(dataclasses.replace(plan, chain_id=plan.chain_id + 1))
        return
    (ix,) = plan.instructions
    second_signer = SolanaInstruction(
        ix.program_id,
        (ix.accounts[0], SolanaAccountMeta(ix.accounts[1].pubkey, True, True)),
        ix.data,
    )
    with pytest.raises(InvalidInputError):
        w.adapter.build_plan(dataclasses.replace(plan, instructions=(second_signer,)))
    with pytest.raises(InvalidInputError):
        w.adapter.build_plan(plan, nonce=1)
