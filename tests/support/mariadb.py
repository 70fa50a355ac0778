"""Throw-away databases on the machine's shared MariaDB server.

MariaDB is not started per test: the CI machine runs one on 127.0.0.1:3306 (root, empty
password). Isolation comes from a uniquely named database per test, created with
utf8mb4 and dropped afterwards.

    with mariadb_temp_database() as url:   # mysql+aiomysql://root@127.0.0.1:3306/bbtest_...
        engine = create_async_engine(url)
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from tests.support.errors import ServerCommandError, ServerTimeoutError, ServiceUnavailable
from tests.support.process import INSTALL_HINT, run

__all__ = ["mariadb_available", "mariadb_temp_database"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3306


def _client() -> str:
    for name in ("mariadb", "mysql"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise ServiceUnavailable(
        f"the mariadb client is missing; install it with: apt-get install -y mariadb-client "
        f"({INSTALL_HINT})"
    )


def _sql(sql: str, *, host: str, port: int, user: str, password: str) -> str:
    argv = [
        _client(),
        # Our own options only: a ~/.my.cnf must not redirect us to another server.
        "--no-defaults",
        "--protocol=TCP",
        f"--host={host}",
        f"--port={port}",
        f"--user={user}",
        "--connect-timeout=5",
        "--batch",
        "--skip-column-names",
        "--execute",
        sql,
    ]
    # The password goes through the environment, which stays out of `ps` output.
    env = {"MYSQL_PWD": password} if password else None
    return run(argv, env=env, timeout=30).stdout.rstrip("\n")


def mariadb_available(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, user: str = "root", password: str = ""
) -> bool:
    """True when the client is installed and the server answers a query."""
    try:
        return _sql("SELECT 1", host=host, port=port, user=user, password=password) == "1"
    except (ServiceUnavailable, ServerCommandError, ServerTimeoutError):
        return False


@contextmanager
def mariadb_temp_database(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    user: str = "root",
    password: str = "",
    *,
    driver: str = "mysql+aiomysql",
    prefix: str = "bbtest",
) -> Iterator[str]:
    """Create a uniquely named utf8mb4 database, yield its URL, drop it afterwards.

    ServiceUnavailable when the client is missing or the server does not answer.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    try:
        _sql(
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            host=host,
            port=port,
            user=user,
            password=password,
        )
    except ServerTimeoutError as exc:
        raise ServiceUnavailable(f"MariaDB at {host}:{port} did not answer ({exc})") from exc
    except ServerCommandError as exc:
        # Client-side errors (2002 can't connect, 2003 refused, 2013 lost...) mean no
        # server; a server's own error (1045 access denied...) is a real failure.
        if "ERROR 2" not in exc.stderr:
            raise
        raise ServiceUnavailable(
            f"MariaDB at {host}:{port} is not reachable ({exc.stderr.strip()}); start it, or "
            "install it with: apt-get install -y mariadb-server"
        ) from exc
    secret = f":{quote(password, safe='')}" if password else ""
    try:
        yield f"{driver}://{quote(user, safe='')}{secret}@{host}:{port}/{name}"
    finally:
        _sql(
            f"DROP DATABASE IF EXISTS `{name}`", host=host, port=port, user=user, password=password
        )
