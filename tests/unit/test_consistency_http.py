"""The consistency token over HTTP: header and cookie out after a write, back in on the
next request, and the force-primary switches (client header, route dependency)."""

from __future__ import annotations

import httpx
from fastapi import Depends, FastAPI

from building_blocks.db import ConsistencyToken, required_token
from building_blocks.db.consistency import note_commit, primary_forced
from building_blocks.fastapi import (
    CONSISTENCY_COOKIE,
    CONSISTENCY_HEADER,
    FORCE_PRIMARY_HEADER,
    ConsistencyMiddleware,
    primary_reads,
)

WRITTEN = ConsistencyToken.lsn("0/3000148")


def _app(*, allow_client_force: bool = True) -> FastAPI:
    app = FastAPI()
    app.add_middleware(ConsistencyMiddleware, allow_client_force=allow_client_force)

    @app.post("/write")
    async def write() -> dict[str, str]:
        note_commit(WRITTEN)  # what the session does after a commit on the primary
        return {"required_after": str(required_token())}

    @app.get("/read")
    async def read() -> dict[str, object]:
        token = required_token()
        return {"required": str(token) if token else None, "forced": primary_forced()}

    @app.get("/strict", dependencies=[Depends(primary_reads)])
    async def strict() -> dict[str, object]:
        return {"forced": primary_forced()}

    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc.test")


async def test_a_write_returns_the_token_in_a_header_and_a_cookie() -> None:
    async with _client(_app()) as client:
        response = await client.post("/write")
    assert response.headers[CONSISTENCY_HEADER] == "lsn:0/3000148"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{CONSISTENCY_COOKIE}=lsn:0/3000148;")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    # Later reads of the same request must see the write too.
    assert response.json() == {"required_after": "lsn:0/3000148"}


async def test_the_header_or_the_cookie_sent_back_sets_what_reads_require() -> None:
    async with _client(_app()) as client:
        by_header = await client.get("/read", headers={CONSISTENCY_HEADER: "lsn:0/3000148"})
        await client.post("/write")  # the client now holds the cookie
        by_cookie = await client.get("/read")
        client.cookies.clear()
        junk = await client.get("/read", headers={CONSISTENCY_HEADER: "lsn:'; DROP"})
    assert by_header.json()["required"] == "lsn:0/3000148"
    assert by_header.headers[CONSISTENCY_HEADER] == "lsn:0/3000148"  # echoed for API clients
    assert by_cookie.json()["required"] == "lsn:0/3000148"
    assert junk.json()["required"] is None
    assert CONSISTENCY_HEADER not in junk.headers


async def test_a_client_can_ask_for_the_primary_unless_that_is_turned_off() -> None:
    async with _client(_app()) as client:
        asked = await client.get("/read", headers={FORCE_PRIMARY_HEADER: "true"})
        plain = await client.get("/read")
    async with _client(_app(allow_client_force=False)) as client:
        refused = await client.get("/read", headers={FORCE_PRIMARY_HEADER: "true"})
    assert asked.json()["forced"] is True
    assert plain.json()["forced"] is False
    assert refused.json()["forced"] is False


async def test_a_route_can_insist_on_primary_reads() -> None:
    async with _client(_app()) as client:
        response = await client.get("/strict")
    assert response.json() == {"forced": True}
