"""Direct reads (read-only work on PostgreSQL without BEGIN/ROLLBACK), the elastic pool and
the idle-only pre-ping, against a real PostgreSQL: what they cost and how they fail."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, func, insert, select

from app.users.domain import User
from app.users.repository import SqlUserRepository
from app.users.tables import users
from building_blocks import DatabaseConfig, PoolConfig, SQLAlchemySession
from building_blocks.db import direct as direct_module
from building_blocks.db import pool as pool_module
from building_blocks.db.pool import ElasticQueuePool
from building_blocks.errors import DataError
from tests.support import PostgresServer, wait_until

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def _user(n: int) -> User:
    return User(
        id=uuid.uuid4(),
        first_name=f"F{n}",
        last_name=f"L{n}",
        email=f"direct{n}@example.com",
        username=f"direct{n}",
        is_active=True,
        created_at=T0,
        updated_at=T0,
    )


class QueryLog:
    """Every statement asyncpg sends on the session's connections (its own query logger:
    the real driver, observed, not replaced)."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.connects = 0

    def attach(self, session: SQLAlchemySession) -> None:
        for engine in session.engines.values():

            @event.listens_for(engine.sync_engine, "connect")
            def _on_connect(dbapi_connection: Any, _record: Any) -> None:
                self.connects += 1
                dbapi_connection.driver_connection.add_query_logger(
                    lambda record: self.queries.append(record.query)
                )


@pytest.fixture(scope="module")
def database(pg_primary: PostgresServer) -> str:
    from app.migrations import upgrade_sync  # noqa: PLC0415 - only this module needs it

    pg_primary.create_database("direct_reads")
    url = pg_primary.url(database="direct_reads")
    upgrade_sync(url)
    return url


@pytest.fixture
async def session(database: str) -> AsyncIterator[SQLAlchemySession]:
    session = SQLAlchemySession(
        DatabaseConfig(database, pool=PoolConfig(size=2, max_overflow=3, timeout=5))
    )
    await session.start()
    yield session
    await session.close()


@pytest.fixture
def queries(session: SQLAlchemySession) -> QueryLog:
    log = QueryLog()
    log.attach(session)
    return log


@pytest.fixture
def fast_overflow_trim() -> Iterator[None]:
    saved = pool_module.OVERFLOW_IDLE_SECONDS
    pool_module.OVERFLOW_IDLE_SECONDS = 0.05
    yield
    pool_module.OVERFLOW_IDLE_SECONDS = saved


async def _stored(session: SQLAlchemySession, n: int) -> User:
    user = _user(n)
    async with session.begin() as conn:
        await SqlUserRepository(conn).add(user)
        await conn.commit()
    return user


async def _get(session: SQLAlchemySession, user_id: uuid.UUID, *, read_only: bool) -> User | None:
    async with session.begin(read_only=read_only) as conn:
        return await SqlUserRepository(conn).get_or_none(user_id)


async def test_a_read_only_get_by_id_sends_one_statement_and_no_transaction(
    session: SQLAlchemySession, queries: QueryLog
) -> None:
    user = await _stored(session, 1)
    await _get(session, user.id, read_only=True)  # first use of a connection may Parse
    queries.queries.clear()
    assert await _get(session, user.id, read_only=True) == user
    assert len(queries.queries) == 1
    assert queries.queries[0].lstrip().upper().startswith("SELECT")


async def test_a_get_inside_a_writing_unit_still_runs_in_a_transaction(
    session: SQLAlchemySession, queries: QueryLog
) -> None:
    user = await _stored(session, 2)
    queries.queries.clear()
    assert await _get(session, user.id, read_only=False) == user
    # (SQLAlchemy runs the SELECT as a prepared statement, which the logger does not see.)
    sent = [q.split()[0].rstrip(";").upper() for q in queries.queries]
    assert sent[0] == "BEGIN"
    assert sent[-1] == "ROLLBACK"


async def test_direct_reads_return_the_same_values_and_types_as_the_transactional_path(
    session: SQLAlchemySession,
) -> None:
    stored = [await _stored(session, n) for n in range(10, 14)]
    query = select(users).where(users.c.id.in_([u.id for u in stored])).order_by(users.c.id)
    found = []
    for read_only in (True, False):
        async with session.begin(read_only=read_only) as conn:
            found.append([dict(row) for row in await conn.fetch_all(query)])
            found.append(
                [dict(await conn.fetch_one(select(users).where(users.c.id == stored[0].id)) or {})]
            )
            found.append([{"n": await conn.scalar(select(func.count()).select_from(users))}])
    direct, transactional = found[:3], found[3:]
    assert direct == transactional
    row = direct[1][0]
    assert isinstance(row["id"], uuid.UUID)
    assert row["created_at"] == T0
    assert row["created_at"].tzinfo is not None


async def test_a_write_inside_a_read_only_unit_is_refused_and_stores_nothing(
    session: SQLAlchemySession,
) -> None:
    user = _user(20)
    repository_row = SqlUserRepository(None)._entity_to_dict(user)  # type: ignore[arg-type]
    async with session.begin(read_only=True) as conn:
        assert await conn.fetch_one(select(users).where(users.c.id == user.id)) is None
        with pytest.raises(DataError):
            await conn.execute(insert(users).values(repository_row))
    assert await _get(session, user.id, read_only=False) is None


async def test_a_pooled_connection_killed_while_idle_is_replaced_without_failing_the_read(
    session: SQLAlchemySession, pg_primary: PostgresServer, queries: QueryLog
) -> None:
    user = await _stored(session, 30)
    assert await _get(session, user.id, read_only=True) == user
    connects = queries.connects
    pg_primary.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = 'direct_reads' AND pid <> pg_backend_pid()"
    )
    assert await _get(session, user.id, read_only=True) == user
    assert queries.connects > connects


async def test_idle_pooled_connections_are_pinged_and_replaced_before_a_write(
    database: str, pg_primary: PostgresServer
) -> None:
    session = SQLAlchemySession(DatabaseConfig(database, pool=PoolConfig(ping_after_idle=0.0)))
    await session.start()
    try:
        await _stored(session, 40)
        pg_primary.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = 'direct_reads' AND pid <> pg_backend_pid()"
        )
        user = await _stored(session, 41)
        assert await _get(session, user.id, read_only=False) == user
    finally:
        await session.close()


async def test_a_cancelled_direct_read_does_not_leave_a_busy_connection_in_the_pool(
    session: SQLAlchemySession, pg_primary: PostgresServer
) -> None:
    user = await _stored(session, 50)

    async def slow_read() -> None:
        async with session.begin(read_only=True) as conn:
            await conn.fetch_one(select(func.pg_sleep(30)))

    task = asyncio.create_task(slow_read())
    await asyncio.to_thread(
        wait_until,
        lambda: "pg_sleep" in pg_primary.psql("SELECT query FROM pg_stat_activity"),
        timeout=10,
        what="the slow read to reach the server",
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Every connection the pool hands out next must work (none is mid-query).
    results = await asyncio.gather(*(_get(session, user.id, read_only=True) for _ in range(5)))
    assert results == [user] * 5


async def test_a_read_on_a_warm_pool_takes_and_returns_its_connection_without_a_greenlet(
    session: SQLAlchemySession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path: an idle connection, recently used, is checked out and back in
    synchronously (a greenlet hop each way cost more than the pool's own work)."""
    user = await _stored(session, 80)  # leaves one idle connection, just used
    spawned: list[Any] = []
    real_spawn = direct_module.greenlet_spawn  # type: ignore[attr-defined]  # its import

    async def counting_spawn(fn: Any, *args: Any, **kwargs: Any) -> Any:
        spawned.append(fn)
        return await real_spawn(fn, *args, **kwargs)

    monkeypatch.setattr(direct_module, "greenlet_spawn", counting_spawn)
    assert await _get(session, user.id, read_only=True) == user
    assert spawned == []
    pool = session.primary.sync_engine.pool
    assert isinstance(pool, ElasticQueuePool)
    assert pool.checkedout() == 0


async def test_a_connection_idle_past_the_ping_bound_is_left_to_the_pinging_checkout(
    database: str, pg_primary: PostgresServer
) -> None:
    session = SQLAlchemySession(DatabaseConfig(database, pool=PoolConfig(ping_after_idle=0.0)))
    await session.start()
    try:
        user = await _stored(session, 81)
        await asyncio.sleep(0.01)
        pool = session.primary.sync_engine.pool
        assert isinstance(pool, ElasticQueuePool)
        assert pool.connect_nowait() is None  # would need the pre-ping: I/O
        pg_primary.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = 'direct_reads' AND pid <> pg_backend_pid()"
        )
        assert await _get(session, user.id, read_only=True) == user
    finally:
        await session.close()


async def test_a_connection_invalidated_with_its_pool_is_not_taken_synchronously(
    session: SQLAlchemySession,
) -> None:
    user = await _stored(session, 82)
    pool = session.primary.sync_engine.pool
    assert isinstance(pool, ElasticQueuePool)
    fairy = pool.connect_nowait()
    assert fairy is not None
    fairy.close()
    await asyncio.sleep(0.01)  # invalidation compares wall-clock times
    fairy = pool.connect_nowait()
    assert fairy is not None
    fairy.invalidate(soft=True)  # as after a disconnect: older connections are stale
    fairy.close()
    assert pool.connect_nowait() is None
    assert await _get(session, user.id, read_only=True) == user


async def test_the_pool_keeps_overflow_connections_while_requests_queue_for_them(
    session: SQLAlchemySession, queries: QueryLog
) -> None:
    user = await _stored(session, 60)
    for _ in range(5):
        await asyncio.gather(*(_get(session, user.id, read_only=True) for _ in range(64)))
    # 2 + 3 connections serve 320 reads; SQLAlchemy's QueuePool reconnects many times here.
    assert queries.connects <= 5


async def test_overflow_connections_close_once_the_pool_has_been_idle(
    session: SQLAlchemySession, fast_overflow_trim: None
) -> None:
    user = await _stored(session, 70)
    await asyncio.gather(*(_get(session, user.id, read_only=True) for _ in range(32)))
    pool = session.primary.sync_engine.pool
    assert isinstance(pool, ElasticQueuePool)
    assert pool.checkedin() > 2

    async def trimmed() -> bool:
        await _get(session, user.id, read_only=True)
        return pool.checkedin() <= 2

    deadline = asyncio.get_running_loop().time() + 10
    while not await trimmed():
        assert asyncio.get_running_loop().time() < deadline, "overflow connections stayed open"
        await asyncio.sleep(0.01)
    assert pool.checkedout() == 0


async def test_direct_reads_fire_the_engines_statement_events(session: SQLAlchemySession) -> None:
    """Tracing, query metrics and statement counters listen to these events: the direct
    path must be as visible as SQLAlchemy's own."""
    user = await _stored(session, 940)
    seen: list[tuple[str, str]] = []

    def before(*args: Any) -> None:
        seen.append(("before", args[2]))

    def after(*args: Any) -> None:
        seen.append(("after", args[2]))

    engine = session.primary.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        assert await _get(session, user.id, read_only=True) == user
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    assert [kind for kind, _ in seen] == ["before", "after"]
    assert seen[0][1].lstrip().upper().startswith("SELECT")


async def test_a_failing_direct_read_fires_handle_error(session: SQLAlchemySession) -> None:
    errors: list[BaseException] = []

    def on_error(context: Any) -> None:
        errors.append(context.original_exception)

    engine = session.primary.sync_engine
    event.listen(engine, "handle_error", on_error)
    try:
        with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
            async with session.begin(read_only=True) as conn:
                await conn.fetch_one(select(1 / func.abs(0)))
    finally:
        event.remove(engine, "handle_error", on_error)
    assert len(errors) == 1


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "writing"])
async def test_a_connection_used_after_its_unit_of_work_refuses_and_checks_nothing_out(
    session: SQLAlchemySession, queries: QueryLog, read_only: bool
) -> None:
    user = await _stored(session, 960 + read_only)
    async with session.begin(read_only=read_only) as conn:
        pass  # nothing ran: no connection was checked out
    queries.queries.clear()
    with pytest.raises(RuntimeError, match="the transaction is over"):
        await SqlUserRepository(conn).get_or_none(user.id)
    assert queries.queries == []  # no transaction opened that nothing would close
