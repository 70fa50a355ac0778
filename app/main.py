"""`create_app()`: the one composition root. Builds every concrete object, connects nothing
until the lifespan starts."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app.migrations import upgrade
from app.settings import Settings
from app.users.repository import SqlUserRepository, UserRepository
from app.users.router import users_router
from app.users.service import CACHE_SCHEMA_VERSION, UserService
from building_blocks.cache import Cache, InMemoryCacheBackend, RedisCacheBackend
from building_blocks.db import (
    ConnectRetryPolicy,
    DatabaseSession,
    SQLAlchemySession,
    wait_for_database,
)
from building_blocks.fastapi import (
    BodySizeLimit,
    CacheHeaderMiddleware,
    ConsistencyMiddleware,
    ControlCharacterPaths,
    FrozenHeap,
    ReadinessGate,
    Startup,
    StartupStep,
    health_router,
    install_problem_handlers,
    lifespan_of,
)
from building_blocks.fastapi.telemetry import install_telemetry
from building_blocks.telemetry import (
    DatabaseTelemetry,
    Metrics,
    MetricsExposition,
    Tracing,
    configure_logging,
)
from building_blocks.uow import SQLAlchemyUnitOfWorkFactory, UnitOfWorkFactory

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    database: DatabaseSession | None = None,
    users_uow: UnitOfWorkFactory[UserRepository] | None = None,
    cache: Cache | None = None,
    telemetry: bool | None = None,
    migrate: bool = False,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The users service. Pass ``database``/``users_uow`` to swap in other implementations
    (tests use the in-memory unit of work); by default everything comes from ``settings``.

    Start-up runs in the background (`Startup`): wait for the primary, then apply the
    migrations when ``migrate``; API routes answer 503 until it is done. ``on_fatal`` is
    called when start-up fails for good (``python -m app`` stops the server then).
    ``telemetry=False`` leaves out spans, metrics and access logs (benchmarks compare);
    by default ``TELEMETRY_ENABLED`` decides."""
    settings = settings or Settings.from_env()
    if telemetry is None:
        telemetry = settings.telemetry_enabled
    configure_logging(
        settings.log_level, settings.log_format, flush_interval=settings.log_flush_seconds
    )
    # Instruments on a registry of this app (tests build many apps in one process).
    metrics = Metrics(CollectorRegistry())
    session = database or SQLAlchemySession(settings.database(), metrics=metrics)
    uow = users_uow or SQLAlchemyUnitOfWorkFactory(session, SqlUserRepository)
    # With telemetry off nothing serves /metrics: the cache (the one part that records
    # per request) gets no instruments, so "off" pays for none of them.
    cache = cache or _cache(settings, metrics if telemetry else None, traced=telemetry)
    startup = Startup(_startup_steps(settings, session, metrics, migrate), on_fatal=on_fatal)

    # The database's engines are instrumented once the session has created them
    # (lifespan order below).
    multiproc = settings.prometheus_multiproc_dir
    db_telemetry = DatabaseTelemetry(
        lambda: session.engines if isinstance(session, SQLAlchemySession) else {},
        metrics,
        multiprocess_dir=multiproc,
    )
    if multiproc:
        exposition = MetricsExposition.multiprocess(multiproc, before_scrape=[db_telemetry.refresh])
    else:
        metrics.registry.register(db_telemetry.collector)
        exposition = MetricsExposition(metrics.registry)
    tracing = Tracing(settings.tracing())
    resources = (
        (tracing, session, db_telemetry, cache, startup) if telemetry else (session, cache, startup)
    ) + (FrozenHeap(),)

    app = FastAPI(
        title="Users service",
        version="0.1.0",
        description="Users API built from building_blocks.",
        lifespan=lifespan_of(*resources),
        # FastAPI's native OpenTelemetry would add a second server span per request (and
        # OTel-API metrics nobody reads): TelemetryMiddleware does spans, metrics and logs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.tracing = tracing
    app.state.db_telemetry = db_telemetry
    app.state.database = session
    app.state.startup = startup
    app.state.cache = cache
    service = UserService(uow, cache=cache)
    install_problem_handlers(app)
    # Added first: the innermost, so telemetry and the other middlewares see its 503s.
    app.add_middleware(ReadinessGate, startup=startup, prefix="/api/")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ControlCharacterPaths)
    app.add_middleware(ConsistencyMiddleware)
    app.add_middleware(CacheHeaderMiddleware)
    app.include_router(users_router(service))
    app.include_router(health_router(session, startup, caches=(cache,)))
    if telemetry:  # last: the outermost middleware, so it also sees 413s
        install_telemetry(
            app, metrics=metrics, exposition=exposition, tracing=tracing.config.enabled
        )
    return app


def _startup_steps(
    settings: Settings, session: DatabaseSession, metrics: Metrics | None, migrate: bool
) -> list[StartupStep]:
    steps: list[StartupStep] = []
    if isinstance(session, SQLAlchemySession):
        policy = ConnectRetryPolicy(deadline=settings.db_connect_deadline_seconds)

        async def wait_for_primary() -> None:
            await wait_for_database(session.primary, policy=policy, metrics=metrics)

        steps.append(("waiting for the primary database", wait_for_primary))
    if migrate:

        async def apply_migrations() -> None:
            await upgrade(settings.database_url.get_secret_value())

        steps.append(("applying migrations", apply_migrations))
    return steps


def _cache(settings: Settings, metrics: Metrics | None, *, traced: bool) -> Cache:
    """Redis when ``REDIS_URL`` is set, else in process; ``CACHE_TTL_SECONDS=0``: off.
    ``traced``: Redis commands other than lookups are spans."""
    redis_url = settings.redis_url
    backend = (
        RedisCacheBackend(
            redis_url.get_secret_value(),
            timeout=settings.cache_timeout_seconds,
            max_connections=settings.cache_max_connections,
            traced=traced,
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
