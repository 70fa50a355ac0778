"""Settings: the only module that reads the environment (once, into typed objects)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from building_blocks.cache import CacheConfig
from building_blocks.config import DatabaseConfig, PoolConfig

__all__ = ["Settings", "default_database_url"]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fastapi-building-blocks"


def default_database_url() -> str:
    """The embedded default: a SQLite file in the user's data directory, whatever the cwd."""
    return f"sqlite+aiosqlite:///{default_data_dir() / 'users.db'}"


class Settings(BaseSettings):
    """Every knob of the service, from environment variables (``*_FILE`` for secrets)."""

    model_config = SettingsConfigDict(extra="ignore", secrets_dir=None)

    database_url: SecretStr = Field(default_factory=lambda: SecretStr(default_database_url()))
    database_replica_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    db_connect_timeout: float = Field(default=5.0, gt=0)
    db_statement_timeout: float = Field(default=30.0, ge=0)
    db_replica_max_lag_seconds: float = Field(default=5.0, gt=0)
    redis_url: SecretStr | None = None
    cache_ttl_seconds: float = Field(default=60.0, ge=0)
    cache_negative_ttl_seconds: float = Field(default=5.0, ge=0)
    cache_timeout_seconds: float = Field(default=0.1, gt=0)
    cache_max_connections: int = Field(default=64, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    service_name: str = Field(default="users", validation_alias="OTEL_SERVICE_NAME")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def from_env(cls) -> Settings:
        """Read the environment; ``DATABASE_URL_FILE`` & co. name files holding the value."""
        overrides: dict[str, str] = {}
        for name in ("DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL"):
            path = os.environ.get(f"{name}_FILE")
            if path and name not in os.environ:
                overrides[name.lower()] = Path(path).read_text(encoding="utf-8").strip()
        return cls(**overrides)  # type: ignore[arg-type]

    def database(self) -> DatabaseConfig:
        return DatabaseConfig(
            url=self.database_url.get_secret_value(),
            replica_urls=tuple(u.get_secret_value() for u in self.database_replica_urls),
            pool=PoolConfig(
                size=self.db_pool_size,
                max_overflow=self.db_max_overflow,
                timeout=self.db_pool_timeout,
            ),
            connect_timeout=self.db_connect_timeout,
            statement_timeout=self.db_statement_timeout or None,
            replica_max_lag_seconds=self.db_replica_max_lag_seconds,
            application_name=self.service_name,
        )

    def cache(self) -> CacheConfig:
        """Cache policy; the fence covers the replica lag bound when replicas serve reads."""
        lag = self.db_replica_max_lag_seconds if self.database_replica_urls else 0.0
        return CacheConfig(
            ttl=self.cache_ttl_seconds or 1.0,  # 0 disables the cache (see create_app)
            negative_ttl=min(self.cache_negative_ttl_seconds, self.cache_ttl_seconds),
            fence_seconds=lag + 1.0,
        )
