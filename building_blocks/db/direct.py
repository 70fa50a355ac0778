"""Direct reads: read-only SELECTs run on the asyncpg driver connection, outside a transaction.

Why this exists. SQLAlchemy's default path for one read pays, per call, ``BEGIN``,
the ``SELECT``, ``ROLLBACK`` (three round trips; a pool pre-ping on asyncpg adds three
more) plus its general-purpose execution machinery (execution context, result object,
greenlet switches). Measured on a 2-core machine that made one get-by-id cost ~10x raw
asyncpg. For read-only units of work on PostgreSQL this module instead:

* runs the statement in autocommit: no ``BEGIN``/``ROLLBACK``. Under PostgreSQL's default
  READ COMMITTED isolation every statement takes its own snapshot *also inside* a
  transaction, so a read-only unit loses no consistency by this; it is only done when the
  engine runs at that isolation level (the default);
* compiles each statement once per shape (keyed by SQLAlchemy's own cache key) into the
  SQL text, the order of its ``$n`` parameters and the bind/result processors of its
  types, then executes it with ``asyncpg.Connection.fetch`` (a cached prepared statement:
  one round trip, no Parse after the first use on a connection);
* takes connections from the same SQLAlchemy pool (sizes, timeouts, overflow and pool
  events, hence pool metrics, are unchanged), without a pre-ping: a connection that turns
  out dead is invalidated and the read retried once on a fresh one, which is what the ping
  would have bought, at no cost when nothing is wrong.

Statements it cannot run this way (expanding ``IN`` parameters, non-SELECTs) make
`DirectReads.fetch` return ``None`` and the caller takes the ordinary path.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from building_blocks.db.pool import ElasticQueuePool
from building_blocks.db.translate import is_driver_disconnect

__all__ = ["CompiledRead", "DirectReader", "DirectReads"]

Processor = Callable[[Any], Any]
Checkout = Callable[[], Awaitable[PoolProxiedConnection]]


@dataclass(frozen=True, slots=True)
class Failover:
    """How reads on a replica leave a replica that stopped answering.

    A pooled connection used within the last second is not pinged, so a frozen replica
    (SIGSTOP, a partition) would hold the first read until the statement timeout. The
    first read of a unit therefore gets ``timeout`` seconds (asyncpg's per-call timeout);
    past it the connection is dropped, ``switch()`` (which marks the replica down and
    returns the primary's reader) is called, and the read runs once more on the primary.
    A slow but healthy
    replica costs at most ``timeout`` extra, never a failed request.
    """

    timeout: float
    switch: Callable[[], DirectReader]


#: Compiled shapes kept per engine; a service has a few dozen, ad-hoc filters add more.
_CACHE_SIZE = 500


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """One SELECT shape compiled for asyncpg: SQL text plus what to do with values."""

    sql: str
    names: tuple[str, ...]  # bind parameter names in ``$1..$n`` order
    bind: tuple[Processor | None, ...]
    results: tuple[Processor | None, ...] | None  # None: no column needs processing
    compiled: Any  # the SQLCompiler, for construct_params()

    def arguments(
        self, extracted: Sequence[Any], parameters: Mapping[str, Any] | None
    ) -> list[Any]:
        values = self.compiled.construct_params(parameters, extracted_parameters=extracted)
        args = [values[name] for name in self.names]
        for index, process in enumerate(self.bind):
            if process is not None:
                args[index] = process(args[index])
        return args

    def row(self, record: Any) -> Mapping[str, Any]:
        if self.results is None:
            return record  # type: ignore[no-any-return]  # asyncpg.Record reads like a mapping
        values = tuple(record.values())
        return {
            key: value if process is None else process(value)
            for key, value, process in zip(record.keys(), values, self.results, strict=True)
        }


def compile_read(statement: Select[Any], dialect: Dialect, cache_key: Any) -> CompiledRead | None:
    """Compile ``statement`` for asyncpg, or ``None`` when it needs the general path."""
    compiled: Any = statement.compile(dialect=dialect, cache_key=cache_key)
    if compiled.post_compile_params or compiled.literal_execute_params:
        return None  # expanding IN (...) renders per call: leave it to SQLAlchemy
    names = tuple(compiled.positiontup or ())
    bind = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.selected_columns
    )
    return CompiledRead(
        sql=compiled.string,
        names=names,
        bind=bind,
        results=results if any(results) else None,
        compiled=compiled,
    )


class DirectReader:
    """Per engine: the compiled-statement cache. `DirectReader.of` finds or makes it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._compiled: OrderedDict[Any, CompiledRead | None] = OrderedDict()

    @classmethod
    def of(cls, engine: AsyncEngine) -> DirectReader | None:
        """The reader of ``engine``, or ``None`` when its driver/isolation do not allow it."""
        if engine.dialect.driver != "asyncpg":
            return None
        level = engine.sync_engine.get_execution_options().get("isolation_level")
        if level not in (None, "READ COMMITTED"):
            return None  # stricter isolation: the unit's snapshot matters, keep BEGIN
        reader = _READERS.get(engine.sync_engine)
        if reader is None:
            reader = _READERS[engine.sync_engine] = cls(engine)
        return reader

    def prepare(self, statement: Executable) -> tuple[CompiledRead, Sequence[Any]] | None:
        if not isinstance(statement, Select):
            return None
        cache_key = (
            statement._generate_cache_key()
        )  # SQLAlchemy's own key, as its compiled cache uses it
        if cache_key is None:
            return None  # an element that opts out of caching
        try:
            found = self._compiled[cache_key.key]
            self._compiled.move_to_end(cache_key.key)
        except KeyError:
            found = compile_read(statement, self.dialect, cache_key)
            self._compiled[cache_key.key] = found
            if len(self._compiled) > _CACHE_SIZE:
                self._compiled.popitem(last=False)
        return None if found is None else (found, cache_key.bindparams)

    def checkout_nowait(self) -> PoolProxiedConnection | None:
        """An idle pooled driver connection taken without a greenlet, or ``None`` when
        the checkout could do I/O (see `ElasticQueuePool.connect_nowait`)."""
        pool = self.engine.sync_engine.pool
        return pool.connect_nowait() if isinstance(pool, ElasticQueuePool) else None

    async def checkout(self) -> PoolProxiedConnection:
        """A pooled driver connection (the pool's limits, timeout and events apply)."""
        fairy = self.checkout_nowait()
        if fairy is not None:
            return fairy
        return await greenlet_spawn(self.engine.sync_engine.raw_connection)

    def begin(
        self, checkout: Checkout | None = None, *, failover: Failover | None = None
    ) -> DirectReads:
        """The direct reads of one unit; ``checkout`` (default `checkout`) is how it gets
        its connection, so the session can wrap it (error translation, fallbacks).
        ``failover`` (for replicas): see `Failover`."""
        return DirectReads(self, checkout or self.checkout, failover)


_READERS: weakref.WeakKeyDictionary[Any, DirectReader] = weakref.WeakKeyDictionary()


class _DirectContext:
    """Stands in for SQLAlchemy's execution context in statement events (listeners keep
    per-statement state on it)."""

    def __init__(self, statement: str, parameters: list[Any]) -> None:
        self.statement = statement
        self.parameters = parameters


@dataclass(slots=True)
class _DirectError:
    """The parts of SQLAlchemy's ``ExceptionContext`` a ``handle_error`` listener reads."""

    execution_context: _DirectContext
    original_exception: BaseException
    engine: Any  # the sync Engine, as in SQLAlchemy's own ExceptionContext
    sqlalchemy_exception: None = None
    chained_exception: None = None
    connection: None = None
    cursor: None = None
    is_disconnect: bool = False
    invalidate_pool_on_disconnect: bool = False

    @property
    def statement(self) -> str:
        return self.execution_context.statement

    @property
    def parameters(self) -> list[Any]:
        return self.execution_context.parameters


class DirectReads:
    """The direct reads of one read-only unit of work: holds at most one pool connection,
    from its first read until `release`."""

    __slots__ = ("_broken", "_checkout_fn", "_failover", "_fairy", "_reader")

    def __init__(
        self, reader: DirectReader, checkout: Checkout, failover: Failover | None = None
    ) -> None:
        self._reader = reader
        self._checkout_fn = checkout
        self._failover = failover
        self._fairy: PoolProxiedConnection | None = None
        self._broken = False

    async def fetch(
        self, statement: Executable, parameters: Mapping[str, Any] | None, *, one: bool
    ) -> list[Mapping[str, Any]] | None:
        """The rows of ``statement`` (at most one if ``one``), or ``None`` if it cannot be
        run directly. Driver errors propagate unchanged (the caller translates them)."""
        prepared = self._reader.prepare(statement)
        if prepared is None:
            return None
        compiled, extracted = prepared
        args = compiled.arguments(extracted, parameters)
        fresh = self._fairy is None
        fairy = await self._checkout()
        failover, self._failover = self._failover, None  # the first read only
        try:
            # The bound is asyncpg's own per-call timeout, which replaces (for this call)
            # the ``command_timeout`` timer it arms anyway: no second timer per read.
            records = await self._run(
                fairy,
                compiled.sql,
                args,
                one=one,
                bound=None if failover is None else failover.timeout,
            )
        except TimeoutError:
            if failover is None:
                raise
            # The replica did not answer in time: drop the connection (mid-exchange, not
            # reusable), move to the primary and read there.
            self._broken = True
            fairy.driver_connection.terminate()  # type: ignore[union-attr]
            await self._discard(TimeoutError("replica read timed out"))
            self._broken = False
            self.rebind(failover.switch())
            records = await self._run(await self._checkout(), compiled.sql, args, one=one)
        except asyncio.CancelledError:
            # Cancelled mid-query (the client went away): the wire protocol is mid-exchange
            # and the connection cannot be reused. Close it now; `release` drops it.
            self._broken = True
            fairy.driver_connection.terminate()  # type: ignore[union-attr]
            raise
        except Exception as exc:
            if not is_driver_disconnect(exc, fairy.driver_connection):
                raise
            await self._discard(exc)
            if not fresh:
                raise  # mid-unit: the caller must see that its connection died
            # A pooled connection that died while idle (server restart): what the pre-ping
            # would have caught. Retry once on a new one; a second failure is real.
            records = await self._run(await self._checkout(), compiled.sql, args, one=one)
        return [compiled.row(r) for r in records]

    async def _run(
        self,
        fairy: PoolProxiedConnection,
        sql: str,
        args: list[Any],
        *,
        one: bool,
        bound: float | None = None,
    ) -> list[Any]:
        driver = fairy.driver_connection
        assert driver is not None  # noqa: S101 - a checked-out connection has one
        # The engine's statement events fire as on SQLAlchemy's own path, so whatever
        # listens (tracing, query metrics, a test counting statements) sees direct reads.
        # Iterated, as SQLAlchemy's own path iterates them (the listener collection's
        # ``__iter__``: its listeners in the order its ``__call__`` runs them), rather
        # than tested and called: one Python call per event instead of two, and no
        # ``*args`` repacking per listener.
        dispatch = self._reader.engine.sync_engine.dispatch
        context = _DirectContext(sql, args)
        for listener in dispatch.before_cursor_execute:
            listener(None, None, sql, args, context, False)
        try:
            if one:
                record = await driver.fetchrow(sql, *args, timeout=bound)
                records = [] if record is None else [record]
            else:
                records = list(await driver.fetch(sql, *args, timeout=bound))
        except BaseException as exc:
            dialect_dispatch = self._reader.engine.sync_engine.dialect.dispatch
            if dialect_dispatch.handle_error:
                dialect_dispatch.handle_error(
                    _DirectError(context, exc, self._reader.engine.sync_engine)
                )
            raise
        for listener in dispatch.after_cursor_execute:
            listener(None, None, sql, args, context, False)
        return records

    @property
    def reader(self) -> DirectReader:
        """The reader (engine) these reads currently run on."""
        return self._reader

    def rebind(self, reader: DirectReader) -> None:
        """Run on ``reader``'s engine instead (a replica fell back to the primary before
        the first read); only allowed while no connection is held."""
        if self._fairy is not None:
            raise RuntimeError("cannot move direct reads that hold a connection")
        self._reader = reader

    async def _checkout(self) -> PoolProxiedConnection:
        if self._fairy is None:
            self._fairy = await self._checkout_fn()
        return self._fairy

    async def _discard(self, exc: BaseException) -> None:
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            # Invalidate it, and (as SQLAlchemy does on a disconnect in its own path) mark
            # every pooled connection made before it stale: after a server restart they
            # would all fail the same way. Closing the socket awaits: run in a greenlet.
            pool = self._reader.engine.sync_engine.pool
            await greenlet_spawn(pool._invalidate, fairy, exc)

    @property
    def holding(self) -> bool:
        return self._fairy is not None

    def release_nowait(self) -> bool:
        """Give the connection back to the pool now, if that needs no I/O; ``False`` when
        `release` must be awaited instead (a broken connection is closed).

        A healthy connection needs none: direct reads open no transaction, so the pool's
        reset-on-return has nothing to roll back (the driver adapter skips it), check-in
        events are plain Python and the elastic pool closes spare connections in a task
        of its own. No greenlet, and no task to shield it from cancellation either: code
        that never awaits cannot be cancelled halfway.
        """
        if self._broken and self._fairy is not None:
            return False
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            fairy.close()
        return True

    async def release(self) -> None:
        """Give the connection back to the pool (no ROLLBACK: no transaction was opened)."""
        if self.release_nowait():
            return
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            await greenlet_spawn(fairy.invalidate)
