"""Every Python block of the README and of docs/ runs as documented.

The executable blocks of one page run in order, as one script, in a fresh Python process
whose working directory is an empty temporary directory (so a page cannot write into the
checkout), with warnings as errors and no master password in the environment. A block whose
first line is ``# fragment`` (it needs a real network, a funded wallet or names from
elsewhere) is only compiled. Each page must leave its working directory empty: examples
write into temporary directories.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\n`]*)$")

RUNNER = """
import json, sys
with open(sys.argv[1], encoding="utf-8") as spec:
    blocks = json.load(spec)
namespace = {"__name__": "__main__"}
for block in blocks:
    print(f"--- block at {block['where']}", flush=True)
    exec(compile(block["source"], block["where"], "exec"), namespace)
"""


@dataclass(frozen=True)
class Block:
    """One fenced Python block: where it is, its source, whether it is a fragment."""

    page: Path
    line: int
    source: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def fragment(self) -> bool:
        first = next((ln.strip() for ln in self.source.splitlines() if ln.strip()), "")
        return first.lower().startswith("# fragment")


def python_blocks(page: Path) -> list[Block]:
    """The ```python blocks of a Markdown page (indented ones too, dedented)."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], m["indent"]
        lang = (m["info"].split() or [""])[0].lower().lstrip(".{")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        if lang in ("python", "py"):
            blocks.append(Block(page, i + 2, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _pages_with_code() -> list[Path]:
    return [p for p in PAGES if python_blocks(p)]


def test_the_collector_finds_the_pages() -> None:
    """The README and the guides have Python blocks, so this test file checks something."""
    names = {p.relative_to(ROOT).as_posix() for p in _pages_with_code()}
    assert {"README.md", "docs/getting-started.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_block_compiles(page: Path) -> None:
    """Fragments too: every Python block is valid Python (fragments may ``await`` at the top
    level, as in a notebook or an async function's body)."""
    for block in python_blocks(page):
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if block.fragment else 0
        compile(block.source, block.where, "exec", flags=flags)


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_runs(page: Path, tmp_path: Path) -> None:
    """The page's executable blocks run in order, exit 0, print nothing to stderr and leave
    the working directory empty."""
    blocks = [b for b in python_blocks(page) if not b.fragment]
    if not blocks:
        pytest.skip("only fragments (compiled above)")
    result = run_blocks(blocks, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stderr == "", result.stderr[-5000:]
    assert sorted(p.name for p in (tmp_path / "cwd").iterdir()) == []


def run_blocks(blocks: list[Block], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``blocks`` as one script in a fresh interpreter in ``tmp_path / "cwd"``."""
    spec = tmp_path / "blocks.json"
    spec.write_text(
        json.dumps([{"where": b.where, "source": b.source} for b in blocks]), encoding="utf-8"
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(os.environ)
    env.pop("WAIAAS_MASTER_PASSWORD", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER, str(spec)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_readme_example_reaches_confirmed(tmp_path: Path) -> None:
    """The README's example, as written, confirms its INSTANT transfer on the local chain
    (the agent is funded) and shows the agent's view of the oversized one's denial."""
    (block,) = python_blocks(ROOT / "README.md")
    assert not block.fragment
    result = run_blocks([block], tmp_path)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "CONFIRMED INSTANT " in result.stdout
    assert "denied by policy: over a spending limit: at most 2 SOL can be sent now" in result.stdout
    assert "FAILED" not in result.stdout


def test_fragments_say_so() -> None:
    """A fragment is marked on its first line, so a reader knows it does not run alone."""
    for page in PAGES:
        for block in python_blocks(page):
            if "# fragment" in block.source.lower():
                assert block.fragment, f"{block.where}: '# fragment' must be the first line"
