"""Engines, sessions and connections for every supported database."""

from building_blocks.db.connection import Connection
from building_blocks.db.consistency import (
    ConsistencyScope,
    ConsistencyToken,
    consistency_scope,
    force_primary,
    required_token,
)
from building_blocks.db.engines import create_engine
from building_blocks.db.retry import ConnectRetryPolicy, wait_for_database
from building_blocks.db.routing import LeastBusy, ReplicaSelector, RoundRobin, Router
from building_blocks.db.session import PRIMARY, DatabaseSession, PoolStatus, SQLAlchemySession
from building_blocks.db.transient import TRANSIENT_ERRORS, Transience, classify
from building_blocks.db.translate import translate_error
from building_blocks.db.types import UTCDateTime
from building_blocks.db.urls import describe_url, parse_url

__all__ = [
    "PRIMARY",
    "TRANSIENT_ERRORS",
    "ConnectRetryPolicy",
    "Connection",
    "ConsistencyScope",
    "ConsistencyToken",
    "DatabaseSession",
    "LeastBusy",
    "PoolStatus",
    "ReplicaSelector",
    "RoundRobin",
    "Router",
    "SQLAlchemySession",
    "Transience",
    "UTCDateTime",
    "classify",
    "consistency_scope",
    "create_engine",
    "describe_url",
    "force_primary",
    "parse_url",
    "required_token",
    "translate_error",
    "wait_for_database",
]
