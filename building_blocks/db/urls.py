"""Describe connection URLs without their secrets."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["describe_url", "parse_url"]


def parse_url(url: str | URL) -> URL:
    """Parse ``url``; a malformed one raises ``ValueError`` whose message holds no secret."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        # ``from None``: the original message quotes the URL, password included.
        raise ValueError(
            "invalid database URL (expected e.g. postgresql+asyncpg://user:password@host/db)"
        ) from None


def describe_url(url: str | URL) -> str:
    """``postgresql+asyncpg://app@db:5432/users`` style text, without password or query."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"{parsed.drivername}:///{parsed.database or ':memory:'}"
    host = parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    user = f"{parsed.username}@" if parsed.username else ""
    return f"{parsed.drivername}://{user}{host}{port}/{parsed.database or ''}"
