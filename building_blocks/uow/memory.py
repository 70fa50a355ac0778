"""`InMemoryUnitOfWork`: the in-memory twin, with real isolation and rollback.

Writers work on a copy of each table they touch and swap it in on commit, one writer at
a time (as SQLite does); readers see the tables as they were when they began, so an
uncommitted write is never visible and a rolled-back one leaves no trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from building_blocks.repository.memory import InMemoryTable
from building_blocks.uow.protocol import AbstractUnitOfWork

__all__ = [
    "InMemoryDatabase",
    "InMemoryTransaction",
    "InMemoryUnitOfWork",
    "InMemoryUnitOfWorkFactory",
]

R = TypeVar("R")


class InMemoryDatabase:
    """Named tables of entities, shared by every unit of work made from one factory."""

    def __init__(self) -> None:
        self.tables: dict[str, InMemoryTable] = {}
        self.write_lock = asyncio.Lock()


class InMemoryTransaction:
    """What in-memory repositories get instead of a `Connection`."""

    def __init__(self, database: InMemoryDatabase, *, read_only: bool) -> None:
        self._database = database
        self._read_only = read_only
        # Tables are replaced, never mutated, on commit: holding the dict is a snapshot.
        self._snapshot = dict(database.tables)
        self._staged: dict[str, InMemoryTable] = {}

    def table(self, name: str) -> InMemoryTable:
        if self._read_only:
            return self._snapshot.get(name, {})
        if name not in self._staged:
            self._staged[name] = dict(self._snapshot.get(name, {}))
        return self._staged[name]

    def commit(self) -> None:
        self._database.tables.update(self._staged)
        self._staged = {}


class InMemoryUnitOfWork(AbstractUnitOfWork[R]):
    def __init__(
        self,
        database: InMemoryDatabase,
        repositories: Callable[[InMemoryTransaction], R],
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__(read_only=read_only)
        self._database = database
        self._make_repositories = repositories
        self._transaction: InMemoryTransaction | None = None
        self._locked = False

    @property
    def pool(self) -> str:
        return "memory"

    async def _begin(self) -> R:
        if not self.read_only:
            await self._database.write_lock.acquire()
            self._locked = True
        self._transaction = InMemoryTransaction(self._database, read_only=self.read_only)
        return self._make_repositories(self._transaction)

    async def _commit(self) -> None:
        assert self._transaction is not None  # noqa: S101 - guarded by AbstractUnitOfWork
        self._transaction.commit()

    async def _rollback(self) -> None:
        self._transaction = None

    async def _end(self) -> None:
        self._transaction = None
        if self._locked:
            self._locked = False
            self._database.write_lock.release()


class InMemoryUnitOfWorkFactory(Generic[R]):
    def __init__(
        self,
        repositories: Callable[[InMemoryTransaction], R],
        database: InMemoryDatabase | None = None,
    ) -> None:
        self.database = database or InMemoryDatabase()
        self._repositories = repositories

    def __call__(self, *, read_only: bool = False) -> InMemoryUnitOfWork[R]:
        return InMemoryUnitOfWork(self.database, self._repositories, read_only=read_only)
