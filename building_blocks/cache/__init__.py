"""Cache-aside for repository reads: consistent with the database, harmless when down.

    cache = Cache(RedisCacheBackend(url), namespace="users", schema_version="1")
    by_id = cached(cache, key="user:{user_id}", codec=JsonCodec(User))(load_user)

Backends: `RedisCacheBackend` (redis-py asyncio) and `InMemoryCacheBackend` (per process,
the embedded default). Invalidation is bound to the unit of work
(`Cache.invalidate_on_commit`); a circuit breaker (`CircuitBreaker`) keeps a failing
backend out of the request path. Design and metrics: ``docs/cache.md``.
"""

from building_blocks.cache.backend import CacheBackend, CacheBusyError, Lookup
from building_blocks.cache.breaker import BreakerState, CircuitBreaker
from building_blocks.cache.cache import Cache, CacheStatus, CommitHooks
from building_blocks.cache.codec import Codec, JsonCodec
from building_blocks.cache.config import CacheConfig
from building_blocks.cache.context import collect_results, record_result
from building_blocks.cache.decorator import CachedFunction, cached
from building_blocks.cache.keys import KeyTemplate, key_part
from building_blocks.cache.memory import InMemoryCacheBackend
from building_blocks.cache.redis_backend import RedisCacheBackend

__all__ = [
    "BreakerState",
    "Cache",
    "CacheBackend",
    "CacheBusyError",
    "CacheConfig",
    "CacheStatus",
    "CachedFunction",
    "CircuitBreaker",
    "Codec",
    "CommitHooks",
    "InMemoryCacheBackend",
    "JsonCodec",
    "KeyTemplate",
    "Lookup",
    "RedisCacheBackend",
    "cached",
    "collect_results",
    "key_part",
    "record_result",
]
