"""What holds around every test of the suite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from waiaas.chains.solana._fpu import leave_mmx_state


def _real_arithmetic_is_sound() -> bool:
    conn = sqlite3.connect(":memory:")
    try:
        return conn.execute("SELECT 1 + 0.5, printf('%.2f', 1.5)").fetchone() == (1.5, "1.50")
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _x87_mode_kept() -> Iterator[None]:
    """A test after which this thread's x87 FPU is left in MMX mode (native code without
    ``EMMS``; see ``waiaas.chains.solana._fpu``) fails by name, instead of silently turning
    SQLite's REAL arithmetic into NULL for every test after it."""
    yield
    if not _real_arithmetic_is_sound():
        leave_mmx_state()  # the tests after this one start sound
        pytest.fail(
            "the x87 FPU was left unusable on this thread: SQLite computes NULL for "
            "SELECT 1 + 0.5 (a native call without EMMS; see waiaas.chains.solana._fpu)"
        )
