"""`start_child_span`: children of a sampled-out trace are not started at all."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from building_blocks.telemetry import context as notes_module
from building_blocks.telemetry.context import (
    RequestNotes,
    close_request,
    current_context,
    current_exemplar,
    current_notes,
    exemplar_of,
    note_cache,
    note_statement,
    open_request,
    start_child_span,
)


def tracer_with(sampler: ParentBased) -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_under_a_recorded_span_the_child_is_recorded_with_its_parent() -> None:
    tracer, exporter = tracer_with(ParentBased(ALWAYS_ON))
    with tracer.start_as_current_span("request") as parent:
        child = start_child_span(tracer, "SELECT users", kind=trace.SpanKind.CLIENT)
        child.end()
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"request", "SELECT users"}
    select = finished["SELECT users"]
    assert select.kind is trace.SpanKind.CLIENT
    assert select.parent is not None
    assert select.parent.span_id == parent.get_span_context().span_id


def test_under_a_sampled_out_span_no_span_is_started() -> None:
    tracer, exporter = tracer_with(ParentBased(ALWAYS_OFF))
    with tracer.start_as_current_span("request") as parent:
        assert parent.get_span_context().is_valid  # a real trace, not recorded
        child = start_child_span(tracer, "SELECT users")
        assert child is trace.INVALID_SPAN
        child.end()  # callers end it as any span: a no-op
    assert exporter.get_finished_spans() == ()


def test_outside_any_trace_the_span_is_a_root_as_usual() -> None:
    tracer, exporter = tracer_with(ParentBased(ALWAYS_ON))
    span = start_child_span(tracer, "migration")
    span.end()
    (root,) = exporter.get_finished_spans()
    assert root.name == "migration"
    assert root.parent is None


def _request(span: trace.Span) -> tuple[Callable[[], None], RequestNotes]:
    """What the HTTP middleware does for a request served under ``span``."""
    span_context = span.get_span_context()
    notes, token = open_request(
        span,
        settled=span_context.is_valid,
        unrecorded=not span.is_recording(),
        exemplar=exemplar_of(span_context),
    )
    return lambda: close_request(notes, token), notes


def test_in_a_sampled_out_request_the_notes_answer_and_another_current_span_is_asked() -> None:
    tracer, exporter = tracer_with(ParentBased(ALWAYS_OFF))
    server = tracer.start_span("GET /users/{id}")
    close, notes = _request(server)
    try:
        assert notes.unrecorded
        assert start_child_span(tracer, "SELECT users") is trace.INVALID_SPAN
        assert current_exemplar() is None
        # Code in the request that starts a recorded trace of its own: its children
        # belong to it, the request's notes must not drop them.
        recorded, _ = tracer_with(ParentBased(ALWAYS_ON))
        with recorded.start_as_current_span("job", context=otel_context.Context()):
            child = start_child_span(recorded, "SELECT jobs")
            assert child.is_recording()
            child.end()
    finally:
        close()
    assert exporter.get_finished_spans() == ()


def test_in_a_sampled_request_children_are_recorded_and_exemplars_name_the_trace() -> None:
    tracer, exporter = tracer_with(ParentBased(ALWAYS_ON))
    server = tracer.start_span("GET /users/{id}")
    close, notes = _request(server)
    try:
        assert not notes.unrecorded
        child = start_child_span(tracer, "SELECT users")
        child.end()
        trace_id = server.get_span_context().trace_id
        assert current_exemplar() == {"trace_id": f"{trace_id:032x}"}
    finally:
        close()
        server.end()
    (select, _) = exporter.get_finished_spans()
    assert select.parent is not None
    assert select.parent.span_id == server.get_span_context().span_id


def test_open_request_makes_the_apis_context_with_the_notes_beside_the_span() -> None:
    span = trace.NonRecordingSpan(trace.SpanContext(7, 9, is_remote=False))
    other = trace.NonRecordingSpan(trace.SpanContext(1, 2, is_remote=True))
    with_values = baggage.set_baggage("tenant", "a", trace.set_span_in_context(other))
    outer = otel_context.attach(with_values)  # what a request with no parent continues
    try:
        for parent in (None, Context(), with_values):
            expected = trace.set_span_in_context(span, parent)
            notes, token = open_request(span, parent, settled=True, unrecorded=True)
            made = otel_context.get_current()  # the API sees what open_request attached
            try:
                assert made is current_context()
                assert made is notes.context
                assert current_notes() is notes
                assert trace.get_current_span() is span
                # Baggage and all: the API's context, and the notes' key besides.
                assert {k: v for k, v in made.items() if v is not notes} == expected
                assert len(made) == len(expected) + 1
            finally:
                close_request(notes, token)
            assert otel_context.get_current() is with_values  # back to what it was
    finally:
        otel_context.detach(outer)
    assert current_notes() is None


def test_invalid_ids_give_notes_that_collect_but_decide_nothing() -> None:
    # Tracing off: the notes still collect the pool and cache for the access line, but
    # they neither drop children nor name an exemplar.
    notes, token = open_request(trace.INVALID_SPAN, settled=False, unrecorded=True)
    try:
        assert notes.context is None
        assert not notes.unrecorded
        assert note_statement("primary") is False
        note_cache("miss")
        note_cache("hit")  # a later hit does not hide the miss
        assert (notes.pool, notes.cache) == ("primary", "miss")
    finally:
        close_request(notes, token)
    note_cache("hit")  # outside a request: nothing to note, nothing raised
    assert notes.cache == "miss"


def test_the_context_variable_is_used_only_when_the_api_keeps_its_context_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The installed API (contextvars runtime): its variable is found and read directly.
    assert notes_module._CONTEXT_VAR is not None
    assert notes_module.current_context == notes_module._CONTEXT_VAR.get

    class Elsewhere(ContextVarsRuntimeContext):
        """A runtime context that keeps the current context in a variable of its own,
        leaving the attribute the check looks at unused."""

        def __init__(self) -> None:
            super().__init__()
            self._mine: ContextVar[Context] = ContextVar("mine")
            self._mine.set(Context())

        def attach(self, context: Context) -> Token[Context]:
            return self._mine.set(context)

        def get_current(self) -> Context:
            return self._mine.get()

        def detach(self, token: Token[Context]) -> None:
            self._mine.reset(token)

    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", Elsewhere())
    assert notes_module._runtime_context_var() is None
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", object())  # no variable at all
    assert notes_module._runtime_context_var() is None


def test_a_statement_is_noted_once_per_pool_and_says_whether_its_span_is_dropped() -> None:
    assert note_statement("primary") is False  # outside a request: nothing to note
    tracer, _ = tracer_with(ParentBased(ALWAYS_OFF))
    close, notes = _request(tracer.start_span("GET /users/{id}"))
    try:
        assert note_statement("replica-0") is True
        assert note_statement("replica-0") is True
        assert note_statement("primary") is True
        assert notes.pool == "replica-0,primary"
        other = trace.NonRecordingSpan(trace.SpanContext(3, 4, is_remote=False))
        with trace.use_span(other):  # another current span: it is asked, not the notes
            assert note_statement("primary") is False
    finally:
        close()
    recording, _ = tracer_with(ParentBased(ALWAYS_ON))
    close, notes = _request(recording.start_span("GET /users/{id}"))
    try:
        assert note_statement("primary") is False  # recorded: the span is started
        assert notes.pool == "primary"
    finally:
        close()


def test_with_no_tracing_configured_a_proxy_tracer_hands_out_nothing_until_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)  # as in a process that set none
    proxy = trace.ProxyTracer("test")
    assert start_child_span(proxy, "unit of work") is trace.INVALID_SPAN
    # Set later (the lifespan sets it after the components took their tracers): the
    # same proxy now records through it.
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    start_child_span(proxy, "unit of work").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["unit of work"]


def test_the_providers_variable_is_read_only_when_the_api_would_not_load_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = TracerProvider()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    assert notes_module._global_provider_check()()
    # A provider named in the environment is loaded by the API on first use: asked.
    monkeypatch.setenv("OTEL_PYTHON_TRACER_PROVIDER", "sdk_tracer_provider")
    asked: list[bool] = []

    def get_tracer_provider() -> trace.TracerProvider:
        asked.append(True)
        return provider

    monkeypatch.setattr(trace, "get_tracer_provider", get_tracer_provider)
    assert notes_module._global_provider_check()()
    assert asked == [True]
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER")
    monkeypatch.delattr(trace, "_TRACER_PROVIDER")  # an API that keeps it elsewhere
    assert notes_module._global_provider_check()()
    assert asked == [True, True]
