"""`CacheBackend`: the storage operations the cache needs, and nothing else.

Not a generic get/set store: the operations carry the consistency protocol (see
``docs/cache.md``) so that each backend applies it atomically.

- An **entry** lives under a key and holds one value per schema version (``field``): a
  deploy that changes the cached shape reads its own field only, while an invalidation
  removes every version at once (old and new instances share invalidations during a
  rolling deploy).
- A **fence** is left by an invalidation for ``fence_ttl`` seconds on each key and tag
  it invalidates. A fenced key or tag grants no lease, so nothing read during that
  window (possibly from a lagging replica) is stored.
- A **lease** is taken by a loader before it reads the database and must still exist
  when it stores the value. Invalidations delete leases, so a value read before a write
  is never stored after it, however late the store arrives.
- A **tag** (``users:list``) names a group of entries invalidated together (list
  queries). Tagged entries join the tag when their lease is granted.

Empty bytes are a valid value (the cache stores "not found" that way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CacheBackend", "CacheBusyError", "Lookup"]


class CacheBusyError(TimeoutError):
    """No connection to the backend came free in time: this process is saturated (more
    concurrent lookups than connections), the backend itself is not at fault. The
    lookup answers from the database, but the circuit breaker does not count it."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a backend found: the value for the field (or None), and the fences seen.

    ``fences`` identifies the invalidations that currently fence the key and its tags:
    two lookups with different fences straddle an invalidation.
    """

    value: bytes | None
    fences: tuple[bytes | None, ...] = ()


class CacheBackend(Protocol):
    """A place to keep entries. Errors propagate (the cache's guard handles them)."""

    @property
    def kind(self) -> str:
        """``redis`` or ``memory``: for health output and span attributes."""
        ...

    def target(self) -> str:
        """Where the data lives, for humans; never a password."""
        ...

    async def start(self) -> None:
        """Prepare clients; must not require the backend to be reachable."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise unless the backend answers now."""

    async def reconnect(self) -> None:
        """Drop idle connections: called before a recovery probe, since connections made
        before an outage are dead and would each fail once after it."""

    async def get(self, key: str, field: str, tags: Sequence[str] = ()) -> Lookup: ...

    async def lease(self, key: str, token: str, ttl: float, tags: Sequence[str] = ()) -> bool:
        """Grant lease ``token`` on ``key`` unless the key or one of ``tags`` is fenced."""
        ...

    async def fill(
        self,
        key: str,
        field: str,
        value: bytes,
        *,
        lease: str,
        ttl: float,
        tags: Sequence[str] = (),
    ) -> bool:
        """Store ``value`` if ``lease`` still holds; False when it was revoked."""
        ...

    async def invalidate(
        self, keys: Sequence[str], tags: Sequence[str], *, token: str, fence_ttl: float
    ) -> None:
        """Delete ``keys`` and every entry of ``tags`` with their leases; fence them all
        for ``fence_ttl`` seconds (0: no fence) with ``token``."""

    async def purge(self, prefix: str) -> None:
        """Delete every entry and lease under ``prefix`` (fences stay): the fallback when
        invalidations were lost and cannot be replayed one by one."""
