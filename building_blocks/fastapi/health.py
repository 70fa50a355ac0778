"""``/health/live`` and ``/health/ready`` for any service built on a `DatabaseSession`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response, status

from building_blocks.cache import Cache
from building_blocks.db.session import PRIMARY, DatabaseSession

__all__ = ["health_router"]


def health_router(database: DatabaseSession, caches: Sequence[Cache] = ()) -> APIRouter:
    """Liveness answers while the process runs; readiness is 503 while the primary is down.

    Readiness lists every database (``up``/``down``/``lagging``) by pool name and host,
    and every cache (``up``/``down``/``disabled`` and its circuit breaker), never with
    credentials. A cache that is down does not make the service unready: reads fall back
    to the database.
    """
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", summary="The process is running")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="The service can serve requests (the primary database answers)",
        responses={503: {"description": "The primary database is unreachable"}},
    )
    async def ready(response: Response) -> dict[str, Any]:
        pools = await database.status()
        primary_up = any(p.name == PRIMARY and p.state == "up" for p in pools)
        if not primary_up:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            response.headers["Retry-After"] = "1"
        return {
            "status": "ok" if primary_up else "unavailable",
            "databases": [asdict(p) for p in pools],
            "caches": [asdict(await cache.status()) for cache in caches],
        }

    return router
