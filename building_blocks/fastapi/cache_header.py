"""``X-Cache`` response header: whether the request's reads came from the cache.

The value is the result of each cache lookup the request made, in order (``hit``,
``miss``, ``bypass`` when the cache was skipped, ``error`` when it failed), e.g.
``X-Cache: hit``. No header when the request read nothing through a cache.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so it adds no task and no copy of
the body to every request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from building_blocks.cache.context import collect_results

__all__ = ["CacheHeaderMiddleware"]


class CacheHeaderMiddleware:
    def __init__(self, app: ASGIApp, *, header: str = "x-cache") -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with collect_results() as results:

            async def send_with_header(message: Message) -> None:
                if message["type"] == "http.response.start" and results:
                    headers = [*message.get("headers", ()), (self.header, _value(results))]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_header)


def _value(results: list[str]) -> bytes:
    return ", ".join(results).encode("latin-1")
