"""Wait for a database at start-up: tenacity, exponential backoff with jitter, a deadline.

`wait_for_database` tries to connect and run ``SELECT 1`` until it works, the deadline
passes, or the error is one no retry can fix (the `FATAL` kind of the transient-error
table: bad password, unknown database, bad URL, missing driver), which raises
`ConfigurationError` at once with a message naming the cause and the target (never the
password). Every attempt is logged and counted in ``db_connect_attempts_total{outcome}``
(``success``, ``retry``, ``fatal``; giving up at the deadline counts as ``fatal``).

The backoff is capped low (0.5 s by default) on purpose: the service must be ready within
about a second of the database coming up, and a refused connection costs next to nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal, get_args

from opentelemetry import trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from building_blocks.db.transient import Transience, classify, describe_fatal
from building_blocks.db.urls import describe_url
from building_blocks.errors import ConfigurationError, UnavailableError
from building_blocks.telemetry.metrics import Metrics

__all__ = ["ConnectRetryPolicy", "wait_for_database"]

log = logging.getLogger(__name__)

ConnectOutcome = Literal["success", "retry", "fatal"]


@dataclass(frozen=True, slots=True)
class ConnectRetryPolicy:
    """``deadline``: seconds to keep trying; waits grow from ``initial_wait`` to
    ``max_wait`` (exponential, plus up to ``jitter`` so restarted replicas of the service
    do not knock in step)."""

    deadline: float = 60.0
    initial_wait: float = 0.05
    max_wait: float = 0.5
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.deadline <= 0:
            raise ValueError("the connect deadline must be positive")


async def wait_for_database(
    engine: AsyncEngine,
    *,
    name: str = "primary",
    policy: ConnectRetryPolicy | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Return once ``engine``'s database answers; `ConfigurationError` when it never can,
    `UnavailableError` when the deadline passes."""
    policy = policy or ConnectRetryPolicy()
    dialect = engine.dialect.name
    target = f"{name} database {describe_url(engine.url)}"
    started = time.monotonic()

    def count(outcome: ConnectOutcome) -> None:
        if metrics is not None:
            metrics.connect_attempts.labels(outcome=outcome).inc()

    if metrics is not None:
        # Each outcome's series exists at 0 before the first attempt, so the first retry
        # or failure shows in rate() and alerts (a counter born at 1 shows no increase).
        for outcome in get_args(ConnectOutcome):
            metrics.connect_attempts.labels(outcome=outcome)

    def before_sleep(state: RetryCallState) -> None:
        count("retry")
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s not reachable yet (attempt %d: %s); next try in %.2fs, giving up after %gs",
            target,
            state.attempt_number,
            _describe(error),
            wait,
            policy.deadline,
            extra={"pool": name, "attempt": state.attempt_number},
        )
        trace.get_current_span().add_event(
            "db.connect.retry",
            {"db.client.connection.pool.name": name, "db.connect.attempt": state.attempt_number},
        )

    retrying = AsyncRetrying(
        stop=stop_after_delay(policy.deadline),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter
        ),
        # Only failures are retried: a cancelled start-up (shutdown) must stop at once.
        retry=retry_if_exception(
            lambda exc: isinstance(exc, Exception) and not isinstance(exc, ConfigurationError)
        ),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                await _attempt(engine, dialect, target)
    except ConfigurationError:
        count("fatal")
        raise
    except Exception as exc:
        count("fatal")
        raise UnavailableError(
            f"{target} still unreachable after {policy.deadline:g}s ({_describe(exc)})",
            pool=name,
            reason="disconnect",
        ) from exc
    count("success")
    attempts = retrying.statistics.get("attempt_number", 1)
    log.info(
        "%s reachable after %d attempt(s) in %.2fs",
        target,
        attempts,
        time.monotonic() - started,
        extra={"pool": name, "attempts": attempts},
    )


async def _attempt(engine: AsyncEngine, dialect: str, target: str) -> None:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        if classify(exc, dialect) is Transience.FATAL:
            raise ConfigurationError(
                f"cannot use the {target}: {describe_fatal(exc, dialect)}"
            ) from exc
        raise


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return f"{type(exc).__name__}{f' {code}' if code else ''}"
