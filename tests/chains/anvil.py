"""Start and stop a real anvil node for tests and benchmarks.

The binary is found, in order, from ``$ANVIL_BIN``, from
``<repo>/.tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`` (installed by
``npm install --prefix .tools @foundry-rs/anvil``) and from ``anvil`` on ``PATH``.
When it is missing, :func:`require_anvil` skips the test locally and fails it when ``$CI``
is set, because CI must exercise the real node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NPM_BIN = REPO / ".tools" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def find_anvil() -> str | None:
    """The anvil binary to run, or ``None`` when none is installed."""
    explicit = os.environ.get("ANVIL_BIN")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    if NPM_BIN.is_file():
        return str(NPM_BIN)
    return shutil.which("anvil")


def require_anvil() -> str:
    """The anvil binary; skip the test when missing (fail under ``$CI``)."""
    binary = find_anvil()
    if binary is None:
        message = (
            "anvil not found: set ANVIL_BIN or run "
            "`npm install --prefix .tools @foundry-rs/anvil` in the repository"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rpc_request(url: str, method: str, params: list[Any]) -> Any:
    """One JSON-RPC call with the standard library (no web3); returns ``result``."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise RuntimeError(f"{method} failed: {answer['error']}")
    return answer["result"]


@dataclass
class AnvilNode:
    """A running anvil process: its URL and chain id."""

    url: str
    chain_id: int
    process: subprocess.Popen[bytes]

    def snapshot(self) -> str:
        """Take an ``evm_snapshot``; pass the id to :meth:`revert`."""
        snap: str = rpc_request(self.url, "evm_snapshot", [])
        return snap

    def revert(self, snapshot_id: str) -> None:
        """Return the chain to ``snapshot_id`` (which is consumed by anvil)."""
        if rpc_request(self.url, "evm_revert", [snapshot_id]) is not True:
            raise RuntimeError(f"evm_revert({snapshot_id}) refused")


@contextlib.contextmanager
def anvil_node(chain_id: int = 31337, *, binary: str | None = None) -> Iterator[AnvilNode]:
    """Run anvil on 127.0.0.1 with a free port and ``chain_id``; kill it on exit."""
    exe = binary or require_anvil()
    for _attempt in range(3):
        port = _free_port()
        process = subprocess.Popen(
            [
                exe,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--chain-id",
                str(chain_id),
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                rpc_request(url, "eth_chainId", [])
                ready = True
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.02)
        if ready:
            break
        _stop(process)  # the port was taken in between, or anvil died: try another port
    else:
        raise RuntimeError("anvil did not start")
    try:
        yield AnvilNode(url=url, chain_id=chain_id, process=process)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stderr is not None:
        process.stderr.close()
