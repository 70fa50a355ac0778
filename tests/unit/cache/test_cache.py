"""`Cache` on the in-process backend and its faulty twin: the read and write protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from building_blocks.cache import (
    BreakerState,
    Cache,
    CacheConfig,
    InMemoryCacheBackend,
    JsonCodec,
    collect_results,
)
from building_blocks.cache.testing import FaultyCacheBackend
from building_blocks.errors import UnavailableError
from building_blocks.telemetry import Metrics
from building_blocks.uow import InMemoryTransaction, InMemoryUnitOfWorkFactory
from tests.support.aio import poll_until

CODEC = JsonCodec[dict[str, int]](dict[str, int])
CONFIG = CacheConfig(ttl=60, negative_ttl=30, fence_seconds=0.2, recovery_seconds=0.05)


class Loader:
    """Counts database reads; returns ``value`` (``None``: not found)."""

    def __init__(self, value: dict[str, int] | None = None, delay: float = 0.0) -> None:
        self.value = value if value is not None else {"v": 1}
        self.found = True
        self.calls = 0
        self.delay = delay
        self.release: asyncio.Event | None = None

    async def __call__(self) -> dict[str, int] | None:
        self.calls += 1
        if self.release is not None:
            await self.release.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        return dict(self.value) if self.found else None


@pytest.fixture
def backend() -> FaultyCacheBackend:
    return FaultyCacheBackend(InMemoryCacheBackend())


@pytest.fixture
async def cache(backend: FaultyCacheBackend) -> AsyncIterator[Cache]:
    cache = Cache(backend, namespace="test", config=CONFIG)
    await cache.start()
    yield cache
    await cache.close()


async def get(
    cache: Cache, key: str, loader: Callable[[], Awaitable[dict[str, int] | None]]
) -> dict[str, int] | None:
    return await cache.get_or_load(key, loader, codec=CODEC)


async def stored(backend: FaultyCacheBackend, key: str) -> bool:
    return (await backend.inner.get(f"test:k:{key}", "1")).value is not None


async def warm(cache: Cache, backend: FaultyCacheBackend, key: str, loader: Loader) -> None:
    await cache.get_or_load(key, loader, codec=CODEC)
    await poll_until(lambda: stored(backend, key), what="the fill")


async def test_second_read_is_a_hit_that_skips_the_loader(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    loader = Loader()
    await warm(cache, backend, "k", loader)
    with collect_results() as results:
        assert await cache.get_or_load("k", loader, codec=CODEC) == {"v": 1}
    assert loader.calls == 1
    assert results == ["hit"]


async def test_concurrent_misses_share_one_load(cache: Cache) -> None:
    loader = Loader(delay=0.01)
    values = await asyncio.gather(*(get(cache, "k", loader) for _ in range(100)))
    assert loader.calls == 1
    assert all(v == {"v": 1} for v in values)


async def test_not_found_is_cached_with_its_own_ttl(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    loader = Loader()
    loader.found = False
    assert await cache.get_or_load("k", loader, codec=CODEC, negative_ttl=30) is None
    await poll_until(lambda: stored(backend, "k"), what="the negative entry")
    assert await cache.get_or_load("k", loader, codec=CODEC) is None
    assert loader.calls == 1


async def test_not_found_is_not_cached_when_negative_ttl_is_zero(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    loader = Loader()
    loader.found = False
    await cache.get_or_load("k", loader, codec=CODEC, negative_ttl=0)
    await poll_until(lambda: not cache._fill_tasks, what="the flight to end")
    await cache.get_or_load("k", loader, codec=CODEC, negative_ttl=0)
    assert loader.calls == 2


async def test_loader_errors_reach_every_caller_and_are_not_cached(cache: Cache) -> None:
    calls = 0

    async def failing() -> dict[str, int] | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise UnavailableError("database down")

    outcomes = await asyncio.gather(
        *(get(cache, "k", failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, UnavailableError) for o in outcomes)
    with pytest.raises(UnavailableError):
        await cache.get_or_load("k", failing, codec=CODEC)
    assert calls == 2


def _uow_factory() -> InMemoryUnitOfWorkFactory[InMemoryTransaction]:
    return InMemoryUnitOfWorkFactory(lambda transaction: transaction)


async def test_commit_invalidates_the_registered_keys(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    loader = Loader()
    await warm(cache, backend, "k", loader)
    async with _uow_factory()() as uow:
        cache.invalidate_on_commit(uow, keys=["k"])
        assert await stored(backend, "k")  # nothing happens before the commit
        await uow.commit()
    assert not await stored(backend, "k")


async def test_rollback_leaves_the_cache_untouched(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    loader = Loader()
    await warm(cache, backend, "k", loader)

    async def failing_write() -> None:
        async with _uow_factory()() as uow:
            cache.invalidate_on_commit(uow, keys=["k"], tags=["lists"])
            raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError, match="the write failed"):
        await failing_write()
    assert await stored(backend, "k")
    assert backend.calls["invalidate"] == 0


async def test_a_load_that_began_before_an_invalidation_is_neither_stored_nor_shared(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    old = Loader({"v": 1})
    old.release = asyncio.Event()
    first = asyncio.create_task(get(cache, "k", old))
    await poll_until(lambda: old.calls == 1, what="the first load to start")
    await cache.invalidate(keys=["k"])
    new = Loader({"v": 2})
    assert await cache.get_or_load("k", new, codec=CODEC) == {"v": 2}  # did not join
    old.release.set()
    assert await first == {"v": 1}
    await poll_until(lambda: not cache._fill_tasks, what="the flights to end")
    assert not await stored(backend, "k")  # the old value's lease was revoked


async def test_fences_block_fills_until_they_expire(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    await cache.invalidate(keys=["k"])
    loader = Loader()
    await cache.get_or_load("k", loader, codec=CODEC)
    await poll_until(lambda: not cache._fill_tasks, what="the flight to end")
    assert not await stored(backend, "k")
    await poll_until(
        lambda: backend.inner.lease("test:k:k", "probe", 1.0), what="the fence to expire"
    )


async def test_backend_failures_fall_back_to_the_loader_then_open_the_breaker(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    backend.down = True
    loader = Loader()
    with collect_results() as results:
        for _ in range(10):
            assert await cache.get_or_load("k", loader, codec=CODEC) == {"v": 1}
    assert results[: CONFIG.failure_threshold] == ["error"] * CONFIG.failure_threshold
    assert set(results[CONFIG.failure_threshold :]) == {"bypass"}
    assert cache.guard.breaker.state is not BreakerState.CLOSED
    assert backend.calls["get"] == CONFIG.failure_threshold  # open: no more calls


async def test_caching_resumes_by_itself_when_the_backend_recovers(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    backend.down = True
    loader = Loader()
    for _ in range(CONFIG.failure_threshold):
        await cache.get_or_load("k", loader, codec=CODEC)
    backend.down = False

    async def hits() -> bool:
        with collect_results() as results:
            await cache.get_or_load("k", loader, codec=CODEC)
        return results == ["hit"]

    await poll_until(hits, what="a cache hit after recovery")


async def test_an_invalidation_missed_while_down_is_replayed_before_reads_resume(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    await warm(cache, backend, "k", Loader({"v": 1}))
    backend.down = True
    await cache.invalidate(keys=["k"])  # lost: the backend is down
    assert cache.guard.breaker.state is BreakerState.OPEN
    assert await cache.get_or_load("k", Loader({"v": 2}), codec=CODEC) == {"v": 2}
    backend.down = False

    async def closed() -> bool:
        return (await cache.status()).circuit == "closed"  # status() starts due probes

    await poll_until(closed, what="the breaker to close")
    assert not await stored(backend, "k")
    assert await cache.get_or_load("k", Loader({"v": 2}), codec=CODEC) == {"v": 2}


async def test_a_disabled_cache_always_loads_and_says_bypass(backend: FaultyCacheBackend) -> None:
    cache = Cache(backend, namespace="test", enabled=False)
    loader = Loader()
    with collect_results() as results:
        await cache.get_or_load("k", loader, codec=CODEC)
        await cache.get_or_load("k", loader, codec=CODEC)
    assert loader.calls == 2
    assert results == ["bypass", "bypass"]
    assert sum(backend.calls.values()) == 0


async def test_requests_and_invalidations_are_counted_in_metrics(
    backend: FaultyCacheBackend,
) -> None:
    registry = CollectorRegistry()
    cache = Cache(backend, namespace="test", config=CONFIG, metrics=Metrics(registry))
    loader = Loader()
    await warm(cache, backend, "k", loader)
    await cache.get_or_load("k", loader, codec=CODEC)
    await cache.invalidate(keys=["k"], tags=["t"])

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"cache_name": "test", **labels})

    assert sample("cache_requests_total", result="miss") == 1
    assert sample("cache_requests_total", result="hit") == 1
    assert sample("cache_invalidations_total") == 2
    assert sample("cache_circuit_open") == 0
    assert sample("cache_operation_duration_seconds_count", operation="get") == 2
    await cache.close()


async def test_reads_that_bypass_a_down_backend_still_share_one_load(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    backend.down = True
    for _ in range(CONFIG.failure_threshold):
        await get(cache, "warm-up", Loader())
    assert cache.guard.breaker.state is BreakerState.OPEN
    loader = Loader(delay=0.01)
    values = await asyncio.gather(*(get(cache, "k", loader) for _ in range(50)))
    assert loader.calls == 1
    assert all(v == {"v": 1} for v in values)


async def test_a_bypassing_read_never_joins_a_load_that_began_before_it(
    cache: Cache, backend: FaultyCacheBackend
) -> None:
    backend.down = True
    for _ in range(CONFIG.failure_threshold):
        await get(cache, "warm-up", Loader())
    early = Loader({"v": 1})
    early.release = asyncio.Event()
    first = asyncio.create_task(get(cache, "k", early))
    await poll_until(lambda: early.calls == 1, what="the early load to start")
    late = Loader({"v": 2})
    assert await get(cache, "k", late) == {"v": 2}
    early.release.set()
    assert await first == {"v": 1}
