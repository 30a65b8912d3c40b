"""No function in ``src/waiaas`` is longer than 60 lines: tools/check_function_length.py."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_function_length", ROOT / "tools" / "check_function_length.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package(tmp_path: Path) -> Path:
    """A package whose functions are 3, 62, 61 (with 2 nested) and 2 lines long, docstrings
    (one line each in ``short`` and ``long``) included."""
    pkg = tmp_path / "src" / "pkg"
    (pkg / "sub").mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (pkg / "a.py").write_text(
        textwrap.dedent(
            '''\
            import functools


            @functools.cache
            def short() -> int:
                """A docstring."""
                return 1
            '''
        )
        + f"\n\ndef long() -> None:\n    '''Counted.'''\n{body}\n"
    )
    nested = "\n".join(f"        y{i} = {i}" for i in range(58))
    (pkg / "sub" / "b.py").write_text(
        "class C:\n"
        "    async def method(self) -> None:\n"
        "        def inner() -> None:\n"
        "            pass\n"
        f"{nested}\n"
        "\n"
        "    def other(self) -> None:\n"
        "        pass\n"
    )
    return pkg


def test_lengths_count_def_to_last_line_less_the_docstring(tmp_path: Path) -> None:
    """The ``def`` line to the last line, decorators and the docstring not counted (with
    ``docstrings=True`` it is); methods and nested functions by their qualified names;
    longest first (then by file and line)."""
    checker = _checker()
    found = checker.functions(_package(tmp_path))
    assert [(f.name, f.length, f.line) for f in found] == [
        ("long", 61, 10),
        ("C.method", 61, 2),
        ("short", 2, 5),
        ("C.method.inner", 2, 3),
        ("C.other", 2, 64),
    ]
    found = checker.functions(_package(tmp_path), docstrings=True)
    assert [(f.name, f.length, f.line) for f in found] == [
        ("long", 62, 10),
        ("C.method", 61, 2),
        ("short", 3, 5),
        ("C.method.inner", 2, 3),
        ("C.other", 2, 64),
    ]


def test_the_limit_fails_only_when_exceeded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checker = _checker()
    pkg = _package(tmp_path)
    assert checker.main(["--root", str(pkg), "--max", "60", "--top", "2"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "   61  src/pkg/a.py:10  long  TOO LONG",
        "   61  src/pkg/sub/b.py:2  C.method  TOO LONG",
        "2 function(s) longer than 60 lines (docstrings not counted)",
    ]
    assert checker.main(["--root", str(pkg), "--max", "61", "--top", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "   61  src/pkg/a.py:10  long",
        "function length ok: none of 5 longer than 61 lines (docstrings not counted)",
    ]
    assert checker.main(["--root", str(pkg), "--max", "61", "--count-docstrings"]) == 1
    out = capsys.readouterr().out
    assert "   62  src/pkg/a.py:10  long  TOO LONG" in out
    assert "   61  src/pkg/sub/b.py:2  C.method\n" in out
    assert out.endswith("1 function(s) longer than 61 lines (docstrings counted)\n")


def test_the_shipped_tree_has_no_function_over_60_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """The same check ``nox -s lint`` runs: no function of src/waiaas is longer than 60
    lines (docstrings not counted)."""
    assert _checker().main(["--max", "60", "--top", "3"]) == 0, capsys.readouterr().out
