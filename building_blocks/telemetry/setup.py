"""Tracing set-up: the only module of the project that imports the OpenTelemetry SDK.

Everything else (HTTP middleware, query and unit-of-work spans, Redis, the cache) uses
the OpenTelemetry *API* and the global tracer provider, which is a no-op until `Tracing`
installs the SDK's provider in the lifespan. So with tracing off nothing is exported and
spans cost next to nothing, and tests may install a provider of their own.

Who reads which ``OTEL_*`` variable (building_blocks itself reads none):

* ``app/settings.py`` reads the ones that decide *whether and what* to build:
  ``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER``, ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``
  and ``OTEL_SERVICE_NAME``, and passes them in a `TracingConfig` (the SDK's public API
  has no exporter selection: that lives in the private auto-instrumentation configurator).
* The SDK reads the ones that *configure* what is built, as its documentation says:
  endpoint, headers, timeout, compression and certificates of the OTLP exporter,
  ``OTEL_TRACES_SAMPLER(_ARG)``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*`` and the span
  limits. Re-implementing their parsing here would only drift from the specification.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

__all__ = ["Tracing", "TracingConfig"]

log = logging.getLogger(__name__)

Exporter = Literal["otlp", "console", "none"]
Protocol = Literal["http/protobuf", "grpc"]


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """What to build. ``exporter="none"`` still records spans (trace ids in logs and
    exemplars) but sends them nowhere."""

    enabled: bool = True
    service_name: str = "unknown_service"
    exporter: Exporter = "otlp"
    protocol: Protocol = "http/protobuf"
    shutdown_timeout_seconds: float = 5.0


class Tracing:
    """Lifespan resource: `start` installs the SDK tracer provider, `close` flushes it.

    ``processor`` replaces the exporter chosen by the config (tests pass a
    ``SimpleSpanProcessor`` over an in-memory exporter).
    """

    def __init__(self, config: TracingConfig, *, processor: SpanProcessor | None = None) -> None:
        self.config = config
        self._processor = processor
        self._provider: TracerProvider | None = None

    @property
    def provider(self) -> trace.TracerProvider | None:
        """The provider this resource installed (``None`` when tracing is off)."""
        return self._provider

    async def start(self) -> None:
        if not self.config.enabled or self._provider is not None:
            return
        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            # The global provider can be set once per process and someone did (an
            # `opentelemetry-instrument` wrapper, a test run): spans go to theirs.
            log.info("a tracer provider is already installed; using it")
            return
        resource = Resource.create({SERVICE_NAME: self.config.service_name})
        # shutdown_on_exit=False: close() flushes in the lifespan, no atexit hook needed.
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        processor = self._processor or _processor_for(self.config)
        if processor is not None:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        self._provider = provider
        log.info(
            "tracing on",
            extra={"exporter": self.config.exporter, "protocol": self.config.protocol},
        )

    async def close(self) -> None:
        """Export what is buffered (bounded by ``shutdown_timeout_seconds``), then stop."""
        provider, self._provider = self._provider, None
        if provider is None:
            return
        timeout_ms = int(self.config.shutdown_timeout_seconds * 1000)
        # The exporter does blocking HTTP: keep it off the event loop.
        await asyncio.to_thread(provider.force_flush, timeout_ms)
        await asyncio.to_thread(provider.shutdown)


def _processor_for(config: TracingConfig) -> SpanProcessor | None:
    exporter: SpanExporter
    if config.exporter == "none":
        return None
    if config.exporter == "console":
        exporter = ConsoleSpanExporter()
    elif config.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 - optional package
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise RuntimeError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the opentelemetry-exporter-otlp-proto-grpc "
                "package; install it or use http/protobuf"
            ) from None
        exporter = GrpcExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 - imported only when used
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_* (the SDK)
    return BatchSpanProcessor(exporter)
