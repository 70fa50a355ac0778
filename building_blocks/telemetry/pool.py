"""Connection-pool metrics for every engine (OpenTelemetry ``db.client.connection.*``).

Two halves:

* `PoolCollector` reads the gauges from the pools *at scrape time* (connections idle and
  used, max, idle max/min, pending requests), so they can never drift from the truth the
  way gauges counted up and down by events do.
* `PoolInstrumentation` records what only events can see: wait time (time spent in the
  pool's ``connect()``, including waiting for a free connection and the pre-ping),
  use time (from ``connect()`` returning the connection to the ``checkin`` event), create
  time (``do_connect`` → ``connect`` events), timeouts, and the number of tasks currently
  waiting (pending requests).

SQLAlchemy has no "checkout started" event, so the wait is measured by wrapping the
pool's ``connect`` on the pool instance; ``engine.dispose()`` replaces the pool and the
``engine_disposed`` event wraps the new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

from building_blocks.telemetry.context import current_exemplar
from building_blocks.telemetry.metrics import POOL, Metrics

__all__ = ["PoolCollector", "PoolInstrumentation", "PoolSnapshot", "snapshot"]

_CHECKOUT_AT = "_bb_checkout_at"
_CONNECT_AT = "_bb_connect_at"

Engines = Callable[[], Mapping[str, AsyncEngine]]


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One pool's state at one instant."""

    idle: int
    used: int
    max: int
    idle_max: int
    idle_min: int
    pending: int


@dataclass(slots=True)
class _PoolState:
    """Event-side state of one pool (only the pending count is read at scrape time)."""

    pending: int = 0
    wrapped: set[int] = field(default_factory=set)


def snapshot(pool: Pool, pending: int = 0) -> PoolSnapshot | None:
    """The gauges of ``pool`` now, or ``None`` for pools that keep no such counts
    (StaticPool for in-memory SQLite, NullPool): their gauges are left out."""
    if not isinstance(pool, QueuePool):
        return None
    size = pool.size()
    overflow = pool._max_overflow  # no public accessor; -1 = unbounded
    return PoolSnapshot(
        idle=pool.checkedin(),
        used=pool.checkedout(),
        max=size + overflow if overflow >= 0 else -1,
        idle_max=size,  # QueuePool keeps at most pool_size connections idle
        idle_min=0,  # and never opens connections ahead of demand
        pending=pending,
    )


class PoolInstrumentation:
    """Attach the pool listeners of engines (once each) and keep their pending counts."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._states: dict[str, _PoolState] = {}
        self._engines: dict[int, tuple[Engine, list[tuple[Any, str, Any]]]] = {}

    def pending(self, pool: str) -> int:
        state = self._states.get(pool)
        return state.pending if state else 0

    def instrument(self, engine: AsyncEngine, *, pool: str) -> bool:
        """Instrument ``engine``'s pool, labelled ``pool``; ``False`` if it already was."""
        sync_engine = engine.sync_engine
        if id(sync_engine) in self._engines:
            return False
        state = self._states.setdefault(pool, _PoolState())
        listeners = self._listeners(sync_engine, pool, state)
        for target, name, fn in listeners:
            event.listen(target, name, fn)
        self._engines[id(sync_engine)] = (sync_engine, listeners)
        self._wrap(sync_engine.pool, pool, state)
        return True

    def uninstrument_all(self) -> None:
        engines, self._engines = self._engines, {}
        for sync_engine, listeners in engines.values():
            for target, name, fn in listeners:
                if event.contains(target, name, fn):
                    event.remove(target, name, fn)
            sync_engine.pool.__dict__.pop("connect", None)  # back to the class's method

    def _listeners(
        self, sync_engine: Engine, pool: str, state: _PoolState
    ) -> list[tuple[Any, str, Any]]:
        use_time = self._metrics.pool_use_time.labels(pool)
        create_time = self._metrics.pool_create_time.labels(pool)

        def on_checkin(_dbapi: Any, record: Any) -> None:
            started = record.info.pop(_CHECKOUT_AT, None)
            if started is not None:
                use_time.add(time.perf_counter() - started)

        def on_do_connect(_dialect: Any, record: Any, _cargs: Any, _cparams: Any) -> None:
            record.info[_CONNECT_AT] = time.perf_counter()

        def on_connect(_dbapi: Any, record: Any) -> None:
            started = record.info.pop(_CONNECT_AT, None)
            if started is not None:
                create_time.observe(time.perf_counter() - started, exemplar=current_exemplar())

        def on_disposed(engine: Engine) -> None:
            self._wrap(engine.pool, pool, state)  # dispose() built a new pool

        # Pool listeners go on the engine: SQLAlchemy carries them over to a recreated pool.
        return [
            (sync_engine, "checkin", on_checkin),
            (sync_engine, "connect", on_connect),
            (sync_engine, "do_connect", on_do_connect),
            (sync_engine, "engine_disposed", on_disposed),
        ]

    def _wrap(self, target: Pool, pool: str, state: _PoolState) -> None:
        if id(target) in state.wrapped or "connect" in target.__dict__:
            return
        state.wrapped.add(id(target))
        original = target.connect
        wait_time = self._metrics.pool_wait_time.labels(pool)
        timeouts = self._metrics.pool_timeouts.labels(pool)

        def connect() -> Any:
            state.pending += 1
            started = time.perf_counter()
            try:
                connection = original()
            except sa_exc.TimeoutError:
                timeouts.inc()
                raise
            finally:
                state.pending -= 1
            now = time.perf_counter()
            exemplar = current_exemplar()
            if exemplar is None:
                wait_time.add(now - started)
            else:
                wait_time.observe(now - started, exemplar)
            # Use time runs from here to the checkin event (no checkout listener needed:
            # every checkout comes through this method). The record's ``info`` is the
            # one the checkin event gets; the connection's ``info`` is the same dict,
            # reached through two Python calls per checkout.
            record = getattr(connection, "_connection_record", None) or connection
            record.info[_CHECKOUT_AT] = now
            return connection

        # Instance attribute shadows the method: this pool only, undone by deleting it.
        target.connect = connect  # type: ignore[method-assign]


def _families() -> dict[str, GaugeMetricFamily]:
    def gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[POOL, *labels])

    return {
        "count": gauge(
            "db_client_connection_count",
            "Connections in the pool, by state (idle: checked in, used: checked out).",
            "db_client_connection_state",
        ),
        "max": gauge(
            "db_client_connection_max",
            "Maximum number of open connections the pool allows (size + overflow).",
        ),
        "idle_max": gauge(
            "db_client_connection_idle_max", "Maximum number of idle connections the pool keeps."
        ),
        "idle_min": gauge(
            "db_client_connection_idle_min",
            "Minimum number of idle connections the pool keeps open.",
        ),
        "pending": gauge(
            "db_client_connection_pending_requests",
            "Requests (tasks) waiting for a connection from the pool right now.",
        ),
    }


class PoolCollector(Collector):
    """Scrape-time pool gauges for every engine the session has now."""

    def __init__(self, engines: Engines, instrumentation: PoolInstrumentation) -> None:
        self._engines = engines
        self._instrumentation = instrumentation

    def snapshots(self) -> Iterator[tuple[str, PoolSnapshot]]:
        for name, engine in self._engines().items():
            snap = snapshot(engine.sync_engine.pool, self._instrumentation.pending(name))
            if snap is not None:
                yield name, snap

    def collect(self) -> Iterator[Metric]:
        families = _families()
        for name, snap in self.snapshots():
            families["count"].add_metric([name, "idle"], snap.idle)
            families["count"].add_metric([name, "used"], snap.used)
            families["max"].add_metric([name], snap.max)
            families["idle_max"].add_metric([name], snap.idle_max)
            families["idle_min"].add_metric([name], snap.idle_min)
            families["pending"].add_metric([name], snap.pending)
        yield from families.values()

    def describe(self) -> Iterator[Metric]:
        # Names known up front, so the registry checks them against other instruments.
        yield from _families().values()
