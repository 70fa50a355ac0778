"""HTTP shapes of users (pydantic). Strict: unknown fields, control characters and
oversized values are refused with 422 before anything reaches the database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated
from uuid import UUID

import orjson
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from app.users.domain import User

__all__ = ["UserCreate", "UserOut", "UserPage", "UserUpdate", "page_json", "user_json"]


# Expressed as patterns so the OpenAPI schema says exactly what is accepted: at least one
# visible character; no control characters (PostgreSQL cannot store NUL, and a newline or
# escape code in a name is never intended); no lone UTF-16 surrogates (not encodable).
_CONTROL = r"\x00-\x1f\x7f"
_NAME_PATTERN = rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"


def _encodable(value: str) -> str:
    # A lone surrogate (JSON "\ud800") decodes to a str no database can store as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _whole_number(value: object) -> object:
    # JSON Schema calls 3.0 an integer; strict pydantic would refuse it, so accept whole
    # floats here and keep refusing strings, booleans and fractions.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=_NAME_PATTERN),
    AfterValidator(_encodable),
]
Version = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(_whole_number)]
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
]


def _email(value: str) -> str:
    # email-validator, told to check syntax only: no DNS, and the reserved "test" domain
    # accepted (JSON Schema's "email" format allows it; staging data uses it).
    try:
        return validate_email(value, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]


# strict: JSON 0 is not false and "1" is not a version.
_BODY = ConfigDict(extra="forbid", strict=True)


class UserCreate(BaseModel):
    model_config = _BODY

    id: UUID | None = Field(
        default=None,
        strict=False,  # FastAPI validates parsed JSON, where a UUID can only be a string
        description="Optional client-chosen id: re-sending the same create is then safe.",
    )
    first_name: Name
    last_name: Name
    email: Email
    username: Username
    is_active: bool = True


class UserUpdate(BaseModel):
    model_config = _BODY

    first_name: Name | None = None
    last_name: Name | None = None
    email: Email | None = None
    username: Username | None = None
    is_active: bool | None = None
    version: Version | None = Field(
        default=None, description="The version the change is based on (or send If-Match)."
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


# Responses are rendered straight from the domain objects with orjson: building `UserOut`
# only to have FastAPI validate and serialize it again cost ~10% of a cached get
# (profiled). The routes still declare `UserOut`/`UserPage` (OpenAPI), and
# tests/unit/test_user_json.py holds these functions to exactly what pydantic writes.
_JSON_OPTIONS = orjson.OPT_UTC_Z


def _fields(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "username": user.username,
        "is_active": user.is_active,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "version": user.version,
    }


def _default(value: object) -> str:
    # asyncpg returns its own UUID subclass, which orjson does not write by itself.
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def user_json(user: User) -> bytes:
    """``user`` as the JSON of `UserOut`."""
    return orjson.dumps(_fields(user), default=_default, option=_JSON_OPTIONS)


def page_json(users: Sequence[User], next_cursor: str | None) -> bytes:
    """A page of users as the JSON of `UserPage`."""
    return orjson.dumps(
        {"items": [_fields(u) for u in users], "next_cursor": next_cursor},
        default=_default,
        option=_JSON_OPTIONS,
    )
