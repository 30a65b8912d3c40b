"""A fresh PostgreSQL schema per test, on the server named by ``WAIAAS_TEST_POSTGRES_URL``.

Tests that need PostgreSQL take the :func:`pg_url` fixture (import it into the test module or
a conftest): it creates a schema with a unique name, yields a ``postgresql+psycopg://`` URL
whose ``options=-csearch_path%3D<schema>`` makes that schema the wallet's, and drops the
schema (and everything in it) afterwards. Without the variable, ``tests/support/postgres.py``
starts a private server (once per session) and sets it; without a server the test is skipped
(failed under ``WAIAAS_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import make_url

ENV = "WAIAAS_TEST_POSTGRES_URL"


def server_url() -> str | None:
    """The test server's URL (``postgresql+psycopg://...``), or ``None`` when unset."""
    url = os.environ.get(ENV, "").strip()
    if not url:
        return None
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def libpq(url: str) -> str:
    """``url`` as a libpq connection string (for ``psycopg.connect``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def schema_url(url: str, schema: str) -> str:
    """``url`` with the connection's ``search_path`` set to ``schema``."""
    parsed = make_url(url)
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    return parsed.set(query=query).render_as_string(hide_password=False)


def create_schema(url: str, prefix: str = "t") -> str:
    """Create a new, empty schema with a unique name; return its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


def drop_schema(url: str, name: str) -> None:
    """Drop a schema made by :func:`create_schema` and everything in it."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_server(postgres_url: str) -> str:
    """The test server's URL: ``WAIAAS_TEST_POSTGRES_URL``, or the private server
    ``tests/support/postgres.py`` starts once per session. Skips the test when no server
    can be had, unless ``WAIAAS_REQUIRE_POSTGRES=1`` (CI), which fails it."""
    url = server_url()  # set by the postgres_url fixture (tests/support/backend.py)
    assert url is not None
    return url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A ``postgresql+psycopg://`` URL whose schema is fresh and dropped after the test."""
    name = create_schema(pg_server)
    try:
        yield schema_url(pg_server, name)
    finally:
        drop_schema(pg_server, name)


__all__ = ["ENV", "create_schema", "drop_schema", "libpq", "pg_server", "pg_url"]
