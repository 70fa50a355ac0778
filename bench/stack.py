"""The databases a benchmark run measures against: a private PostgreSQL primary with a
streaming replica, and a private Redis, seeded with the same users for every server.

Started from `tests.support` (stdlib only, no pytest), removed when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.migrations import upgrade_sync
from app.users.domain import User
from app.users.repository import SqlUserRepository
from building_blocks import DatabaseConfig, SQLAlchemySession
from tests.support import PostgresServer, RedisServer
from tests.support.otlp import OtlpReceiver

__all__ = ["Stack", "running_stack", "seed_users"]

# Settings for a benchmark, not for durability: the numbers should show our Python, not
# the disk of whatever machine runs them.
_PG_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
    "shared_buffers": "128MB",
}


@dataclass(frozen=True, slots=True)
class Stack:
    """Where the servers listen and which users exist."""

    primary_url: str
    replica_url: str
    redis_url: str
    user_ids: tuple[uuid.UUID, ...]
    otlp_endpoint: str = ""  # where the services export spans (decoded and counted)

    @property
    def primary_dsn(self) -> str:
        """The primary as a libpq/asyncpg DSN (for the hand-written baselines)."""
        return self.primary_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def replica_dsn(self) -> str:
        return self.replica_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.contextmanager
def running_stack(base_dir: Path, *, users: int) -> Iterator[Stack]:
    """Start primary, replica, Redis and an OTLP/HTTP trace receiver (standing in for
    the stack's OpenTelemetry collector) under ``base_dir``; seed ``users`` users."""
    base_dir.mkdir(parents=True, exist_ok=True)
    with PostgresServer.start_primary(base_dir, settings=_PG_SETTINGS) as primary:
        primary.create_database("bench")
        primary_url = primary.url(database="bench")
        upgrade_sync(primary_url)
        ids = asyncio.run(seed_users(primary_url, users))
        with (
            PostgresServer.start_replica(primary, base_dir, settings=_PG_SETTINGS) as replica,
            RedisServer.start_new(base_dir) as redis,
            OtlpReceiver(keep=False) as otlp,
        ):
            yield Stack(
                primary_url, replica.url(database="bench"), redis.url, tuple(ids), otlp.endpoint
            )


async def seed_users(url: str, count: int) -> list[uuid.UUID]:
    """Insert ``count`` users through our own repository (chunked multi-row INSERTs)."""
    session = SQLAlchemySession(DatabaseConfig(url))
    await session.start()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    batch = [
        User(
            id=uuid.uuid4(),
            first_name=f"First{n}",
            last_name=f"Last{n}",
            email=f"user{n}@bench.example.com",
            username=f"user{n}",
            is_active=n % 10 != 0,
            created_at=start + timedelta(seconds=n),
            updated_at=start + timedelta(seconds=n),
        )
        for n in range(count)
    ]
    try:
        async with session.begin() as conn:
            await SqlUserRepository(conn).add_many(batch)
            await conn.commit()
    finally:
        await session.close()
    return [u.id for u in batch]
