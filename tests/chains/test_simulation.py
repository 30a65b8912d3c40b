"""Balance-change simulation: the sender's deltas predicted before signing match a real send.

Runs on litesvm, solana-rpc, eth-tester and anvil; the lookup-table drain runs on both Solana
backends; a node without the debug API answers ``None``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from waiaas.chains.base import BalanceChanges, SupportsBalanceSimulation, UnsignedTx
from waiaas.plan import NATIVE, ProgramCall, decode_plan, unexplained_outflows
from waiaas.types import AccountSpec, Approve, ContractCall, Request, TokenTransfer, Transfer


def _fresh(adapter: Any) -> tuple[bytes, str, str]:
    secret, sender = adapter.generate_secret()
    adapter.fund(sender, 10 * 10**9 if adapter.chain == "solana" else 10**20)
    token = adapter.create_test_token(6)
    adapter.mint_test_token(token, sender, 10**9)
    return secret, sender, token


def _send_and_measure(
    adapter: Any, secret: bytes, sender: str, token: str, unsigned: UnsignedTx
) -> tuple[int, int, int]:
    """Really send; return (native change fee excluded, token change, fee)."""
    native0 = adapter.get_balance(sender)
    token0 = adapter.get_token_balance(sender, token)
    signed = adapter.sign(unsigned, secret)
    adapter.submit(signed)
    status = adapter.wait_for_confirmation(signed)
    assert status.state == "CONFIRMED", status
    fee = int(status.fee or 0)
    return (
        adapter.get_balance(sender) - native0 + fee,
        adapter.get_token_balance(sender, token) - token0,
        fee,
    )


def _requests(adapter: Any, token: str, to: str) -> list[tuple[str, Request]]:
    amount = 2 * 10**9 if adapter.chain == "solana" else 10**15
    return [
        ("transfer", Transfer(to=to, amount=amount)),
        ("token to a fresh wallet", TokenTransfer(token=token, to=to, amount=250_000)),
        ("token again", TokenTransfer(token=token, to=to, amount=1)),
        ("approve", Approve(token=token, spender=to, amount=10**6)),
    ]


def test_simulated_deltas_match_a_real_send(adapter: Any) -> None:
    """Native (fee excluded) and token deltas from the simulation equal the real ones,
    including the recipient's token-account rent on Solana."""
    assert isinstance(adapter, SupportsBalanceSimulation)
    secret, sender, token = _fresh(adapter)
    to = adapter.generate_secret()[1]
    for name, request in _requests(adapter, token, to):
        unsigned = adapter.build(request, sender)
        changes = adapter.simulate_balance_changes(unsigned)
        assert isinstance(changes, BalanceChanges), name
        effects = decode_plan(adapter.plan_of(unsigned), lookup=adapter.account_lookup())
        assert unexplained_outflows(effects, changes) == [], name
        native, token_delta, fee = _send_and_measure(adapter, secret, sender, token, unsigned)
        assert changes.native == native, name
        assert dict(changes.tokens) == ({token: token_delta} if token_delta else {}), name
        assert changes.fee is not None and changes.fee > 0
        if adapter.chain == "solana":
            assert changes.fee == fee, name


def test_rent_shows_as_an_outflow_on_solana(adapter: Any) -> None:
    """A token transfer to a wallet without a token account costs the sender the rent."""
    if adapter.chain != "solana":
        pytest.skip("Solana only")
    _, sender, token = _fresh(adapter)
    to = adapter.generate_secret()[1]
    unsigned = adapter.build(TokenTransfer(token=token, to=to, amount=1), sender)
    changes = adapter.simulate_balance_changes(unsigned)
    assert changes is not None
    assert changes.native == -2_039_280
    assert dict(changes.tokens) == {token: -1}


def test_a_failing_transaction_moves_nothing(adapter: Any) -> None:
    """A transaction that fails in simulation changes nothing (only the fee is reported):
    two transfers of the whole token balance are built; once the first lands, the second
    fails."""
    secret, sender, token = _fresh(adapter)
    to = adapter.generate_secret()[1]
    first = adapter.build(TokenTransfer(token=token, to=to, amount=10**9), sender)
    second = adapter.build(TokenTransfer(token=token, to=to, amount=10**9), sender)
    _send_and_measure(adapter, secret, sender, token, first)
    changes = adapter.simulate_balance_changes(second)
    assert changes is not None
    assert changes.native == 0
    assert dict(changes.tokens) == {}


# --------------------------------------------------------------------------- lookup tables


@pytest.fixture(params=["litesvm", "solana-rpc"])
def solana_env(request: pytest.FixtureRequest) -> Iterator[Any]:
    from solana_fixtures import litesvm_env, rpc_env

    make = litesvm_env if request.param == "litesvm" else rpc_env
    with make() as env:
        yield env


def _as_call(ix: Any) -> ContractCall:
    return ContractCall(
        to=str(ix.program_id),
        data=bytes(ix.data),
        accounts=tuple(
            AccountSpec(pubkey=str(m.pubkey), is_signer=m.is_signer, is_writable=m.is_writable)
            for m in ix.accounts
        ),
    )


def test_lookup_table_close_draining_sol_is_an_unexplained_outflow(solana_env: Any) -> None:
    """The issue's drain: create a lookup table, extend it, deactivate, close it to a thief.
    Every step decodes to a ProgramCall only (no money effect), and the simulation shows the
    SOL leaving (create/extend from the wallet, close from the agent's table) exactly as the
    real sends do."""
    import solders.system_program as sp
    from solders.hash import Hash
    from solders.pubkey import Pubkey

    chain, svm = solana_env.adapter, solana_env.svm
    secret, me = chain.generate_secret()
    chain.fund(me, 10 * 10**9)
    thief = chain.generate_secret()[1]
    chain.fund(thief, 10**9)
    me_key = Pubkey.from_string(me)
    svm.warp_to_slot(100)
    svm.set_slot_hashes([(99, Hash.new_unique())])
    create, table = sp.create_lookup_table(
        sp.CreateLookupTableParams(authority_address=me_key, payer_address=me_key, recent_slot=99)
    )
    extend = sp.extend_lookup_table(
        sp.ExtendLookupTableParams(
            payer_address=me_key,
            lookup_table_address=table,
            authority_address=me_key,
            new_addresses=[Pubkey.new_unique() for _ in range(20)],
        )
    )
    deactivate = sp.deactivate_lookup_table(
        sp.DeactivateLookupTableParams(lookup_table_address=table, authority_address=me_key)
    )
    close = sp.close_lookup_table(
        sp.CloseLookupTableParams(
            lookup_table_address=table,
            authority_address=me_key,
            recipient_address=Pubkey.from_string(thief),
        )
    )
    stolen = 0
    for step, ix in enumerate([create, extend, deactivate, close]):
        if step == 3:
            svm.warp_to_slot(1000)
            svm.set_slot_hashes([(999, Hash.new_unique())])
        unsigned = chain.build(_as_call(ix), me)
        effects = decode_plan(chain.plan_of(unsigned), lookup=chain.account_lookup())
        assert all(isinstance(e, ProgramCall) for e in effects)
        changes = chain.simulate_balance_changes(unsigned)
        wallet0 = chain.get_balance(me)
        table0 = chain.get_balance(str(table))
        thief0 = chain.get_balance(thief)
        signed = chain.sign(unsigned, secret)
        chain.submit(signed)
        status = chain.wait_for_confirmation(signed)
        assert status.state == "CONFIRMED"
        wallet_delta = chain.get_balance(me) - wallet0 + int(status.fee)
        table_delta = chain.get_balance(str(table)) - table0
        assert changes.native == wallet_delta + min(0, table_delta)
        problems = unexplained_outflows(effects, changes)
        if step in (0, 1):
            assert changes.native < 0  # rent leaves the wallet into the table
        if step != 2:
            assert [p.asset for p in problems] == [NATIVE]  # refused by the second lock
        if step == 3:
            stolen = chain.get_balance(thief) - thief0
            assert stolen > 0
            assert changes.native == -stolen  # the drain is visible before signing
    assert stolen > 0


# --------------------------------------------------------------------------- EVM without debug API


class _NoDebugNode(BaseHTTPRequestHandler):
    """A JSON-RPC node that knows its chain id and refuses the debug namespace."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["method"] == "eth_chainId":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": body["id"], "result": "0x1"}
        else:
            reply = {
                "jsonrpc": "2.0",
                "id": body["id"],
                "error": {"code": -32601, "message": "the method does not exist"},
            }
        raw = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def test_a_node_without_the_debug_api_cannot_simulate() -> None:
    """Public providers refuse debug_traceCall: the answer is None, not a guess."""
    from waiaas.chains.evm import EvmAdapter

    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoDebugNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        with EvmAdapter.rpc(f"http://{host!s}:{port}", chain_id=1, network="mainnet") as evm:
            sender = "0x" + "5a" * 20
            unsigned = UnsignedTx(
                chain="evm",
                sender=evm.validate_address(sender),
                payload={
                    "type": 2,
                    "chainId": 1,
                    "nonce": 0,
                    "value": 1,
                    "data": "0x",
                    "gas": 21_000,
                    "maxFeePerGas": 10**10,
                    "maxPriorityFeePerGas": 10**9,
                    "to": evm.validate_address("0x" + "b0" * 20),
                },
                nonce=0,
            )
            assert evm.simulate_balance_changes(unsigned) is None
    finally:
        server.shutdown()
        server.server_close()


def test_controlled_accounts_are_recognised_by_their_authority() -> None:
    """Token accounts, lookup tables, stake and nonce accounts of the sender count as its own;
    the same layouts with another authority do not."""
    import struct

    from solders.pubkey import Pubkey

    from waiaas.chains.solana import spl
    from waiaas.chains.solana._backend import AccountData
    from waiaas.chains.solana.adapter import _controlled_by

    me, other, mint = Pubkey.new_unique(), Pubkey.new_unique(), Pubkey.new_unique()
    alt = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")
    stake = Pubkey.from_string("Stake11111111111111111111111111111111111111")

    def token(owner: Pubkey) -> AccountData:
        data = bytes(mint) + bytes(owner) + struct.pack("<Q", 5) + bytes(165 - 72)
        return AccountData(2_039_280, spl.TOKEN_PROGRAM_ID, data, False)

    def table(authority: Pubkey) -> AccountData:
        data = struct.pack("<IQQB", 1, 2**64 - 1, 0, 0) + b"\x01" + bytes(authority) + bytes(2)
        return AccountData(10**6, alt, data, False)

    def staked(withdrawer: Pubkey) -> AccountData:
        data = struct.pack("<IQ", 2, 1) + bytes(other) + bytes(withdrawer) + bytes(124)
        return AccountData(10**9, stake, data, False)

    def nonce(authority: Pubkey) -> AccountData:
        data = struct.pack("<II", 1, 1) + bytes(authority) + bytes(40)
        return AccountData(1_447_680, spl.SYSTEM_PROGRAM_ID, data, False)

    assert _controlled_by(me, token(me)) == (True, mint)
    assert _controlled_by(me, None, token(me)) == (True, mint)
    for make in (table, staked, nonce):
        assert _controlled_by(me, make(me)) == (True, None), make.__name__
        assert _controlled_by(me, make(other)) == (False, None), make.__name__
    assert _controlled_by(me, token(other)) == (False, None)
    assert _controlled_by(me, None, None) == (False, None)
