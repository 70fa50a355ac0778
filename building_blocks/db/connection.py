"""`Connection`: what repositories execute statements through.

It wraps one checked-out SQLAlchemy connection inside one transaction, translates every
driver error into the `building_blocks.errors` tree, and knows which pool it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncConnection

from building_blocks.db.translate import translate_error
from building_blocks.errors import DataError

__all__ = ["Connection"]


class Connection:
    """A connection in an open transaction, bound to one pool (``primary``, ``replica-0``)."""

    __slots__ = ("_conn", "dialect_name", "pool", "read_only")

    def __init__(self, conn: AsyncConnection, *, pool: str, read_only: bool) -> None:
        self._conn = conn
        self.pool = pool
        self.read_only = read_only
        self.dialect_name = conn.dialect.name

    @property
    def sqlalchemy(self) -> AsyncConnection:
        """The underlying SQLAlchemy connection, for what the helpers here do not cover."""
        return self._conn

    def _translated(self, exc: Exception) -> DataError:
        error = translate_error(exc, dialect=self.dialect_name, pool=self.pool)
        if error is None:
            raise exc  # not a data-layer failure (a bug): let it surface unchanged
        return error

    async def execute(
        self, statement: Executable, parameters: Sequence[Mapping[str, Any]] | None = None
    ) -> int:
        """Run a statement for its effect; returns the number of rows it matched."""
        try:
            result = await self._conn.execute(statement, parameters)
        except Exception as exc:
            raise self._translated(exc) from exc
        return int(getattr(result, "rowcount", -1))

    async def fetch_all(self, statement: Executable) -> Sequence[Mapping[str, Any]]:
        """Every row, as mappings of column name to value."""
        try:
            result = await self._conn.execute(statement)
            return cast("Sequence[Mapping[str, Any]]", result.mappings().all())
        except Exception as exc:
            raise self._translated(exc) from exc

    async def fetch_one(self, statement: Executable) -> Mapping[str, Any] | None:
        """The first row, or ``None``."""
        try:
            result = await self._conn.execute(statement)
            return cast("Mapping[str, Any] | None", result.mappings().first())
        except Exception as exc:
            raise self._translated(exc) from exc

    async def scalar(self, statement: Executable) -> Any:
        try:
            return await self._conn.scalar(statement)
        except Exception as exc:
            raise self._translated(exc) from exc

    async def commit(self) -> None:
        try:
            await self._conn.commit()
        except Exception as exc:
            raise self._translated(exc) from exc

    async def rollback(self) -> None:
        try:
            await self._conn.rollback()
        except Exception as exc:
            raise self._translated(exc) from exc
