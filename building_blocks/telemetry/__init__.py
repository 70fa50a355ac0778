"""Telemetry: Prometheus instruments, pool and query instrumentation, tracing set-up,
structured logs, and the per-request hooks other modules write into.

Only `building_blocks.telemetry.setup` imports the OpenTelemetry SDK; the rest uses the
API. Nothing here instruments, connects or reads the environment at import time.
"""

from building_blocks.telemetry.context import (
    RequestNotes,
    current_exemplar,
    current_notes,
    note_cache,
    note_pool,
    trace_ids,
)
from building_blocks.telemetry.database import DatabaseTelemetry
from building_blocks.telemetry.exposition import MetricsExposition
from building_blocks.telemetry.logging import configure_logging, redact
from building_blocks.telemetry.metrics import LATENCY_BUCKETS, Metrics
from building_blocks.telemetry.multiprocess import prepare_multiprocess_dir
from building_blocks.telemetry.pool import PoolCollector, PoolInstrumentation
from building_blocks.telemetry.queries import QueryInstrumentation, parse_statement
from building_blocks.telemetry.redis import instrument_redis, uninstrument_redis
from building_blocks.telemetry.setup import Tracing, TracingConfig

__all__ = [
    "LATENCY_BUCKETS",
    "DatabaseTelemetry",
    "Metrics",
    "MetricsExposition",
    "PoolCollector",
    "PoolInstrumentation",
    "QueryInstrumentation",
    "RequestNotes",
    "Tracing",
    "TracingConfig",
    "configure_logging",
    "current_exemplar",
    "current_notes",
    "instrument_redis",
    "note_cache",
    "note_pool",
    "parse_statement",
    "prepare_multiprocess_dir",
    "redact",
    "trace_ids",
    "uninstrument_redis",
]
