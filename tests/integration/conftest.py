"""Fixtures of the integration tests: a private, password-protected PostgreSQL primary
with a streaming hot standby, owned by one test module (tests pause, stop and restart
them), and a way to run the real app in-process against them."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from app.migrations import upgrade_sync
from tests.support import PostgresReplica, PostgresServer, ServiceUnavailable
from tests.support.pytest_helpers import skip_or_fail

PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def pg_pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PostgresServer, PostgresReplica]]:
    """A private scram-protected primary + hot standby, migrated, for one module."""
    base = tmp_path_factory.mktemp("pair")
    try:
        primary = PostgresServer.start_primary(base, auth="scram", password=PASSWORD)
    except ServiceUnavailable as exc:
        skip_or_fail(exc)
    with primary, PostgresServer.start_replica(primary, base) as replica:
        upgrade_sync(primary.url())
        replica.wait_replay_caught_up()
        yield primary, replica


async def eventually(condition: Callable[[], object], timeout: float = 10.0) -> float:
    """Poll ``condition`` (sync or async) every 10 ms until true; the seconds it took."""
    started = time.monotonic()
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def serving(app: FastAPI, *, wait_ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and hand out an HTTP client talking to it in-process."""
    async with app.router.lifespan_context(app):
        if wait_ready:
            assert await app.state.startup.wait() == "ready"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
            yield client


def user_body(n: int | str) -> dict[str, object]:
    return {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"ada{n}@example.com",
        "username": f"ada{n}",
    }
