"""Settings: the only module that reads the environment (once, into typed objects)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from building_blocks.cache import CacheConfig
from building_blocks.config import DatabaseConfig, PoolConfig
from building_blocks.telemetry import TracingConfig

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
    db_replica_probe_interval_seconds: float = Field(default=0.5, gt=0)
    # How long start-up waits for the primary before the process gives up (exit 1).
    db_connect_deadline_seconds: float = Field(default=60.0, gt=0)
    redis_url: SecretStr | None = None
    cache_ttl_seconds: float = Field(default=60.0, ge=0)
    cache_negative_ttl_seconds: float = Field(default=5.0, ge=0)
    cache_timeout_seconds: float = Field(default=0.1, gt=0)
    cache_max_connections: int = Field(default=64, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # INFO lines (the access log) are written in batches at most this far apart; WARNING
    # and worse at once. 0 writes every line at once.
    log_flush_seconds: float = Field(default=0.2, ge=0, le=10)
    service_name: str = Field(default="users", validation_alias="OTEL_SERVICE_NAME")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Telemetry (see docs/observability.md): the OTEL_* variables that decide whether and
    # what to build; the SDK reads the rest (endpoint, headers, sampler...) itself.
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otel_traces_exporter: Literal["otlp", "console", "none"] | None = Field(
        default=None, validation_alias="OTEL_TRACES_EXPORTER"
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
        ),
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    # Off: no spans, HTTP metrics or access log (the benchmark measures what they cost).
    telemetry_enabled: bool = True
    prometheus_multiproc_dir: Path | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("otel_traces_exporter", mode="before")
    @classmethod
    def _first_exporter(cls, value: object) -> object:
        # The variable is a list ("otlp,console"); one exporter is all this service needs.
        if isinstance(value, str):
            return value.split(",")[0].strip().lower() or None
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

    def tracing(self) -> TracingConfig:
        """Without an exporter or an endpoint configured, spans are recorded (trace ids in
        logs and exemplars) but not exported: a laptop run must not retry a collector that
        is not there every five seconds (the specification's default is ``otlp``)."""
        exporter = self.otel_traces_exporter or (
            "otlp" if self.otel_exporter_otlp_endpoint else "none"
        )
        return TracingConfig(
            enabled=not self.otel_sdk_disabled,
            service_name=self.service_name,
            exporter=exporter,
            protocol=self.otel_exporter_otlp_protocol,
        )

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
            replica_probe_interval=self.db_replica_probe_interval_seconds,
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
