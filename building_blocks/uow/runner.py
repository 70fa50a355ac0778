"""`run_in_transaction`: run a unit of work, re-running it when the failure is transient.

What is re-run, and why (the kinds come from the one table, `building_blocks.db.transient`):

* read-only work, after a ``disconnect`` or a ``conflict``: it changed nothing, so a fresh
  unit of work (a fresh connection, and a fresh routing decision: the replica that failed
  is out by then) is safe. On a hot standby, a query cancelled by a recovery conflict is
  a ``conflict`` (SQLSTATE 40001) too.
* writing work, after a ``conflict`` only (serialization failure, deadlock): the server
  rolled the whole transaction back, so the whole callable runs again. A disconnect while
  writing is *not* re-run: the COMMIT may have happened, and running a non-idempotent
  write twice is worse than a 503.

Retries stop at a deadline (not a count), with exponential backoff and jitter (tenacity)::

    user = await run_in_transaction(uow_factory, lambda uow: uow.repository.get(id),
                                    read_only=True)

    async def rename(uow):
        user = await uow.repository.get(id)
        await uow.repository.update(user.renamed(name))
        await uow.commit()
    await run_in_transaction(uow_factory, rename)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry import trace
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from building_blocks.errors import UnavailableError
from building_blocks.uow.protocol import UnitOfWork, UnitOfWorkFactory

__all__ = ["TransactionRetryPolicy", "run_in_transaction"]

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TransactionRetryPolicy:
    """How long a unit of work may be re-run. ``deadline``: seconds from the first try
    after which the last error is raised; keep it well below the client's timeout."""

    deadline: float = 2.0
    initial_wait: float = 0.02
    max_wait: float = 0.25

    def retryable(self, exc: BaseException, *, read_only: bool) -> bool:
        if not isinstance(exc, UnavailableError):
            return False
        if read_only:
            return exc.reason in ("disconnect", "conflict")
        return exc.reason == "conflict"


DEFAULT_POLICY = TransactionRetryPolicy()


async def run_in_transaction(
    uow_factory: UnitOfWorkFactory[R],
    fn: Callable[[UnitOfWork[R]], Awaitable[T]],
    *,
    read_only: bool = False,
    policy: TransactionRetryPolicy = DEFAULT_POLICY,
) -> T:
    """Run ``fn`` inside ``uow_factory(read_only=...)``; ``fn`` commits (writers) itself.

    Errors that are not transient (not found, conflicts of data, bugs) pass through at
    once; a transient one is retried as the module docstring says, until the deadline.
    """
    # The first attempt runs without tenacity: building and driving its retry state
    # machine cost more than the read itself on a cached-statement get by id (~30% of
    # the uncached get's CPU, profiled); it takes over only after a transient error.
    started = time.monotonic()
    try:
        async with uow_factory(read_only=read_only) as uow:
            return await fn(uow)
    except UnavailableError as exc:
        if not policy.retryable(exc, read_only=read_only):
            raise
        first_error: list[BaseException] = [exc]
    return await _retry(
        uow_factory,
        fn,
        first_error,
        read_only=read_only,
        policy=policy,
        deadline=max(0.0, policy.deadline - (time.monotonic() - started)),
    )


async def _retry(
    uow_factory: UnitOfWorkFactory[R],
    fn: Callable[[UnitOfWork[R]], Awaitable[T]],
    first_error: list[BaseException],
    *,
    read_only: bool,
    policy: TransactionRetryPolicy,
    deadline: float,
) -> T:
    """The attempts after a first transient ``first_error``, under tenacity (its first
    "attempt" re-raises that error, so waits and attempt numbers are as if it had run
    the first one itself)."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        reason = getattr(error, "reason", None)
        pool = getattr(error, "pool", None)
        log.info(
            "re-running a %s unit of work after a transient error (%s on %s), attempt %d",
            "read-only" if read_only else "writing",
            reason,
            pool,
            state.attempt_number + 1,
        )
        trace.get_current_span().add_event(
            "db.transaction.retry",
            {
                "db.retry.attempt": state.attempt_number,
                "db.retry.reason": str(reason),
                "db.client.connection.pool.name": str(pool),
            },
        )

    retrying = AsyncRetrying(
        stop=stop_after_delay(deadline),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.initial_wait
        ),
        retry=retry_if_exception(lambda exc: policy.retryable(exc, read_only=read_only)),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if first_error:
                raise first_error.pop()
            async with uow_factory(read_only=read_only) as uow:
                return await fn(uow)
    raise AssertionError("unreachable: tenacity either returns or re-raises")
