"""The access line written directly (no `LogRecord`) is the line `logging` would write."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from building_blocks.fastapi.telemetry import (
    TelemetryMiddleware,
    _access_line,
    _access_lines,
    _access_record,
    _log_access,
    access_log,
)
from building_blocks.telemetry import Metrics, configure_logging
from building_blocks.telemetry.logging import (
    BufferedStreamHandler,
    JsonFormatter,
    direct_json_handler,
)
from tests.support.telemetry import RecordCapture, only_our_json_handler


def entry(cache: object = "miss") -> tuple[Any, ...]:
    """An access line's values, as the middleware hands them to `_log_access`."""
    path = "/api/v1/users/6f1c2a9e-0000-4000-8000-000000000001"
    route = "/api/v1/users/{user_id}"
    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    return (time.time(), "GET", route, path, 200, 0.0012345, "replica-0", cache, trace_id, span_id)


@contextmanager
def only_our_handler(
    flush_interval: float = 0.0,
) -> Iterator[tuple[BufferedStreamHandler, io.StringIO]]:
    """Our JSON handler alone on a string (flush_interval 0: each line at once)."""
    out = io.StringIO()
    with only_our_json_handler(out, flush_interval) as handler:
        yield handler, out


def test_direct_and_record_lines_are_the_same() -> None:
    with only_our_handler() as (_, stream):
        _direct_then_through_a_record(stream)


def _direct_then_through_a_record(stream: io.StringIO) -> None:
    assert direct_json_handler(access_log, logging.INFO) is not None
    _log_access(logging.INFO, entry())  # written directly
    capture = RecordCapture()
    access_log.addHandler(capture)  # a second destination: now through a record
    try:
        assert direct_json_handler(access_log, logging.INFO) is None
        _log_access(logging.INFO, entry())
    finally:
        access_log.removeHandler(capture)
    direct, through_record = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert direct.pop("time")[:4] == through_record.pop("time")[:4]
    assert direct == through_record
    assert direct["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert direct["span_id"] == "b7ad6b7169203331"
    assert direct["pool"] == "replica-0"
    assert direct["message"] == "GET /api/v1/users/{user_id} 200 1.2ms"
    assert [r.getMessage() for r in capture.records] == [direct["message"]]


def test_anything_that_could_see_or_drop_the_record_takes_the_logging_path() -> None:
    with only_our_handler() as (_, stream):
        _check_fallbacks(stream)


def _check_fallbacks(stream: io.StringIO) -> None:
    root = logging.getLogger()
    (ours,) = root.handlers
    assert direct_json_handler(access_log, logging.INFO) is not None
    assert direct_json_handler(access_log, logging.DEBUG) is not None  # handler level 0

    access_log.addFilter(lambda record: True)
    assert direct_json_handler(access_log, logging.INFO) is None
    access_log.filters.clear()

    ours.addFilter(lambda record: True)
    assert direct_json_handler(access_log, logging.INFO) is None
    ours.filters.pop()

    ours.setLevel(logging.WARNING)
    assert direct_json_handler(access_log, logging.INFO) is None
    ours.setLevel(logging.NOTSET)

    access_log.propagate = False  # the record would reach no handler at all
    try:
        assert direct_json_handler(access_log, logging.INFO) is None
    finally:
        access_log.propagate = True

    configure_logging("INFO", "text", stream=stream)
    assert direct_json_handler(access_log, logging.INFO) is None


def test_a_line_that_cannot_be_made_is_reported_and_left_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Unserializable:
        def __str__(self) -> str:
            raise RuntimeError("no text either")

    with only_our_handler() as (_, stream):
        _log_access(logging.INFO, entry(cache=Unserializable()))  # must not raise
    assert stream.getvalue() == ""
    # logging's own report of a handler error (Handler.handleError), on stderr.
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "no text either" in err
    assert "/api/v1/users/{user_id}" in err  # the values of the line left out


ODD_TEXT = st.sampled_from(
    [
        "",
        '/a"quote',
        "/back\\slash",
        "/tab\there",
        "/ctl\x01\x1f\x7f",
        "/ünïcødé/日本/🙂",
        "/u\u2028line",
        "/reset?password=hunter2",
        "/x/password: hunter2",
        "/X/PASSWORD=hunter2",
        "/see/https://user:pw@host/x",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    created=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, 25]),
    method=st.one_of(st.sampled_from(["GET", "POST", 'M"X']), st.text(max_size=8)),
    route=st.one_of(st.sampled_from(["", "/api/v1/users/{user_id}"]), ODD_TEXT),
    path=st.one_of(ODD_TEXT, st.text(max_size=40)),
    status=st.integers(min_value=100, max_value=599),
    elapsed=st.one_of(
        st.floats(min_value=0, max_value=1e6, allow_nan=False),
        st.sampled_from([0.0, 4.9999e-7, 5e-7, 0.0012345, 0.0015, 1.0, 86400.0]),
    ),
    pool=st.sampled_from([None, "primary", "replica-0", "primary,replica-0"]),
    cache=st.one_of(st.none(), st.sampled_from(["hit", "miss", "error", "bypass"]), ODD_TEXT),
    trace_id=st.one_of(st.just(0), st.integers(min_value=1, max_value=2**128 - 1)),
    span_id=st.integers(min_value=1, max_value=2**64 - 1),
)
def test_the_template_line_is_the_record_paths_line_to_the_byte(  # noqa: PLR0917
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
) -> None:
    formatter = JsonFormatter()
    values = (created, level, method, route, path, status, elapsed, pool, cache, trace_id, span_id)
    through_record = formatter.format(_access_record(*values))
    assert _access_line(formatter, *values) == through_record
    line = orjson.loads(through_record)
    assert (
        line["duration_ms"] == round(elapsed * 1000, 3)
        or abs(line["duration_ms"] - elapsed * 1000) <= 0.0005 + 1e-9 * elapsed * 1000
    )
    assert ("trace_id" in line) is (trace_id != 0)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False),
        # Near a millisecond's or a second's end, where rounding decides.
        st.integers(0, 4_102_444_799).flatmap(
            lambda s: st.integers(0, 999).map(lambda ms: s + ms / 1000 + 0.0004995)
        ),
        st.integers(0, 4_102_444_799).map(lambda s: s + 0.9999995),
    )
)
def test_the_line_time_is_datetimes_isoformat(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert JsonFormatter().time_text(created) == expected


class _Ok:
    """An ASGI app that answers 200 to every request."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def _get(app: Any, path: str) -> None:
    scope = {"type": "http", "method": "GET", "path": path, "scheme": "http", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    await app(scope, receive, send)


async def test_the_middleware_hands_lines_to_the_journal_until_the_setup_changes() -> None:
    middleware = TelemetryMiddleware(
        _Ok(), metrics=Metrics(CollectorRegistry()), tracer_provider=trace.NoOpTracerProvider()
    )
    with only_our_handler(flush_interval=60) as (handler, stream):
        for n in range(3):
            await _get(middleware, f"/users/{n}")
        assert stream.getvalue() == ""  # held, as values
        handler.flush()
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["path"], line["status"], line["level"]) for line in lines] == [
            (f"/users/{n}", 200, "INFO") for n in range(3)
        ]
        assert lines[0]["message"].startswith("GET /users/0 200 ")  # no route: the path

        capture = RecordCapture()
        access_log.addHandler(capture)  # lines must reach it from now on
        try:
            await _get(middleware, "/users/3")  # still appended: the journal is open
            await _get(middleware, "/users/4")
            handler.flush()  # finds the change: closes the journal, the lines as records
            await _get(middleware, "/users/5")  # through `logging` at once
        finally:
            access_log.removeHandler(capture)
        assert [r.__dict__["path"] for r in capture.records] == [f"/users/{n}" for n in (3, 4, 5)]

        await _get(middleware, "/users/6")  # reopens the journal
        handler.flush()
        paths = [orjson.loads(line)["path"] for line in stream.getvalue().splitlines()]
        assert paths == [f"/users/{n}" for n in range(7)]  # every line once, in order


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    # Lines of one batch: many in the same second, some a millisecond's rounding apart
    # from the next second, some seconds later.
    steps=st.lists(
        st.one_of(
            st.floats(min_value=0, max_value=0.002),
            st.sampled_from([0.0, 0.0004995, 0.0005, 0.9995, 0.99951, 1.0, 3.7]),
        ),
        min_size=1,
        max_size=40,
    ),
    elapsed=st.floats(min_value=0, max_value=120, allow_nan=False),
)
def test_a_batch_of_lines_is_the_record_paths_lines(
    start: float, steps: list[float], elapsed: float
) -> None:
    formatter = JsonFormatter()
    created = start
    entries = []
    for step in steps:
        created += step
        entries.append(
            (
                created,
                "GET",
                "/api/v1/users/{user_id}",
                "/u/1",
                200,
                elapsed,
                "primary",
                "hit",
                7,
                9,
            )
        )
    expected = [
        formatter.format(_access_record(entry[0], logging.INFO, *entry[1:])) for entry in entries
    ]
    assert _access_lines(JsonFormatter(), logging.INFO, entries) == expected
