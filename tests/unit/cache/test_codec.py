"""The JSON codec: typed round trips, driver subclasses, refusal of unknown bytes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.users.domain import User
from building_blocks.cache import JsonCodec
from building_blocks.repository import Page


class DriverUUID(uuid.UUID):
    """Stands for asyncpg's own UUID class, a subclass orjson does not know."""


def user(id_: uuid.UUID) -> User:
    now = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    return User(id_, "Ada", "Lovelace", "ada@example.com", "ada", True, now, now, 3)


def test_a_page_of_users_round_trips_with_types_intact() -> None:
    codec = JsonCodec[Page[User]](Page[User])
    page = Page(items=[user(uuid.uuid4())], next_cursor="abc")
    decoded = codec.decode(codec.encode(page))
    assert decoded == page
    assert isinstance(decoded.items[0].id, uuid.UUID)
    assert decoded.items[0].created_at.utcoffset() is not None


def test_uuid_subclasses_from_database_drivers_are_encoded() -> None:
    codec = JsonCodec[User](User)
    raw = uuid.uuid4()
    assert codec.decode(codec.encode(user(DriverUUID(str(raw))))).id == raw


def test_bytes_of_another_shape_are_refused_as_value_errors() -> None:
    with pytest.raises(ValueError, match="validation error"):
        JsonCodec[User](User).decode(b'{"id": "not-a-uuid"}')
    with pytest.raises(ValueError, match="validation error"):
        JsonCodec[User](User).decode(b"\x80\x04pickle")
