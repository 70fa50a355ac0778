"""The cache on a real redis-server: hits, expiry, versions, leases, fences, the pool."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest
import redis.asyncio
import redis.exceptions

from building_blocks.cache import (
    Cache,
    CacheConfig,
    JsonCodec,
    RedisCacheBackend,
    collect_results,
)
from tests.support import RedisServer
from tests.support.aio import poll_until

pytestmark = pytest.mark.redis

CODEC = JsonCodec[dict[str, int]](dict[str, int])
_namespaces = itertools.count()


@pytest.fixture
async def backend(redis_server: RedisServer) -> AsyncIterator[RedisCacheBackend]:
    backend = RedisCacheBackend(redis_server.url, timeout=1.0)
    await backend.start()
    yield backend
    await backend.close()


def make_cache(
    backend: RedisCacheBackend, namespace: str, version: str = "1", **config: float
) -> Cache:
    return Cache(
        backend,
        namespace=namespace,
        schema_version=version,
        config=CacheConfig(**{"fence_seconds": 0.5, **config}),  # type: ignore[arg-type]
    )


def fresh_namespace() -> str:
    return f"it{next(_namespaces)}"


class Loader:
    def __init__(self, value: int = 1) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> dict[str, int] | None:
        self.calls += 1
        await asyncio.sleep(0.005)  # a database read takes a while
        return {"v": self.value}


async def read(
    cache: Cache, key: str, loader: Loader, ttl: float | None = None, tags: Sequence[str] = ()
) -> tuple[object, str]:
    with collect_results() as results:
        value = await cache.get_or_load(key, loader, codec=CODEC, ttl=ttl, tags=tags)
    return value, results[-1]


async def test_miss_then_hit_then_expiry(backend: RedisCacheBackend) -> None:
    cache = make_cache(backend, fresh_namespace())
    loader = Loader()
    assert await read(cache, "k", loader, ttl=0.5) == ({"v": 1}, "miss")

    async def hit() -> bool:
        return (await read(cache, "k", loader, ttl=0.5))[1] == "hit"

    await poll_until(hit, what="the entry to be stored")
    calls = loader.calls
    assert await read(cache, "k", loader, ttl=0.5) == ({"v": 1}, "hit")
    assert loader.calls == calls

    async def expired() -> bool:
        return (await read(cache, "k", loader, ttl=0.5))[1] == "miss"

    await poll_until(expired, what="the entry to expire")


async def test_entries_are_namespaced_json_under_the_schema_version(
    backend: RedisCacheBackend, redis_server: RedisServer
) -> None:
    namespace = fresh_namespace()
    cache = make_cache(backend, namespace, version="7")
    await cache.get_or_load("user:1", Loader(5), codec=CODEC)
    await poll_until(
        lambda: redis_server.cli("HGET", f"{namespace}:k:user:1", "7") != "", what="fill"
    )
    assert orjson.loads(redis_server.cli("HGET", f"{namespace}:k:user:1", "7")) == {"v": 5}


async def test_a_new_schema_version_never_reads_old_entries_but_shares_invalidations(
    backend: RedisCacheBackend,
) -> None:
    namespace = fresh_namespace()
    old, new = make_cache(backend, namespace, "1"), make_cache(backend, namespace, "2")
    old_loader, new_loader = Loader(1), Loader(2)

    async def both_hit() -> bool:
        return (await read(old, "k", old_loader))[1] == "hit" and (
            await read(new, "k", new_loader)
        )[1] == "hit"

    await poll_until(both_hit, what="both versions to be cached")
    assert (await read(old, "k", old_loader))[0] == {"v": 1}
    assert (await read(new, "k", new_loader))[0] == {"v": 2}
    await old.invalidate(keys=["k"])  # an old instance's write reaches the new version
    assert (await read(new, "k", new_loader))[1] == "miss"


async def test_an_invalidation_revokes_a_lease_taken_before_it(backend: RedisCacheBackend) -> None:
    key = f"{fresh_namespace()}:k:k"
    assert await backend.lease(key, "before", 5.0)
    await backend.invalidate([key], [], token="t", fence_ttl=0)
    assert not await backend.fill(key, "1", b"{}", lease="before", ttl=10.0)
    assert (await backend.get(key, "1")).value is None


async def test_a_fence_refuses_leases_for_its_lifetime_only(backend: RedisCacheBackend) -> None:
    key = f"{fresh_namespace()}:k:k"
    await backend.invalidate([key], [], token="t1", fence_ttl=0.3)
    assert (await backend.get(key, "1")).fences == (b"t1",)
    assert not await backend.lease(key, "l", 5.0)
    await poll_until(lambda: backend.lease(key, "l", 5.0), what="the fence to expire")


async def test_invalidating_a_tag_drops_every_tagged_entry(backend: RedisCacheBackend) -> None:
    cache = make_cache(backend, fresh_namespace(), fence_seconds=0)
    loader = Loader()

    async def pages_cached() -> bool:
        results = [await read(cache, f"page{i}", loader, tags=["lists"]) for i in range(3)]
        return all(r[1] == "hit" for r in results)

    await poll_until(pages_cached, what="three pages cached")
    await cache.invalidate(tags=["lists"])
    assert [(await read(cache, f"page{i}", loader))[1] for i in range(3)] == ["miss"] * 3


async def test_many_more_concurrent_reads_than_connections_wait_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    """256 concurrent reads on a pool of 4 connections: none fails (they queue)."""
    backend = RedisCacheBackend(redis_server.url, timeout=2.0, max_connections=4)
    await backend.start()
    cache = make_cache(backend, fresh_namespace())
    try:
        loader = Loader()

        async def hit() -> bool:
            return (await read(cache, "k", loader))[1] == "hit"

        await poll_until(hit, what="the entry to be stored")
        results = await asyncio.gather(*(read(cache, "k", loader) for _ in range(256)))
        assert {r for _, r in results} == {"hit"}
    finally:
        await cache.close()

    # Control: the same load on redis-py's default pool of the same size does fail.
    plain = redis.asyncio.Redis.from_url(redis_server.url, max_connections=4)
    try:
        outcomes = await asyncio.gather(
            *(plain.execute_command("HMGET", "x", "1", "!fence") for _ in range(256)),  # type: ignore[no-untyped-call]
            return_exceptions=True,
        )
    finally:
        await plain.aclose()
    assert any(isinstance(o, redis.exceptions.ConnectionError) for o in outcomes)


async def test_lookups_queued_for_a_busy_pool_fall_back_without_opening_the_breaker(
    redis_server: RedisServer,
) -> None:
    """More concurrent lookups than connections is this process's overload, not a failing
    Redis: past the pool wait bound they fall back, and the breaker does not open (lookups
    through the pool: ``rediss://`` URLs, or ``pipeline_lookups=False``)."""
    backend = RedisCacheBackend(
        redis_server.url,
        timeout=1.0,
        max_connections=1,
        pool_timeout=0.05,
        pipeline_lookups=False,
    )
    await backend.start()
    try:
        cache = make_cache(backend, fresh_namespace(), failure_threshold=2)
        pool = backend.client.connection_pool
        held = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            loader = Loader(7)
            with collect_results() as results:
                for _ in range(3):
                    assert await cache.get_or_load("k", loader, codec=CODEC) == {"v": 7}
            assert results == ["error", "error", "error"]
            assert loader.calls == 3
            assert cache.guard.breaker.state.value == "closed"
        finally:
            await pool.release(held)
        with collect_results() as results:
            await cache.get_or_load("k", loader, codec=CODEC)
        assert results == ["miss"]  # the pool is free again: Redis is used at once
    finally:
        await backend.close()


async def test_pipelined_lookups_need_no_pool_connection(redis_server: RedisServer) -> None:
    """Lookups share one auto-pipelined connection: with every pool connection held (the
    pool path would queue, then fall back), 200 concurrent lookups are all answered by
    Redis."""
    backend = RedisCacheBackend(redis_server.url, timeout=1.0, max_connections=1, pool_timeout=0.05)
    await backend.start()
    try:
        cache = make_cache(backend, fresh_namespace())
        loader = Loader(7)
        assert await read(cache, "k", loader) == ({"v": 7}, "miss")

        async def hit() -> bool:
            return (await read(cache, "k", loader))[1] == "hit"

        await poll_until(hit, what="the entry to be stored")
        loads = loader.calls
        pool = backend.client.connection_pool
        held = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:

            async def lookup() -> dict[str, int] | None:
                return await cache.get_or_load("k", loader, codec=CODEC)

            with collect_results() as results:
                values = await asyncio.gather(*(lookup() for _ in range(200)))
        finally:
            await pool.release(held)
        assert values == [{"v": 7}] * 200
        assert results == ["hit"] * 200
        assert loader.calls == loads
    finally:
        await backend.close()
