"""The audit chain's head record file: each slot is trusted only with a good MAC.

``Integrity.record_head`` remembers the bytes of the slots it found good or wrote, so that
the next commit does not compute their MACs again; these tests edit the file between
records and check that only bytes it actually checked (or wrote) are trusted.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from waiaas.integrity import Integrity

_SLOT = 128
_FMT = ">QQ32s32s"  # counter, row id, row hash, MAC


def _digest(n: int) -> str:
    return (bytes([n]) * 32).hex()


def _integrity(path: Path, key: bytes) -> Integrity:
    return Integrity(
        mac_key=key,
        signing_seed=os.urandom(32),
        wallet_id="test-wallet",
        anchor=(0, "0" * 64),
        head_path=path,
        checkpoint_rows=10**9,
    )


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def integ(tmp_path: Path, key: bytes) -> Integrity:
    return _integrity(tmp_path / "audit.head", key)


def _slots(path: Path) -> list[tuple[int, int, bytes, bytes]]:
    data = path.read_bytes()
    size = struct.calcsize(_FMT)
    return [struct.unpack(_FMT, data[i * _SLOT : i * _SLOT + size]) for i in (0, 1)]


def _write_slot(path: Path, slot: int, counter: int, rid: int, digest: bytes, mac: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(slot * _SLOT)
        f.write(struct.pack(_FMT, counter, rid, digest, mac))


def test_heads_recorded_in_turn_are_read_back(integ: Integrity) -> None:
    for rid in range(1, 6):
        integ.record_head(rid, _digest(rid))
        assert integ.read_head() == (rid, _digest(rid))
    integ.record_head(3, _digest(3))  # older than the one recorded: kept as is
    assert integ.read_head() == (5, _digest(5))


def test_a_forged_newer_slot_is_not_trusted(integ: Integrity) -> None:
    """A slot edited to claim a newer head (bad MAC) neither stops the next record nor is
    read back; the slot the process wrote before and then saw replaced is checked again."""
    assert integ.head_path is not None
    integ.record_head(1, _digest(1))
    integ.record_head(2, _digest(2))  # both slots now hold bytes this process wrote
    slots = _slots(integ.head_path)
    newest = max(range(2), key=lambda i: slots[i][0])
    counter, _rid, _digest_bytes, mac = slots[newest]
    # the newest slot, rewritten with a far newer row id under its old MAC
    _write_slot(integ.head_path, newest, counter, 999, bytes(32), mac)
    integ.record_head(3, _digest(3))
    assert integ.read_head() == (3, _digest(3))


def test_a_slot_replaced_with_another_good_one_is_read_as_it_is(
    integ: Integrity, key: bytes
) -> None:
    """Good bytes another writer put in a slot (another process of the wallet) are read
    as they are, not as the bytes this process wrote there."""
    assert integ.head_path is not None
    other = _integrity(integ.head_path, key)
    integ.record_head(1, _digest(1))
    integ.record_head(2, _digest(2))
    other.record_head(7, _digest(7))
    integ.record_head(5, _digest(5))  # older than the other writer's: not recorded
    assert integ.read_head() == (7, _digest(7))
    integ.record_head(8, _digest(8))
    assert other.read_head() == (8, _digest(8))
