"""Test helpers for telemetry: a process-wide span capture, app clients, scrape parsing,
the service's own log handler set up alone.

The OpenTelemetry global tracer provider can be set once per process, so the test run
installs one SDK provider at start (`install_span_capture`, from ``tests/conftest.py``)
before any app exists; apps built by tests then find it and keep it, and tests read
the spans it recorded through `SpanCapture`. Spans are kept only while a test captures.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from building_blocks.telemetry import configure_logging
from building_blocks.telemetry.logging import BufferedStreamHandler

__all__ = [
    "RecordCapture",
    "SpanCapture",
    "install_span_capture",
    "only_our_json_handler",
    "sample_value",
    "samples",
]


class _Gate(SimpleSpanProcessor):
    """Exports only while a test is capturing (the run's other spans are dropped)."""

    capturing = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.capturing:
            super().on_end(span)


class SpanCapture:
    def __init__(self, exporter: InMemorySpanExporter, gate: _Gate) -> None:
        self._exporter = exporter
        self._gate = gate

    def start(self) -> None:
        self._exporter.clear()
        self._gate.capturing = True

    def stop(self) -> None:
        self._gate.capturing = False
        self._exporter.clear()

    def clear(self) -> None:
        """Forget what was captured so far (e.g. the app's start-up probes)."""
        self._exporter.clear()

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self._exporter.get_finished_spans())


_capture: SpanCapture | None = None


def install_span_capture() -> SpanCapture:
    """Install (once) the run's global tracer provider and return its capture."""
    global _capture  # noqa: PLW0603 - one provider per process is OpenTelemetry's rule
    if _capture is None:
        exporter = InMemorySpanExporter()
        gate = _Gate(exporter)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(gate)
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            raise RuntimeError("a tracer provider was installed before the test run's")
        _capture = SpanCapture(exporter, gate)
    return _capture


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[Sample]:
    """The samples named exactly ``name`` in a Prometheus text exposition."""
    found: list[Sample] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match and match.group(1) == name:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            found.append(Sample(name, labels, float(match.group(3))))
    return found


def sample_value(text: str, name: str, **labels: str) -> float:
    """The value of the one sample ``name{labels...}`` (0 when absent: never recorded)."""
    matching = [
        s for s in samples(text, name) if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    if len(matching) > 1:
        raise AssertionError(f"{name}{labels} matches {len(matching)} samples: {matching}")
    return matching[0].value if matching else 0.0


def span_names(spans: Sequence[ReadableSpan]) -> list[str]:
    return [s.name for s in spans]


class RecordCapture(logging.Handler):
    """Keeps every record handed to it: a second destination, as a test's log capture is."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def only_our_json_handler(
    stream: TextIO, flush_interval: float = 0.0
) -> Iterator[BufferedStreamHandler]:
    """The service's JSON handler (`configure_logging`) on ``stream`` as the root logger's
    only handler, as in production: pytest adds capture handlers to the root logger for
    each test phase, and any second handler turns the access log's direct paths off.
    The text format and pytest's handlers are back afterwards."""
    root = logging.getLogger()
    others = root.handlers[:]
    root.handlers.clear()
    handler = configure_logging("INFO", "json", stream=stream, flush_interval=flush_interval)
    assert isinstance(handler, BufferedStreamHandler)
    try:
        yield handler
    finally:
        configure_logging("INFO", "text")
        root.handlers[:] = others
