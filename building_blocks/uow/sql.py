"""`SQLAlchemyUnitOfWork`: a unit of work over one `DatabaseSession` transaction."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

from building_blocks.db.connection import Connection
from building_blocks.db.consistency import ConsistencyToken
from building_blocks.db.session import DatabaseSession
from building_blocks.uow.protocol import AbstractUnitOfWork

__all__ = ["SQLAlchemyUnitOfWork", "SQLAlchemyUnitOfWorkFactory"]

R = TypeVar("R")


class SQLAlchemyUnitOfWork(AbstractUnitOfWork[R]):
    """Opens a transaction when entered; ``repositories`` builds what it exposes.

    The database is chosen when the unit begins (primary for writers; read-only units may
    be routed to a replica), never per statement.
    """

    def __init__(
        self,
        session: DatabaseSession,
        repositories: Callable[[Connection], R],
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__(read_only=read_only)
        self._session = session
        self._make_repositories = repositories
        self._context: AbstractAsyncContextManager[Connection] | None = None
        self._connection: Connection | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._connection

    @property
    def pool(self) -> str:
        return self.connection.pool

    @property
    def consistency_token(self) -> ConsistencyToken | None:
        """After `commit`, with replicas configured: the position a reader must reach to
        see this unit's writes (``None`` before commit, for readers, without replicas)."""
        return self._connection.consistency_token if self._connection is not None else None

    async def _begin(self) -> R:
        self._context = self._session.begin(read_only=self.read_only)
        self._connection = await self._context.__aenter__()
        return self._make_repositories(self._connection)

    async def _commit(self) -> None:
        await self.connection.commit()

    async def _rollback(self) -> None:
        await self.connection.rollback()

    async def _end(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            await context.__aexit__(None, None, None)


class SQLAlchemyUnitOfWorkFactory(Generic[R]):
    """``factory(read_only=...)`` → a new `SQLAlchemyUnitOfWork`; what services receive."""

    def __init__(self, session: DatabaseSession, repositories: Callable[[Connection], R]) -> None:
        self._session = session
        self._repositories = repositories

    def __call__(self, *, read_only: bool = False) -> SQLAlchemyUnitOfWork[R]:
        return SQLAlchemyUnitOfWork(self._session, self._repositories, read_only=read_only)
