"""HTTP telemetry for FastAPI: a lean ASGI middleware and the ``GET /metrics`` route.

Per request the middleware opens one server span (continuing a W3C ``traceparent``),
records ``http_server_request_duration_seconds`` (with the trace id as exemplar) and
``http_server_active_requests`` labelled with the route *template*
(``/api/v1/users/{user_id}``, never the raw path), and writes one access-log line with
the pool and cache result the request used (`building_blocks.telemetry.context`).

Hand-written instead of opentelemetry-instrumentation-fastapi: that one finds the route
template by matching the request against every route a second time, and adds two spans
per request (``http receive``/``http send``); here the router has already stored the
matched route in ``scope["route"]`` by the time the inner app returns, so it costs one
dict lookup (see docs/observability.md for the measured overhead).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from building_blocks.telemetry.context import (
    close_request,
    exemplar_of,
    open_request,
)
from building_blocks.telemetry.exposition import MetricsExposition
from building_blocks.telemetry.instruments import HistogramChild, InFlightChild
from building_blocks.telemetry.logging import (
    ACCESS_LOGGER,
    CLOSED_JOURNAL,
    Journal,
    JsonFormatter,
    direct_json_handler,
    redact,
)
from building_blocks.telemetry.metrics import Metrics
from building_blocks.telemetry.setup import ROOT, UnsampledRoots

__all__ = ["TelemetryMiddleware", "install_telemetry", "metrics_router"]

#: What `TelemetryMiddleware._start_span` gives when no span records: the API's own.
_NO_SPAN: tuple[trace.Span, int, int, bool, None] = (trace.INVALID_SPAN, 0, 0, False, None)

#: The matched route object, its template, the duration child, the access line's level.
_Outcome = tuple[object, str, HistogramChild, int]

access_log = logging.getLogger(ACCESS_LOGGER)

#: Routes polled by machines: their access lines are logged at DEBUG, not INFO.
QUIET_ROUTES = frozenset({"/metrics", "/health/live", "/health/ready"})

Headers = list[tuple[bytes, bytes]]


class _HeaderGetter(Getter[Headers]):
    """Reads propagation headers straight from the ASGI header list (no dict built)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()


def _route_of(route: object) -> str:
    """The template of the route a request ``scope["route"]`` matched."""
    if route is None:
        return ""  # no route matched (404): never the raw path, it is unbounded
    return str(getattr(route, "path_format", None) or getattr(route, "path", ""))


class TelemetryMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: that would add a task per request)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.app = app
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        # The provider is set in the lifespan, after this runs: looked up per request.
        self._roots_of: trace.TracerProvider | None = None
        self._roots: UnsampledRoots | None = None
        self._roots_settled = False
        # A no-op provider (tracing off: `install_telemetry(tracing=False)`) records no
        # span, so the middleware asks it for none, and its notes drop the children.
        self._records_nothing = isinstance(tracer_provider, trace.NoOpTracerProvider)
        self._duration = metrics.http_duration
        self._active = metrics.http_active
        # Label lookups hash and lock: the children are kept.
        self._active_children: dict[str, InFlightChild] = {}
        # What a request's method, matched route object and status settle: the route
        # template, the duration histogram's child and the access line's level. Keyed
        # by the route object's id (the object is kept, so the id stays its own): one
        # dict lookup per request instead of a template read and a label lookup.
        self._outcomes: dict[tuple[str, int, int], _Outcome] = {}
        # Where the INFO access lines go while the service's JSON handler is their only
        # destination (`_log_access` opens it; the handler closes it when that changes).
        self._journal: Journal = CLOSED_JOURNAL
        # The request headers the configured propagators read (traceparent, baggage...).
        self._propagation_headers = frozenset(
            f.lower().encode("latin-1") for f in propagate.get_global_textmap().fields
        )

    def _start_span(
        self, scope: Scope, method: str, path: str
    ) -> tuple[trace.Span, int, int, bool, otel_context.Context | None]:
        """The server span, its trace and span ids (``0``: invalid, tracing is off),
        whether it records, and the context it continues (``None``: a new trace)."""
        if self._records_nothing:  # tracing is off: the no-op provider's span, at once
            return _NO_SPAN
        headers: Headers = scope["headers"]
        # Most requests carry no trace headers: skip the propagators' parsing then.
        for name, _ in headers:
            if name in self._propagation_headers:
                parent = propagate.extract(headers, getter=_GETTER)
                span = self._tracer.start_span(
                    method, parent, SpanKind.SERVER, self._attributes(scope, method, path)
                )
                ids = span.get_span_context()
                return span, ids.trace_id, ids.span_id, span.is_recording(), parent
        # A new trace, never a child of whatever span is current.
        roots = self._roots if self._roots_settled else self._unsampled_roots()
        if roots is not None:
            dropped = roots.start()
            if dropped is not None:
                span, trace_id, span_id = dropped
                return span, trace_id, span_id, False, None
        span = self._tracer.start_span(
            method, ROOT, SpanKind.SERVER, self._attributes(scope, method, path)
        )
        if roots is not None:
            roots.started_by_sdk()
        ids = span.get_span_context()
        return span, ids.trace_id, ids.span_id, span.is_recording(), None

    def _outcome(self, method: str, matched: object, status: int) -> _Outcome:
        route = _route_of(matched)
        made = (
            matched,
            route,
            self._duration.labels(method, route, str(status)),
            logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
        )
        if len(self._outcomes) < _MEMO_LIMIT:  # a client can send methods of its own
            self._outcomes[method, id(matched), status] = made
        return made

    def _unsampled_roots(self) -> UnsampledRoots | None:
        """`UnsampledRoots` of the provider; looked up per request until it is the SDK's
        (the lifespan installs it after this middleware is made), then settled: the
        global provider can be set only once."""
        provider = self._tracer_provider or trace.get_tracer_provider()
        if provider is not self._roots_of:
            self._roots_of, self._roots = provider, UnsampledRoots.for_provider(provider)
        self._roots_settled = not isinstance(provider, trace.ProxyTracerProvider)
        self._records_nothing = isinstance(provider, trace.NoOpTracerProvider)
        return self._roots

    @staticmethod
    def _attributes(scope: Scope, method: str, path: str) -> dict[str, str]:
        return {
            "http.request.method": method,
            "url.path": path,
            "url.scheme": scope.get("scheme", "http"),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        span, trace_id, span_id, recording, parent = self._start_span(scope, method, path)
        notes, token = open_request(
            span,
            parent,
            settled=trace_id != 0 or self._records_nothing,
            unrecorded=not recording,
            # Only a recorded span is sampled (the SDK samples what it records).
            exemplar=exemplar_of(span.get_span_context()) if recording else None,
        )
        active = self._active_children.get(method)
        if active is None:
            active = self._active_children[method] = self._active.labels(method)
        status = 500

        def send_status(message: Message) -> Awaitable[None]:
            # Not a coroutine function: hands back ``send``'s awaitable, which the app
            # awaits, so a message costs no extra coroutine.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        # In flight until the `finally` below; ``send_status``, made for this request
        # alone, is its token (`LocalInFlight`).
        active[send_status] = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            status = 500  # the error middleware outside answers 500
            span.record_exception(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            matched = scope.get("route")
            outcome = self._outcomes.get((method, id(matched), status))
            if outcome is None or outcome[0] is not matched:
                outcome = self._outcome(method, matched, status)
            _, route, child, level = outcome
            exemplar = notes.exemplar
            if exemplar is None:
                child.add(elapsed)
            else:
                child.observe(elapsed, exemplar)
            del active[send_status]
            if recording:
                _finish_span(span, method, route, status, notes.cache)
            entry = (  # the access line's values (`_access_lines` makes the line)
                time.time(),
                method,
                route,
                path,
                status,
                elapsed,
                notes.pool,
                notes.cache,
                trace_id,  # 0 is the invalid id (tracing off): no ids in the line
                span_id,
            )
            journal = self._journal
            if journal.open and level == journal.level:  # handed over without a call
                journal.append(entry)
            elif access_log.isEnabledFor(level):
                opened = _log_access(level, entry)
                if opened.open:  # a quiet route's DEBUG line keeps the INFO journal
                    self._journal = opened
            close_request(notes, token)
            if recording:  # a span that records nothing has nothing to end
                span.end()


class _AccessRecords:
    """Builds the access line's `LogRecord` from a per-level template.

    ``logging.LogRecord(...)`` recomputes per record what is the same for every access
    line (file name and module of the caller, level name, thread and process fields
    when enabled); ``Logger.log`` would also walk the stack for the caller and check
    every ``extra`` key. Here a template made by ``LogRecord`` itself is copied and the
    fields that change are set, so handlers, filters and formatters see a complete,
    ordinary record.
    """

    def __init__(self) -> None:
        self._templates: dict[int, tuple[dict[str, Any], float]] = {}

    def record(self, level: int, message: str, created: float) -> logging.LogRecord:
        template = self._templates.get(level)
        if template is None:
            probe = logging.LogRecord(ACCESS_LOGGER, level, __file__, 0, "", None, None)
            process_start = probe.created - probe.relativeCreated / 1000
            template = self._templates[level] = (dict(probe.__dict__), process_start)
        fields, process_start = template
        record: logging.LogRecord = _new_record(logging.LogRecord)
        record.__dict__ = {
            **fields,
            "msg": message,
            "created": created,
            "msecs": int((created - int(created)) * 1000) + 0.0,  # as LogRecord computes it
            "relativeCreated": (created - process_start) * 1000,
        }
        return record


_new_record = object.__new__
_access_records = _AccessRecords()


def _log_access(level: int, entry: tuple[Any, ...]) -> Journal:
    """One access line, of the middleware's ``entry`` (``created, method, route, path,
    status, elapsed, pool, cache, trace_id, span_id``; ids ``0``: none); answers the
    journal the next INFO lines go to (`CLOSED_JOURNAL`: none, ask again).

    With the service's own JSON handler as the only destination (`direct_json_handler`),
    the line is handed over with its values and made in a batch when the handler writes:
    an INFO line through the handler's `Journal` (opened here; the middleware then
    appends to it directly until the handler closes it), a DEBUG one (the quiet routes)
    or any line when the handler writes each line at once through
    `BufferedStreamHandler.emit_later`. Otherwise a record goes through `logging` with
    the fields as ``extra=`` would put them. The JSON line is the same every way."""
    direct = direct_json_handler(access_log, level)
    if direct is None:
        access_log.handle(_access_entry_record(level, entry))
        return CLOSED_JOURNAL
    handler, formatter = direct
    if level == logging.INFO:
        journal = handler.journal(access_log, level, _access_lines, _access_entry_record)
        if journal is not None:
            journal.append(entry)
            return journal
    handler.emit_later(level, _access_line, formatter, entry[0], level, *entry[1:])
    return CLOSED_JOURNAL


def _access_entry_record(level: int, entry: tuple[Any, ...]) -> logging.LogRecord:
    """The record of a journal entry (`_log_access`'s ``entry``)."""
    created, *fields = entry
    return _access_record(created, level, *fields)


def _access_record(  # noqa: PLR0917 - the fields of one line, in its order
    created: float,
    level: int,
    method: str,
    route: str,
    path: str,
    status: int,
    elapsed: float,
    pool: str | None,
    cache: str | None,
    trace_id: int,
    span_id: int,
) -> logging.LogRecord:
    """The access line's record, with its fields as ``extra=`` would put them."""
    message, extra = _access_fields(method, route, path, status, elapsed, pool, cache)
    record = _access_records.record(level, message, created)
    fields = record.__dict__
    fields.update(extra)
    # Known here: spares the log filter looking the span up again.
    fields["trace_id"], fields["span_id"] = _hex_ids(trace_id, span_id)
    return record


def _access_fields(  # noqa: PLR0917 - the fields of one line, in its order
    method: str,
    route: str,
    path: str,
    status: int,
    elapsed: float,
    pool: str | None,
    cache: str | None,
) -> tuple[str, dict[str, Any]]:
    """The message and ``extra=`` fields of the record path; `_access_line` makes the
    same values inline (tests/unit/test_direct_access_line.py compares the lines)."""
    message = f"{method} {route or path} {status} {_tenths(elapsed)}ms"
    extra = {
        "method": method,
        "route": route,
        "path": path,  # never the query string (emails, cursors)
        "status": status,
        "duration_ms": int(elapsed * 1_000_000 + 0.5) / 1000,  # to the microsecond
        "pool": pool,
        "cache": cache,
    }
    return message, extra


def _tenths(elapsed: float) -> str:
    """The message's milliseconds to a tenth, from the microseconds `duration_ms` holds
    (as `_access_lines` makes them inline)."""
    tenths = (int(elapsed * 1_000_000 + 0.5) + 50) // 100
    return f"{tenths // 10}.{tenths % 10}"


#: ``duration_ms``'s digits after the point, by the microseconds past its millisecond,
#: as orjson writes ``micros / 1000`` (no trailing zeros, ``.0`` for none): made from an
#: integer with one lookup, where orjson formats a float (tests/unit/test_direct_access_line.py
#: compares the two).
_FRACTIONS = tuple(("." + f"{r:03d}".rstrip("0")) if r else ".0" for r in range(1000))


def _hex_ids(trace_id: int, span_id: int) -> tuple[str | None, str | None]:
    if not trace_id:
        return None, None
    return format(trace_id, "032x"), format(span_id, "016x")


#: Memos of the access line's JSON pieces, each keyed by values from small sets
#: (methods, route templates, pools, cache results, levels). A client can send a method
#: of its own, so each keeps at most `_MEMO_LIMIT` entries; past that, pieces are made
#: per line.
_MEMO_LIMIT = 4096
_JSON_OF: dict[str | None, str] = {None: "null"}
_LEVEL_FIELDS: dict[int, str] = {}
_HEADS: dict[tuple[str, str], tuple[str | None, str]] = {}


def _json_of(text: str | None) -> str:
    made = orjson.dumps(text).decode()
    if len(_JSON_OF) < _MEMO_LIMIT:
        _JSON_OF[text] = made
    return made


def _level_field(level: int) -> str:
    made = f'"level":{_json_of(logging.getLevelName(level))},"logger":{_json_of(ACCESS_LOGGER)},'
    _LEVEL_FIELDS[level] = made
    return made


def _head(method: str, route: str) -> tuple[str | None, str]:
    """The message's start as JSON (``"GET /api/v1/users/{user_id} ``, no closing quote),
    or ``None`` when the message must be made whole: it holds the path (no route), or
    text that `redact` looks at (the rest of the message is digits, so it cannot start
    such text); and the ``"method"`` and ``"route"`` fields."""
    start = f"{method} {route} "
    lowered = start.lower()
    plain = route and "://" not in lowered and "ass" not in lowered
    made = (
        orjson.dumps(start).decode()[:-1] if plain else None,
        f',"method":{_json_of(method)},"route":{_json_of(route)}',
    )
    if len(_HEADS) < _MEMO_LIMIT:
        _HEADS[method, route] = made
    return made


def _access_line(  # noqa: PLR0917 - queued positionally by _log_access
    formatter: JsonFormatter,
    created: float,
    level: int,
    method: str,
    route: str,
    path: str,
    status: int,
    elapsed: float,
    pool: str | None,
    cache: str | None,
    trace_id: int,
    span_id: int,
) -> str:
    """One line as `_access_lines` makes it (raises what making it raised)."""
    entry = (created, method, route, path, status, elapsed, pool, cache, trace_id, span_id)
    return _access_lines(formatter, level, [entry])[0]


def _access_lines(
    formatter: JsonFormatter,
    level: int,
    entries: list[tuple[Any, ...]],
    report: Callable[[tuple[Any, ...]], None] | None = None,
) -> list[str]:
    """The texts `JsonFormatter.format` makes of `_access_record`'s records for these
    entries (`_log_access`), put together from JSON pieces in one loop
    (tests/unit/test_direct_access_line.py compares them on generated values): about half
    the instructions of building a dict for orjson (docs/performance.md). What a client
    controls (the path, a message that holds it) goes through orjson on every line; the
    pieces made of the method, route, pool, cache result and level are made once (the
    memos above). A value the pieces cannot take (not a string: a caller's mistake) makes
    the line the record path's way, which writes its ``str()``; an entry that cannot be
    made at all is handed to ``report`` (inside the ``except`` that caught it) and left
    out, or, without ``report``, raises."""
    known = _JSON_OF.get
    heads = _HEADS.get
    dumps = orjson.dumps
    time_text = formatter.time_text
    millis_text = formatter.MILLIS
    fractions = _FRACTIONS
    level_field = _LEVEL_FIELDS.get(level) or _level_field(level)
    made: list[str] = []
    line = made.append
    last_second = -1  # the time's date and seconds, made once per second of lines
    second_text = ""
    for entry in entries:
        created, method, route, path, status, elapsed, pool, cache, trace_id, span_id = entry
        try:
            second = int(created)
            millis = int((created - second) * 1_000_000 + 0.5) // 1000  # as time_text
            if second != last_second or millis == 1000:
                moment = time_text(created)  # rounds into the next second itself
                second_text, millis_tail = moment[:-10], moment[-10:]
                last_second = second if millis != 1000 else -1
            else:
                millis_tail = millis_text[millis]
            micros = int(elapsed * 1_000_000 + 0.5)
            tenths = (micros + 50) // 100
            start, method_route = heads((method, route)) or _head(method, route)
            if start is None:
                message = f"{method} {route or path} {status} {tenths // 10}.{tenths % 10}ms"
                message = dumps(redact(message)).decode()
            else:
                message = f'{start}{status} {tenths // 10}.{tenths % 10}ms"'
            ids = (
                f',"trace_id":"{trace_id.to_bytes(16, "big").hex()}"'
                f',"span_id":"{span_id.to_bytes(8, "big").hex()}"'
                if trace_id
                else ""
            )
            line(
                f'{{"time":"{second_text}{millis_tail}",{level_field}'
                f'"message":{message}{ids}{method_route},"path":{dumps(path).decode()},'
                f'"status":{status},'
                f'"duration_ms":{micros // 1000}{fractions[micros % 1000]},'
                f'"pool":{known(pool) or _json_of(pool)},'
                f'"cache":{known(cache) or _json_of(cache)}}}'
            )
        except Exception:  # any value the pieces cannot take: made the other way
            try:
                line(_access_line_by_fields(formatter, level, entry))
            except Exception:
                if report is None:
                    raise
                report(entry)
    return made


def _access_line_by_fields(formatter: JsonFormatter, level: int, entry: tuple[Any, ...]) -> str:
    created, method, route, path, status, elapsed, pool, cache, trace_id, span_id = entry
    message, extra = _access_fields(method, route, path, status, elapsed, pool, cache)
    hex_trace, hex_span = _hex_ids(trace_id, span_id)
    return formatter.format_fields(
        created,
        logging.getLevelName(level),
        ACCESS_LOGGER,
        message,
        hex_trace,
        hex_span,
        extra,
    )


def _finish_span(span: trace.Span, method: str, route: str, status: int, cache: str | None) -> None:
    attributes: dict[str, str | int] = {"http.response.status_code": status}
    if cache is not None:
        # A hit makes no span of its own (a miss or an error does): this says it on the
        # server span, at the cost of one attribute.
        attributes["cache.result"] = cache
    if route:
        span.update_name(f"{method} {route}")
        attributes["http.route"] = route
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
        attributes["error.type"] = str(status)
    span.set_attributes(attributes)  # one call: the SDK takes its lock per call


def metrics_router(exposition: MetricsExposition) -> APIRouter:
    """``GET /metrics``: Prometheus text, or OpenMetrics with exemplars on request."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        # Collecting reads files in multiprocess mode: keep it off the event loop.
        body, content_type = await asyncio.to_thread(
            exposition.render, request.headers.get("accept")
        )
        return Response(body, media_type=content_type)

    return router


def install_telemetry(
    app: FastAPI,
    *,
    metrics: Metrics,
    exposition: MetricsExposition,
    tracer_provider: trace.TracerProvider | None = None,
    tracing: bool = True,
) -> None:
    """Add the middleware and the ``/metrics`` route to ``app``. ``tracing=False``
    (``OTEL_SDK_DISABLED=true``): no spans, at less cost than any sampling ratio (the
    middleware makes none and drops every span the code below would start in a request);
    metrics and access lines stay."""
    if not tracing:
        tracer_provider = trace.NoOpTracerProvider()
    app.add_middleware(TelemetryMiddleware, metrics=metrics, tracer_provider=tracer_provider)
    app.include_router(metrics_router(exposition))
