"""Use cases of the users service. Knows units of work and the domain; not HTTP, not SQL.

Reads go through the cache first: `get`, `get_by_email` and `list` open a read-only unit
of work only on a miss, so a hit never touches the database. Every write registers the
keys and tags it makes stale with ``Cache.invalidate_on_commit``: applied after the
commit, dropped on rollback.

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
from building_blocks.cache import Cache, CommitHooks, InMemoryCacheBackend, JsonCodec, cached
from building_blocks.errors import DuplicateKeyError, NotFoundError, StaleVersionError
from building_blocks.repository import Page
from building_blocks.uow import UnitOfWork, UnitOfWorkFactory, run_in_transaction

__all__ = ["CACHE_SCHEMA_VERSION", "LISTS_TAG", "UserService"]

#: Bump when `User` or `Page` change shape: new instances then ignore old cached entries.
CACHE_SCHEMA_VERSION = "1"
#: Every cached listing carries this tag; any write to users invalidates them all.
LISTS_TAG = "users:lists"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UserService:
    def __init__(
        self,
        uow: UnitOfWorkFactory[UserRepository],
        *,
        cache: Cache | None = None,
        clock: Callable[[], datetime] = _utcnow,
        new_id: Callable[[], UUID] = uuid.uuid4,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._new_id = new_id
        self._cache = cache or Cache(InMemoryCacheBackend(), namespace="users", enabled=False)
        user = JsonCodec[User](User)
        self._by_id = cached(self._cache, key="user:{user_id}", codec=user)(self._load)
        self._by_email = cached(self._cache, key="user-email:{email_key}", codec=user)(
            self._load_by_email
        )
        self._page = cached(
            self._cache,
            key="users:{is_active}:{limit}:{cursor}",
            codec=JsonCodec[Page[User]](Page[User]),
            tags=(LISTS_TAG,),
        )(self._load_page)

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
            # "Not found" may be cached for this id (client-chosen) or this email.
            self._invalidate_on_commit(uow, user)
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
        user = await self._by_id(user_id)
        if user is None:
            raise UserNotFoundError(user_id)
        return user

    async def get_by_email(self, email: str) -> User | None:
        # One key per user whatever the case the client typed: the key a write
        # invalidates (`User.email_key`) is the one every read uses.
        return await self._by_email(email.lower())

    async def list(
        self, *, is_active: bool | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[User]:
        page = await self._page(is_active, limit, cursor)
        if page is None:  # never: the loader always returns a page
            raise RuntimeError("listing loader returned None")
        return page

    # -- loaders: run on cache misses only, each in its own read-only unit of work ------
    async def _load(self, user_id: UUID) -> User | None:
        return await run_in_transaction(
            self._uow, lambda uow: uow.repository.get_or_none(user_id), read_only=True
        )

    async def _load_by_email(self, email_key: str) -> User | None:
        return await run_in_transaction(
            self._uow, lambda uow: uow.repository.get_by_email(email_key), read_only=True
        )

    async def _load_page(
        self, is_active: bool | None, limit: int, cursor: str | None
    ) -> Page[User]:
        filters = {} if is_active is None else {"is_active": is_active}
        return await run_in_transaction(
            self._uow,
            lambda uow: uow.repository.list(filters=filters, limit=limit, cursor=cursor),
            read_only=True,
        )

    def _invalidate_on_commit(self, uow: CommitHooks, *users: User) -> None:
        """After ``uow`` commits: forget these users (by id and by every email they had)
        and every listing."""
        keys: list[str] = []
        for user in users:
            keys += (self._by_id.key(user.id), self._by_email.key(user.email_key))
        self._cache.invalidate_on_commit(uow, keys=keys, tags=(LISTS_TAG,))

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
            self._invalidate_on_commit(uow, current, changed)  # old and new email
            stored = await uow.repository.update(changed)
            await uow.commit()
            return stored

        return await run_in_transaction(self._uow, update)

    async def delete(self, user_id: UUID, *, expected_version: int | None = None) -> None:
        async def delete(uow: UnitOfWork[UserRepository]) -> None:
            # Read first: the email key to invalidate is known only from the row.
            current = await uow.repository.get(user_id)
            await uow.repository.delete(user_id, expected_version=expected_version)
            self._invalidate_on_commit(uow, current)
            await uow.commit()

        try:
            await run_in_transaction(self._uow, delete)
        except NotFoundError:
            raise UserNotFoundError(user_id) from None
