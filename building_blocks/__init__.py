"""Building blocks for FastAPI services on a real database.

Async SQLAlchemy Core sessions for PostgreSQL, MySQL/MariaDB, SQLite and SQL Server, a
generic repository with an in-memory twin, a unit of work, one error tree. FastAPI glue
lives in `building_blocks.fastapi` (the only part that imports FastAPI).
"""

from building_blocks.config import DatabaseConfig, PoolConfig
from building_blocks.db import (
    Connection,
    DatabaseSession,
    PoolStatus,
    SQLAlchemySession,
    UTCDateTime,
)
from building_blocks.errors import (
    ConfigurationError,
    ConflictError,
    DataError,
    DuplicateKeyError,
    InvalidQueryError,
    InvalidValueError,
    NotFoundError,
    PoolTimeoutError,
    QueryTimeoutError,
    StaleVersionError,
    UnavailableError,
)
from building_blocks.repository import InMemoryRepository, Page, Repository, SQLAlchemyRepository
from building_blocks.uow import (
    InMemoryUnitOfWorkFactory,
    SQLAlchemyUnitOfWorkFactory,
    UnitOfWork,
    UnitOfWorkFactory,
)

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "DataError",
    "DatabaseConfig",
    "DatabaseSession",
    "DuplicateKeyError",
    "InMemoryRepository",
    "InMemoryUnitOfWorkFactory",
    "InvalidQueryError",
    "InvalidValueError",
    "NotFoundError",
    "Page",
    "PoolConfig",
    "PoolStatus",
    "PoolTimeoutError",
    "QueryTimeoutError",
    "Repository",
    "SQLAlchemyRepository",
    "SQLAlchemySession",
    "SQLAlchemyUnitOfWorkFactory",
    "StaleVersionError",
    "UTCDateTime",
    "UnavailableError",
    "UnitOfWork",
    "UnitOfWorkFactory",
]
