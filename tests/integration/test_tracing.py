"""Spans: one trace per request (server → unit of work → SQL on the right pool), exactly
one span per statement, propagation, Redis commands, and OTLP export on shutdown."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqlalchemy import event, text

from app.main import create_app
from app.settings import Settings
from building_blocks.db import SQLAlchemySession
from building_blocks.telemetry import instrument_redis, uninstrument_redis
from tests.integration.cache_app import cache_settings
from tests.integration.conftest import create_user
from tests.support.aio import poll_until
from tests.support.app_process import AppProcess
from tests.support.asgi import serving
from tests.support.otlp import OtlpReceiver
from tests.support.postgres import PostgresServer
from tests.support.process import wait_until
from tests.support.redis import RedisServer
from tests.support.telemetry import SpanCapture

USER_ROUTE = "/api/v1/users/{user_id}"
POOL_ATTR = "db.client.connection.pool.name"


def _sql_spans(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.attributes and "db.query.text" in s.attributes]


async def test_a_request_is_one_trace_of_server_cache_unit_of_work_and_sql_spans(
    sqlite_file_url: str, make_settings: Callable[..., Settings], spans: SpanCapture
) -> None:
    async with serving(create_app(make_settings(sqlite_file_url))) as client:
        user_id = await create_user(client, "traced")
        spans.start()  # only the GET's spans from here
        assert (await client.get(f"/api/v1/users/{user_id}")).status_code == 200
        finished = spans.spans()

        async def answered_from_cache() -> bool:  # stored after the first answer
            spans.start()
            response = await client.get(f"/api/v1/users/{user_id}")
            return response.headers["x-cache"] == "hit"

        await poll_until(answered_from_cache, what="a cache hit")
    (server,) = [s for s in finished if s.kind is SpanKind.SERVER]
    assert server.name == f"GET {USER_ROUTE}"
    assert server.parent is None
    assert server.attributes is not None
    assert server.attributes["http.route"] == USER_ROUTE
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["cache.result"] == "miss"
    # A hit: the server span alone, saying so (no cache span, no database span).
    (hit,) = spans.spans()
    assert hit.attributes is not None
    assert hit.attributes["cache.result"] == "hit"
    assert {s.context.trace_id for s in finished} == {server.context.trace_id}
    (uow,) = [s for s in finished if s.name == "unit of work"]
    assert uow.parent is not None
    assert uow.parent.span_id == server.context.span_id
    assert uow.attributes is not None
    assert uow.attributes["uow.read_only"] is True
    (cache,) = [s for s in finished if s.name == "cache get"]
    assert cache.parent is not None
    assert cache.parent.span_id == server.context.span_id
    assert cache.attributes is not None
    assert cache.attributes["cache.hit"] is False  # a miss: the database is read next
    sql = _sql_spans(finished)
    assert [s.name for s in sql] == ["BEGIN", "SELECT users"]
    for span in sql:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == uow.context.span_id
        assert span.attributes is not None
        assert span.attributes[POOL_ATTR] == "primary"


async def test_each_statement_is_exactly_one_span_even_if_instrumented_again(
    sqlite_file_url: str, make_settings: Callable[..., Settings], spans: SpanCapture
) -> None:
    """Starting the instrumentation a second time must not add a second listener (the
    double-instrumentation trap of async engines)."""
    app = create_app(make_settings(sqlite_file_url))
    statements: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async with serving(app) as client:
        spans.clear()  # start-up's own probes are not part of this
        await app.state.db_telemetry.start()  # again: must be a no-op
        session: SQLAlchemySession = app.state.database
        event.listen(session.primary.sync_engine, "before_cursor_execute", count)
        user_id = await create_user(client, "once")
        await client.get(f"/api/v1/users/{user_id}")
        await client.patch(f"/api/v1/users/{user_id}", json={"first_name": "Ada2"})
        event.remove(session.primary.sync_engine, "before_cursor_execute", count)
    sql = _sql_spans(spans.spans())
    assert len(statements) >= 6
    assert sorted(str((s.attributes or {})["db.query.text"]) for s in sql) == sorted(statements)


async def test_a_failing_statement_ends_its_span_with_an_error(
    sqlite_file_url: str, make_settings: Callable[..., Settings], spans: SpanCapture
) -> None:
    app = create_app(make_settings(sqlite_file_url))
    async with serving(app):
        session: SQLAlchemySession = app.state.database
        async with session.primary.connect() as conn:
            with pytest.raises(Exception, match="no such table"):
                await conn.execute(text("SELECT * FROM no_such_table"))
    (failed,) = [s for s in _sql_spans(spans.spans()) if s.name == "SELECT no_such_table"]
    assert not failed.status.is_ok
    assert failed.end_time is not None


async def test_an_incoming_traceparent_continues_the_callers_trace(
    sqlite_file_url: str, make_settings: Callable[..., Settings], spans: SpanCapture
) -> None:
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    async with serving(create_app(make_settings(sqlite_file_url))) as client:
        await client.get("/health/live", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    (server,) = [s for s in spans.spans() if s.kind is SpanKind.SERVER]
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == parent_id


@pytest.mark.postgres
async def test_statements_on_a_replica_engine_are_spans_and_metrics_of_its_pool(
    postgresql_url: str,
    pg_replica: PostgresServer,
    make_settings: Callable[..., Settings],
    spans: SpanCapture,
) -> None:
    replica_url = pg_replica.url(database="contract")
    settings = make_settings(postgresql_url).model_copy(
        update={"database_replica_urls": [replica_url]}
    )
    settings = Settings(database_url=postgresql_url, database_replica_urls=replica_url)
    app = create_app(settings)
    async with serving(app) as client:
        session: SQLAlchemySession = app.state.database
        async with session.engines["replica-0"].connect() as conn:
            await conn.execute(text("SELECT count(*) FROM users"))
        metrics = (await client.get("/metrics")).text
    (span,) = [s for s in _sql_spans(spans.spans()) if s.name == "SELECT users"]
    assert span.attributes is not None
    assert span.attributes[POOL_ATTR] == "replica-0"
    assert span.attributes["db.system.name"] == "postgresql"
    assert (
        'db_client_operation_duration_seconds_count{db_client_connection_pool_name="replica-0",'
        'db_collection_name="users",db_operation_name="SELECT",db_system_name="postgresql"} 1.0'
    ) in metrics
    assert 'db_client_connection_max{db_client_connection_pool_name="replica-0"} 15.0' in metrics


@pytest.mark.redis
async def test_redis_commands_are_one_span_each_on_an_instrumented_client(
    redis_server: RedisServer, spans: SpanCapture
) -> None:
    from redis.asyncio import Redis  # noqa: PLC0415

    client = Redis.from_url(redis_server.url)
    try:
        instrument_redis(client)
        instrument_redis(client)  # twice: still one span per command
        await client.set("telemetry-test", "1")
        assert await client.get("telemetry-test") == b"1"
        uninstrument_redis(client)
        await client.delete("telemetry-test")  # after uninstrumenting: no span
    finally:
        await client.aclose()
    assert [s.name for s in _redis_spans(spans.spans())] == ["SET", "GET"]


def _redis_spans(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    """Redis command spans (the cache's own ``cache get`` spans are INTERNAL)."""
    return [
        s
        for s in spans
        if s.kind is SpanKind.CLIENT
        and "redis"
        in {(s.attributes or {}).get("db.system"), (s.attributes or {}).get("db.system.name")}
    ]


@pytest.mark.redis
async def test_the_services_redis_commands_are_spans_of_the_requests_trace(
    sqlite_file_url: str, redis_server: RedisServer, spans: SpanCapture
) -> None:
    async with serving(create_app(cache_settings(sqlite_file_url, redis_server.url))) as client:
        spans.start()  # a create invalidates the cache (a Lua script on the pool's client)
        await create_user(client, f"redis{uuid.uuid4().hex[:8]}")

        def invalidation_seen() -> bool:  # made after the commit: maybe after the answer
            return "EVALSHA" in [s.name for s in _redis_spans(spans.spans())]

        await poll_until(invalidation_seen, what="the invalidation's Redis span")
        finished = spans.spans()
    (server,) = [s for s in finished if s.kind is SpanKind.SERVER]
    in_trace = {s.context.span_id for s in finished}
    for span in _redis_spans(finished):
        assert span.context.trace_id == server.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id in in_trace


def test_spans_reach_an_otlp_receiver_when_the_service_shuts_down(tmp_path: Path) -> None:
    """Configured only by OTEL_* variables; the batch delay is an hour, so the spans can
    only arrive through the flush of a graceful shutdown. The JSON access line carries
    the trace id of the exported server span."""
    with OtlpReceiver() as receiver:
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
            "OTEL_SERVICE_NAME": "users-otlp-test",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "3600000",
            "LOG_FORMAT": "json",
        }
        app = AppProcess(env, log_path=tmp_path / "app.log")
        with app:
            with httpx.Client(base_url=app.base_url, timeout=10) as client:
                created = client.post(
                    "/api/v1/users/",
                    json={
                        "first_name": "O",
                        "last_name": "T",
                        "email": "o@example.com",
                        "username": "otlp",
                    },
                )
                assert created.status_code == 201
                assert client.get(f"/api/v1/users/{created.json()['id']}").status_code == 200
            assert receiver.spans() == []  # nothing before shutdown
            assert app.stop() == 0, app.log_tail()  # a graceful stop: the lifespan ran
        wait_until(lambda: bool(receiver.spans()), timeout=10, what="spans at the receiver")
        received = receiver.spans()
    names = {name for _, name, _ in received}
    assert {"POST /api/v1/users/", f"GET {USER_ROUTE}", "unit of work", "SELECT users"} <= names
    assert {service for service, _, _ in received} == {"users-otlp-test"}
    access = [
        orjson.loads(line)
        for line in app.log_path.read_text().splitlines()
        if line.startswith("{") and '"building_blocks.access"' in line
    ]
    get_line = next(a for a in access if a["route"] == USER_ROUTE)
    server_trace = next(t for _, name, t in received if name == f"GET {USER_ROUTE}")
    assert get_line["trace_id"] == server_trace
    assert get_line["status"] == 200
    assert get_line["pool"] == "primary"
