"""Single-flight: concurrent misses of one key in a process share one database read.

A caller joins the flight in progress for its key when the flight began after the
caller did (its read is then at least as fresh as anything the caller could have seen),
or when both saw the same fences (no invalidation in between, as far as the backend can
tell) and the caller's lookup began before the flight's read finished. Otherwise it
starts a new flight: a result that predates a write its caller could have seen is never
shared. Callers that could not ask the backend (``fences=None``) join by time only.

Finished flights stay joinable for ``grace`` seconds (the backend timeout), so that a
caller whose lookup crossed the flight's store in the network still finds it instead of
reading again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Flight", "Flights"]


@dataclass(slots=True, eq=False)
class Flight:
    key: str
    fences: tuple[bytes | None, ...] | None
    tags: tuple[str, ...]
    started: float
    future: asyncio.Future[Any] = field(repr=False)
    finished: float | None = None

    def reading(self, now: float) -> None:
        """The database read begins now (until then, any caller may join)."""
        self.started = now


class Flights:
    def __init__(self, *, clock: Callable[[], float], max_age: float, grace: float) -> None:
        self._flights: dict[str, Flight] = {}
        self._clock = clock
        self._max_age = max_age
        self._grace = grace

    def __len__(self) -> int:
        return len(self._flights)

    def join(
        self, key: str, fences: tuple[bytes | None, ...] | None, lookup_started: float
    ) -> asyncio.Future[Any] | None:
        flight = self._flights.get(key)
        if flight is None:
            return None
        if flight.started >= lookup_started:
            return flight.future
        if fences is None or flight.fences != fences:
            return None
        if flight.finished is not None and flight.finished < lookup_started:
            return None
        if self._clock() - flight.started > self._max_age:
            return None
        return flight.future

    def start(
        self, key: str, fences: tuple[bytes | None, ...] | None, tags: tuple[str, ...]
    ) -> Flight:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # A flight whose every caller was cancelled must not log "exception never
        # retrieved": the error already reached whoever was waiting.
        future.add_done_callback(_consume_exception)
        flight = Flight(key, fences, tags, math.inf, future)
        self._flights[key] = flight
        return flight

    def reading(self, flight: Flight) -> None:
        flight.reading(self._clock())

    def finish(self, flight: Flight) -> None:
        flight.finished = self._clock()
        if self._flights.get(flight.key) is flight:
            asyncio.get_running_loop().call_later(self._grace, self._forget, flight)

    def fail(self, flight: Flight) -> None:
        """A failed read is not shared with later callers: they try again themselves."""
        self._forget(flight)

    def forget(self, keys: Iterable[str], tags: Iterable[str]) -> None:
        """Invalidation: later callers must not join flights that read before it."""
        for key in keys:
            self._flights.pop(key, None)
        tag_set = set(tags)
        if tag_set:
            for key in [k for k, f in self._flights.items() if tag_set.intersection(f.tags)]:
                del self._flights[key]

    def _forget(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
