"""Test doubles for `CacheBackend`, shipped beside it (as httpx ships its MockTransport).

`FaultyCacheBackend` wraps a real backend (usually `InMemoryCacheBackend`) and fails or
stalls on demand, for unit tests of the fail-open behaviour; integration tests use a
real redis-server instead.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from building_blocks.cache.backend import CacheBackend, Lookup
from building_blocks.cache.memory import InMemoryCacheBackend

__all__ = ["CacheDownError", "FaultyCacheBackend"]


class CacheDownError(ConnectionError):
    """What `FaultyCacheBackend` raises while ``down`` is set."""


class FaultyCacheBackend:
    """Delegates to ``inner``; raises `CacheDownError` while ``down``; waits ``delay`` seconds
    before each call; counts calls by operation in ``calls``."""

    def __init__(self, inner: CacheBackend | None = None, *, delay: float = 0.0) -> None:
        self.inner: CacheBackend = inner or InMemoryCacheBackend()
        self.down = False
        self.delay = delay
        self.calls: Counter[str] = Counter()

    @property
    def kind(self) -> str:
        return self.inner.kind

    def target(self) -> str:
        return self.inner.target()

    async def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise CacheDownError(f"cache backend is down ({operation})")

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self._enter("ping")
        await self.inner.ping()

    async def reconnect(self) -> None:
        self.calls["reconnect"] += 1
        await self.inner.reconnect()

    async def get(self, key: str, field: str, tags: Sequence[str] = ()) -> Lookup:
        await self._enter("get")
        return await self.inner.get(key, field, tags)

    async def lease(self, key: str, token: str, ttl: float, tags: Sequence[str] = ()) -> bool:
        await self._enter("lease")
        return await self.inner.lease(key, token, ttl, tags)

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
        await self._enter("fill")
        return await self.inner.fill(key, field, value, lease=lease, ttl=ttl, tags=tags)

    async def invalidate(
        self, keys: Sequence[str], tags: Sequence[str], *, token: str, fence_ttl: float
    ) -> None:
        await self._enter("invalidate")
        await self.inner.invalidate(keys, tags, token=token, fence_ttl=fence_ttl)

    async def purge(self, prefix: str) -> None:
        await self._enter("purge")
        await self.inner.purge(prefix)
