"""`start_child_span`: children of a sampled-out trace are not started at all."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from building_blocks.telemetry.context import (
    RequestNotes,
    current_exemplar,
    exemplar_of,
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
