"""HTTP routes of ``/api/v1/users``. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from app.users.domain import NewUser
from app.users.schemas import UserCreate, UserOut, UserPage, UserUpdate
from app.users.service import UserService
from building_blocks.errors import InvalidQueryError
from building_blocks.fastapi import from_state

__all__ = ["router"]

get_service = from_state("user_service", UserService)
Service = Annotated[UserService, Depends(get_service)]

router = APIRouter(prefix="/api/v1/users", tags=["users"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid input", **_PROBLEM},
    503: {"description": "Database unavailable; retry after Retry-After seconds", **_PROBLEM},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown user", **_PROBLEM}}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Duplicate email/username/id, or stale version", **_PROBLEM}
}


def _etag(version: int) -> str:
    return f'"{version}"'


def _if_match(value: str | None) -> int | None:
    """``If-Match: "3"`` (or ``W/"3"``, or ``3``) → 3. ``*`` means "any version"."""
    if value is None or value.strip() == "*":
        return None
    raw = value.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise InvalidQueryError('If-Match must be a version ETag such as "3"')
    return int(raw)


IfMatch = Annotated[
    str | None,
    Header(description='The version (ETag) the change is based on, e.g. "3"; 409 if stale.'),
]


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
        str | None, Query(max_length=254, description="The user with this email (any case)")
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


@router.patch("/{user_id}", responses={**_NOT_FOUND, **_CONFLICT, **_ERRORS})
async def update_user(
    user_id: UUID,
    body: UserUpdate,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
) -> UserOut:
    expected = _if_match(if_match)
    if body.version is not None:
        if expected is not None and expected != body.version:
            raise InvalidQueryError("If-Match and version disagree")
        expected = body.version
    changes = body.model_dump(exclude_unset=True, exclude={"version"})
    if "email" in changes:
        changes["email"] = str(changes["email"])
    nulls = sorted(k for k, v in changes.items() if v is None)
    if nulls:
        raise InvalidQueryError(f"fields cannot be null: {', '.join(nulls)}")
    user = await service.update(user_id, changes, expected_version=expected)
    response.headers["ETag"] = _etag(user.version)
    return UserOut.of(user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_NOT_FOUND, **_CONFLICT, **_ERRORS},
)
async def delete_user(user_id: UUID, service: Service, if_match: IfMatch = None) -> Response:
    await service.delete(user_id, expected_version=_if_match(if_match))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
