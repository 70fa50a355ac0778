"""The users app running in-process with a cache, for the cache's integration tests."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import event

from app.main import create_app
from app.settings import Settings
from building_blocks.db import SQLAlchemySession
from tests.support.asgi import serving

_names = itertools.count()


def cache_settings(database_url: str, redis_url: str | None, **overrides: Any) -> Settings:
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
    app = create_app(settings, **kwargs)
    statements: list[str] = []
    async with serving(app, base_url="http://test") as client:
        session = app.state.database
        assert isinstance(session, SQLAlchemySession)
        for engine in session.engines.values():

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def count(*args: Any) -> None:
                statements.append(str(args[2]))

        yield RunningApp(app, client, app.state.metrics.registry, statements)


def new_user(n: int | str) -> dict[str, Any]:
    return {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"ada{n}@example.com",
        "username": f"ada{n}",
    }
