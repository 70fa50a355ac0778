"""Units of work: explicit commit, rollback otherwise, after-commit callbacks."""

from building_blocks.uow.memory import (
    InMemoryDatabase,
    InMemoryTransaction,
    InMemoryUnitOfWork,
    InMemoryUnitOfWorkFactory,
)
from building_blocks.uow.protocol import AbstractUnitOfWork, UnitOfWork, UnitOfWorkFactory
from building_blocks.uow.runner import TransactionRetryPolicy, run_in_transaction
from building_blocks.uow.sql import SQLAlchemyUnitOfWork, SQLAlchemyUnitOfWorkFactory

__all__ = [
    "AbstractUnitOfWork",
    "InMemoryDatabase",
    "InMemoryTransaction",
    "InMemoryUnitOfWork",
    "InMemoryUnitOfWorkFactory",
    "SQLAlchemyUnitOfWork",
    "SQLAlchemyUnitOfWorkFactory",
    "TransactionRetryPolicy",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "run_in_transaction",
]
