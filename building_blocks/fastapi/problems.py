"""Exception handlers that answer with RFC 9457 ``application/problem+json`` bodies.

This is the only place that maps the error tree to HTTP status codes:
404 `NotFoundError`, 409 `ConflictError`, 422 `InvalidQueryError` and request validation,
503 + ``Retry-After`` `UnavailableError` (504 for `QueryTimeoutError` is deliberately not
used: the client can do nothing different, and 503 carries ``Retry-After``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from building_blocks.errors import (
    ConflictError,
    DataError,
    DuplicateKeyError,
    InvalidQueryError,
    NotFoundError,
    StaleVersionError,
    UnavailableError,
)

__all__ = ["PROBLEM_JSON", "install_problem_handlers", "problem_response"]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    428: "Precondition Required",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_response(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": type_,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _status_of(exc: DataError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, InvalidQueryError):
        return 422
    return 503


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DataError)  # noqa: S101 - registered for DataError only
    status = _status_of(exc)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, DuplicateKeyError) and exc.fields:
        extra["fields"] = list(exc.fields)
    if isinstance(exc, StaleVersionError):
        extra["current_version"] = exc.actual
    if isinstance(exc, UnavailableError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        log.warning("database unavailable: %s", exc, extra={"pool": exc.pool})
    return problem_response(status, str(exc), headers=headers, **extra)


def _errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Pydantic puts the rejected input in "input" and may put exceptions in "ctx": the
    # input can be large or sensitive and exceptions are not JSON, so keep the essentials.
    return [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    return problem_response(422, "the request is not valid", errors=_errors(exc.errors()))


def _allowed_methods(request: Request) -> str:
    """Every method some route accepts for this path: Starlette's own 405 names only the
    first route that matched the path, although sibling routes accept other methods."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(exc.status_code, str(exc.detail), headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug. The client gets a problem body without internals; the log gets the traceback.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "an unexpected error occurred")


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app`` (idempotent: re-registering replaces them)."""
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
