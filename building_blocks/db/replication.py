"""What each dialect can tell about replication: positions, replay progress, lag.

PostgreSQL has WAL positions: the primary's ``pg_current_wal_insert_lsn()`` and a
standby's ``pg_last_wal_replay_lsn()`` are comparable, so a token can say exactly which
replica has a write. Other dialects fall back to time: a token is the commit time, and a
replica is trusted with it once it is older than the lag bound. MySQL/MariaDB replicas
report ``Seconds_Behind_Master``; anything else is only probed for being up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from building_blocks.db.consistency import ConsistencyToken, parse_lsn

INF = float("inf")

__all__ = [
    "ClockReplication",
    "MySQLReplication",
    "PostgresReplication",
    "ReplicaSample",
    "Replication",
    "replication_for",
]


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    """One probe of a replica.

    ``position``: replayed WAL position (PostgreSQL), else ``None``. ``lag_hint``: the
    replica's own estimate of its lag in seconds, when it has one (PostgreSQL: age of the
    last replayed transaction, meaningful only while behind; MySQL: Seconds_Behind_Master);
    ``None`` when the dialect cannot tell (the replica is then taken as current).
    """

    position: int | None
    lag_hint: float | None


class Replication(Protocol):
    async def commit_token(self, conn: AsyncConnection) -> ConsistencyToken:
        """After a commit on ``conn`` (a primary connection): a token covering it."""
        ...

    async def primary_position(self, conn: AsyncConnection) -> int | None: ...

    async def sample(self, conn: AsyncConnection) -> ReplicaSample: ...


class PostgresReplication:
    # The insert position, not pg_current_wal_lsn() (the *write* position): with
    # synchronous_commit=off a commit record may still sit in WAL buffers, and a token
    # short of it would let a replica without the write serve the reader. But right after
    # a WAL page (or segment) fills, the insert position points past the next page's
    # header, where no replica's replay position ever stops: the end of the last record
    # is the page boundary. So that header is taken off again.
    _POSITION = text(
        "SELECT pg_current_wal_insert_lsn()::text, current_setting('wal_block_size')::int,"
        " (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')"
    )
    _SHORT_HEADER, _LONG_HEADER = 24, 40  # SizeOfXLogShortPHD, SizeOfXLogLongPHD

    async def commit_token(self, conn: AsyncConnection) -> ConsistencyToken:
        return ConsistencyToken("lsn", await self.primary_position(conn))

    async def primary_position(self, conn: AsyncConnection) -> int:
        lsn_text, block, segment = (await conn.execute(self._POSITION)).one()
        lsn = parse_lsn(lsn_text)
        if lsn % segment == self._LONG_HEADER:
            return lsn - self._LONG_HEADER
        if lsn % block == self._SHORT_HEADER:
            return lsn - self._SHORT_HEADER
        return lsn

    async def sample(self, conn: AsyncConnection) -> ReplicaSample:
        row = (
            await conn.execute(
                text(
                    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
                    " ELSE pg_current_wal_flush_lsn() END::text,"
                    " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
                )
            )
        ).one()
        position = parse_lsn(row[0]) if row[0] else None
        return ReplicaSample(position=position, lag_hint=_float(row[1]))


class ClockReplication:
    """No positions: tokens are commit times, replicas are only checked for being up."""

    async def commit_token(self, conn: AsyncConnection) -> ConsistencyToken:
        del conn
        return ConsistencyToken.now()

    async def primary_position(self, conn: AsyncConnection) -> int | None:
        del conn
        return None

    async def sample(self, conn: AsyncConnection) -> ReplicaSample:
        await conn.execute(text("SELECT 1"))
        return ReplicaSample(position=None, lag_hint=None)


class MySQLReplication(ClockReplication):
    async def sample(self, conn: AsyncConnection) -> ReplicaSample:
        # SHOW SLAVE STATUS works on MariaDB and on MySQL up to 8.4 (alias of the newer
        # SHOW REPLICA STATUS). No row: not a replica, so it is never behind.
        result = await conn.execute(text("SHOW SLAVE STATUS"))
        row = result.mappings().first()
        if row is None:
            return ReplicaSample(position=None, lag_hint=0.0)
        lag = row.get("Seconds_Behind_Master", row.get("Seconds_Behind_Source"))
        # NULL means the replication threads are stopped: treat as infinitely behind.
        return ReplicaSample(position=None, lag_hint=_float(lag) if lag is not None else INF)


def _float(value: Any) -> float | None:
    return None if value is None else max(0.0, float(value))


def replication_for(dialect: str) -> Replication:
    if dialect == "postgresql":
        return PostgresReplication()
    if dialect in ("mysql", "mariadb"):
        return MySQLReplication()
    return ClockReplication()
