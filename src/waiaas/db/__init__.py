"""Storage (CORE-02): SQLite engine with the spec's PRAGMAs, SQLModel tables, alembic
migrations shipped in the package, repositories and the unit of work.

Internal: the public API (``waiaas.Wallet``) never returns rows.
"""

from waiaas.db.database import CheckpointResult, Database
from waiaas.db.uow import UnitOfWork

__all__ = ["CheckpointResult", "Database", "UnitOfWork"]
