"""`user_json`/`page_json` write exactly what FastAPI would have written for `UserOut` and
`UserPage` (the routes return them as bytes, skipping pydantic's validation)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.users.domain import User
from app.users.schemas import UserOut, UserPage, page_json, user_json


def _user(created: datetime, **changes: object) -> User:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "first_name": "Zoë",
        "last_name": 'O"Brien \\ ✓',
        "email": "zoe@example.com",
        "username": "zoe",
        "is_active": True,
        "created_at": created,
        "updated_at": created,
        "version": 3,
        **changes,
    }
    return User(**fields)  # type: ignore[arg-type]


USERS = [
    _user(datetime(2024, 1, 1, tzinfo=UTC)),
    _user(datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), is_active=False, version=1),
    _user(datetime(2024, 5, 6, 7, 8, 9, 120000, tzinfo=UTC), version=2**31 - 1),
]


@pytest.mark.parametrize("user", USERS, ids=["whole-seconds", "microseconds", "trailing-zero"])
def test_user_json_is_what_pydantic_writes(user: User) -> None:
    assert user_json(user) == UserOut.of(user).model_dump_json().encode()


def test_user_json_writes_uuid_subclasses() -> None:
    class DriverUUID(uuid.UUID):  # asyncpg hands out its own subclass
        pass

    user = _user(datetime(2024, 1, 1, tzinfo=UTC), id=DriverUUID(int=7))
    assert user_json(user) == UserOut.of(user).model_dump_json().encode()


@pytest.mark.parametrize("cursor", [None, "abc"])
def test_page_json_is_what_pydantic_writes(cursor: str | None) -> None:
    page = UserPage(items=[UserOut.of(u) for u in USERS], next_cursor=cursor)
    assert page_json(USERS, cursor) == page.model_dump_json().encode()
    assert page_json([], None) == b'{"items":[],"next_cursor":null}'
