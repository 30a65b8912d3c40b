"""A third-party chain adapter gets the family facts it declares, and clear fallbacks when it
declares none, without anything of waiaas.chains.solana or waiaas.chains.evm.

``ToyAdapter`` is a complete in-memory chain ("toy": an account ledger, signed transfers,
idempotent submission) written only against :mod:`waiaas.chains.base`. ``BareToyAdapter``
implements the port and nothing else; ``ToyAdapter`` adds the three family-fact protocols
(native coin TOY with 6 decimals, batches, a guard for its asset program).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from waiaas import (
    AuthError,
    Batch,
    ContractCall,
    InvalidInputError,
    PolicyDeniedError,
    Transfer,
    Wallet,
)
from waiaas.chains.base import (
    ChainAdapter,
    ChainTxState,
    ChainTxStatus,
    NativeAsset,
    SignedTx,
    SimulationResult,
    SupportsBatch,
    SupportsCallGuard,
    SupportsNativeAsset,
    UnsignedTx,
    batch_supported,
    call_refusal,
    native_asset_of,
)
from waiaas.errors import InvalidAddressError
from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import FrozenClock, local_wallet

FEE = 5
ASSET_PROGRAM = "t" + "00" * 20  # the toy chain's "token program": raw calls to it move funds


class ToyLedger:
    """The chain: balances and the transactions it executed (by hash)."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self.executed: dict[str, bool] = {}
        self.lock = threading.Lock()


def _address(secret: bytes) -> str:
    return "t" + hashlib.sha256(secret).digest()[:20].hex()


class BareToyAdapter:
    """The ChainAdapter port and nothing else."""

    chain = "toy"
    network = "local"

    def __init__(self, ledger: ToyLedger) -> None:
        self.ledger = ledger

    def validate_address(self, address: str) -> str:
        text = address.strip().lower() if isinstance(address, str) else ""
        if len(text) != 41 or text[0] != "t" or any(c not in "0123456789abcdef" for c in text[1:]):
            raise InvalidAddressError(str(address)[:60], chain="toy")
        return text

    def generate_secret(self) -> tuple[bytes, str]:
        import os

        secret = os.urandom(32)
        return secret, _address(secret)

    def address_of(self, secret: bytes) -> str:
        return _address(secret)

    def _moves(self, request: Any) -> list[tuple[str, int]]:
        if isinstance(request, Transfer):
            return [(self.validate_address(request.to), request.amount)]
        if isinstance(request, ContractCall):
            return [(self.validate_address(request.to), request.value)]
        if isinstance(request, Batch) and batch_supported(self):
            return [m for item in request.requests for m in self._moves(item)]
        raise InvalidInputError(f"the toy chain cannot express {request.type}", field="type")

    def build(self, request: Any, sender: str, *, nonce: int | None = None) -> UnsignedTx:
        return UnsignedTx(
            chain=self.chain, sender=sender, payload=self._moves(request), fee_estimate=FEE
        )

    def estimate_fee(self, unsigned: UnsignedTx) -> int:
        return FEE

    def simulate(self, unsigned: UnsignedTx) -> SimulationResult:
        spent = sum(a for _, a in unsigned.payload) + FEE
        with self.ledger.lock:
            ok = self.ledger.balances.get(unsigned.sender, 0) >= spent
        return SimulationResult(success=ok, fee=FEE)

    def sign(self, unsigned: UnsignedTx, secret: bytes) -> SignedTx:
        if _address(secret) != unsigned.sender:
            raise InvalidInputError("not the sender's key", field="secret")
        body = json.dumps({"from": unsigned.sender, "moves": unsigned.payload}).encode()
        raw = body + hmac.new(secret, body, hashlib.sha256).digest()
        return SignedTx(chain=self.chain, raw=raw, tx_hash=hashlib.sha256(raw).hexdigest())

    def submit(self, signed: SignedTx) -> str:
        data = json.loads(signed.raw[:-32])
        with self.ledger.lock:
            if signed.tx_hash in self.ledger.executed:  # the same bytes again: nothing new
                return signed.tx_hash
            b = self.ledger.balances
            total = sum(a for _, a in data["moves"]) + FEE
            ok = b.get(data["from"], 0) >= total
            if ok:
                b[data["from"]] -= total
                for to, amount in data["moves"]:
                    b[to] = b.get(to, 0) + amount
            self.ledger.executed[signed.tx_hash] = ok
        return signed.tx_hash

    def get_status(self, signed: SignedTx) -> ChainTxStatus:
        with self.ledger.lock:
            done = self.ledger.executed.get(signed.tx_hash)
        if done is None:
            return ChainTxStatus(ChainTxState.NOT_FOUND)
        return ChainTxStatus(ChainTxState.CONFIRMED if done else ChainTxState.FAILED, fee=FEE)

    def wait_for_confirmation(self, signed: SignedTx, timeout: float = 30.0) -> ChainTxStatus:
        return self.get_status(signed)

    def get_balance(self, address: str) -> int:
        with self.ledger.lock:
            return self.ledger.balances.get(address, 0)

    def get_token_balance(self, address: str, token: str) -> int:
        return 0


class ToyAdapter(BareToyAdapter):
    """The port plus the three family-fact protocols."""

    native_asset = NativeAsset("TOY", 6)
    supports_batch = True

    def refused_call(self, to: str, data: bytes) -> tuple[str, str] | None:
        if to == ASSET_PROGRAM:
            return "to", "a CONTRACT_CALL to the toy token program is refused (use Transfer)"
        return None


def _dest() -> str:
    return "t" + "ab" * 20


def _open(tmp_path: Path, adapter: BareToyAdapter, notifier: RecordingNotifier) -> Wallet:
    return local_wallet(tmp_path, chains=[adapter], clock=FrozenClock(), notifier=notifier)


def _agent(wallet: Wallet, ledger: ToyLedger, funds: int) -> tuple[str, str]:
    agent = wallet.create_agent("toy-bot", "toy")
    ledger.balances[agent.public_key] = funds
    return agent.id, wallet.issue_session(agent.id).token


def test_protocols_and_fallbacks_read_from_the_adapter() -> None:
    ledger = ToyLedger()
    full, bare = ToyAdapter(ledger), BareToyAdapter(ledger)
    assert isinstance(full, ChainAdapter) and isinstance(bare, ChainAdapter)
    assert isinstance(full, SupportsNativeAsset | SupportsBatch | SupportsCallGuard)
    assert not isinstance(bare, SupportsNativeAsset | SupportsBatch | SupportsCallGuard)
    assert native_asset_of(full) == NativeAsset("TOY", 6) and native_asset_of(bare) is None
    assert batch_supported(full) and not batch_supported(bare)
    assert call_refusal(full, ASSET_PROGRAM, b"")[0] == "to"  # type: ignore[index]
    assert call_refusal(bare, ASSET_PROGRAM, b"") is None


def test_declared_facts_reach_the_handle_the_pipeline_and_notifications(tmp_path: Path) -> None:
    ledger = ToyLedger()
    notifier = RecordingNotifier()
    with _open(tmp_path, ToyAdapter(ledger), notifier) as wallet:
        agent_id, token = _agent(wallet, ledger, 10_000_000)
        handle = wallet.agent(token)
        info = handle.asset("TOY")
        assert (info.asset, info.symbol, info.decimals) == ("native", "TOY", 6)
        assert handle.parse_units("0.5 TOY") == 500_000
        assert handle.balance().display == "10 TOY"

        sent = handle.transfer(_dest(), "0.5")
        assert sent.status == "CONFIRMED" and sent.amount == 500_000
        assert ledger.balances[_dest()] == 500_000

        batch = Batch(requests=[Transfer(to=_dest(), amount=1), Transfer(to=_dest(), amount=2)])
        assert handle.send(batch).status == "CONFIRMED"
        assert ledger.balances[_dest()] == 500_003

        with pytest.raises(InvalidInputError) as refused:
            handle.send(ContractCall(to=ASSET_PROGRAM, data=b"\x01", value=0))
        assert refused.value.field == "to" and "toy token program" in str(refused.value)

        confirmed = [e for e in notifier.events if e.tx_id == sent.id]
        assert confirmed and all(
            (e.asset_symbol, e.decimals) == ("TOY", 6) for e in confirmed if e.amount
        )
        assert wallet.get_agent(agent_id).chain == "toy"


def test_an_adapter_that_declares_nothing_gets_clear_fallbacks(tmp_path: Path) -> None:
    ledger = ToyLedger()
    notifier = RecordingNotifier()
    with _open(tmp_path, BareToyAdapter(ledger), notifier) as wallet:
        _agent_id, token = _agent(wallet, ledger, 10_000)
        handle = wallet.agent(token)
        info = handle.asset("native")
        assert (info.symbol, info.decimals) == (None, None)
        assert handle.balance().display == "10000 base units of the native coin"

        # whole units need decimals: refused, and nothing was recorded or moved
        with pytest.raises(InvalidInputError) as whole:
            handle.transfer(_dest(), "0.5")
        assert whole.value.field == "amount" and "base units" in str(whole.value)
        assert handle.transactions() == []

        # base units work
        sent = handle.send(Transfer(to=_dest(), amount=500))
        assert sent.status == "CONFIRMED" and ledger.balances[_dest()] == 500

        # no batch support declared: refused before anything is built
        batch = Batch(requests=[Transfer(to=_dest(), amount=1), Transfer(to=_dest(), amount=2)])
        with pytest.raises(InvalidInputError) as no_batch:
            handle.send(batch)
        assert no_batch.value.field == "type" and "BATCH is not supported on toy" in str(
            no_batch.value
        )
        assert ledger.balances[_dest()] == 500

        # no guard: a raw call is not screened by the pipeline (no InvalidInputError); the
        # policies still decide, and unknown code is denied
        with pytest.raises(PolicyDeniedError):
            handle.send(ContractCall(to=ASSET_PROGRAM, data=b"\x01", value=7))

        shown = [e for e in notifier.events if e.tx_id == sent.id and e.amount]
        assert shown and all(e.asset_symbol == "native" and e.decimals is None for e in shown)


def test_a_refused_token_is_still_refused_on_a_third_party_chain(tmp_path: Path) -> None:
    ledger = ToyLedger()
    with _open(tmp_path, ToyAdapter(ledger), RecordingNotifier()) as wallet:
        agent_id, token = _agent(wallet, ledger, 1_000)
        wallet.revoke_session(wallet.list_sessions(agent_id)[0].session_id)
        with pytest.raises(AuthError):
            wallet.agent(token)


class _ToyOracle:
    """$2 per whole TOY; every other asset unknown."""

    def price_usd(self, chain: str, asset: str) -> Decimal | None:
        return Decimal("2") if (chain, asset) == ("toy", "native") else None


def test_usd_rules_price_the_coin_the_adapter_declares(tmp_path: Path) -> None:
    """The gate hands the adapter's native decimals to the evaluator: at $2 per TOY (6
    decimals), 4 TOY ($8) is INSTANT under instant_max_usd=10 and 20 TOY ($40) is over the
    $30 per-transaction cap. Without declared decimals the
    coin is unpriced: the owner's approval."""
    for adapter, declared in (
        (ToyAdapter(ToyLedger()), True),
        (BareToyAdapter(ToyLedger()), False),
    ):
        ledger = adapter.ledger
        directory = tmp_path / ("full" if declared else "bare")
        directory.mkdir()
        with local_wallet(
            directory,
            chains=[adapter],
            clock=FrozenClock(),
            price_oracle=_ToyOracle(),
        ) as wallet:
            agent_id, token = _agent(wallet, ledger, 100_000_000)
            wallet.add_policy(
                "SPENDING_LIMIT",
                {"per_transaction_usd": "30", "instant_max_usd": "10", "notify_max_usd": "20"},
                agent_id=agent_id,
            )
            if declared:
                small = wallet.send(token, Transfer(to=_dest(), amount=4_000_000))
                assert (small.tier, small.status) == ("INSTANT", "CONFIRMED")
                with pytest.raises(PolicyDeniedError):
                    wallet.send(token, Transfer(to=_dest(), amount=20_000_000))
            else:
                # unpriced -> the owner's approval, and this agent has no owner: denied
                with pytest.raises(PolicyDeniedError) as unpriced:
                    wallet.send(token, Transfer(to=_dest(), amount=4_000_000))
                assert "approval" in str(unpriced.value)
