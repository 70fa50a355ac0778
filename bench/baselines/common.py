"""What the baselines share: the query, the JSON shape, and where the databases are."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["COLUMNS", "SELECT_BY_ID", "pg_dsn", "redis_url", "user_json"]

COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "email",
    "username",
    "is_active",
    "created_at",
    "updated_at",
    "version",
)
SELECT_BY_ID = f"SELECT {', '.join(COLUMNS)} FROM users WHERE id = $1"  # noqa: S608 - constant


def pg_dsn() -> str:
    return os.environ["BENCH_PG_DSN"]


def redis_url() -> str:
    return os.environ["BENCH_REDIS_URL"]


def user_json(record: Any) -> dict[str, Any]:
    """The service's ``UserOut`` JSON for a row (ids and timestamps as strings)."""
    return {
        "id": str(record["id"]),
        "first_name": record["first_name"],
        "last_name": record["last_name"],
        "email": record["email"],
        "username": record["username"],
        "is_active": record["is_active"],
        "created_at": record["created_at"].isoformat().replace("+00:00", "Z"),
        "updated_at": record["updated_at"].isoformat().replace("+00:00", "Z"),
        "version": record["version"],
    }
