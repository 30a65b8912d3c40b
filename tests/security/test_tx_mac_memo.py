"""A transaction MAC that ``tx_mac`` made in this process is verified without computing it
again (``Integrity._tx_sealed``), but only for exactly the values it covers.

The attempts to get around it: every covered column edited after sealing, a value of the
same text but another type (``1`` for ``"1"``), the MAC of one row put on another, the
metadata edited, a status moved without a new MAC, and another wallet's keys.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

import pytest

from waiaas import integrity
from waiaas.integrity import Integrity


def _integrity() -> Integrity:
    return Integrity(
        mac_key=os.urandom(32),
        signing_seed=os.urandom(32),
        wallet_id="test-wallet",
        anchor=(0, "0" * 64),
        head_path=None,
        checkpoint_rows=10**9,
    )


def _row(**changes: Any) -> SimpleNamespace:
    meta = {"network": "devnet", "request": {"type": "TRANSFER"}, "plan_digest": "ab" * 32}
    values: dict[str, Any] = {
        "id": "tx-1",
        "agent_id": "agent-1",
        "chain": "solana",
        "type": "TRANSFER",
        "amount": "1000",
        "to_address": "Recipient1111111111111111111111111111111111",
        "tier": "INSTANT",
        "status": "SUBMITTED",
        "metadata_json": json.dumps(meta, separators=(",", ":")),
    }
    values.update(changes)
    return SimpleNamespace(**values)


def _sealed(integ: Integrity, **changes: Any) -> SimpleNamespace:
    row = _row(**changes)
    row.integrity = integrity.tx_mac(integ, row)
    return row


@pytest.mark.parametrize("status", ["SUBMITTED", "CONFIRMED"])
def test_the_sealed_row_verifies_remembered_and_afresh(status: str) -> None:
    integ = _integrity()
    row = _sealed(integ, status=status)
    assert row.integrity in integ._tx_sealed
    assert integrity.tx_ok(integ, row)
    integ._tx_sealed.clear()  # as another process (or after a restart) verifies it
    assert integrity.tx_ok(integ, row)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("id", "tx-2"),
        ("agent_id", "agent-2"),
        ("chain", "evm"),
        ("type", "TOKEN_TRANSFER"),
        ("amount", "1001"),
        ("amount", 1000),  # the same text, another type
        ("to_address", "Attacker111111111111111111111111111111111111"),
        ("tier", "NOTIFY"),
        ("status", "FAILED"),
        ("metadata_json", '{"network":"mainnet"}'),
    ],
)
def test_an_edited_column_is_refused(column: str, value: Any) -> None:
    """(A final row's MAC covers its status; a waiting row's does not, remembered or not.)"""
    integ = _integrity()
    row = _sealed(integ, status="CONFIRMED")
    setattr(row, column, value)
    assert not integrity.tx_ok(integ, row)
    integ._tx_sealed.clear()
    assert not integrity.tx_ok(integ, row)


def test_a_waiting_rows_mac_does_not_cover_its_status() -> None:
    integ = _integrity()
    row = _sealed(integ)
    row.status = "EXECUTING"
    assert integrity.tx_ok(integ, row)  # the stored MAC decides, as without the memo
    integ._tx_sealed.clear()
    assert integrity.tx_ok(integ, row)


def test_one_rows_mac_on_another_is_refused() -> None:
    integ = _integrity()
    first = _sealed(integ)
    second = _sealed(integ, id="tx-2", amount="5")
    second.integrity = first.integrity
    assert not integrity.tx_ok(integ, second)


def test_another_wallets_keys_do_not_share_what_was_remembered() -> None:
    mine, theirs = _integrity(), _integrity()
    row = _sealed(mine)
    assert integrity.tx_ok(mine, row)
    assert not integrity.tx_ok(theirs, row)


def test_remembered_macs_are_bounded() -> None:
    integ = _integrity()
    for i in range(3000):
        _sealed(integ, id=f"tx-{i}")
    assert len(integ._tx_sealed) <= 1024
    assert integrity.tx_ok(integ, _sealed(integ, id="tx-0"))


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("amount", "1001"),
        ("amount", 1000),
        ("to_address", "Attacker111111111111111111111111111111111111"),
        ("status", "FAILED"),
        ("metadata_json", '{"network":"mainnet"}'),
    ],
)
def test_a_row_verified_afresh_is_remembered_for_its_values_only(column: str, value: Any) -> None:
    """A MAC verified in full (another process made it) is remembered like one made here:
    reading the same audit page again is a look-up, an edit after that is computed and refused."""
    integ = _integrity()
    row = _sealed(integ, status="CONFIRMED")
    integ._tx_sealed.clear()
    assert integrity.tx_ok(integ, row)  # in full
    assert row.integrity in integ._tx_sealed
    assert integrity.tx_ok(integ, row)  # remembered
    setattr(row, column, value)
    assert not integrity.tx_ok(integ, row)


def test_a_mac_that_does_not_verify_is_never_remembered() -> None:
    integ = _integrity()
    row = _sealed(integ, status="CONFIRMED")
    integ._tx_sealed.clear()
    row.amount = "999999"
    assert not integrity.tx_ok(integ, row)
    assert integ._tx_sealed == {}
    row.amount = "1000"  # put back: verifies in full again
    assert integrity.tx_ok(integ, row)
