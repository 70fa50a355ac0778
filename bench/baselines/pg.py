"""Baseline: FastAPI + a raw asyncpg pool running the same query as the service.

Pool of 5..15 connections, like the service's default 5 + 10 overflow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import FastAPI, HTTPException

from bench.baselines.common import SELECT_BY_ID, pg_dsn, user_json


def create_app() -> FastAPI:
    pools: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(pg_dsn(), min_size=5, max_size=15)
        pools.append(pool)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/v1/users/{user_id}")
    async def get_user(user_id: UUID) -> dict[str, Any]:
        record = await pools[0].fetchrow(SELECT_BY_ID, user_id)
        if record is None:
            raise HTTPException(404)
        return user_json(record)

    return app
