"""The one place where a missing test service becomes a pytest outcome.

Kept apart from the server helpers so that those stay free of pytest (the benchmark
harness imports them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn, TypeVar

import pytest

from tests.support.errors import ServiceUnavailable

T = TypeVar("T")

__all__ = ["skip_or_fail", "started"]


def skip_or_fail(exc: BaseException) -> NoReturn:
    """Skip the test with `exc` as the reason; fail it instead when CI=true.

    Locally a developer without PostgreSQL still gets a green unit-test run, while
    CI must never pass by skipping the tests it exists to run.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(f"required test service unavailable under CI=true: {exc}", pytrace=False)
    pytest.skip(str(exc))


def started(start: Callable[[], T]) -> T:
    """``start()`` (a server), with a missing service turned into `skip_or_fail`."""
    try:
        return start()
    except ServiceUnavailable as exc:
        skip_or_fail(exc)
