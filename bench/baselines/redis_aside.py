"""Baseline: FastAPI + redis-py cache-aside in front of the raw asyncpg query.

Written the way the redis-py documentation shows it: one client from ``from_url`` with
its default connection pool (100 connections; past that redis-py raises "Too many
connections"), JSON strings under ``user:<id>``, a TTL, and the database on a miss.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import redis.asyncio as redis
from fastapi import FastAPI, HTTPException, Response

from bench.baselines.common import SELECT_BY_ID, pg_dsn, redis_url, user_json

TTL_SECONDS = 3600


def create_app() -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(pg_dsn(), min_size=5, max_size=15)
        state["redis"] = redis.from_url(redis_url())
        try:
            yield
        finally:
            await state["redis"].aclose()
            await state["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/v1/users/{user_id}")
    async def get_user(user_id: UUID) -> Response:
        key = f"user:{user_id}"
        cached = await state["redis"].get(key)
        if cached is not None:
            return Response(cached, media_type="application/json")
        record = await state["pool"].fetchrow(SELECT_BY_ID, user_id)
        if record is None:
            raise HTTPException(404)
        body = orjson.dumps(user_json(record))
        await state["redis"].set(key, body, ex=TTL_SECONDS)
        return Response(body, media_type="application/json")

    return app
