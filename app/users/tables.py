"""The ``users`` table (SQLAlchemy Core). Alembic migrations create it; tests compare."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Uuid

from building_blocks.db import UTCDateTime

__all__ = ["metadata", "users"]

# Deterministic constraint names: duplicate-key errors are mapped back to fields by name.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("email", String(254), nullable=False),
    # Lower-cased copies carry the case-insensitive unique keys the same way on every
    # dialect (functional indexes are not portable to MariaDB).
    Column("email_key", String(254), nullable=False, unique=True),
    Column("username", String(50), nullable=False),
    Column("username_key", String(50), nullable=False, unique=True),
    Column("is_active", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Index(None, "created_at", "id"),
    Index(None, "is_active", "created_at", "id"),
)
