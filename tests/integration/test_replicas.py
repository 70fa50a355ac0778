"""Replica routing against a real primary and streaming hot standby: where reads and
writes land (asked of the servers), read-your-writes while replay is paused, lag taking a
replica out and back, and a replica stopped in the middle of load."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, text

from app.main import create_app
from app.settings import Settings
from app.users.repository import SqlUserRepository
from building_blocks import DatabaseConfig, SQLAlchemySession
from building_blocks.db import consistency_scope, force_primary
from building_blocks.fastapi import CONSISTENCY_HEADER
from building_blocks.telemetry.metrics import Metrics
from building_blocks.uow import SQLAlchemyUnitOfWorkFactory
from tests.integration.conftest import PASSWORD, eventually, user_body
from tests.support import PostgresReplica, PostgresServer
from tests.support.asgi import serving

pytestmark = pytest.mark.postgres

Pair = tuple[PostgresServer, PostgresReplica]


def _settings(primary: PostgresServer, replica: PostgresReplica, **extra: object) -> Settings:
    return Settings(
        database_url=primary.url(),
        database_replica_urls=[replica.url()],
        db_replica_probe_interval_seconds=0.1,
        db_connect_timeout=2.0,
        **extra,  # type: ignore[arg-type]
    )


def _fallbacks(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("db_replica_fallbacks_total", {"reason": reason})
    return value or 0.0


@pytest.fixture
async def session(pg_pair: Pair) -> AsyncIterator[SQLAlchemySession]:
    primary, replica = pg_pair
    config = DatabaseConfig(
        primary.url(),
        replica_urls=(replica.url(),),
        replica_max_lag_seconds=1.0,
        replica_probe_interval=0.1,
        connect_timeout=2.0,
        application_name="routing-test",
    )
    session = SQLAlchemySession(config, metrics=Metrics(CollectorRegistry()))
    await session.start()
    await eventually(lambda: session.router.replica("replica-0").state == "up")
    try:
        yield session
    finally:
        await session.close()


async def _server_port(session: SQLAlchemySession, *, read_only: bool) -> int:
    async with session.begin(read_only=read_only) as conn:
        return int(await conn.scalar(select(func.inet_server_port())))


async def test_read_only_work_runs_on_the_replica_and_writes_on_the_primary(
    session: SQLAlchemySession, pg_pair: Pair
) -> None:
    primary, replica = pg_pair
    assert await _server_port(session, read_only=True) == replica.port
    assert await _server_port(session, read_only=False) == primary.port
    # And the standby sees our request pool by its application_name.
    async with session.begin(read_only=True) as conn:
        await conn.scalar(text("SELECT 1"))
        names = replica.psql(
            "SELECT string_agg(DISTINCT application_name, ',') FROM pg_stat_activity"
            " WHERE application_name LIKE 'routing-test:%'"
        )
    assert "routing-test:replica-0" in names.split(",")


async def test_force_primary_block_sends_reads_to_the_primary_and_counts_them(
    session: SQLAlchemySession, pg_pair: Pair
) -> None:
    primary, _ = pg_pair
    metrics = session._metrics
    assert metrics is not None
    before = _fallbacks(metrics, "forced")
    with force_primary():
        assert await _server_port(session, read_only=True) == primary.port
    assert _fallbacks(metrics, "forced") == before + 1


async def test_read_after_write_hits_primary_while_replica_replay_is_paused(
    session: SQLAlchemySession, pg_pair: Pair
) -> None:
    primary, replica = pg_pair
    uow = SQLAlchemyUnitOfWorkFactory(session, SqlUserRepository)
    replica.pause_replay()
    try:
        with consistency_scope() as scope:
            async with uow() as unit:
                await unit.connection.execute(
                    select(func.pg_logical_emit_message(True, "routing", "test"))
                )
                await unit.commit()
            assert unit.consistency_token is not None
            assert scope.required == unit.consistency_token
            assert await _server_port(session, read_only=True) == primary.port
        # Without the token the replica still serves (it is within the lag bound).
        assert await _server_port(session, read_only=True) == replica.port
    finally:
        replica.resume_replay()


async def test_lag_beyond_the_bound_takes_the_replica_out_and_resuming_puts_it_back(
    session: SQLAlchemySession, pg_pair: Pair
) -> None:
    primary, replica = pg_pair
    metrics = session._metrics
    assert metrics is not None
    state = session.router.replica("replica-0")
    replica.pause_replay()
    try:
        primary.psql("SELECT pg_logical_emit_message(true, 'lag', 'test')")
        written = time.monotonic()
        detected = written + await eventually(lambda: state.state == "lagging", timeout=10)
        delay = detected - written
        print(
            f"\nlag detection: lagging {delay:.2f}s after the first unreplayed write "
            f"(bound {session.config.replica_max_lag_seconds}s, probe every "
            f"{session.config.replica_probe_interval}s)"
        )
        assert session.config.replica_max_lag_seconds <= delay < 3.0
        lag_gauge = metrics.registry.get_sample_value(
            "db_replica_lag_seconds", {"db_client_connection_pool_name": "replica-0"}
        )
        assert lag_gauge is not None
        assert lag_gauge > session.config.replica_max_lag_seconds
        before = _fallbacks(metrics, "lagging")
        assert await _server_port(session, read_only=True) == primary.port
        assert _fallbacks(metrics, "lagging") == before + 1
    finally:
        replica.resume_replay()
    back = await eventually(lambda: state.state == "up", timeout=10)
    print(f"lag recovery: back in {back:.2f}s after replay resumed")
    assert await _server_port(session, read_only=True) == replica.port
    available = metrics.registry.get_sample_value(
        "db_replica_available", {"db_client_connection_pool_name": "replica-0"}
    )
    assert available == 1.0


@pytest.mark.parametrize("carrier", ["header", "cookie"])
async def test_a_client_reads_its_own_writes_100_of_100_while_replay_is_paused(
    pg_pair: Pair, carrier: str
) -> None:
    primary, replica = pg_pair
    app = create_app(_settings(primary, replica, db_replica_max_lag_seconds=120))
    async with serving(app) as writer:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as other:
            await eventually(lambda: app.state.database.router.replica("replica-0").state == "up")
            replica.pause_replay()
            try:
                seen_by_writer = 0
                stale_for_other = 0
                for n in range(100):
                    created = await writer.post(
                        "/api/v1/users/", json=user_body(f"{carrier}{n}-{uuid.uuid4().hex[:6]}")
                    )
                    assert created.status_code == 201, created.text
                    token = created.headers[CONSISTENCY_HEADER]
                    assert token.startswith("lsn:")
                    headers = {CONSISTENCY_HEADER: token} if carrier == "header" else {}
                    if carrier == "header":
                        writer.cookies.clear()  # the header alone must do
                    else:
                        assert "consistency_token" in writer.cookies
                    got = await writer.get(f"/api/v1/users/{created.json()['id']}", headers=headers)
                    seen_by_writer += got.status_code == 200
                    # A client without the token is served by the stale replica.
                    elsewhere = await other.get(f"/api/v1/users/{created.json()['id']}")
                    stale_for_other += elsewhere.status_code == 404
            finally:
                replica.resume_replay()
    assert seen_by_writer == 100
    assert stale_for_other == 100


async def test_replica_stopped_mid_load_fails_no_request_and_rejoins_after_restart(
    pg_pair: Pair,
) -> None:
    primary, replica = pg_pair
    settings = _settings(primary, replica, OTEL_SERVICE_NAME="midload")
    app = create_app(settings)
    metrics: Metrics = app.state.metrics
    statuses: list[int] = []
    async with serving(app) as client:
        ids = []
        for n in range(5):
            created = await client.post(
                "/api/v1/users/", json=user_body(f"load{n}-{uuid.uuid4().hex[:6]}")
            )
            ids.append(created.json()["id"])
        await asyncio.to_thread(replica.wait_replay_caught_up)
        client.cookies.clear()
        state = app.state.database.router.replica("replica-0")
        stop = asyncio.Event()

        async def reader(k: int) -> None:
            while not stop.is_set():
                response = await client.get(f"/api/v1/users/{ids[k % len(ids)]}")
                statuses.append(response.status_code)

        readers = [asyncio.create_task(reader(k)) for k in range(8)]
        try:
            await eventually(lambda: len(statuses) > 50)
            assert state.state == "up"
            stopping = time.monotonic()
            await asyncio.to_thread(replica.stop, "immediate")
            await eventually(lambda: state.state == "down", timeout=10)
            fell_back = state.changed_at - stopping
            served_before = len(statuses)
            await eventually(lambda: len(statuses) > served_before + 50)
            print(
                f"\nreplica stopped under load: out of rotation {fell_back:.3f}s after pg_ctl"
                f" stop -m immediate began; {_fallbacks(metrics, 'down'):.0f} reads fell back"
            )
            restarting = time.monotonic()
            await asyncio.to_thread(replica.start)
            serving_again = time.monotonic() - restarting
            await eventually(lambda: state.state == "up", timeout=15)
            rejoined = state.changed_at - restarting
            # Reads reach the restarted standby again: our pool shows up on that server.
            await eventually(
                lambda: (
                    replica.psql(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE application_name = 'midload:replica-0'"
                    )
                    != "0"
                ),
                timeout=10,
            )
        finally:
            stop.set()
            await asyncio.gather(*readers, return_exceptions=True)
    print(
        f"replica restarted: back in rotation {rejoined:.2f}s after pg_ctl start began"
        f" (the standby itself took {serving_again:.2f}s to stream again)"
    )
    assert len(statuses) > 100
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert _fallbacks(metrics, "down") > 0


async def test_readiness_lists_each_pool_state_without_secrets(pg_pair: Pair) -> None:
    primary, replica = pg_pair
    app = create_app(_settings(primary, replica, db_replica_max_lag_seconds=1))
    async with serving(app) as client:
        await eventually(lambda: app.state.database.router.replica("replica-0").state == "up")
        response = await client.get("/health/ready")
        replica.pause_replay()
        try:
            primary.psql("SELECT pg_logical_emit_message(true, 'lag', 'ready')")
            await eventually(
                lambda: app.state.database.router.replica("replica-0").state == "lagging",
                timeout=15,
            )
            lagging = await client.get("/health/ready")
        finally:
            replica.resume_replay()
    assert response.status_code == 200
    states = {d["name"]: d["state"] for d in response.json()["databases"]}
    assert states == {"primary": "up", "replica-0": "up"}
    assert lagging.status_code == 200  # a lagging replica does not make the service unready
    assert {d["name"]: d["state"] for d in lagging.json()["databases"]}["replica-0"] == "lagging"
    for body in (response.text, lagging.text):
        assert PASSWORD not in body


async def test_a_frozen_replica_times_out_into_the_breaker_and_reads_carry_on(
    session: SQLAlchemySession, pg_pair: Pair
) -> None:
    primary, replica = pg_pair
    state = session.router.replica("replica-0")
    # A pooled connection exists, so the first read after the freeze hangs in pre-ping.
    assert await _server_port(session, read_only=True) == replica.port
    replica.sigstop()
    try:
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            assert await _server_port(session, read_only=True) == primary.port
            latencies.append(time.monotonic() - started)
        assert state.state == "down"
    finally:
        replica.sigcont()
    print(
        f"\nfrozen replica: first read {latencies[0]:.2f}s (connect timeout"
        f" {session.config.connect_timeout}s), then at most {max(latencies[1:]) * 1000:.0f} ms"
    )
    # The bound is the connect timeout, plus the 2 s SQLAlchemy grants a cancelled
    # asyncpg connection to close gracefully before it terminates it.
    assert latencies[0] < session.config.connect_timeout + 2.5
    assert max(latencies[1:]) < 0.5
    await eventually(lambda: state.state == "up", timeout=15)
    assert await _server_port(session, read_only=True) == replica.port
