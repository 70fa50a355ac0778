"""The one table of which database errors are transient, and what a retry may do about them.

Every retry decision of the library reads this table: the start-up wait for the primary
(`building_blocks.db.retry`), the unit-of-work runner (`building_blocks.uow.runner`) and the
replica circuit breaker (`building_blocks.db.routing`). `translate` uses it too, so an
error the table calls transient always reaches callers as `UnavailableError`.

Kinds, from the retrier's point of view:

``DISCONNECT``  the connection is gone or never came (refused, reset, admin shutdown,
                server starting up). Nothing of the current transaction survives; whether
                a COMMIT in flight happened is unknown, so only read-only work is re-run.
``CONFLICT``    serialization failure or deadlock: the server rolled the transaction back
                and says a re-run may succeed. The only case where a writing unit of work
                is re-run, as a whole.
``BUSY``        the server is up but refuses more work now (too many connections, lock
                wait timeout, read-only standby during failover). Retried at connect time.
``FATAL``       no retry can fix it: bad credentials, unknown database, bad URL, missing
                driver. Start-up fails at once with a message naming the cause.
"""

from __future__ import annotations

import asyncio
import enum
import re
import socket
from collections.abc import Iterator, Mapping

from sqlalchemy import exc as sa_exc

__all__ = ["TRANSIENT_ERRORS", "Transience", "classify", "describe_fatal"]


class Transience(enum.Enum):
    DISCONNECT = "disconnect"
    CONFLICT = "conflict"
    BUSY = "busy"
    FATAL = "fatal"


D, C, B, F = Transience.DISCONNECT, Transience.CONFLICT, Transience.BUSY, Transience.FATAL

_MYSQL: Mapping[str | int, Transience] = {
    2002: D,  # can't connect (socket)
    2003: D,  # can't connect (TCP)
    2006: D,  # server has gone away
    2013: D,  # lost connection during query
    2055: D,  # lost connection (system error)
    1053: D,  # server shutdown in progress
    1213: C,  # deadlock found
    1040: B,  # too many connections
    1205: B,  # lock wait timeout
    1290: B,  # --read-only server (failover)
    1044: F,  # access denied to the database
    1045: F,  # access denied (bad password)
    1698: F,  # access denied (auth plugin refuses the user)
    1049: F,  # unknown database
}

#: Per dialect: SQLSTATE (str; a 2-character key is a whole class) or vendor error number
#: (int) → kind. Errors absent from the table are not transient: never retried.
TRANSIENT_ERRORS: Mapping[str, Mapping[str | int, Transience]] = {
    "postgresql": {
        "08": D,  # connection exception (class)
        "57P01": D,  # admin_shutdown
        "57P02": D,  # crash_shutdown
        "57P03": D,  # cannot_connect_now: starting up or in recovery
        "40001": C,  # serialization_failure
        "40P01": C,  # deadlock_detected
        "53300": B,  # too_many_connections
        "53400": B,  # configuration_limit_exceeded
        "55P03": B,  # lock_not_available
        "25006": B,  # read_only_sql_transaction: a write reached a standby (failover)
        "28P01": F,  # invalid_password
        "28000": F,  # invalid_authorization_specification (no pg_hba entry...)
        "3D000": F,  # invalid_catalog_name: the database does not exist
    },
    "mysql": _MYSQL,
    "mariadb": _MYSQL,
    "mssql": {
        40613: D,  # Azure: database unavailable
        40197: D,  # Azure: service error, reconnect
        1205: C,  # deadlock victim
        40501: B,  # Azure: service busy
        10928: B,  # Azure: resource limit
        10929: B,  # Azure: resource limit
        18456: F,  # login failed
        4060: F,  # cannot open database
    },
    "sqlite": {
        "database is locked": B,  # message fragments: sqlite3 has no stable codes here
        "unable to open database file": F,
    },
}

_FATAL_CAUSES = {
    "28P01": "the password was rejected",
    "28000": "the server refused this user (check the user name and pg_hba.conf)",
    "3D000": "the database does not exist",
    1044: "the user may not access this database",
    1045: "the password was rejected",
    1698: "the server refused this user",
    1049: "the database does not exist",
    18456: "the login was rejected",
    4060: "the database cannot be opened (does it exist?)",
    "unable to open database file": "the SQLite file cannot be opened (folder or permissions)",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes/contexts, the translated error first, the socket error last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, sa_exc.DBAPIError) and current.orig is not None:
            current = current.orig
        else:
            current = current.__cause__ or current.__context__


def _codes(exc: BaseException, dialect: str) -> Iterator[str | int]:
    for candidate in _chain(exc):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            yield code
            yield code[:2]
        args = getattr(candidate, "args", ())
        if args and isinstance(args[0], int):
            yield args[0]
        # pyodbc puts the native error number inside the message: "... (18456) ..."
        match = re.search(r"\((\d{3,5})\)", str(candidate)) if dialect == "mssql" else None
        if match:
            yield int(match.group(1))


def _lookup(exc: BaseException, dialect: str) -> tuple[Transience, str | int] | None:
    table = TRANSIENT_ERRORS.get(dialect, {})
    if dialect == "sqlite":
        for candidate in _chain(exc):
            for fragment, kind in table.items():
                if isinstance(fragment, str) and fragment in str(candidate):
                    return kind, fragment
        return None
    for code in _codes(exc, dialect):
        if code in table:
            return table[code], code
    return None


def classify(exc: BaseException, dialect: str) -> Transience | None:
    """The kind of ``exc`` (a driver error, or an error-tree error raised from one).

    ``None``: not transient, do not retry (a bug, a constraint violation, bad SQL).
    """
    found = _lookup(exc, dialect)
    if found is not None:
        return found[0]
    for candidate in _chain(exc):
        if isinstance(candidate, sa_exc.NoSuchModuleError | sa_exc.ArgumentError):
            return Transience.FATAL  # unknown driver, malformed URL
        if isinstance(candidate, sa_exc.DBAPIError) and candidate.connection_invalidated:
            return Transience.DISCONNECT
        # DNS failures are transient on purpose: in compose and Kubernetes the database's
        # name resolves only once its container exists.
        if isinstance(candidate, ConnectionError | socket.gaierror | TimeoutError):
            return Transience.DISCONNECT
        if isinstance(candidate, asyncio.TimeoutError | OSError | sa_exc.InterfaceError):
            return Transience.DISCONNECT
    return None


def describe_fatal(exc: BaseException, dialect: str) -> str:
    """A one-line cause for an error `classify` calls ``FATAL``; never quotes a URL."""
    found = _lookup(exc, dialect)
    if found is not None and found[1] in _FATAL_CAUSES:
        return f"{_FATAL_CAUSES[found[1]]} ({dialect} error {found[1]})"
    for candidate in _chain(exc):
        if isinstance(candidate, sa_exc.NoSuchModuleError):
            return "the database driver is not installed (check the URL's scheme)"
        if isinstance(candidate, sa_exc.ArgumentError | ValueError):
            return "the database URL is invalid"
    return f"{type(exc).__name__} (not retryable)"
