"""Per-statement telemetry for one SQLAlchemy engine: a client span and the
``db_client_operation_duration_seconds`` histogram, from the same two cursor events.

Hand-written rather than opentelemetry-instrumentation-sqlalchemy because (1) the
histogram needs these very events anyway, and one listener pair doing both costs half;
(2) that instrumentor also patches ``create_engine`` globally, so instrumenting an async
engine by hand *and* globally yields two spans per statement (the known trap with
``instrument(engine=async_engine.sync_engine)``); (3) it does not label spans with the
pool name. Listeners are attached to ``async_engine.sync_engine`` (async engines have no
events of their own) once per engine: `instrument_queries` is idempotent.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from building_blocks.telemetry.context import exemplar_of, note_statement, start_child_span
from building_blocks.telemetry.metrics import Metrics

__all__ = ["QueryInstrumentation", "db_system_name", "parse_statement"]

#: Dialect name → OpenTelemetry ``db.system.name``.
_SYSTEMS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mariadb",
            "sqlite": "sqlite", "mssql": "microsoft.sql_server"}  # fmt: skip

_OPERATION = re.compile(r"^\s*(?:/\*.*?\*/\s*)?(\w+)", re.DOTALL)
_TARGET = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN)\s+((?:[`\"\[]?\w+[`\"\]]?\.)?[`\"\[]?\w+[`\"\]]?)",
    re.IGNORECASE,
)
_STATE = "_bb_query"  # attribute on SQLAlchemy's ExecutionContext: [span, start, ..., error]


def db_system_name(dialect_name: str) -> str:
    return _SYSTEMS.get(dialect_name, dialect_name)


@lru_cache(maxsize=1024)
def parse_statement(statement: str) -> tuple[str, str]:
    """``(operation, collection)`` of a SQL string: ``("SELECT", "users")``.

    Cached per statement text: SQLAlchemy's compiled cache hands back the same strings, so
    each distinct statement is parsed once. The collection is the first table named (``""``
    for ``SELECT 1``); enough to tell queries apart on a dashboard, not a SQL parser.
    """
    op = _OPERATION.match(statement)
    operation = op.group(1).upper() if op else ""
    target = _TARGET.search(statement)
    collection = ""
    if target:
        collection = target.group(1).split(".")[-1].strip('`"[]')
    return operation, collection


@dataclass(slots=True)
class _Engine:
    sync_engine: Engine
    listeners: tuple[tuple[str, Any], ...]


class QueryInstrumentation:
    """Attach/detach the statement listeners of engines, at most once per engine."""

    def __init__(
        self, metrics: Metrics, *, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self._metrics = metrics
        # A ProxyTracer when no provider is given: it follows the global provider, which
        # the lifespan may install after this object was built.
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._engines: dict[int, _Engine] = {}

    def instrument(self, engine: AsyncEngine, *, pool: str) -> bool:
        """Instrument ``engine`` (labelled ``pool``); ``False`` if it already was."""
        sync_engine = engine.sync_engine
        if id(sync_engine) in self._engines:
            return False
        system = db_system_name(sync_engine.dialect.name)
        listeners = self._listeners(system, pool)
        for name, fn in listeners:
            event.listen(sync_engine, name, fn, retval=name == "before_cursor_execute")
        self._engines[id(sync_engine)] = _Engine(sync_engine, listeners)
        return True

    def uninstrument_all(self) -> None:
        engines, self._engines = self._engines, {}
        for entry in engines.values():
            for name, fn in entry.listeners:
                event.remove(entry.sync_engine, name, fn)

    def _listeners(self, system: str, pool: str) -> tuple[tuple[str, Any], ...]:
        tracer = self._tracer
        histogram = self._metrics.db_operation
        children: dict[tuple[str, str], Any] = {}  # label lookups are the costly part

        def before(  # noqa: PLR0917 - the signature of SQLAlchemy's event
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> tuple[str, Any]:
            # Listened with retval=True (statement and parameters handed back unchanged):
            # SQLAlchemy then calls this directly instead of through a wrapper of its own.
            if context is None:  # no execution context to carry the span to "after"
                return statement, params
            operation, collection = parse_statement(statement)
            if note_statement(pool):  # most requests: no span, so no name or attributes
                span: trace.Span = trace.INVALID_SPAN
            else:
                span = start_child_span(
                    tracer,
                    f"{operation} {collection}".strip() or system,
                    kind=SpanKind.CLIENT,
                    attributes={
                        "db.system.name": system,
                        "db.operation.name": operation,
                        "db.collection.name": collection,
                        "db.query.text": statement,  # parameters stay out (hide_parameters)
                        "db.client.connection.pool.name": pool,
                    },
                )
            # Not made current: nothing runs under a statement, and the histogram's
            # exemplar is read from the span itself (a context switch each way saved).
            # The last item is the error `on_error` hands over.
            setattr(context, _STATE, [span, time.perf_counter(), operation, collection, None])
            return statement, params

        def after(  # noqa: PLR0917 - the signature of SQLAlchemy's event
            conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: bool
        ) -> None:
            # Also ends a failed statement (`on_error`), so the success path takes no
            # extra call.
            state = getattr(context, _STATE, None)
            if state is None:
                return
            setattr(context, _STATE, None)
            span, started, operation, collection, error = state
            elapsed = time.perf_counter() - started
            key = (operation, collection)
            child = children.get(key)
            if child is None:
                child = children[key] = histogram.labels(system, operation, collection, pool)
            if span is trace.INVALID_SPAN:  # not started: no exemplar, nothing to end
                child.add(elapsed)
                return
            child.observe(elapsed, exemplar_of(span.get_span_context()))
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                span.set_attribute("error.type", type(error).__name__)
            span.end()

        def on_error(exception_context: Any) -> None:
            context = exception_context.execution_context
            state = None if context is None else getattr(context, _STATE, None)
            if state is not None:
                state[-1] = exception_context.original_exception
                after(None, None, None, None, context, False)

        return (
            ("before_cursor_execute", before),
            ("after_cursor_execute", after),
            ("handle_error", on_error),
        )
