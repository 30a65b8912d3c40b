"""Collect the ``>>>`` examples in the library's docstrings (``src/waiaas``) as doctests.

Only there: the tests' own modules (several ``conftest.py`` without packages among them) are
not imported a second time as doctest modules, and alembic's scripts (not importable outside
a migration) are left out. ``pytest`` with no arguments runs them (``testpaths``), as does
``pytest src/waiaas``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule

# --backend=sqlite|postgresql, the PostgreSQL server, the sqlite_only marker
pytest_plugins = ["tests.support.backend"]

LIBRARY = Path(__file__).resolve().parent / "src" / "waiaas"
NOT_IMPORTABLE = LIBRARY / "db" / "migrations"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> DoctestModule | None:
    if (
        file_path.suffix == ".py"
        and LIBRARY in file_path.parents
        and NOT_IMPORTABLE not in file_path.parents
    ):
        return DoctestModule.from_parent(parent, path=file_path)
    return None
