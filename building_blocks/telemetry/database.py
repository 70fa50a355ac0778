"""`DatabaseTelemetry`: the lifespan resource that instruments a session's engines.

Started after the `SQLAlchemySession` (which creates its engines in ``start``), it
instruments every engine exactly once, pools and statements, labelled with the pool name
(``primary``, ``replica-0``...), and removes every listener when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from opentelemetry import trace

from building_blocks.telemetry.metrics import Metrics
from building_blocks.telemetry.multiprocess import PoolGaugeWriter
from building_blocks.telemetry.pool import Engines, PoolCollector, PoolInstrumentation
from building_blocks.telemetry.queries import QueryInstrumentation

__all__ = ["DatabaseTelemetry"]

log = logging.getLogger(__name__)


class DatabaseTelemetry:
    """Pool and query telemetry for the engines ``engines()`` returns once started.

    ``multiprocess_dir`` (prometheus-client multiprocess mode) makes each worker write
    its pool gauges there every ``refresh_seconds`` and before each scrape it answers.
    """

    def __init__(
        self,
        engines: Engines,
        metrics: Metrics,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        multiprocess_dir: Path | None = None,
        refresh_seconds: float = 1.0,
    ) -> None:
        self._engines = engines
        self.pools = PoolInstrumentation(metrics)
        self.queries = QueryInstrumentation(metrics, tracer_provider=tracer_provider)
        self.collector = PoolCollector(engines, self.pools)
        self._writer = (
            PoolGaugeWriter(self.collector, multiprocess_dir) if multiprocess_dir else None
        )
        self._refresh_seconds = refresh_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for name, engine in self._engines().items():
            self.queries.instrument(engine, pool=name)
            self.pools.instrument(engine, pool=name)
        if self._writer is not None and self._task is None:
            self._writer.refresh()
            self._task = asyncio.create_task(self._refresh_forever(self._writer))

    def refresh(self) -> None:
        """Write this worker's pool gauges now (multiprocess mode; otherwise nothing)."""
        if self._writer is not None:
            self._writer.refresh()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.queries.uninstrument_all()
        self.pools.uninstrument_all()
        if self._writer is not None:
            self._writer.close()

    async def _refresh_forever(self, writer: PoolGaugeWriter) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                writer.refresh()
            except Exception:  # a gauge must never take the worker down
                log.exception("refreshing pool gauges failed")
