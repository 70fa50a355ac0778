"""`PipelinedRedis`: one Redis connection shared by every cache lookup, auto-pipelined.

Why not a connection per lookup (redis-py's pool). A cache hit is one short command; its
cost is the pool (a lock and a condition per checkout, ~a quarter of a hit, profiled) and
one ``send`` system call per lookup, which on loopback also runs the kernel's delivery
to Redis: ~20% of the CPU of a hit on the benchmark machine. Here every command issued
in one turn of the event loop goes out in one write, and one read usually brings back
the replies of many (the technique of ioredis' and Lettuce's auto-pipelining). Replies
come back in order, so the n-th reply belongs to the n-th waiting future. Under 256
concurrent requests there is nothing to queue for, so no lookup waits for a connection.

Timeouts never cancel the caller's task (the costliest part of ``asyncio.timeout``): a
timer fails the lookup's future instead, two loop turns after the deadline so a reply
that has already arrived is read first (see `building_blocks.cache.deadline`). A reply
that arrives after its lookup gave up is parsed and dropped; the order stays right. A
broken connection fails every waiting lookup at once; the next lookup reconnects.

Replies are parsed by hiredis (the Redis project's C parser; redis-py uses it too when
it is installed). Supports ``redis://`` and ``unix://`` URLs (user, password, database);
`RedisCacheBackend` uses its redis-py pool instead for ``rediss://``.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, cast

import hiredis
from redis.asyncio.connection import UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

__all__ = ["PipelinedRedis", "supports"]


def supports(url: str) -> bool:
    """Whether `PipelinedRedis` can talk to ``url`` (plain TCP or a Unix socket)."""
    return url.startswith(("redis://", "unix://"))


class _Protocol(asyncio.Protocol):
    """The wire: writes coalesced per loop turn, replies matched to futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        # uvloop's transports are not asyncio.Transport subclasses: typed as what is used.
        self._transport: asyncio.WriteTransport | None = None
        self.lost: Exception | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.WriteTransport", transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.close(RedisConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream cannot be trusted
                self.close(RedisConnectionError("unexpected reply from Redis"))
                return
            future = waiting.popleft()
            if future.done():  # its lookup gave up (timeout): drop the reply
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    # -- use -----------------------------------------------------------------------------
    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.lost is not None:
            raise self.lost
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting.append(future)
        self._outgoing.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, []
        if outgoing and self._transport is not None and self.lost is None:
            self._transport.write(b"".join(outgoing))

    def close(self, error: Exception) -> None:
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)


class PipelinedRedis:
    """Commands over one shared, lazily (re)connected connection to Redis at ``url``."""

    def __init__(self, url: str) -> None:
        if not supports(url):
            raise ValueError("PipelinedRedis supports redis:// and unix:// URLs")
        self._options = parse_url(url)
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def execute(self, within: float, *args: str | bytes) -> Any:
        """Send ``args`` as one command; its reply, or `TimeoutError` after ``within``
        seconds (a connection, when one must be made first, counts against them)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connected(loop, deadline)
        future = protocol.send(_pack(args))
        timer = loop.call_at(deadline, _expire, loop, future, within)
        try:
            return await future
        finally:
            timer.cancel()

    async def close(self) -> None:
        """Drop the connection (waiting lookups fail); the next call reconnects."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close(RedisConnectionError("connection closed by the client"))

    async def _connected(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Protocol:
        # One connection attempt at a time, shared by every caller that needs it; a caller
        # that gives up does not cancel it for the others.
        if self._connecting is None or self._connecting.done():
            self._connecting = loop.create_task(self._connect(loop))
        waiter: asyncio.Future[_Protocol] = loop.create_future()
        self._connecting.add_done_callback(lambda task: _relay(task, waiter))
        timer = loop.call_at(deadline, _time_out, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        options = self._options
        if options.get("connection_class") is UnixDomainSocketConnection:
            _, protocol = await loop.create_unix_connection(
                lambda: _Protocol(loop), options["path"]
            )
        else:
            _, protocol = await loop.create_connection(
                lambda: _Protocol(loop), options.get("host", "localhost"), options.get("port", 6379)
            )
        # Authentication and database: pipelined like everything else, checked in order.
        handshake: list[tuple[str | bytes, ...]] = []
        password = options.get("password")
        if password is not None:
            username = options.get("username")
            handshake.append(("AUTH", username, password) if username else ("AUTH", password))
        db = int(options.get("db", 0) or 0)
        if db:
            handshake.append(("SELECT", str(db)))
        try:
            replies = await asyncio.gather(
                *(protocol.send(_pack(c)) for c in handshake), return_exceptions=True
            )
        except BaseException:  # cancelled (closing): do not leave the socket open
            protocol.close(RedisConnectionError("connecting to Redis was cancelled"))
            raise
        refused = next((r for r in replies if isinstance(r, BaseException)), None)
        if refused is not None:
            error = RedisConnectionError(f"Redis refused the connection: {refused}")
            protocol.close(error)
            raise error from refused
        self._protocol = protocol
        return protocol


def _pack(command: tuple[str | bytes, ...]) -> bytes:
    packed: bytes = hiredis.pack_command(cast("Any", command))  # its stub types 1-tuples
    return packed


def _expire(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], timeout: float) -> None:
    # Two loop turns: replies already received are read before the lookup is failed.
    if not future.done():
        loop.call_soon(loop.call_soon, _fail_late, future, timeout)


def _fail_late(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"Redis did not answer within {timeout:g}s"))


def _relay(task: asyncio.Task[_Protocol], waiter: asyncio.Future[_Protocol]) -> None:
    if task.cancelled():
        error: BaseException | None = RedisConnectionError("connecting to Redis was cancelled")
    else:
        error = task.exception()
    if waiter.done():
        return
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(task.result())


def _time_out(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("could not connect to Redis in time"))
