"""The transient-error table and the retry policy built on it: what is retried, what is
not, and that retries stop at a deadline."""

from __future__ import annotations

import socket
import time

import pymysql
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import create_async_engine

from app.users.repository import InMemoryUserRepository
from building_blocks.db import Transience, classify
from building_blocks.db.retry import wait_for_database
from building_blocks.db.transient import describe_fatal
from building_blocks.db.translate import translate_error
from building_blocks.errors import NotFoundError, UnavailableError
from building_blocks.telemetry.metrics import Metrics
from building_blocks.uow import (
    InMemoryUnitOfWorkFactory,
    TransactionRetryPolicy,
    UnitOfWork,
    run_in_transaction,
)


class _PgError(Exception):
    """Shaped like asyncpg's errors as SQLAlchemy's adapter exposes them: a sqlstate."""

    def __init__(self, sqlstate: str, message: str = "") -> None:
        super().__init__(message or sqlstate)
        self.sqlstate = sqlstate


def _dbapi(orig: BaseException) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("SELECT 1", None, orig)


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        ("08006", Transience.DISCONNECT),  # connection failure (class 08)
        ("57P01", Transience.DISCONNECT),  # admin shutdown
        ("57P03", Transience.DISCONNECT),  # starting up
        ("40001", Transience.CONFLICT),
        ("40P01", Transience.CONFLICT),
        ("53300", Transience.BUSY),
        ("28P01", Transience.FATAL),
        ("3D000", Transience.FATAL),
        ("23505", None),  # unique violation: never retried
        ("42P01", None),  # undefined table: a bug
    ],
)
def test_postgresql_sqlstates_are_classified_by_the_table(
    sqlstate: str, kind: Transience | None
) -> None:
    assert classify(_dbapi(_PgError(sqlstate)), "postgresql") is kind


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (2013, Transience.DISCONNECT),
        (2006, Transience.DISCONNECT),
        (1213, Transience.CONFLICT),
        (1040, Transience.BUSY),
        (1045, Transience.FATAL),
        (1049, Transience.FATAL),
        (1062, None),  # duplicate entry
    ],
)
def test_mysql_error_numbers_are_classified_by_the_table(
    code: int, kind: Transience | None
) -> None:
    error = _dbapi(pymysql.err.OperationalError(code, "message"))
    assert classify(error, "mysql") is kind
    assert classify(error, "mariadb") is kind


def test_socket_errors_and_dns_failures_are_disconnects() -> None:
    assert classify(ConnectionRefusedError(), "postgresql") is Transience.DISCONNECT
    # In compose the database's name resolves only once its container exists.
    assert classify(socket.gaierror(-2, "Name or service not known"), "mysql") is (
        Transience.DISCONNECT
    )


def test_an_error_tree_error_is_classified_through_its_cause() -> None:
    error = UnavailableError("unavailable")
    error.__cause__ = _dbapi(_PgError("40001"))
    assert classify(error, "postgresql") is Transience.CONFLICT


def test_translation_carries_the_kind_as_the_reason() -> None:
    translated = translate_error(_dbapi(_PgError("40P01")), dialect="postgresql", pool="primary")
    assert isinstance(translated, UnavailableError)
    assert translated.reason == "conflict"
    refused = translate_error(ConnectionRefusedError(), dialect="postgresql", pool="replica-0")
    assert isinstance(refused, UnavailableError)
    assert refused.reason == "disconnect"


def test_fatal_causes_are_named_without_quoting_the_url() -> None:
    error = _dbapi(_PgError("28P01", 'password authentication failed for user "app"'))
    assert describe_fatal(error, "postgresql") == (
        "the password was rejected (postgresql error 28P01)"
    )
    assert "does not exist" in describe_fatal(
        _dbapi(pymysql.err.OperationalError(1049, "Unknown database 'x'")), "mariadb"
    )


# -- run_in_transaction --------------------------------------------------------------

FAST = TransactionRetryPolicy(deadline=0.5, initial_wait=0.001, max_wait=0.01)
Uow = UnitOfWork[InMemoryUserRepository]


def _flaky(failures: list[UnavailableError]) -> tuple[list[int], object]:
    calls: list[int] = []

    async def fn(uow: Uow) -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return calls, fn


async def test_read_only_work_is_rerun_after_a_disconnect() -> None:
    factory = InMemoryUnitOfWorkFactory(InMemoryUserRepository)
    calls, fn = _flaky([UnavailableError("gone", reason="disconnect")] * 2)
    assert await run_in_transaction(factory, fn, read_only=True, policy=FAST) == "done"  # type: ignore[arg-type]
    assert len(calls) == 3


async def test_writing_work_is_not_rerun_after_a_disconnect() -> None:
    factory = InMemoryUnitOfWorkFactory(InMemoryUserRepository)
    calls, fn = _flaky([UnavailableError("gone", reason="disconnect")])
    with pytest.raises(UnavailableError):
        await run_in_transaction(factory, fn, policy=FAST)  # type: ignore[arg-type]
    assert len(calls) == 1


async def test_writing_work_is_rerun_as_a_whole_after_a_serialization_failure() -> None:
    factory = InMemoryUnitOfWorkFactory(InMemoryUserRepository)
    calls, fn = _flaky([UnavailableError("40001", reason="conflict")])
    assert await run_in_transaction(factory, fn, policy=FAST) == "done"  # type: ignore[arg-type]
    assert len(calls) == 2


async def test_errors_that_are_not_transient_pass_through_at_once() -> None:
    factory = InMemoryUnitOfWorkFactory(InMemoryUserRepository)
    calls: list[int] = []

    async def fn(uow: Uow) -> None:
        calls.append(1)
        raise NotFoundError("user", 1)

    with pytest.raises(NotFoundError):
        await run_in_transaction(factory, fn, read_only=True, policy=FAST)
    assert len(calls) == 1


async def test_retries_stop_at_the_deadline() -> None:
    factory = InMemoryUnitOfWorkFactory(InMemoryUserRepository)
    calls: list[int] = []

    async def fn(uow: Uow) -> None:
        calls.append(1)
        raise UnavailableError("still gone", reason="disconnect")

    started = time.monotonic()
    with pytest.raises(UnavailableError, match="still gone"):
        await run_in_transaction(factory, fn, read_only=True, policy=FAST)
    elapsed = time.monotonic() - started
    assert FAST.deadline <= elapsed < FAST.deadline + 0.3
    assert len(calls) > 3


async def test_every_connect_outcome_is_exported_from_the_first_attempt() -> None:
    """A retry or failure that comes later then shows as an increase, not a new series."""
    metrics = Metrics(CollectorRegistry())
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        await wait_for_database(engine, metrics=metrics)
    finally:
        await engine.dispose()
    counts = {
        outcome: metrics.registry.get_sample_value(
            "db_connect_attempts_total", {"outcome": outcome}
        )
        for outcome in ("success", "retry", "fatal")
    }
    assert counts == {"success": 1.0, "retry": 0.0, "fatal": 0.0}
