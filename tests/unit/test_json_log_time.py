"""The JSON formatter's cached time formatting equals ``datetime.isoformat`` exactly."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from building_blocks.telemetry.logging import JsonFormatter

FORMATTER = JsonFormatter()  # one instance: its per-second cache is what is under test


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_time_is_isoformat_to_the_millisecond(created: float) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.created = created
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert orjson.loads(FORMATTER.format(record))["time"] == expected


def test_time_at_a_rounding_carry() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.created = 1_700_000_000.9999996  # rounds up into the next second
    assert orjson.loads(FORMATTER.format(record))["time"] == "2023-11-14T22:13:21.000+00:00"
