"""``python -m bench.inprocess``: CPU time per request, the app driven through ASGI.

wrk measures what a client sees, but on a shared machine its numbers move with other
people's load. This measures what one request costs this process: the app (the service
or a baseline) is built in this process, its lifespan started, every id read once (the
cached variants then measure hits), and 64 concurrent tasks
call its ASGI interface with ``GET /api/v1/users/<random id>``; the CPU time of the
process (``time.process_time``, which other processes do not inflate) over the requests
is divided by their number. No HTTP parsing or sockets to the client: compare variants
with each other, not with wrk's numbers. Profile one with
``py-spy record -o prof.svg -- python -m bench.inprocess --only service``.

Starts its own PostgreSQL primary + replica and Redis (`bench.stack`), like ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from bench.scenarios import server_specs
from bench.servers import ServerSpec
from bench.stack import Stack, running_stack

__all__ = ["AppDriver", "child_app", "children_stack", "main", "running", "stack_spec"]


def _variants(stack: Stack) -> dict[str, ServerSpec]:
    """The servers `make bench` runs (bench/scenarios.py), by name."""
    return {spec.name: spec for spec in server_specs(stack)}


def _app_of(spec: ServerSpec) -> Any:
    module, function = spec.factory.split(":")
    return getattr(importlib.import_module(module), function)()


async def _call(app: Any, path: str, state: dict[str, Any]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": state,
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def stack_spec(stack: Stack, work: Path) -> str:
    """``stack`` for a child process's ``--stack``: its URLs and a file of the user ids
    (written under ``work``); `child_app` reads it back."""
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(str(i) for i in stack.user_ids))
    urls = (stack.primary_url, stack.replica_url, stack.redis_url, stack.otlp_endpoint)
    return "|".join((*urls, str(ids_file)))


@contextmanager
def children_stack(users: int, prefix: str) -> Iterator[tuple[Stack, str, Path]]:
    """A running stack (`bench.stack`, ``users`` seeded) in a temporary directory: the
    stack, its `stack_spec` for child processes, and the directory (for their files)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        print(f"starting PostgreSQL primary + replica and Redis; seeding {users} users")
        with running_stack(work / "servers", users=users) as stack:
            yield stack, stack_spec(stack, work), work


def child_app(
    spec: str, variant: str, env: Mapping[str, str] | None = None
) -> tuple[Any, list[str]]:
    """In a child process: the app of ``variant`` (bench/scenarios.py) against the stack
    `stack_spec` described, with its environment and then ``env`` set, and the paths of
    every seeded user. The app's own log handler (format, batching) writes to /dev/null
    instead of stderr."""
    primary, replica, redis_url, otlp, ids_file = spec.split("|")
    server = _variants(Stack(primary, replica, redis_url, (), otlp))[variant]
    os.environ.update(server.env)
    os.environ.update(env or {})
    app = _app_of(server)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(Path(os.devnull).open("w"))  # noqa: SIM115 - lives as long as the process
    return app, [f"/api/v1/users/{i}" for i in Path(ids_file).read_text().split()]


class AppDriver:
    """Requests to an app's ASGI interface, as the in-process harnesses make them."""

    def __init__(self, app: Any, paths: list[str], state: dict[str, Any]) -> None:
        self._app = app
        self._paths = paths
        self._state = state

    async def wait_ready(self) -> None:
        """Until the first path answers 200 (start-up runs in the background)."""
        # A poll of the app's answer: start-up sets no event an outsider can wait on.
        while await _call(self._app, self._paths[0], self._state) != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def read_all(self, tasks: int = 64) -> None:
        """Every path once (the cached variants then measure hits)."""
        todo = list(self._paths)

        async def fill() -> None:
            while todo:
                await _call(self._app, todo.pop(), self._state)

        await asyncio.gather(*(fill() for _ in range(tasks)))

    async def read_random(self, requests: int, tasks: int) -> None:
        """``requests`` random paths, ``tasks`` at a time; any answer but 200 raises."""

        async def worker(count: int) -> None:
            for _ in range(count):
                status = await _call(self._app, random.choice(self._paths), self._state)
                if status != 200:
                    raise RuntimeError(f"unexpected status {status}")

        await asyncio.gather(*(worker(requests // tasks) for _ in range(tasks)))


@asynccontextmanager
async def running(app: Any, paths: list[str], *, ready_timeout: float) -> AsyncIterator[AppDriver]:
    """``app`` with its lifespan started and ready, and a driver for it."""
    state: dict[str, Any] = {}
    async with app.router.lifespan_context(app) as lifespan_state:
        state.update(lifespan_state or {})
        driver = AppDriver(app, paths, state)
        async with asyncio.timeout(ready_timeout):
            await driver.wait_ready()
        yield driver


async def _measure(app: Any, paths: list[str], requests: int, repeats: int) -> list[float]:
    async with running(app, paths, ready_timeout=60) as driver:
        await driver.read_all()
        await driver.read_random(3200, tasks=64)  # warm
        per_request: list[float] = []
        for _ in range(repeats):
            started = time.process_time()
            await driver.read_random(requests, tasks=64)
            per_request.append((time.process_time() - started) / requests * 1e6)
        return per_request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument(
        "--only", help="one server of bench/scenarios.py (default: each, one process each)"
    )
    parser.add_argument("--requests", type=int, default=6400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--stack", help=argparse.SUPPRESS)  # internal: url|url|url|url|ids-file
    args = parser.parse_args(argv)
    if args.stack:  # a child: measure one variant against a running stack
        app, paths = child_app(args.stack, args.only)
        results = asyncio.run(_measure(app, paths, args.requests, args.repeats))
        spread = ", ".join(f"{r:.0f}" for r in results)
        print(f"{args.only:16} {statistics.median(results):7.0f} µs/request  ({spread})")
        return 0
    return _run_all(args)


def _run_all(args: argparse.Namespace) -> int:
    import subprocess  # noqa: PLC0415 - only the parent starts children

    with children_stack(args.users, "bench-inproc-") as (stack, spec, _):
        names = [args.only] if args.only else list(_variants(stack))
        for name in names:  # a fresh process each: no state carried between variants
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.inprocess",
                    "--only",
                    name,
                    "--requests",
                    str(args.requests),
                    "--repeats",
                    str(args.repeats),
                    "--stack",
                    spec,
                ],
                check=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
