"""`CircuitBreaker`: stop calling a backend that keeps failing, probe it back.

States::

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(recovery_seconds elapsed; the next caller gets probe_due() == True)──▶ half-open
    half-open ──(probe succeeds)──▶ closed        half-open ──(probe fails)──▶ open

While open or half-open, `allow()` is False: callers skip the backend at the cost of a
clock read. Exactly one probe runs per recovery period; the cache runs it in the
background, so no request ever waits on a probe. ``on_change`` is called once per
transition (the cache logs and updates its gauge there, not per failed call).

Hand-written rather than taken from a library: the async breaker libraries (aiobreaker,
purgatory) wrap each call and let a real request be the half-open probe, which would
put the probe's timeout on a user's request; this one is a 60-line state machine.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


OnChange = Callable[[BreakerState, BreakerState, BaseException | None], None]


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_failures",
        "_on_change",
        "_opened_at",
        "failure_threshold",
        "recovery_seconds",
        "state",
    )

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        recovery_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if recovery_seconds <= 0:
            raise ValueError("recovery_seconds must be positive")
        self.failure_threshold = failure_threshold
        self.recovery_seconds = recovery_seconds
        self.state = BreakerState.CLOSED
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at = 0.0

    def allow(self) -> bool:
        """Whether a call may go to the backend now."""
        return self.state is BreakerState.CLOSED

    def probe_due(self) -> bool:
        """True once per recovery period while open: the caller must then run a probe and
        report its outcome with `record_success`/`record_failure`."""
        if self.state is not BreakerState.OPEN:
            return False
        if self._clock() - self._opened_at < self.recovery_seconds:
            return False
        self._change(BreakerState.HALF_OPEN, None)
        return True

    def record_success(self) -> None:
        self._failures = 0
        if self.state is BreakerState.HALF_OPEN:
            self._change(BreakerState.CLOSED, None)

    def record_failure(self, error: BaseException | None = None) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._open(error)
            return
        if self.state is BreakerState.OPEN:
            return  # a call that started before the breaker opened
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open(error)

    def trip(self, error: BaseException | None = None) -> None:
        """Open now, whatever the count: the backend is known to hold stale entries (an
        invalidation failed) and must not be read until a probe has repaired it."""
        if self.state is BreakerState.HALF_OPEN:
            self._opened_at = self._clock()  # the running probe will replay this one too
            return
        if self.state is BreakerState.CLOSED:
            self._open(error)

    def _open(self, error: BaseException | None) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self._change(BreakerState.OPEN, error)

    def _change(self, new: BreakerState, error: BaseException | None) -> None:
        old, self.state = self.state, new
        if self._on_change is not None and old is not new:
            self._on_change(old, new, error)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.state.value})"
