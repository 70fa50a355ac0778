"""HTTP shapes of users (pydantic). Strict: unknown fields, control characters and
oversized values are refused with 422 before anything reaches the database."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from app.users.domain import User

__all__ = ["UserCreate", "UserOut", "UserPage", "UserUpdate"]


def _printable(value: str) -> str:
    # NUL and other control characters are refused: PostgreSQL cannot store NUL in text,
    # and a name with a newline or escape code is never intended.
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
]
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
]
Email = Annotated[EmailStr, StringConstraints(max_length=254)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID | None = Field(
        default=None,
        description="Optional client-chosen id: re-sending the same create is then safe.",
    )
    first_name: Name
    last_name: Name
    email: Email
    username: Username
    is_active: bool = True


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: Name | None = None
    last_name: Name | None = None
    email: Email | None = None
    username: Username | None = None
    is_active: bool | None = None
    version: int | None = Field(
        default=None, ge=1, description="The version the change is based on (or send If-Match)."
    )


class UserOut(BaseModel):
    id: UUID
    first_name: str
    last_name: str
    email: str
    username: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            first_name=user.first_name,
            last_name=user.last_name,
            email=user.email,
            username=user.username,
            is_active=user.is_active,
            created_at=user.created_at,
            updated_at=user.updated_at,
            version=user.version,
        )


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )
