"""The repository and unit-of-work contract, pinned once and run on every backend."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.users.domain import User
from app.users.repository import UserRepository
from building_blocks.errors import (
    DuplicateKeyError,
    InvalidQueryError,
    NotFoundError,
    StaleVersionError,
)
from building_blocks.uow import UnitOfWorkFactory

Uow = UnitOfWorkFactory[UserRepository]
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_user(n: int, *, created_at: datetime | None = None, active: bool = True) -> User:
    when = created_at or T0 + timedelta(seconds=n)
    return User(
        id=uuid.uuid4(),
        first_name=f"First{n}",
        last_name=f"Last{n}",
        email=f"user{n}@example.com",
        username=f"user{n}",
        is_active=active,
        created_at=when,
        updated_at=when,
    )


async def add(uow: Uow, *entities: User) -> None:
    async with uow() as tx:
        await tx.repository.add_many(entities)
        await tx.commit()


async def test_add_then_get_returns_an_equal_user_with_aware_microsecond_timestamps(
    uow: Uow,
) -> None:
    user = make_user(1)
    await add(uow, user)
    async with uow(read_only=True) as tx:
        stored = await tx.repository.get(user.id)
    assert stored == user
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.microsecond == 678901


async def test_get_of_an_unknown_id_raises_not_found_and_get_or_none_returns_none(uow: Uow) -> None:
    unknown = uuid.uuid4()
    async with uow(read_only=True) as tx:
        with pytest.raises(NotFoundError):
            await tx.repository.get(unknown)
        assert await tx.repository.get_or_none(unknown) is None
        assert await tx.repository.exists(unknown) is False


async def test_get_many_keeps_the_requested_order_and_skips_missing_ids(uow: Uow) -> None:
    a, b, c = make_user(1), make_user(2), make_user(3)
    await add(uow, a, b, c)
    async with uow(read_only=True) as tx:
        found = await tx.repository.get_many([c.id, uuid.uuid4(), a.id, c.id])
    assert [u.id for u in found] == [c.id, a.id]


async def test_keyset_pages_visit_every_user_once_newest_first_even_with_equal_timestamps(
    uow: Uow,
) -> None:
    same_time = T0 + timedelta(minutes=5)
    users = [make_user(n) for n in range(7)] + [
        make_user(n, created_at=same_time) for n in range(7, 12)
    ]
    await add(uow, *users)
    seen: list[User] = []
    cursor = None
    async with uow(read_only=True) as tx:
        while True:
            page = await tx.repository.list(limit=5, cursor=cursor)
            seen.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    # Each user exactly once, newest first. Ties are broken by id in the database's own
    # order of ids (MariaDB's native UUID type sorts its segments differently).
    assert sorted(u.id for u in seen) == sorted(u.id for u in users)
    assert len(seen) == len(users)
    assert [u.created_at for u in seen] == sorted((u.created_at for u in users), reverse=True)


async def test_list_filters_by_is_active_and_counts_match(uow: Uow) -> None:
    users = [make_user(n, active=n % 3 != 0) for n in range(9)]
    await add(uow, *users)
    async with uow(read_only=True) as tx:
        active = await tx.repository.get_active_users(limit=100)
        inactive = await tx.repository.list(filters={"is_active": False}, limit=100)
        assert await tx.repository.count(filters={"is_active": True}) == 6
        assert await tx.repository.count() == 9
    assert {u.id for u in active.items} == {u.id for u in users if u.is_active}
    assert {u.id for u in inactive.items} == {u.id for u in users if not u.is_active}


async def test_offset_skips_rows_in_list_order(uow: Uow) -> None:
    users = [make_user(n) for n in range(6)]
    await add(uow, *users)
    async with uow(read_only=True) as tx:
        page = await tx.repository.list(order_by=["created_at"], limit=2, offset=3)
    assert [u.id for u in page.items] == [users[3].id, users[4].id]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cursor": "not-a-cursor"},
        {"filters": {"password": "x"}},
        {"order_by": ["email"]},
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
    ],
)
async def test_bad_listing_arguments_raise_invalid_query(
    uow: Uow, kwargs: dict[str, object]
) -> None:
    async with uow(read_only=True) as tx:
        with pytest.raises(InvalidQueryError):
            await tx.repository.list(**kwargs)  # type: ignore[arg-type]


async def test_a_cursor_made_for_one_order_is_refused_for_another(uow: Uow) -> None:
    await add(uow, *(make_user(n) for n in range(3)))
    async with uow(read_only=True) as tx:
        page = await tx.repository.list(limit=1)
        assert page.next_cursor is not None
        with pytest.raises(InvalidQueryError):
            await tx.repository.list(limit=1, cursor=page.next_cursor, order_by=["created_at"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "USER1@Example.COM", "username": "other"}, "email"),
        ({"email": "other@example.com", "username": "USER1"}, "username"),
    ],
)
async def test_duplicate_email_or_username_in_any_case_is_a_duplicate_key_naming_the_field(
    uow: Uow, change: dict[str, str], field: str
) -> None:
    first = make_user(1)
    await add(uow, first)
    clash = _replace(make_user(2), **change)
    async with uow() as tx:
        with pytest.raises(DuplicateKeyError) as caught:
            await tx.repository.add(clash)
    assert caught.value.fields == (field,)


async def test_adding_an_existing_id_is_a_duplicate_key_on_id(uow: Uow) -> None:
    user = make_user(1)
    await add(uow, user)
    async with uow() as tx:
        with pytest.raises(DuplicateKeyError) as caught:
            await tx.repository.add(_replace(make_user(2), id=user.id))
    assert caught.value.fields == ("id",)


async def test_add_many_inserts_more_rows_than_one_statement_can_carry(uow: Uow) -> None:
    # 11 columns: SQLite's 32766-parameter limit forces at least two INSERT chunks.
    users = [make_user(n) for n in range(3100)]
    await add(uow, *users)
    async with uow(read_only=True) as tx:
        assert await tx.repository.count() == 3100
        assert (await tx.repository.get(users[-1].id)) == users[-1]


async def test_a_duplicate_inside_add_many_leaves_nothing_behind(uow: Uow) -> None:
    users = [make_user(1), make_user(2), _replace(make_user(3), email="user1@example.com")]
    with pytest.raises(DuplicateKeyError):
        await add(uow, *users)
    async with uow(read_only=True) as tx:
        assert await tx.repository.count() == 0


async def test_update_checks_and_increments_the_version(uow: Uow) -> None:
    user = make_user(1)
    await add(uow, user)
    async with uow() as tx:
        stored = await tx.repository.update(_replace(user, first_name="Renamed"))
        await tx.commit()
    assert stored.version == 2
    async with uow(read_only=True) as tx:
        assert (await tx.repository.get(user.id)) == stored
    async with uow() as tx:
        with pytest.raises(StaleVersionError) as caught:
            await tx.repository.update(_replace(user, first_name="Lost update"))
    assert (caught.value.expected, caught.value.actual) == (1, 2)


async def test_update_of_a_missing_user_raises_not_found(uow: Uow) -> None:
    async with uow() as tx:
        with pytest.raises(NotFoundError):
            await tx.repository.update(make_user(1))


async def test_update_to_a_taken_email_is_a_duplicate_key(uow: Uow) -> None:
    a, b = make_user(1), make_user(2)
    await add(uow, a, b)
    async with uow() as tx:
        with pytest.raises(DuplicateKeyError) as caught:
            await tx.repository.update(_replace(b, email="USER1@example.com"))
    assert caught.value.fields == ("email",)


async def test_delete_removes_and_checks_the_expected_version(uow: Uow) -> None:
    a, b = make_user(1), make_user(2)
    await add(uow, a, b)
    async with uow() as tx:
        with pytest.raises(StaleVersionError):
            await tx.repository.delete(a.id, expected_version=7)
        await tx.repository.delete(a.id, expected_version=1)
        await tx.repository.delete(b.id)
        await tx.commit()
    async with uow() as tx:
        assert await tx.repository.count() == 0
        with pytest.raises(NotFoundError):
            await tx.repository.delete(a.id)


async def test_get_by_email_ignores_case(uow: Uow) -> None:
    user = make_user(1)
    await add(uow, user)
    async with uow(read_only=True) as tx:
        assert await tx.repository.get_by_email("USER1@EXAMPLE.com") == user
        assert await tx.repository.get_by_email("nobody@example.com") is None


async def test_leaving_a_unit_of_work_without_commit_rolls_back(uow: Uow) -> None:
    async with uow() as tx:
        await tx.repository.add(make_user(1))

    async def fail_midway() -> None:
        async with uow() as tx:
            await tx.repository.add(make_user(2))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_midway()
    async with uow(read_only=True) as tx:
        assert await tx.repository.count() == 0


async def test_after_commit_callbacks_run_after_commit_and_never_after_rollback(uow: Uow) -> None:
    calls: list[str] = []

    async def record_committed() -> None:
        async with uow(read_only=True) as reader:
            calls.append(f"visible={await reader.repository.count()}")

    user = make_user(1)
    async with uow() as tx:
        await tx.repository.add(user)
        tx.on_commit(record_committed)
        await tx.commit()
    async with uow() as tx:
        await tx.repository.add(make_user(2))
        tx.on_commit(record_committed)
    assert calls == ["visible=1"]


async def test_a_read_only_unit_of_work_cannot_commit(uow: Uow) -> None:
    async with uow(read_only=True) as tx:
        with pytest.raises(RuntimeError):
            await tx.commit()


async def test_uncommitted_writes_are_invisible_to_other_units(uow: Uow) -> None:
    async with uow() as writer:
        await writer.repository.add(make_user(1))
        async with uow(read_only=True) as reader:
            assert await reader.repository.count() == 0
        await writer.commit()
    async with uow(read_only=True) as reader:
        assert await reader.repository.count() == 1


def _replace(user: User, **changes: object) -> User:
    return dataclasses.replace(user, **changes)  # type: ignore[arg-type]
