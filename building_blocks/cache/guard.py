"""`GuardedBackend`: the fail-open shell around a `CacheBackend`.

Every call goes through here: the circuit breaker decides whether the backend is called
at all; failures are counted and turned into "not available" answers (the cache then
reads the database); each call is timed into ``cache_operation_duration_seconds`` and
gets an OpenTelemetry span. Invalidations that cannot be delivered are kept and replayed
by the recovery probe before the breaker lets reads through again, so a cache that
missed an invalidation is never read.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal

from opentelemetry import trace

from building_blocks.cache.backend import CacheBackend, CacheBusyError, Lookup
from building_blocks.cache.breaker import BreakerState, CircuitBreaker
from building_blocks.cache.config import CacheConfig
from building_blocks.telemetry.context import start_child_span
from building_blocks.telemetry.metrics import Metrics

__all__ = ["BYPASS", "ERROR", "GuardedBackend"]

log = logging.getLogger("building_blocks.cache")

BYPASS: Literal["bypass"] = "bypass"
ERROR: Literal["error"] = "error"
Unavailable = Literal["bypass", "error"]

_OPERATIONS = ("get", "lease", "fill", "invalidate", "ping", "purge")


class GuardedBackend:
    def __init__(
        self,
        backend: CacheBackend,
        *,
        name: str,
        config: CacheConfig,
        purge_prefix: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.backend = backend
        self.name = name
        self._config = config
        self._purge_prefix = purge_prefix
        self.breaker = CircuitBreaker(
            failure_threshold=config.failure_threshold,
            recovery_seconds=config.recovery_seconds,
            on_change=self._state_changed,
        )
        self._pending_keys: set[str] = set()
        self._pending_tags: set[str] = set()
        self._overflowed = False
        self._probe: asyncio.Task[None] | None = None
        self._tracer = trace.get_tracer(__name__)
        self._span_attributes = {"cache.name": name, "db.system.name": backend.kind}
        self._gauge: Any = None
        self._durations: dict[str, Any] = {}
        if metrics is not None:
            self._gauge = metrics.cache_circuit_open.labels(name)
            self._gauge.set(0)
            self._durations = {op: metrics.cache_duration.labels(name, op) for op in _OPERATIONS}

    # -- operations ----------------------------------------------------------------------
    async def get(self, key: str, field: str, tags: Sequence[str]) -> Lookup | Unavailable:
        if not self.breaker.allow():
            self._maybe_probe()
            return BYPASS
        # The span is made after the call, and only when the lookup did not hit: a hit is
        # the hot path (a recorded SDK span cost ~25% of a cached get, profiled), and is
        # counted in cache_requests_total and shown by X-Cache and the access log instead.
        started_ns = time.time_ns()
        started = time.perf_counter()
        try:
            found = await self.backend.get(key, field, tags)
        except CacheBusyError as exc:
            # Saturated here, not a failing backend: answer from the database this once
            # without counting it towards opening the breaker (that would send every
            # request to the database, the worst answer to an overload).
            span = self._get_span(started_ns)
            if span.is_recording():
                span.set_attribute("error.type", type(exc).__qualname__)
            span.end()
            return ERROR
        except Exception as exc:
            self._failed(exc, self._get_span(started_ns))
            return ERROR
        finally:
            self._observe("get", started)
        self.breaker.record_success()
        if found.value is None:
            span = self._get_span(started_ns)
            if span.is_recording():
                span.set_attribute("cache.hit", False)
            span.end()
        return found

    def _get_span(self, started_ns: int) -> trace.Span:
        return start_child_span(
            self._tracer, "cache get", attributes=self._span_attributes, start_time=started_ns
        )

    async def lease(self, key: str, token: str, tags: Sequence[str]) -> bool:
        """True when granted; False when fenced, unavailable or failed (do not fill)."""
        ttl = self._config.lease_seconds
        return bool(await self._call("lease", self.backend.lease, key, token, ttl, tags))

    async def fill(
        self, key: str, field: str, value: bytes, *, lease: str, ttl: float, tags: Sequence[str]
    ) -> bool:
        return bool(
            await self._call(
                "fill",
                lambda: self.backend.fill(key, field, value, lease=lease, ttl=ttl, tags=tags),
            )
        )

    async def invalidate(self, keys: Sequence[str], tags: Sequence[str], token: str) -> None:
        if self.breaker.allow():
            try:
                await self._invalidate_now(keys, tags, token)
            except Exception as exc:
                # The backend may now hold entries older than a committed write: stop
                # reading it until the probe has delivered this invalidation.
                self._remember(keys, tags)
                self.breaker.trip(exc)
                log.debug("cache %s invalidation failed", self.name, exc_info=True)
            return
        self._remember(keys, tags)
        self._maybe_probe()

    async def check(self) -> bool:
        """Ping now when closed; otherwise report the breaker (and maybe start a probe)."""
        if not self.breaker.allow():
            self._maybe_probe()
            return False
        return await self._call("ping", self.backend.ping) is not None

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)

    @property
    def pending_invalidations(self) -> int:
        return len(self._pending_keys) + len(self._pending_tags)

    # -- internals -----------------------------------------------------------------------
    async def _call(self, operation: str, function: Any, *args: Any) -> Any:
        """``function(*args)`` under the breaker; None when skipped or failed."""
        if not self.breaker.allow():
            self._maybe_probe()
            return None
        span = start_child_span(
            self._tracer, f"cache {operation}", attributes=self._span_attributes
        )
        started = time.perf_counter()
        try:
            result = await function(*args)
        except Exception as exc:
            self._failed(exc, span)
            return None
        finally:
            self._observe(operation, started)
        self.breaker.record_success()
        span.end()
        return True if result is None else result

    async def _invalidate_now(self, keys: Sequence[str], tags: Sequence[str], token: str) -> None:
        span = start_child_span(self._tracer, "cache invalidate", attributes=self._span_attributes)
        started = time.perf_counter()
        try:
            await self.backend.invalidate(
                keys, tags, token=token, fence_ttl=self._config.fence_seconds
            )
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.end()
            raise
        finally:
            self._observe("invalidate", started)
        span.end()

    def _failed(self, exc: Exception, span: trace.Span) -> None:
        self.breaker.record_failure(exc)
        if span.is_recording():
            span.set_attribute("error.type", type(exc).__qualname__)
        span.end()
        # Logged at WARNING once per breaker transition (see _state_changed), not per call.
        log.debug("cache %s call failed: %r", self.name, exc)

    def _observe(self, operation: str, started: float) -> None:
        histogram = self._durations.get(operation)
        if histogram is not None:
            histogram.add(time.perf_counter() - started)

    def _has_pending(self) -> bool:
        return self._overflowed or bool(self._pending_keys or self._pending_tags)

    def _remember(self, keys: Sequence[str], tags: Sequence[str]) -> None:
        if self._overflowed:
            return
        self._pending_keys.update(keys)
        self._pending_tags.update(tags)
        if self.pending_invalidations > self._config.max_pending_invalidations:
            # Too many to replay one by one: the probe will purge every entry instead.
            self._overflowed = True
            self._pending_keys.clear()
            self._pending_tags.clear()

    def _maybe_probe(self) -> None:
        if self._probe is None and self.breaker.probe_due():
            self._probe = asyncio.get_running_loop().create_task(self._run_probe())

    async def _run_probe(self) -> None:
        try:
            await self.backend.reconnect()
            await self.backend.ping()
            await self._replay()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.breaker.record_failure(exc)
        else:
            self.breaker.record_success()
        finally:
            self._probe = None

    async def _replay(self) -> None:
        """Deliver what was missed while the backend was away (called by the probe)."""
        while self._has_pending():
            if self._overflowed:
                self._overflowed = False
                await self.backend.purge(self._purge_prefix)
                continue
            keys = list(self._pending_keys)[:500]
            tags = list(self._pending_tags)[:500]
            await self._invalidate_now(keys, tags, secrets.token_hex(8))
            # Whatever was added meanwhile stays pending for the next turn of the loop.
            self._pending_keys.difference_update(keys)
            self._pending_tags.difference_update(tags)

    def _state_changed(
        self, old: BreakerState, new: BreakerState, error: BaseException | None
    ) -> None:
        if self._gauge is not None:
            self._gauge.set(0 if new is BreakerState.CLOSED else 1)
        if new is BreakerState.OPEN and old is BreakerState.CLOSED:
            log.warning(
                "cache %s unavailable (%s: %s): answering from the database until it recovers",
                self.name,
                type(error).__name__ if error else "error",
                error,
                extra={"cache_name": self.name, "cache_state": new.value},
            )
        elif new is BreakerState.CLOSED:
            log.warning(
                "cache %s recovered: serving from the cache again",
                self.name,
                extra={"cache_name": self.name, "cache_state": new.value},
            )
