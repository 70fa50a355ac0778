"""Fixtures of the integration tests: apps of the users service on real databases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.migrations import upgrade
from app.settings import Settings


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
