"""Which cache results served the current request, for an ``X-Cache`` header or a log.

The HTTP layer opens a collection per request (`collect_results`); every cache lookup
made while it is open appends ``hit``, ``miss``, ``bypass`` or ``error``. A mutable list
in a context variable, rather than the variable itself, because frameworks may run the
endpoint in a copied context whose own ``set()`` calls the middleware would not see.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["collect_results", "record_result"]

_results: ContextVar[list[str] | None] = ContextVar("building_blocks_cache_results", default=None)


def record_result(result: str) -> None:
    holder = _results.get()
    if holder is not None:
        holder.append(result)


@contextmanager
def collect_results() -> Iterator[list[str]]:
    """A list that receives the result of every cache lookup made inside the block."""
    holder: list[str] = []
    token = _results.set(holder)
    try:
        yield holder
    finally:
        _results.reset(token)
