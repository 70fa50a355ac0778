"""Build one async engine per database, with per-dialect settings done once, here.

Per dialect: connect timeout, statement timeout, and for SQLite the pragmas and
transaction handling that make it safe under concurrent requests (WAL, busy timeout,
``BEGIN IMMEDIATE`` for writers so two writers queue instead of failing on lock upgrade).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from building_blocks.config import DatabaseConfig
from building_blocks.db.pool import PING_DUE, ElasticQueuePool
from building_blocks.db.urls import parse_url

__all__ = ["WRITE_OPTION", "create_engine"]

#: Execution option set on a connection that will write; SQLite begins it IMMEDIATE.
WRITE_OPTION = "bb_write"


def create_engine(url: str | URL, config: DatabaseConfig, *, name: str) -> AsyncEngine:
    """Create (not connect) the engine for ``url``; ``name`` labels its pool."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {
        "echo": config.echo,
        # Pre-ping is ours (_ping_idle_connections): SQLAlchemy's pings every checkout.
        "pool_pre_ping": False,
        "logging_name": name,
        "pool_logging_name": name,
        "hide_parameters": True,  # parameters may hold personal data: keep them out of errors
    }
    connect_args: dict[str, Any] = {}
    memory_sqlite = backend == "sqlite" and parsed.database in (None, "", ":memory:")
    if memory_sqlite:
        # One shared connection, or every checkout would see its own empty database.
        options["poolclass"] = StaticPool
    else:
        options.update(
            poolclass=ElasticQueuePool,  # QueuePool limits without its churn (db/pool.py)
            pool_size=config.pool.size,
            max_overflow=config.pool.max_overflow,
            pool_timeout=config.pool.timeout,
            pool_recycle=config.pool.recycle,
        )

    statement_ms = int(config.statement_timeout * 1000) if config.statement_timeout else 0
    if backend == "postgresql":
        connect_args["timeout"] = config.connect_timeout
        settings = {"application_name": f"{config.application_name}:{name}"}
        if config.statement_timeout:
            settings["statement_timeout"] = str(statement_ms)
            # Client-side bound too: a server that stopped answering (SIGSTOP, network
            # partition) never sends the cancel, and the request must not hang.
            connect_args["command_timeout"] = config.statement_timeout + config.connect_timeout
        connect_args["server_settings"] = settings
    elif backend in ("mysql", "mariadb"):
        connect_args["connect_timeout"] = max(1, round(config.connect_timeout))
    elif backend == "sqlite":
        connect_args["timeout"] = config.pool.timeout
        if not memory_sqlite and parsed.database:
            # SQLite creates a missing file but not its folder (the embedded default
            # lives in the user's data folder, which may not exist yet).
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    elif backend == "mssql":
        connect_args["timeout"] = max(1, round(config.connect_timeout))

    engine = create_async_engine(parsed, connect_args=connect_args, **options)
    if config.pool.pre_ping and not memory_sqlite:
        _ping_idle_connections(engine, config.pool.ping_after_idle)
    if backend == "sqlite":
        _configure_sqlite(engine, busy_ms=int(config.pool.timeout * 1000))
    elif backend in ("mysql", "mariadb") and statement_ms:
        _configure_mysql(engine, statement_ms)
    return engine


def _ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    """Pre-ping at checkout, but only connections idle longer than ``idle_seconds``.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout; on asyncpg that is BEGIN, a
    ping and ROLLBACK: three round trips per request, doubling the cost of a read. A
    connection that was in use a moment ago is alive; one that slept may have been cut
    (server restart, idle timeout of a proxy). Raising `DisconnectionError` here makes the
    pool discard the connection and check out a new one (SQLAlchemy's documented recipe).
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        # A deadline rather than a time stamp: `ElasticQueuePool.connect_nowait` reads it
        # (and consumes it when it decides no ping is due).
        record.info[PING_DUE] = time.monotonic() + idle_seconds

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        due = record.info.pop(PING_DUE, None)
        if due is None or time.monotonic() <= due:
            return  # new (just connected), recently used, or vetted by connect_nowait
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa_exc.DisconnectionError("pre-ping failed") from exc


def _configure_sqlite(engine: AsyncEngine, *, busy_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN into our own hands (the sqlite3 module's implicit BEGIN is deferred
        # and fires only before DML, which breaks SAVEPOINT and lock ordering).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",  # readers never block the writer
            f"PRAGMA busy_timeout={busy_ms}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",  # safe with WAL; durable at checkpoint
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        writing = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _configure_mysql(engine: AsyncEngine, statement_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT VERSION()")
        (version,) = cursor.fetchone()
        if "mariadb" in str(version).lower():
            cursor.execute(f"SET SESSION max_statement_time={statement_ms / 1000:.3f}")
        else:
            cursor.execute(f"SET SESSION max_execution_time={statement_ms}")
        cursor.close()
