"""The background lag monitor: probes every replica, measures its lag, feeds the `Router`.

How lag is measured (PostgreSQL). ``now() - pg_last_xact_replay_timestamp()`` alone is
wrong on an idle primary: it grows while nothing is written, although the replica has
everything. So the monitor samples the primary's WAL position every interval and keeps a
short history of *when it first saw* each position. A replica whose replayed position is
at or past the primary's latest one has no lag; otherwise its lag is the time since the
primary first went past the replica's position: how long the replica has been missing a
write, measured on one clock (ours). Only when the history does not reach back that far
(just started, or far behind) does the replica's replay timestamp serve as an upper bound.

Every probe is bounded by the connect timeout and uses small pools of its own, so a busy
request pool can neither delay a probe nor be mistaken for a dead replica. A probe that
fails marks the replica down; one that succeeds closes its breaker (the half-open probe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from building_blocks.db.replication import ReplicaSample, Replication
from building_blocks.db.routing import Router

__all__ = ["LagMonitor", "PositionHistory"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class PositionHistory:
    """When the primary was first seen at each WAL position, for ``keep_seconds``."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._samples: deque[tuple[float, int]] = deque()

    def record(self, at: float, position: int) -> None:
        if self._samples and position <= self._samples[-1][1]:
            return  # not new: the time a position was *first* seen is what counts
        self._samples.append((at, position))
        # Keep one sample older than the window: it is the boundary of a replica that is
        # current up to it (dropping it would make an idle-then-written primary look old).
        cutoff = at - self.keep_seconds
        while len(self._samples) > 1 and self._samples[1][0] < cutoff:
            self._samples.popleft()

    @property
    def latest(self) -> int | None:
        return self._samples[-1][1] if self._samples else None

    def lag(self, replayed: int, now: float, hint: float | None) -> float:
        """Seconds ``replayed`` is behind; ``hint`` bounds it when history runs out."""
        if not self._samples or replayed >= self._samples[-1][1]:
            return 0.0 if self._samples else (hint or 0.0)
        for index, (seen_at, position) in enumerate(self._samples):
            if position > replayed:
                if index == 0:
                    # Missing writes older than our history: at least this old, at most
                    # as old as the replica's last replayed commit.
                    return max(now - seen_at, hint or 0.0)
                return now - seen_at
        return 0.0  # unreachable: the last sample is past `replayed`


class LagMonitor:
    """Runs `probe_once` every ``interval`` seconds until closed."""

    def __init__(
        self,
        router: Router,
        replication: Replication,
        *,
        primary: AsyncEngine,
        replicas: Mapping[str, AsyncEngine],
        interval: float,
        timeout: float,
        max_lag_seconds: float,
    ) -> None:
        self._router = router
        self._replication = replication
        self._primary = primary
        self._replicas = dict(replicas)
        self.interval = interval
        self._timeout = timeout
        self.history = PositionHistory(keep_seconds=max(10.0, 4 * max_lag_seconds))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None and self._replicas:
            self._task = asyncio.create_task(self._run(), name="replica-lag-monitor")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.probe_once()
            except Exception:  # the monitor must outlive any one bad probe
                log.exception("replica lag probe failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def probe_once(self) -> None:
        """Sample the primary's position, then every replica, and update the router."""
        try:
            position = await self._bounded(self._primary, self._replication.primary_position)
        except Exception as exc:
            # Without the primary, replicas are judged on what we saw before.
            log.debug("primary position unavailable: %s", type(exc).__name__)
        else:
            if position is not None:
                self.history.record(time.monotonic(), position)
        await asyncio.gather(*(self._probe_replica(name) for name in self._replicas))

    async def _probe_replica(self, name: str) -> None:
        try:
            sample = await self._bounded(self._replicas[name], self._replication.sample)
        except Exception as exc:
            self._router.observe(name, lag_seconds=None, position=None, error=_reason(exc))
            return
        self._router.observe(name, lag_seconds=self._lag(sample), position=sample.position)

    def _lag(self, sample: ReplicaSample) -> float:
        if sample.position is None:
            return sample.lag_hint or 0.0
        return self.history.lag(sample.position, time.monotonic(), sample.lag_hint)

    async def _bounded(
        self, engine: AsyncEngine, probe: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        async with asyncio.timeout(self._timeout):
            async with engine.connect() as conn:
                return await probe(conn)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "probe timed out"
    return f"probe failed: {type(exc).__name__}"
