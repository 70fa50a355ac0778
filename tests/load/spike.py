"""The spike scenario: the mixed profile under a load shape that jumps and falls back.

``locust -f tests/load/spike.py`` (``make loadtest SCENARIO=spike``). Stages last
``LOAD_STAGE_SECONDS`` (default 20): ``LOAD_SPIKE_USERS``/10 users (at least 1), then
``LOAD_SPIKE_USERS`` (default 100; ``make loadtest`` passes ``USERS``) spawned at once,
then back to the base, then stop.
"""

from __future__ import annotations

from locust import LoadTestShape

from tests.load.data import env_float, env_int
from tests.load.locustfile import MixedUser

__all__ = ["MixedUser", "SpikeShape"]


class SpikeShape(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # locust is untyped here
        self.stage = env_float("LOAD_STAGE_SECONDS", 20)
        self.peak = env_int("LOAD_SPIKE_USERS", 100)
        self.base = max(1, self.peak // 10)

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()  # type: ignore[no-untyped-call]
        if elapsed < self.stage:
            return self.base, self.base
        if elapsed < 2 * self.stage:
            return self.peak, self.peak  # all at once: that is the spike
        if elapsed < 3 * self.stage:
            return self.base, self.peak
        return None
