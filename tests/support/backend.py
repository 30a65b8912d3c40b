"""The pytest plugin choosing the storage backend of the suites (registered by the root
``conftest.py``).

* ``--backend=sqlite`` (the default): wallets on SQLite files, as always. Tests that need
  the PostgreSQL server (the ``postgres_url`` fixture) start the private one on first use.
* ``--backend=postgresql``: the server is started before collection (or
  ``$WAIAAS_TEST_POSTGRES_URL`` is used) and every wallet opened by a path goes to its own
  schema there (:mod:`tests.support.pg_redirect`, which child processes install too).
  Tests marked ``sqlite_only`` are skipped; tests marked ``postgresql_only`` run only here.
  With ``$WAIAAS_AFTER_SQLITE_PASS=1`` (nox's second pass) the tests that open the server
  by URL themselves are deselected: they ran, identically, in the SQLite pass.

When the server cannot be had, the tests that need it are skipped, unless
``$WAIAAS_REQUIRE_POSTGRES=1`` (CI), which fails the session instead; an explicit
``--backend=postgresql`` always fails it.
"""

from __future__ import annotations

import os

import pytest

from tests.support import pg_redirect, postgres

BACKENDS = ("sqlite", "postgresql")
#: Set by ``nox -s tests`` for its PostgreSQL pass, which follows the whole suite on SQLite:
#: the tests that open the PostgreSQL server by URL themselves ran there, identically, and
#: are deselected.
AFTER_SQLITE_PASS_ENV = "WAIAAS_AFTER_SQLITE_PASS"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default="sqlite",
        help="storage backend of the wallets the tests open by path (default: sqlite)",
    )


def backend(config: pytest.Config) -> str:
    """The ``--backend`` of this run."""
    return str(config.getoption("--backend", default="sqlite"))


def pytest_configure(config: pytest.Config) -> None:
    # the sqlite_only and postgresql_only markers are declared in pyproject.toml
    if backend(config) != "postgresql":
        return
    try:
        postgres.server_url()
    except postgres.PostgresUnavailable as exc:
        raise pytest.UsageError(f"--backend=postgresql: no PostgreSQL server: {exc}") from exc
    os.environ[pg_redirect.BACKEND_ENV] = "postgresql"
    pg_redirect.tag()  # exported before any child process starts
    pg_redirect.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    if backend(config) == "postgresql":
        os.environ.pop(pg_redirect.BACKEND_ENV, None)
        if postgres._private is None and os.environ.get(postgres.URL_ENV):
            # an operator's server: leave it as we found it
            try:
                pg_redirect.drop_session_schemas()
            except Exception as exc:
                print(f"warning: could not drop the test schemas: {exc}")
    postgres.stop_server()


# Fixtures through which a test opens the PostgreSQL server itself, whatever ``--backend``.
_EXPLICIT_PG = frozenset({"postgres_url", "pg_server", "pg_url"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_pg = backend(config) == "postgresql"
    skip_sqlite = pytest.mark.skip(reason="needs the SQLite file (--backend=postgresql)")
    skip_pg = pytest.mark.skip(reason="PostgreSQL only: run with --backend=postgresql")
    kept: list[pytest.Item] = []
    repeated: list[pytest.Item] = []
    for item in items:
        if on_pg and item.get_closest_marker("sqlite_only"):
            item.add_marker(skip_sqlite)
        elif not on_pg and item.get_closest_marker("postgresql_only"):
            item.add_marker(skip_pg)
        if (
            on_pg
            and os.environ.get(AFTER_SQLITE_PASS_ENV) == "1"
            and not item.get_closest_marker("postgresql_only")
            and _EXPLICIT_PG & set(getattr(item, "fixturenames", ()))
        ):
            # It opened PostgreSQL by URL in the SQLite pass already: the same test again.
            repeated.append(item)
        else:
            kept.append(item)
    if repeated:
        config.hook.pytest_deselected(items=repeated)
        items[:] = kept


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of the tests' PostgreSQL server (started once per session when needed).

    Skips the test when no server can be had, unless ``$WAIAAS_REQUIRE_POSTGRES=1``.
    """
    try:
        return postgres.server_url()
    except postgres.PostgresUnavailable as exc:
        if postgres.required():
            pytest.fail(f"{postgres.REQUIRE_ENV}=1 and no PostgreSQL server: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgresql"``: the backend of this run."""
    return backend(request.config)
