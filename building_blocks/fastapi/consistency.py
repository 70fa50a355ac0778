"""Read-your-writes over HTTP: the consistency token in a header and a cookie.

`ConsistencyMiddleware` opens a `ConsistencyScope` per request from the
``X-Consistency-Token`` request header and the ``consistency_token`` cookie (API clients
send the header back; browsers send the cookie by themselves). When the request commits a
write, the response carries the new token in both; a request that only reads echoes the
token it was given in the header, so a client can always keep the last one it saw.

A client may ask for the primary with ``X-Force-Primary: true`` (turn it off with
``allow_client_force=False``); a route can insist on it with the `primary_reads`
dependency. It is a pure ASGI middleware on purpose: Starlette's ``BaseHTTPMiddleware``
runs the endpoint in another task, where the scope's context variable would not reach.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from building_blocks.db.consistency import (
    ConsistencyToken,
    consistency_scope,
    current_scope,
    force_primary,
)

__all__ = [
    "CONSISTENCY_COOKIE",
    "CONSISTENCY_HEADER",
    "FORCE_PRIMARY_HEADER",
    "ConsistencyMiddleware",
    "primary_reads",
]

CONSISTENCY_HEADER = "X-Consistency-Token"
CONSISTENCY_COOKIE = "consistency_token"
FORCE_PRIMARY_HEADER = "X-Force-Primary"
_TRUE = frozenset({"1", "true", "yes", "on"})


class ConsistencyMiddleware:
    """See the module docstring. ``cookie_max_age``: seconds a browser keeps the token;
    past the replicas' lag bound a token no longer changes where reads go."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        cookie_max_age: int = 300,
        allow_client_force: bool = True,
    ) -> None:
        self.app = app
        self.cookie_max_age = cookie_max_age
        self.allow_client_force = allow_client_force

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        sent = ConsistencyToken.parse(headers.get(CONSISTENCY_HEADER))
        cookie = ConsistencyToken.parse(
            cookie_parser(headers.get("cookie", "")).get(CONSISTENCY_COOKIE)
        )
        required = cookie.newest(sent) if cookie else sent
        forced = self.allow_client_force and (
            headers.get(FORCE_PRIMARY_HEADER, "").strip().lower() in _TRUE
        )
        secure = scope.get("scheme") == "https"
        with consistency_scope(required, force_primary=forced) as request_scope:

            async def send_with_token(message: Message) -> None:
                if message["type"] == "http.response.start":
                    committed = request_scope.committed
                    token = committed.newest(sent) if committed else sent
                    out = MutableHeaders(scope=message)
                    if token is not None:
                        out[CONSISTENCY_HEADER] = str(token)
                    if committed is not None:
                        out.append("set-cookie", self._cookie(committed, secure=secure))
                await send(message)

            await self.app(scope, receive, send_with_token)

    def _cookie(self, token: ConsistencyToken, *, secure: bool) -> str:
        # The token's characters ([a-z0-9:/]) need no quoting in a cookie value.
        attributes = f"Max-Age={self.cookie_max_age}; Path=/; HttpOnly; SameSite=Lax"
        return f"{CONSISTENCY_COOKIE}={token}; {attributes}{'; Secure' if secure else ''}"


async def primary_reads() -> AsyncIterator[None]:
    """Dependency: every unit of work of this request reads from the primary.

    ``APIRouter(dependencies=[Depends(primary_reads)])`` or on a single route.
    """
    scope = current_scope()
    if scope is not None:
        # Mutate the request's scope: a context variable set inside a dependency is not
        # guaranteed to reach the endpoint.
        scope.force_primary = True
        yield
        return
    with force_primary():
        yield
