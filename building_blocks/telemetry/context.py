"""Per-request notes and trace ids: the small hooks other modules use to enrich telemetry.

The HTTP middleware opens a `RequestNotes` for each request and writes the access-log
line from it when the request ends. Code deeper down (the query instrumentation, the
cache, replica routing) writes into it with `note_pool` / `note_cache` without knowing
about HTTP; outside a request these calls do nothing.

A mutable holder in one context variable (rather than a variable per field) because
FastAPI runs parts of a request in child tasks and threads: they get a *copy* of the
context, so a ``ContextVar.set`` there would never reach the middleware, while a change
to the shared holder does.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.util.types import Attributes

__all__ = [
    "RequestNotes",
    "child_spans_dropped",
    "context_with_span",
    "current_exemplar",
    "current_notes",
    "exemplar_of",
    "note_cache",
    "note_pool",
    "note_statement",
    "open_notes",
    "reset_notes",
    "start_child_span",
    "trace_ids",
]


@dataclass(slots=True)
class RequestNotes:
    """What one request touched (pools that served statements, the cache result), and
    what its server span settles for the code below it.

    ``context`` is the OpenTelemetry context the middleware made current (its server
    span); ``unrecorded`` says that span belongs to a trace that is not recorded, and
    ``exemplar`` is the label set of its trace when it is sampled. Per statement and
    checkout these answer `start_child_span` and `current_exemplar` with one context
    variable read, instead of looking the current span up through the OpenTelemetry API
    (five calls, one of them an ABC ``isinstance``)."""

    pools: list[str] = field(default_factory=list)
    cache: str | None = None
    context: Context | None = None
    unrecorded: bool = False
    exemplar: dict[str, str] | None = None

    @property
    def pool(self) -> str | None:
        """The pools used, comma-separated in first-use order (``None`` if no database)."""
        return ",".join(self.pools) if self.pools else None


_notes: ContextVar[RequestNotes | None] = ContextVar("bb_request_notes", default=None)


def open_notes(
    context: Context | None = None,
    *,
    unrecorded: bool = False,
    exemplar: dict[str, str] | None = None,
) -> tuple[RequestNotes, Token[RequestNotes | None]]:
    """Start collecting notes for the current request. The middleware calls this after
    making ``context`` current: its server span's (``None`` when that span has no valid
    ids), which is ``unrecorded`` or not and whose trace's ``exemplar`` is
    `exemplar_of` its ids."""
    notes = RequestNotes([], None, context, unrecorded and context is not None, exemplar)
    return notes, _notes.set(notes)


def reset_notes(token: Token[RequestNotes | None]) -> None:
    _notes.reset(token)


def current_notes() -> RequestNotes | None:
    return _notes.get()


def note_pool(pool: str) -> None:
    """Record that a statement of this request ran on ``pool`` (``primary``, ``replica-0``)."""
    note_statement(pool)


def note_statement(pool: str) -> bool:
    """`note_pool` for a statement about to run on ``pool``, answering
    `child_spans_dropped` at the same time (one context variable read for both: the
    query instrumentation asks both per statement)."""
    notes = _notes.get()
    if notes is None:
        return False
    if pool not in notes.pools:
        notes.pools.append(pool)
    return notes.unrecorded and notes.context is otel_context.get_current()


def note_cache(result: str) -> None:
    """Record the cache result of this request: ``hit``, ``miss``, ``error`` or ``bypass``.

    With several lookups in one request the last one wins, except that a ``miss`` or
    ``error`` is not hidden by a later ``hit``.
    """
    notes = _notes.get()
    if notes is not None and (notes.cache is None or result != "hit"):
        notes.cache = result


def trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the current span, or ``None`` when not recording."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def current_exemplar() -> dict[str, str] | None:
    """An exemplar label set for a histogram observation: the current sampled trace id
    (inside a request: the request's trace, when it is sampled).

    ``histogram.labels(...).observe(seconds, exemplar=current_exemplar())``. Prometheus
    shows exemplars only when scraped as OpenMetrics; in multiprocess mode prometheus-client
    drops them (a documented limitation), which costs nothing.
    """
    notes = _notes.get()
    if notes is not None and notes.context is not None:
        return notes.exemplar
    return exemplar_of(trace.get_current_span().get_span_context())


def exemplar_of(span_context: trace.SpanContext) -> dict[str, str] | None:
    """The exemplar label set naming ``span_context``'s trace, or ``None`` unless that
    trace is sampled (an exemplar must point at a trace the backend has)."""
    if not (span_context.is_valid and span_context.trace_flags.sampled):
        return None
    return {"trace_id": format(span_context.trace_id, "032x")}


#: The key under which the OpenTelemetry API keeps the current span in a `Context`,
#: learnt from the API itself (``set_span_in_context`` on an empty context).
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))


def context_with_span(span: trace.Span, parent: Context | None = None) -> Context:
    """``trace.set_span_in_context(span, parent)``: ``parent`` (``None``: the current
    context) with ``span`` as its current span. One call where the API makes four
    (``set_value``, ``get_current`` twice): ~3,000 instructions fewer per request."""
    base = otel_context.get_current() if parent is None else parent
    return Context({**base, _SPAN_KEY: span})


def child_spans_dropped() -> bool:
    """Whether `start_child_span` would hand back `trace.INVALID_SPAN` without asking the
    tracer right now: inside a request whose trace is not recorded, while its server
    span is the current one. A caller that builds a span's name and attributes per call
    (one per SQL statement) asks this first and skips building them."""
    notes = _notes.get()
    return notes is not None and notes.unrecorded and notes.context is otel_context.get_current()


def start_child_span(
    tracer: trace.Tracer,
    name: str,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Attributes = None,
    start_time: int | None = None,
) -> trace.Span:
    """``tracer.start_span(...)`` under the current span, except when the current span
    belongs to a trace that is not recorded (sampled out): then `trace.INVALID_SPAN`,
    a span that records nothing, without asking the SDK.

    With the parent-based samplers (the SDK's default, and what the stack ships) a child
    of an unsampled span is not recorded either, yet ``start_span`` still generates ids
    and runs the sampler: ~40 Python calls per span, three spans per uncached read. A
    custom sampler that would record children of unsampled parents is not asked.
    Outside any trace (no current span) this starts a span as usual.

    Inside a request whose server span is still the current one, the request's notes
    answer (`RequestNotes`); any other current span is looked up.
    """
    if child_spans_dropped():
        return trace.INVALID_SPAN
    parent = trace.get_current_span()
    if not parent.is_recording() and parent.get_span_context().is_valid:
        return trace.INVALID_SPAN
    return tracer.start_span(name, kind=kind, attributes=attributes, start_time=start_time)
