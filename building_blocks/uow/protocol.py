"""The unit of work: one transaction, the repositories bound to it, explicit commit.

Usage, the same for the SQL and in-memory implementations::

    async with uow_factory() as uow:          # or uow_factory(read_only=True)
        user = await uow.repository.get(user_id)
        await uow.repository.update(user.renamed("Bob"))
        await uow.commit()                    # nothing is written without this line

Leaving the block without `commit` (an exception, a return) rolls back. Callbacks
registered with `on_commit` run after a successful commit only (cache invalidation).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextvars import Token
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from building_blocks.telemetry.context import start_child_span

__all__ = ["AbstractUnitOfWork", "UnitOfWork", "UnitOfWorkFactory"]

log = logging.getLogger(__name__)
# A proxy that follows the global provider installed later by the lifespan (or a test).
_tracer = trace.get_tracer(__name__)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

AfterCommit = Callable[[], Awaitable[None]]


class UnitOfWork(Protocol[R_co]):
    read_only: bool

    @property
    def repository(self) -> R_co: ...

    @property
    def pool(self) -> str:
        """The database that serves this unit (``primary``, ``replica-0``, ``memory``)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    def on_commit(self, callback: AfterCommit) -> None: ...


class UnitOfWorkFactory(Protocol[R_co]):
    def __call__(self, *, read_only: bool = False) -> UnitOfWork[R_co]: ...


class AbstractUnitOfWork(ABC, Generic[R]):
    """Lifecycle shared by every implementation; subclasses give the transaction."""

    def __init__(self, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self._repository: R | None = None
        self._after_commit: list[AfterCommit] = []
        self._open = False
        self._committed = False
        self._span: trace.Span | None = None
        self._span_token: Token[Context] | None = None

    @property
    def repository(self) -> R:
        if self._repository is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._repository

    @property
    @abstractmethod
    def pool(self) -> str: ...

    @abstractmethod
    async def _begin(self) -> R: ...

    @abstractmethod
    async def _commit(self) -> None: ...

    @abstractmethod
    async def _rollback(self) -> None: ...

    @abstractmethod
    async def _end(self) -> None:
        """Release the transaction's resources (always called once, last)."""

    async def __aenter__(self) -> Self:
        if self._open:
            raise RuntimeError("a unit of work cannot be entered twice")
        # One span per unit of work: its statements (and cache calls) become its children.
        span = start_child_span(
            _tracer, "unit of work", attributes={"uow.read_only": self.read_only}
        )
        self._span = span
        if span.is_recording():
            # Made current only when recorded: a span that is not (telemetry off, or this
            # trace sampled out) has no children to parent, and theirs would not be
            # recorded either; the context switch both ways is skipped.
            self._span_token = otel_context.attach(trace.set_span_in_context(span))
        try:
            self._repository = await self._begin()
        except BaseException as exc:
            self._end_span(exc)
            raise
        span.set_attribute("db.client.connection.pool.name", self.pool)
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._open:
                await self._rollback_quietly(failing=exc is not None)
        finally:
            self._open = False
            self._repository = None
            try:
                await self._end()
            finally:
                self._end_span(exc)

    def _end_span(self, exc: BaseException | None) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        span.set_attribute("uow.outcome", "committed" if self._committed else "rolled_back")
        if exc is not None:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        token, self._span_token = self._span_token, None
        try:
            if token is not None:
                otel_context.detach(token)
        finally:
            span.end()

    async def commit(self) -> None:
        if not self._open:
            raise RuntimeError("commit outside of 'async with' or after commit/rollback")
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        await self._commit()
        self._open = False
        self._committed = True
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                # The data is committed; a failed side effect must not turn it into an error.
                log.exception("after-commit callback failed")

    async def rollback(self) -> None:
        if self._open:
            self._open = False
            self._after_commit.clear()
            await self._rollback()

    def on_commit(self, callback: AfterCommit) -> None:
        self._after_commit.append(callback)

    async def _rollback_quietly(self, *, failing: bool) -> None:
        try:
            await self.rollback()
        except Exception:
            if not failing:
                raise
            # The body already failed (often because the connection died); that error is
            # the one worth reporting, not the rollback's.
            log.debug("rollback after a failure failed too", exc_info=True)
