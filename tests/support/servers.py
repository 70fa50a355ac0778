"""Private, throw-away servers for integration tests and the benchmark harness.

One import for everything in tests/support that starts or borrows a server; stdlib
only and free of pytest. Each helper lives in its own module:

    ports     free_port()
    postgres  PostgresServer: a primary; stop, restart, freeze, passwords
    postgres_replica  PostgresReplica: streaming hot standby; pause replay, lag
    redis     RedisServer: start, kill, pause, restart on the same port
    mariadb   mariadb_temp_database(): a database on the shared MariaDB
    errors    ServiceUnavailable (skip, or fail under CI=true) and ServerError
"""

from __future__ import annotations

from tests.support.errors import (
    ServerCommandError,
    ServerError,
    ServerTimeoutError,
    ServiceUnavailable,
)
from tests.support.mariadb import mariadb_available, mariadb_temp_database
from tests.support.ports import free_port
from tests.support.postgres import AuthMode, PostgresServer, StopMode
from tests.support.postgres_replica import PostgresReplica
from tests.support.process import wait_until
from tests.support.redis import RedisServer

__all__ = [
    "AuthMode",
    "PostgresReplica",
    "PostgresServer",
    "RedisServer",
    "ServerCommandError",
    "ServerError",
    "ServerTimeoutError",
    "ServiceUnavailable",
    "StopMode",
    "free_port",
    "mariadb_available",
    "mariadb_temp_database",
    "wait_until",
]
