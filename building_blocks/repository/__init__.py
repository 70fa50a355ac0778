"""The generic repository: contract, SQL implementation and in-memory twin."""

from building_blocks.repository.memory import InMemoryRepository, InMemoryTable
from building_blocks.repository.protocol import Filters, Page, Repository
from building_blocks.repository.sql import SQLAlchemyRepository, max_bind_parameters

__all__ = [
    "Filters",
    "InMemoryRepository",
    "InMemoryTable",
    "Page",
    "Repository",
    "SQLAlchemyRepository",
    "max_bind_parameters",
]
