"""``/health/live`` and ``/health/ready`` for any service built on a `DatabaseSession`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response, status

from building_blocks.cache import Cache
from building_blocks.db.session import PRIMARY, DatabaseSession
from building_blocks.fastapi.startup import Startup

__all__ = ["health_router"]


def health_router(
    database: DatabaseSession, startup: Startup | None = None, caches: Sequence[Cache] = ()
) -> APIRouter:
    """Liveness answers while the process runs; readiness is 503 while the primary is down
    or ``startup`` has not finished (waiting for the primary, migrating).

    Readiness lists every database (``up``/``down``/``lagging``, replicas with their lag)
    by pool name and host, and every cache (``up``/``down``/``disabled`` and its circuit
    breaker), never with credentials. A cache that is down does not make the service
    unready: reads fall back to the database.
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
        started = startup is None or startup.ready
        if not (primary_up and started):
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            response.headers["Retry-After"] = "1"
        body: dict[str, Any] = {
            "status": "ok" if primary_up and started else "unavailable",
            "databases": [asdict(p) for p in pools],
            "caches": [asdict(await cache.status()) for cache in caches],
        }
        if startup is not None:
            body["startup"] = {"state": startup.state, "step": startup.step, "error": startup.error}
        return body

    return router
