"""Fixtures shared by every test: private servers (started once per run) and databases.

A service that cannot be started skips its tests locally and fails them under CI=true
(`skip_or_fail`). Servers are removed at the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.migrations import upgrade_sync
from tests.support import (
    PostgresReplica,
    PostgresServer,
    RedisServer,
    ServiceUnavailable,
    mariadb_temp_database,
)
from tests.support.pytest_helpers import skip_or_fail, started
from tests.support.telemetry import SpanCapture, install_span_capture


@pytest.fixture(scope="session", autouse=True)
def span_capture() -> SpanCapture:
    """The run's tracer provider, installed before any app (one per process)."""
    return install_span_capture()


@pytest.fixture
def spans(span_capture: SpanCapture) -> Iterator[SpanCapture]:
    """Spans finished during this test (server, unit of work, SQL, Redis...)."""
    span_capture.start()
    yield span_capture
    span_capture.stop()


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def pg_primary(servers_dir: Path) -> Iterator[PostgresServer]:
    """A private PostgreSQL primary for the whole run (tests must not stop it)."""
    server = started(lambda: PostgresServer.start_primary(servers_dir))
    with server:
        yield server


@pytest.fixture(scope="session")
def pg_replica(pg_primary: PostgresServer, servers_dir: Path) -> Iterator[PostgresReplica]:
    """A streaming hot standby of `pg_primary`."""
    with PostgresServer.start_replica(pg_primary, servers_dir) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> Iterator[RedisServer]:
    server = started(lambda: RedisServer.start_new(servers_dir))
    with server:
        yield server


@pytest.fixture(scope="session")
def sqlite_url(servers_dir: Path) -> str:
    url = f"sqlite+aiosqlite:///{servers_dir / 'contract.db'}"
    upgrade_sync(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url(pg_primary: PostgresServer) -> str:
    pg_primary.create_database("contract")
    url = pg_primary.url(database="contract")
    upgrade_sync(url)
    return url


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    try:
        with mariadb_temp_database() as url:
            upgrade_sync(url)
            yield url
    except ServiceUnavailable as exc:
        skip_or_fail(exc)
