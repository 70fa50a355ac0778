"""Structured logs: one JSON object per line (``fmt="json"``) or readable text, every
record carrying the current trace and span ids, secrets scrubbed.

Hand-written on the standard library and orjson (already a dependency) rather than
python-json-logger or structlog: it is ~100 lines, keeps every library's stdlib loggers
(uvicorn, SQLAlchemy, alembic) in the same format, and adds no dependency.

Passwords: the code never logs a connection URL (it logs `describe_url`), but driver
messages and tracebacks are not ours, so the formatter also masks the password of any
``scheme://user:password@`` it finds, and any ``password=...`` pair.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

from building_blocks.telemetry.context import trace_ids

__all__ = [
    "ACCESS_LOGGER",
    "BufferedStreamHandler",
    "Journal",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "direct_json_handler",
    "redact",
]

ACCESS_LOGGER = "building_blocks.access"

#: A line made when it is written: ``render(*args)`` (`BufferedStreamHandler.emit_later`);
#: ``None`` from ``render`` writes nothing (a journal's batch whose lines were all left out).
_Later = tuple[Callable[..., str | None], tuple[Any, ...]]

#: `Journal.render`: ``(formatter, level, entries, report) -> lines``; ``report(entry)``
#: for an entry whose line cannot be made (reported and left out, as `emit_later` does).
JournalRender = Callable[
    ["JsonFormatter", int, list[tuple[Any, ...]], Callable[[tuple[Any, ...]], None]], list[str]
]
#: `Journal.to_record`: ``(level, entry) -> LogRecord``, the entry's line as a record.
JournalRecord = Callable[[int, tuple[Any, ...]], logging.LogRecord]

_URL_PASSWORD = re.compile(r"(\b[a-z][\w+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE)
_PAIR_PASSWORD = re.compile(r"(\bpassw(?:or)?d\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s,;)]+)", re.I)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "trace_id",
    "span_id",
    "taskName",
}


def redact(text: str) -> str:
    """``text`` with URL passwords and ``password=`` values replaced by ``***``."""
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1***@", text)
    if "ass" in text.lower():  # cheap pre-check: most lines have no "password" at all
        text = _PAIR_PASSWORD.sub(r"\1***", text)
    return text


class _TraceFilter(logging.Filter):
    """Puts ``trace_id``/``span_id`` of the current span on each record (runs at emit,
    in the thread and context that logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            ids = trace_ids()
            record.trace_id, record.span_id = ids if ids else (None, None)
        return True


#: ``.000+00:00`` ... ``.999+00:00``: the end of a line's time, by millisecond.
_MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, trace ids, extras.

    Written for the access log's rate (a line per request): the time's date and seconds
    are formatted once per second."""

    #: The end of a `time_text` within its second, by millisecond (``.042+00:00``).
    MILLIS = _MILLIS

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def time_text(self, created: float) -> str:
        """The line's ``time``: ``datetime.fromtimestamp(created, UTC).isoformat(
        timespec="milliseconds")``, the date and seconds made once per second."""
        second = int(created)
        # datetime rounds the microseconds half to even; half up gives the same
        # millisecond (they differ only at an even x.5, never at a ...999.5), without
        # the call to round().
        millis = int((created - second) * 1_000_000 + 0.5) // 1000
        if millis == 1000:
            second, millis = second + 1, 0
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return self._second_text + _MILLIS[millis]

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        # In the order they were given (a set difference would shuffle them per process).
        extra = {k: v for k, v in fields.items() if k not in _STANDARD and k[0] != "_"}
        if record.exc_info:
            extra["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            extra["exception"] = redact(record.exc_text)
        return self.format_fields(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            fields.get("trace_id"),
            fields.get("span_id"),
            extra,
        )

    def format_fields(  # noqa: PLR0917 - the fields of one line, in its order
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        trace_id: str | None,
        span_id: str | None,
        extra: dict[str, Any],
    ) -> str:
        """The line of a record with these fields (`direct_json_handler`'s callers use it
        without building the record)."""
        entry: dict[str, Any] = {
            "time": self.time_text(created),
            "level": level,
            "logger": logger,
            "message": redact(message),
        }
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = span_id
        entry.update(extra)
        return orjson.dumps(entry, default=_fallback).decode()


class TextFormatter(logging.Formatter):
    """``time level logger message [trace=... span=...]``, secrets scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        trace_id = getattr(record, "trace_id", None)
        span_id = getattr(record, "span_id", None)
        return f"{text} trace_id={trace_id} span_id={span_id}" if trace_id else text


def _fallback(value: object) -> str:
    # Extras can be anything (a UUID, an exception): never fail a log line over it.
    return redact(str(value))


class Journal:
    """The lines of one logger at one level, handed to a `BufferedStreamHandler` as their
    values by a bare ``journal.append(entry)``: no call into `logging`, no lock, no check
    per line (`BufferedStreamHandler.journal`).

    For a line per request (the access log): the caller appends while ``journal.open``,
    and otherwise logs as usual (`direct_json_handler` then says whether to reopen it).
    The handler drains the entries before anything else it writes, so the lines keep
    their place among its other records, makes them in batches with ``render`` and the
    handler's formatter, and checks per batch, not per line, that a record of ``logger``
    at ``level`` would still reach that handler alone: when it would not (a handler or a
    filter was added, the level raised, the format changed), the journal is closed and
    its entries go through `logging` as records (``to_record``), so every line still goes
    where the set-up at that moment sends it.
    """

    __slots__ = ("_entries", "append", "level", "logger", "open", "render", "to_record")

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        render: JournalRender,
        to_record: JournalRecord,
    ) -> None:
        self.logger = logger
        self.level = level
        self.render = render
        self.to_record = to_record
        self.open = False
        self._entries: list[tuple[Any, ...]] = []
        #: ``list.append`` of the entries: one call, in C, atomic under the GIL.
        self.append: Callable[[tuple[Any, ...]], None] = self._entries.append

    def take(self) -> list[tuple[Any, ...]]:
        """The entries appended so far, removed (entries appended meanwhile stay)."""
        entries = self._entries
        count = len(entries)
        taken = entries[:count]
        del entries[:count]  # appends only ever add at the end
        return taken


#: A journal never opened: what a caller holds before it has one.
CLOSED_JOURNAL = Journal(
    logging.getLogger(__name__),
    logging.CRITICAL + 1,  # no line's level: a caller's ``level == journal.level`` fails too
    lambda *_: [],
    lambda level, entry: logging.makeLogRecord({"levelno": level, "args": entry}),
)


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """A `logging.StreamHandler` that writes lines in batches.

    `logging.StreamHandler` writes and flushes every record: at a line per request that
    is a ``write`` system call per request (stderr is line-buffered besides). Here lines
    below WARNING wait at most ``flush_interval`` seconds (or until ``max_lines`` are
    pending) and go out in one write; a WARNING or worse goes out at once, with what
    was pending before it, so order is kept. A background thread flushes a quiet
    buffer; it sleeps while nothing is pending. ``flush()`` (and `logging.shutdown` at
    exit) writes what is pending. A process killed with SIGKILL loses at most the last
    ``flush_interval`` of INFO lines. The standard library's `MemoryHandler` buffers
    records but still writes them to its target one by one, so it saves no writes.

    A `Journal` (``journal()``) takes lines as their values without a call into the
    handler; while one is open the background thread looks for its lines every
    ``flush_interval``, and ``max_lines`` does not bound them (at most what arrives in
    one interval is held).
    """

    def __init__(
        self, stream: TextIO | None = None, *, flush_interval: float = 0.2, max_lines: int = 512
    ) -> None:
        super().__init__(stream)
        self.flush_interval = flush_interval
        self.max_lines = max_lines
        self._pending: list[_Later] = []
        self._journals: dict[tuple[str, int, JournalRender], Journal] = {}
        self._has_pending = threading.Event()
        self._stopping = False
        self._flusher: threading.Thread | None = None
        _BUFFERED_HANDLERS.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.emit_later(record.levelno, str, self.format(record))  # str(line) is line
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def emit_later(self, level: int, render: Callable[..., str], *args: Any) -> None:
        """Queue the line ``render(*args)`` makes, made when the pending lines are written;
        write the batch now if it is full or ``level`` is WARNING or worse.

        For a line per request (`direct_json_handler`'s callers): made 512 at a time, a
        line costs a request about half of what making it on the spot does (the code stays
        warm; measured with bench.inprocess, docs/performance.md). ``args`` must not change
        after the call. If ``render`` raises, the line is reported as `logging` reports a
        record it cannot format (`Handler.handleError`, on stderr) and left out. Takes the
        handler's lock itself (`emit` already holds it: it is reentrant), the way
        `Handler.acquire` would, without that call and `release`'s per line."""
        with self.lock:  # type: ignore[union-attr]  # a StreamHandler always has one
            if self._journals:
                self._drain_journals()  # what was appended before this line goes first
            pending = self._pending
            pending.append((render, args))
            if (
                level >= logging.WARNING
                or len(pending) >= self.max_lines
                or self.flush_interval <= 0
            ):
                self._write_pending()
            elif len(pending) == 1:
                self._wake_flusher()

    def journal(
        self, logger: logging.Logger, level: int, render: JournalRender, to_record: JournalRecord
    ) -> Journal | None:
        """The open `Journal` of ``logger``'s lines at ``level`` made with ``render``
        (the same one per triple; reopened if it was closed), or ``None`` when this handler
        writes each line at once (``flush_interval <= 0``) or is closed. The caller has
        checked that such a record reaches this handler alone (`direct_json_handler`)."""
        if self.flush_interval <= 0 or self._stopping:
            return None
        with self.lock:  # type: ignore[union-attr]
            key = (logger.name, level, render)
            journal = self._journals.get(key)
            if journal is None:
                journal = self._journals[key] = Journal(logger, level, render, to_record)
            journal.open = True
            self._wake_flusher()  # looks for the journal's lines every interval
            return journal

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
            super().flush()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            self._stopping = True
            self._has_pending.set()  # lets the flusher thread return
            self._write_pending()
            super().close()
        finally:
            self.release()

    def _drain_journals(self) -> None:
        """Move the journals' entries into the pending lines, a batch per journal, or,
        for a journal whose lines would no longer reach this handler alone, close it and
        hand its entries to `logging` as records (the caller holds the handler's lock)."""
        for journal in list(self._journals.values()):
            entries = journal.take()
            if self._stopping:  # closing: the lines were handed to this handler
                journal.open = False
            elif entries and not self._still_direct(journal):
                journal.open = False
                self._reroute(journal, entries)
                continue
            if entries:
                self._pending.append((self._journal_lines, (journal, entries)))

    def _still_direct(self, journal: Journal) -> bool:
        direct = direct_json_handler(journal.logger, journal.level)
        return (
            direct is not None and direct[0] is self and journal.logger.isEnabledFor(journal.level)
        )

    def _reroute(self, journal: Journal, entries: list[tuple[Any, ...]]) -> None:
        """The entries as records, to whatever handlers the logger now has (this one
        among them, maybe: its lock is reentrant)."""
        if not journal.logger.isEnabledFor(journal.level):
            return  # the level was raised since: such a line is no longer logged
        for entry in entries:
            try:
                record = journal.to_record(journal.level, entry)
            except Exception:
                self._report_unmade(entry)
                continue
            journal.logger.handle(record)

    def _journal_lines(self, journal: Journal, entries: list[tuple[Any, ...]]) -> str | None:
        """The lines of a drained batch, made when written (the caller holds the lock)."""
        formatter = self.formatter
        if type(formatter) is JsonFormatter:
            lines = journal.render(formatter, journal.level, entries, self._report_unmade)
        else:  # the format was changed after this batch was drained: its records in it
            lines = []
            for entry in entries:
                try:
                    lines.append(self.format(journal.to_record(journal.level, entry)))
                except Exception:
                    self._report_unmade(entry)
        return self.terminator.join(lines) if lines else None

    def _report_unmade(self, args: Any) -> None:
        """Report a line that cannot be made, as `logging` reports a record it cannot
        format (`Handler.handleError`, on stderr)."""
        self.handleError(logging.makeLogRecord({"msg": "line not made", "args": args}))

    def _write_pending(self) -> None:
        """Write what is pending in one call (the caller holds the handler's lock). A
        stream that cannot take it (closed, full) never raises into the caller: the lines
        are reported as `logging` reports a record it cannot write, and dropped."""
        if self._journals:
            self._drain_journals()
        if not self._pending:
            return
        made: list[str] = []
        for render, args in self._pending:  # one loop, no call per line but the line's own
            try:
                line = render(*args)
            except Exception:  # as a record that cannot be formatted: reported, left out
                self._report_unmade(args)
                continue
            if line is not None:
                made.append(line)
        self._pending.clear()
        if not made:
            return
        text = self.terminator.join(made) + self.terminator
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # ValueError: a closed stream (at exit, say)
            lost = f"{len(made)} log lines not written: {text[:4000]}"
            self.handleError(logging.makeLogRecord({"msg": lost}))

    def _after_fork_in_child(self) -> None:
        # A pre-fork server's worker inherits the handler but not its thread, and the
        # lines pending at the fork are the parent's to write (not twice). Journals are
        # closed: reopening one (`journal`) starts this process's flusher thread.
        self._pending.clear()
        for journal in self._journals.values():
            journal.take()
            journal.open = False
        self._has_pending = threading.Event()
        self._flusher = None

    def _wake_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_quiet_buffers, name="log-flusher", daemon=True
            )
            self._flusher.start()
        self._has_pending.set()

    def _flush_quiet_buffers(self) -> None:
        while True:
            self._has_pending.wait()
            if self._stopping:
                return
            # A burst shares one write; a lone line waits at most flush_interval.
            time.sleep(self.flush_interval)
            self.acquire()
            try:
                if not any(journal.open for journal in self._journals.values()):
                    self._has_pending.clear()  # else: look for journal lines again
                self._write_pending()
            finally:
                self.release()


_BUFFERED_HANDLERS: weakref.WeakSet[BufferedStreamHandler] = weakref.WeakSet()


def _reset_buffered_handlers_in_child() -> None:
    for handler in list(_BUFFERED_HANDLERS):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_buffered_handlers_in_child)

_HANDLER_MARK = "_bb_handler"


def configure_logging(
    level: str = "INFO",
    fmt: Literal["text", "json"] = "text",
    *,
    stream: TextIO | None = None,
    flush_interval: float = 0.0,
) -> logging.Handler:
    """Route every stdlib logger through one handler on the root logger.

    Idempotent: a handler installed by an earlier call is replaced (and flushed), other
    handlers (a test runner's capture) are kept. ``flush_interval > 0`` batches lines
    below WARNING for up to that many seconds (`BufferedStreamHandler`); ``0`` writes
    each line at once, as `logging.StreamHandler` does. Returns the handler.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()  # writes what a buffered handler still holds; never closes the stream
    handler = BufferedStreamHandler(stream or sys.stderr, flush_interval=flush_interval)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_TraceFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    # Neither format prints them; skipping them makes every `LogRecord` cheaper (the
    # logging HOWTO's "Optimization" section).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # uvicorn's own access line would duplicate ours (and it has no route template).
    logging.getLogger("uvicorn.access").disabled = True
    return handler


def direct_json_handler(
    logger: logging.Logger, level: int
) -> tuple[BufferedStreamHandler, JsonFormatter] | None:
    """The handler (and its formatter) that a record of ``logger`` at ``level`` would
    reach, when that is exactly one handler, the one `configure_logging` installed with
    the JSON format, and nothing on the way filters records; else ``None``.

    For the access line (one per request): when this answers, the caller formats the line
    with `JsonFormatter.format_fields` when `BufferedStreamHandler.emit_later` writes it,
    skipping the `LogRecord` and `logging`'s dispatch, about half of the line's cost. The
    line is the one the record would have made (tests/unit/test_direct_access_line.py).
    Any other set-up (a test's capture handler, a filter, the text format) answers
    ``None`` and the caller logs a record as usual. The caller checks
    ``logger.isEnabledFor(level)`` first."""
    if logger.filters or logger.disabled:
        return None
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if found is not None:
                return None
            found = handler
        if not node.propagate:
            break
        node = node.parent
    if (
        type(found) is not BufferedStreamHandler
        or not getattr(found, _HANDLER_MARK, False)
        or level < found.level
        or len(found.filters) != 1
        or type(found.filters[0]) is not _TraceFilter
    ):
        return None
    formatter = found.formatter
    if type(formatter) is not JsonFormatter:
        return None
    return found, formatter
