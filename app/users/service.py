"""Use cases of the users service. Knows units of work and the domain; not HTTP, not SQL.

Every unit of work runs through `run_in_transaction`: reads are re-run on a fresh
connection (and database) after a disconnect, writes as a whole after a serialization
failure or deadlock; nothing else is retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from app.users.domain import NewUser, User
from app.users.errors import UserIdTakenError, UserNotFoundError
from app.users.repository import UserRepository
from building_blocks.errors import DuplicateKeyError, NotFoundError, StaleVersionError
from building_blocks.repository import Page
from building_blocks.uow import UnitOfWork, UnitOfWorkFactory, run_in_transaction

__all__ = ["UserService"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UserService:
    def __init__(
        self,
        uow: UnitOfWorkFactory[UserRepository],
        *,
        clock: Callable[[], datetime] = _utcnow,
        new_id: Callable[[], UUID] = uuid.uuid4,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._new_id = new_id

    async def register(self, new: NewUser) -> tuple[User, bool]:
        """Create a user; returns ``(user, created)``.

        With a client-chosen id the create is idempotent: a replay of the same request
        returns the stored user with ``created=False``; the same id with other data is a
        conflict.
        """
        if new.id is not None:
            existing = await self._replayed(new)
            if existing is not None:
                return existing, False
        user = User.register(new, id=new.id or self._new_id(), now=self._clock())

        async def add(uow: UnitOfWork[UserRepository]) -> None:
            await uow.repository.add(user)
            await uow.commit()

        try:
            await run_in_transaction(self._uow, add)
        except DuplicateKeyError as exc:
            # Two replays racing: the other one won; answer with what it stored.
            if new.id is None or exc.fields != ("id",):
                raise
            existing = await self._replayed(new)
            if existing is None:
                raise
            return existing, False
        return user, True

    async def _replayed(self, new: NewUser) -> User | None:
        assert new.id is not None  # noqa: S101 - callers check
        # On the primary (not read-only): a replica may not have the first attempt yet.
        new_id = new.id
        existing = await run_in_transaction(
            self._uow, lambda uow: uow.repository.get_or_none(new_id)
        )
        if existing is None:
            return None
        if not existing.matches(new):
            raise UserIdTakenError
        return existing

    async def get(self, user_id: UUID) -> User:
        user = await run_in_transaction(
            self._uow, lambda uow: uow.repository.get_or_none(user_id), read_only=True
        )
        if user is None:
            raise UserNotFoundError(user_id)
        return user

    async def get_by_email(self, email: str) -> User | None:
        return await run_in_transaction(
            self._uow, lambda uow: uow.repository.get_by_email(email), read_only=True
        )

    async def list(
        self, *, is_active: bool | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[User]:
        filters = {} if is_active is None else {"is_active": is_active}
        return await run_in_transaction(
            self._uow,
            lambda uow: uow.repository.list(filters=filters, limit=limit, cursor=cursor),
            read_only=True,
        )

    async def update(
        self, user_id: UUID, changes: Mapping[str, Any], *, expected_version: int | None = None
    ) -> User:
        async def update(uow: UnitOfWork[UserRepository]) -> User:
            current = await uow.repository.get_or_none(user_id)
            if current is None:
                raise UserNotFoundError(user_id)
            if expected_version is not None and expected_version != current.version:
                raise StaleVersionError("user", user_id, expected_version, current.version)
            changed = current.changed(changes, now=self._clock())
            if changed is current:
                return current
            stored = await uow.repository.update(changed)
            await uow.commit()
            return stored

        return await run_in_transaction(self._uow, update)

    async def delete(self, user_id: UUID, *, expected_version: int | None = None) -> None:
        async def delete(uow: UnitOfWork[UserRepository]) -> None:
            await uow.repository.delete(user_id, expected_version=expected_version)
            await uow.commit()

        try:
            await run_in_transaction(self._uow, delete)
        except NotFoundError:
            raise UserNotFoundError(user_id) from None
