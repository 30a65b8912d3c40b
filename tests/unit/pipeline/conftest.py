"""Fixtures of the pipeline's stage tests: a fresh :class:`FakeChain`, a frozen clock, and a
wallet on a SQLite file in ``tmp_path`` with one owned, funded agent (:class:`Stage`).

Creating a wallet's schema (the migrations) costs more than a whole stage test, so on
SQLite it is done once per session: every test starts from a copy of an empty wallet's files
(its own database and keystore in ``tmp_path``, opened by the real ``Wallet.open``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakechain import FakeChain
from pipeline_helpers import START, Stage, Stopper, open_wallet, setup_stage

from waiaas.testing import FrozenClock


@pytest.fixture(scope="session")
def empty_wallet(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Path | None:
    """The files of a new, empty wallet (``None`` off SQLite: each test creates its own)."""
    if request.config.getoption("--backend", default="sqlite") != "sqlite":
        return None
    directory = tmp_path_factory.mktemp("empty-wallet")
    open_wallet(directory, FakeChain(), FrozenClock(START)).close()
    return directory


@pytest.fixture
def wallet_dir(tmp_path: Path, empty_wallet: Path | None) -> Path:
    """``tmp_path`` holding a copy of the empty wallet (when there is one)."""
    if empty_wallet is not None:
        shutil.copytree(empty_wallet, tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.fixture
def stage(wallet_dir: Path) -> Iterator[Stage]:
    """A wallet on a fresh fake chain with one owned agent, its tier policy and a session."""
    chain, clock, stopper = FakeChain(), FrozenClock(START), Stopper()
    with open_wallet(wallet_dir, chain, clock, stopper) as wallet:
        yield setup_stage(wallet, chain, clock, stopper)
