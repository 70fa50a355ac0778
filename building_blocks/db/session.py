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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from building_blocks.config import DatabaseConfig
from building_blocks.db.connection import Connection
from building_blocks.db.engines import WRITE_OPTION, create_engine
from building_blocks.db.translate import translate_error
from building_blocks.db.urls import describe_url, parse_url
from building_blocks.errors import UnavailableError

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
        async with self._connect(name, engine) as conn:
            options: dict[str, object] = {WRITE_OPTION: not read_only}
            if read_only and conn.dialect.name == "postgresql":
                options["postgresql_readonly"] = True
            await conn.execution_options(**options)
            try:
                await conn.begin()
            except Exception as exc:
                error = translate_error(exc, dialect=conn.dialect.name, pool=name)
                if error is None:
                    raise
                raise error from exc
            yield Connection(conn, pool=name, read_only=read_only)

    @asynccontextmanager
    async def _connect(self, name: str, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        try:
            conn = await engine.connect()
        except Exception as exc:
            error = translate_error(exc, dialect=engine.dialect.name, pool=name)
            if error is None:
                raise
            raise error from exc
        try:
            yield conn
        finally:
            # Closing returns the connection to the pool and rolls back what is open. A
            # failure here (the server died mid-request) must not mask the real error.
            try:
                await asyncio.shield(conn.close())
            except Exception:
                log.debug("closing a broken connection failed", exc_info=True)

    async def status(self) -> list[PoolStatus]:
        return list(await asyncio.gather(*(self._probe(n, e) for n, e in self._engines.items())))

    async def _probe(self, name: str, engine: AsyncEngine) -> PoolStatus:
        target = describe_url(engine.url)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                async with self._connect(name, engine) as conn:
                    await conn.execute(text("SELECT 1"))
        except (UnavailableError, TimeoutError) as exc:
            return PoolStatus(name, target, "down", type(exc).__name__)
        except Exception as exc:  # a probe reports; it never raises
            return PoolStatus(name, target, "down", type(exc).__name__)
        return PoolStatus(name, target, "up")
