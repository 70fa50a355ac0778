"""FastAPI dependencies that hand out what the composition root put on ``app.state``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from fastapi import Request

__all__ = ["from_state"]

T = TypeVar("T")


def from_state(name: str, kind: type[T]) -> Callable[[Request], Coroutine[Any, Any, T]]:
    """A dependency returning ``request.app.state.<name>``.

    ``get_db = from_state("database", DatabaseSession)`` then ``Depends(get_db)``. The
    object is built once by ``create_app()``; nothing is created per request or at import.
    """

    # ``async def`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in
    # its thread pool, a thread hop per request that cost ~15% of the throughput of a
    # get-by-id (profiled with py-spy under wrk).
    async def dependency(request: Request) -> T:
        try:
            return cast("T", getattr(request.app.state, name))
        except AttributeError:
            raise RuntimeError(
                f"app.state.{name} is not set: build the app with its factory"
            ) from None

    dependency.__name__ = f"get_{name}"
    del kind  # only for the caller's type inference
    return dependency
