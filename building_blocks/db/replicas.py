"""The replica side of a `SQLAlchemySession`: router, lag monitor, and the routed
transaction (open on a replica or fall back; record commit positions).

Kept out of ``session.py`` so that a session without replicas reads as before: every
method here is a no-op or a pass-through when no replica is configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from building_blocks.config import DatabaseConfig, PoolConfig
from building_blocks.db.connection import Connection, Opener
from building_blocks.db.consistency import ConsistencyToken, note_commit
from building_blocks.db.direct import DirectReads
from building_blocks.db.engines import create_engine
from building_blocks.db.lag import LagMonitor
from building_blocks.db.replication import replication_for
from building_blocks.db.routing import PRIMARY, ReplicaSelector, Route, Router
from building_blocks.db.transactions import (
    begin_transaction,
    checkout,
    checkout_raw,
    checkout_raw_nowait,
    close_quietly,
)
from building_blocks.db.transient import Transience, classify
from building_blocks.db.translate import translate_error
from building_blocks.errors import DataError, UnavailableError
from building_blocks.telemetry.metrics import Metrics

__all__ = ["Replicas", "RoutedConnection"]

log = logging.getLogger(__name__)


class Replicas:
    """Routing state of one session's databases; built by `SQLAlchemySession.start`."""

    def __init__(
        self,
        config: DatabaseConfig,
        engines: Mapping[str, AsyncEngine],
        *,
        dialect: str,
        selector: ReplicaSelector | None,
        metrics: Metrics | None,
    ) -> None:
        self.config = config
        self.replication = replication_for(dialect)
        replicas = {n: e for n, e in engines.items() if n != PRIMARY}
        self.router = Router(
            engines[PRIMARY],
            replicas,
            max_lag_seconds=config.replica_max_lag_seconds,
            time_window_seconds=config.replica_max_lag_seconds + config.replica_probe_interval,
            selector=selector,
            metrics=metrics,
        )
        self.monitor: LagMonitor | None = None
        self._monitor_engines: dict[str, AsyncEngine] = {}
        if replicas:
            # Probes get pools of their own (one connection each): a request pool that is
            # full must neither delay a probe nor pass for a dead replica.
            probe_config = replace(config, pool=PoolConfig(size=1, max_overflow=0))
            self._monitor_engines = {
                name: create_engine(engine.url, probe_config, name=f"{name}-monitor")
                for name, engine in engines.items()
            }
            self.monitor = LagMonitor(
                self.router,
                self.replication,
                primary=self._monitor_engines[PRIMARY],
                replicas={n: e for n, e in self._monitor_engines.items() if n != PRIMARY},
                interval=config.replica_probe_interval,
                timeout=config.connect_timeout,
                max_lag_seconds=config.replica_max_lag_seconds,
            )

    @property
    def configured(self) -> bool:
        return self.monitor is not None

    async def start(self) -> None:
        if self.monitor is not None:
            await self.monitor.start()

    async def close(self) -> None:
        if self.monitor is not None:
            await self.monitor.close()
        engines, self._monitor_engines = self._monitor_engines, {}
        for engine in engines.values():
            await engine.dispose()

    async def open(self, route: Route, opened: list[AsyncConnection]) -> AsyncConnection | None:
        """Begin on the routed replica; ``None`` (the reason counted) to use the primary.

        A replica that fails here costs the request nothing: no statement has run, so the
        same unit of work simply opens on the primary instead.
        """
        try:
            # Bounded: a frozen replica accepts TCP connections, then never answers.
            async with asyncio.timeout(self.config.connect_timeout):
                conn = await checkout(route.name, route.engine)
        except (DataError, TimeoutError) as exc:
            self._failed(route, f"request could not connect: {type(exc).__name__}")
            return None
        try:
            await begin_transaction(conn, route.name, read_only=True)
            if route.verify is not None:
                sample = await self.replication.sample(conn)
                if sample.position is None or sample.position < route.verify.value:
                    await close_quietly(conn)
                    self.router.fallback("consistency")
                    return None
                self.router.saw_position(route.name, sample.position)
        except Exception as exc:
            await close_quietly(conn)
            error = translate_error(exc, dialect=conn.dialect.name, pool=route.name)
            if not isinstance(error, UnavailableError):
                raise
            self._failed(route, f"request failed: {type(exc).__name__}")
            return None
        opened.append(conn)
        return conn

    async def checkout_direct(
        self, route: Route, direct: DirectReads
    ) -> PoolProxiedConnection | None:
        """As `open`, for direct reads (no transaction to begin, no position to verify:
        direct reads are only used when the route needs no check)."""
        try:
            # An idle connection needs no I/O, hence no time bound (and no timer armed).
            fairy = checkout_raw_nowait(route.name, direct.reader)
            if fairy is not None:
                return fairy
            async with asyncio.timeout(self.config.connect_timeout):
                return await checkout_raw(route.name, direct.reader)
        except (DataError, TimeoutError) as exc:
            self._failed(route, f"request could not connect: {type(exc).__name__}")
            return None

    def read_timed_out(self, route: Route) -> None:
        """A direct read on ``route``'s replica got no answer within the connect timeout."""
        self._failed(route, "a read timed out")

    def _failed(self, route: Route, detail: str) -> None:
        self.router.mark_down(route.name, detail)
        self.router.fallback("down")

    async def record_commit(self, connection: Connection, conn: AsyncConnection) -> None:
        """After a commit on the primary: remember where it was, for read-your-writes."""
        if not self.configured:
            return  # no replica can be behind: no token needed, no round-trip spent
        try:
            token = await self.replication.commit_token(conn)
        except Exception:
            # The write is committed: that must not turn into an error. A time token is
            # stricter for a while (reads go to the primary), never wrong.
            log.warning("could not read the commit position; using a time token", exc_info=True)
            token = ConsistencyToken.now()
        connection.consistency_token = token
        note_commit(token)


class RoutedConnection(Connection):
    """A `Connection` that reports to `Replicas`: commits on the primary (for consistency
    tokens) and replica connections lost mid-request (to open that replica's breaker)."""

    __slots__ = ("_replicas",)

    def __init__(self, opener: Opener, *, replicas: Replicas, **kwargs: Any) -> None:
        super().__init__(opener, **kwargs)
        self._replicas = replicas

    async def commit(self) -> None:
        await super().commit()
        if self.opened and not self.read_only and self.pool == PRIMARY:
            await self._replicas.record_commit(self, await self.sqlalchemy())

    def _translated(self, exc: Exception) -> DataError:
        error = super()._translated(exc)
        if (
            self.pool != PRIMARY
            and isinstance(error, UnavailableError)
            and classify(exc, self.dialect_name) is Transience.DISCONNECT
        ):
            self._replicas.router.mark_down(self.pool, "connection lost during a request")
        return error
