"""The password prompt: only when a terminal is attached, hidden (not echoed), and never
needed when the environment has the password."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from waiaas.testing import TEST_PASSWORD, fast_config, local_chains, local_wallet

ROOT = Path(__file__).resolve().parents[2]


def _read_until(fd: int, needle: bytes, timeout: float = 60.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin, so the
    prompt (getpass reads /dev/tty) talks to the test and to nothing else."""
    import fcntl

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
def test_the_cli_prompts_on_a_terminal_without_echo(tmp_path: Path) -> None:
    with local_wallet(tmp_path, chains=local_chains(), config=fast_config()) as wallet:
        wallet.create_agent("prompted", "solana")
        db = str(wallet.path)
    env = {k: v for k, v in os.environ.items() if k != "WAIAAS_MASTER_PASSWORD"}
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "waiaas", "--db", db, "agents", "list", "--json"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            preexec_fn=_own_terminal,
        )
        os.close(slave)
        prompt = _read_until(master, b"Master password")
        assert b"Master password" in prompt, prompt
        # Type only once the prompt has turned echo off (it flushes what came before).
        deadline = time.monotonic() + 60
        while termios.tcgetattr(master)[3] & termios.ECHO:
            assert time.monotonic() < deadline, "echo never turned off"
            time.sleep(0.02)
        os.write(master, TEST_PASSWORD.encode() + b"\n")
        stdout, _ = proc.communicate(timeout=120)
        echoed = _read_until(master, b"\x00", timeout=1.0)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert [a["name"] for a in json.loads(stdout)] == ["prompted"]
    assert TEST_PASSWORD.encode() not in prompt + echoed


def test_without_a_terminal_there_is_no_prompt(tmp_path: Path) -> None:
    with local_wallet(tmp_path, chains=local_chains(), config=fast_config()) as wallet:
        db = str(wallet.path)
    env = {k: v for k, v in os.environ.items() if k != "WAIAAS_MASTER_PASSWORD"}
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    done = subprocess.run(
        [sys.executable, "-m", "waiaas", "--db", db, "agents", "list"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "WAIAAS_MASTER_PASSWORD" in done.stderr
