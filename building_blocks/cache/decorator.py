"""`cached`: turn an async loader into a cached reader.

    by_id = cached(cache, key="user:{user_id}", codec=JsonCodec(User))(load_user)
    user = await by_id(user_id)            # cache, else load_user(user_id)
    cache.invalidate_on_commit(uow, keys=[by_id.key(user_id)])

The key (and each tag) is a template over the loader's parameters (see `KeyTemplate`).
The loader opens its own read-only unit of work, so a hit never touches the database.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, ParamSpec, TypeVar

from building_blocks.cache.cache import Cache
from building_blocks.cache.codec import Codec
from building_blocks.cache.keys import KeyTemplate

__all__ = ["CachedFunction", "cached"]

P = ParamSpec("P")
T = TypeVar("T")


class CachedFunction(Generic[P, T]):
    """A loader with a cache in front; call it like the loader."""

    def __init__(
        self,
        cache: Cache,
        function: Callable[P, Awaitable[T | None]],
        *,
        key: str,
        codec: Codec[T],
        tags: Sequence[str] = (),
        ttl: float | None = None,
        negative_ttl: float | None = None,
    ) -> None:
        self.cache = cache
        self.__wrapped__ = function
        self._key = KeyTemplate(key, function)
        self._tags = tuple(KeyTemplate(t, function) for t in tags)
        self._codec = codec
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        functools.update_wrapper(self, function)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T | None:
        function = self.__wrapped__
        if not self.cache.enabled:  # counted as a bypass there; no key worth formatting
            return await self.cache.get_or_load(
                "", lambda: function(*args, **kwargs), codec=self._codec
            )
        return await self.cache.get_or_load(
            self._key.format(args, kwargs),
            lambda: function(*args, **kwargs),
            codec=self._codec,
            ttl=self._ttl,
            negative_ttl=self._negative_ttl,
            tags=[t.format(args, kwargs) for t in self._tags] if self._tags else (),
        )

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key a call with these arguments reads (to invalidate it)."""
        return self._key.format(args, kwargs)

    def __repr__(self) -> str:
        return f"<cached {self._key.template!r} of {self.__wrapped__!r}>"


def cached(
    cache: Cache,
    *,
    key: str,
    codec: Codec[T],
    tags: Sequence[str] = (),
    ttl: float | None = None,
    negative_ttl: float | None = None,
) -> Callable[[Callable[P, Awaitable[T | None]]], CachedFunction[P, T]]:
    """Decorator form of `CachedFunction` (``ttl``/``negative_ttl`` default to the cache's)."""

    def decorate(function: Callable[P, Awaitable[T | None]]) -> CachedFunction[P, T]:
        return CachedFunction(
            cache, function, key=key, codec=codec, tags=tags, ttl=ttl, negative_ttl=negative_ttl
        )

    return decorate
