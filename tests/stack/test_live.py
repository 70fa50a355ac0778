"""The compose stack, proven natively: every dashboard panel has data after load, and the
replica and cache alerts fire when their server stops.

The topology of ``docker-compose.observability.yml`` runs as local processes
(`tests.stack.live_stack`): a private PostgreSQL primary with a streaming hot standby,
redis-server with a password, the app (``python -m app``, started while the primary is
down so it retries) and the Debian package's Prometheus with the repository's config and
alert rules, rewritten only in their target addresses, with 1 s scrape and evaluation
intervals and every non-zero ``for:`` shortened to 3 s in a copy of the rules
(`tests.stack.prometheus_config`; the real durations are covered by promtool's rule tests).
The locust scenarios then run for 2 x 8 s: reads (hot and cold ids: cache hits and
misses, replica reads), lists and writes (invalidations), then a pool-exhaustion burst on
pools of 2 + 2 connections; one read is forced to the primary.

Run with ``-s`` to see, per dashboard panel, how many of its queries returned data.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.stack.dashboards import PanelQuery, panel_queries
from tests.stack.live_load import force_primary_read, read_until_cache_hit, run_locust
from tests.stack.live_stack import LiveStack, app_metric, http_get, live_stack
from tests.support import wait_until
from tests.support.prometheus import PrometheusServer
from tests.support.pytest_helpers import started

pytestmark = [pytest.mark.timeout(240), pytest.mark.postgres, pytest.mark.redis]

# Ids the scenarios read: created by the first locust user, 10 of them "hot" (cached).
LOAD_ENV = {"LOAD_IDS": "60", "LOAD_HOT_SET": "10", "LOAD_HOT_SHARE": "0.8"}
# (user classes, users, seconds): first the everyday mix, then the pool-exhaustion burst.
# Writers come along in the burst: their transactions hold primary connections, so with
# pages of 100 read beside them both pools queue (and writes keep the pages uncached).
LOAD_PHASES = [
    (["ReadUser", "ListUser", "WriteUser"], 12, 8),
    (["PoolUser", "WriteUser"], 24, 8),
]


def value(prometheus: PrometheusServer, expr: str) -> float:
    """The single value ``expr`` evaluates to (0 when it has no series)."""
    result = prometheus.query(expr)
    return sum(float(series["value"][1]) for series in result)


def alert_state(prometheus: PrometheusServer, name: str) -> str | None:
    """``pending``, ``firing`` or None (inactive) for the alert called ``name``."""
    states = [a["state"] for a in prometheus.alerts() if a["labels"]["alertname"] == name]
    return "firing" if "firing" in states else (states[0] if states else None)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """The running stack, after the load: every server stopped and deleted at the end."""
    base = tmp_path_factory.mktemp("live-stack")
    with ExitStack() as cleanup:
        running = started(lambda: cleanup.enter_context(live_stack(base)))
        for user_classes, users, seconds in LOAD_PHASES:
            run_locust(
                running.app.base_url,
                base,
                user_classes=user_classes,
                users=users,
                seconds=seconds,
                env=LOAD_ENV,
            )
        read_until_cache_hit(running.app.base_url)
        force_primary_read(running.app.base_url)
        # Everything above is in Prometheus once it scraped the forced read.
        wait_until(
            lambda: value(running.prometheus, 'db_replica_fallbacks_total{reason="forced"}') > 0,
            timeout=30,
            what="prometheus to scrape the app after the load",
        )
        yield running


HTTP_COUNT = "http_server_request_duration_seconds_count"


def test_the_load_reached_every_path_the_dashboards_show(stack: LiveStack) -> None:
    """Hits and misses, replica reads, a fallback, a connect retry, invalidations and a
    queue on a pool all happened, and no API request failed with a 5xx."""
    p = stack.prometheus
    assert value(p, 'cache_requests_total{result="hit"}') > 0
    assert value(p, 'cache_requests_total{result="miss"}') > 0
    assert value(p, "cache_invalidations_total") > 0
    pool = "db_client_connection_pool_name"
    assert value(p, f'db_client_operation_duration_seconds_count{{{pool}="replica-0"}}') > 0
    assert value(p, 'db_replica_fallbacks_total{reason="forced"}') >= 1
    assert value(p, 'db_connect_attempts_total{outcome="retry"}') >= 1
    assert value(p, 'db_connect_attempts_total{outcome="success"}') >= 1
    # A queue formed on a pool: some checkouts waited. Read from the wait histogram, which
    # records every wait, rather than the pending gauge, which a 1 s scrape may miss.
    waited = (
        "sum(db_client_connection_wait_time_seconds_count)"
        ' - sum(db_client_connection_wait_time_seconds_bucket{le="0.005"})'
    )
    assert value(p, waited) > 0
    # No API request failed. (/health/ready may have answered 503 while the primary was
    # down at start-up, as it should; whether a probe landed in that window is timing.)
    assert value(p, f'{HTTP_COUNT}{{http_route=~"/api/.*", http_response_status_code=~"5.."}}') == 0


def _table(rows: list[tuple[PanelQuery, list[dict[str, Any]]]]) -> str:
    """Per dashboard and panel: queries, queries with data, series, series with a number."""
    lines = [f"{'dashboard / panel':<78} queries  with data  series  finite"]
    panels: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
    for query, result in rows:
        panels.setdefault((query.dashboard, query.panel), []).append(result)
    for dashboard in sorted({d for d, _ in panels}):
        mine = {p: r for (d, p), r in panels.items() if d == dashboard}
        total = sum(len(r) for r in mine.values())
        with_data = sum(1 for r in mine.values() for result in r if result)
        lines.append(f"{dashboard:<78} {total:>7}  {with_data:>9}")
        for panel, results in mine.items():
            series = [s for result in results for s in result]
            finite = sum(1 for s in series if math.isfinite(float(s["value"][1])))
            ok = sum(1 for result in results if result)
            lines.append(f"  {panel:<76} {len(results):>7}  {ok:>9}  {len(series):>6}  {finite:>6}")
    return "\n".join(lines)


def test_every_panel_query_of_every_dashboard_returns_data(stack: LiveStack) -> None:
    """Each query of each Grafana panel, variables at "All", has a series with a number."""
    queries = panel_queries()
    rows = [(query, stack.prometheus.query(query.expr)) for query in queries]
    table = _table(rows)
    (stack.base_dir / "panel-data.txt").write_text(table + "\n", encoding="utf-8")
    print(f"\n{table}")
    # NaN is what a ratio or quantile gives for a series with no traffic in the window: a
    # gap in Grafana. A query whose every series is NaN draws nothing, so it counts as empty.
    empty = [
        f"{q.dashboard} / {q.panel}: {q.expr}"
        for q, result in rows
        if not any(math.isfinite(float(series["value"][1])) for series in result)
    ]
    assert not empty, "panel queries without data:\n" + "\n".join(empty)
    assert len({q.dashboard for q in queries}) == 4


def _wait_inactive(prometheus: PrometheusServer, alert: str, why: str) -> None:
    wait_until(
        lambda: alert_state(prometheus, alert) is None,
        timeout=60,
        what=f"{alert} to be inactive {why}",
        details=lambda: str(prometheus.alerts()),
    )


def test_stopping_the_replica_fires_db_replica_down_while_reads_fall_back(
    stack: LiveStack,
) -> None:
    """DbReplicaDown fires once the standby stops, reads still answer (from the primary,
    counted as fallbacks of reason ``down``), and the alert clears when it is back."""
    p, app = stack.prometheus, stack.app
    _wait_inactive(p, "DbReplicaDown", "while the replica runs")
    fallbacks_before = app_metric(app, "db_replica_fallbacks_total", {"reason": "down"})
    statuses: list[int] = []

    def fired() -> bool:
        # An id nobody has: a cache miss, so the read reaches a database (404 is its answer).
        statuses.append(http_get(f"{app.base_url}/api/v1/users/{uuid.uuid4()}")[0])
        return alert_state(p, "DbReplicaDown") == "firing"

    stack.replica.stop()
    try:
        wait_until(fired, timeout=60, what="DbReplicaDown to fire", details=lambda: str(p.alerts()))
    finally:
        stack.replica.start()
    assert set(statuses) == {404}
    assert app_metric(app, "db_replica_fallbacks_total", {"reason": "down"}) > fallbacks_before
    firing = [a for a in p.alerts() if a["labels"]["alertname"] == "DbReplicaDown"]
    assert {a["labels"]["db_client_connection_pool_name"] for a in firing} == {"replica-0"}
    _wait_inactive(p, "DbReplicaDown", "once the replica is back")


def test_stopping_redis_fires_cache_circuit_open_while_the_api_keeps_answering(
    stack: LiveStack,
) -> None:
    """CacheCircuitOpen fires once Redis stops, reads still answer 200 (from PostgreSQL),
    and the alert clears when Redis is back."""
    p, app = stack.prometheus, stack.app
    status, body = http_get(f"{app.base_url}/api/v1/users/?limit=1")
    assert status == 200, body
    user_url = f"{app.base_url}/api/v1/users/{json.loads(body)['items'][0]['id']}"
    _wait_inactive(p, "CacheCircuitOpen", "while Redis runs")
    statuses: list[int] = []

    def fired() -> bool:
        statuses.append(http_get(user_url)[0])  # lookups fail until the breaker opens
        return alert_state(p, "CacheCircuitOpen") == "firing"

    stack.redis.stop()
    try:
        wait_until(
            fired, timeout=60, what="CacheCircuitOpen to fire", details=lambda: str(p.alerts())
        )
    finally:
        stack.redis.start()
    assert set(statuses) == {200}
    # The breaker closes after a successful probe, which a lookup starts.
    wait_until(
        lambda: http_get(user_url)[0] == 200 and alert_state(p, "CacheCircuitOpen") is None,
        timeout=60,
        what="CacheCircuitOpen to clear once Redis is back",
        details=lambda: str(p.alerts()),
    )
