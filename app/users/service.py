"""Use cases of the users service. Knows units of work and the domain; not HTTP, not SQL."""

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
from building_blocks.uow import UnitOfWorkFactory

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
        try:
            async with self._uow() as uow:
                await uow.repository.add(user)
                await uow.commit()
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
        async with self._uow() as uow:
            existing = await uow.repository.get_or_none(new.id)
        if existing is None:
            return None
        if not existing.matches(new):
            raise UserIdTakenError
        return existing

    async def get(self, user_id: UUID) -> User:
        async with self._uow(read_only=True) as uow:
            user = await uow.repository.get_or_none(user_id)
        if user is None:
            raise UserNotFoundError(user_id)
        return user

    async def get_by_email(self, email: str) -> User | None:
        async with self._uow(read_only=True) as uow:
            return await uow.repository.get_by_email(email)

    async def list(
        self, *, is_active: bool | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[User]:
        filters = {} if is_active is None else {"is_active": is_active}
        async with self._uow(read_only=True) as uow:
            return await uow.repository.list(filters=filters, limit=limit, cursor=cursor)

    async def update(
        self, user_id: UUID, changes: Mapping[str, Any], *, expected_version: int | None = None
    ) -> User:
        async with self._uow() as uow:
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

    async def delete(self, user_id: UUID, *, expected_version: int | None = None) -> None:
        try:
            async with self._uow() as uow:
                await uow.repository.delete(user_id, expected_version=expected_version)
                await uow.commit()
        except NotFoundError:
            raise UserNotFoundError(user_id) from None
