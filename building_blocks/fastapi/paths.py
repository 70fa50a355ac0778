"""Answer 404 to request paths holding control characters, before routing sees them.

Starlette compiles each route to a regular expression ending in ``$``, which in Python
also matches just before a trailing newline: ``GET /api/v1/users/%0A`` (a user id of
``"\\n"``) would be served by the list route, and ``/health/ready%0A`` by readiness. No
route of a JSON API has control characters in its path, so such a path names nothing.
"""

from __future__ import annotations

import re

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ControlCharacterPaths"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ControlCharacterPaths:
    """Pure ASGI middleware: 404 problem+json when the decoded path has a control character."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _CONTROL.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps(
            {
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "no resource has control characters in its path",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
