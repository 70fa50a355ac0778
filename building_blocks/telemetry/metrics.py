"""Every Prometheus instrument of DESIGN.md §4, in one place, on a registry passed in.

Names follow the OpenTelemetry semantic conventions as translated to Prometheus (dots to
underscores, unit suffix ``_seconds``, ``_total`` for counters). Instruments are created
when a `Metrics` is constructed (by ``create_app``), never at import time, and each test
can use a registry of its own.

Pool gauges (`db_client_connection_count`, `..._max`, `..._idle_max`, `..._idle_min`,
`..._pending_requests`) are not here: they are read from the pools at scrape time by a
collector (see `building_blocks.telemetry.pool`).

The histograms, the in-flight gauge and the cache's request counter, updated on every
request, are `building_blocks.telemetry.instruments`' lighter ones unless
prometheus-client runs in multiprocess mode; the rest are prometheus-client's own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from building_blocks.telemetry.instruments import (
    LabelledCounter,
    LabelledHistogram,
    LabelledInFlight,
    counter,
    histogram,
    in_flight,
)

__all__ = ["LATENCY_BUCKETS", "Metrics"]

#: Seconds, from a sub-millisecond cache hit to a query that waited on a lock.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

POOL = "db_client_connection_pool_name"


class Metrics:
    """The service's instruments. Pass one instance to every component that records."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # -- HTTP ------------------------------------------------------------------------
        self.http_duration: LabelledHistogram = histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.http_active: LabelledInFlight = in_flight(
            "http_server_active_requests",
            "Number of HTTP server requests in flight.",
            ["http_request_method"],
            registry=registry,
        )
        # -- pools (event-driven parts; gauges are collected at scrape time) --------------
        self.pool_timeouts = Counter(
            "db_client_connection_timeouts",
            "Connection checkouts that timed out waiting for a free connection.",
            [POOL],
            registry=registry,
        )
        self.pool_wait_time: LabelledHistogram = histogram(
            "db_client_connection_wait_time_seconds",
            "Time it took to obtain an open connection from the pool.",
            [POOL],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pool_use_time: LabelledHistogram = histogram(
            "db_client_connection_use_time_seconds",
            "Time between borrowing a connection and returning it to the pool.",
            [POOL],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pool_create_time: LabelledHistogram = histogram(
            "db_client_connection_create_time_seconds",
            "Time it took to create a new connection.",
            [POOL],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # -- queries ---------------------------------------------------------------------
        self.db_operation: LabelledHistogram = histogram(
            "db_client_operation_duration_seconds",
            "Duration of database client operations.",
            ["db_system_name", "db_operation_name", "db_collection_name", POOL],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # -- replicas and retries --------------------------------------------------------
        self.replica_lag = Gauge(
            "db_replica_lag_seconds",
            "Replication lag of each replica as last measured (seconds behind the primary).",
            [POOL],
            registry=registry,
            multiprocess_mode="max",
        )
        self.replica_available = Gauge(
            "db_replica_available",
            "1 when the replica may serve reads (up and within the lag bound), else 0.",
            [POOL],
            registry=registry,
            multiprocess_mode="min",
        )
        self.replica_fallbacks = Counter(
            "db_replica_fallbacks",
            "Read-only units of work sent to the primary although replicas are configured.",
            ["reason"],
            registry=registry,
        )
        self.connect_attempts = Counter(
            "db_connect_attempts",
            "Attempts to reach the primary at start-up, by outcome (success|retry|fatal).",
            ["outcome"],
            registry=registry,
        )
        # -- cache -----------------------------------------------------------------------
        self.cache_requests: LabelledCounter = counter(
            "cache_requests",
            "Cache lookups by result (hit|miss|error|bypass).",
            ["cache_name", "result"],
            registry=registry,
        )
        self.cache_duration: LabelledHistogram = histogram(
            "cache_operation_duration_seconds",
            "Duration of cache backend operations.",
            ["cache_name", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.cache_invalidations = Counter(
            "cache_invalidations",
            "Cache keys and tags invalidated after commits.",
            ["cache_name"],
            registry=registry,
        )
        self.cache_circuit_open = Gauge(
            "cache_circuit_open",
            "1 while the cache's circuit breaker is open (backend skipped), else 0.",
            ["cache_name"],
            registry=registry,
            multiprocess_mode="max",
        )
