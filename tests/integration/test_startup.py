"""Start-up against a real PostgreSQL primary, through ``python -m app`` itself: waiting
for a primary that is down (live meanwhile, ready within a second of it), failing at once
on errors no retry fixes, giving up at the deadline, and riding out a primary restart
under load without losing an acknowledged write."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from app.main import create_app
from app.settings import Settings
from building_blocks import ConfigurationError, DatabaseConfig, SQLAlchemySession
from building_blocks.db import ConnectRetryPolicy, wait_for_database
from building_blocks.telemetry.metrics import Metrics
from tests.integration.conftest import PASSWORD, eventually, user_body
from tests.support import PostgresServer, ServiceUnavailable, free_port, wait_until
from tests.support.asgi import serving
from tests.support.pytest_helpers import skip_or_fail

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
RETRY_LOG = "not reachable yet"


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A private scram-protected primary these tests stop and restart."""
    try:
        server = PostgresServer.start_primary(
            tmp_path_factory.mktemp("startup"), auth="scram", password=PASSWORD
        )
    except ServiceUnavailable as exc:
        skip_or_fail(exc)
    with server:
        yield server


class AppProcess:
    """``python -m app`` in a child process, with only the environment we give it."""

    def __init__(self, tmp_path: Path, env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.stderr_path = tmp_path / f"app-{self.port}.err"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_"))}
        base.update({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")})
        base.update(env)
        with self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "--port", str(self.port)],
                cwd=tmp_path,  # any working directory must do
                env=base,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=2)
        except httpx.TransportError:
            return None

    def status(self, path: str) -> int | None:
        response = self.get(path)
        return None if response is None else response.status_code

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> bool:
        """SIGTERM; whether the process then ended cleanly (uvicorn shuts down gracefully
        and re-raises the signal, so "killed by SIGTERM" is a clean end too)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30) in (0, -signal.SIGTERM)


Launch = Callable[[Mapping[str, str]], AppProcess]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start ``python -m app`` with an environment; killed at the end if still running."""
    started: list[AppProcess] = []

    def start(env: Mapping[str, str]) -> AppProcess:
        started.append(AppProcess(tmp_path, env))
        return started[-1]

    yield start
    for app in started:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait()


def test_python_m_app_serves_with_no_environment(launch: Launch) -> None:
    app = launch({})
    wait_until(lambda: app.status("/health/ready") == 200, timeout=30, what="the app ready")
    created = httpx.post(f"{app.url}/api/v1/users/", json=user_body("noenv"), timeout=5)
    assert created.status_code == 201, created.text
    assert app.stop()


@pytest.mark.parametrize(
    ("broken", "cause"),
    [("password", "the password was rejected"), ("database", "the database does not exist")],
)
def test_an_error_no_retry_fixes_stops_the_process_at_once_with_a_clear_message(
    primary: PostgresServer, launch: Launch, broken: str, cause: str
) -> None:
    wrong_password = "wrong-" + uuid.uuid4().hex
    url = (
        primary.url(password=wrong_password)
        if broken == "password"
        else primary.url(database="no_such_db")
    )
    log_size = primary.log_path.stat().st_size
    started = time.monotonic()
    app = launch({"DATABASE_URL": url, "DB_CONNECT_DEADLINE_SECONDS": "120"})
    code = app.wait_exit(timeout=60)
    elapsed = time.monotonic() - started
    assert code == 1
    assert cause in app.stderr
    assert wrong_password not in app.stderr
    assert PASSWORD not in app.stderr
    assert RETRY_LOG not in app.stderr
    # The server saw exactly one attempt: no retry loop, and far from the 120 s deadline.
    refused = primary.log_path.read_text()[log_size:].count("FATAL:")
    assert refused == 1, primary.log_tail()
    assert elapsed < 30


def test_a_primary_that_never_comes_is_given_up_at_the_deadline(
    launch: Launch,
) -> None:
    nothing_there = f"postgresql+asyncpg://app:pw@127.0.0.1:{free_port()}/users"
    app = launch({"DATABASE_URL": nothing_there, "DB_CONNECT_DEADLINE_SECONDS": "2"})
    wait_until(lambda: app.status("/health/live") == 200, timeout=30, what="liveness")
    assert app.wait_exit(timeout=30) == 1
    assert "still unreachable after 2s" in app.stderr
    assert app.stderr.count(RETRY_LOG) >= 3  # attempts were logged, with backoff


def test_primary_down_at_start_up_the_service_is_ready_within_a_second_of_it(
    primary: PostgresServer, launch: Launch
) -> None:
    primary.psql("DROP DATABASE IF EXISTS late")
    primary.psql("CREATE DATABASE late")
    primary.stop()
    try:
        app = launch({"DATABASE_URL": primary.url(database="late")})
        wait_until(lambda: app.status("/health/live") == 200, timeout=30, what="liveness")
        assert app.status("/health/ready") == 503
        api = app.get("/api/v1/users/")
        assert api is not None
        assert api.status_code == 503
        assert api.headers["Retry-After"] == "1"
        assert api.headers["content-type"] == "application/problem+json"
    finally:
        primary.start()
    up = time.monotonic()
    wait_until(lambda: app.status("/health/ready") == 200, timeout=30, what="readiness")
    ready_after = time.monotonic() - up
    print(f"\nstart-up: ready {ready_after:.2f}s after the primary accepted connections")
    assert ready_after < 1.0
    # The start-up task migrated the database it waited for.
    created = httpx.post(f"{app.url}/api/v1/users/", json=user_body("late"), timeout=5)
    assert created.status_code == 201
    assert app.stop()


async def test_connect_attempts_are_counted_by_outcome(primary: PostgresServer) -> None:
    metrics = Metrics(CollectorRegistry())
    session = SQLAlchemySession(DatabaseConfig(primary.url(), connect_timeout=2))
    await session.start()
    try:
        await asyncio.to_thread(primary.stop)
        restart = asyncio.create_task(asyncio.to_thread(_start_later, primary, 0.5))
        await wait_for_database(session.primary, metrics=metrics)
        await restart
    finally:
        await session.close()
    bad = SQLAlchemySession(DatabaseConfig(primary.url(password="nope")))
    await bad.start()
    try:
        with pytest.raises(ConfigurationError, match="password was rejected"):
            await wait_for_database(
                bad.primary, metrics=metrics, policy=ConnectRetryPolicy(deadline=30)
            )
    finally:
        await bad.close()

    def count(outcome: str) -> float:
        value = metrics.registry.get_sample_value("db_connect_attempts_total", {"outcome": outcome})
        return value or 0.0

    assert count("retry") >= 1
    assert count("success") == 1
    assert count("fatal") == 1


def _start_later(server: PostgresServer, delay: float) -> None:
    time.sleep(delay)
    server.start()


async def test_primary_restarted_under_load_in_flight_requests_get_503_and_no_write_is_lost(
    primary: PostgresServer,
) -> None:
    primary.psql("DROP DATABASE IF EXISTS restart")
    primary.psql("CREATE DATABASE restart")
    settings = Settings(database_url=primary.url(database="restart"), db_connect_timeout=2)
    app = create_app(settings, migrate=True)
    acknowledged: list[str] = []
    statuses: list[int] = []
    async with serving(app) as client:
        stop = asyncio.Event()

        async def writer(k: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                response = await client.post("/api/v1/users/", json=user_body(f"w{k}-{n}"))
                statuses.append(response.status_code)
                if response.status_code == 201:
                    acknowledged.append(response.json()["id"])
                elif response.status_code == 503:
                    assert "Retry-After" in response.headers
                    await asyncio.sleep(0.05)

        async def reader() -> None:
            while not stop.is_set():
                response = await client.get("/api/v1/users/?limit=5")
                statuses.append(response.status_code)
                if response.status_code == 503:
                    await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(writer(k)) for k in range(4)]
        tasks.append(asyncio.create_task(reader()))
        try:
            await eventually(lambda: len(acknowledged) > 20)
            await asyncio.to_thread(primary.stop, "immediate")
            await asyncio.to_thread(primary.start)
            acked_then = len(acknowledged)
            recovered = await eventually(lambda: len(acknowledged) > acked_then, timeout=15)
            final_wave = len(statuses)
            await eventually(lambda: len(statuses) > final_wave + 50)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"\nprimary restart: first acknowledged write {recovered:.3f}s after the primary"
        f" accepted connections; {statuses.count(503)} requests got 503"
    )
    assert set(statuses) <= {200, 201, 503}, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(503) > 0  # requests during the outage were told to come back
    assert set(statuses[final_wave:]) <= {200, 201}
    stored = primary.psql(
        "SELECT id FROM users",
        database="restart",
    ).split()
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged writes lost"
