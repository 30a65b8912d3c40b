"""Function length: no function or method in ``src/waiaas`` is longer than a limit.

A function's length is the number of source lines from its ``def`` line (decorators not
counted) to its last line, inclusive: the signature, the docstring, comments and blank lines
inside it all count. A nested function counts on its own and inside the function around it.
This check reads the source with :mod:`ast` (nothing is imported, so it needs only the
standard library), prints the longest functions and fails if any is over the limit.

Run by ``nox -s lint`` and by ``tests/unit/test_function_length.py``::

    python tools/check_function_length.py            # limit 60 lines, the 15 longest
    python tools/check_function_length.py --max 80 --top 30
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "waiaas"
DEFAULT_MAX = 60
DEFAULT_TOP = 15


class Function(NamedTuple):
    """One function: where it is, its qualified name and its length in lines."""

    path: Path
    line: int
    name: str
    length: int


def _functions(tree: ast.AST, path: Path, prefix: str = "") -> Iterator[Function]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            end = node.end_lineno if node.end_lineno is not None else node.lineno
            yield Function(path, node.lineno, name, end - node.lineno + 1)
            yield from _functions(node, path, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, path, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, path, prefix)


def functions(package: Path = PACKAGE) -> list[Function]:
    """Every function and method under ``package``, longest first (then by place)."""
    found: list[Function] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        found.extend(_functions(tree, path))
    return sorted(found, key=lambda f: (-f.length, str(f.path), f.line))


def _where(function: Function, root: Path) -> str:
    try:
        shown = function.path.relative_to(root)
    except ValueError:
        shown = function.path
    return f"{shown}:{function.line}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=DEFAULT_MAX, help="longest allowed, in lines")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="how many to print")
    parser.add_argument("--root", type=Path, default=PACKAGE, help="the package to check")
    args = parser.parse_args(argv)
    found = functions(args.root)
    root = args.root.resolve().parent.parent
    for function in found[: args.top]:
        mark = "  TOO LONG" if function.length > args.max else ""
        print(f"{function.length:5d}  {_where(function, root)}  {function.name}{mark}")
    over = [f for f in found if f.length > args.max]
    if over:
        print(f"{len(over)} function(s) longer than {args.max} lines (def to last line)")
        return 1
    print(f"function length ok: none of {len(found)} longer than {args.max} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
