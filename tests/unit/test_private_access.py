"""Nothing in the package reaches into the wallet's private collaborators.

``Wallet`` holds its collaborators privately (``_db``, ``_pipeline``, ``_sessions``, ...);
the agent handle, the approval page, the CLI, the tools, the integrations, ``waiaas.testing``
and the demo go through its public methods or an internal port handed over at construction.
This test reads every module of ``src/waiaas`` with :mod:`ast` and fails on:

* ``<something>wallet._name`` (``wallet._db``, ``self.wallet._keystore``,
  ``self._wallet._sessions``): a private attribute of a wallet;
* ``<anything but self/cls>._name`` where ``_name`` is one of the attributes
  ``Wallet.__init__`` assigns (its collaborators), e.g. ``facade._pipeline``;
* ``getattr(x, "_name")`` with such a name (the same access, spelled to hide it);

outside ``wallet.py`` (the facade itself) and ``_factory.py`` (the composition root).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import waiaas

SRC = Path(waiaas.__file__).resolve().parent
ALLOWED = {SRC / "wallet.py", SRC / "_factory.py"}


def _wallet_attributes() -> frozenset[str]:
    """The private attributes ``Wallet.__init__`` assigns to ``self``."""
    tree = ast.parse((SRC / "wallet.py").read_text("utf-8"))
    found: set[str] = set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Wallet"):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            if fn.name != "__init__":
                continue
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                    and isinstance(node.ctx, ast.Store)
                    and node.attr.startswith("_")
                ):
                    found.add(node.attr)
    return frozenset(found)


def _tail(node: ast.expr) -> str | None:
    """The last name of ``a.b.c`` (``c``) or of ``c``; ``None`` for other expressions."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def violations(source: str, filename: str, collaborators: frozenset[str]) -> list[str]:
    """One ``file:line: expression`` per private access to a wallet in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = (_tail(node.value) or "").lower().lstrip("_")
            if owner.endswith("wallet") or (
                node.attr in collaborators and not _is_self(node.value)
            ):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and node.args[1].value in collaborators
        ):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_wallet_has_private_collaborators_to_protect() -> None:
    names = _wallet_attributes()
    assert {"_db", "_pipeline", "_sessions", "_keystore", "_agent_access"} <= names


def test_no_module_reaches_into_the_wallet() -> None:
    collaborators = _wallet_attributes()
    found: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        if path in ALLOWED:
            continue
        rel = str(path.relative_to(SRC.parent))
        found += violations(path.read_text("utf-8"), rel, collaborators)
    assert found == [], "private access to the wallet:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "wallet._db.read()",
        "self.wallet._keystore",
        "self._wallet._sessions.verify(t)",
        "w = facade._pipeline",
        "getattr(wallet, '_db')",
        "async_wallet._runner",
        "handle._wallet._clock.now()",
    ],
)
def test_the_scan_catches_every_spelling(code: str) -> None:
    assert violations(code, "x.py", _wallet_attributes()) != []


@pytest.mark.parametrize(
    "code",
    [
        "self._db.read()",
        "wallet.path",
        "wallet.agent(token)",
        "wallet.__class__",
        "self._wallet.send(token, request)",
        "integrity._raw(uow)",
    ],
)
def test_the_scan_lets_public_and_own_access_pass(code: str) -> None:
    assert violations(code, "x.py", _wallet_attributes()) == []
