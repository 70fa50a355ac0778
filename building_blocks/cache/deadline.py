"""`Deadline`: a timeout that a busy event loop does not trip by itself.

``asyncio.timeout`` cancels at the deadline even when the reply has already arrived and
only waits, in the event loop's ready queue, behind other requests' callbacks. Under a
burst of requests that happens to every Redis call at once, and the cache would declare a
healthy Redis dead (opening its breaker and sending everything to the database, the
worst moment for it). This deadline, when it expires, cancels two loop turns later: I/O
that had completed by then is processed first, so only a Redis that really did not
answer in time causes a timeout.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Deadline"]


class Deadline:
    """``async with Deadline(0.1): ...`` raises `TimeoutError` if the block overruns."""

    __slots__ = ("_done", "_handle", "_loop", "_seconds", "_timeout")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._done = False

    async def __aenter__(self) -> Deadline:
        self._loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout(None)
        await self._timeout.__aenter__()
        self._handle = self._loop.call_at(self._loop.time() + self._seconds, self._expire)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done = True
        self._handle.cancel()
        await self._timeout.__aexit__(exc_type, exc, tb)

    def _expire(self) -> None:
        if not self._done:
            self._loop.call_soon(self._fire)

    def _fire(self) -> None:
        if not self._done:
            # A deadline in the past makes asyncio cancel on the next loop turn.
            self._timeout.reschedule(self._loop.time())
