"""`RedisCacheBackend`: the cache protocol on Redis (redis-py asyncio), every call bounded.

Layout, for an entry key ``K`` and a tag ``T`` (both already namespaced by the cache):

    K            hash  {<schema version>: value, ...} or {"!fence": token} while fenced
    K!lease      hash  {<lease token>: "1"}           leases of loads in flight
    T            set   entry keys of the tag
    T!fence      string token, while the tag is fenced

A cache hit is one ``HMGET K <version> !fence``, sent on one connection shared by all
lookups and auto-pipelined (`PipelinedRedis`; ``rediss://`` URLs use the pool); leases,
fills and invalidations are Lua scripts, so each is atomic and one round trip. The
scripts touch keys derived from their arguments, which standalone Redis and Sentinel
allow and Redis Cluster does not.

Everything else takes a connection from a `BlockingConnectionPool`: at most
``max_connections``; a call waits for a free one instead of failing with "Too many
connections". Every call (pool wait included) runs under one `Deadline` of ``timeout``
seconds and is not retried: the cache answers from the database instead, which is always
correct, and its breaker stops calling a Redis that keeps failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from building_blocks.cache.backend import CacheBusyError, Lookup
from building_blocks.cache.deadline import Deadline
from building_blocks.cache.pipelined import PipelinedRedis, supports
from building_blocks.telemetry.redis import instrument_redis

__all__ = ["RedisCacheBackend"]

FENCE_FIELD = "!fence"

_GET_TAGGED = """
local r = redis.call('HMGET', KEYS[1], ARGV[1], '!fence')
for i = 2, #KEYS do r[#r + 1] = redis.call('GET', KEYS[i]) end
return r
"""

# KEYS: entry, leases, n tag sets, n tag fences.  ARGV: token, ttl_ms, n.
_LEASE = """
local n = tonumber(ARGV[3])
local ttl = tonumber(ARGV[2])
if redis.call('HEXISTS', KEYS[1], '!fence') == 1 then return 0 end
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 + n + i]) == 1 then return 0 end
end
redis.call('HSET', KEYS[2], ARGV[1], '1')
redis.call('PEXPIRE', KEYS[2], ttl)
for i = 1, n do
  redis.call('SADD', KEYS[2 + i], KEYS[1])
  if redis.call('PTTL', KEYS[2 + i]) < ttl then redis.call('PEXPIRE', KEYS[2 + i], ttl) end
end
return 1
"""

# KEYS: entry, leases, tag sets.  ARGV: token, field, value, ttl_ms.
_FILL = """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then return 0 end
end
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
"""

# KEYS: n entry keys, then tag sets.  ARGV: n, token, fence_ms.
_INVALIDATE = """
local n = tonumber(ARGV[1])
local fence = tonumber(ARGV[3])
for i = 1, n do
  local k = KEYS[i]
  redis.call('DEL', k, k .. '!lease')
  if fence > 0 then
    redis.call('HSET', k, '!fence', ARGV[2])
    redis.call('PEXPIRE', k, fence)
  end
end
for i = n + 1, #KEYS do
  local t = KEYS[i]
  for _, m in ipairs(redis.call('SMEMBERS', t)) do redis.call('DEL', m, m .. '!lease') end
  redis.call('DEL', t)
  if fence > 0 then redis.call('SET', t .. '!fence', ARGV[2], 'PX', fence) end
end
return 1
"""

# Entries, leases and tag sets go; fences (fenced hashes, tag fence strings) stay.
_PURGE = """
for i = 1, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t == 'set' or (t == 'hash' and redis.call('HEXISTS', KEYS[i], '!fence') == 0) then
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisCacheBackend:
    """Redis at ``url`` (``redis://[:password@]host:port/db`` or ``rediss://``)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.1,
        max_connections: int = 64,
        pool_timeout: float | None = None,
        pipeline_lookups: bool = True,
        traced: bool = False,
    ) -> None:
        """``pool_timeout``: how long a lookup through the pool may wait for a free
        connection (default ten times ``timeout``, at least 1 s); then it answers from the
        database. ``pipeline_lookups``: untagged lookups on the shared auto-pipelined
        connection (`PipelinedRedis`) when the URL allows it, else through the pool.
        ``traced``: a client span per command of the pool's client (leases, fills,
        invalidations; `building_blocks.telemetry.instrument_redis`). Lookups on the
        pipelined connection are covered by the cache's own ``cache get`` spans."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.pool_timeout = max(1.0, 10 * timeout) if pool_timeout is None else pool_timeout
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._url = url
        self.timeout = timeout
        self.max_connections = max_connections
        self._client: Redis | None = None
        self._pipelined: PipelinedRedis | None = None
        self._pipeline_lookups = pipeline_lookups
        self._traced = traced
        self._scripts: dict[str, Any] = {}

    def target(self) -> str:
        parts = urlsplit(self._url)
        db = parts.path.lstrip("/") or "0"
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}/{db}"

    async def start(self) -> None:
        if self._client is not None:
            return
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=self.max_connections,
            # redis-py's own timeouts (pool wait, connect, read) would trip on a busy
            # event loop: every call runs under one `Deadline` instead.
            timeout=None,
            socket_connect_timeout=None,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),  # the cache falls back to the database instead
            health_check_interval=0,
        )
        self._client = Redis(connection_pool=pool)
        if self._traced:
            instrument_redis(self._client)
        if self._pipeline_lookups and supports(self._url):
            self._pipelined = PipelinedRedis(self._url)
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("get", _GET_TAGGED),
                ("lease", _LEASE),
                ("fill", _FILL),
                ("invalidate", _INVALIDATE),
                ("purge", _PURGE),
            )
        }

    async def close(self) -> None:
        client, self._client = self._client, None
        pipelined, self._pipelined = self._pipelined, None
        if pipelined is not None:
            await pipelined.close()
        if client is not None:
            await client.aclose(close_connection_pool=True)

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("RedisCacheBackend.start() has not been called")
        return self._client

    async def ping(self) -> None:
        if self._pipelined is not None:  # the connection cache hits use
            await self._pipelined.execute(self.timeout, "PING")
            return
        async with Deadline(self.timeout):
            await self.client.execute_command("PING")  # type: ignore[no-untyped-call]

    async def reconnect(self) -> None:
        if self._pipelined is not None:
            await self._pipelined.close()
        async with Deadline(self.timeout):
            await self.client.connection_pool.disconnect(inuse_connections=False)

    async def get(self, key: str, field: str, tags: Sequence[str] = ()) -> Lookup:
        if tags:
            keys = [key, *(t + "!fence" for t in tags)]
            async with Deadline(self.timeout):
                reply = await self._scripts["get"](keys=keys, args=[field])
        elif self._pipelined is not None:
            reply = await self._pipelined.execute(self.timeout, "HMGET", key, field, FENCE_FIELD)
        else:
            reply = await self._hmget(key, field)
        values = cast("list[bytes | None]", reply)
        return Lookup(values[0], tuple(values[1:]))

    async def _hmget(self, key: str, field: str) -> Any:
        """The hit path without `PipelinedRedis` (``rediss://``): ``HMGET key field !fence`` on a
        connection of the pool, sent and read directly (redis-py's ``execute_command``
        adds a retry wrapper, deprecation checks and observability hooks per call, ~a
        third of a lookup, profiled).

        Waiting for a free connection is bounded apart from the call: under more
        concurrent lookups than connections the wait is this process's saturation, not a
        slow Redis, and raises `CacheBusyError` (which does not trip the breaker) after
        ``pool_timeout``; the round trip itself has ``timeout``.
        """
        pool = self.client.connection_pool
        # Only a lookup that had to queue is "busy": one that timed out connecting (a
        # frozen Redis) is a failure like any other.
        queued = not pool.can_get_connection()
        try:
            async with Deadline(self.pool_timeout if queued else self.timeout):
                connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except TimeoutError:
            if queued:
                raise CacheBusyError("no Redis connection free in time") from None
            raise
        try:
            async with Deadline(self.timeout):
                await connection.send_command("HMGET", key, field, FENCE_FIELD)
                return await connection.read_response()
        except BaseException:
            # Cut off mid-reply (timeout, cancellation): the connection's state is unknown.
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    async def lease(self, key: str, token: str, ttl: float, tags: Sequence[str] = ()) -> bool:
        keys = [key, key + "!lease", *tags, *(t + "!fence" for t in tags)]
        async with Deadline(self.timeout):
            granted = await self._scripts["lease"](keys=keys, args=[token, _ms(ttl), len(tags)])
        return bool(granted)

    async def fill(
        self,
        key: str,
        field: str,
        value: bytes,
        *,
        lease: str,
        ttl: float,
        tags: Sequence[str] = (),
    ) -> bool:
        keys = [key, key + "!lease", *tags]
        async with Deadline(self.timeout):
            stored = await self._scripts["fill"](keys=keys, args=[lease, field, value, _ms(ttl)])
        return bool(stored)

    async def invalidate(
        self, keys: Sequence[str], tags: Sequence[str], *, token: str, fence_ttl: float
    ) -> None:
        if not keys and not tags:
            return
        fence_ms = _ms(fence_ttl) if fence_ttl > 0 else 0
        async with Deadline(self.timeout):
            await self._scripts["invalidate"](
                keys=[*keys, *tags], args=[len(keys), token, fence_ms]
            )

    async def purge(self, prefix: str) -> None:
        # Rare (lost invalidations only) and possibly long: a generous overall bound, so
        # a Redis that hangs again cannot stall the recovery probe forever.
        async with asyncio.timeout(max(30.0, self.timeout * 100)):
            batch: list[str] = []
            async for key in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
                batch.append(key.decode() if isinstance(key, bytes) else key)
                if len(batch) >= 500:
                    await self._scripts["purge"](keys=batch)
                    batch = []
            if batch:
                await self._scripts["purge"](keys=batch)

    def __repr__(self) -> str:
        return f"RedisCacheBackend({self.target()!r})"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
