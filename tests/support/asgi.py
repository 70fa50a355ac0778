"""Serve an app in-process for a test: run its lifespan, wait until it is ready, and hand
out an httpx client that calls it without a network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

__all__ = ["serving"]


@asynccontextmanager
async def serving(
    app: FastAPI, *, wait_ready: bool = True, base_url: str = "http://service.test"
) -> AsyncIterator[httpx.AsyncClient]:
    """``async with serving(app) as client``: the app started (and, unless ``wait_ready``
    is false, past its background start-up), stopped again on exit."""
    async with app.router.lifespan_context(app):
        startup = getattr(app.state, "startup", None)
        if wait_ready and startup is not None:
            assert await startup.wait() == "ready"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
