"""`ElasticQueuePool`: SQLAlchemy's async queue pool, minus its connection churn under load.

SQLAlchemy's `QueuePool` keeps ``pool_size`` connections and closes every *overflow*
connection the moment it is returned while ``pool_size`` others sit in the queue. Under
asyncio that queue also holds connections already promised to woken waiters, so with more
concurrent requests than connections (64 clients, 5 + 10 connections) returns keep finding
it "full": overflow connections are closed and reopened by the next checkout, many times a
second. Measured on a 2-core machine that churn (TCP + TLS negotiation + startup, on both
ends) cost about 40% of the throughput of a read.

This pool keeps the same limits (``pool_size`` + ``max_overflow`` connections, ``timeout``
to wait for one) and the same accounting (``size()``, ``overflow()``, ``checkedin()``,
``checkedout()`` mean what they mean for `QueuePool`, so pool metrics read the same), but
returned overflow connections stay pooled while the pool is busy, and are closed, one per
return, once no checkout has found the pool empty for `OVERFLOW_IDLE_SECONDS` — the
behaviour of asyncpg's own pool and HikariCP (idle connections above the minimum close
after an idle timeout).

`ElasticQueuePool.connect_nowait` checks an idle connection out without a greenlet when
nothing in the checkout can do I/O (see its docstring); the hot read path uses it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.concurrency import in_greenlet

__all__ = ["OVERFLOW_IDLE_SECONDS", "PING_DUE", "ElasticQueuePool"]

#: Overflow connections close once the pool has not run dry for this long.
OVERFLOW_IDLE_SECONDS = 30.0
#: ``record.info`` key: the `time.monotonic` after which a checkout pre-pings the
#: connection (set at check-in by the idle-only pre-ping of `building_blocks.db.engines`).
PING_DUE = "bb_ping_due"
#: A connection this close to ``pool_recycle`` is left to the awaiting checkout path (the
#: recycle check is repeated, on the wall clock, inside the checkout itself).
RECYCLE_MARGIN_SECONDS = 5.0


class ElasticQueuePool(AsyncAdaptedQueuePool):
    """`AsyncAdaptedQueuePool` whose overflow connections outlive a busy moment."""

    def __init__(self, creator: Any, pool_size: int = 5, max_overflow: int = 10, **kw: Any) -> None:
        super().__init__(creator, pool_size=pool_size, max_overflow=max_overflow, **kw)
        self._core_size = pool_size
        # Room for every connection the limits allow, so a return never has to close one.
        self._pool = self._queue_class(
            pool_size + max(max_overflow, 0), use_lifo=self._pool.use_lifo
        )
        self._busy_at = time.monotonic()
        self._closing: set[asyncio.Task[None]] = set()

    def connect_nowait(self) -> PoolProxiedConnection | None:
        """`connect()` without a greenlet, or ``None`` when the checkout could do I/O.

        Checking out an idle connection is plain Python, but SQLAlchemy's async pools run
        every checkout in a greenlet (``greenlet_spawn``) in case it awaits; on the hot
        read path that hop, and the one to return it, cost more than the pool's own work
        (measured: ~40 µs against ~14 µs per checkout + return on a 2-core machine). A
        checkout awaits only to wait for a connection (none idle), to connect, to
        reconnect (invalidated or due for recycling) or to pre-ping (idle too long): this
        takes the next idle connection only when none of those applies, through
        ``self.connect`` (so pool events and wait metrics are unchanged).
        """
        try:
            record = self._next_idle()
            if record is None or not self._ready(record):
                return None
        except AttributeError:
            # SQLAlchemy's private queue and record attributes moved (a new release):
            # the awaiting checkout still works, only slower; a test pins this path.
            return None
        # The pre-ping listener reads this key: consumed here, so the decision just made
        # is the one the checkout acts on (no second look at a clock that moved on).
        record.info.pop(PING_DUE, None)
        return self.connect()

    def _next_idle(self) -> Any:
        # The record the next `_do_get` returns: SQLAlchemy's adapter over an asyncio
        # Queue (FIFO: popleft) or LifoQueue (pop).
        queue: Any = self._pool
        items = queue._queue._queue
        if not items:
            return None
        return items[-1] if queue.use_lifo else items[0]

    def _ready(self, record: Any) -> bool:
        if record.dbapi_connection is None:
            return False
        started = record.starttime
        if self._invalidate_time > started or record._soft_invalidate_time > started:
            return False
        if self._recycle > -1 and time.time() - started > self._recycle - RECYCLE_MARGIN_SECONDS:
            return False
        due = record.info.get(PING_DUE)
        return due is None or time.monotonic() <= due

    def _do_get(self) -> ConnectionPoolEntry:
        if self._pool.empty():
            self._busy_at = time.monotonic()
        return super()._do_get()

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        super()._do_return_conn(record)
        if (
            self._pool.qsize() > self._core_size
            and time.monotonic() - self._busy_at > OVERFLOW_IDLE_SECONDS
        ):
            try:
                spare = self._pool.get(False)
            except Exception:  # sqlalchemy.util.queue.Empty: taken meanwhile
                return
            if in_greenlet():
                try:
                    spare.close()
                finally:
                    self._dec_overflow()
                return
            # A return without a greenlet (`DirectReads.release`): closing awaits, so it
            # runs in a task of its own; the pool stops counting the connection now.
            self._dec_overflow()
            task = asyncio.get_running_loop().create_task(greenlet_spawn(spare.close))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def size(self) -> int:
        return self._core_size

    def checkedout(self) -> int:
        return self._core_size - self._pool.qsize() + self._overflow

    def recreate(self) -> ElasticQueuePool:
        self.logger.info("Pool recreating")
        return self.__class__(
            self._creator,
            pool_size=self._core_size,
            max_overflow=self._max_overflow,
            pre_ping=self._pre_ping,
            use_lifo=self._pool.use_lifo,
            timeout=self._timeout,
            recycle=self._recycle,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )
