"""The repository contract shared by `SQLAlchemyRepository` and `InMemoryRepository`.

One contract test suite (``tests/contract``) runs against both, so code written against
`Repository` behaves the same on a real database and in memory.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from building_blocks.errors import InvalidQueryError

__all__ = ["Filters", "Page", "Repository", "split_order", "validate_page_args"]

T = TypeVar("T")

#: Equality filters by field name; a list, tuple or set value means "one of".
Filters = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing. ``next_cursor`` is opaque; ``None`` means the last page."""

    items: Sequence[T]
    next_cursor: str | None


class Repository(Protocol[T]):
    """CRUD, listing and optimistic updates for one kind of entity.

    Errors: `NotFoundError`, `DuplicateKeyError`, `StaleVersionError`, `InvalidQueryError`
    and `UnavailableError` from `building_blocks.errors`.
    """

    async def get(self, id: Any) -> T:
        """The entity with ``id``; `NotFoundError` when there is none."""
        ...

    async def get_or_none(self, id: Any) -> T | None: ...

    async def get_many(self, ids: Iterable[Any]) -> builtins.list[T]:
        """Entities for the ids that exist, in the order the ids were given."""
        ...

    async def list(
        self,
        *,
        filters: Filters | None = None,
        order_by: Sequence[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> Page[T]:
        """A page ordered by ``order_by`` (``"-field"`` descends), ties broken by id.

        Keyset pagination: pass the previous page's ``next_cursor`` to continue. ``offset``
        is accepted for callers that need it, but costs a scan of the skipped rows.
        """
        ...

    async def count(self, *, filters: Filters | None = None) -> int: ...

    async def exists(self, id: Any) -> bool: ...

    async def add(self, entity: T) -> T: ...

    async def add_many(self, entities: Iterable[T]) -> builtins.list[T]: ...

    async def update(self, entity: T) -> T:
        """Store ``entity`` if the stored version equals ``entity``'s version.

        Returns the entity as stored, its version incremented. `StaleVersionError` if the
        stored version differs, `NotFoundError` if the entity is gone.
        """
        ...

    async def delete(self, id: Any, *, expected_version: int | None = None) -> None: ...


def validate_page_args(limit: int, offset: int | None, max_limit: int) -> None:
    """Shared argument checks, so both implementations refuse the same inputs."""
    if not 1 <= limit <= max_limit:
        raise InvalidQueryError(f"limit must be between 1 and {max_limit}")
    if offset is not None and offset < 0:
        raise InvalidQueryError("offset must not be negative")


def split_order(
    order_by: Sequence[str] | None, default: Sequence[str], *, id_field: str, allowed: Iterable[str]
) -> builtins.list[tuple[str, bool]]:
    """``["-created_at"]`` → ``[("created_at", True), ("id", True)]``: (field, descending).

    The id is appended as the last key (in the direction of the first) so that the order
    is total, which keyset pagination needs.
    """
    allowed = set(allowed)
    keys = [(f[1:], True) if f.startswith("-") else (f, False) for f in (order_by or default)]
    if not keys:
        raise InvalidQueryError("order_by must name at least one field")
    for name, _ in keys:
        if name not in allowed:
            raise InvalidQueryError(f"cannot order by {name!r}")
    if all(name != id_field for name, _ in keys):
        keys.append((id_field, keys[0][1]))
    return keys
