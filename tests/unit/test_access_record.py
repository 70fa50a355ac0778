"""The access line's record, built from a template, is the record ``LogRecord`` makes."""

from __future__ import annotations

import logging
import time

from building_blocks.fastapi.telemetry import _AccessRecords
from building_blocks.telemetry.logging import ACCESS_LOGGER


def test_template_records_equal_fresh_records_but_for_the_time() -> None:
    records = _AccessRecords()
    for level in (logging.INFO, logging.DEBUG, logging.INFO):
        before = time.time()
        made = records.record(level, "GET /x 200 1.0ms", time.time())
        fresh = logging.LogRecord(
            ACCESS_LOGGER, level, made.pathname, 0, "GET /x 200 1.0ms", None, None
        )
        timing = {"created", "msecs", "relativeCreated"}
        assert {k: v for k, v in made.__dict__.items() if k not in timing} == {
            k: v for k, v in fresh.__dict__.items() if k not in timing
        }
        assert before <= made.created <= fresh.created
        assert made.msecs == int((made.created - int(made.created)) * 1000)
        # relativeCreated counts from the same start as the standard library's records.
        start_made = made.created - made.relativeCreated / 1000
        start_fresh = fresh.created - fresh.relativeCreated / 1000
        assert abs(start_made - start_fresh) < 1e-3
        assert made.getMessage() == "GET /x 200 1.0ms"
