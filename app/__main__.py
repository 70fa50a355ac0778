"""``python -m app [--host H] [--port P] [--workers N]``: serve, migrating first.

Works from any working directory and, with no environment at all, on the embedded
default (a SQLite file in the user's data directory, in-process cache).

The server starts at once (``/health/live`` answers); waiting for the primary and
applying migrations run in the background (`building_blocks.fastapi.Startup`), and API
routes answer 503 until they are done. An error no retry fixes (bad password, unknown
database), or a primary still unreachable after ``DB_CONNECT_DEADLINE_SECONDS``, stops
the process with exit status 1 and a message naming the cause.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TypedDict

import uvicorn
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from building_blocks.db import ConnectRetryPolicy, SQLAlchemySession, describe_url
from building_blocks.db.retry import wait_for_database
from building_blocks.errors import ConfigurationError, DataError

log = logging.getLogger("app")

EXIT_STARTUP_FAILED = 1
EXIT_BAD_CONFIGURATION = 2


def migrating_app() -> FastAPI:
    """The app factory worker processes import (``--workers`` > 1): migrates at start-up."""
    return create_app(migrate=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not apply pending migrations first"
    )
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        database = settings.database()
        SQLAlchemySession(database)  # validates the URLs, with messages free of secrets
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    print(
        f"users service on http://{args.host}:{args.port} (docs: /docs) - database "
        f"{describe_url(database.url)}",
        flush=True,
    )
    if args.workers > 1:
        # Worker processes build their own app; uvicorn restarts a worker that dies, so
        # errors no retry fixes are caught here, once, before any worker starts.
        if not _credentials_usable(settings):
            return EXIT_STARTUP_FAILED
        factory = "app.main:create_app" if args.no_migrate else "app.__main__:migrating_app"
        uvicorn.run(factory, factory=True, workers=args.workers, **_options(args, settings))
        return 0

    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop(exc: BaseException) -> None:
        failed.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, migrate=not args.no_migrate, on_fatal=stop)
    server = uvicorn.Server(uvicorn.Config(app, **_options(args, settings)))
    server.run()
    if failed:
        print(f"start-up failed: {failed[0]}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    return 0


class _ServerOptions(TypedDict):
    host: str
    port: int
    log_level: str
    timeout_graceful_shutdown: int
    proxy_headers: bool


def _options(args: argparse.Namespace, settings: Settings) -> _ServerOptions:
    return {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": 20,
        "proxy_headers": True,
    }


def _credentials_usable(settings: Settings) -> bool:
    """One quick look at the primary: False (and the cause printed) for a fatal error."""

    async def check() -> None:
        session = SQLAlchemySession(settings.database())
        await session.start()
        try:
            await wait_for_database(session.primary, policy=ConnectRetryPolicy(deadline=0.001))
        finally:
            await session.close()

    try:
        asyncio.run(check())
    except ConfigurationError as exc:
        print(f"start-up failed: {exc}", file=sys.stderr)
        return False
    except DataError:
        pass  # not reachable yet: the workers wait for it
    return True


if __name__ == "__main__":
    sys.exit(main())
