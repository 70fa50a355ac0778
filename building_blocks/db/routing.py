"""Which database a unit of work uses: replica selection, replica states, fallbacks.

`Router.route` is asked once per unit of work, when it begins (DESIGN §5). Writers and
reads inside a writing unit go to the primary. A read-only unit goes to a replica that is
``up`` (not ``down``, not ``lagging`` past the bound), chosen by a `ReplicaSelector`, and
that has the reader's consistency token (`building_blocks.db.consistency`); otherwise to
the primary, and the reason is counted in ``db_replica_fallbacks_total{reason}``:

``forced``       `force_primary()` or a request that asked for the primary
``down``         no replica is up (refused connections, timeouts; the breaker is open)
``lagging``      the replicas that answer are behind by more than the bound
``consistency``  no replica has replayed the reader's own last write yet

Replica states are kept here and fed by two sources: requests that fail to reach a
replica open its breaker at once (`Router.mark_down`), and the lag monitor
(`building_blocks.db.lag`) probes every replica, down ones included, and closes the
breaker again when a probe succeeds. The breaker is hand-written rather than taken from a
library (pybreaker, aiobreaker) because those let a *live request* through as the
half-open trial, and a request must never fail because a replica failed: here only the
monitor's probe ever tries a replica that is down.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine

from building_blocks.db.consistency import ConsistencyToken, primary_forced, required_token
from building_blocks.db.urls import describe_url
from building_blocks.telemetry.metrics import Metrics

__all__ = [
    "LeastBusy",
    "ReplicaSelector",
    "ReplicaState",
    "RoundRobin",
    "Route",
    "Router",
    "State",
]

log = logging.getLogger(__name__)

State = Literal["up", "lagging", "down"]
FallbackReason = Literal["forced", "down", "lagging", "consistency"]

PRIMARY = "primary"


@dataclass(slots=True)
class ReplicaState:
    """What the router knows about one replica (exposed read-only by `Router.replicas`)."""

    name: str
    engine: AsyncEngine
    state: State = "down"
    detail: str | None = "not probed yet"
    lag_seconds: float | None = None
    position: int | None = None  # last replayed WAL position seen (PostgreSQL)
    changed_at: float = field(default_factory=time.monotonic)

    @property
    def target(self) -> str:
        return describe_url(self.engine.url)

    @property
    def busy(self) -> int:
        """Connections of this replica's pool in use now."""
        checkedout = getattr(self.engine.pool, "checkedout", None)
        return int(checkedout()) if callable(checkedout) else 0


class ReplicaSelector(Protocol):
    """Picks one of the usable replicas (never called with an empty sequence)."""

    def choose(self, candidates: Sequence[ReplicaState]) -> ReplicaState: ...


class RoundRobin:
    """Each replica in turn."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def choose(self, candidates: Sequence[ReplicaState]) -> ReplicaState:
        return candidates[next(self._counter) % len(candidates)]


class LeastBusy:
    """The replica with the fewest connections in use; ties in turn (round-robin)."""

    def __init__(self) -> None:
        self._tie_break = RoundRobin()

    def choose(self, candidates: Sequence[ReplicaState]) -> ReplicaState:
        fewest = min(c.busy for c in candidates)
        return self._tie_break.choose([c for c in candidates if c.busy == fewest])


@dataclass(frozen=True, slots=True)
class Route:
    """Where a unit of work goes. ``verify``: a position the replica must have replayed,
    checked when the transaction opens (the router's view of the replica is older)."""

    name: str
    engine: AsyncEngine
    verify: ConsistencyToken | None = None


class Router:
    """Routes units of work and keeps the replicas' states; see the module docstring."""

    def __init__(
        self,
        primary: AsyncEngine,
        replicas: Mapping[str, AsyncEngine],
        *,
        max_lag_seconds: float,
        time_window_seconds: float | None = None,
        selector: ReplicaSelector | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.primary = primary
        self.max_lag_seconds = max_lag_seconds
        # A time token (no WAL positions) is trusted on a replica once older than this.
        self.time_window_seconds = time_window_seconds or max_lag_seconds
        self._replicas = {name: ReplicaState(name, engine) for name, engine in replicas.items()}
        self._selector = selector or RoundRobin()
        self._metrics = metrics
        for name in self._replicas:
            self._export(name)
        if metrics is not None and self._replicas:
            # Every reason's series exists at 0 from the start: a counter born at 1 shows
            # no increase in rate(), and a dashboard with no series shows "No data".
            for reason in get_args(FallbackReason):
                metrics.replica_fallbacks.labels(reason=reason)

    @property
    def replicas(self) -> Sequence[ReplicaState]:
        return tuple(self._replicas.values())

    def replica(self, name: str) -> ReplicaState:
        return self._replicas[name]

    # -- routing ---------------------------------------------------------------------

    def route(self, *, read_only: bool) -> Route:
        if not read_only or not self._replicas:
            return Route(PRIMARY, self.primary)
        if primary_forced():
            return self.fallback("forced")
        usable = [r for r in self._replicas.values() if r.state == "up"]
        if not usable:
            lagging = any(r.state == "lagging" for r in self._replicas.values())
            return self.fallback("lagging" if lagging else "down")
        token = required_token()
        if token is None:
            return self._to(self._selector.choose(usable))
        if token.kind == "time":
            age = time.time() - token.value / 1000
            if age < self.time_window_seconds:
                return self.fallback("consistency")
            return self._to(self._selector.choose(usable))
        caught_up = [r for r in usable if r.position is not None and r.position >= token.value]
        if caught_up:
            return self._to(self._selector.choose(caught_up))
        # Our view of the replicas is up to one probe old: let the transaction ask.
        return self._to(self._selector.choose(usable), verify=token)

    def _to(self, replica: ReplicaState, verify: ConsistencyToken | None = None) -> Route:
        return Route(replica.name, replica.engine, verify)

    def fallback(self, reason: FallbackReason) -> Route:
        """Count a read-only unit sent to the primary although replicas exist."""
        if self._metrics is not None:
            self._metrics.replica_fallbacks.labels(reason=reason).inc()
        trace.get_current_span().add_event(
            "db.replica.fallback", {"db.replica.fallback.reason": reason}
        )
        return Route(PRIMARY, self.primary)

    # -- state -----------------------------------------------------------------------

    def mark_down(self, name: str, detail: str) -> None:
        """Open the breaker: a request could not reach the replica. Only a successful
        probe of the lag monitor puts it back."""
        replica = self._replicas.get(name)
        if replica is not None:
            self._set(replica, "down", detail)

    def observe(
        self,
        name: str,
        *,
        lag_seconds: float | None,
        position: int | None,
        error: str | None = None,
    ) -> None:
        """A probe's result: ``error`` (the replica is down) or its lag and position."""
        replica = self._replicas[name]
        if error is not None:
            self._set(replica, "down", error)
            return
        replica.lag_seconds = lag_seconds
        if position is not None:
            replica.position = max(position, replica.position or 0)
        if lag_seconds is not None and lag_seconds > self.max_lag_seconds:
            self._set(replica, "lagging", f"{lag_seconds:.1f}s behind")
        else:
            self._set(replica, "up", None)
        if self._metrics is not None and lag_seconds is not None:
            self._metrics.replica_lag.labels(name).set(lag_seconds)

    def saw_position(self, name: str, position: int) -> None:
        """A transaction saw the replica at ``position`` (fresher than the last probe)."""
        replica = self._replicas.get(name)
        if replica is not None:
            replica.position = max(position, replica.position or 0)

    def _set(self, replica: ReplicaState, state: State, detail: str | None) -> None:
        replica.detail = detail
        if replica.state == state:
            return
        level = logging.INFO if state == "up" else logging.WARNING
        log.log(
            level,
            "replica %s is %s%s",
            replica.name,
            state,
            f" ({detail})" if detail else "",
            extra={"pool": replica.name, "replica_state": state, "was": replica.state},
        )
        trace.get_current_span().add_event(
            "db.replica.state", {"db.replica.name": replica.name, "db.replica.state": state}
        )
        replica.state = state
        replica.changed_at = time.monotonic()
        if state == "down":
            # A replica that comes back must prove it is current before reads trust it.
            replica.position = None
            replica.lag_seconds = None
        self._export(replica.name)

    def _export(self, name: str) -> None:
        if self._metrics is not None:
            up = self._replicas[name].state == "up"
            self._metrics.replica_available.labels(name).set(1 if up else 0)
