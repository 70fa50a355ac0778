"""The users service reading through Redis: hits skip the database, writes are never
hidden by the cache, rollbacks leave it alone, cold keys cost one query."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.cache_app import RunningApp, cache_settings, new_user, running_app
from tests.support import RedisServer
from tests.support.aio import poll_until

pytestmark = pytest.mark.redis

_ids = itertools.count()


@pytest.fixture
async def service(app_db_url: str, redis_server: RedisServer) -> AsyncIterator[RunningApp]:
    async with running_app(cache_settings(app_db_url, redis_server.url)) as running:
        yield running


async def create(service: RunningApp) -> dict[str, Any]:
    response = await service.client.post("/api/v1/users/", json=new_user(next(_ids)))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_hit(service: RunningApp, path: str, **params: Any) -> None:
    async def hit() -> bool:
        response = await service.client.get(path, params=params)
        return bool(response.headers.get("x-cache") == "hit")

    await poll_until(hit, what=f"{path} to be served from the cache")


async def test_a_cached_read_runs_no_query_and_says_hit(service: RunningApp) -> None:
    user = await create(service)
    path = f"/api/v1/users/{user['id']}"
    first = await service.client.get(path)
    assert first.headers["x-cache"] == "miss"
    await until_hit(service, path)
    before = service.user_queries()
    response = await service.client.get(path)
    assert response.status_code == 200
    assert response.json() == user
    assert response.headers["x-cache"] == "hit"
    assert response.headers["etag"] == '"1"'
    assert service.user_queries() == before
    assert service.metric("cache_requests_total", result="hit") >= 1


async def test_an_update_is_visible_at_once_by_id_email_and_list(service: RunningApp) -> None:
    user = await create(service)
    path = f"/api/v1/users/{user['id']}"
    old_email, lists = user["email"], "/api/v1/users/"
    await until_hit(service, path)
    await until_hit(service, lists, limit=100)
    await until_hit(service, lists, email=old_email.upper())
    for round_ in range(5):  # again and again: a race would show up sooner or later
        email = f"renamed{round_}.{user['id']}@example.com"
        patch = await service.client.patch(path, json={"first_name": f"Bo{round_}", "email": email})
        assert patch.status_code == 200, patch.text
        got = (await service.client.get(path)).json()
        assert (got["first_name"], got["email"]) == (f"Bo{round_}", email)
        listed = (await service.client.get(lists, params={"limit": 100})).json()["items"]
        assert [u["first_name"] for u in listed if u["id"] == user["id"]] == [f"Bo{round_}"]
        by_new = (await service.client.get(lists, params={"email": email})).json()["items"]
        assert [u["id"] for u in by_new] == [user["id"]]
        by_old = (await service.client.get(lists, params={"email": old_email})).json()["items"]
        assert by_old == []
        old_email = email
        await until_hit(service, path)


async def test_a_delete_is_visible_at_once(service: RunningApp) -> None:
    user = await create(service)
    path = f"/api/v1/users/{user['id']}"
    await until_hit(service, path)
    await until_hit(service, "/api/v1/users/", email=user["email"])
    await until_hit(service, "/api/v1/users/", limit=100)
    assert (await service.client.delete(path)).status_code == 204
    assert (await service.client.get(path)).status_code == 404
    by_email = await service.client.get("/api/v1/users/", params={"email": user["email"]})
    assert by_email.json()["items"] == []
    listed = await service.client.get("/api/v1/users/", params={"limit": 100})
    assert user["id"] not in [u["id"] for u in listed.json()["items"]]


async def test_a_cached_not_found_ends_when_the_user_is_created(service: RunningApp) -> None:
    body = {**new_user(next(_ids)), "id": "7d2b1a40-1c1e-4b63-9a0e-0d5bb1a1e001"}
    path = f"/api/v1/users/{body['id']}"
    assert (await service.client.get(path)).status_code == 404

    async def cached_404() -> bool:
        response = await service.client.get(path)
        return response.status_code == 404 and response.headers["x-cache"] == "hit"

    await poll_until(cached_404, what="the 404 to be cached")
    assert (await service.client.post("/api/v1/users/", json=body)).status_code == 201
    assert (await service.client.get(path)).status_code == 200


async def test_a_rolled_back_write_leaves_the_cache_untouched(
    service: RunningApp, redis_server: RedisServer
) -> None:
    user, other = await create(service), await create(service)
    path = f"/api/v1/users/{user['id']}"
    await until_hit(service, path)
    invalidations = service.metric("cache_invalidations_total")
    # Taking another user's email fails at the database, after the service registered
    # its invalidations: the rollback must drop them.
    response = await service.client.patch(path, json={"email": other["email"]})
    assert response.status_code == 409
    assert service.metric("cache_invalidations_total") == invalidations
    namespace = service.app.state.cache.namespace
    assert redis_server.cli("HEXISTS", f"{namespace}:k:user:{user['id']}", "!fence") == "0"
    response = await service.client.get(path)
    assert response.headers["x-cache"] == "hit"
    assert response.json() == user


async def test_one_hundred_concurrent_gets_of_a_cold_key_run_one_query(
    service: RunningApp, redis_server: RedisServer
) -> None:
    user = await create(service)
    path = f"/api/v1/users/{user['id']}"
    # The create fenced the key (reads right after a write are not stored, see
    # docs/cache.md); a cold key is one nobody wrote or read for a while.
    key = f"{service.app.state.cache.namespace}:k:user:{user['id']}"
    await poll_until(lambda: redis_server.cli("EXISTS", key) == "0", what="the fence to end")
    before = service.user_queries()
    responses = await asyncio.gather(*(service.client.get(path) for _ in range(100)))
    assert {r.status_code for r in responses} == {200}
    assert service.user_queries() - before == 1


async def test_readiness_lists_the_cache_without_secrets(app_db_url: str, servers_dir: Any) -> None:
    with RedisServer.start_new(servers_dir, password="s3cret-pw") as redis:
        async with running_app(cache_settings(app_db_url, redis.url)) as service:
            response = await service.client.get("/health/ready")
    assert response.status_code == 200
    (cache,) = response.json()["caches"]
    assert (cache["backend"], cache["state"], cache["circuit"]) == ("redis", "up", "closed")
    assert "s3cret" not in response.text


async def test_without_redis_url_the_in_process_cache_serves_hits(app_db_url: str) -> None:
    async with running_app(cache_settings(app_db_url, None)) as service:
        user = await create(service)
        await until_hit(service, f"/api/v1/users/{user['id']}")
        assert (await service.client.get("/health/ready")).json()["caches"][0][
            "backend"
        ] == "memory"


async def test_cache_ttl_zero_turns_caching_off(app_db_url: str, redis_server: RedisServer) -> None:
    settings = cache_settings(app_db_url, redis_server.url, cache_ttl_seconds=0)
    async with running_app(settings) as service:
        user = await create(service)
        path = f"/api/v1/users/{user['id']}"
        for _ in range(3):
            assert (await service.client.get(path)).headers["x-cache"] == "bypass"
