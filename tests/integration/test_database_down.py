"""A dead database answers 503 + Retry-After (never 500, never a hang), and the service
recovers by itself when the database returns."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.migrations import upgrade
from tests.integration.conftest import settings_for
from tests.support import PostgresServer
from tests.support.asgi import serving
from tests.support.pytest_helpers import started

USERS = "/api/v1/users/"


@pytest.fixture
def private_pg(servers_dir: Path) -> Iterator[PostgresServer]:
    """A primary of this test's own: the tests stop it."""
    server = started(lambda: PostgresServer.start_primary(servers_dir))
    with server:
        yield server


@pytest.fixture
async def api(private_pg: PostgresServer) -> AsyncIterator[httpx.AsyncClient]:
    url = private_pg.url()
    await upgrade(url)
    app = create_app(settings_for(url, db_connect_timeout=2.0))
    async with serving(app) as client:
        yield client


async def test_requests_get_503_with_retry_after_while_the_database_is_down(
    api: httpx.AsyncClient, private_pg: PostgresServer
) -> None:
    created = await api.post(
        USERS, json={"first_name": "A", "last_name": "B", "email": "a@b.io", "username": "abc"}
    )
    assert created.status_code == 201
    user_id = created.json()["id"]

    private_pg.stop(mode="immediate")
    for method, path, body in [
        ("GET", f"{USERS}{user_id}", None),
        ("GET", USERS, None),
        (
            "POST",
            USERS,
            {"first_name": "C", "last_name": "D", "email": "c@d.io", "username": "cde"},
        ),
        ("PATCH", f"{USERS}{user_id}", {"first_name": "Z"}),
        ("DELETE", f"{USERS}{user_id}", None),
    ]:
        started = time.monotonic()
        response = await api.request(method, path, json=body)
        assert response.status_code == 503, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1
        assert time.monotonic() - started < 5, "a dead database must not make requests hang"
    ready = await api.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["databases"][0]["state"] == "down"

    private_pg.start()
    recovered = await api.get(f"{USERS}{user_id}")
    assert recovered.status_code == 200
    assert (await api.get("/health/ready")).status_code == 200


async def test_a_hung_database_times_out_into_503_instead_of_hanging(
    private_pg: PostgresServer,
) -> None:
    url = private_pg.url()
    await upgrade(url)
    app = create_app(settings_for(url, db_connect_timeout=1.0, db_statement_timeout=1.0))
    async with serving(app) as api:
        assert (await api.get(USERS)).status_code == 200  # a pooled connection exists now
        private_pg.sigstop()
        try:
            started = time.monotonic()
            # An id never asked for: not in the cache, so the read reaches the database.
            response = await api.get(f"{USERS}{uuid.uuid4()}")
            elapsed = time.monotonic() - started
        finally:
            private_pg.sigcont()
        assert response.status_code == 503
        assert elapsed < 8
