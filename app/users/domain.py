"""The user, as the business sees it: plain Python, no SQL, no HTTP, no validation library."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

__all__ = ["EDITABLE_FIELDS", "NewUser", "User"]

#: Fields a partial update may change.
EDITABLE_FIELDS = frozenset({"first_name", "last_name", "email", "username", "is_active"})


@dataclass(frozen=True, slots=True)
class NewUser:
    """What a client asks to register. ``id`` is optional: a client that sends its own can
    safely re-send the same request after a timeout (the create is idempotent)."""

    first_name: str
    last_name: str
    email: str
    username: str
    is_active: bool = True
    id: UUID | None = None


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    first_name: str
    last_name: str
    email: str
    username: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
    version: int = 1

    @classmethod
    def register(cls, new: NewUser, *, id: UUID, now: datetime) -> User:
        return cls(
            id=id,
            first_name=new.first_name,
            last_name=new.last_name,
            email=new.email,
            username=new.username,
            is_active=new.is_active,
            created_at=now,
            updated_at=now,
        )

    @property
    def email_key(self) -> str:
        """Emails are unique regardless of case: ``Alice@X.com`` and ``alice@x.com`` clash."""
        return self.email.lower()

    @property
    def username_key(self) -> str:
        """Usernames too (and MySQL's default collation would compare them so anyway)."""
        return self.username.lower()

    def matches(self, new: NewUser) -> bool:
        """Whether ``new`` is a replay of the request that registered this user."""
        return (
            self.first_name == new.first_name
            and self.last_name == new.last_name
            and self.email_key == new.email.lower()
            and self.username_key == new.username.lower()
            and self.is_active == new.is_active
        )

    def changed(self, changes: Mapping[str, Any], *, now: datetime) -> User:
        """A copy with ``changes`` applied (only `EDITABLE_FIELDS`); same version, which the
        repository checks and increments."""
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise ValueError(f"fields cannot be changed: {sorted(unknown)}")
        if all(getattr(self, k) == v for k, v in changes.items()):
            return self
        return dataclasses.replace(self, **changes, updated_at=now)
