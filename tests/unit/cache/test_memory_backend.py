"""The in-process backend: TTL, LRU, versions, leases, fences and tags."""

from __future__ import annotations

import pytest

from building_blocks.cache import InMemoryCacheBackend


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(clock: Clock) -> InMemoryCacheBackend:
    return InMemoryCacheBackend(max_entries=3, clock=clock)


async def store(
    backend: InMemoryCacheBackend,
    key: str,
    value: bytes,
    *,
    ttl: float = 10.0,
    tags: tuple[str, ...] = (),
) -> bool:
    assert await backend.lease(key, "lease", 5.0, tags)
    return await backend.fill(key, "1", value, lease="lease", ttl=ttl, tags=tags)


async def test_entries_expire_after_their_ttl(backend: InMemoryCacheBackend, clock: Clock) -> None:
    assert await store(backend, "k", b"v", ttl=2.0)
    assert (await backend.get("k", "1")).value == b"v"
    clock.now += 2.0
    assert (await backend.get("k", "1")).value is None


async def test_least_recently_used_entry_is_evicted(backend: InMemoryCacheBackend) -> None:
    for key in ("a", "b", "c"):
        await store(backend, key, key.encode())
    await backend.get("a", "1")  # a is now the most recently used
    await store(backend, "d", b"d")
    assert (await backend.get("b", "1")).value is None
    assert (await backend.get("a", "1")).value == b"a"
    assert len(backend) == 3


async def test_each_schema_version_reads_its_own_field(backend: InMemoryCacheBackend) -> None:
    await store(backend, "k", b"v1")
    assert (await backend.get("k", "2")).value is None
    assert await backend.lease("k", "l2", 5.0)
    assert await backend.fill("k", "2", b"v2", lease="l2", ttl=10.0)
    assert (await backend.get("k", "1")).value == b"v1"
    await backend.invalidate(["k"], [], token="t", fence_ttl=0)
    assert (await backend.get("k", "1")).value is None
    assert (await backend.get("k", "2")).value is None


async def test_invalidation_revokes_leases_granted_before_it(backend: InMemoryCacheBackend) -> None:
    assert await backend.lease("k", "before", 5.0)
    await backend.invalidate(["k"], [], token="t", fence_ttl=0)
    assert not await backend.fill("k", "1", b"old", lease="before", ttl=10.0)
    assert (await backend.get("k", "1")).value is None


async def test_a_fence_refuses_leases_until_it_expires(
    backend: InMemoryCacheBackend, clock: Clock
) -> None:
    await backend.invalidate(["k"], [], token="t1", fence_ttl=5.0)
    assert (await backend.get("k", "1")).fences == (b"t1",)
    assert not await backend.lease("k", "l", 5.0)
    clock.now += 5.0
    assert (await backend.get("k", "1")).fences == (None,)
    assert await backend.lease("k", "l", 5.0)


async def test_invalidating_a_tag_drops_its_entries_and_fences_it(
    backend: InMemoryCacheBackend,
) -> None:
    await store(backend, "page1", b"p1", tags=("lists",))
    await store(backend, "page2", b"p2", tags=("lists",))
    assert await backend.lease("page3", "pending", 5.0, ("lists",))
    await backend.invalidate([], ["lists"], token="t", fence_ttl=1.0)
    assert (await backend.get("page1", "1")).value is None
    assert (await backend.get("page2", "1", ("lists",))).fences == (None, b"t")
    assert not await backend.fill("page3", "1", b"old", lease="pending", ttl=10.0, tags=("lists",))
    assert not await backend.lease("page1", "l", 5.0, ("lists",))


async def test_an_expired_lease_cannot_fill(backend: InMemoryCacheBackend, clock: Clock) -> None:
    assert await backend.lease("k", "l", 1.0)
    clock.now += 1.0
    assert not await backend.fill("k", "1", b"v", lease="l", ttl=10.0)


async def test_purge_drops_entries_but_keeps_fences(backend: InMemoryCacheBackend) -> None:
    await store(backend, "ns:a", b"a")
    await backend.invalidate(["ns:b"], [], token="t", fence_ttl=5.0)
    await backend.purge("ns:")
    assert (await backend.get("ns:a", "1")).value is None
    assert not await backend.lease("ns:b", "l", 5.0)
