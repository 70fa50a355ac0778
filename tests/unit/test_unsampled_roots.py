"""`UnsampledRoots`: a new trace the sampler drops is made without the SDK's span
machinery, one it records is the SDK's span with the very trace id the sampler was asked
about, so which requests are recorded is exactly what the configured sampler says."""

from __future__ import annotations

import random
from collections.abc import Sequence
from random import getrandbits
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, SpanKind
from opentelemetry.util.types import Attributes
from prometheus_client import CollectorRegistry

from building_blocks.fastapi.telemetry import TelemetryMiddleware
from building_blocks.telemetry import Metrics, setup
from building_blocks.telemetry.context import start_child_span
from building_blocks.telemetry.setup import ReusableTraceIds, Tracing, TracingConfig, UnsampledRoots

RATIO = 0.25
ALWAYS_ON_RATIO = TraceIdRatioBased(1.0)  # records every root, through the ratio rule
REQUESTS = 400


class _Seen:
    """An ASGI app that answers 200 and keeps the span context each request ran in."""

    def __init__(self) -> None:
        self.contexts: list[SpanContext] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.contexts.append(trace.get_current_span().get_span_context())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def _get(app: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/users/1",
        "scheme": "http",
        "headers": list(headers),
        "query_string": b"",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    await app(scope, receive, send)


def _handed_trace_ids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every trace id drawn from now on (`UnsampledRoots` for each root, the SDK through
    `ReusableTraceIds` when nothing was left to reuse): the 128-bit draws."""
    handed: list[int] = []

    def drawing(bits: int) -> int:
        drawn = getrandbits(bits)
        if bits == 128:
            handed.append(drawn)
        return drawn

    monkeypatch.setattr(setup, "getrandbits", drawing)
    return handed


def _provider(sampler: Sampler, **kwargs: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False, **kwargs)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _middleware(app: Any, provider: TracerProvider) -> TelemetryMiddleware:
    return TelemetryMiddleware(app, metrics=Metrics(CollectorRegistry()), tracer_provider=provider)


@pytest.mark.parametrize(
    "sampler",
    [
        ParentBasedTraceIdRatio(RATIO),
        ParentBased(TraceIdRatioBased(RATIO)),
        TraceIdRatioBased(RATIO),
    ],
    ids=["parentbased_traceidratio", "parentbased(traceidratio)", "traceidratio"],
)
async def test_exactly_the_roots_the_sampler_keeps_are_recorded_with_the_id_asked_about(
    sampler: Sampler, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed = _handed_trace_ids(monkeypatch)
    provider, exporter = _provider(sampler, id_generator=ReusableTraceIds())
    assert UnsampledRoots.for_provider(provider) is not None
    seen = _Seen()
    app = _middleware(seen, provider)
    for _ in range(REQUESTS):
        await _get(app)

    reference = TraceIdRatioBased(RATIO)  # what the sampler says of each trace id
    should_keep = {
        c.trace_id
        for c in seen.contexts
        if reference.should_sample(None, c.trace_id, "GET").decision is Decision.RECORD_AND_SAMPLE
    }
    recorded = exporter.get_finished_spans()
    assert {s.context.trace_id for s in recorded} == should_keep
    assert 0 < len(should_keep) < REQUESTS  # ~100 of 400; both kinds were exercised
    assert len({c.trace_id for c in seen.contexts}) == REQUESTS  # a new trace each
    # A recorded root has the id the sampler was asked about: no id drawn and dropped
    # (the SDK drawing a fresh one would add an id no request ran under).
    assert len(handed) == REQUESTS
    assert set(handed) == {c.trace_id for c in seen.contexts}
    for span in recorded:
        assert span.kind is SpanKind.SERVER
        assert span.parent is None
    # The ids of a request that is not recorded are valid (they go into its log line)
    # and flagged as the SDK flags a dropped root of its own.
    sdk_dropped = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t").start_span("GET")
    for context in seen.contexts:
        assert context.is_valid
        if context.trace_id not in should_keep:
            assert context.trace_flags == sdk_dropped.get_span_context().trace_flags
            assert not context.trace_flags.sampled
            # Made without SpanContext's constructor: the same object it would make.
            ordinary = SpanContext(
                context.trace_id, context.span_id, is_remote=False, trace_flags=context.trace_flags
            )
            assert type(context) is SpanContext
            assert tuple(context) == tuple(ordinary)
            assert context.trace_state == ordinary.trace_state
            assert not context.is_remote


async def test_a_traceparent_is_continued_and_the_current_span_is_never_the_parent() -> None:
    provider, exporter = _provider(ParentBasedTraceIdRatio(RATIO), id_generator=ReusableTraceIds())
    seen = _Seen()
    app = _middleware(seen, provider)
    caller_trace, caller_span = 0xABC, 0xDEF
    traceparent = f"00-{caller_trace:032x}-{caller_span:016x}-01".encode()
    await _get(app, [(b"traceparent", traceparent)])
    (continued,) = exporter.get_finished_spans()
    assert continued.context.trace_id == caller_trace
    assert continued.parent is not None
    assert continued.parent.span_id == caller_span

    outer = provider.get_tracer("test").start_span("outer")
    with trace.use_span(outer, end_on_exit=True):
        for _ in range(40):
            await _get(app)
    assert all(c.trace_id != outer.get_span_context().trace_id for c in seen.contexts[1:])


class _CountingSampler(Sampler):
    """Keeps nothing; counts how often it is asked."""

    def __init__(self) -> None:
        self.asked = 0

    def should_sample(  # noqa: PLR0917 - the SDK's signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.asked += 1
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "counting"


async def test_always_off_records_no_root_and_always_on_is_left_to_the_sdk() -> None:
    provider, exporter = _provider(ParentBased(ALWAYS_OFF), id_generator=ReusableTraceIds())
    assert UnsampledRoots.for_provider(provider) is not None
    seen = _Seen()
    app = _middleware(seen, provider)
    for _ in range(20):
        await _get(app)
    assert exporter.get_finished_spans() == ()
    assert all(c.is_valid and not c.trace_flags.sampled for c in seen.contexts)
    always_on, _ = _provider(ParentBased(ALWAYS_ON), id_generator=ReusableTraceIds())
    assert UnsampledRoots.for_provider(always_on) is None  # every root is recorded anyway


async def test_any_other_sampler_or_id_generator_is_left_to_the_sdk() -> None:
    custom = _CountingSampler()
    provider, _ = _provider(custom, id_generator=ReusableTraceIds())
    assert UnsampledRoots.for_provider(provider) is None
    default_ids, _ = _provider(ParentBasedTraceIdRatio(RATIO))  # the SDK's own ids
    assert UnsampledRoots.for_provider(default_ids) is None
    assert UnsampledRoots.for_provider(trace.NoOpTracerProvider()) is None

    seen = _Seen()
    app = _middleware(seen, provider)
    for _ in range(10):
        await _get(app)
    assert custom.asked == 10  # once per request, by the SDK
    assert all(c.is_valid and not c.trace_flags.sampled for c in seen.contexts)


def test_a_reused_trace_id_is_handed_out_once() -> None:
    ids = ReusableTraceIds()
    ids.reuse(42)
    assert ids.generate_trace_id() == 42
    assert ids.generate_trace_id() not in {0, 42}


def test_a_reused_id_the_sdk_did_not_take_is_not_handed_to_the_next_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed = _handed_trace_ids(monkeypatch)
    ids = ReusableTraceIds()
    roots = UnsampledRoots.for_provider(TracerProvider(sampler=ALWAYS_ON_RATIO, id_generator=ids))
    assert roots is not None
    assert roots.start() is None  # to be recorded: its id is kept for the SDK
    kept = handed[-1]
    roots.started_by_sdk()  # say the SDK made no span (a disabled tracer)
    assert ids.generate_trace_id() != kept


def test_the_provider_tracing_builds_from_the_shipped_sampler_takes_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tracing installs a *global* provider once per process and the test run already
    # has one: check the provider `Tracing.start` would install.
    tracing = Tracing(TracingConfig(exporter="none"))
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
    assert UnsampledRoots.for_provider(tracing.build_provider()) is not None
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")  # the SDK's default
    assert UnsampledRoots.for_provider(tracing.build_provider()) is None


def test_dropped_roots_take_the_short_span_context_path_on_the_installed_api() -> None:
    # `_span_context_fields` checks the tuple layout and says ``None`` when it moved:
    # this says the check passes on the API version the project locks, so the short
    # path (the one the test above compares with the constructor) is what runs.
    provider, _ = _provider(ParentBasedTraceIdRatio(0.0), id_generator=ReusableTraceIds())
    roots = UnsampledRoots.for_provider(provider)
    assert roots is not None
    assert roots._fields is not None
    started = roots.start()
    assert started is not None
    span, trace_id, span_id = started
    assert isinstance(span, trace.NonRecordingSpan)
    assert not span.is_recording()
    made = span.get_span_context()
    assert span.get_span_context() is made  # made once, when first asked for
    assert repr(span) == repr(trace.NonRecordingSpan(made))
    assert (made.trace_id, made.span_id) == (trace_id, span_id)
    assert made == SpanContext(trace_id, span_id, False, made.trace_flags)


def test_the_constructors_make_the_same_root_when_the_short_path_is_off() -> None:
    # What runs when `_span_context_fields` finds the API changed: the constructors.
    provider, _ = _provider(ParentBasedTraceIdRatio(0.0), id_generator=ReusableTraceIds())
    short, checked = (UnsampledRoots.for_provider(provider) for _ in range(2))
    assert short is not None
    assert checked is not None
    checked._fields = None
    state = random.getstate()
    by_short = short.start()
    random.setstate(state)  # the same ids drawn again
    by_constructors = checked.start()
    assert by_short is not None
    assert by_constructors is not None
    assert by_short[1:] == by_constructors[1:]
    assert by_short[0].get_span_context() == by_constructors[0].get_span_context()


async def test_with_tracing_off_no_span_is_made_and_the_code_below_starts_none() -> None:
    # `install_telemetry(tracing=False)` gives the middleware the API's no-op provider.
    recording, exporter = _provider(ALWAYS_ON)  # what code below might use on its own
    tracer = recording.get_tracer("below")
    started: list[trace.Span] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.append(start_child_span(tracer, "SELECT users"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = TelemetryMiddleware(
        app, metrics=Metrics(CollectorRegistry()), tracer_provider=trace.NoOpTracerProvider()
    )
    traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await _get(middleware)
    await _get(middleware, [(b"traceparent", traceparent)])  # no span to continue it
    assert started == [trace.INVALID_SPAN, trace.INVALID_SPAN]
    assert exporter.get_finished_spans() == ()
    # Outside a request the same tracer records as usual: only requests are affected.
    start_child_span(tracer, "migration").end()
    assert len(exporter.get_finished_spans()) == 1
