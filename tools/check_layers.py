"""Import layering: the pure core imports no I/O.

``waiaas.policy`` (the evaluator, explain, replay) and ``waiaas.plan`` (plans, effects, the
owner's text) are functions of values: they take ``now`` as an argument and read no file,
database, network or key. This check reads their source with :mod:`ast` (nothing is
imported, so it needs only the standard library) and reports every import, at any depth
(inside functions and ``TYPE_CHECKING`` blocks too), of a module that does I/O or holds
keys, or of a waiaas layer above them.

Run by ``nox -s lint`` and by ``tests/unit/test_layering.py``::

    python tools/check_layers.py        # exit 1 and one line per violation
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: The pure packages and what they must not import (a name forbids its submodules too).
PURE = ("waiaas.policy", "waiaas.plan")
FORBIDDEN = (
    # storage, network, processes
    "sqlite3",
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "httpx",
    "requests",
    "urllib.request",
    "http.client",
    "socket",
    "subprocess",
    "asyncio",
    # chains and keys
    "solders",
    "web3",
    "eth_tester",
    "eth_account",
    "nacl",
    "coincurve",
    "keyring",
    # the web page and the frameworks
    "fastapi",
    "starlette",
    "uvicorn",
    # waiaas layers that do I/O or sit above the core
    "waiaas.db",
    "waiaas.chains",
    "waiaas.keystore",
    "waiaas.notify",
    "waiaas.pipeline",
    "waiaas.services",
    "waiaas.sessions",
    "waiaas.integrity",
    "waiaas.wallet",
    "waiaas.agent",
    "waiaas.aio",
    "waiaas.tools",
    "waiaas.cli",
    "waiaas.web",
    "waiaas.integrations",
    "waiaas.testing",
    "waiaas.demo",
)


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, src: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every module ``path`` imports (relative imports resolved;
    ``from a import b`` yields both ``a`` and ``a.b``, as ``b`` may be a module)."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    package = _module_name(path, src)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"


def _forbidden(module: str) -> str | None:
    for name in FORBIDDEN:
        if module == name or module.startswith(name + "."):
            return name
    return None


def violations(src: Path = SRC) -> list[str]:
    """One line per forbidden import in the pure packages under ``src``."""
    found: list[str] = []
    for package in PURE:
        directory = src.joinpath(*package.split("."))
        for path in sorted(directory.rglob("*.py")):
            for line, module in sorted(_imports(path, src), key=lambda item: item[0]):
                rule = _forbidden(module)
                if rule is not None:
                    where = path.relative_to(src.parent)
                    found.append(f"{where}:{line}: {package} must not import {module} ({rule})")
    return found


def main() -> int:
    found = violations()
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} layering violation(s): {', '.join(PURE)} import no I/O")
        return 1
    print(f"layering ok: {', '.join(PURE)} import no I/O")
    return 0


if __name__ == "__main__":
    sys.exit(main())
