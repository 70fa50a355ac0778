"""A busy or slow PostgreSQL: requests beyond the pool wait the pool timeout and then get
503 + Retry-After (counted in ``db_client_connection_timeouts_total``); a statement past
the statement timeout is cancelled into a 503 problem and leaves its connection healthy.

A test session holds ``LOCK TABLE users`` so that writes block inside the database: real
slow queries, without sleeping anywhere.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from app.main import create_app
from app.migrations import upgrade
from tests.integration.conftest import eventually, settings_for, user_body
from tests.support import PostgresServer
from tests.support.asgi import serving
from tests.support.telemetry import sample_value

pytestmark = pytest.mark.postgres

USERS = "/api/v1/users/"
POOL = {"db_client_connection_pool_name": "primary"}


async def fresh_database(server: PostgresServer) -> str:
    """A migrated database of this test's own on the run's primary: its locks block
    only this test."""
    name = f"faults_{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(server.create_database, name)
    url = server.url(database=name)
    await upgrade(url)
    return url


@asynccontextmanager
async def users_locked(server: PostgresServer, url: str) -> AsyncIterator[asyncpg.Connection]:
    """Another session holds ACCESS EXCLUSIVE on ``users`` until the block ends: every
    statement on the table waits (a lock wait counts toward statement_timeout)."""
    database = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(server.url(driver="postgresql", database=database))
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


async def lock_waiters(conn: asyncpg.Connection) -> int:
    """Sessions of the service waiting on a lock right now."""
    # Inside a transaction pg_stat_activity is a snapshot taken at its first read.
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    count = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND application_name LIKE 'users:%'"
    )
    return int(count)


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


def assert_503_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["status"] == 503


async def test_requests_beyond_the_pool_get_503_after_the_pool_timeout_and_the_service_recovers(
    pg_primary: PostgresServer,
) -> None:
    url = await fresh_database(pg_primary)
    settings = settings_for(url, db_pool_size=2, db_max_overflow=0, db_pool_timeout=1.0)
    async with serving(create_app(settings)) as api:
        before = sample_value(await scrape(api), "db_client_connection_timeouts_total", **POOL)
        async with users_locked(pg_primary, url) as locker:

            async def timed_create(n: int) -> tuple[httpx.Response, float]:
                started = time.monotonic()
                response = await api.post(USERS, json=user_body(f"pool{n}"))
                return response, time.monotonic() - started

            # The first two take both connections and block on the lock.
            holders = [asyncio.create_task(timed_create(n)) for n in range(2)]

            async def both_blocked() -> bool:
                return await lock_waiters(locker) == 2

            await eventually(both_blocked, timeout=10)
            # Four more wait for a connection that no one returns.
            waiters = await asyncio.gather(*(timed_create(n) for n in range(2, 6)))
            assert not any(task.done() for task in holders)
        for response, elapsed in waiters:
            assert_503_problem(response)
            assert 1.0 <= elapsed < 4.0, f"waited {elapsed:.2f}s for a 1 s pool timeout"
        # The lock is gone: the writes that held the connections complete, none is lost.
        held = await asyncio.gather(*holders)
        assert [r.status_code for r, _ in held] == [201, 201]
        after_load = await asyncio.gather(
            *(api.post(USERS, json=user_body(f"after{n}")) for n in range(2))
        )
        assert [r.status_code for r in after_load] == [201, 201]
        text = await scrape(api)
    assert sample_value(text, "db_client_connection_timeouts_total", **POOL) == before + 4
    assert sample_value(text, "db_client_connection_pending_requests", **POOL) == 0
    print(f"\npool exhausted: 4 waiters got 503 after {[f'{e:.2f}s' for _, e in waiters]}")


async def test_a_statement_past_the_statement_timeout_is_a_503_and_its_connection_stays_usable(
    pg_primary: PostgresServer,
) -> None:
    url = await fresh_database(pg_primary)
    # One connection: the request after the timeout must reuse the very same one.
    settings = settings_for(
        url, db_statement_timeout=1.0, db_pool_size=1, db_max_overflow=0, db_pool_timeout=5.0
    )
    async with serving(create_app(settings)) as api:
        assert (await api.post(USERS, json=user_body("before"))).status_code == 201
        created = "db_client_connection_create_time_seconds_count"
        connections = sample_value(await scrape(api), created, **POOL)
        async with users_locked(pg_primary, url) as locker:
            backend_pids = await locker.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'users:primary'"
                " AND datname = current_database()"
            )
            started = time.monotonic()
            response = await api.post(USERS, json=user_body("blocked"))
            elapsed = time.monotonic() - started
        assert_503_problem(response)
        assert "timeout" in response.json()["detail"]
        assert 1.0 <= elapsed < 4.0, f"answered after {elapsed:.2f}s for a 1 s timeout"
        # The next request runs on the same connection: no reconnect, no error.
        after = await api.post(USERS, json=user_body("after"))
        assert after.status_code == 201, after.text
        text = await scrape(api)
        still = await asyncio.to_thread(
            pg_primary.psql,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'users:primary'"
            " AND datname = current_database()",
            url.rsplit("/", 1)[1],
        )
    assert sample_value(text, created, **POOL) == connections
    assert [str(row["pid"]) for row in backend_pids] == still.split()
    listed = await _usernames(pg_primary, url)
    assert listed == ["adaafter", "adabefore"]  # the cancelled insert left nothing behind


async def _usernames(server: PostgresServer, url: str) -> list[str]:
    out = await asyncio.to_thread(
        server.psql, "SELECT username FROM users ORDER BY username", url.rsplit("/", 1)[1]
    )
    return out.split()
