"""A served request leaves no reference cycles behind.

Objects in a cycle are not freed when the request ends but by the garbage collector,
later, in one pass over everything allocated since its last one (the service raises the
collector's threshold to tens of thousands of objects: `FrozenHeap`). A cycle per
request means memory that is not reused while it is still in the CPU's caches, and a
pause every few thousand requests. Two such cycles were found by measuring (the
request's telemetry notes and their context; a unit of work and its connection),
neither visible in an instruction count.

Each kind of request is served once to warm it up (first use fills memos and caches of
its own), then several times with the collector off and told to keep what it finds:
what it finds after them is the cyclic garbage those requests left. The requests are
ASGI calls made here, not through an HTTP client: httpx's ASGI transport leaves cycles
of its own (its response streams).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.types import ASGIApp, Message

from app.migrations import upgrade_sync
from tests.integration.cache_app import RunningApp, cache_settings, new_user, running_app
from tests.support import PostgresReplica, PostgresServer, RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

REPEATS = 20


async def call(app: ASGIApp, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    """``app``'s status and body for one request, made and read without a client."""
    content = b"" if body is None else orjson.dumps(body)
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    answer: dict[str, Any] = {"status": 0, "body": b""}

    async def receive() -> Message:
        return {"type": "http.request", "body": content, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"]


async def _cycles_left_by(request: Callable[[int], Awaitable[object]]) -> Counter[str]:
    """The types of the objects in cycles that ``REPEATS`` calls of ``request`` left."""
    await request(-1)  # warm: first use of a route, a memo, a pool connection
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds stays in gc.garbage
    try:
        for n in range(REPEATS):
            await request(n)
        gc.collect()
        return Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.fixture(scope="module")
def database(pg_primary: PostgresServer, pg_replica: PostgresReplica) -> str:
    pg_primary.create_database("cycles")
    upgrade_sync(pg_primary.url(database="cycles"))
    pg_replica.wait_replay_caught_up()
    return "cycles"


@pytest.fixture(params=[True, False], ids=["cache", "no-cache"])
async def service(
    request: pytest.FixtureRequest,
    database: str,
    pg_primary: PostgresServer,
    pg_replica: PostgresReplica,
    redis_server: RedisServer,
) -> AsyncIterator[RunningApp]:
    """The service as shipped, on a primary, a replica (reads go there, on the direct
    path) and Redis, or with the cache off; telemetry on."""
    settings = cache_settings(
        pg_primary.url(database=database),
        redis_server.url if request.param else None,
        database_replica_urls=[pg_replica.url(database=database)],
        cache_ttl_seconds=3600 if request.param else 0,
    )
    async with running_app(settings) as running:
        yield running


async def test_gets_lists_creates_and_refusals_leave_no_cycles(
    service: RunningApp, tmp_path: Path
) -> None:
    app = service.app
    tag = tmp_path.name  # unique per parametrization: usernames must be
    status, body = await call(app, "POST", "/api/v1/users/", new_user(f"{tag}-known"))
    assert status == 201, body
    known = orjson.loads(body)["id"]

    async def get_known(n: int) -> None:
        status, body = await call(app, "GET", f"/api/v1/users/{known}")
        assert status == 200, body

    async def create(n: int) -> None:
        status, body = await call(app, "POST", "/api/v1/users/", new_user(f"{tag}-{n}"))
        assert status == 201, body

    async def list_page(n: int) -> None:
        status, body = await call(app, "GET", "/api/v1/users/?limit=10")
        assert status == 200, body

    async def refused(n: int) -> None:  # bad input: a problem+json answer, nothing stored
        status, body = await call(app, "POST", "/api/v1/users/", {"first_name": n})
        assert status == 422, body

    left = {
        "get": await _cycles_left_by(get_known),
        "create": await _cycles_left_by(create),
        "list": await _cycles_left_by(list_page),
        "refused": await _cycles_left_by(refused),
    }
    assert left == {"get": Counter(), "create": Counter(), "list": Counter(), "refused": Counter()}
