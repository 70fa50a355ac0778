"""`BufferedStreamHandler`: INFO lines in batches, WARNING at once, nothing left behind."""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from building_blocks.telemetry import configure_logging
from building_blocks.telemetry.logging import BufferedStreamHandler, Journal, JsonFormatter
from tests.support.telemetry import RecordCapture, only_our_json_handler


class CountingStream(io.StringIO):
    """A real text stream that also counts how many times it was written to."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("test.buffered")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for handler in log.handlers[:]:
        log.removeHandler(handler)
        handler.close()


def attach(log: logging.Logger, **options: float) -> tuple[BufferedStreamHandler, CountingStream]:
    stream = CountingStream()
    handler = BufferedStreamHandler(stream, **options)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler, stream


def test_a_burst_of_info_lines_is_one_write(logger: logging.Logger) -> None:
    _, stream = attach(logger, flush_interval=60)
    for i in range(100):
        logger.info("line %d", i)
    assert stream.getvalue() == ""  # held: the interval has not passed
    logger.warning("now")
    assert stream.writes == 1
    lines = stream.getvalue().splitlines()
    assert lines == [f"INFO line {i}" for i in range(100)] + ["WARNING now"]  # in order


def test_lines_queued_for_later_are_made_when_written_in_their_place(
    logger: logging.Logger,
) -> None:
    handler, stream = attach(logger, flush_interval=60)
    made: list[int] = []

    def render(number: int) -> str:
        made.append(number)
        return f"later {number}"

    handler.emit_later(logging.INFO, render, 1)
    logger.info("record")
    handler.emit_later(logging.INFO, render, 2)
    assert made == []  # nothing made while the lines wait
    logger.warning("now")
    assert made == [1, 2]
    assert stream.getvalue().splitlines() == ["later 1", "INFO record", "later 2", "WARNING now"]
    handler.emit_later(logging.INFO, render, 3)
    handler.flush()
    assert stream.getvalue().splitlines()[-1] == "later 3"


def test_a_quiet_buffer_is_written_after_the_interval(logger: logging.Logger) -> None:
    _, stream = attach(logger, flush_interval=0.05)
    logger.info("alone")
    started = time.monotonic()
    while "INFO alone" not in stream.getvalue():  # written by the flusher thread
        assert time.monotonic() - started < 5, "the line was never written"
        time.sleep(0.01)
    # A second quiet line is written too: the flusher sleeps and wakes again.
    logger.info("later")
    while "INFO later" not in stream.getvalue():
        assert time.monotonic() - started < 5, "the second line was never written"
        time.sleep(0.01)
    assert stream.writes == 2


def test_max_lines_bounds_what_is_held(logger: logging.Logger) -> None:
    _, stream = attach(logger, flush_interval=60, max_lines=10)
    for i in range(25):
        logger.info("line %d", i)
    assert stream.writes == 2
    assert len(stream.getvalue().splitlines()) == 20


def test_flush_and_close_write_what_is_pending(logger: logging.Logger) -> None:
    handler, stream = attach(logger, flush_interval=60)
    logger.info("one")
    handler.flush()
    assert stream.getvalue() == "INFO one\n"
    logger.info("two")
    logger.removeHandler(handler)
    handler.close()
    assert stream.getvalue() == "INFO one\nINFO two\n"


def test_reconfiguring_writes_the_old_handlers_pending_lines() -> None:
    stream = CountingStream()
    configure_logging("INFO", "text", stream=stream, flush_interval=60)
    try:
        logging.getLogger("test.reconfigure").info("before reconfiguring")
        assert stream.getvalue() == ""
        configure_logging("INFO", "text", stream=io.StringIO())
        assert "before reconfiguring" in stream.getvalue()
    finally:
        configure_logging("INFO", "text")


def test_a_failing_stream_is_reported_not_raised(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    logger.addHandler(BufferedStreamHandler(Broken(), flush_interval=60))
    logger.error("cannot be written")  # must not raise into the caller
    # logging's own report of a handler error (Handler.handleError), on stderr.
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "OSError: disk full" in err
    assert "cannot be written" in err


def test_a_failing_stream_reports_lines_queued_for_later_and_raises_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise ValueError("I/O operation on closed file")

    handler = BufferedStreamHandler(Closed(), flush_interval=60, max_lines=2)
    handler.emit_later(logging.INFO, "line {}".format, 1)
    handler.emit_later(logging.INFO, "line {}".format, 2)  # a full batch: written now
    err = capsys.readouterr().err
    # handleError writes the message's repr: a line break shows as a backslash and n.
    assert "2 log lines not written: line 1\\nline 2" in err
    assert "ValueError: I/O operation on closed file" in err
    handler.emit_later(logging.INFO, "line {}".format, 3)
    handler.close()  # what is left is reported the same way, and nothing raises
    assert "1 log lines not written: line 3\\n" in capsys.readouterr().err


def test_a_forked_child_flushes_its_own_lines_and_not_the_parents(
    logger: logging.Logger, tmp_path: Path
) -> None:
    path = tmp_path / "log"
    stream = path.open("w", encoding="utf-8")
    handler = BufferedStreamHandler(stream, flush_interval=0.05)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.info("parent, written")
    while "parent, written" not in path.read_text(encoding="utf-8"):  # flusher is running
        time.sleep(0.01)
    logger.info("parent, pending at the fork")  # held by the parent's buffer
    pid = os.fork()
    if pid == 0:  # the child: its line must come out without the parent's flusher thread
        code = 1
        try:
            logger.info("child")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if "child" in path.read_text(encoding="utf-8").splitlines():
                    code = 0
                    break
                time.sleep(0.01)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    handler.flush()
    assert os.waitstatus_to_exitcode(status) == 0, "the child's line was never written"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines.count("parent, pending at the fork") == 1  # not written by the child too
    stream.close()


# Journals: lines handed over as values by a bare append (the access log's way).

Entry = tuple[Any, ...]


@contextmanager
def json_root(flush_interval: float) -> Iterator[tuple[BufferedStreamHandler, CountingStream]]:
    """The service's JSON handler alone on the root logger, as `direct_json_handler`
    needs for a journal."""
    stream = CountingStream()
    with only_our_json_handler(stream, flush_interval) as handler:
        yield handler, stream


class Lines:
    """A journal's render and record functions that note what they were asked to make."""

    def __init__(self) -> None:
        self.batches: list[list[Entry]] = []

    def render(
        self,
        formatter: JsonFormatter,
        level: int,
        entries: list[Entry],
        report: Callable[[Entry], None],
    ) -> list[str]:
        self.batches.append(entries)
        made = []
        for entry in entries:
            try:
                made.append(orjson.dumps({"level": level, "journal": entry[0]}).decode())
            except TypeError:
                report(entry)
        return made

    def journal(self, handler: BufferedStreamHandler) -> Journal | None:
        """``handler``'s journal of `JOURNAL_LOG`'s INFO lines made by these functions."""
        return handler.journal(JOURNAL_LOG, logging.INFO, self.render, self.record)

    def opened(self, handler: BufferedStreamHandler) -> Journal:
        """`journal`, which must open."""
        journal = self.journal(handler)
        assert journal is not None
        return journal

    @staticmethod
    def record(level: int, entry: Entry) -> logging.LogRecord:
        return logging.makeLogRecord(
            {"name": "test.journal", "levelno": level, "levelname": "INFO", "msg": entry[0]}
        )


def messages(stream: io.StringIO) -> list[object]:
    return [
        line.get("journal", line.get("message"))
        for line in map(orjson.loads, stream.getvalue().splitlines())
    ]


JOURNAL_LOG = logging.getLogger("test.journal")


def test_journal_lines_are_made_in_batches_in_their_place() -> None:
    lines = Lines()
    with json_root(flush_interval=60) as (handler, stream):
        journal = lines.opened(handler)
        assert journal.open
        journal.append(("one",))
        journal.append(("two",))
        JOURNAL_LOG.info("record")
        journal.append(("three",))
        assert stream.getvalue() == ""
        assert lines.batches == []  # nothing made while the lines wait
        JOURNAL_LOG.warning("now")
        assert stream.writes == 1
        assert messages(stream) == ["one", "two", "record", "three", "now"]
        assert lines.batches == [[("one",), ("two",)], [("three",)]]
        assert lines.journal(handler) is journal


def test_a_journal_is_looked_at_every_interval_while_open() -> None:
    lines = Lines()
    with json_root(flush_interval=0.05) as (handler, stream):
        journal = lines.opened(handler)
        for expected in (["first"], ["first", "second"]):  # the flusher keeps looking
            journal.append((expected[-1],))
            deadline = time.monotonic() + 5
            while messages(stream) != expected:  # written by the flusher thread, no call
                assert time.monotonic() < deadline, f"{expected[-1]} was never written"
                time.sleep(0.01)


def test_a_changed_setup_closes_the_journal_and_its_lines_go_through_logging() -> None:
    lines = Lines()
    with json_root(flush_interval=60) as (handler, stream):
        journal = lines.opened(handler)
        journal.append(("before the capture",))
        capture = RecordCapture()
        JOURNAL_LOG.addHandler(capture)  # a second destination, added while it waits
        try:
            handler.flush()
        finally:
            JOURNAL_LOG.removeHandler(capture)
        assert not journal.open  # the caller logs records again until it reopens one
        assert [r.getMessage() for r in capture.records] == ["before the capture"]
        assert messages(stream) == ["before the capture"]  # through the record, once
        assert lines.batches == []

        assert lines.journal(handler)
        journal.append(("no longer logged",))
        JOURNAL_LOG.setLevel(logging.WARNING)
        try:
            handler.flush()
        finally:
            JOURNAL_LOG.setLevel(logging.NOTSET)
        assert not journal.open
        assert messages(stream) == ["before the capture"]


def test_closing_writes_the_journal_and_a_line_not_made_is_reported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = Lines()
    with json_root(flush_interval=60) as (handler, stream):
        journal = lines.opened(handler)
        journal.append(("kept",))
        journal.append((object(),))  # orjson cannot take it: reported, left out
        journal.append(("kept too",))
        configure_logging("INFO", "text", stream=io.StringIO())  # closes the handler
        assert not journal.open
        assert messages(stream) == ["kept", "kept too"]
        assert lines.journal(handler) is None
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err
    assert "line not made" in err
    assert "TypeError" in err


def test_a_handler_that_writes_each_line_at_once_opens_no_journal() -> None:
    lines = Lines()
    with json_root(flush_interval=0) as (handler, _):
        assert lines.journal(handler) is None


def test_a_forked_child_does_not_write_the_parents_journal(tmp_path: Path) -> None:
    lines = Lines()
    path = tmp_path / "log"
    with path.open("w", encoding="utf-8") as stream, json_root(flush_interval=60) as (handler, _):
        handler.setStream(stream)
        journal = lines.opened(handler)
        journal.append(("parent, pending at the fork",))
        pid = os.fork()
        if pid == 0:  # the child: its journal is closed and empty, its flush writes nothing
            code = 1
            try:
                if not journal.open:
                    handler.flush()
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child's journal was still open"
        handler.flush()
        assert journal.open
        assert path.read_text(encoding="utf-8").count("parent, pending at the fork") == 1


def test_a_batch_drained_before_the_format_changed_is_written_in_the_new_format() -> None:
    lines = Lines()
    with json_root(flush_interval=60) as (handler, stream):
        journal = lines.opened(handler)
        journal.append(("drained as JSON",))
        JOURNAL_LOG.info("a record drains the journal")  # the batch now waits as pending
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handler.flush()
        first, second = stream.getvalue().splitlines()
        assert first == "INFO drained as JSON"  # made when written, in the format of then
        assert orjson.loads(second)["message"] == "a record drains the journal"  # made then
        assert lines.batches == []
