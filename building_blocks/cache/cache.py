"""`Cache`: cache-aside reads that stay consistent with the database and fail open.

Read path (`get_or_load`): one backend lookup; on a hit, decode and return (no database,
no unit of work). On a miss, join this process's flight for the key or start one: take
a lease, call the loader (which opens its own read-only unit of work), share the result
with every waiting caller, then store it if the lease still holds. ``None`` from the
loader ("not found") is cached too, with its own short TTL.

Write path (`invalidate_on_commit`): a unit of work registers keys and tags; after its
commit, they are deleted with their leases and fenced (see `CacheBackend`). A rollback
drops them unseen.

When the backend fails or its breaker is open, reads go straight to the loader
(``bypass``/``error``) and invalidations wait in the guard until the backend is back.
See ``docs/cache.md`` for why this never serves a value older than a committed write.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from building_blocks.cache.backend import CacheBackend, Lookup
from building_blocks.cache.breaker import BreakerState
from building_blocks.cache.codec import Codec
from building_blocks.cache.config import CacheConfig
from building_blocks.cache.context import record_result
from building_blocks.cache.flights import Flight, Flights
from building_blocks.cache.guard import GuardedBackend
from building_blocks.telemetry.context import note_cache
from building_blocks.telemetry.metrics import Metrics

__all__ = ["Cache", "CacheStatus", "CommitHooks"]

log = logging.getLogger("building_blocks.cache")

T = TypeVar("T")
NEGATIVE = b""  # the stored form of "the loader found nothing"


class CommitHooks(Protocol):
    """What `invalidate_on_commit` needs from a unit of work."""

    def on_commit(self, callback: Callable[[], Awaitable[None]]) -> None: ...


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """The cache as ``/health/ready`` reports it (no secrets)."""

    name: str
    backend: str
    target: str
    state: str  # "up" | "down" | "disabled"
    circuit: str  # "closed" | "open" | "half-open"
    pending_invalidations: int = 0


class Cache:
    """A namespaced cache on one backend. Build one per service in the composition root.

    Keys are stored as ``<namespace>:k:<key>`` and tags as ``<namespace>:t:<tag>``, each
    value in the field ``schema_version`` of its entry: bump the version when the cached
    shape changes, and a deploy never decodes the old shape, while invalidations from
    old and new instances still reach both.
    """

    def __init__(
        self,
        backend: CacheBackend,
        *,
        namespace: str,
        schema_version: str = "1",
        name: str | None = None,
        config: CacheConfig | None = None,
        metrics: Metrics | None = None,
        enabled: bool = True,
    ) -> None:
        if not namespace or ":" in namespace:
            raise ValueError("namespace must be a non-empty name without ':'")
        if not schema_version or schema_version.startswith("!"):
            raise ValueError("schema_version must be non-empty and not start with '!'")
        self.name = name or namespace
        self.namespace = namespace
        self.schema_version = schema_version
        self.config = config or CacheConfig()
        self.enabled = enabled
        self._key_prefix = f"{namespace}:k:"
        self._tag_prefix = f"{namespace}:t:"
        self.guard = GuardedBackend(
            backend,
            name=self.name,
            config=self.config,
            purge_prefix=f"{namespace}:",
            metrics=metrics,
        )
        # Not joinable once older than the fence: its read may predate an invalidation
        # whose fence has already expired.
        self._flights = Flights(
            clock=time.monotonic,
            max_age=max(self.config.fence_seconds, 0.1),
            grace=getattr(backend, "timeout", 0.1),
        )
        self._fill_tasks: set[asyncio.Task[None]] = set()
        #: A lookup's result counter's ``inc`` (`LocalCounter`: calls in C only).
        self._results: dict[str, Callable[[], None]] = {}
        self._invalidations: Any = None
        if metrics is not None:
            requests = metrics.cache_requests
            self._results = {
                r: requests.labels(self.name, r).inc for r in ("hit", "miss", "error", "bypass")
            }
            self._invalidations = metrics.cache_invalidations.labels(self.name)

    @property
    def backend(self) -> CacheBackend:
        return self.guard.backend

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self.enabled:
            await self.backend.start()

    async def close(self) -> None:
        tasks = list(self._fill_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.guard.close()
        await self.backend.close()

    async def status(self) -> CacheStatus:
        """Ping the backend (through the breaker) and report; never raises."""
        if not self.enabled:
            state, circuit = "disabled", BreakerState.CLOSED.value
        else:
            state = "up" if await self.guard.check() else "down"
            circuit = self.guard.breaker.state.value
        return CacheStatus(
            self.name,
            self.backend.kind,
            self.backend.target(),
            state,
            circuit,
            self.guard.pending_invalidations,
        )

    # -- reads ---------------------------------------------------------------------------
    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        *,
        codec: Codec[T],
        ttl: float | None = None,
        negative_ttl: float | None = None,
        tags: Sequence[str] = (),
    ) -> T | None:
        """The value for ``key``: from the cache, else from ``loader()`` (then stored).

        ``loader`` must read the database itself (open its own read-only unit of work):
        it runs only on a miss, and possibly on behalf of concurrent callers too.
        """
        if not self.enabled:
            self._count("bypass")
            return await loader()
        full_key = self._key_prefix + key
        full_tags = tuple(self._tag_prefix + t for t in tags) if tags else ()
        started = time.monotonic()
        found = await self.guard.get(full_key, self.schema_version, full_tags)
        if not isinstance(found, Lookup):
            # Backend unavailable: still one database read per burst of callers, so a
            # Redis outage does not turn into a stampede on the database.
            self._count(found)
            return await self._load_shared(
                full_key, None, full_tags, started, loader, None, ttl, negative_ttl
            )
        if found.value is not None:
            if found.value == NEGATIVE:
                self._count("hit")
                return None
            try:
                value = codec.decode(found.value)
            except ValueError:
                log.warning("cache %s: undecodable entry treated as a miss", self.name)
            else:
                self._count("hit")
                return value
        self._count("miss")
        return await self._load_shared(
            full_key, found.fences, full_tags, started, loader, codec, ttl, negative_ttl
        )

    async def _load_shared(  # noqa: PLR0917 - private, called from two places
        self,
        key: str,
        fences: tuple[bytes | None, ...] | None,
        tags: tuple[str, ...],
        started: float,
        loader: Callable[[], Awaitable[T | None]],
        codec: Codec[T] | None,
        ttl: float | None,
        negative_ttl: float | None,
    ) -> T | None:
        """Join a flight for ``key`` or start one; ``codec=None``: do not store."""
        future = self._flights.join(key, fences, started)
        if future is None:
            flight = self._flights.start(key, fences, tags)
            task = asyncio.create_task(
                self._fly(
                    flight,
                    loader,
                    codec,
                    self.config.ttl if ttl is None else ttl,
                    self.config.negative_ttl if negative_ttl is None else negative_ttl,
                )
            )
            self._fill_tasks.add(task)
            task.add_done_callback(self._fill_tasks.discard)
            future = flight.future
        # Shielded: a caller that gives up (client gone) must not cancel the shared read.
        result: T | None = await asyncio.shield(future)
        return result

    async def _fly(
        self,
        flight: Flight,
        loader: Callable[[], Awaitable[T | None]],
        codec: Codec[T] | None,
        ttl: float,
        negative_ttl: float,
    ) -> None:
        """One flight: lease, load, hand the value to the callers, then store it."""
        lease = secrets.token_hex(8)
        leased = codec is not None and await self.guard.lease(flight.key, lease, flight.tags)
        self._flights.reading(flight)
        try:
            value = await loader()
        except asyncio.CancelledError:  # the cache is closing
            self._flights.fail(flight)
            flight.future.cancel()
            raise
        except Exception as exc:  # the callers get the loader's own error (e.g. 503)
            self._flights.fail(flight)
            flight.future.set_exception(exc)
            return
        flight.future.set_result(value)
        self._flights.finish(flight)
        if not leased or codec is None or (value is None and negative_ttl <= 0):
            return
        try:
            payload = NEGATIVE if value is None else codec.encode(value)
        except (TypeError, ValueError):
            log.exception("cache %s: value for a key cannot be encoded", self.name)
            return
        await self.guard.fill(
            flight.key,
            self.schema_version,
            payload,
            lease=lease,
            ttl=negative_ttl if value is None else ttl,
            tags=flight.tags,
        )

    def _count(self, result: str) -> None:
        record_result(result)
        note_cache(result)  # the request's access-log line
        inc = self._results.get(result)
        if inc is not None:
            inc()

    # -- invalidation --------------------------------------------------------------------
    async def invalidate(self, keys: Iterable[str] = (), tags: Iterable[str] = ()) -> None:
        """Delete and fence ``keys`` and ``tags`` now (prefer `invalidate_on_commit`)."""
        full_keys = [self._key_prefix + k for k in dict.fromkeys(keys)]
        full_tags = [self._tag_prefix + t for t in dict.fromkeys(tags)]
        if not full_keys and not full_tags:
            return
        self._flights.forget(full_keys, full_tags)
        if self._invalidations is not None:
            self._invalidations.inc(len(full_keys) + len(full_tags))
        if self.enabled:
            await self.guard.invalidate(full_keys, full_tags, secrets.token_hex(8))

    def invalidate_on_commit(
        self, uow: CommitHooks, keys: Iterable[str] = (), tags: Iterable[str] = ()
    ) -> None:
        """Invalidate ``keys`` and ``tags`` after ``uow`` commits; nothing on rollback."""
        key_list, tag_list = list(keys), list(tags)

        async def after_commit() -> None:
            await self.invalidate(key_list, tag_list)

        uow.on_commit(after_commit)

    def __repr__(self) -> str:
        return f"Cache({self.name!r}, {self.backend.kind}, v{self.schema_version})"
