"""HTTP routes of ``/api/v1/users``. Thin: parse, call the service, shape the answer.

`users_router(service)` closes over the service the composition root built: no
dependency to resolve per request (each one costs FastAPI a recursive solve, ~5% of a
cached get, profiled). Answers are rendered with `user_json`/`page_json` and returned as
responses; ``response_model`` keeps the documented schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.users.domain import NewUser, User
from app.users.schemas import UserCreate, UserOut, UserPage, UserUpdate, page_json, user_json
from app.users.service import UserService
from building_blocks.errors import ConflictError, InvalidQueryError

__all__ = ["PREFIX", "users_router"]

PREFIX = "/api/v1/users"
_JSON = "application/json"

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not JSON", **_PROBLEM},
    413: {"description": "The body is larger than MAX_BODY_BYTES", **_PROBLEM},
    422: {"description": "Invalid input", **_PROBLEM},
    503: {"description": "Database unavailable; retry after Retry-After seconds", **_PROBLEM},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown user", **_PROBLEM}}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Duplicate email/username/id, or stale version", **_PROBLEM}
}


def _etag(version: int) -> str:
    return f'"{version}"'


_IF_MATCH = re.compile(r'^\s*(?:\*|(?:W/)?"?([0-9]{1,9})"?)\s*$')
_IF_MATCH_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": 'The version (ETag) the change is based on, e.g. "3"; 409 if stale.',
            "schema": {"type": "string", "pattern": _IF_MATCH.pattern},
        }
    ]
}


def if_match(request: Request) -> int | None:
    """``If-Match: "3"`` (or ``W/"3"``, or ``3``) → 3; absent or ``*`` → ``None``.

    Read by hand rather than as a ``Header`` parameter: FastAPI would document an optional
    header as nullable, and "null" is not an ETag. The route documents it instead.
    """
    value = request.headers.get("if-match")
    if value is None:
        return None
    match = _IF_MATCH.match(value)
    if match is None:
        raise InvalidQueryError('If-Match must be a version ETag such as "3"')
    return int(match.group(1)) if match.group(1) else None


IfMatch = Annotated[int | None, Depends(if_match)]


def _user_response(user: User, status_code: int = 200, location: str | None = None) -> Response:
    headers = {"ETag": _etag(user.version)}
    if location is not None:
        headers["Location"] = location
    return Response(user_json(user), status_code=status_code, headers=headers, media_type=_JSON)


def users_router(service: UserService) -> APIRouter:
    """The users API, serving from ``service``."""
    router = APIRouter(prefix=PREFIX, tags=["users"])

    @router.post(
        "/",
        status_code=status.HTTP_201_CREATED,
        response_model=UserOut,
        responses={
            200: {"description": "Replay of a create with the same id and data", "model": UserOut},
            **_CONFLICT,
            **_ERRORS,
        },
    )
    async def create_user(body: UserCreate, request: Request) -> Response:
        user, created = await service.register(
            NewUser(
                id=body.id,
                first_name=body.first_name,
                last_name=body.last_name,
                email=str(body.email),
                username=body.username,
                is_active=body.is_active,
            )
        )
        return _user_response(
            user,
            status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            location=str(request.url_for("get_user", user_id=user.id)),
        )

    @router.get("/", response_model=UserPage, responses=_ERRORS)
    async def list_users(
        is_active: Annotated[
            bool | None, Query(description="Only active (or inactive) users")
        ] = None,
        email: Annotated[
            str | None,
            # No control characters, as in bodies: PostgreSQL cannot even compare a NUL.
            Query(
                max_length=254,
                pattern=r"^[^\x00-\x1f\x7f]*$",
                description="The user with this email (any case)",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
    ) -> Response:
        if email is not None:
            user = await service.get_by_email(email)
            found = [user] if user is not None and is_active in (None, user.is_active) else []
            return Response(page_json(found, None), media_type=_JSON)
        page = await service.list(is_active=is_active, limit=limit, cursor=cursor)
        return Response(page_json(page.items, page.next_cursor), media_type=_JSON)

    @router.get("/{user_id}", response_model=UserOut, responses={**_NOT_FOUND, **_ERRORS})
    async def get_user(user_id: UUID) -> Response:
        return _user_response(await service.get(user_id))

    @router.patch(
        "/{user_id}",
        response_model=UserOut,
        responses={**_NOT_FOUND, **_CONFLICT, **_ERRORS},
        openapi_extra=_IF_MATCH_DOC,
    )
    async def update_user(user_id: UUID, body: UserUpdate, expected: IfMatch) -> Response:
        if body.version is not None:
            if expected is not None and expected != body.version:
                raise ConflictError("If-Match and the body's version disagree")
            expected = body.version
        # A field that is absent or null is left as it is.
        changes = body.model_dump(exclude_none=True, exclude={"version"})
        return _user_response(await service.update(user_id, changes, expected_version=expected))

    @router.delete(
        "/{user_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses={**_NOT_FOUND, **_CONFLICT, **_ERRORS},
        openapi_extra=_IF_MATCH_DOC,
    )
    async def delete_user(user_id: UUID, expected: IfMatch) -> Response:
        await service.delete(user_id, expected_version=expected)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
