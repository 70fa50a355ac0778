"""Test doubles for `Connection`, shipped beside it.

`CompilingConnection` executes nothing: it compiles every statement for a chosen dialect
and records the SQL. It proves a repository's statements are valid for a database that is
not at hand (SQL Server in this project's CI), and lets unit tests see the SQL issued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from building_blocks.db.connection import Connection

__all__ = ["CompilingConnection"]


class CompilingConnection(Connection):
    """A `Connection` that compiles statements for ``dialect`` instead of running them.

    Reads return ``rows`` (default: none), writes report ``rowcount`` rows matched.
    """

    def __init__(
        self,
        dialect: Dialect,
        *,
        rows: Sequence[Mapping[str, Any]] = (),
        rowcount: int = 1,
        pool: str = "primary",
        read_only: bool = False,
    ) -> None:
        # Deliberately not calling super().__init__: there is no SQLAlchemy connection.
        self.dialect = dialect
        self.dialect_name = dialect.name
        self._open = None
        self._conn = None
        self._direct = None
        self.pool = pool
        self.read_only = read_only
        self.statements: list[str] = []
        self._rows = list(rows)
        self._rowcount = rowcount

    def _compile(self, statement: Executable) -> None:
        assert isinstance(statement, ClauseElement)  # noqa: S101 - Core statements only
        self.statements.append(str(statement.compile(dialect=self.dialect)))

    async def execute(
        self, statement: Executable, parameters: Sequence[Mapping[str, Any]] | None = None
    ) -> int:
        self._compile(statement)
        return self._rowcount

    async def fetch_all(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        self._compile(statement)
        return self._rows

    async def fetch_one(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        self._compile(statement)
        return self._rows[0] if self._rows else None

    async def scalar(self, statement: Executable) -> Any:
        self._compile(statement)
        return next(iter(self._rows[0].values())) if self._rows else 0

    async def commit(self) -> None:
        return None

    async def rollback(self) -> None:
        return None
