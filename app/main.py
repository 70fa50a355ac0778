"""`create_app()`: the one composition root. Builds every concrete object, connects nothing
until the lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI

from app.settings import Settings
from app.users.repository import SqlUserRepository, UserRepository
from app.users.router import router as users_router
from app.users.service import CACHE_SCHEMA_VERSION, UserService
from building_blocks.cache import Cache, InMemoryCacheBackend, RedisCacheBackend
from building_blocks.db import DatabaseSession, SQLAlchemySession
from building_blocks.fastapi import (
    CacheHeaderMiddleware,
    health_router,
    install_problem_handlers,
    lifespan_of,
)
from building_blocks.telemetry import Metrics
from building_blocks.uow import SQLAlchemyUnitOfWorkFactory, UnitOfWorkFactory

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    database: DatabaseSession | None = None,
    users_uow: UnitOfWorkFactory[UserRepository] | None = None,
    cache: Cache | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The users service. Pass ``database``/``users_uow`` to swap in other implementations
    (tests use the in-memory unit of work); by default everything comes from ``settings``."""
    settings = settings or Settings.from_env()
    session = database or SQLAlchemySession(settings.database())
    uow = users_uow or SQLAlchemyUnitOfWorkFactory(session, SqlUserRepository)
    cache = cache or _cache(settings, metrics)

    app = FastAPI(
        title="Users service",
        version="0.1.0",
        description="Users API built from building_blocks.",
        lifespan=lifespan_of(session, cache),
    )
    app.state.settings = settings
    app.state.database = session
    app.state.cache = cache
    app.state.user_service = UserService(uow, cache=cache)
    install_problem_handlers(app)
    app.add_middleware(CacheHeaderMiddleware)
    app.include_router(users_router)
    app.include_router(health_router(session, caches=(cache,)))
    return app


def _cache(settings: Settings, metrics: Metrics | None) -> Cache:
    """Redis when ``REDIS_URL`` is set, else in process; ``CACHE_TTL_SECONDS=0``: off."""
    redis_url = settings.redis_url
    backend = (
        RedisCacheBackend(
            redis_url.get_secret_value(),
            timeout=settings.cache_timeout_seconds,
            max_connections=settings.cache_max_connections,
        )
        if redis_url is not None
        else InMemoryCacheBackend()
    )
    return Cache(
        backend,
        namespace=settings.service_name,
        schema_version=CACHE_SCHEMA_VERSION,
        config=settings.cache(),
        metrics=metrics,
        enabled=settings.cache_ttl_seconds > 0,
    )
