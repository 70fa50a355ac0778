"""No password and no full connection URL in anything the service emits, under failures:
logs (DEBUG, spans exported to the console too), error bodies and headers,
``/health/ready`` and ``/metrics``.

Three runs of ``python -m app``: a wrong database password (the process stops); a
healthy start after which Redis, the replica and the primary die; a wrong Redis password
(the service answers from the database).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.integration.conftest import user_body
from tests.support import PostgresReplica, PostgresServer, RedisServer
from tests.support.app_process import AppProcess
from tests.support.pytest_helpers import started

pytestmark = pytest.mark.postgres

# Characters that URLs must escape, so that both spellings are looked for.
DB_PASSWORD = "pg-S3cret/pa55:word"
REDIS_PASSWORD = "redis-S3cret@pa55"
WRONG_DB_PASSWORD = "wrong-db-" + uuid.uuid4().hex
WRONG_REDIS_PASSWORD = "wrong-redis-" + uuid.uuid4().hex
VERBOSE = {"LOG_LEVEL": "DEBUG", "OTEL_TRACES_EXPORTER": "console", "DB_CONNECT_TIMEOUT": "2"}


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PostgresServer, PostgresReplica, RedisServer]]:
    """Password-protected primary, replica and Redis of this module's own (it kills them)."""
    base = tmp_path_factory.mktemp("secrets")
    primary = started(
        lambda: PostgresServer.start_primary(base, auth="scram", password=DB_PASSWORD)
    )
    with (
        primary,
        PostgresServer.start_replica(primary, base) as replica,
        RedisServer.start_new(base, password=REDIS_PASSWORD) as redis,
    ):
        yield primary, replica, redis


class Emitted:
    """Everything the service showed the outside world, to search for secrets."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def response(self, response: httpx.Response) -> httpx.Response:
        self.texts.append(f"{response.status_code} {response.headers!r}\n{response.text}")
        return response

    async def get(self, client: httpx.AsyncClient, path: str, **kwargs: object) -> httpx.Response:
        return self.response(await client.get(path, **kwargs))  # type: ignore[arg-type]

    async def scrape_everything(self, client: httpx.AsyncClient) -> None:
        await self.get(client, "/health/ready")
        await self.get(client, "/metrics")
        openmetrics = {"accept": "application/openmetrics-text; version=1.0.0"}
        await self.get(client, "/metrics", headers=openmetrics)


def secrets(*urls: str) -> list[str]:
    """The passwords, raw and URL-escaped, and the full URLs they travel in."""
    return [
        *(DB_PASSWORD, REDIS_PASSWORD, WRONG_DB_PASSWORD, WRONG_REDIS_PASSWORD),
        *(quote(p, safe="") for p in (DB_PASSWORD, REDIS_PASSWORD)),
        *urls,
    ]


def assert_nothing_leaks(texts: list[str], urls: list[str]) -> None:
    for text in texts:
        for secret in secrets(*urls):
            assert secret not in text, f"{secret!r} leaked in:\n{text[:2000]}"


async def test_no_password_or_url_appears_in_logs_bodies_health_or_metrics_under_failures(
    servers: tuple[PostgresServer, PostgresReplica, RedisServer], tmp_path: Path
) -> None:
    primary, replica, redis = servers
    urls = [
        primary.url(),
        primary.url(password=WRONG_DB_PASSWORD),
        replica.url(),
        redis.url,
        redis.url.replace(quote(REDIS_PASSWORD, safe=""), WRONG_REDIS_PASSWORD),
    ]
    emitted = Emitted()

    # 1. A wrong database password: no retry helps, the process stops with the cause.
    bad_login = AppProcess(
        {**VERBOSE, "DATABASE_URL": urls[1]}, log_path=tmp_path / "bad-password.log"
    )
    with pytest.raises(RuntimeError, match="exited with 1"):
        bad_login.start(timeout=30)
    bad_login_log = bad_login.log_path.read_text()
    assert "password was rejected" in bad_login_log

    # 2. A healthy start, then Redis, the replica and the primary die one after another.
    env = {**VERBOSE, "DATABASE_URL": urls[0], "DATABASE_REPLICA_URLS": urls[2]}
    with AppProcess({**env, "REDIS_URL": urls[3]}, log_path=tmp_path / "dying.log") as app:
        async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
            created = emitted.response(await client.post("/api/v1/users/", json=user_body("s")))
            assert created.status_code == 201
            user = f"/api/v1/users/{created.json()['id']}"
            await emitted.scrape_everything(client)
            redis.kill()
            assert (await emitted.get(client, user)).status_code == 200
            replica.stop(mode="immediate")
            assert (await emitted.get(client, user)).status_code == 200
            await emitted.scrape_everything(client)
            primary.stop(mode="immediate")
            assert (await emitted.get(client, user)).status_code == 503
            assert (await emitted.get(client, "/api/v1/users/")).status_code == 503
            failed = emitted.response(await client.post("/api/v1/users/", json=user_body("t")))
            assert failed.status_code == 503
            await emitted.scrape_everything(client)
            assert (await client.get("/health/ready")).status_code == 503
        dying_log = app.log_path.read_text()
    assert "unavailable" in dying_log  # the failures were logged, only without secrets

    # 3. A wrong Redis password: the cache is down, the service answers from the database.
    primary.start()
    redis.start()
    wrong_redis = {**env, "DATABASE_REPLICA_URLS": "", "REDIS_URL": urls[4]}
    with AppProcess(wrong_redis, log_path=tmp_path / "wrong-redis.log") as app:
        async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
            assert (await emitted.get(client, user)).status_code == 200
            await emitted.scrape_everything(client)
            ready = (await client.get("/health/ready")).json()
            assert ready["caches"][0]["state"] == "down"
        wrong_redis_log = app.log_path.read_text()

    logs = [bad_login_log, dying_log, wrong_redis_log]
    assert all("trace_id" in log or "TraceId" in log for log in logs[1:])  # spans went out
    assert_nothing_leaks([*logs, *emitted.texts], urls)
