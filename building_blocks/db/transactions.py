"""Low-level steps of a transaction shared by the session and the replica routing:
check a connection out, begin (read-only or writing), close it whatever happened."""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from building_blocks.db.direct import DirectReader, DirectReads
from building_blocks.db.engines import WRITE_OPTION
from building_blocks.db.translate import translate_error

__all__ = [
    "begin_transaction",
    "checkout",
    "checkout_raw",
    "checkout_raw_nowait",
    "close_quietly",
    "raise_translated",
    "release_quietly",
]

log = logging.getLogger(__name__)


async def checkout(name: str, engine: AsyncEngine) -> AsyncConnection:
    """A connection from ``engine``'s pool; failures come out translated."""
    try:
        return await engine.connect()
    except Exception as exc:
        raise_translated(exc, engine.dialect.name, name)


def checkout_raw_nowait(name: str, reader: DirectReader) -> PoolProxiedConnection | None:
    """An idle driver connection taken without awaiting, or ``None`` (then `checkout_raw`)."""
    try:
        return reader.checkout_nowait()
    except Exception as exc:
        raise_translated(exc, reader.dialect.name, name)


async def checkout_raw(name: str, reader: DirectReader) -> PoolProxiedConnection:
    """As `checkout`, for direct reads: a driver connection from the same pool."""
    try:
        return await reader.checkout()
    except Exception as exc:
        raise_translated(exc, reader.dialect.name, name)


async def begin_transaction(conn: AsyncConnection, name: str, *, read_only: bool) -> None:
    options: dict[str, object] = {WRITE_OPTION: not read_only}
    if read_only and conn.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    try:
        await conn.execution_options(**options)
        await conn.begin()
    except Exception as exc:
        raise_translated(exc, conn.dialect.name, name)


def raise_translated(exc: Exception, dialect: str, pool: str) -> NoReturn:
    """Raise the error-tree equivalent of ``exc`` (from it), or ``exc`` itself."""
    error = translate_error(exc, dialect=dialect, pool=pool)
    if error is None:
        raise exc
    raise error from exc


async def close_quietly(conn: AsyncConnection) -> None:
    # Closing returns the connection to the pool and rolls back what is open. A failure
    # here (the server died mid-request) must not mask the error the caller is handling;
    # shielded so a cancelled request still hands its connection back.
    try:
        await asyncio.shield(conn.close())
    except Exception:
        log.debug("closing a broken connection failed", exc_info=True)


async def release_quietly(direct: DirectReads) -> None:
    # As `close_quietly`, for the connection of direct reads (usually handed back at once,
    # without awaiting: see `DirectReads.release_nowait`).
    try:
        if not direct.release_nowait():
            await asyncio.shield(direct.release())
    except Exception:
        log.debug("returning a direct-read connection failed", exc_info=True)
