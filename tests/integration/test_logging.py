"""Logs: one structured access line per request, with trace ids; never a password."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from app.main import create_app
from app.settings import Settings
from building_blocks.telemetry import configure_logging
from tests.integration.conftest import create_user
from tests.support import PostgresServer, ServiceUnavailable
from tests.support.asgi import serving
from tests.support.pytest_helpers import skip_or_fail
from tests.support.telemetry import SpanCapture

PASSWORD = "s3cret-Pa55word"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything the service logs during the test, as JSON lines."""
    buffer = io.StringIO()
    yield buffer
    configure_logging("INFO", "text")


async def test_each_request_writes_one_json_access_line_with_route_pool_and_trace_ids(
    sqlite_file_url: str,
    make_settings: Callable[..., Settings],
    spans: SpanCapture,
    json_log: io.StringIO,
) -> None:
    app = create_app(make_settings(sqlite_file_url, log_format="json"))
    configure_logging("INFO", "json", stream=json_log)
    async with serving(app) as client:
        user_id = await create_user(client, "logged")
        await client.get(f"/api/v1/users/{user_id}?email=not-logged@example.com")
    lines = [orjson.loads(line) for line in json_log.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "building_blocks.access"]
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("POST", "/api/v1/users/", 201),
        ("GET", "/api/v1/users/{user_id}", 200),
    ]
    get = access[1]
    assert get["pool"] == "primary"
    assert get["cache"] == "miss"  # the in-process cache, empty for this user
    assert get["duration_ms"] > 0
    server = next(s for s in spans.spans() if s.name == "GET /api/v1/users/{user_id}")
    assert get["trace_id"] == format(server.context.trace_id, "032x")
    assert get["span_id"] == format(server.context.span_id, "016x")
    service_lines = [line for line in lines if line["logger"] != "httpx"]  # httpx: the client
    assert b"not-logged@example.com" not in orjson.dumps(service_lines)  # no query strings


@pytest.fixture(scope="module")
def scram_primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A private primary that checks passwords (the shared one trusts every login)."""
    try:
        server = PostgresServer.start_primary(
            tmp_path_factory.mktemp("scram"), auth="scram", password="the-real-one"
        )
    except ServiceUnavailable as exc:
        skip_or_fail(exc)
    with server:
        yield server


@pytest.mark.postgres
async def test_a_failed_login_logs_no_password_nor_full_url(
    scram_primary: PostgresServer,
    make_settings: Callable[..., Settings],
    json_log: io.StringIO,
    tmp_path: Path,
) -> None:
    url = scram_primary.url(password=PASSWORD)
    app = create_app(make_settings(url, log_format="json", log_level="DEBUG"))
    configure_logging("DEBUG", "json", stream=json_log)
    logging.getLogger("building_blocks").debug("connecting to %s", url)  # a careless caller
    async with serving(app, wait_ready=False) as client:
        assert await app.state.startup.wait() == "failed"  # a wrong password: no retries
        response = await client.get("/api/v1/users/00000000-0000-0000-0000-000000000001")
        ready = await client.get("/health/ready")
    assert response.status_code == 503
    assert ready.status_code == 503
    logged = json_log.getvalue()
    assert "the password was rejected" in logged
    assert PASSWORD not in logged
    assert PASSWORD not in response.text + ready.text
    assert f"postgres:{PASSWORD}@" not in logged
