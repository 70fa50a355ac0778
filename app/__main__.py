"""``python -m app [--host H] [--port P] [--workers N]``: migrate, then serve.

Works from any working directory and, with no environment at all, on the embedded
default (a SQLite file in the user's data directory, in-process cache).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import uvicorn

from app.migrations import upgrade_sync
from app.settings import Settings
from building_blocks.db import describe_url
from building_blocks.telemetry import configure_logging, prepare_multiprocess_dir

log = logging.getLogger("app")


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
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    url = settings.database_url.get_secret_value()
    if not args.no_migrate:
        upgrade_sync(url)
    print(
        f"users service on http://{args.host}:{args.port} (docs: /docs) - database "
        f"{describe_url(url)}",
        flush=True,
    )
    metrics_dir = _multiprocess_metrics(args.workers, settings.prometheus_multiproc_dir)
    # uvicorn drains on SIGTERM, then re-raises the signal so the process dies "by signal"
    # (status -15). A drained shutdown is a success for orchestrators and our tests: the
    # re-raised signal lands on this no-op handler and the process exits 0.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            log_config=None,  # keep the service's own (JSON) logging in every worker
            access_log=False,  # the telemetry middleware writes the access line
            timeout_graceful_shutdown=20,
            proxy_headers=True,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
