"""The compose stack's topology, started natively for the live stack test.

``docker-compose.observability.yml`` runs PostgreSQL (a primary and a streaming hot
standby, database and login role ``users`` with a password), Redis with a password, the
app (``python -m app``) pointed at all three, and Prometheus scraping the app with the
repository's config and rules. `live_stack` starts the same processes on free loopback
ports, in that order, with one difference on purpose: the primary is down while the app
starts and comes back once the app has counted a failed connection attempt, so the
connect-retry metrics have something to show (the compose stack only sees that when the
database restarts).

Settings that differ from the compose defaults, and why:

- ``DB_POOL_SIZE=2``, ``DB_MAX_OVERFLOW=2``: a pool that a burst of a dozen concurrent
  requests exhausts at once on a shared 2-core machine, so pending requests and wait
  times move;
- ``DB_REPLICA_PROBE_INTERVAL_SECONDS=0.2``: a stopped replica is noticed at once;
- no ``OTEL_EXPORTER_OTLP_ENDPOINT``: there is no collector (spans are still recorded,
  and their trace ids are the exemplars).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.stack.prometheus_config import write_live_config
from tests.support import PostgresReplica, PostgresServer, RedisServer, free_port, wait_until
from tests.support.app_process import AppProcess
from tests.support.prometheus import PrometheusServer

__all__ = ["LiveStack", "app_metric", "http_get", "live_stack"]

# Test-only secrets of throw-away servers (the compose file reads real ones from env).
POSTGRES_PASSWORD = "live-stack-postgres-password"
USERS_PASSWORD = "live-stack-users-password"
REDIS_PASSWORD = "live-stack-redis-password"


@dataclass(frozen=True, slots=True)
class LiveStack:
    primary: PostgresServer
    replica: PostgresReplica
    redis: RedisServer
    app: AppProcess
    prometheus: PrometheusServer
    base_dir: Path


def http_get(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of a GET (an HTTP error status is an answer, not an exception)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def app_metric(app: AppProcess, sample: str, labels: Mapping[str, str]) -> float:
    """The sum of the app's ``/metrics`` samples named ``sample`` that carry ``labels``."""
    status, body = http_get(app.base_url + "/metrics")
    if status != 200:
        return 0.0
    return sum(
        s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def _create_users_database(primary: PostgresServer) -> None:
    """As the compose stack's PostgreSQL image does: role ``users`` owning ``users``."""
    primary.psql(f"CREATE ROLE users LOGIN PASSWORD '{USERS_PASSWORD}'")
    primary.psql("CREATE DATABASE users OWNER users")


def _app_env(
    primary: PostgresServer, replica: PostgresServer, redis: RedisServer
) -> dict[str, str]:
    def url(server: PostgresServer) -> str:
        return server.url(database="users", user="users", password=USERS_PASSWORD)

    return {
        "DATABASE_URL": url(primary),
        "DATABASE_REPLICA_URLS": url(replica),
        "REDIS_URL": redis.url,
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "2",
        "DB_REPLICA_MAX_LAG_SECONDS": "5",
        "DB_REPLICA_PROBE_INTERVAL_SECONDS": "0.2",
        "CACHE_TTL_SECONDS": "60",
        "OTEL_SERVICE_NAME": "users",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }


def _start_app_while_the_primary_is_down(app: AppProcess, primary: PostgresServer) -> None:
    """Start the app with the primary stopped; bring the primary back once the app has
    retried, then wait until the app is ready (it must get there by itself)."""
    primary.stop()
    app.start()  # returns once /health/live answers (the app serves before the database)
    wait_until(
        lambda: app_metric(app, "db_connect_attempts_total", {"outcome": "retry"}) >= 1,
        timeout=30,
        what="the app to retry connecting to the stopped primary",
        details=app.log_tail,
    )
    primary.start()
    wait_until(
        lambda: http_get(app.base_url + "/health/ready")[0] == 200,
        timeout=60,
        what="the app to become ready once the primary is back",
        details=app.log_tail,
    )


@contextmanager
def live_stack(base_dir: Path) -> Iterator[LiveStack]:
    """Start everything under ``base_dir``; stop and delete it all on exit.

    A server helper that cannot find its binary raises ``ServiceUnavailable``.
    """
    with ExitStack() as stack:
        primary = stack.enter_context(
            PostgresServer.start_primary(base_dir, auth="scram", password=POSTGRES_PASSWORD)
        )
        _create_users_database(primary)
        replica = stack.enter_context(PostgresServer.start_replica(primary, base_dir))
        replica.wait_replay_caught_up()
        redis = stack.enter_context(RedisServer.start_new(base_dir, password=REDIS_PASSWORD))

        app = AppProcess(
            _app_env(primary, replica, redis),
            log_path=base_dir / "app.log",
            ready_path="/health/live",
            cwd=base_dir,
        )
        stack.callback(app.stop)
        _start_app_while_the_primary_is_down(app, primary)

        prometheus_port = free_port()
        config_dir = base_dir / "prometheus-config"
        config_dir.mkdir()
        config = write_live_config(
            config_dir,
            targets={
                "app:8000": f"127.0.0.1:{app.port}",
                "localhost:9090": f"127.0.0.1:{prometheus_port}",
            },
        )
        prometheus = stack.enter_context(
            PrometheusServer.start_new(config, base_dir, port=prometheus_port)
        )
        wait_until(
            lambda: prometheus.targets_up("users"),
            timeout=30,
            what="prometheus to scrape the app",
            details=prometheus.log_tail,
        )
        yield LiveStack(primary, replica, redis, app, prometheus, base_dir)
