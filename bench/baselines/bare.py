"""Baseline: FastAPI returning the user's JSON from a dict in memory (loaded at start).

The ceiling: what one uvicorn worker serves when the endpoint does no I/O at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import FastAPI, HTTPException

from bench.baselines.common import COLUMNS, pg_dsn, user_json


def create_app() -> FastAPI:
    users: dict[UUID, dict[str, Any]] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        conn = await asyncpg.connect(pg_dsn())
        try:
            for record in await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM users"):  # noqa: S608
                users[record["id"]] = user_json(record)
        finally:
            await conn.close()
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/v1/users/{user_id}")
    async def get_user(user_id: UUID) -> dict[str, Any]:
        try:
            return users[user_id]
        except KeyError:
            raise HTTPException(404) from None

    return app
