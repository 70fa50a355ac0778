"""`Connection`: what repositories execute statements through.

It stands for one transaction on one database (``primary``, ``replica-0``...): the
database is chosen when the unit of work begins, but the pool checkout and ``BEGIN``
happen at the first statement, so a unit of work that never reaches the database (a cache
hit) costs no connection. Every driver error is translated into `building_blocks.errors`.

Read-only transactions on PostgreSQL/asyncpg carry a `DirectReads`: their SELECTs run on
the driver connection without BEGIN/ROLLBACK (one round trip each, see `direct`); anything
else a read-only unit does opens an ordinary (READ ONLY) transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncConnection

from building_blocks.db.consistency import ConsistencyToken
from building_blocks.db.direct import DirectReads
from building_blocks.db.translate import translate_error
from building_blocks.errors import DataError

__all__ = ["Connection"]

Opener = Callable[[], Awaitable[AsyncConnection]]


class Connection:
    """A transaction bound to one pool, opened on first use."""

    __slots__ = (
        "_conn",
        "_direct",
        "_open",
        "consistency_token",
        "dialect_name",
        "pool",
        "read_only",
    )

    def __init__(
        self,
        opener: Opener,
        *,
        pool: str,
        dialect_name: str,
        read_only: bool,
        direct: DirectReads | None = None,
    ) -> None:
        self._open: Opener | None = opener
        self._conn: AsyncConnection | None = None
        self._direct = direct
        self.pool = pool
        self.read_only = read_only
        self.dialect_name = dialect_name
        #: After a commit on the primary with replicas configured: where the primary was
        #: (see `building_blocks.db.consistency`); ``None`` otherwise.
        self.consistency_token: ConsistencyToken | None = None

    def end(self) -> None:
        """The unit of work is over: later statements raise instead of opening a new
        transaction, and the opener and direct reads (which point back at what made
        them) are let go."""
        self._open = None
        self._direct = None

    @property
    def opened(self) -> bool:
        """Whether a connection was checked out (a statement ran or `sqlalchemy` was used)."""
        return self._conn is not None

    async def sqlalchemy(self) -> AsyncConnection:
        """The underlying SQLAlchemy connection (checked out and begun on first call)."""
        if self._conn is None:
            if self._open is None:
                raise RuntimeError("the transaction is over")
            if self._direct is not None:
                # Leaving the direct path for good: hand its connection back first so one
                # unit never holds two.
                direct, self._direct = self._direct, None
                await direct.release()
            opener, self._open = self._open, None
            self._conn = await opener()
        return self._conn

    async def _fetch_direct(
        self, statement: Executable, parameters: Mapping[str, Any] | None, *, one: bool
    ) -> Sequence[Mapping[str, Any]] | None:
        """Rows read on the direct path, or ``None`` when the ordinary path must run it."""
        if self._direct is None or self._conn is not None:
            return None
        if self._open is None:
            raise RuntimeError("the transaction is over")
        try:
            return await self._direct.fetch(statement, parameters, one=one)
        except Exception as exc:
            raise self._translated(exc) from exc

    def _translated(self, exc: Exception) -> DataError:
        error = translate_error(exc, dialect=self.dialect_name, pool=self.pool)
        if error is None:
            raise exc  # not a data-layer failure (a bug): let it surface unchanged
        return error

    async def execute(
        self, statement: Executable, parameters: Sequence[Mapping[str, Any]] | None = None
    ) -> int:
        """Run a statement for its effect; returns the number of rows it matched."""
        conn = await self.sqlalchemy()
        try:
            result = await conn.execute(statement, parameters)
        except Exception as exc:
            raise self._translated(exc) from exc
        return int(getattr(result, "rowcount", -1))

    async def fetch_all(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        """Every row, as mappings of column name to value (``parameters`` fill
        `sqlalchemy.bindparam` placeholders)."""
        rows = await self._fetch_direct(statement, parameters, one=False)
        if rows is not None:
            return rows
        conn = await self.sqlalchemy()
        try:
            result = await conn.execute(statement, parameters)
            return cast("Sequence[Mapping[str, Any]]", result.mappings().all())
        except Exception as exc:
            raise self._translated(exc) from exc

    async def fetch_one(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        """The first row, or ``None``."""
        rows = await self._fetch_direct(statement, parameters, one=True)
        if rows is not None:
            return rows[0] if rows else None
        conn = await self.sqlalchemy()
        try:
            result = await conn.execute(statement, parameters)
            return cast("Mapping[str, Any] | None", result.mappings().first())
        except Exception as exc:
            raise self._translated(exc) from exc

    async def scalar(self, statement: Executable) -> Any:
        rows = await self._fetch_direct(statement, None, one=True)
        if rows is not None:
            return next(iter(rows[0].values())) if rows else None
        conn = await self.sqlalchemy()
        try:
            return await conn.scalar(statement)
        except Exception as exc:
            raise self._translated(exc) from exc

    async def commit(self) -> None:
        """Commit; a transaction that never ran a statement (or only direct reads, which
        run outside one) has nothing to commit."""
        self._open = None
        if self._conn is None:
            return
        try:
            await self._conn.commit()
        except Exception as exc:
            raise self._translated(exc) from exc

    async def rollback(self) -> None:
        self._open = None
        if self._conn is None:
            return
        try:
            await self._conn.rollback()
        except Exception as exc:
            raise self._translated(exc) from exc
