"""In-process clients for the users API on real databases, and the fixtures behind them:
a private, password-protected PostgreSQL primary with a streaming hot standby owned by
one test module (tests pause, stop and restart them), polling helpers."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.migrations import upgrade, upgrade_sync
from app.settings import Settings
from tests.support import PostgresReplica, PostgresServer, RedisServer
from tests.support.asgi import serving
from tests.support.pytest_helpers import started


def settings_for(url: str, **overrides: object) -> Settings:
    return Settings(database_url=url, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
    await upgrade(url)
    async with serving(create_app(settings_for(url))) as client:
        yield client


@pytest.fixture
async def sqlite_file_url(tmp_path: Path) -> str:
    """A migrated SQLite file of this test only (a pooled engine, unlike :memory:)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    await upgrade(url)
    return url


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """``make_settings(url, db_pool_timeout=2.0)``: settings without reading the env."""

    def make(url: str, **fields: Any) -> Settings:
        return Settings(database_url=url).model_copy(update=fields)

    return make


async def create_user(client: httpx.AsyncClient, name: str) -> str:
    """Create a user through the API; returns its id."""
    response = await client.post(
        "/api/v1/users/",
        json={
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": f"{name}@example.com",
            "username": name,
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def pg_pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PostgresServer, PostgresReplica]]:
    """A private scram-protected primary + hot standby, migrated, for one module."""
    base = tmp_path_factory.mktemp("pair")
    primary = started(lambda: PostgresServer.start_primary(base, auth="scram", password=PASSWORD))
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


def user_body(n: int | str) -> dict[str, object]:
    return {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"ada{n}@example.com",
        "username": f"ada{n}",
    }


@pytest.fixture
def private_redis(servers_dir: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill, pause or restart."""
    server = started(lambda: RedisServer.start_new(servers_dir))
    with server:
        yield server


@pytest.fixture(scope="module")
def app_db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database shared by the tests of one module."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('appdb') / 'users.db'}"
    upgrade_sync(url)
    return url
