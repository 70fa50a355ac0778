"""`PipelinedRedis` on its own: order, timeouts, reconnection, authentication, and uvloop
(the event loop uvicorn runs the service on)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from building_blocks.cache.pipelined import PipelinedRedis
from tests.support import RedisServer
from tests.support.pytest_helpers import started

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def password_redis(servers_dir: Path) -> Iterator[RedisServer]:
    server = started(lambda: RedisServer.start_new(servers_dir, password="s3cret"))
    with server:
        yield server


async def test_replies_match_their_commands_under_concurrency(redis_server: RedisServer) -> None:
    redis = PipelinedRedis(redis_server.url)
    try:
        await asyncio.gather(*(redis.execute(1.0, "SET", f"pipe:{i}", str(i)) for i in range(300)))
        values = await asyncio.gather(*(redis.execute(1.0, "GET", f"pipe:{i}") for i in range(300)))
        assert values == [str(i).encode() for i in range(300)]
        with pytest.raises(ResponseError):  # an error reply fails its own command only
            await redis.execute(1.0, "HGET", "pipe:1", "field")
        assert await redis.execute(1.0, "GET", "pipe:7") == b"7"
    finally:
        await redis.close()


async def test_a_timed_out_reply_is_dropped_and_order_kept(redis_server: RedisServer) -> None:
    """A frozen Redis: commands time out; once it runs again, later commands get their
    own replies, not the late ones."""
    redis = PipelinedRedis(redis_server.url)
    try:
        await redis.execute(1.0, "SET", "pipe:late", "late")
        redis_server.pause()
        try:
            with pytest.raises(TimeoutError):
                await redis.execute(0.1, "GET", "pipe:late")
        finally:
            redis_server.resume()
        assert await redis.execute(1.0, "ECHO", "mine") == b"mine"
    finally:
        await redis.close()


async def test_reconnects_after_the_connection_breaks(redis_server: RedisServer) -> None:
    redis = PipelinedRedis(redis_server.url)
    try:
        assert await redis.execute(1.0, "PING") == b"PONG"
        await redis.execute(1.0, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")

        async def ping_until_refused() -> None:
            for _ in range(100):  # polls until the close has reached this side
                await redis.execute(1.0, "PING")
                await asyncio.sleep(0.01)

        with pytest.raises(RedisConnectionError):
            await ping_until_refused()
        assert await redis.execute(1.0, "PING") == b"PONG"  # a new connection
    finally:
        await redis.close()


async def test_authenticates_and_selects_the_database(password_redis: RedisServer) -> None:
    url = password_redis.url.rsplit("/", 1)[0] + "/3"
    assert ":s3cret@" in url
    redis = PipelinedRedis(url)
    try:
        await redis.execute(1.0, "SET", "pipe:db", "three")
        info = (await redis.execute(1.0, "CLIENT", "INFO")).decode()
        assert " db=3 " in info
    finally:
        await redis.close()
    wrong = PipelinedRedis(url.replace(":s3cret@", ":wrong@"))
    with pytest.raises(RedisConnectionError, match="refused"):
        await wrong.execute(1.0, "PING")
    await wrong.close()


def test_runs_on_uvloop(redis_server: RedisServer) -> None:
    async def main() -> list[bytes]:
        redis = PipelinedRedis(redis_server.url)
        try:
            await redis.execute(1.0, "SET", "pipe:uv", "uv")
            return list(
                await asyncio.gather(*(redis.execute(1.0, "GET", "pipe:uv") for _ in range(50)))
            )
        finally:
            await redis.close()

    assert uvloop.run(main()) == [b"uv"] * 50
