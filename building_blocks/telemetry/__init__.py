"""Telemetry: Prometheus instruments (`Metrics`) and, later, tracing and logging setup."""

from building_blocks.telemetry.metrics import LATENCY_BUCKETS, Metrics

__all__ = ["LATENCY_BUCKETS", "Metrics"]
