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
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TypedDict

import uvicorn
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from building_blocks.db import ConnectRetryPolicy, SQLAlchemySession, describe_url
from building_blocks.db.retry import wait_for_database
from building_blocks.errors import ConfigurationError, DataError
from building_blocks.telemetry import configure_logging, prepare_multiprocess_dir

log = logging.getLogger("app")

#: Seconds uvicorn lets in-flight requests finish after SIGTERM (deploy/k8s sizes its
#: terminationGracePeriodSeconds from this).
GRACEFUL_SHUTDOWN_SECONDS = 20

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
    configure_logging(
        settings.log_level, settings.log_format, flush_interval=settings.log_flush_seconds
    )
    print(
        f"users service on http://{args.host}:{args.port} (docs: /docs) - database "
        f"{describe_url(database.url)}",
        flush=True,
    )
    # uvicorn drains on SIGTERM, then re-raises the signal so the process dies "by signal"
    # (status -15). A drained shutdown is a success for orchestrators and our tests: the
    # re-raised signal lands on this no-op handler and the process exits 0.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    if args.workers > 1:
        # Worker processes build their own app; uvicorn restarts a worker that dies, so
        # errors no retry fixes are caught here, once, before any worker starts.
        if not _credentials_usable(settings):
            return EXIT_STARTUP_FAILED
        factory = "app.main:create_app" if args.no_migrate else "app.__main__:migrating_app"
        metrics_dir = _multiprocess_metrics(args.workers, settings.prometheus_multiproc_dir)
        try:
            uvicorn.run(factory, factory=True, workers=args.workers, **_options(args, settings))
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0
    if settings.prometheus_multiproc_dir is not None:
        prepare_multiprocess_dir(settings.prometheus_multiproc_dir)

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
    log_config: None
    access_log: bool
    timeout_graceful_shutdown: int
    proxy_headers: bool


def _options(args: argparse.Namespace, settings: Settings) -> _ServerOptions:
    return {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level.lower(),
        "log_config": None,  # keep the service's own (JSON) logging in every worker
        "access_log": False,  # the telemetry middleware writes the access line
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "proxy_headers": True,
    }


def _multiprocess_metrics(workers: int, configured: Path | None) -> Path | None:
    """With several workers, turn on prometheus-client's multiprocess mode: an empty
    directory in ``PROMETHEUS_MULTIPROC_DIR`` before the workers start (they read it when
    they import prometheus-client). Returns a directory made here, to remove at exit."""
    if configured is not None:
        prepare_multiprocess_dir(configured)  # files of a previous run would add up
        return None
    if workers <= 1:
        return None
    made = Path(tempfile.mkdtemp(prefix="app-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(made)
    return made


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
