"""Hostile strings (SQL, quotes, emoji, right-to-left text, combining marks, astral-plane
characters, NUL bytes and other control characters) are stored exactly or refused with a
422 problem on every backend (SQLite, PostgreSQL, MariaDB), through the API and through
the repository itself; never a 500, never a value changed on the way."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest

from app.main import create_app
from app.users.domain import NewUser, User
from app.users.repository import SqlUserRepository
from building_blocks import DatabaseConfig, InvalidValueError, SQLAlchemySession
from building_blocks.uow import SQLAlchemyUnitOfWorkFactory
from tests.integration.conftest import settings_for
from tests.support.asgi import serving

USERS = "/api/v1/users/"
PROBLEM = "application/problem+json"

#: Each must come back exactly as sent (no trimming, no Unicode normalisation).
STORED = {
    "sql": "Robert'); DROP TABLE users;--",
    "quotes": 'O\'Brien "the" `tick` \\ back %_ wild',
    "emoji": "Zoë 😀 👩‍👩‍👧 🏳️‍🌈",
    "rtl": "العربية עברית \u202eevil\u202c \u200fmark",
    "combining": "e\u0301\u0301\u0301 Z\u0351\u0358\u0362a\u0300 n\u0303",
    "astral": "\U0001d518\U0001d52b\U0001d526 \U0002070e \U00010348",  # Fraktur, CJK Ext B, Gothic
    "longest": "😀" * 100,  # the column's 100 characters, 400 bytes in UTF-8
}
#: Control characters: refused by the API's schema (422) on every backend.
REFUSED = {"nul": "a\x00b", "newline": "a\nb", "escape": "\x1b[31mred", "delete": "a\x7f"}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def backend_url(request: pytest.FixtureRequest) -> str:
    """The migrated database of one backend (the contract suite's fixtures)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def backend_api(backend_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # No cache: every read below must come from the database.
    async with serving(create_app(settings_for(backend_url, cache_ttl_seconds=0))) as client:
        yield client


def _body(first_name: str, last_name: str) -> dict[str, object]:
    tag = uuid.uuid4().hex[:12]
    return {
        "first_name": first_name,
        "last_name": last_name,
        "email": f"o'brien+{tag}@example.com",
        "username": f"u{tag}",
    }


async def test_hostile_strings_are_stored_exactly_and_read_back_equal(
    backend_api: httpx.AsyncClient,
) -> None:
    for name, value in STORED.items():
        body = _body(value, value[::-1])
        created = await backend_api.post(USERS, json=body)
        assert created.status_code == 201, (name, created.text)
        user_id = created.json()["id"]
        read = (await backend_api.get(f"{USERS}{user_id}")).json()
        assert (read["first_name"], read["last_name"]) == (value, value[::-1]), name
        assert read["email"] == body["email"]
        found = await backend_api.get(USERS, params={"email": str(body["email"])})
        assert [u["id"] for u in found.json()["items"]] == [user_id], name
        patched = await backend_api.patch(f"{USERS}{user_id}", json={"last_name": value})
        assert patched.status_code == 200, (name, patched.text)
        assert (await backend_api.get(f"{USERS}{user_id}")).json()["last_name"] == value, name


async def test_control_characters_are_refused_with_422_and_nothing_is_stored(
    backend_api: httpx.AsyncClient,
) -> None:
    for name, value in REFUSED.items():
        body = _body(value, "Lovelace")
        created = await backend_api.post(USERS, json=body)
        assert created.status_code == 422, (name, created.text)
        assert created.headers["content-type"] == PROBLEM
        assert created.json()["errors"][0]["loc"] == ["body", "first_name"]
        found = await backend_api.get(USERS, params={"email": str(body["email"])})
        assert found.json()["items"] == [], name  # the refused create left no row
        other = await backend_api.post(USERS, json=_body("Ada", "Lovelace"))
        patched = await backend_api.patch(f"{USERS}{other.json()['id']}", json={"last_name": value})
        assert patched.status_code == 422, (name, patched.text)


async def test_hostile_query_strings_and_paths_are_answered_without_a_500(
    backend_api: httpx.AsyncClient,
) -> None:
    for value in [*STORED.values(), *REFUSED.values(), "' OR '1'='1", "%", "_", "\\"]:
        by_email = await backend_api.get(USERS, params={"email": value})
        assert by_email.status_code in (200, 422), (value, by_email.text)
        if by_email.status_code == 200:
            assert by_email.json()["items"] == []  # a pattern character matched nothing
        by_cursor = await backend_api.get(USERS, params={"cursor": value})
        assert by_cursor.status_code == 422, (value, by_cursor.text)
        by_path = await backend_api.get(USERS + quote(value, safe=""))
        assert by_path.status_code in (404, 422), (value, by_path.text)
        assert PROBLEM in by_path.headers["content-type"]


async def test_the_repository_stores_a_nul_exactly_or_refuses_it_with_invalid_value_error(
    backend_url: str,
) -> None:
    """Below the API's schema: a NUL reaches the database, which stores it (SQLite,
    MariaDB) or cannot represent it (PostgreSQL); either way no raw driver error."""
    session = SQLAlchemySession(DatabaseConfig(backend_url))
    await session.start()
    uow = SQLAlchemyUnitOfWorkFactory(session, SqlUserRepository)
    tag = uuid.uuid4().hex[:12]
    new = NewUser("nul\x00first", "nul\x00last", f"nul\x00{tag}@example.com", f"nul\x00{tag}")
    user = User.register(new, id=uuid.uuid4(), now=datetime.now(UTC))
    try:
        try:
            async with uow() as tx:
                await tx.repository.add(user)
                await tx.commit()
        except InvalidValueError:
            stored = None
        else:
            async with uow(read_only=True) as tx:
                stored = await tx.repository.get(user.id)
            assert stored == user
        async with uow(read_only=True) as tx:
            try:
                by_email = await tx.repository.get_by_email(user.email_key)
            except InvalidValueError:
                by_email = None
        assert by_email == stored
        print(f"\n{session.primary.dialect.name}: NUL {'refused' if stored is None else 'stored'}")
    finally:
        await session.close()


@pytest.mark.parametrize(
    "path", ["/api/v1/users/%0A", "/api/v1/users/x%00", "/health/ready%0A", "/metrics%0D%0A"]
)
async def test_a_path_with_a_control_character_names_no_resource(
    api: httpx.AsyncClient, path: str
) -> None:
    """Python's ``$`` also matches before a final newline: without the guard, the list
    route would answer ``GET /api/v1/users/%0A`` (found by schemathesis)."""
    response = await api.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM
