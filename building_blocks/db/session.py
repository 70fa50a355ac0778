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
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from building_blocks.config import DatabaseConfig
from building_blocks.db.connection import Connection
from building_blocks.db.direct import DirectReader, DirectReads, Failover
from building_blocks.db.engines import create_engine
from building_blocks.db.replicas import Replicas, RoutedConnection
from building_blocks.db.routing import PRIMARY, ReplicaSelector, Route, Router
from building_blocks.db.transactions import (
    begin_transaction,
    checkout,
    checkout_raw,
    checkout_raw_nowait,
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
        # By pool name, for the engines of this start: `DirectReader.of` once per engine.
        self._readers: dict[str, DirectReader | None] = {}

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
        self._readers.clear()
        for engine in engines.values():
            await engine.dispose()

    def _reader(self, route: Route) -> DirectReader | None:
        """The direct reader of ``route``'s engine (``None``: no direct reads there)."""
        try:
            return self._readers[route.name]
        except KeyError:
            reader = self._readers[route.name] = DirectReader.of(route.engine)
            return reader

    def _route(self, *, read_only: bool) -> Route:
        """Which database a new transaction goes to: chosen once, when it begins."""
        return self.router.route(read_only=read_only)

    def begin(self, *, read_only: bool = False) -> _Transaction:
        return _Transaction(self, read_only=read_only)

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


class _Transaction:
    """What `SQLAlchemySession.begin` returns: routes when entered, hands out a
    `RoutedConnection`, releases what it checked out on exit.

    A class rather than an ``@asynccontextmanager`` generator, and its steps methods
    rather than closures made per call: it runs once per unit of work, on the hottest
    path (a cache-off get by id), where the generator machinery was measurable.
    """

    __slots__ = ("_connection", "_direct", "_opened", "_read_only", "_route", "_session")

    def __init__(self, session: SQLAlchemySession, *, read_only: bool) -> None:
        self._session = session
        self._read_only = read_only
        self._opened: list[AsyncConnection] = []
        self._direct: DirectReads | None = None

    async def __aenter__(self) -> Connection:
        session = self._session
        read_only = self._read_only
        route = self._route = session._route(read_only=read_only)  # a hook (tests route by hand)
        # Read-only work on PostgreSQL/asyncpg reads without BEGIN/ROLLBACK (db/direct.py),
        # unless the replica must first prove it has replayed the client's last write.
        reader = session._reader(route) if read_only and route.verify is None else None
        if reader is not None:
            failover = (
                Failover(session.config.connect_timeout, self._leave_replica)
                if route.name != PRIMARY
                else None
            )
            self._direct = reader.begin(self._checkout_direct, failover=failover)
        self._connection = RoutedConnection(
            self._open_transaction,
            replicas=session.replicas,
            pool=route.name,
            dialect_name=route.engine.dialect.name,
            read_only=read_only,
            direct=self._direct,
        )
        return self._connection

    async def __aexit__(self, *exc_info: object) -> None:
        # The connection's opener and the direct reads' checkout are this object's bound
        # methods: unlinked here, a unit of work is freed when it ends instead of left as
        # a reference cycle for the garbage collector (six objects per unit of work).
        self._connection.end()
        direct, self._direct = self._direct, None
        if direct is not None:
            await release_quietly(direct)
        for conn in self._opened:
            await close_quietly(conn)

    async def _open_transaction(self) -> AsyncConnection:
        session, route = self._session, self._route
        if route.name != PRIMARY:
            conn = await session.replicas.open(route, self._opened)
            if conn is not None:
                return conn
            self._connection.pool = PRIMARY  # fell back: nothing ran on the replica
        conn = await checkout(PRIMARY, session.primary)
        self._opened.append(conn)
        await begin_transaction(conn, PRIMARY, read_only=self._read_only)
        return conn

    async def _checkout_direct(self) -> PoolProxiedConnection:
        direct = self._direct
        assert direct is not None  # noqa: S101 - only called through `direct`
        if self._connection.pool != PRIMARY:
            fairy = await self._session.replicas.checkout_direct(self._route, direct)
            if fairy is not None:
                return fairy
            self._connection.pool = PRIMARY  # fell back: nothing ran on the replica
            direct.rebind(self._primary_reader())
        fairy = checkout_raw_nowait(PRIMARY, direct.reader)
        return fairy if fairy is not None else await checkout_raw(PRIMARY, direct.reader)

    def _leave_replica(self) -> DirectReader:
        self._session.replicas.read_timed_out(self._route)
        self._connection.pool = PRIMARY
        return self._primary_reader()

    def _primary_reader(self) -> DirectReader:
        reader = self._session._reader(Route(PRIMARY, self._session.primary))
        assert reader is not None  # noqa: S101 - same dialect and driver as the replica
        return reader
