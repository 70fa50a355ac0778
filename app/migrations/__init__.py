"""Alembic migrations of the users service, and `upgrade()` which applies them safely.

`upgrade()` takes a database-wide lock first (PostgreSQL advisory lock, MySQL GET_LOCK,
SQL Server sp_getapplock, a file lock beside a SQLite file), so several instances starting
at once apply each migration exactly once.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from building_blocks.db import describe_url, parse_url

__all__ = ["alembic_config", "upgrade"]

log = logging.getLogger(__name__)

_LOCK_NAME = "users_service_migrations"
_PG_LOCK_KEY = 0x7573_6572  # any constant; "user" in ASCII
_LOCK_TIMEOUT_S = 300


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    if url is not None:
        # ConfigParser interpolates '%': escape it (URL-encoded passwords contain it).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def _sqlite_file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:":
        yield
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.migrate.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked_upgrade(conn: Connection, config: Config, revision: str) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
    elif dialect in ("mysql", "mariadb"):
        got = conn.execute(
            text("SELECT GET_LOCK(:n, :t)"), {"n": _LOCK_NAME, "t": _LOCK_TIMEOUT_S}
        ).scalar()
        if got != 1:
            raise RuntimeError("timed out waiting for another instance's migrations")
    elif dialect == "mssql":
        conn.execute(
            text(
                "EXEC sp_getapplock @Resource=:n, @LockMode='Exclusive', "
                "@LockOwner='Session', @LockTimeout=:t"
            ),
            {"n": _LOCK_NAME, "t": _LOCK_TIMEOUT_S * 1000},
        )
    conn.commit()  # the lock is held by the session, not the transaction
    try:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        conn.commit()
    finally:
        if dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
        elif dialect in ("mysql", "mariadb"):
            conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
        elif dialect == "mssql":
            conn.execute(
                text("EXEC sp_releaseapplock @Resource=:n, @LockOwner='Session'"),
                {"n": _LOCK_NAME},
            )
        conn.commit()


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply pending migrations to ``url`` (idempotent, safe to run concurrently)."""
    parsed = parse_url(url)
    log.info("applying migrations to %s", describe_url(parsed))
    engine = create_async_engine(parsed, poolclass=NullPool)
    try:
        with _sqlite_file_lock(parsed.database if parsed.get_backend_name() == "sqlite" else None):
            async with engine.connect() as conn:
                await conn.run_sync(_locked_upgrade, alembic_config(), revision)
    finally:
        await engine.dispose()


def upgrade_sync(url: str, revision: str = "head") -> None:
    asyncio.run(upgrade(url, revision))
