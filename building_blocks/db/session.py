"""`DatabaseSession` (the abstract seam) and `SQLAlchemySession` (engines, pools, lifecycle).

A session owns one engine (and pool) per database: ``primary`` and, when configured,
``replica-0``, ``replica-1``... It hands out transactions as `Connection` objects; units
of work are built on top of it. It connects lazily: constructing or starting a session
never blocks on the network.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from building_blocks.config import DatabaseConfig
from building_blocks.db.connection import Connection
from building_blocks.db.direct import DirectReader, DirectReads
from building_blocks.db.engines import WRITE_OPTION, create_engine
from building_blocks.db.translate import translate_error
from building_blocks.db.urls import describe_url, parse_url

__all__ = ["DatabaseSession", "PoolStatus", "SQLAlchemySession"]

log = logging.getLogger(__name__)

PRIMARY = "primary"
"""Pool name of the primary database."""


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """Health of one database as `/health/ready` reports it (no secrets)."""

    name: str
    target: str
    state: str  # "up" | "down" | "lagging"
    detail: str | None = None


class DatabaseSession(ABC):
    """Opens transactions on a database; the seam units of work are written against."""

    @abstractmethod
    async def start(self) -> None:
        """Prepare engines/pools. Must not require the database to be reachable."""

    @abstractmethod
    async def close(self) -> None:
        """Close every pool; idempotent."""

    @abstractmethod
    def begin(self, *, read_only: bool = False) -> AbstractAsyncContextManager[Connection]:
        """A transaction; rolled back on exit unless `Connection.commit` was called."""

    @abstractmethod
    async def status(self) -> list[PoolStatus]:
        """Probe every database once; never raises."""


class SQLAlchemySession(DatabaseSession):
    """`DatabaseSession` over SQLAlchemy async engines, one per configured database."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        parse_url(config.url)  # fail early, with a message that holds no secret
        for url in config.replica_urls:
            parse_url(url)
        self._engines: dict[str, AsyncEngine] = {}

    @property
    def dialect_name(self) -> str:
        return parse_url(self.config.url).get_backend_name()

    @property
    def engines(self) -> Mapping[str, AsyncEngine]:
        """Engines by pool name (``primary``, ``replica-0``...), for metrics and tracing."""
        return self._engines

    @property
    def primary(self) -> AsyncEngine:
        try:
            return self._engines[PRIMARY]
        except KeyError:
            raise RuntimeError("SQLAlchemySession.start() has not been called") from None

    async def start(self) -> None:
        if self._engines:
            return
        self._engines[PRIMARY] = create_engine(self.config.url, self.config, name=PRIMARY)
        for index, url in enumerate(self.config.replica_urls):
            name = f"replica-{index}"
            self._engines[name] = create_engine(url, self.config, name=name)
        log.info(
            "database session started",
            extra={"databases": {n: describe_url(e.url) for n, e in self._engines.items()}},
        )

    async def close(self) -> None:
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            await engine.dispose()

    def _route(self, *, read_only: bool) -> tuple[str, AsyncEngine]:
        """Which database a new transaction goes to (replica routing refines this)."""
        del read_only  # without routing, every transaction goes to the primary
        return PRIMARY, self.primary

    @asynccontextmanager
    async def begin(self, *, read_only: bool = False) -> AsyncIterator[Connection]:
        name, engine = self._route(read_only=read_only)
        opened: list[AsyncConnection] = []

        async def open_transaction() -> AsyncConnection:
            conn = await self._checkout(name, engine)
            opened.append(conn)
            options: dict[str, object] = {WRITE_OPTION: not read_only}
            if read_only and conn.dialect.name == "postgresql":
                options["postgresql_readonly"] = True
            try:
                await conn.execution_options(**options)
                await conn.begin()
            except Exception as exc:
                _raise_translated(exc, conn.dialect.name, name)
            return conn

        # Read-only work on PostgreSQL/asyncpg reads without BEGIN/ROLLBACK (db/direct.py).
        reader = DirectReader.of(engine) if read_only else None
        direct = reader.begin(lambda: self._checkout_raw(name, reader)) if reader else None
        try:
            yield Connection(
                open_transaction,
                pool=name,
                dialect_name=engine.dialect.name,
                read_only=read_only,
                direct=direct,
            )
        finally:
            if direct is not None:
                await _release_quietly(direct)
            for conn in opened:
                await _close_quietly(conn)

    async def _checkout(self, name: str, engine: AsyncEngine) -> AsyncConnection:
        try:
            return await engine.connect()
        except Exception as exc:
            _raise_translated(exc, engine.dialect.name, name)

    async def _checkout_raw(self, name: str, reader: DirectReader) -> PoolProxiedConnection:
        """As `_checkout`, for direct reads (a driver connection from the same pool)."""
        try:
            return await reader.checkout()
        except Exception as exc:
            _raise_translated(exc, reader.dialect.name, name)

    async def status(self) -> list[PoolStatus]:
        return list(await asyncio.gather(*(self._probe(n, e) for n, e in self._engines.items())))

    async def _probe(self, name: str, engine: AsyncEngine) -> PoolStatus:
        target = describe_url(engine.url)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                conn = await self._checkout(name, engine)
                try:
                    await conn.execute(text("SELECT 1"))
                finally:
                    await _close_quietly(conn)
        except Exception as exc:  # a probe reports; it never raises
            return PoolStatus(name, target, "down", type(exc).__name__)
        return PoolStatus(name, target, "up")


def _raise_translated(exc: Exception, dialect: str, pool: str) -> NoReturn:
    """Raise the error-tree equivalent of ``exc`` (from it), or ``exc`` itself."""
    error = translate_error(exc, dialect=dialect, pool=pool)
    if error is None:
        raise exc
    raise error from exc


async def _release_quietly(direct: DirectReads) -> None:
    # As `_close_quietly`, for the connection of direct reads.
    try:
        await asyncio.shield(direct.release())
    except Exception:
        log.debug("returning a direct-read connection failed", exc_info=True)


async def _close_quietly(conn: AsyncConnection) -> None:
    # Closing returns the connection to the pool and rolls back what is open. A failure
    # here (the server died mid-request) must not mask the error the caller is handling;
    # shielded so a cancelled request still hands its connection back.
    try:
        await asyncio.shield(conn.close())
    except Exception:
        log.debug("closing a broken connection failed", exc_info=True)
