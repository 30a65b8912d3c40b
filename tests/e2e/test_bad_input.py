"""Each small crash once found with bad input, now an InvalidInputError naming the field."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from waiaas import (
    DatabaseOpenError,
    InvalidInputError,
    TokenTransfer,
    Transfer,
    WaiaasError,
    Wallet,
)
from waiaas.testing import TEST_PASSWORD, fast_config
from waiaas.types import MAX_AMOUNT

TO = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    w = Wallet.open(tmp_path / "w.db", password=TEST_PASSWORD, config=fast_config())
    yield w
    w.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"since": 2**63}, "since"),
        ({"until": -1}, "until"),
        ({"severities": 1.5}, "severities"),
        ({"severities": [1.5]}, "severities"),
        ({"event_types": [{}]}, "event_types"),
        ({"agent_id": "\ud800"}, "agent_id"),
        ({"tx_id": "not-an-id"}, "tx_id"),
        ({"cursor": 2**64}, "cursor"),
    ],
)
def test_audit_refuses_out_of_range_filters(
    wallet: Wallet, kwargs: dict[str, object], field: str
) -> None:
    """audit() with values beyond the documented ranges: InvalidInputError(field)."""
    with pytest.raises(InvalidInputError) as caught:
        wallet.audit(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize("bad", ["\ud800", "x\udfff", "a" * 37, "", 7, None, "../etc"])
def test_ids_must_be_uuid_text(wallet: Wallet, bad: object) -> None:
    """An id that is not UUID text (a lone surrogate included) is refused as input, not
    looked up (no UnicodeEncodeError from the driver)."""
    for call in (wallet.get_agent, wallet.get_transaction, wallet.get_session, wallet.cancel):
        with pytest.raises(InvalidInputError):
            call(bad)  # type: ignore[arg-type]


def test_well_formed_unknown_id_is_not_found(wallet: Wallet) -> None:
    """A well-formed id that names nothing is NotFoundError (upper case accepted)."""
    from waiaas import NotFoundError

    with pytest.raises(NotFoundError):
        wallet.get_agent("0192F0C8-1234-7ABC-8DEF-0123456789AB")


AMOUNTS = [1.5, -1, True, "1e3", " ", "-5", 2**256, 10**4300, "9" * 5000, None]


@pytest.mark.parametrize("amount", AMOUNTS, ids=[f"amount{i}" for i in range(len(AMOUNTS))])
def test_request_models_raise_invalid_input(amount: object) -> None:
    """Transfer / TokenTransfer with a float, a negative, a bool, a huge or a malformed
    amount raise InvalidInputError naming ``amount`` (also a ValueError)."""
    with pytest.raises(InvalidInputError) as caught:
        Transfer(to=TO, amount=amount)  # type: ignore[arg-type]
    assert caught.value.field == "amount"
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InvalidInputError):
        TokenTransfer(token=TO, to=TO, amount=amount)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Transfer.model_validate({"to": TO, "amount": amount})


def test_the_documented_maximum_amount_round_trips() -> None:
    """2**256 - 1 is accepted and serialises exactly."""
    t = Transfer(to=TO, amount=MAX_AMOUNT)
    assert Transfer.model_validate_json(t.model_dump_json()).amount == MAX_AMOUNT


def test_pydantic_users_still_get_validation_errors() -> None:
    """Nested in a user's own pydantic model, a bad request is that model's ValidationError."""

    class Order(BaseModel):
        transfer: Transfer

    with pytest.raises(ValidationError):
        Order(transfer={"to": TO, "amount": 1.5})  # type: ignore[arg-type]
    assert Order(transfer={"to": TO, "amount": 5}).transfer.amount == 5  # type: ignore[arg-type]


def test_send_refuses_huge_amounts_before_anything_is_recorded(wallet: Wallet) -> None:
    """A mapping request with an amount beyond 2**256 - 1 (or 10**4300) is InvalidInputError
    from send(), not a ValueError or a serialisation error."""
    for amount in (2**256, 10**4300, "1" * 4400):
        with pytest.raises(WaiaasError):
            wallet.send("not-a-token", {"type": "TRANSFER", "to": TO, "amount": amount})
    assert wallet.list_transactions() == []


@pytest.mark.parametrize("name", ["a\x00b.db", "x" * 300 + ".db", "\udc00.db"])
def test_open_refuses_unusable_paths(tmp_path: Path, name: str) -> None:
    """NUL, a 300-character name, a lone surrogate: InvalidInputError(field='path')."""
    with pytest.raises(InvalidInputError) as caught:
        Wallet.open(f"{tmp_path}/{name}", password=TEST_PASSWORD, config=fast_config())
    assert caught.value.field == "path"


def test_open_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    """A FIFO is not a database: refused at once (reading it would block forever)."""
    fifo = tmp_path / "wallet.db"
    os.mkfifo(fifo)
    with pytest.raises(DatabaseOpenError, match="not a regular file"):
        Wallet.open(fifo, password=TEST_PASSWORD, config=fast_config())
