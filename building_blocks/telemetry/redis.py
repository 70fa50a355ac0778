"""Redis command spans (one client span per command or pipeline) for one client.

Uses opentelemetry-instrumentation-redis per *client* (``instrument_client``), never its
global ``instrument()``: that patches the redis classes for the whole process, so a
client instrumented both ways would trace every command twice.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.redis import RedisInstrumentor

__all__ = ["instrument_redis", "uninstrument_redis"]


def instrument_redis(client: Any, *, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace ``client``'s commands (sync or asyncio client); a second call does nothing."""
    if getattr(client, "_is_instrumented_by_opentelemetry", False):
        return
    RedisInstrumentor.instrument_client(client, tracer_provider=tracer_provider)


def uninstrument_redis(client: Any) -> None:
    if getattr(client, "_is_instrumented_by_opentelemetry", False):
        RedisInstrumentor.uninstrument_client(client)
