"""How cached values become bytes and back: JSON, typed, no pickle.

`JsonCodec` writes with orjson (dataclasses, UUIDs, datetimes natively) and reads with a
pydantic `TypeAdapter`, which parses JSON in Rust straight into the declared type (a
frozen dataclass, a generic `Page[User]`...). Decoding never executes code chosen by
the data, unlike pickle: whoever can write to Redis cannot run code in the service.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

import orjson
from pydantic import TypeAdapter

__all__ = ["Codec", "JsonCodec"]

T = TypeVar("T")


class Codec(Protocol[T]):
    def encode(self, value: T) -> bytes: ...

    def decode(self, data: bytes) -> T:
        """The value; raises `ValueError` for bytes it cannot read (treated as a miss)."""
        ...


class JsonCodec(Generic[T]):
    """JSON codec for one type: ``JsonCodec(User)``, ``JsonCodec(Page[User])``."""

    __slots__ = ("_adapter", "type")

    def __init__(self, type_: Any) -> None:
        self.type = type_
        self._adapter: TypeAdapter[T] = TypeAdapter(type_)

    def encode(self, value: T) -> bytes:
        return orjson.dumps(value, default=_default)

    def decode(self, data: bytes) -> T:
        # pydantic's ValidationError is a ValueError: one exception type for callers.
        return self._adapter.validate_json(data)

    def __repr__(self) -> str:
        return f"JsonCodec({getattr(self.type, '__name__', self.type)!r})"


def _default(value: Any) -> Any:
    """What orjson does not write itself: subclasses of the types it knows (asyncpg
    returns its own `UUID` subclass) and Decimal."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot cache a {type(value).__name__}")
