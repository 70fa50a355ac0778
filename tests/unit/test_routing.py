"""Routing decisions without a server: replica selectors, states and fallbacks, the lag
estimate from WAL-position history, and consistency tokens."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from building_blocks.db import (
    ConsistencyToken,
    LeastBusy,
    RoundRobin,
    Router,
    consistency_scope,
    force_primary,
)
from building_blocks.db.lag import PositionHistory
from building_blocks.db.routing import ReplicaState
from building_blocks.telemetry.metrics import Metrics


@pytest.fixture
def engines() -> dict[str, AsyncEngine]:
    """Engines are only created (never connected): routing needs their identity only."""
    return {
        name: create_async_engine(f"sqlite+aiosqlite:///{name}.db")
        for name in ("primary", "replica-0", "replica-1")
    }


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def _router(engines: dict[str, AsyncEngine], metrics: Metrics, **options: object) -> Router:
    router = Router(
        engines["primary"],
        {n: e for n, e in engines.items() if n != "primary"},
        max_lag_seconds=1.0,
        metrics=metrics,
        **options,  # type: ignore[arg-type]
    )
    for name in ("replica-0", "replica-1"):
        router.observe(name, lag_seconds=0.0, position=1000)
    return router


def _fallbacks(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("db_replica_fallbacks_total", {"reason": reason})
    return value or 0.0


def test_writers_always_go_to_the_primary(
    engines: dict[str, AsyncEngine], metrics: Metrics
) -> None:
    router = _router(engines, metrics)
    assert router.route(read_only=False).name == "primary"
    assert _fallbacks(metrics, "down") == 0  # a writer on the primary is no fallback


def test_round_robin_alternates_between_usable_replicas(
    engines: dict[str, AsyncEngine], metrics: Metrics
) -> None:
    router = _router(engines, metrics)
    names = [router.route(read_only=True).name for _ in range(4)]
    assert names == ["replica-0", "replica-1", "replica-0", "replica-1"]


def test_least_busy_prefers_the_replica_with_fewer_connections_in_use() -> None:
    a = ReplicaState("a", create_async_engine("sqlite+aiosqlite:///a.db"))
    b = ReplicaState("b", create_async_engine("sqlite+aiosqlite:///b.db"))

    class Busy(ReplicaState):
        @property
        def busy(self) -> int:
            return 3

    busy = Busy("busy", create_async_engine("sqlite+aiosqlite:///c.db"))
    chosen = {LeastBusy().choose([busy, a, b]).name for _ in range(4)}
    assert chosen <= {"a", "b"}
    assert RoundRobin().choose([a]) is a


def test_a_replica_marked_down_is_skipped_until_a_probe_succeeds(
    engines: dict[str, AsyncEngine], metrics: Metrics
) -> None:
    router = _router(engines, metrics)
    router.mark_down("replica-0", "refused")
    assert {router.route(read_only=True).name for _ in range(4)} == {"replica-1"}
    router.mark_down("replica-1", "refused")
    assert router.route(read_only=True).name == "primary"
    assert _fallbacks(metrics, "down") == 1
    available = metrics.registry.get_sample_value(
        "db_replica_available", {"db_client_connection_pool_name": "replica-0"}
    )
    assert available == 0
    router.observe("replica-0", lag_seconds=0.0, position=1000)
    assert router.route(read_only=True).name == "replica-0"


def test_lagging_replicas_send_reads_to_the_primary_with_reason_lagging(
    engines: dict[str, AsyncEngine], metrics: Metrics
) -> None:
    router = _router(engines, metrics)
    router.observe("replica-0", lag_seconds=1.5, position=1000)
    router.mark_down("replica-1", "refused")
    assert router.route(read_only=True).name == "primary"
    assert _fallbacks(metrics, "lagging") == 1
    assert router.replica("replica-0").state == "lagging"


def test_forced_primary_is_counted(engines: dict[str, AsyncEngine], metrics: Metrics) -> None:
    router = _router(engines, metrics)
    with force_primary():
        assert router.route(read_only=True).name == "primary"
    with consistency_scope(force_primary=True):
        assert router.route(read_only=True).name == "primary"
    assert router.route(read_only=True).name != "primary"
    assert _fallbacks(metrics, "forced") == 2


def test_a_position_token_picks_a_replica_known_to_have_it_or_asks_one(
    engines: dict[str, AsyncEngine], metrics: Metrics
) -> None:
    router = _router(engines, metrics)
    router.observe("replica-1", lag_seconds=0.0, position=2000)
    with consistency_scope(ConsistencyToken("lsn", 1500)):
        routes = [router.route(read_only=True) for _ in range(3)]
    assert {(r.name, r.verify) for r in routes} == {("replica-1", None)}
    with consistency_scope(ConsistencyToken("lsn", 5000)):
        route = router.route(read_only=True)
    # Nobody is known to have it yet: a replica is asked when the transaction opens.
    assert route.name.startswith("replica-")
    assert route.verify == ConsistencyToken("lsn", 5000)


def test_a_time_token_keeps_reads_on_the_primary_for_the_window(
    engines: dict[str, AsyncEngine], metrics: Metrics
) -> None:
    router = _router(engines, metrics, time_window_seconds=60)
    with consistency_scope(ConsistencyToken.now()):
        assert router.route(read_only=True).name == "primary"
    old = ConsistencyToken("time", int((time.time() - 120) * 1000))
    with consistency_scope(old):
        assert router.route(read_only=True).name.startswith("replica-")
    assert _fallbacks(metrics, "consistency") == 1


def test_every_fallback_reason_is_exported_at_zero_before_any_fallback(
    engines: dict[str, AsyncEngine], metrics: Metrics
) -> None:
    """So the first fallback of each reason shows in rate() (docs/metrics.md)."""
    _router(engines, metrics)
    reasons = ("forced", "down", "lagging", "consistency")
    exported = [
        metrics.registry.get_sample_value("db_replica_fallbacks_total", {"reason": reason})
        for reason in reasons
    ]
    assert exported == [0.0] * len(reasons)


def test_no_replicas_configured_means_primary_and_no_fallback_counted(
    engines: dict[str, AsyncEngine], metrics: Metrics
) -> None:
    router = Router(engines["primary"], {}, max_lag_seconds=1.0, metrics=metrics)
    with force_primary():
        assert router.route(read_only=True).name == "primary"
    assert router.route(read_only=True).name == "primary"
    assert (
        metrics.registry.get_sample_value("db_replica_fallbacks_total", {"reason": "forced"})
        is None
    )


# -- lag from position history ----------------------------------------------------------


def test_a_replica_at_the_primarys_position_has_no_lag_however_idle() -> None:
    history = PositionHistory(keep_seconds=10)
    history.record(0.0, 100)
    # An hour without writes: the replay-timestamp hint would say 3600 s.
    assert history.lag(100, now=3600.0, hint=3600.0) == 0.0


def test_lag_is_the_time_since_the_primary_first_passed_the_replica() -> None:
    history = PositionHistory(keep_seconds=10)
    history.record(0.0, 100)
    history.record(50.0, 200)  # first write after a long idle spell, seen at t=50
    history.record(51.0, 300)
    assert history.lag(100, now=53.0, hint=53.0) == pytest.approx(3.0)
    assert history.lag(200, now=53.0, hint=None) == pytest.approx(2.0)
    assert history.lag(300, now=53.0, hint=None) == 0.0


def test_a_replica_behind_all_history_gets_at_least_the_history_span_or_its_hint() -> None:
    history = PositionHistory(keep_seconds=10)
    history.record(5.0, 500)
    assert history.lag(100, now=6.0, hint=30.0) == pytest.approx(30.0)
    assert history.lag(100, now=6.0, hint=None) == pytest.approx(1.0)


def test_history_forgets_old_positions_but_keeps_the_boundary() -> None:
    history = PositionHistory(keep_seconds=10)
    for t in range(100):
        history.record(float(t), t)
    assert history.lag(95, now=100.0, hint=None) == pytest.approx(100.0 - 96.0)
    assert history.lag(99, now=100.0, hint=None) == 0.0


# -- tokens -----------------------------------------------------------------------------


def test_tokens_round_trip_and_junk_is_ignored() -> None:
    token = ConsistencyToken.lsn("16/B374D848")
    assert str(token) == "lsn:16/B374D848"
    assert ConsistencyToken.parse(str(token)) == token
    assert ConsistencyToken.parse("time:1712345678901") == ConsistencyToken("time", 1712345678901)
    for junk in (None, "", "lsn:zz/1", "lsn:0/3000148; DROP", "time:-1", "x" * 500):
        assert ConsistencyToken.parse(junk) is None


def test_the_newest_token_wins_and_a_scope_remembers_its_commits() -> None:
    older, newer = ConsistencyToken("lsn", 10), ConsistencyToken("lsn", 20)
    assert older.newest(newer) == newer
    assert newer.newest(older) == newer
    with consistency_scope(older) as outer:
        with consistency_scope() as inner:
            assert inner.required == older  # nested scopes inherit the requirement
            inner.note_commit(newer)
        assert outer.committed == newer
        assert outer.required == newer
