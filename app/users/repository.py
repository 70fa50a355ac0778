"""Persistence of users: the repository contract and its SQL and in-memory implementations."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar, Protocol

from sqlalchemy import Table

from app.users.domain import User
from app.users.tables import users
from building_blocks.db import Connection
from building_blocks.repository import InMemoryRepository, Page, Repository, SQLAlchemyRepository
from building_blocks.uow import InMemoryTransaction

__all__ = ["InMemoryUserRepository", "SqlUserRepository", "UserRepository"]

#: Newest first; the id breaks ties (added by the repository).
DEFAULT_ORDER = ("-created_at",)
FILTERABLE = frozenset({"is_active"})
SORTABLE = frozenset({"created_at", "id"})


class UserRepository(Repository[User], Protocol):
    async def get_by_email(self, email: str) -> User | None: ...

    async def get_active_users(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> Page[User]: ...


class SqlUserRepository(SQLAlchemyRepository[User]):
    table: ClassVar[Table] = users
    entity_name = "user"
    default_order = DEFAULT_ORDER
    max_page_size = 100
    filterable = FILTERABLE
    sortable = SORTABLE
    field_names: ClassVar[Mapping[str, str]] = {"email_key": "email", "username_key": "username"}

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)

    def _row_to_entity(self, row: Mapping[str, Any]) -> User:
        return User(
            id=row["id"],
            first_name=row["first_name"],
            last_name=row["last_name"],
            email=row["email"],
            username=row["username"],
            is_active=bool(row["is_active"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            version=row["version"],
        )

    def _entity_to_dict(self, entity: User) -> dict[str, Any]:
        return {
            "id": entity.id,
            "first_name": entity.first_name,
            "last_name": entity.last_name,
            "email": entity.email,
            "email_key": entity.email_key,
            "username": entity.username,
            "username_key": entity.username_key,
            "is_active": entity.is_active,
            "created_at": entity.created_at,
            "updated_at": entity.updated_at,
            "version": entity.version,
        }

    async def get_by_email(self, email: str) -> User | None:
        return await self._one(users.select().where(users.c.email_key == email.lower()))

    async def get_active_users(self, *, limit: int = 50, cursor: str | None = None) -> Page[User]:
        return await self.list(filters={"is_active": True}, limit=limit, cursor=cursor)


class InMemoryUserRepository(InMemoryRepository[User]):
    entity_type = User
    entity_name = "user"
    default_order = DEFAULT_ORDER
    max_page_size = 100
    filterable = FILTERABLE
    sortable = SORTABLE
    unique_keys: ClassVar[Mapping[str, Callable[[Any], Hashable]]] = {
        "email": lambda u: u.email_key,
        "username": lambda u: u.username_key,
    }

    def __init__(self, transaction: InMemoryTransaction) -> None:
        super().__init__(transaction.table("users"))

    async def get_by_email(self, email: str) -> User | None:
        key = email.lower()
        return next((u for u in self._rows.values() if u.email_key == key), None)

    async def get_active_users(self, *, limit: int = 50, cursor: str | None = None) -> Page[User]:
        return await self.list(filters={"is_active": True}, limit=limit, cursor=cursor)
