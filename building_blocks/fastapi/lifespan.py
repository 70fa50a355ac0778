"""Lifespan glue: start resources in order when the app starts, stop them in reverse."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Protocol

from fastapi import FastAPI

__all__ = ["FrozenHeap", "Resource", "lifespan_of"]


class Resource(Protocol):
    """Anything with ``start``/``close`` (a `DatabaseSession`, a cache backend...)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def lifespan_of(*resources: Resource) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI ``lifespan`` that starts ``resources`` in order and closes them in reverse,
    also when a later start fails."""
    ordered = tuple(resources)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for resource in ordered:
                await resource.start()
                stack.push_async_callback(resource.close)
            yield

    return lifespan


class FrozenHeap:
    """A resource that tunes the garbage collector for a long-running server, and puts it
    back at close.

    * `gc.freeze`: every object alive at start-up (routes, models, SQLAlchemy and
      pydantic schemas: ~140,000 here) moves out of the collector's reach. They never
      die, yet each full collection traversed them all; under load full collections ran
      every ~1,600 requests, ~8% of the CPU of a cached get with telemetry on.
    * ``young_threshold``: the first generation is collected after this many net
      allocations instead of CPython's 700. Reference counting frees almost everything
      a request allocates (the profiled get paths made no cyclic garbage), yet the
      counter still reached 700 every ~30 requests with telemetry on, and those
      collections were another ~8% of a cached get (measured with `gc.callbacks`;
      docs/performance.md). Cyclic garbage waits a little longer to be freed, a bounded
      amount. ``None`` keeps the interpreter's setting.

    Start it last."""

    def __init__(self, *, young_threshold: int | None = 50_000) -> None:
        self.young_threshold = young_threshold
        self._saved: tuple[int, int, int] | None = None

    async def start(self) -> None:
        gc.collect()
        gc.freeze()
        if self.young_threshold is not None:
            self._saved = gc.get_threshold()
            gc.set_threshold(self.young_threshold, *self._saved[1:])

    async def close(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None
        gc.unfreeze()
