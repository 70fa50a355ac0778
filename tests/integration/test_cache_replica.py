"""The fence: after a write, a miss served by a lagging replica must not be cached.

Reads go to a streaming replica whose replay the test pauses. Without the fence, the
first read after an update stores the replica's old row and keeps serving it after the
replica has caught up; with it, that read is answered but not stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.migrations import upgrade_sync
from building_blocks.cache import Cache, CacheConfig, RedisCacheBackend
from building_blocks.db import SQLAlchemySession
from building_blocks.db.routing import Route
from building_blocks.db.session import PRIMARY
from tests.integration.cache_app import RunningApp, cache_settings, new_user, running_app
from tests.support import PostgresReplica, PostgresServer, RedisServer
from tests.support.aio import poll_until
from tests.support.pytest_helpers import started

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

FENCE = 3.0  # comfortably longer than the replica pause below


class ReadsOnReplica(SQLAlchemySession):
    """Every read-only unit of work on ``replica-0`` (the routing under test elsewhere)."""

    def _route(self, *, read_only: bool) -> Route:
        # Even past the lag bound and despite the writer's consistency token: the test
        # needs reads served stale by the paused replica.
        if read_only:
            return Route("replica-0", self.engines["replica-0"])
        return Route(PRIMARY, self.primary)


@pytest.fixture(scope="module")
def cluster(servers_dir: Path) -> Iterator[tuple[PostgresServer, PostgresReplica]]:
    """A private primary and replica: this module pauses the replica's replay."""
    primary = started(lambda: PostgresServer.start_primary(servers_dir))
    with primary, PostgresServer.start_replica(primary, servers_dir) as replica:
        primary.create_database("cache")
        upgrade_sync(primary.url(database="cache"))
        replica.wait_replay_caught_up()
        yield primary, replica


@pytest.fixture(params=[FENCE, 0.0], ids=["fence", "no-fence"])
async def service(
    request: pytest.FixtureRequest,
    cluster: tuple[PostgresServer, PostgresReplica],
    redis_server: RedisServer,
) -> AsyncIterator[RunningApp]:
    primary, replica = cluster
    settings = cache_settings(
        primary.url(database="cache"),
        redis_server.url,
        database_replica_urls=[replica.url(database="cache")],
    )
    cache = Cache(
        RedisCacheBackend(redis_server.url),
        namespace=settings.service_name,
        config=CacheConfig(fence_seconds=request.param),
    )
    session = ReadsOnReplica(settings.database())
    async with running_app(settings, database=session, cache=cache) as running:
        yield running


async def test_a_read_from_a_lagging_replica_after_a_write_is_not_cached(
    service: RunningApp, cluster: tuple[PostgresServer, PostgresReplica]
) -> None:
    _, replica = cluster
    fenced = service.app.state.cache.config.fence_seconds > 0
    created = await service.client.post("/api/v1/users/", json=new_user(f"r{int(fenced)}"))
    assert created.status_code == 201
    path = f"/api/v1/users/{created.json()['id']}"
    await asyncio.to_thread(replica.wait_replay_caught_up)

    async def hit() -> bool:
        return (await service.client.get(path)).headers["x-cache"] == "hit"

    await poll_until(hit, what="the user cached from the replica")
    await asyncio.to_thread(replica.pause_replay)
    try:
        patch = await service.client.patch(path, json={"first_name": "Grace"})
        assert patch.status_code == 200
        # The replica still has the old row: the cache may not do better than it...
        lagging = await service.client.get(path)
        assert lagging.json()["first_name"] == "Ada"
        # ...but must not keep it: let any store of that read land first.
        await poll_until(lambda: not service.app.state.cache._fill_tasks, what="the fill")
    finally:
        await asyncio.to_thread(replica.resume_replay)
    await asyncio.to_thread(replica.wait_replay_caught_up)
    caught_up = (await service.client.get(path)).json()["first_name"]
    if fenced:
        assert caught_up == "Grace"
    else:  # the control: proves this test sees the stale entry when there is one
        assert caught_up == "Ada"
