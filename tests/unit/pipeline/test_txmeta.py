"""Every key the pipeline writes into a transaction row's metadata is declared in TxMeta.

Real sends on LiteSVM and eth-tester down every path of the pipeline (INSTANT, NOTIFY, DELAY
failed on re-check, cancelled, approved, rejected, expired, denied); every metadata document
written to the ``transactions`` table on the way (inserts and updates) is checked key by key,
nested documents too, against the TypedDicts of :mod:`waiaas.pipeline.txmeta`, and each
value against its declared type.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import drive_every_path
from waiaas.db import repositories
from waiaas.notify.testing import RecordingNotifier
from waiaas.pipeline.records import compact_effects, compact_request, stored_request
from waiaas.pipeline.requests import parse_request
from waiaas.pipeline.txmeta import TxMeta, asset_of, effects_of, request_of
from waiaas.testing import TEST_PASSWORD, FrozenClock, fast_config, local_chains
from waiaas.types import Approve, Batch, ContractCall, TokenTransfer, Transfer
from waiaas.wallet import Wallet


def _problems(value: Any, hint: Any, where: str) -> Iterator[str]:
    """What in ``value`` does not match the type ``hint`` (a TypedDict is checked key by
    key: an undeclared key is a problem)."""
    if typing.is_typeddict(hint):
        if not isinstance(value, dict):
            yield f"{where}: {type(value).__name__}, expected an object"
            return
        declared = typing.get_type_hints(hint)
        for key, item in value.items():
            if key not in declared:
                yield f"{where}.{key}: not declared in {hint.__name__}"
            else:
                yield from _problems(item, declared[key], f"{where}.{key}")
        return
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if not any(not list(_problems(value, option, where)) for option in options):
            yield f"{where}: {value!r} matches none of {hint}"
        return
    if hint is Any:
        return
    if hint is type(None):
        if value is not None:
            yield f"{where}: {value!r}, expected null"
        return
    expected = origin or hint
    if expected is int and isinstance(value, bool):
        yield f"{where}: {value!r}, expected an int"
    elif not isinstance(value, expected):
        yield f"{where}: {type(value).__name__}, expected {expected.__name__}"
    elif origin is list:
        (item,) = typing.get_args(hint)
        for i, element in enumerate(value):
            yield from _problems(element, item, f"{where}[{i}]")
    elif origin is dict:
        _, item = typing.get_args(hint)
        for key, element in value.items():
            yield from _problems(element, item, f"{where}.{key}")


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every metadata document the transactions repository writes (the writes still run)."""
    docs: list[dict[str, Any]] = []
    real_fields = repositories._tx_fields
    real_add = repositories.TransactionRepository.add

    def fields(values: Any) -> dict[str, Any]:
        out = real_fields(values)
        if out.get("metadata_json"):
            docs.append(json.loads(out["metadata_json"]))
        return out

    def add(self: Any, row: Any) -> Any:
        docs.append(json.loads(row.metadata_json))
        return real_add(self, row)

    monkeypatch.setattr(repositories, "_tx_fields", fields)
    monkeypatch.setattr(repositories.TransactionRepository, "add", add)
    return docs


@pytest.mark.parametrize("chain", ["solana", "evm"])
def test_every_key_written_on_every_path_is_declared(
    tmp_path: Path, chain: str, written: list[dict[str, Any]]
) -> None:
    with Wallet.open(
        tmp_path / "wallet.db",
        password=TEST_PASSWORD,
        chains=local_chains(),
        config=fast_config(),
        clock=FrozenClock(),
        notifier=RecordingNotifier(),
    ) as wallet:
        ids = drive_every_path(wallet, chain)
    assert len(ids) == 8
    keys = {key for doc in written for key in doc}
    # the paths were really driven: decisions, plans, signatures, claims, owners, failures
    # (their plain transfers store no ``request``: the row's columns hold it)
    assert {"decision", "plan", "signed", "claim", "approval", "execute_after", "error"} <= keys
    problems = [p for doc in written for p in _problems(doc, TxMeta, "metadata")]
    assert problems == []


def test_the_checker_names_an_undeclared_key_and_a_wrong_type() -> None:
    doc = {"network": "x", "signed": {"raw_b64": "AA==", "nonse": 1}, "rebuilt": "1"}
    assert list(_problems(doc, TxMeta, "metadata")) == [
        "metadata.signed.nonse: not declared in SignedMeta",
        "metadata.rebuilt: str, expected int",
    ]


class _NoSimulation:
    """An adapter without balance simulation (a backend that cannot simulate)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "simulate_balance_changes":
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.mark.parametrize("simulates", [True, False])
def test_only_an_unavailable_simulation_is_written(
    tmp_path: Path, simulates: bool, written: list[dict[str, Any]]
) -> None:
    """A simulation that ran agreed (one that disagreed refuses the signing), so only
    ``"unavailable"`` is stored: a presigned INSTANT send on LiteSVM writes no
    ``simulation`` key; the same send through an adapter that cannot simulate says so."""
    from waiaas import Transfer
    from waiaas.chains.solana import SolanaAdapter

    adapter: Any = SolanaAdapter.local()
    if not simulates:
        adapter = _NoSimulation(adapter)
    with Wallet.open(
        tmp_path / "wallet.db",
        password=TEST_PASSWORD,
        chains=[adapter],
        config=fast_config(),
        clock=FrozenClock(),
    ) as wallet:
        agent = wallet.create_agent("sim", chain="solana", network=adapter.network)
        adapter.fund(agent.public_key, 10**9)
        token = wallet.issue_session(agent.id).token
        to = SolanaAdapter.local().generate_secret()[1]
        result = wallet.send(token, Transfer(to=to, amount=1_000_000))
        assert wallet.get_transaction(result.id).status == "CONFIRMED"
    signed = [doc for doc in written if "signed" in doc]
    assert signed
    assert [doc.get("simulation") for doc in signed] == [
        None if simulates else "unavailable"
    ] * len(signed)


# --------------------------------------------------------------------------- the columns' part


_TO = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
_TOKEN = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def _row(kind: str, to: str | None, amount: str | None) -> Any:
    return types.SimpleNamespace(type=kind, to_address=to, amount=amount)


@pytest.mark.parametrize(
    ("request_", "row", "asset", "kept"),
    [
        (Transfer(to=_TO, amount=5), _row("TRANSFER", _TO, "5"), "native", {}),
        (
            Transfer(to=_TO, amount=5, memo="hi"),
            _row("TRANSFER", _TO, "5"),
            "native",
            {"memo": "hi"},
        ),
        (
            TokenTransfer(token=_TOKEN, to=_TO, amount=7, decimals=6),
            _row("TOKEN_TRANSFER", _TO, "7"),
            _TOKEN,
            {"decimals": 6},
        ),
        (
            ContractCall(to=_TO, data=b"\x01\x02", value=3),
            _row("CONTRACT_CALL", _TO, "3"),
            "native",
            {"data": "0x0102", "accounts": []},
        ),
        (Approve(token=_TOKEN, spender=_TO, amount=9), _row("APPROVE", _TO, "9"), _TOKEN, {}),
    ],
)
def test_a_request_keeps_what_the_columns_do_not_hold(
    request_: Any, row: Any, asset: str, kept: dict[str, Any]
) -> None:
    """The row stores the request's fields no column holds, without its type; read back
    with the columns it is the request whole, in the order it was written in."""
    full = stored_request(request_)
    assert compact_request(full, row, asset) == kept
    meta = TxMeta(request=kept) if kept else TxMeta()
    if asset != "native":
        meta["asset"] = asset
    back = request_of(meta, row)
    assert back is not None and list(back.items()) == list(full.items())
    assert parse_request(back) == request_
    assert asset_of(meta) == asset


def test_a_request_the_columns_cannot_give_back_is_stored_whole() -> None:
    """A batch, or a row whose columns say something else than the request (never written
    by the pipeline; the check is what decides), keeps the request whole, which reads as
    stored."""
    batch = stored_request(Batch(requests=[Transfer(to=_TO, amount=1), Transfer(to=_TO, amount=2)]))
    row = _row("BATCH", None, "3")
    assert compact_request(batch, row, "native") == batch
    assert request_of(TxMeta(request=batch), row) == batch
    plain = stored_request(Transfer(to=_TO, amount=5))
    assert compact_request(plain, _row("TRANSFER", _TO, "6"), "native") == plain
    assert request_of(TxMeta(request=plain), _row("TRANSFER", _TO, "6")) == plain
    # a stored field wins over a column: what is read is what the MAC covers
    assert request_of(TxMeta(request={"amount": "9"}), _row("TRANSFER", _TO, "5")) == {
        "type": "TRANSFER",
        "to": _TO,
        "amount": "9",
    }
    assert request_of(TxMeta(), _row("BATCH", None, None)) is None


def test_a_native_transfer_effect_keeps_what_the_columns_do_not_hold() -> None:
    """A ``native_transfer`` to the row's recipient, of its amount, is stored without its
    destination and amount; any other effect (a fee, a transfer elsewhere) whole; read back
    with the columns the effects are those decoded, in the order they were written in."""
    source = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"
    effects = [
        {"effect": "native_transfer", "source": source, "destination": _TO, "amount": "5"},
        {"effect": "native_transfer", "source": source, "destination": _TOKEN, "amount": "5"},
        {"effect": "fee", "payer": source, "amount": "5"},
    ]
    row = _row("TRANSFER", _TO, "5")
    stored = compact_effects(effects, row)
    assert stored[0] == {"effect": "native_transfer", "source": source}
    assert stored[1] == {"effect": "native_transfer", "source": source, "destination": _TOKEN}
    assert stored[2] == effects[2]
    back = effects_of(TxMeta(effects=stored), row)
    assert back is not None and [list(e.items()) for e in back] == [
        list(e.items()) for e in effects
    ]
    assert effects_of(TxMeta(effects=effects), row) == effects  # the earlier form: as stored
    assert effects_of(TxMeta(), row) is None
    # a row with no such columns (a batch) keeps them all
    assert compact_effects(effects, _row("BATCH", None, None)) == effects
