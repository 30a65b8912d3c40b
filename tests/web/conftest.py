"""The approval page served for real: a wallet on the in-process chains (eth-tester, LiteSVM)
on a frozen clock, the app mounted under ``/approvals`` in a uvicorn server on a free local
port, and (for the browser tests) headless Chromium driven by selenium."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TIER_AMOUNTS, Owner, new_agent, recipient
from waiaas import Transfer, Wallet
from waiaas.testing import FrozenClock, fast_config, local_wallet

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = os.environ.get("WAIAAS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WAIAAS_CHROMEDRIVER", "/usr/bin/chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A wallet and the URL its approval page is served at."""

    wallet: Wallet
    base_url: str
    clock: FrozenClock

    def queue(self, chain: str, owner: Owner, *, name: str = "trader") -> tuple[str, str]:
        """Queue an APPROVAL transfer by a fresh agent owned by ``owner``: (tx id, to)."""
        agent = new_agent(self.wallet, chain, owner=owner, name=name)
        token = self.wallet.issue_session(agent.id).token
        dest = recipient(chain)
        result = self.wallet.send(token, Transfer(to=dest, amount=TIER_AMOUNTS[chain]["APPROVAL"]))
        assert (result.status, result.tier) == ("QUEUED", "APPROVAL")
        return result.id, dest

    def link(self, tx_id: str) -> str:
        link = self.wallet.approval_link(tx_id)
        assert link is not None
        return link


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The approval app of a fresh wallet, mounted at /approvals on a real uvicorn server."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from waiaas.web import approvals_app

    port = free_port()
    base = f"http://127.0.0.1:{port}/approvals"
    clock = FrozenClock()
    with local_wallet(tmp_path, config=fast_config(approvals_url=base), clock=clock) as wallet:
        app = Starlette(routes=[Mount("/approvals", app=approvals_app(wallet))])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="approvals-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        try:
            yield Served(wallet=wallet, base_url=base, clock=clock)
        finally:
            server.should_exit = True
            thread.join(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's package) through its chromedriver; nothing is downloaded."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(
            f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1000,1400",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
