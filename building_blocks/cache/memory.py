"""`InMemoryCacheBackend`: the embedded default (no Redis), per process, TTL + LRU.

Implements the same protocol as Redis (versions, fences, leases, tags) with plain dicts,
so the consistency rules hold identically when ``REDIS_URL`` is unset. Values are kept
as bytes, as in Redis: callers get fresh objects and nothing shared can be mutated.
Every method runs without awaiting, hence atomically within the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from building_blocks.cache.backend import Lookup

__all__ = ["InMemoryCacheBackend"]


@dataclass(slots=True)
class _Entry:
    values: dict[str, bytes] = field(default_factory=dict)
    expires: float = 0.0


@dataclass(slots=True)
class _Tag:
    members: set[str] = field(default_factory=set)
    expires: float = 0.0


class InMemoryCacheBackend:
    """At most ``max_entries`` entries; the least recently used go first."""

    kind = "memory"

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._leases: dict[str, dict[str, float]] = {}
        self._tags: dict[str, _Tag] = {}
        # Fences are kept apart from entries: LRU eviction must never drop one.
        self._fences: dict[str, tuple[bytes, float]] = {}

    def target(self) -> str:
        return "in-process"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
        self._leases.clear()
        self._tags.clear()
        self._fences.clear()

    async def ping(self) -> None:
        return None

    async def reconnect(self) -> None:
        return None

    def __len__(self) -> int:
        """Live entries holding a value (fences excluded)."""
        now = self._clock()
        return sum(1 for e in self._entries.values() if e.expires > now)

    # -- reads ---------------------------------------------------------------------------
    async def get(self, key: str, field: str, tags: Sequence[str] = ()) -> Lookup:
        fences = (self._fence(key), *(self._fence(_tag_fence_key(t)) for t in tags))
        entry = self._entry(key)
        if entry is None:
            return Lookup(None, fences)
        self._entries.move_to_end(key)
        return Lookup(entry.values.get(field), fences)

    # -- fills ---------------------------------------------------------------------------
    async def lease(self, key: str, token: str, ttl: float, tags: Sequence[str] = ()) -> bool:
        if self._fence(key) is not None or any(
            self._fence(_tag_fence_key(t)) is not None for t in tags
        ):
            return False
        now = self._clock()
        if len(self._leases) > self.max_entries:  # leases of loads that never filled
            self._leases = {k: v for k, v in self._leases.items() if max(v.values()) > now}
        leases = {t: e for t, e in self._leases.get(key, {}).items() if e > now}
        leases[token] = now + ttl
        self._leases[key] = leases
        for tag in tags:
            self._join(tag, key, now + ttl)
        return True

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
        now = self._clock()
        leases = self._leases.get(key, {})
        if leases.pop(lease, 0.0) <= now:
            return False
        if not leases:
            self._leases.pop(key, None)
        if any(self._live_tag(t) is None for t in tags):
            return False  # the tag vanished since the lease: its invalidation would miss us
        entry = self._entry(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.values[field] = value
        entry.expires = now + ttl
        self._entries.move_to_end(key)
        for tag in tags:
            self._join(tag, key, now + ttl)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    # -- invalidation --------------------------------------------------------------------
    async def invalidate(
        self, keys: Sequence[str], tags: Sequence[str], *, token: str, fence_ttl: float
    ) -> None:
        now = self._clock()
        fence = (token.encode(), now + fence_ttl)
        if len(self._fences) > self.max_entries:
            self._fences = {k: f for k, f in self._fences.items() if f[1] > now}
        for key in keys:
            self._entries.pop(key, None)
            self._leases.pop(key, None)
            if fence_ttl > 0:
                self._fences[key] = fence
        for tag in tags:
            for member in self._tags.pop(tag, _Tag()).members:
                self._entries.pop(member, None)
                self._leases.pop(member, None)
            if fence_ttl > 0:
                self._fences[_tag_fence_key(tag)] = fence

    async def purge(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
        for key in [k for k in self._leases if k.startswith(prefix)]:
            del self._leases[key]
        for tag in [t for t in self._tags if t.startswith(prefix)]:
            del self._tags[tag]

    # -- helpers -------------------------------------------------------------------------
    def _entry(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= self._clock():
            del self._entries[key]
            return None
        return entry

    def _fence(self, name: str) -> bytes | None:
        fence = self._fences.get(name)
        if fence is None:
            return None
        if fence[1] <= self._clock():
            del self._fences[name]
            return None
        return fence[0]

    def _live_tag(self, tag: str) -> _Tag | None:
        found = self._tags.get(tag)
        if found is not None and found.expires <= self._clock():
            del self._tags[tag]
            return None
        return found

    def _join(self, tag: str, key: str, until: float) -> None:
        # A tag outlives its members, so that invalidating it always finds them.
        found = self._live_tag(tag)
        if found is None:
            found = self._tags[tag] = _Tag()
        found.members.add(key)
        found.expires = max(found.expires, until)


def _tag_fence_key(tag: str) -> str:
    # Tags and keys live in different namespaces (the cache prefixes them differently);
    # the suffix keeps a tag's fence apart from a key's anyway.
    return tag + "!fence"
