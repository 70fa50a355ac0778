"""`create_app()`: the one composition root. Builds every concrete object, connects nothing
until the lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI

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
from building_blocks.uow import SQLAlchemyUnitOfWorkFactory, UnitOfWorkFactory

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    database: DatabaseSession | None = None,
    users_uow: UnitOfWorkFactory[UserRepository] | None = None,
) -> FastAPI:
    """The users service. Pass ``database``/``users_uow`` to swap in other implementations
    (tests use the in-memory unit of work); by default everything comes from ``settings``."""
    settings = settings or Settings.from_env()
    session = database or SQLAlchemySession(settings.database())
    uow = users_uow or SQLAlchemyUnitOfWorkFactory(session, SqlUserRepository)

    app = FastAPI(
        title="Users service",
        version="0.1.0",
        description="Users API built from building_blocks.",
        lifespan=lifespan_of(session),
    )
    app.state.settings = settings
    app.state.database = session
    app.state.user_service = UserService(uow)
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(users_router)
    app.include_router(health_router(session))
    return app
