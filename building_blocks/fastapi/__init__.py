"""FastAPI glue: lifespan, dependencies and problem+json error handlers.

The only subpackage of `building_blocks` that imports FastAPI.
"""

from building_blocks.fastapi.cache_header import CacheHeaderMiddleware
from building_blocks.fastapi.consistency import (
    CONSISTENCY_COOKIE,
    CONSISTENCY_HEADER,
    FORCE_PRIMARY_HEADER,
    ConsistencyMiddleware,
    primary_reads,
)
from building_blocks.fastapi.dependencies import from_state
from building_blocks.fastapi.health import health_router
from building_blocks.fastapi.lifespan import FrozenHeap, Resource, lifespan_of
from building_blocks.fastapi.limits import BodySizeLimit
from building_blocks.fastapi.paths import ControlCharacterPaths
from building_blocks.fastapi.problems import (
    PROBLEM_JSON,
    install_problem_handlers,
    problem_response,
)
from building_blocks.fastapi.startup import ReadinessGate, Startup, StartupStep

__all__ = [
    "CONSISTENCY_COOKIE",
    "CONSISTENCY_HEADER",
    "FORCE_PRIMARY_HEADER",
    "PROBLEM_JSON",
    "BodySizeLimit",
    "CacheHeaderMiddleware",
    "ConsistencyMiddleware",
    "ControlCharacterPaths",
    "FrozenHeap",
    "ReadinessGate",
    "Resource",
    "Startup",
    "StartupStep",
    "from_state",
    "health_router",
    "install_problem_handlers",
    "lifespan_of",
    "primary_reads",
    "problem_response",
]
