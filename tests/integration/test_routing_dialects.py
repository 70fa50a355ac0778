"""Routing on the dialects without WAL positions: SQLite and MariaDB with no replicas run
everything on the primary; MariaDB with a replica falls back to time tokens."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from app.main import create_app
from app.settings import Settings
from building_blocks import DatabaseConfig, SQLAlchemySession
from building_blocks.db import consistency_scope
from building_blocks.fastapi import CONSISTENCY_HEADER
from building_blocks.telemetry.metrics import Metrics
from building_blocks.uow import SQLAlchemyUnitOfWorkFactory
from tests.integration.conftest import eventually, user_body
from tests.support.asgi import serving


@pytest.fixture(params=["sqlite", "mariadb"])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


async def test_without_replicas_everything_runs_on_the_primary(url: str) -> None:
    app = create_app(Settings(database_url=url))
    metrics: Metrics = app.state.metrics
    async with serving(app) as client:
        created = await client.post("/api/v1/users/", json=user_body(f"solo-{id(client)}"))
        got = await client.get(f"/api/v1/users/{created.json()['id']}")
        ready = await client.get("/health/ready")
        factory = SQLAlchemyUnitOfWorkFactory(app.state.database, lambda conn: conn)
        async with factory(read_only=True) as uow:
            pool = uow.pool
    assert created.status_code == 201
    assert got.status_code == 200
    assert CONSISTENCY_HEADER not in created.headers  # no replica: no token to carry
    assert pool == "primary"
    assert [d["name"] for d in ready.json()["databases"]] == ["primary"]
    assert (
        metrics.registry.get_sample_value("db_replica_fallbacks_total", {"reason": "down"}) is None
    )


async def test_mariadb_replica_gets_reads_and_a_time_token_keeps_a_writer_on_the_primary(
    mariadb_url: str,
) -> None:
    # The same server as its own "replica": SHOW SLAVE STATUS has no row, so no lag.
    config = DatabaseConfig(mariadb_url, replica_urls=(mariadb_url,), replica_probe_interval=0.1)
    session = SQLAlchemySession(config, metrics=Metrics(CollectorRegistry()))
    await session.start()
    try:
        await eventually(lambda: session.router.replica("replica-0").state == "up")
        factory = SQLAlchemyUnitOfWorkFactory(session, lambda conn: conn)
        async with factory(read_only=True) as uow:
            assert uow.pool == "replica-0"
        with consistency_scope() as scope:
            async with factory() as uow:
                await uow.repository.execute(text("DO 1"))
                await uow.commit()
            assert scope.committed is not None
            assert scope.committed.kind == "time"
            async with factory(read_only=True) as uow:
                assert uow.pool == "primary"
    finally:
        await session.close()
