"""Polling for asyncio tests: wait for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["poll_until"]


async def poll_until(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 5.0, what: str
) -> None:
    """Await until ``condition()`` is true; `TimeoutError` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
