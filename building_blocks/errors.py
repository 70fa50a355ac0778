"""The one error tree of `building_blocks`.

Every failure that crosses the library's boundary is one of these, raised ``from`` the
driver's own exception so the cause stays in the traceback::

    DataError
    ├── NotFoundError            the entity does not exist
    ├── ConflictError            the write contradicts what is stored
    │   ├── DuplicateKeyError    a unique key (primary or secondary) is taken
    │   └── StaleVersionError    optimistic lock: the entity changed since it was read
    ├── InvalidQueryError        a bad filter, cursor or order, caught before any SQL runs
    │   └── InvalidValueError    a value the database cannot represent (NUL in PostgreSQL text)
    ├── UnavailableError         the database cannot answer now; retrying later may work
    │   ├── PoolTimeoutError     no connection became free within the pool timeout
    │   └── QueryTimeoutError    the statement ran past its time limit
    └── ConfigurationError       no retry can help: bad password, unknown database, bad URL

Only the FastAPI glue (``building_blocks.fastapi``) knows which HTTP status each maps to.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "DataError",
    "DuplicateKeyError",
    "InvalidQueryError",
    "InvalidValueError",
    "NotFoundError",
    "PoolTimeoutError",
    "QueryTimeoutError",
    "StaleVersionError",
    "UnavailableError",
]


class DataError(Exception):
    """Base of every error raised by the data layer."""


class NotFoundError(DataError):
    """The entity asked for does not exist."""

    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"{entity} {key} not found")
        self.entity = entity
        self.key = key


class ConflictError(DataError):
    """The write contradicts the stored state; the client must re-read or change its input."""


class DuplicateKeyError(ConflictError):
    """A unique constraint was violated.

    ``fields`` names the entity fields of the violated key when they are known (they are
    resolved from the table's constraints); ``constraint`` is the database's name for it.
    """

    def __init__(
        self,
        entity: str,
        fields: Sequence[str] = (),
        *,
        constraint: str | None = None,
    ) -> None:
        what = ", ".join(fields) if fields else (constraint or "a unique key")
        super().__init__(f"{entity} with the same {what} already exists")
        self.entity = entity
        self.fields = tuple(fields)
        self.constraint = constraint


class StaleVersionError(ConflictError):
    """Optimistic concurrency: the stored version is not the one the write was based on."""

    def __init__(self, entity: str, key: object, expected: int, actual: int | None) -> None:
        super().__init__(
            f"{entity} {key} is at version {actual}, the write expected version {expected}"
        )
        self.entity = entity
        self.key = key
        self.expected = expected
        self.actual = actual


class InvalidQueryError(DataError):
    """A query argument (filter field, cursor, order) is not valid for this repository."""


class InvalidValueError(InvalidQueryError):
    """The database refused a value it cannot represent: a NUL character in PostgreSQL
    text, a character outside a MySQL column's character set. Input the client can fix,
    never a reason to retry."""


class UnavailableError(DataError):
    """The database could not serve the request now (down, unreachable, overloaded).

    ``retry_after`` is a hint, in seconds, for when a retry is worth trying. ``reason``
    says what kind of failure it was, as `building_blocks.db.transient` names it
    (``disconnect``, ``conflict``, ``busy``, ``fatal``; ``None`` when unknown): retry
    policies read it. The message never contains a connection URL or a password.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float = 1.0,
        pool: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.pool = pool
        self.reason = reason


class PoolTimeoutError(UnavailableError):
    """Every connection of the pool stayed busy for longer than the pool timeout."""


class QueryTimeoutError(UnavailableError):
    """A statement was cancelled because it ran past the configured statement timeout."""


class ConfigurationError(DataError):
    """The database refuses us for a reason no retry can fix (bad password, unknown
    database, bad URL, missing driver). The message names the cause, never the password."""
