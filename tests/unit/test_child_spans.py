"""`start_child_span`: children of a sampled-out trace are not started at all."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from building_blocks.telemetry.context import (
    RequestNotes,
    context_with_span,
    current_exemplar,
    exemplar_of,
    note_statement,
    open_notes,
    reset_notes,
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
    context = trace.set_span_in_context(span)
    token = otel_context.attach(context)
    span_context = span.get_span_context()
    notes, notes_token = open_notes(
        context if span_context.is_valid else None,
        unrecorded=not span.is_recording(),
        exemplar=exemplar_of(span_context),
    )

    def close() -> None:
        reset_notes(notes_token)
        otel_context.detach(token)

    return close, notes


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


def test_context_with_span_is_the_apis_set_span_in_context() -> None:
    span = trace.NonRecordingSpan(trace.SpanContext(7, 9, is_remote=False))
    other = trace.NonRecordingSpan(trace.SpanContext(1, 2, is_remote=True))
    with_values = baggage.set_baggage("tenant", "a", trace.set_span_in_context(other))
    for parent in (None, Context(), with_values):
        assert context_with_span(span, parent) == trace.set_span_in_context(span, parent)
        assert trace.get_current_span(context_with_span(span, parent)) is span
    # No parent: the current context's values are kept, its span replaced.
    token = otel_context.attach(with_values)
    try:
        made = context_with_span(span)
        assert made == trace.set_span_in_context(span)
        assert baggage.get_baggage("tenant", made) == "a"
        assert trace.get_current_span(made) is span
    finally:
        otel_context.detach(token)
    assert context_with_span(span) == trace.set_span_in_context(span)  # nothing current


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
