"""In-process clients for the users API on real databases, and the fixtures behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.migrations import upgrade
from app.settings import Settings


def settings_for(url: str, **overrides: object) -> Settings:
    return Settings(database_url=url, **overrides)  # type: ignore[arg-type]


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose app has gone through its lifespan (start and stop)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
    await upgrade(url)
    async for client in client_for(create_app(settings_for(url))):
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
