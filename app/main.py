"""`create_app()`: the one composition root. Builds every concrete object, connects nothing
until the lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app.settings import Settings
from app.users.repository import SqlUserRepository, UserRepository
from app.users.router import router as users_router
from app.users.service import UserService
from building_blocks.db import DatabaseSession, SQLAlchemySession
from building_blocks.fastapi import (
    BodySizeLimit,
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
    telemetry: bool = True,
) -> FastAPI:
    """The users service. Pass ``database``/``users_uow`` to swap in other implementations
    (tests use the in-memory unit of work); by default everything comes from ``settings``.
    ``telemetry=False`` leaves out spans, metrics and access logs (benchmarks compare)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    session = database or SQLAlchemySession(settings.database())
    uow = users_uow or SQLAlchemyUnitOfWorkFactory(session, SqlUserRepository)

    # Telemetry: instruments on a registry of this app; the database's engines are
    # instrumented once the session has created them (lifespan order below).
    metrics = Metrics(CollectorRegistry())
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

    app = FastAPI(
        title="Users service",
        version="0.1.0",
        description="Users API built from building_blocks.",
        lifespan=lifespan_of(tracing, session, db_telemetry) if telemetry else lifespan_of(session),
        # FastAPI's native OpenTelemetry would add a second server span per request (and
        # OTel-API metrics nobody reads): TelemetryMiddleware does spans, metrics and logs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.tracing = tracing
    app.state.db_telemetry = db_telemetry
    app.state.database = session
    app.state.user_service = UserService(uow)
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(users_router)
    app.include_router(health_router(session))
    if telemetry:  # last: the outermost middleware, so it also sees 413s
        install_telemetry(app, metrics=metrics, exposition=exposition)
    return app
