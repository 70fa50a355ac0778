"""Hand-written baselines the service is measured against (one FastAPI app per module).

Each is what a developer would write by hand for ``GET /api/v1/users/{id}`` with the same
JSON answer as the service, and nothing else: no repository, unit of work, error tree,
telemetry or pool metrics. They read their database addresses from ``BENCH_PG_DSN`` and
``BENCH_REDIS_URL`` (set by the harness) and are served with
``uvicorn --factory bench.baselines.<module>:create_app``.
"""
