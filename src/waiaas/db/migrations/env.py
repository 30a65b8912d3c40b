"""Alembic environment for waiaas: always runs on a connection the library hands over.

waiaas applies migrations itself (``waiaas.db.migrate.upgrade``) inside one transaction it
controls, so this file only configures the context and runs the scripts.
"""

from __future__ import annotations

from alembic import context

from waiaas.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("waiaas migrations run through waiaas.db.migrate.upgrade(), not the CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things: rebuild tables (CORE-02 §4.6)
    compare_type=True,
    compare_server_default=True,
)
context.run_migrations()
