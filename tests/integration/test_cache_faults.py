"""Redis failing under the service: killed, frozen, slow, or losing an invalidation.
Every test runs its own redis-server, which it breaks."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from building_blocks.cache import BreakerState
from tests.integration.cache_app import RunningApp, cache_settings, new_user, running_app
from tests.support import RedisServer
from tests.support.aio import poll_until

pytestmark = pytest.mark.redis

_ids = itertools.count(1000)
TIMEOUT = 0.25  # the cache's per-call bound in these tests
BUSY_2S = """
local t0 = redis.call('TIME')
local start = t0[1] * 1000000 + t0[2]
while true do
  local t = redis.call('TIME')
  if t[1] * 1000000 + t[2] - start > 2000000 then return 1 end
end
"""


@pytest.fixture
async def service(app_db_url: str, private_redis: RedisServer) -> AsyncIterator[RunningApp]:
    settings = cache_settings(app_db_url, private_redis.url, cache_timeout_seconds=TIMEOUT)
    async with running_app(settings) as running:
        yield running


async def create_users(service: RunningApp, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = await service.client.post("/api/v1/users/", json=new_user(next(_ids)))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def breaker_state(service: RunningApp) -> BreakerState:
    state: BreakerState = service.app.state.cache.guard.breaker.state
    return state


class Load:
    """Concurrent clients reading users until stopped; records every outcome."""

    def __init__(self, service: RunningApp, ids: list[str], clients: int = 16) -> None:
        self.service = service
        self.ids = ids
        self.clients = clients
        self.outcomes: list[tuple[float, float, int, str]] = []  # start, seconds, status, x-cache
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _client(self, n: int) -> None:
        for i in itertools.count(n):
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                response = await self.service.client.get(
                    f"/api/v1/users/{self.ids[i % len(self.ids)]}"
                )
                status, source = response.status_code, response.headers.get("x-cache", "")
            except Exception as exc:  # a transport-level failure is a failed request too
                status, source = 0, type(exc).__name__
            self.outcomes.append((started, time.monotonic() - started, status, source))

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._client(n)) for n in range(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def failures(self) -> list[Any]:
        return [o for o in self.outcomes if o[2] != 200]

    def count(self, source: str, since: float = 0.0) -> int:
        return sum(1 for o in self.outcomes if o[3] == source and o[0] >= since)


async def test_redis_killed_mid_load_fails_no_request_and_caching_resumes_after_restart(
    service: RunningApp, private_redis: RedisServer
) -> None:
    ids = await create_users(service, 20)
    async with Load(service, ids) as load:
        await poll_until(lambda: load.count("hit") >= 200, timeout=30, what="a warm cache")
        private_redis.kill()
        await poll_until(
            lambda: breaker_state(service) is not BreakerState.CLOSED, what="the breaker to open"
        )
        opened = time.monotonic()
        await poll_until(lambda: load.count("bypass", opened) >= 200, timeout=30, what="bypasses")
        private_redis.start()
        restarted = time.monotonic()
        await poll_until(lambda: load.count("hit", restarted) >= 50, timeout=30, what="hits again")
    assert load.failures() == []
    # Recovered for good: once hits are back, no call meets a connection to the dead
    # server (the probe drops them) and the breaker does not flap.
    resumed = min(o[0] for o in load.outcomes if o[0] >= restarted and o[3] == "hit")
    assert load.count("error", resumed) == 0
    assert service.metric("cache_circuit_open") == 0
    assert service.metric("cache_requests_total", result="bypass") >= 200


async def test_once_the_breaker_is_open_a_frozen_redis_adds_no_latency(
    service: RunningApp, private_redis: RedisServer
) -> None:
    """SIGSTOP: calls hang until the timeout; once the breaker opens, none waits on Redis."""
    ids = await create_users(service, 20)
    async with Load(service, ids) as load:
        await poll_until(lambda: load.count("hit") >= 100, timeout=30, what="a warm cache")
        private_redis.pause()
        try:
            await poll_until(
                lambda: breaker_state(service) is BreakerState.OPEN, what="the breaker to open"
            )
            opened = time.monotonic()
            await poll_until(lambda: load.count("bypass", opened) >= 300, timeout=30, what="load")
        finally:
            private_redis.resume()
    assert load.failures() == []
    before = [o[1] for o in load.outcomes if o[0] < opened and o[3] == "error"]
    after = sorted(o[1] for o in load.outcomes if o[0] >= opened)
    assert before, "some requests should have met the frozen Redis"
    assert max(before) < TIMEOUT + 1.0  # bounded by the timeout, not hung
    # After the breaker opened, requests are database reads only: the median is far from
    # the timeout every one of them would otherwise pay.
    assert after[len(after) // 2] < TIMEOUT / 5, after[len(after) // 2]


async def test_a_slow_redis_never_holds_a_request_past_the_timeout(
    service: RunningApp, private_redis: RedisServer
) -> None:
    """A 2-second busy script blocks Redis as ``DEBUG SLEEP`` would (DEBUG is disabled
    by default since Redis 7); each request still answers within the bound."""
    (user_id,) = await create_users(service, 1)
    path = f"/api/v1/users/{user_id}"
    sleeper = await asyncio.create_subprocess_exec(
        "redis-cli",
        "-p",
        str(private_redis.port),
        "EVAL",
        BUSY_2S,
        "0",
        stdout=subprocess.DEVNULL,
    )
    try:
        await poll_until(lambda: not private_redis.ping(), what="Redis to stop answering")
        durations = []
        for _ in range(5):
            started = time.monotonic()
            response = await service.client.get(path)
            durations.append(time.monotonic() - started)
            assert response.status_code == 200
    finally:
        await asyncio.wait_for(sleeper.wait(), timeout=10)
    assert max(durations) < TIMEOUT + 1.0, durations


async def test_an_invalidation_lost_while_redis_refuses_writes_never_serves_stale_data(
    service: RunningApp, private_redis: RedisServer
) -> None:
    """``CLIENT PAUSE WRITE`` lets reads through but holds the invalidation past its
    timeout (the connection is then dropped and Redis never runs it). The service stops
    reading the cache, and replays the invalidation before reading it again."""
    (user_id,) = await create_users(service, 1)
    path = f"/api/v1/users/{user_id}"
    await poll_until(lambda: _is_hit(service, path), what="the user to be cached")
    private_redis.cli("CLIENT", "PAUSE", "1500", "WRITE")
    patch = await service.client.patch(path, json={"first_name": "Changed"})
    assert patch.status_code == 200
    assert breaker_state(service) is BreakerState.OPEN
    assert service.app.state.cache.guard.pending_invalidations > 0

    async def fresh_hit() -> bool:
        response = await service.client.get(path)
        assert response.json()["first_name"] == "Changed"  # on every single read
        return response.headers["x-cache"] == "hit"

    await poll_until(fresh_hit, timeout=15, what="a fresh cache hit after the pause")
    assert service.app.state.cache.guard.pending_invalidations == 0


async def _is_hit(service: RunningApp, path: str) -> bool:
    return bool((await service.client.get(path)).headers.get("x-cache") == "hit")
