"""`InMemoryRepository[T]`: the in-memory twin of `SQLAlchemyRepository`.

It keeps the same contract (errors, ordering, keyset cursors, optimistic versions, unique
keys) so unit tests and the demo can run without a database. It stores frozen entities
in a `InMemoryTransaction`'s table (see `building_blocks.uow.memory`).
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from building_blocks.errors import (
    DuplicateKeyError,
    InvalidQueryError,
    NotFoundError,
    StaleVersionError,
)
from building_blocks.repository.cursor import decode_cursor, encode_cursor
from building_blocks.repository.protocol import Filters, Page, split_order, validate_page_args

__all__ = ["InMemoryRepository", "InMemoryTable"]

T = TypeVar("T")

#: A table: entities by id. Units of work hand repositories one of these.
InMemoryTable = dict[Any, Any]


class _Reversed:
    """Wraps a sort key so that ``sorted`` orders it descending inside a tuple."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


class InMemoryRepository(Generic[T]):
    """Repository over a dict of dataclass entities, with the SQL repository's behaviour.

    Subclasses set ``entity_type``, a dataclass (frozen ones work: updates use
    `dataclasses.replace`); its fields are what may be filtered and sorted on by default.
    ``unique_keys`` maps a field name to the function that makes its unique key, e.g.
    ``{"email": lambda u: u.email.lower()}``.
    """

    entity_type: ClassVar[type[Any]]
    entity_name: ClassVar[str] = "entity"
    id_field: ClassVar[str] = "id"
    version_field: ClassVar[str | None] = "version"
    default_order: ClassVar[Sequence[str]] = ("id",)
    max_page_size: ClassVar[int] = 1000
    filterable: ClassVar[frozenset[str] | None] = None
    sortable: ClassVar[frozenset[str] | None] = None
    unique_keys: ClassVar[Mapping[str, Callable[[Any], Hashable]]] = {}

    def __init__(self, table: InMemoryTable) -> None:
        self._rows: dict[Any, T] = table

    def _key(self, entity: T) -> Any:
        return getattr(entity, self.id_field)

    def _fields(self) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(self.entity_type))

    # -- reads ---------------------------------------------------------------------------

    async def get(self, id: Any) -> T:
        entity = await self.get_or_none(id)
        if entity is None:
            raise NotFoundError(self.entity_name, id)
        return entity

    async def get_or_none(self, id: Any) -> T | None:
        return self._rows.get(id)

    async def get_many(self, ids: Iterable[Any]) -> builtins.list[T]:
        return [self._rows[i] for i in dict.fromkeys(ids) if i in self._rows]

    async def list(
        self,
        *,
        filters: Filters | None = None,
        order_by: Sequence[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> Page[T]:
        validate_page_args(limit, offset, self.max_page_size)
        order = split_order(
            order_by,
            self.default_order,
            id_field=self.id_field,
            allowed=self.sortable if self.sortable is not None else self._fields(),
        )
        rows = self._matching(filters)

        def sort_key(entity: T) -> tuple[Any, ...]:
            return tuple(
                _Reversed(getattr(entity, n)) if desc else getattr(entity, n) for n, desc in order
            )

        rows.sort(key=sort_key)
        if cursor is not None:
            values = decode_cursor(cursor, order)
            bound = tuple(
                _Reversed(v) if desc else v for v, (_, desc) in zip(values, order, strict=True)
            )
            rows = [r for r in rows if bound < sort_key(r)]
        if offset:
            rows = rows[offset:]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(order, [getattr(rows[-1], n) for n, _ in order])
        return Page(rows, next_cursor)

    async def count(self, *, filters: Filters | None = None) -> int:
        return len(self._matching(filters))

    async def exists(self, id: Any) -> bool:
        return id in self._rows

    # -- writes --------------------------------------------------------------------------

    async def add(self, entity: T) -> T:
        self._check_unique(entity, replacing=None)
        self._rows[self._key(entity)] = entity
        return entity

    async def add_many(self, entities: Iterable[T]) -> builtins.list[T]:
        batch = list(entities)
        staged = dict(self._rows)
        try:
            for entity in batch:
                await self.add(entity)
        except DuplicateKeyError:
            # All or nothing, as one INSERT statement is in SQL.
            self._rows.clear()
            self._rows.update(staged)
            raise
        return batch

    async def update(self, entity: T) -> T:
        key = self._key(entity)
        stored = self._rows.get(key)
        if stored is None:
            raise NotFoundError(self.entity_name, key)
        if self.version_field is not None:
            expected = getattr(entity, self.version_field)
            actual = getattr(stored, self.version_field)
            if expected != actual:
                raise StaleVersionError(self.entity_name, key, expected, actual)
            entity = dataclasses.replace(entity, **{self.version_field: expected + 1})  # type: ignore[type-var]
        self._check_unique(entity, replacing=key)
        self._rows[key] = entity
        return entity

    async def delete(self, id: Any, *, expected_version: int | None = None) -> None:
        stored = self._rows.get(id)
        if stored is None:
            raise NotFoundError(self.entity_name, id)
        if expected_version is not None and self.version_field is not None:
            actual = getattr(stored, self.version_field)
            if actual != expected_version:
                raise StaleVersionError(self.entity_name, id, expected_version, actual)
        del self._rows[id]

    # -- helpers -------------------------------------------------------------------------

    def _matching(self, filters: Filters | None) -> builtins.list[T]:
        rows = list(self._rows.values())
        allowed = self.filterable if self.filterable is not None else self._fields()
        for name, value in (filters or {}).items():
            if name not in allowed:
                raise InvalidQueryError(f"cannot filter by {name!r}")
            if isinstance(value, builtins.list | tuple | set | frozenset):
                rows = [r for r in rows if getattr(r, name) in value]
            elif value is None:
                rows = [r for r in rows if getattr(r, name) is None]
            else:
                rows = [r for r in rows if getattr(r, name) == value]
        return rows

    def _check_unique(self, entity: T, *, replacing: Any) -> None:
        key = self._key(entity)
        if replacing is None and key in self._rows:
            raise DuplicateKeyError(self.entity_name, (self.id_field,))
        for field, make_key in self.unique_keys.items():
            value = make_key(entity)
            for other_key, other in self._rows.items():
                if other_key != key and make_key(other) == value:
                    raise DuplicateKeyError(self.entity_name, (field,))
