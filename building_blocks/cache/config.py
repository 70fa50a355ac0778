"""`CacheConfig`: the cache's knobs as a plain dataclass (the application fills it from its
settings; `building_blocks` never reads the environment)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheConfig"]


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """How long things live and when the cache gives up on its backend.

    ``fence_seconds`` must cover the replica lag bound when read-only units of work may
    be served by replicas (``DB_REPLICA_MAX_LAG_SECONDS``): for that long after an
    invalidation no load may store its result, since a lagging replica may still return
    the old row. Without replicas one second is plenty (it only keeps concurrent flights
    from being joined across an invalidation).
    """

    ttl: float = 60.0
    negative_ttl: float = 5.0
    fence_seconds: float = 1.0
    lease_seconds: float = 30.0
    failure_threshold: int = 3
    recovery_seconds: float = 1.0
    max_pending_invalidations: int = 100_000

    def __post_init__(self) -> None:
        if self.ttl <= 0:
            raise ValueError("ttl must be positive (disable the cache instead of ttl=0)")
        if self.negative_ttl < 0:
            raise ValueError("negative_ttl must not be negative (0: do not cache misses)")
        if self.fence_seconds < 0:
            raise ValueError("fence_seconds must not be negative")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
