"""Test support: private servers (see `servers`) and, in `pytest_helpers`, the pytest glue.

Importing this package never imports pytest, so the benchmark harness can use it.
"""

from tests.support.servers import (
    AuthMode,
    PostgresReplica,
    PostgresServer,
    RedisServer,
    ServerCommandError,
    ServerError,
    ServerTimeoutError,
    ServiceUnavailable,
    StopMode,
    free_port,
    mariadb_available,
    mariadb_temp_database,
    wait_until,
)

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
