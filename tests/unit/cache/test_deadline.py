"""`Deadline`: times out a stalled operation, but not one whose result is merely queued
behind a busy event loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from building_blocks.cache.deadline import Deadline


async def test_an_operation_that_never_completes_times_out() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with Deadline(0.05):
            await asyncio.Event().wait()
    assert time.monotonic() - started < 1.0


async def test_a_result_ready_when_a_busy_loop_gets_to_it_is_not_a_timeout() -> None:
    """The reply arrives in time, but the loop is blocked past the deadline (a burst of
    other requests): asyncio.timeout would cancel; the deadline lets it through."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.01, reply.set_result, "pong")  # the reply comes in time...
    loop.call_later(0.005, time.sleep, 0.1)  # ...while the loop is stuck past the deadline

    async with Deadline(0.05):
        assert await reply == "pong"

    reply2: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.01, reply2.set_result, "pong")
    loop.call_later(0.005, time.sleep, 0.1)
    with pytest.raises(TimeoutError):  # the control: asyncio.timeout gives up on it
        async with asyncio.timeout(0.05):
            await reply2
