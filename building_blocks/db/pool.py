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
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

__all__ = ["OVERFLOW_IDLE_SECONDS", "ElasticQueuePool"]

#: Overflow connections close once the pool has not run dry for this long.
OVERFLOW_IDLE_SECONDS = 30.0


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
            try:
                spare.close()
            finally:
                self._dec_overflow()

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
