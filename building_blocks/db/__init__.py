"""Engines, sessions and connections for every supported database."""

from building_blocks.db.connection import Connection
from building_blocks.db.engines import create_engine
from building_blocks.db.session import DatabaseSession, PoolStatus, SQLAlchemySession
from building_blocks.db.translate import translate_error
from building_blocks.db.types import UTCDateTime
from building_blocks.db.urls import describe_url, parse_url

__all__ = [
    "Connection",
    "DatabaseSession",
    "PoolStatus",
    "SQLAlchemySession",
    "UTCDateTime",
    "create_engine",
    "describe_url",
    "parse_url",
    "translate_error",
]
