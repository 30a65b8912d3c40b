"""A user's script written from the documentation type-checks under ``mypy --strict``
without the pydantic plugin (the documented string amounts and lists are accepted), and
runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("user_script.py")


@pytest.mark.slow
def test_user_script_type_checks_strictly_without_plugins(tmp_path: Path) -> None:
    """mypy --strict, no plugins, no project config: what a user's CI would run."""
    pytest.importorskip("mypy")
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n", encoding="utf-8")
    copy = tmp_path / "user_script.py"
    shutil.copy(SCRIPT, copy)
    env = dict(os.environ, MYPYPATH=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
         "--cache-dir", str(tmp_path / ".mypy_cache"), "--no-incremental",
         # as for an installed package: waiaas's own modules are analysed for their types,
         # but only the user's script is reported on
         "--follow-imports=silent", str(copy)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in 1 source file" in result.stdout


@pytest.mark.slow
def test_user_script_runs(tmp_path: Path) -> None:
    """The same script runs: a new wallet with a strong password, a session whose
    constraints match the agent, a dry run, a replay and the budget usage."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("WAIAAS_MASTER_PASSWORD", None)
    result = subprocess.run(
        [sys.executable, "-W", "error", str(SCRIPT)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert list(tmp_path.iterdir()) == []  # everything went into temporary directories
