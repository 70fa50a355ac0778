"""`DatabaseSession` (the abstract seam) and `SQLAlchemySession` (engines, pools, lifecycle).

A session owns one engine (and pool) per database: ``primary`` and, when configured,
``replica-0``, ``replica-1``... It hands out transactions as `Connection` objects; units
of work are built on top of it. It connects lazily: constructing or starting a session
never blocks on the network. Each transaction's database is chosen when it begins, by the
`Router` of `building_blocks.db.routing` (replica states kept by the lag monitor of
`building_blocks.db.lag`; read-your-writes by `building_blocks.db.consistency`).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from building_blocks.config import DatabaseConfig
from building_blocks.db.connection import Connection
from building_blocks.db.direct import DirectReader, Failover
from building_blocks.db.engines import create_engine
from building_blocks.db.replicas import Replicas, RoutedConnection
from building_blocks.db.routing import PRIMARY, ReplicaSelector, Route, Router
from building_blocks.db.transactions import (
    begin_transaction,
    checkout,
    checkout_raw,
    close_quietly,
    release_quietly,
)
from building_blocks.db.urls import describe_url, parse_url
from building_blocks.errors import ConfigurationError
from building_blocks.telemetry.metrics import Metrics

__all__ = ["PRIMARY", "DatabaseSession", "PoolStatus", "SQLAlchemySession"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """Health of one database as `/health/ready` reports it (no secrets)."""

    name: str
    target: str
    state: str  # "up" | "down" | "lagging"
    detail: str | None = None
    lag_seconds: float | None = None


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
    """`DatabaseSession` over SQLAlchemy async engines, one per configured database.

    ``selector`` picks among usable replicas (`RoundRobin` by default, or `LeastBusy`);
    ``metrics`` receives the replica gauges and fallback counts.
    """

    def __init__(
        self,
        config: DatabaseConfig,
        *,
        metrics: Metrics | None = None,
        selector: ReplicaSelector | None = None,
    ) -> None:
        self.config = config
        parse_url(config.url)  # fail early, with a message that holds no secret
        for url in config.replica_urls:
            parse_url(url)
        self._engines: dict[str, AsyncEngine] = {}
        self._metrics = metrics
        self._selector = selector
        self._replicas: Replicas | None = None

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

    @property
    def replicas(self) -> Replicas:
        """Routing state: ``.router`` (replica states) and ``.monitor`` (lag monitor)."""
        if self._replicas is None:
            raise RuntimeError("SQLAlchemySession.start() has not been called")
        return self._replicas

    @property
    def router(self) -> Router:
        return self.replicas.router

    async def start(self) -> None:
        if self._engines:
            return
        urls = {PRIMARY: self.config.url}
        urls.update({f"replica-{i}": url for i, url in enumerate(self.config.replica_urls)})
        for name, url in urls.items():
            try:
                self._engines[name] = create_engine(url, self.config, name=name)
            except (ImportError, sa_exc.ArgumentError) as exc:
                # A driver that is not installed or a URL option it rejects: no retry
                # helps. The message names the scheme, not the URL.
                self._engines.clear()
                raise ConfigurationError(
                    f"cannot create the {name} engine for {parse_url(url).drivername}:"
                    f" {type(exc).__name__}"
                ) from None
        self._replicas = Replicas(
            self.config,
            self._engines,
            dialect=self.dialect_name,
            selector=self._selector,
            metrics=self._metrics,
        )
        await self._replicas.start()
        log.info(
            "database session started",
            extra={"databases": {n: describe_url(e.url) for n, e in self._engines.items()}},
        )

    async def close(self) -> None:
        replicas, self._replicas = self._replicas, None
        if replicas is not None:
            await replicas.close()
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            await engine.dispose()

    def _route(self, *, read_only: bool) -> Route:
        """Which database a new transaction goes to: chosen once, when it begins."""
        return self.router.route(read_only=read_only)

    @asynccontextmanager
    async def begin(self, *, read_only: bool = False) -> AsyncIterator[Connection]:
        route = self._route(read_only=read_only)
        replicas = self.replicas
        opened: list[AsyncConnection] = []

        async def open_transaction() -> AsyncConnection:
            if route.name != PRIMARY:
                conn = await replicas.open(route, opened)
                if conn is not None:
                    return conn
                connection.pool = PRIMARY  # fell back: nothing ran on the replica
            conn = await checkout(PRIMARY, self.primary)
            opened.append(conn)
            await begin_transaction(conn, PRIMARY, read_only=read_only)
            return conn

        # Read-only work on PostgreSQL/asyncpg reads without BEGIN/ROLLBACK (db/direct.py),
        # unless the replica must first prove it has replayed the client's last write.
        async def checkout_direct() -> PoolProxiedConnection:
            assert direct is not None  # noqa: S101 - only called through `direct`
            if connection.pool != PRIMARY:
                fairy = await replicas.checkout_direct(route, direct)
                if fairy is not None:
                    return fairy
                connection.pool = PRIMARY  # fell back: nothing ran on the replica
                primary_reader = DirectReader.of(self.primary)
                assert primary_reader is not None  # noqa: S101 - same dialect and driver
                direct.rebind(primary_reader)
            return await checkout_raw(PRIMARY, direct.reader)

        def leave_replica() -> DirectReader:
            replicas.read_timed_out(route)
            connection.pool = PRIMARY
            primary_reader = DirectReader.of(self.primary)
            assert primary_reader is not None  # noqa: S101 - same dialect and driver
            return primary_reader

        reader = DirectReader.of(route.engine) if read_only and route.verify is None else None
        failover = (
            Failover(self.config.connect_timeout, leave_replica) if route.name != PRIMARY else None
        )
        direct = reader.begin(checkout_direct, failover=failover) if reader is not None else None

        connection = RoutedConnection(
            open_transaction,
            replicas=replicas,
            pool=route.name,
            dialect_name=route.engine.dialect.name,
            read_only=read_only,
            direct=direct,
        )
        try:
            yield connection
        finally:
            if direct is not None:
                await release_quietly(direct)
            for conn in opened:
                await close_quietly(conn)

    async def status(self) -> list[PoolStatus]:
        """The primary, probed now; replicas as the router sees them (probed in the
        background), so readiness shows what routing acts on."""
        if not self._engines:
            return []
        primary = await self._probe(PRIMARY, self.primary)
        replicas = [
            PoolStatus(r.name, r.target, r.state, r.detail, r.lag_seconds)
            for r in self.router.replicas
        ]
        return [primary, *replicas]

    async def _probe(self, name: str, engine: AsyncEngine) -> PoolStatus:
        target = describe_url(engine.url)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                conn = await checkout(name, engine)
                try:
                    await conn.execute(text("SELECT 1"))
                finally:
                    await close_quietly(conn)
        except Exception as exc:  # a probe reports; it never raises
            return PoolStatus(name, target, "down", type(exc).__name__)
        return PoolStatus(name, target, "up")
