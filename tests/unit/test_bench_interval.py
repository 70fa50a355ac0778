"""`bench.paired`'s confidence interval over pairs of processes, and the verdict it gives
the telemetry target."""

from __future__ import annotations

import math
import statistics

import pytest

from bench import paired
from bench.paired import interval, verdict


def test_two_pairs_use_students_t_with_one_degree_of_freedom() -> None:
    bounds = interval([0.9, 1.0])
    assert bounds is not None
    mean, low, high = bounds
    half = 12.706 * statistics.stdev([0.9, 1.0]) / math.sqrt(2)
    assert mean == pytest.approx(0.95)
    assert (low, high) == pytest.approx((0.95 - half, 0.95 + half))


def test_more_pairs_narrow_the_interval_for_the_same_spread() -> None:
    few = interval([0.88, 0.92, 0.90, 0.94])
    many = interval([0.88, 0.92, 0.90, 0.94] * 8)
    assert few is not None
    assert many is not None
    assert few[0] == pytest.approx(many[0])
    assert many[2] - many[1] < (few[2] - few[1]) / 2


def test_past_thirty_degrees_of_freedom_the_normal_quantile_is_used() -> None:
    ratios = [0.9 + 0.01 * (i % 5) for i in range(40)]
    bounds = interval(ratios)
    assert bounds is not None
    half = 1.96 * statistics.stdev(ratios) / math.sqrt(40)
    assert bounds[2] - bounds[0] == pytest.approx(half)


def test_one_pair_has_no_interval_and_shows_nothing() -> None:
    assert interval([0.95]) is None
    assert verdict(None) == "not shown"


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [
        ([0.95, 0.96, 0.94, 0.95], "met"),
        ([0.85, 0.86, 0.84, 0.85], "missed"),
        ([0.86, 0.94, 0.90, 0.92], "not shown"),
    ],
)
def test_the_verdict_needs_the_whole_interval_on_one_side(
    ratios: list[float], expected: str
) -> None:
    assert verdict(interval(ratios), 0.9) == expected


@pytest.mark.parametrize("served", [True, False])
def test_the_recorded_table_shows_the_interval_and_the_verdict(served: bool) -> None:
    ratios = [0.85, 0.86, 0.84, 0.85]
    result = {
        "off": 100.0,
        "on": 117.6,
        "ratio": 0.85,
        "by_process": ratios,
        "interval": interval(ratios),
        "rate_ratio": 0.851 if served else None,
    }
    table = [
        line
        for line in paired._render({"cached get": result}, "cmd", 8, "2 s", served).splitlines()
        if line.startswith("|")
    ]
    assert len({line.count("|") for line in table}) == 1  # every row as wide as the head
    row = table[-1]
    assert "| missed |" in row
    assert "0.850x (0.837x to 0.863x)" in row
    assert ("| 0.851x |" in row) is served
