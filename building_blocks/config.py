"""Plain configuration objects for the data layer.

`building_blocks` never reads the environment: the application builds these from its own
settings (see ``app/settings.py``) and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DatabaseConfig", "PoolConfig"]


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Connection-pool sizing for one database.

    The defaults (5 + 10 overflow) come from the seed design. ``timeout`` bounds how long a
    request waits for a free connection before it gets `PoolTimeoutError` (HTTP 503).
    """

    size: int = 5
    max_overflow: int = 10
    timeout: float = 10.0
    recycle: float = 1800.0
    pre_ping: bool = True
    #: With ``pre_ping``, only connections idle for longer than this are pinged at checkout
    #: (a ping is a round trip, three on asyncpg; a connection returned a moment ago is
    #: alive). Direct reads retry once on a dead connection anyway. 0 pings every checkout.
    ping_after_idle: float = 1.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("pool size must be at least 1")
        if self.max_overflow < 0:
            raise ValueError("pool max_overflow must not be negative")
        if self.timeout <= 0:
            raise ValueError("pool timeout must be positive")

    @property
    def max_connections(self) -> int:
        return self.size + self.max_overflow


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """Where the data lives and how to talk to it.

    ``url`` is any SQLAlchemy async URL (``postgresql+asyncpg://``, ``mysql+aiomysql://``,
    ``sqlite+aiosqlite:///``, ``mssql+aioodbc://``). ``replica_urls`` are read replicas of
    ``url``; read-only units of work may be routed to them (`building_blocks.db.routing`)
    unless they lag more than ``replica_max_lag_seconds``.
    """

    url: str
    replica_urls: tuple[str, ...] = ()
    pool: PoolConfig = field(default_factory=PoolConfig)
    connect_timeout: float = 5.0
    statement_timeout: float | None = 30.0
    replica_max_lag_seconds: float = 5.0
    #: How often the lag monitor probes every replica (and a down one, to close its breaker).
    replica_probe_interval: float = 0.5
    application_name: str = "building_blocks"
    echo: bool = False

    def __repr__(self) -> str:
        # The URL may hold a password: never let it reach a log line through repr().
        return (
            f"DatabaseConfig(url=<hidden>, replicas={len(self.replica_urls)}, pool={self.pool!r})"
        )
