"""Which cache results served the current request, for an ``X-Cache`` header or a log.

The HTTP layer opens a collection per request (`collect_results`); every cache lookup
made while it is open appends ``hit``, ``miss``, ``bypass`` or ``error``. A mutable list
in a context variable, rather than the variable itself, because frameworks may run the
endpoint in a copied context whose own ``set()`` calls the middleware would not see.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = ["collect_results", "record_result", "start_collecting", "stop_collecting"]

_results: ContextVar[list[str] | None] = ContextVar("building_blocks_cache_results", default=None)


def record_result(result: str) -> None:
    holder = _results.get()
    if holder is not None:
        holder.append(result)


def start_collecting() -> tuple[list[str], Token[list[str] | None]]:
    """`collect_results` without a context manager, for per-request middleware: the list,
    and the token to pass to `stop_collecting`."""
    holder: list[str] = []
    return holder, _results.set(holder)


def stop_collecting(token: Token[list[str] | None]) -> None:
    _results.reset(token)


@contextmanager
def collect_results() -> Iterator[list[str]]:
    """A list that receives the result of every cache lookup made inside the block."""
    holder, token = start_collecting()
    try:
        yield holder
    finally:
        stop_collecting(token)
