"""HTTP routes of ``/api/v1/users``. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.users.domain import NewUser
from app.users.schemas import UserCreate, UserOut, UserPage, UserUpdate
from app.users.service import UserService
from building_blocks.errors import ConflictError, InvalidQueryError
from building_blocks.fastapi import from_state

__all__ = ["router"]

get_service = from_state("user_service", UserService)
Service = Annotated[UserService, Depends(get_service)]

router = APIRouter(prefix="/api/v1/users", tags=["users"])

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


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Replay of a create with the same id and data", "model": UserOut},
        **_CONFLICT,
        **_ERRORS,
    },
)
async def create_user(
    body: UserCreate, service: Service, request: Request, response: Response
) -> UserOut:
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
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = str(request.url_for("get_user", user_id=user.id))
    response.headers["ETag"] = _etag(user.version)
    return UserOut.of(user)


@router.get("/", responses=_ERRORS)
async def list_users(
    service: Service,
    is_active: Annotated[bool | None, Query(description="Only active (or inactive) users")] = None,
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
) -> UserPage:
    if email is not None:
        user = await service.get_by_email(email)
        found = [user] if user is not None and is_active in (None, user.is_active) else []
        return UserPage(items=[UserOut.of(u) for u in found], next_cursor=None)
    page = await service.list(is_active=is_active, limit=limit, cursor=cursor)
    return UserPage(items=[UserOut.of(u) for u in page.items], next_cursor=page.next_cursor)


@router.get("/{user_id}", responses={**_NOT_FOUND, **_ERRORS})
async def get_user(user_id: UUID, service: Service, response: Response) -> UserOut:
    user = await service.get(user_id)
    response.headers["ETag"] = _etag(user.version)
    return UserOut.of(user)


@router.patch(
    "/{user_id}", responses={**_NOT_FOUND, **_CONFLICT, **_ERRORS}, openapi_extra=_IF_MATCH_DOC
)
async def update_user(
    user_id: UUID,
    body: UserUpdate,
    service: Service,
    response: Response,
    expected: IfMatch,
) -> UserOut:
    if body.version is not None:
        if expected is not None and expected != body.version:
            raise ConflictError("If-Match and the body's version disagree")
        expected = body.version
    # A field that is absent or null is left as it is.
    changes = body.model_dump(exclude_none=True, exclude={"version"})
    user = await service.update(user_id, changes, expected_version=expected)
    response.headers["ETag"] = _etag(user.version)
    return UserOut.of(user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_NOT_FOUND, **_CONFLICT, **_ERRORS},
    openapi_extra=_IF_MATCH_DOC,
)
async def delete_user(user_id: UUID, service: Service, expected: IfMatch) -> Response:
    await service.delete(user_id, expected_version=expected)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
