"""What one benchmark run measures: the servers, and the wrk scenarios run against them."""

from __future__ import annotations

from dataclasses import dataclass

from bench.servers import ServerSpec
from bench.stack import Stack

__all__ = ["RATIOS", "Scenario", "scenarios", "server_specs"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    server: str
    script: str  # bench/wrk/<script>
    paths: str | None  # "ids" | "pages" | None (the script makes its own requests)
    connections: int
    what: str


def server_specs(stack: Stack) -> list[ServerSpec]:
    """The service three ways per cache setting, and the three hand-written baselines.

    * ``service``: telemetry as the compose stack and the Kubernetes base ship it: JSON
      access line per request, metrics, and 1 trace in 100 recorded and exported over
      OTLP/HTTP (to the stack's receiver, standing in for the collector).
    * ``-notel``: ``TELEMETRY_ENABLED=false``, the "off" of the telemetry-cost ratio.
    * ``-t10``: as ``service`` with 1 trace in 10 recorded and exported, the shipped ratio
      before it was lowered (no target).
    * ``-alltraces``: as ``service`` with every trace recorded and exported (shows what
      recording costs; no target).

    Cache on means Redis and warmed keys, cache off means every get reads the replica.
    The baselines read the replica, as the service's uncached reads do."""
    service = {
        "DATABASE_URL": stack.primary_url,
        "DATABASE_REPLICA_URLS": stack.replica_url,
        "REDIS_URL": stack.redis_url,
        "LOG_LEVEL": "INFO",  # the access log is part of the telemetry being measured
        "LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.otlp_endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
    }
    # Redis shares the second core with PostgreSQL, wrk and whatever else runs on this
    # machine: a scheduler stall there exceeds the default 0.1 s cache timeout now and
    # then, and the cache fails open to the database (correct, but then "cached get"
    # measures reads of the replica). The hand-written baseline has no timeout at all.
    cached = {**service, "CACHE_TTL_SECONDS": "3600", "CACHE_TIMEOUT_SECONDS": "0.5"}
    uncached = {**service, "CACHE_TTL_SECONDS": "0"}
    off = {"TELEMETRY_ENABLED": "false"}
    every_trace = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    one_in_ten = {"OTEL_TRACES_SAMPLER_ARG": "0.1"}
    baseline = {"BENCH_PG_DSN": stack.replica_dsn, "BENCH_REDIS_URL": stack.redis_url}
    factory = "app.main:create_app"
    return [
        ServerSpec("service", factory, cached),
        ServerSpec("service-notel", factory, {**cached, **off}),
        ServerSpec("service-t10", factory, {**cached, **one_in_ten}),
        ServerSpec("service-alltraces", factory, {**cached, **every_trace}),
        ServerSpec("service-nocache", factory, uncached),
        ServerSpec("service-nocache-notel", factory, {**uncached, **off}),
        ServerSpec("service-nocache-t10", factory, {**uncached, **one_in_ten}),
        ServerSpec("service-nocache-alltraces", factory, {**uncached, **every_trace}),
        ServerSpec("bare", "bench.baselines.bare:create_app", baseline),
        ServerSpec("asyncpg", "bench.baselines.pg:create_app", baseline),
        ServerSpec("redis-aside", "bench.baselines.redis_aside:create_app", baseline),
    ]


def scenarios(*, quick: bool) -> list[Scenario]:
    base = [
        Scenario("bare get", "bare", "paths.lua", "ids", 64, "baseline: JSON from memory"),
        Scenario("asyncpg get", "asyncpg", "paths.lua", "ids", 64, "baseline: raw asyncpg"),
        Scenario("redis-aside get", "redis-aside", "paths.lua", "ids", 64, "baseline: redis-py"),
        Scenario("svc get hit", "service", "paths.lua", "ids", 64, "Redis cache, warmed"),
        Scenario(
            "svc get hit notel", "service-notel", "paths.lua", "ids", 64, "same, telemetry off"
        ),
        Scenario("svc get hit t10", "service-t10", "paths.lua", "ids", 64, "same, 1 trace in 10"),
        Scenario(
            "svc get hit alltraces",
            "service-alltraces",
            "paths.lua",
            "ids",
            64,
            "same, every trace recorded",
        ),
        Scenario("svc get miss", "service-nocache", "paths.lua", "ids", 64, "cache off: replica"),
        Scenario(
            "svc get miss notel",
            "service-nocache-notel",
            "paths.lua",
            "ids",
            64,
            "same, telemetry off",
        ),
        Scenario(
            "svc get miss t10",
            "service-nocache-t10",
            "paths.lua",
            "ids",
            64,
            "same, 1 trace in 10",
        ),
        Scenario(
            "svc get miss alltraces",
            "service-nocache-alltraces",
            "paths.lua",
            "ids",
            64,
            "same, every trace recorded",
        ),
        Scenario("svc list page", "service-nocache", "paths.lua", "pages", 64, "limit=50"),
        Scenario("svc create", "service-nocache", "create.lua", None, 64, "POST, primary"),
    ]
    if quick:
        return base
    return [
        *base,
        Scenario("svc get hit c256", "service", "paths.lua", "ids", 256, "256 connections"),
        Scenario("svc get miss c256", "service-nocache", "paths.lua", "ids", 256, "256 conns"),
        Scenario("redis-aside get c256", "redis-aside", "paths.lua", "ids", 256, "256 conns"),
    ]


#: (label, numerator scenario, denominator scenario, target)
RATIOS: list[tuple[str, str, str, float | None]] = [
    ("cached get / redis-aside baseline", "svc get hit", "redis-aside get", 1.0),
    ("uncached get / raw asyncpg baseline", "svc get miss", "asyncpg get", 0.8),
    ("telemetry on / off (cached get)", "svc get hit", "svc get hit notel", 0.9),
    ("telemetry on / off (uncached get)", "svc get miss", "svc get miss notel", 0.9),
    ("1 trace in 10 recorded / off (cached get)", "svc get hit t10", "svc get hit notel", None),
    ("1 trace in 10 recorded / off (uncached get)", "svc get miss t10", "svc get miss notel", None),
    ("every trace recorded / off (cached get)", "svc get hit alltraces", "svc get hit notel", None),
    (
        "every trace recorded / off (uncached get)",
        "svc get miss alltraces",
        "svc get miss notel",
        None,
    ),
    ("cached get / bare FastAPI", "svc get hit", "bare get", 0.7),
    ("uncached get / bare FastAPI", "svc get miss", "bare get", None),
]
