"""Per-request notes and trace ids: the small hooks other modules use to enrich telemetry.

The HTTP middleware opens a `RequestNotes` for each request (`open_request`: in the
OpenTelemetry context it makes current, beside its server span) and writes the
access-log line from it when the request ends. Code deeper down (the query
instrumentation, the cache, replica routing) writes into it with `note_pool` /
`note_cache` without knowing about HTTP; outside a request these calls do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.util.types import Attributes

__all__ = [
    "RequestNotes",
    "child_spans_dropped",
    "close_request",
    "current_context",
    "current_exemplar",
    "current_notes",
    "exemplar_of",
    "note_cache",
    "note_pool",
    "note_statement",
    "open_request",
    "start_child_span",
    "trace_ids",
]


@dataclass(slots=True)
class RequestNotes:
    """What one request touched (the pools that served statements, the cache result), and
    what its server span settles for the code below it.

    ``context`` is the OpenTelemetry context the middleware made current (its server
    span); ``unrecorded`` says that span belongs to a trace that is not recorded, and
    ``exemplar`` is the label set of its trace when it is sampled. Per statement and
    checkout these answer `start_child_span` and `current_exemplar` with one context
    read, instead of looking the current span up through the OpenTelemetry API (five
    calls, one of them an ABC ``isinstance``)."""

    cache: str | None = None
    context: Context | None = None
    unrecorded: bool = False
    exemplar: dict[str, str] | None = None
    #: The pools used, comma-separated in first-use order (``None``: no database).
    pool: str | None = None


def _runtime_context_var() -> ContextVar[Context] | None:
    """The context variable in which the OpenTelemetry API keeps the current context,
    when its runtime context is the default one (``contextvars``, `OTEL_PYTHON_CONTEXT`
    unset) and a context attached through the API is that variable's value; else
    ``None``: then the API's own functions are used.

    The API's ``attach``/``detach``/``get_current`` are two Python calls each around
    that variable's ``set``/``reset``/``get``; a request makes five such calls
    (callgrind: ~1,600 instructions for attach + detach, ~650 per ``get_current``)."""
    var = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    if not isinstance(var, ContextVar):
        return None
    probe = Context({"bb-probe": True})
    token = otel_context.attach(probe)
    try:
        seen = var.get(None)
    finally:
        otel_context.detach(token)
    return var if seen is probe else None


_CONTEXT_VAR = _runtime_context_var()

#: ``opentelemetry.context.get_current``, ``attach`` and ``detach``, as the context
#: variable's own methods when `_runtime_context_var` found it.
current_context: Callable[[], Context] = (
    otel_context.get_current if _CONTEXT_VAR is None else _CONTEXT_VAR.get
)
_attach: Callable[[Context], Token[Context]] = (
    otel_context.attach if _CONTEXT_VAR is None else _CONTEXT_VAR.set
)
_detach: Callable[[Token[Context]], None] = (
    otel_context.detach if _CONTEXT_VAR is None else _CONTEXT_VAR.reset
)


def _global_provider_check() -> Callable[[], bool]:
    """A function answering whether a global tracer provider is set (``False``: every
    `trace.ProxyTracer` hands out spans that record nothing).

    The API's ``get_tracer_provider`` answers that only after looking for
    ``OTEL_PYTHON_TRACER_PROVIDER`` in ``os.environ`` on every call while none is set: a
    missed lookup raises and catches a `KeyError` (~2 µs here). When that variable is
    unset at import and the API keeps the provider in the module variable it has kept it
    in so far, that variable is read; otherwise the API is asked."""
    api = trace
    if OTEL_PYTHON_TRACER_PROVIDER in os.environ or not hasattr(api, "_TRACER_PROVIDER"):
        return lambda: not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return lambda: api._TRACER_PROVIDER is not None


_provider_set = _global_provider_check()

#: The keys under which the OpenTelemetry API keeps the current span in a `Context`,
#: learnt from the API itself (``set_span_in_context`` on an empty context), and under
#: which the request's notes ride along with it.
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))
_NOTES_KEY = otel_context.create_key("bb-request-notes")


def open_request(
    span: trace.Span,
    parent: Context | None = None,
    *,
    settled: bool,
    unrecorded: bool,
    exemplar: dict[str, str] | None = None,
) -> tuple[RequestNotes, Token[Context]]:
    """Make ``span`` (the request's server span) current, with fresh `RequestNotes` in
    the same context: ``parent`` (``None``: the current context) with ``span`` and the
    notes, attached in one context switch (`close_request` undoes it).

    ``settled`` says the notes answer for the code below: the span has valid ids, or
    nothing records at all (a no-op tracer provider: tracing is off); ``unrecorded`` that
    the span's trace is not recorded; ``exemplar`` is `exemplar_of` its ids when it is
    sampled. The
    context is what ``trace.set_span_in_context(span, parent)`` makes, plus the notes'
    key (tests/unit/test_child_spans.py), without its four calls.

    The notes are one mutable holder in the context rather than a value per field
    because FastAPI runs parts of a request in child tasks and threads: they get a
    *copy* of the context, so a new value set there would never reach the middleware,
    while a change to the shared holder does."""
    notes = RequestNotes(None, None, False, exemplar)
    base = current_context() if parent is None else parent
    context = Context({**base, _SPAN_KEY: span, _NOTES_KEY: notes})
    if settled:
        notes.context = context
        notes.unrecorded = unrecorded
    return notes, _attach(context)


def close_request(notes: RequestNotes, token: Token[Context]) -> None:
    """End what `open_request` started (the notes and token it handed back).

    The notes stop answering for the code below (`notes.context` is dropped): that
    context holds the notes, so the two would otherwise form a reference cycle, left per
    request for the garbage collector instead of freed when the request ends (measured:
    four objects per request, and a collection of tens of thousands of objects every few
    thousand requests). Code still running for the request afterwards (a shared cache
    read) asks the tracer, as code outside a request does."""
    notes.context = None
    _detach(token)


def current_notes() -> RequestNotes | None:
    """The notes of the request being served (``None`` outside one)."""
    notes = current_context().get(_NOTES_KEY)
    return notes if isinstance(notes, RequestNotes) else None


def note_pool(pool: str) -> None:
    """Record that a statement of this request ran on ``pool`` (``primary``, ``replica-0``)."""
    note_statement(pool)


def note_statement(pool: str) -> bool:
    """`note_pool` for a statement about to run on ``pool``, answering
    `child_spans_dropped` at the same time (one context read for both: the query
    instrumentation asks both per statement)."""
    context = current_context()
    notes = context.get(_NOTES_KEY)
    if not isinstance(notes, RequestNotes):
        return False
    noted = notes.pool
    if noted is None:
        notes.pool = pool
    elif noted != pool and pool not in noted.split(","):
        notes.pool = f"{noted},{pool}"
    return notes.unrecorded and notes.context is context


def note_cache(result: str) -> None:
    """Record the cache result of this request: ``hit``, ``miss``, ``error`` or ``bypass``.

    With several lookups in one request the last one wins, except that a ``miss`` or
    ``error`` is not hidden by a later ``hit``.
    """
    notes = current_context().get(_NOTES_KEY)
    if isinstance(notes, RequestNotes) and (notes.cache is None or result != "hit"):
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
    notes = current_context().get(_NOTES_KEY)
    if isinstance(notes, RequestNotes) and notes.context is not None:
        return notes.exemplar
    return exemplar_of(trace.get_current_span().get_span_context())


def exemplar_of(span_context: trace.SpanContext) -> dict[str, str] | None:
    """The exemplar label set naming ``span_context``'s trace, or ``None`` unless that
    trace is sampled (an exemplar must point at a trace the backend has)."""
    if not (span_context.is_valid and span_context.trace_flags.sampled):
        return None
    return {"trace_id": format(span_context.trace_id, "032x")}


def child_spans_dropped() -> bool:
    """Whether `start_child_span` would hand back `trace.INVALID_SPAN` without asking the
    tracer right now: inside a request whose trace is not recorded, while its server
    span is the current one. A caller that builds a span's name and attributes per call
    (one per SQL statement) asks this first and skips building them."""
    context = current_context()
    notes = context.get(_NOTES_KEY)
    return isinstance(notes, RequestNotes) and notes.unrecorded and notes.context is context


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
    context = current_context()  # `child_spans_dropped`, inline: once per unit of work
    notes = context.get(_NOTES_KEY)
    if isinstance(notes, RequestNotes):
        if notes.unrecorded and notes.context is context:
            return trace.INVALID_SPAN
    elif isinstance(tracer, trace.ProxyTracer) and not _provider_set():
        # No request notes and no tracing configured (``TELEMETRY_ENABLED=false``, a
        # script): the proxy would hand back a span that records nothing, after ~20 calls.
        return trace.INVALID_SPAN
    parent = trace.get_current_span()
    if not parent.is_recording() and parent.get_span_context().is_valid:
        return trace.INVALID_SPAN
    return tracer.start_span(name, kind=kind, attributes=attributes, start_time=start_time)
