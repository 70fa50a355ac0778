"""The contract suite runs every test once per backend: in memory, SQLite, PostgreSQL,
MariaDB. A backend's URL fixture starts (or reaches) its server and applies migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete

from app.users.repository import InMemoryUserRepository, SqlUserRepository, UserRepository
from app.users.tables import users
from building_blocks import DatabaseConfig, SQLAlchemySession
from building_blocks.uow import (
    InMemoryUnitOfWorkFactory,
    SQLAlchemyUnitOfWorkFactory,
    UnitOfWorkFactory,
)

BACKENDS = ["memory", "sqlite", "postgresql", "mariadb"]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """The migrated database URL of this run's backend (``None``: in memory)."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def uow(backend_url: str | None) -> AsyncIterator[UnitOfWorkFactory[UserRepository]]:
    """A unit-of-work factory on an empty ``users`` table."""
    if backend_url is None:
        yield InMemoryUnitOfWorkFactory(InMemoryUserRepository)
        return
    session = SQLAlchemySession(DatabaseConfig(backend_url))
    await session.start()
    async with session.begin() as conn:
        await conn.execute(delete(users))
        await conn.commit()
    try:
        yield SQLAlchemyUnitOfWorkFactory(session, SqlUserRepository)
    finally:
        await session.close()
