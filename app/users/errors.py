"""Errors of the users context, placed in the `building_blocks` error tree so the HTTP
glue maps them without knowing about users."""

from __future__ import annotations

from uuid import UUID

from building_blocks.errors import DuplicateKeyError, NotFoundError

__all__ = ["UserIdTakenError", "UserNotFoundError"]


class UserNotFoundError(NotFoundError):
    def __init__(self, user_id: UUID) -> None:
        super().__init__("user", user_id)


class UserIdTakenError(DuplicateKeyError):
    """A create re-used an existing id with different data: it is not a replay."""

    def __init__(self) -> None:
        super().__init__("user", ("id",))
