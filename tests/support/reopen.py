"""Reopening a wallet file on the in-process chains it was first opened with.

The local chains (LiteSVM, eth-tester) live in this process, so a test that closes a wallet,
edits its file and opens it again must hand the reopened wallet the same chain objects for a
transfer admitted before the reopen to still land. :func:`open_on_same_chains` keeps them by
path; the :func:`forget_reopened_chains` fixture (autouse where it is imported) drops them
after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from waiaas.notify.testing import RecordingNotifier
from waiaas.testing import TEST_PASSWORD, FrozenClock, fast_config, local_chains
from waiaas.wallet import Wallet

__all__ = ["forget_reopened_chains", "open_on_same_chains"]

_CHAINS: dict[Path, list[Any]] = {}


def open_on_same_chains(path: Path, clock: FrozenClock) -> Wallet:
    """Open ``path`` (test password, fast config, a recording notifier) on the in-process
    chains it was first opened with."""
    chains = _CHAINS.get(path)
    if chains is None:
        chains = _CHAINS[path] = local_chains()
    return Wallet.open(
        path,
        password=TEST_PASSWORD,
        chains=chains,
        config=fast_config(),
        clock=clock,
        notifier=RecordingNotifier(),
    )


@pytest.fixture(autouse=True)
def forget_reopened_chains() -> Iterator[None]:
    """Drop the chains kept by :func:`open_on_same_chains` after each test."""
    yield
    _CHAINS.clear()
