"""`/metrics` after real traffic: every DESIGN.md §4 metric, labels, values that move."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from app.main import create_app
from app.settings import Settings
from building_blocks.db import SQLAlchemySession
from tests.integration.conftest import create_user, eventually
from tests.support.asgi import serving
from tests.support.pytest_helpers import skip_or_fail
from tests.support.servers import ServiceUnavailable
from tests.support.telemetry import sample_value, samples

DESIGN_METRICS = {
    "http_server_request_duration_seconds": "histogram",
    "http_server_active_requests": "gauge",
    "db_client_connection_count": "gauge",
    "db_client_connection_max": "gauge",
    "db_client_connection_idle_max": "gauge",
    "db_client_connection_idle_min": "gauge",
    "db_client_connection_pending_requests": "gauge",
    "db_client_connection_timeouts_total": "counter",
    "db_client_connection_wait_time_seconds": "histogram",
    "db_client_connection_use_time_seconds": "histogram",
    "db_client_connection_create_time_seconds": "histogram",
    "db_client_operation_duration_seconds": "histogram",
    "db_replica_lag_seconds": "gauge",
    "db_replica_available": "gauge",
    "db_replica_fallbacks_total": "counter",
    "db_connect_attempts_total": "counter",
    "cache_requests_total": "counter",
    "cache_operation_duration_seconds": "histogram",
    "cache_invalidations_total": "counter",
    "cache_circuit_open": "gauge",
}
POOL = "db_client_connection_pool_name"
USER_ROUTE = "/api/v1/users/{user_id}"


async def scrape(client: Any, *, openmetrics: bool = False) -> str:
    headers = {"accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return str(response.text)


async def test_every_design_metric_is_exposed_with_help_and_type(
    sqlite_file_url: str, make_settings: Callable[..., Settings]
) -> None:
    """Routing and cache metrics recorded by other modules are registered even before
    anything records them, so dashboards and alerts can rely on their names."""
    async with serving(create_app(make_settings(sqlite_file_url))) as client:
        await create_user(client, "exposed")
        text = await scrape(client)
    for name, kind in DESIGN_METRICS.items():
        assert f"# TYPE {name} {kind}\n" in text, name
        assert f"# HELP {name} " in text, name


@pytest.mark.parametrize("telemetry", [True, False])
async def test_the_cache_counts_lookups_only_when_telemetry_is_on(
    sqlite_file_url: str, make_settings: Callable[..., Settings], telemetry: bool
) -> None:
    """With telemetry off nothing serves /metrics, so the cache records nothing (the
    benchmarks' "off" then pays for no instrument); hits are served either way."""
    app = create_app(make_settings(sqlite_file_url), telemetry=telemetry)
    async with serving(app) as client:
        user_id = await create_user(client, "counted")
        served: list[str] = []

        async def read_hits() -> bool:  # the cache is filled after the first answer
            response = await client.get(f"/api/v1/users/{user_id}")
            assert response.status_code == 200
            served.append(response.headers["x-cache"])
            return served.count("hit") >= 2

        await eventually(read_hits)
        assert (await client.get("/metrics")).status_code == (200 if telemetry else 404)
    hits = app.state.metrics.registry.get_sample_value(
        "cache_requests_total", {"cache_name": "users", "result": "hit"}
    )
    assert hits == (served.count("hit") if telemetry else None)


async def test_http_metrics_are_labelled_with_route_templates_not_raw_paths(
    sqlite_file_url: str, make_settings: Callable[..., Settings]
) -> None:
    async with serving(create_app(make_settings(sqlite_file_url))) as client:
        ids = [await create_user(client, f"route{i}") for i in range(3)]
        for user_id in ids:
            assert (await client.get(f"/api/v1/users/{user_id}")).status_code == 200
        missing = uuid.uuid4()
        assert (await client.get(f"/api/v1/users/{missing}")).status_code == 404
        text = await scrape(client)
    count = "http_server_request_duration_seconds_count"
    assert sample_value(text, count, http_route=USER_ROUTE, http_response_status_code="200") == 3
    assert sample_value(text, count, http_route=USER_ROUTE, http_response_status_code="404") == 1
    assert sample_value(text, count, http_route="/api/v1/users/", http_request_method="POST") == 3
    for user_id in [*ids, str(missing)]:
        assert user_id not in text
    # The scrape is itself a request in flight while it is answered.
    assert sample_value(text, "http_server_active_requests", http_request_method="GET") == 1
    assert sample_value(text, "http_server_active_requests", http_request_method="POST") == 0


async def test_query_durations_count_each_statement_by_operation_table_and_pool(
    sqlite_file_url: str, make_settings: Callable[..., Settings]
) -> None:
    async with serving(create_app(make_settings(sqlite_file_url))) as client:
        user_id = await create_user(client, "queries")
        before = await scrape(client)
        for _ in range(4):
            await client.get(f"/api/v1/users/{user_id}")
        after = await scrape(client)
    name = "db_client_operation_duration_seconds_count"
    labels = {
        "db_system_name": "sqlite",
        "db_operation_name": "SELECT",
        "db_collection_name": "users",
        POOL: "primary",
    }
    assert sample_value(after, name, **labels) - sample_value(before, name, **labels) == 4
    inserts = {**labels, "db_operation_name": "INSERT"}
    assert sample_value(after, name, **inserts) == 1


async def test_wait_and_use_time_histograms_count_every_checkout(
    sqlite_file_url: str, make_settings: Callable[..., Settings]
) -> None:
    # No cache: every GET must reach the pool.
    app = create_app(make_settings(sqlite_file_url, cache_ttl_seconds=0))
    checkouts = 0

    def count(*_: object) -> None:
        nonlocal checkouts
        checkouts += 1

    async with serving(app) as client:
        session: SQLAlchemySession = app.state.database
        before = await scrape(client)  # start-up's own checkouts are already counted
        event.listen(session.primary.sync_engine, "checkout", count)
        user_id = await create_user(client, "checkouts")
        await asyncio.gather(*(client.get(f"/api/v1/users/{user_id}") for _ in range(6)))
        event.remove(session.primary.sync_engine, "checkout", count)
        text = await scrape(client)
    assert checkouts >= 7
    for histogram in ("wait_time", "use_time"):
        name = f"db_client_connection_{histogram}_seconds_count"
        counted = sample_value(text, name, **{POOL: "primary"}) - sample_value(
            before, name, **{POOL: "primary"}
        )
        assert counted == checkouts, histogram
    creates = sample_value(
        text, "db_client_connection_create_time_seconds_count", **{POOL: "primary"}
    )
    idle = sample_value(text, "db_client_connection_count", db_client_connection_state="idle")
    # Connections are created on demand; at most pool_size of them stay idle afterwards.
    assert 1 <= idle <= creates <= checkouts


async def test_histograms_carry_trace_id_exemplars_when_scraped_as_openmetrics(
    sqlite_file_url: str, make_settings: Callable[..., Settings], spans: Any
) -> None:
    async with serving(create_app(make_settings(sqlite_file_url))) as client:
        user_id = await create_user(client, "exemplar")
        await client.get(f"/api/v1/users/{user_id}")
        text = await scrape(client, openmetrics=True)
        plain = await scrape(client)
    server_traces = {
        format(s.context.trace_id, "032x") for s in spans.spans() if s.name == f"GET {USER_ROUTE}"
    }
    exemplars = re.findall(
        r'^http_server_request_duration_seconds_bucket\{[^}]*http_route="/api/v1/users/\{user_id\}"'
        r'[^}]*\} \S+ # \{trace_id="([0-9a-f]{32})"\}',
        text,
        re.MULTILINE,
    )
    assert exemplars
    assert set(exemplars) <= server_traces
    assert re.search(r'^db_client_operation_duration_seconds_bucket\{.*# \{trace_id="', text, re.M)
    assert "# {" not in plain  # the classic text format has no exemplars


@pytest.mark.postgres
async def test_used_connections_rise_while_a_request_holds_one(
    postgresql_url: str, make_settings: Callable[..., Settings]
) -> None:
    """A PATCH blocked on a row lock holds its connection: the gauge shows it used."""
    import asyncpg  # noqa: PLC0415 - PostgreSQL-only test

    app = create_app(make_settings(postgresql_url))
    async with serving(app) as client:
        user_id = await create_user(client, f"holder{uuid.uuid4().hex[:8]}")
        baseline = await scrape(client)
        assert (
            sample_value(baseline, "db_client_connection_count", db_client_connection_state="used")
            == 0
        )
        locker = await asyncpg.connect(postgresql_url.replace("+asyncpg", ""))
        try:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user_id))
            patch = asyncio.create_task(
                client.patch(f"/api/v1/users/{user_id}", json={"first_name": "Locked"})
            )
            used = await _poll(
                client, "db_client_connection_count", 1, db_client_connection_state="used"
            )
            assert (
                sample_value(used, "http_server_active_requests", http_request_method="PATCH") == 1
            )
            await lock.rollback()
            assert (await patch).status_code == 200
        finally:
            await locker.close()
        after = await scrape(client)
    assert sample_value(after, "db_client_connection_count", db_client_connection_state="used") == 0
    assert sample_value(after, "db_client_connection_max", **{POOL: "primary"}) == 15


@pytest.mark.postgres
async def test_exhausted_pool_shows_pending_requests_then_counts_the_timeout(
    postgresql_url: str, make_settings: Callable[..., Settings]
) -> None:
    """All 15 connections (5 + 10 overflow) held: a 16th request waits, is seen pending,
    and after the pool timeout answers 503 and counts one timeout."""
    app = create_app(make_settings(postgresql_url, db_pool_timeout=3.0))
    async with serving(app) as client:
        user_id = await create_user(client, f"pending{uuid.uuid4().hex[:8]}")
        session: SQLAlchemySession = app.state.database
        before = await scrape(client)
        held = [await session.primary.connect() for _ in range(15)]
        try:
            waiting = asyncio.create_task(client.get(f"/api/v1/users/{user_id}"))
            during = await _poll(client, "db_client_connection_pending_requests", 1)
            assert (
                sample_value(
                    during, "db_client_connection_count", db_client_connection_state="used"
                )
                == 15
            )
            assert (
                sample_value(
                    during, "db_client_connection_count", db_client_connection_state="idle"
                )
                == 0
            )
            response = await waiting
            assert response.status_code == 503
            assert "Retry-After" in response.headers
        finally:
            for conn in held:
                await conn.close()
        after = await scrape(client)
    timeouts = "db_client_connection_timeouts_total"
    assert (
        sample_value(after, timeouts, **{POOL: "primary"})
        - sample_value(before, timeouts, **{POOL: "primary"})
        == 1
    )
    assert sample_value(after, "db_client_connection_pending_requests", **{POOL: "primary"}) == 0
    # The 15 test checkouts waited and were counted; the timed-out one was not.
    wait_count = "db_client_connection_wait_time_seconds_count"
    assert (
        sample_value(after, wait_count, **{POOL: "primary"})
        - sample_value(before, wait_count, **{POOL: "primary"})
        == 15
    )


async def _poll(client: Any, name: str, value: float, **labels: str) -> str:
    """Scrape until ``name{labels}`` reads ``value``; returns that scrape."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        text = await scrape(client)
        if sample_value(text, name, **labels) == value:
            return text
        if loop.time() > deadline:
            raise AssertionError(f"{name}{labels} never reached {value}: {samples(text, name)}")
        await asyncio.sleep(0.02)


async def test_promtool_accepts_the_exposition_except_the_known_count_suffix_lint(
    sqlite_file_url: str, make_settings: Callable[..., Settings]
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        skip_or_fail(ServiceUnavailable("promtool is not installed (scripts/install-test-deps)"))
    async with serving(create_app(make_settings(sqlite_file_url))) as client:
        user_id = await create_user(client, "promtool")
        await client.get(f"/api/v1/users/{user_id}")
        await client.get("/nope")
        text = await scrape(client)
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not line.startswith("db_client_connection_count ")
    ]
    assert problems == [], result.stdout + result.stderr
