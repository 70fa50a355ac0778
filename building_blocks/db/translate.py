"""Turn driver exceptions into the `building_blocks.errors` tree, for every dialect.

This is the one place that knows SQLSTATEs and vendor error numbers. Callers translate at
the boundary (`Connection` does it for every statement) and raise ``from`` the original.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from building_blocks.db.transient import Transience, classify
from building_blocks.errors import (
    ConflictError,
    DataError,
    DuplicateKeyError,
    InvalidValueError,
    PoolTimeoutError,
    QueryTimeoutError,
    UnavailableError,
)

__all__ = ["DuplicateKey", "is_driver_disconnect", "parse_duplicate_key", "translate_error"]

# Which errors mean "the database cannot answer now" is decided by the one table of
# `building_blocks.db.transient`; only timeouts and unique keys are told apart here.
_PG_TIMEOUT = {"57014"}  # query_canceled (statement_timeout)
_PG_UNIQUE = "23505"
# character_not_in_repertoire (a NUL in text), untranslatable_character.
_PG_UNREPRESENTABLE = {"22021", "22P05"}

# MySQL / MariaDB error numbers.
_MY_TIMEOUT = {1969, 3024}  # MariaDB max_statement_time, MySQL max_execution_time
_MY_UNIQUE = 1062
_MY_UNREPRESENTABLE = {1300, 1366}  # invalid character string, incorrect string value

# SQL Server native error numbers.
_MS_UNIQUE = {2627, 2601}


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    """What a driver told us about a unique violation: a constraint name and/or columns."""

    constraint: str | None
    columns: tuple[str, ...]


def _sqlstate(orig: BaseException) -> str | None:
    for candidate in (orig, orig.__cause__):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _vendor_code(orig: BaseException) -> int | None:
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    # pyodbc puts the native error number inside the message: "... (2627) ..."
    match = re.search(r"\((\d{3,5})\)", str(orig))
    return int(match.group(1)) if match else None


_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<cols>.+)")
_MYSQL_UNIQUE = re.compile(r"Duplicate entry .* for key '(?P<key>[^']+)'")
_MSSQL_CONSTRAINT = re.compile(r"constraint '(?P<key>[^']+)'")
_MSSQL_INDEX = re.compile(r"unique index '(?P<key>[^']+)'")


def parse_duplicate_key(exc: BaseException, dialect: str) -> DuplicateKey | None:
    """If ``exc`` is a unique-key violation, say which key; otherwise ``None``."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if orig is None:
        return None
    message = str(orig)
    if dialect == "postgresql":
        if _sqlstate(orig) != _PG_UNIQUE:
            return None
        constraint = getattr(orig.__cause__, "constraint_name", None)
        return DuplicateKey(constraint if isinstance(constraint, str) else None, ())
    if dialect in ("mysql", "mariadb"):
        if _vendor_code(orig) != _MY_UNIQUE:
            return None
        match = _MYSQL_UNIQUE.search(message)
        # MySQL 8 prefixes the key with the table name ("users.uq_users_email").
        key = match.group("key").rsplit(".", 1)[-1] if match else None
        return DuplicateKey("PRIMARY" if key == "PRIMARY" else key, ())
    if dialect == "sqlite":
        match = _SQLITE_UNIQUE.search(message)
        if match is None:
            return None
        cols = tuple(part.strip().rsplit(".", 1)[-1] for part in match.group("cols").split(","))
        return DuplicateKey(None, cols)
    if dialect == "mssql":
        if _vendor_code(orig) not in _MS_UNIQUE:
            return None
        match = _MSSQL_CONSTRAINT.search(message) or _MSSQL_INDEX.search(message)
        return DuplicateKey(match.group("key") if match else None, ())
    return None


def _is_raw_driver_error(exc: BaseException) -> bool:
    """An exception straight from asyncpg (direct reads run on the driver, see direct.py)."""
    return type(exc).__module__.startswith("asyncpg")


def is_driver_disconnect(exc: BaseException, driver_connection: object | None) -> bool:
    """Whether a raw driver error means the connection is unusable (not the statement)."""
    is_closed = getattr(driver_connection, "is_closed", None)
    if callable(is_closed) and is_closed():
        return True
    if isinstance(exc, ConnectionError | OSError):
        return True
    if classify(exc, "postgresql") is Transience.DISCONNECT:
        return True
    # asyncpg's InterfaceError family without a SQLSTATE: "connection is closed" & co.
    return _is_raw_driver_error(exc) and "connection" in str(exc).lower()


def _unrepresentable(pool: str) -> InvalidValueError:
    return InvalidValueError(f"the database {pool!r} cannot represent a value of the request")


def _translate_raw(exc: BaseException, pool: str, entity: str) -> DataError | None:
    state = _sqlstate(exc)
    if state in _PG_UNREPRESENTABLE:
        return _unrepresentable(pool)
    if state in _PG_TIMEOUT:
        return QueryTimeoutError(f"a statement on {pool!r} ran past its timeout", pool=pool)
    if state == _PG_UNIQUE:
        constraint = getattr(exc, "constraint_name", None)
        return DuplicateKeyError(entity, (), constraint=constraint)
    kind = classify(exc, "postgresql")
    if kind is not None or is_driver_disconnect(exc, None):
        reason = (kind or Transience.DISCONNECT).value
        return UnavailableError(
            f"database {pool!r} is unavailable", pool=pool, retry_after=1, reason=reason
        )
    return None


def translate_error(
    exc: BaseException, *, dialect: str, pool: str, entity: str = "entity"
) -> DataError | None:
    """Map ``exc`` to the error tree, or ``None`` when it is not a data-layer failure.

    Messages name the pool (``primary``, ``replica-0``), never a URL.
    """
    if isinstance(exc, DataError):
        return exc
    if isinstance(exc, sa_exc.TimeoutError):
        return PoolTimeoutError(f"no free connection in pool {pool!r}", pool=pool, retry_after=1)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        # The client-side bound fired: the server stopped answering mid-statement.
        return QueryTimeoutError(
            f"database {pool!r} did not answer in time", pool=pool, reason="disconnect"
        )
    if isinstance(exc, ConnectionError | OSError):
        return UnavailableError(
            f"database {pool!r} is unreachable", pool=pool, retry_after=2, reason="disconnect"
        )
    if _is_raw_driver_error(exc):
        return _translate_raw(exc, pool, entity)
    if not isinstance(exc, sa_exc.DBAPIError):
        return None

    duplicate = parse_duplicate_key(exc, dialect)
    if duplicate is not None:
        return DuplicateKeyError(entity, duplicate.columns, constraint=duplicate.constraint)

    orig = exc.orig if exc.orig is not None else exc
    state = _sqlstate(orig)
    code = _vendor_code(orig) if dialect in ("mysql", "mariadb", "mssql") else None
    if state in _PG_UNREPRESENTABLE or (code is not None and code in _MY_UNREPRESENTABLE):
        return _unrepresentable(pool)
    if state in _PG_TIMEOUT or (code is not None and code in _MY_TIMEOUT):
        return QueryTimeoutError(f"a statement on {pool!r} ran past its timeout", pool=pool)
    # Bad credentials and unknown databases (FATAL) are also "unavailable" at request
    # time: the client can only wait for an operator, and 503 says so.
    kind = classify(exc, dialect)
    if kind is not None or isinstance(
        orig.__cause__, OSError | ConnectionError | asyncio.TimeoutError
    ):
        reason = kind.value if kind is not None else Transience.DISCONNECT.value
        return UnavailableError(
            f"database {pool!r} is unavailable", pool=pool, retry_after=1, reason=reason
        )
    if isinstance(exc, sa_exc.IntegrityError):
        return ConflictError(f"{entity} violates a constraint of the database")
    if isinstance(exc, sa_exc.OperationalError):
        return UnavailableError(f"database {pool!r} failed the operation", pool=pool)
    return None
