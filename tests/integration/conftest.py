"""Fixtures for integration tests: a private redis-server per destructive test, a
migrated SQLite file per test module, and the users app running in-process."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import event

from app.main import create_app
from app.migrations import upgrade_sync
from app.settings import Settings
from building_blocks.db import SQLAlchemySession
from building_blocks.telemetry import Metrics
from tests.support import RedisServer, ServiceUnavailable
from tests.support.pytest_helpers import skip_or_fail

_names = itertools.count()


@pytest.fixture
def private_redis(servers_dir: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill, pause or restart."""
    try:
        server = RedisServer.start_new(servers_dir)
    except ServiceUnavailable as exc:
        skip_or_fail(exc)
    with server:
        yield server


@pytest.fixture(scope="module")
def app_db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database shared by the tests of one module."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('appdb') / 'users.db'}"
    upgrade_sync(url)
    return url


def settings_for(database_url: str, redis_url: str | None, **overrides: Any) -> Settings:
    """Settings of a fresh service name, so each test has a cache namespace of its own."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        OTEL_SERVICE_NAME=f"users{next(_names)}",
        **overrides,
    )


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient
    registry: CollectorRegistry
    statements: list[str] = field(default_factory=list)

    def user_queries(self) -> int:
        """SELECTs on users the database executed (counted by the engine)."""
        return sum(1 for s in self.statements if s.lstrip().upper().startswith("SELECT"))

    def metric(self, name: str, **labels: str) -> float:
        labels = {"cache_name": self.app.state.cache.name, **labels}
        return self.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def running_app(settings: Settings, **kwargs: Any) -> AsyncIterator[RunningApp]:
    """The users app with its lifespan started, an httpx client on it, and a count of
    the statements its primary engine executes."""
    registry = CollectorRegistry()
    app = create_app(settings, metrics=Metrics(registry), **kwargs)
    statements: list[str] = []
    async with app.router.lifespan_context(app):
        session = app.state.database
        assert isinstance(session, SQLAlchemySession)
        for engine in session.engines.values():

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def count(*args: Any) -> None:
                statements.append(str(args[2]))

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield RunningApp(app, client, registry, statements)


def new_user(n: int | str) -> dict[str, Any]:
    return {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"ada{n}@example.com",
        "username": f"ada{n}",
    }
