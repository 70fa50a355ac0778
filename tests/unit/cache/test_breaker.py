"""The circuit breaker: opens after consecutive failures, probes once, closes on success."""

from __future__ import annotations

import pytest

from building_blocks.cache import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(
    clock: Clock, changes: list[tuple[BreakerState, BreakerState]] | None = None
) -> CircuitBreaker:
    def on_change(old: BreakerState, new: BreakerState, _error: BaseException | None) -> None:
        if changes is not None:
            changes.append((old, new))

    return CircuitBreaker(
        failure_threshold=3, recovery_seconds=1.0, clock=clock, on_change=on_change
    )


def test_opens_after_threshold_consecutive_failures(clock: Clock) -> None:
    b = breaker(clock)
    b.record_failure()
    b.record_failure()
    assert b.allow()
    b.record_failure()
    assert not b.allow()
    assert b.state is BreakerState.OPEN


def test_a_success_resets_the_failure_count(clock: Clock) -> None:
    b = breaker(clock)
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.allow()


def test_one_probe_per_recovery_period_then_closes_on_success(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    assert not b.probe_due()
    clock.now += 1.0
    assert b.probe_due()
    assert not b.probe_due()  # only one caller runs the probe
    assert not b.allow()  # half-open: requests still skip the backend
    b.record_success()
    assert b.allow()


def test_failed_probe_opens_again_for_a_full_period(clock: Clock) -> None:
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 1.0
    assert b.probe_due()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    clock.now += 0.5
    assert not b.probe_due()
    clock.now += 0.5
    assert b.probe_due()


def test_trip_opens_at_once(clock: Clock) -> None:
    b = breaker(clock)
    b.trip(ConnectionError("invalidation lost"))
    assert b.state is BreakerState.OPEN


def test_on_change_is_called_once_per_transition(clock: Clock) -> None:
    changes: list[tuple[BreakerState, BreakerState]] = []
    b = breaker(clock, changes)
    for _ in range(10):
        b.record_failure()
    clock.now += 1.0
    b.probe_due()
    b.record_success()
    b.record_success()
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
