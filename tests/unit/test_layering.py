"""The pure core (``waiaas.policy``, ``waiaas.plan``) imports no I/O: tools/check_layers.py."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_layers", ROOT / "tools" / "check_layers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_policy_and_plan_import_no_io() -> None:
    """The shipped tree passes (the same check ``nox -s lint`` runs)."""
    assert _checker().violations() == []


def test_the_check_finds_every_kind_of_forbidden_import(tmp_path: Path) -> None:
    """Top-level, nested, TYPE_CHECKING, relative and ``from waiaas import x`` imports of
    I/O modules or higher layers are all reported; pure imports are not."""
    pkg = tmp_path / "waiaas" / "policy"
    pkg.mkdir(parents=True)
    (tmp_path / "waiaas" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from waiaas.policy.bad import f\n")
    (pkg / "bad.py").write_text(
        textwrap.dedent(
            """\
            import json
            from typing import TYPE_CHECKING

            import sqlalchemy.orm
            from waiaas import _display, db
            from waiaas.types import Transfer
            from ..chains import evm
            from . import ok

            if TYPE_CHECKING:
                import httpx


            def f() -> None:
                import sqlite3
                from waiaas.keystore.store import Keystore
            """
        )
    )
    (pkg / "ok.py").write_text("import re\nfrom waiaas.errors import InvalidInputError\n")
    (tmp_path / "waiaas" / "plan").mkdir()
    found = _checker().violations(tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == [
        "waiaas.policy must not import sqlalchemy.orm (sqlalchemy)",
        "waiaas.policy must not import waiaas.db (waiaas.db)",
        "waiaas.policy must not import waiaas.chains (waiaas.chains)",
        "waiaas.policy must not import waiaas.chains.evm (waiaas.chains)",
        "waiaas.policy must not import httpx (httpx)",
        "waiaas.policy must not import sqlite3 (sqlite3)",
        "waiaas.policy must not import waiaas.keystore.store (waiaas.keystore)",
        "waiaas.policy must not import waiaas.keystore.store.Keystore (waiaas.keystore)",
    ]
    assert all("waiaas/policy/bad.py:" in line for line in found)
