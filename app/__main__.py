"""``python -m app [--host H] [--port P] [--workers N]``: migrate, then serve.

Works from any working directory and, with no environment at all, on the embedded
default (a SQLite file in the user's data directory, in-process cache).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import uvicorn

from app.migrations import upgrade_sync
from app.settings import Settings
from building_blocks.db import describe_url

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
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    url = settings.database_url.get_secret_value()
    if not args.no_migrate:
        upgrade_sync(url)
    print(
        f"users service on http://{args.host}:{args.port} (docs: /docs) - database "
        f"{describe_url(url)}",
        flush=True,
    )
    # uvicorn drains on SIGTERM, then re-raises the signal so the process dies "by signal"
    # (status -15). A drained shutdown is a success for orchestrators and our tests: the
    # re-raised signal lands on this no-op handler and the process exits 0.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=20,
        proxy_headers=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
