"""Storage (CORE-02): the SQLite engine with the spec's PRAGMAs or a PostgreSQL server
(psycopg 3), SQLModel tables, alembic migrations shipped in the package, repositories and
the unit of work.

Internal: the public API (``waiaas.Wallet``) never returns rows.
"""

from waiaas.db.database import CheckpointResult, Database
from waiaas.db.engine import POSTGRESQL, SQLITE, adapt_sql, parse_target
from waiaas.db.uow import UnitOfWork

__all__ = [
    "POSTGRESQL",
    "SQLITE",
    "CheckpointResult",
    "Database",
    "UnitOfWork",
    "adapt_sql",
    "parse_target",
]
