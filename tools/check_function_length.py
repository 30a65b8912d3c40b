"""Function length: no function or method in ``src/waiaas`` is longer than a limit.

A function's length is the number of source lines from its ``def`` line (decorators not
counted) to its last line, inclusive, less its docstring: the signature, comments and blank
lines inside it count, the documentation of a public function does not
(``--count-docstrings`` counts it too). A nested function counts on its own and inside the
function around it. This check reads the source with :mod:`ast` (nothing is imported, so it
needs only the standard library), prints the longest functions and fails if any is over the
limit.

Run by ``nox -s lint`` and by ``tests/unit/test_function_length.py``::

    python tools/check_function_length.py            # limit 60 lines, the 15 longest
    python tools/check_function_length.py --max 80 --top 30 --count-docstrings
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


def _lines(node: ast.AST) -> int:
    start = getattr(node, "lineno", 0)
    end = getattr(node, "end_lineno", None)
    return (end if end is not None else start) - start + 1


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return _lines(first)
    return 0


def _functions(
    tree: ast.AST, path: Path, prefix: str = "", *, docstrings: bool = False
) -> Iterator[Function]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            length = _lines(node) - (0 if docstrings else _docstring_lines(node))
            yield Function(path, node.lineno, name, length)
            yield from _functions(node, path, f"{name}.", docstrings=docstrings)
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, path, f"{prefix}{node.name}.", docstrings=docstrings)
        else:
            yield from _functions(node, path, prefix, docstrings=docstrings)


def functions(package: Path = PACKAGE, *, docstrings: bool = False) -> list[Function]:
    """Every function and method under ``package``, longest first (then by place); with
    ``docstrings``, their docstrings count too."""
    found: list[Function] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        found.extend(_functions(tree, path, docstrings=docstrings))
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
    parser.add_argument(
        "--count-docstrings", action="store_true", help="count docstrings' lines too"
    )
    args = parser.parse_args(argv)
    found = functions(args.root, docstrings=args.count_docstrings)
    root = args.root.resolve().parent.parent
    for function in found[: args.top]:
        mark = "  TOO LONG" if function.length > args.max else ""
        print(f"{function.length:5d}  {_where(function, root)}  {function.name}{mark}")
    over = [f for f in found if f.length > args.max]
    what = "docstrings counted" if args.count_docstrings else "docstrings not counted"
    if over:
        print(f"{len(over)} function(s) longer than {args.max} lines ({what})")
        return 1
    print(f"function length ok: none of {len(found)} longer than {args.max} lines ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
