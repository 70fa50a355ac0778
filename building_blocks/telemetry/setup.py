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
import threading
from dataclasses import dataclass
from random import getrandbits
from typing import Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    StaticSampler,
    TraceIdRatioBased,
)

__all__ = ["ROOT", "ReusableTraceIds", "Tracing", "TracingConfig", "UnsampledRoots"]

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
        provider = self.build_provider()
        trace.set_tracer_provider(provider)
        self._provider = provider
        log.info(
            "tracing on",
            extra={"exporter": self.config.exporter, "protocol": self.config.protocol},
        )

    def build_provider(self) -> TracerProvider:
        """The provider `start` installs: the SDK's, configured by ``OTEL_*`` (sampler,
        resource attributes, limits), with the configured exporter and trace ids that
        `UnsampledRoots` can reuse."""
        resource = Resource.create({SERVICE_NAME: self.config.service_name})
        # shutdown_on_exit=False: close() flushes in the lifespan, no atexit hook needed.
        provider = TracerProvider(
            resource=resource, shutdown_on_exit=False, id_generator=ReusableTraceIds()
        )
        processor = self._processor or _processor_for(self.config)
        if processor is not None:
            provider.add_span_processor(processor)
        return provider

    async def close(self) -> None:
        """Export what is buffered (bounded by ``shutdown_timeout_seconds``), then stop."""
        provider, self._provider = self._provider, None
        if provider is None:
            return
        timeout_ms = int(self.config.shutdown_timeout_seconds * 1000)
        # The exporter does blocking HTTP: keep it off the event loop.
        await asyncio.to_thread(provider.force_flush, timeout_ms)
        await asyncio.to_thread(provider.shutdown)


class ReusableTraceIds(RandomIdGenerator):
    """The SDK's random ids, except that a trace id handed to `reuse` is the next one
    this thread gets: `UnsampledRoots` draws a root's trace id to ask the sampler, and
    when the answer is "record" the SDK's span must get that same id."""

    def __init__(self) -> None:
        self._next = threading.local()

    def reuse(self, trace_id: int) -> None:
        self._next.trace_id = trace_id

    def forget(self) -> None:
        """Drop a reused id nobody took (a tracer that made no span), so that it cannot
        become the id of an unrelated trace."""
        self._next.trace_id = 0

    def generate_trace_id(self) -> int:
        trace_id: int = getattr(self._next, "trace_id", 0)
        if trace_id:
            self._next.trace_id = 0
            return trace_id
        return self.new_trace_id()

    def new_trace_id(self) -> int:
        """A random trace id, never one handed to `reuse` (what the SDK's generator
        draws: `random.getrandbits`, never the invalid 0). `UnsampledRoots` draws as this
        does (it knows nothing waits to be reused), at a third of `generate_trace_id`'s
        instructions: no thread-local read, no ``super()``."""
        trace_id = getrandbits(128)
        while not trace_id:  # 0 is the invalid id: one draw in 2**128
            trace_id = getrandbits(128)
        return trace_id


#: The context of a span that starts a trace: none is current in it.
ROOT = Context()


class UnsampledRoots:
    """Server spans that start a trace, without the SDK's span machinery when the
    sampler drops them.

    Asking the SDK for a span that will not be recorded still costs ~50 Python calls
    (ids, sampler, the tracer's own metrics, a `NonRecordingSpan`); with 1 trace in 100
    recorded that is most requests. Here the trace id is drawn with the provider's id
    generator and the root sampler's rule is applied to it; a dropped root becomes a
    `NonRecordingSpan` with the flags the SDK gives it, and a recorded one is left to
    the SDK, which gets the same trace id (`ReusableTraceIds`) and so gives the same
    answer. Only for the samplers ``OTEL_TRACES_SAMPLER`` names that decide a root by
    its trace id: ``traceidratio``, ``always_off`` and their ``parentbased_`` forms
    (`for_provider`); ``always_on`` records every root, nothing to spare there.
    """

    def __init__(self, ids: ReusableTraceIds, bound: int) -> None:
        self._ids = ids
        self._bound = bound  # a root is recorded when its trace id's low 64 bits are below
        flags = trace.TraceFlags.DEFAULT
        if ids.is_trace_id_random():
            flags |= trace.TraceFlags.RANDOM_TRACE_ID
        self._flags = trace.TraceFlags(flags)
        self._fields = _span_context_fields(self._flags)

    @classmethod
    def for_provider(cls, provider: trace.TracerProvider) -> UnsampledRoots | None:
        """For an SDK provider with `ReusableTraceIds` (`Tracing` makes such providers)
        and one of those samplers, else ``None``: then ask the SDK for every span."""
        if not isinstance(provider, TracerProvider):
            return None
        ids = provider.id_generator
        root: object = provider.sampler
        if type(root) in {ParentBased, ParentBasedTraceIdRatio}:
            # The SDK keeps a parent-based sampler's root sampler private: should that
            # change, every span is the SDK's again (the tests say so).
            root = getattr(root, "_root", None)
        if not isinstance(ids, ReusableTraceIds):
            return None
        if type(root) is TraceIdRatioBased:
            return cls(ids, root.bound)
        if type(root) is StaticSampler and root.should_sample(ROOT, 1, "").decision is (
            Decision.DROP
        ):
            return cls(ids, 0)
        return None

    def started_by_sdk(self) -> None:
        """Call after the SDK started the root `start` left to it."""
        self._ids.forget()

    def start(self) -> tuple[trace.Span, int, int] | None:
        """A root span that is not recorded, with its trace and span ids, or ``None``
        when the sampler records this root: the caller then starts it with the SDK,
        passing `ROOT` as its context (a root whatever span is current, as here), and
        calls `started_by_sdk`."""
        # The ids as `new_trace_id` and the SDK's `generate_span_id` draw them, inline
        # (a call each saved); a draw of 0, the invalid id, is made again by them.
        trace_id = getrandbits(128) or self._ids.new_trace_id()
        # TraceIdRatioBased's rule (its public `bound` and `TRACE_ID_LIMIT`); the test
        # compares every decision with the sampler's own should_sample.
        if trace_id & _TRACE_ID_LIMIT < self._bound:
            self._ids.reuse(trace_id)
            return None
        span_id = getrandbits(64) or self._ids.generate_span_id()
        span = _new_object(_UnsampledRootSpan)  # no __init__ to run: its state is one tuple
        span._made_of = (trace_id, span_id, self)
        return span, trace_id, span_id

    def context_of(self, trace_id: int, span_id: int) -> trace.SpanContext:
        """The `trace.SpanContext` of the root `start` handed out with these ids."""
        fields = self._fields
        if fields is None:
            return trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=self._flags)
        is_remote, flags, state, is_valid = fields
        return _new_tuple(_SpanContext, (trace_id, span_id, is_remote, flags, state, is_valid))


class _UnsampledRootSpan(trace.NonRecordingSpan):
    """The span of a root `UnsampledRoots.start` dropped: a `trace.NonRecordingSpan`
    whose `trace.SpanContext` is made when it is first asked for. Most requests never
    ask (the access line takes the ids from `start`, and the request's notes answer the
    code below), which spares them ~2,000 instructions (callgrind)."""

    _made_of: tuple[int, int, UnsampledRoots]

    def get_span_context(self) -> trace.SpanContext:
        context: trace.SpanContext | None = self.__dict__.get("_context")
        if context is None:
            trace_id, span_id, roots = self._made_of
            context = self._context = roots.context_of(trace_id, span_id)
        return context

    def __repr__(self) -> str:
        return f"NonRecordingSpan({self.get_span_context()!r})"


_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_SpanContext = trace.SpanContext
_new_object = object.__new__
_new_tuple = tuple.__new__


def _span_context_fields(
    flags: trace.TraceFlags,
) -> tuple[bool, trace.TraceFlags, trace.TraceState, bool] | None:
    """The fields after the ids of the `trace.SpanContext` of a local root with valid ids
    and ``flags``, when a `SpanContext` is the tuple of its fields that its type
    declares (``tuple[int, int, bool, TraceFlags, TraceState, bool]``) and a
    `trace.NonRecordingSpan` keeps it as ``_context`` (`_UnsampledRootSpan` sets it);
    else ``None``.

    Then `UnsampledRoots.context_of` makes the context with ``tuple.__new__``, skipping
    the Python ``__new__`` that checks the ids' range (its ids are drawn in range):
    1,100 instructions instead of 5,900 (callgrind). Checked here against the ordinary
    constructors, so an API release that changes either falls back to them."""
    made = trace.SpanContext(3, 5, is_remote=False, trace_flags=flags)
    fields = (False, flags, made.trace_state, True)
    same = _new_tuple(trace.SpanContext, (3, 5, *fields))
    read = (same.trace_id, same.span_id, same.is_remote, same.trace_flags, same.is_valid)
    if tuple(made) != tuple(same) or read != (3, 5, False, flags, True):
        return None
    if vars(trace.NonRecordingSpan(same)) != {"_context": same}:
        return None
    return fields


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
