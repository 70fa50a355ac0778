"""``X-Cache`` response header: whether the request's reads came from the cache.

The value is the result of each cache lookup the request made, in order (``hit``,
``miss``, ``bypass`` when the cache was skipped, ``error`` when it failed), e.g.
``X-Cache: hit``. No header when the request read nothing through a cache.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so it adds no task and no copy of
the body to every request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from building_blocks.cache.context import start_collecting, stop_collecting

__all__ = ["CacheHeaderMiddleware"]


class CacheHeaderMiddleware:
    def __init__(self, app: ASGIApp, *, header: str = "x-cache") -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        results, token = start_collecting()
        header = self.header

        async def send_with_header(message: Message) -> None:
            if results and message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (header, _value(results))]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            stop_collecting(token)


def _value(results: list[str]) -> bytes:
    return ", ".join(results).encode("latin-1")
