"""The users API through the ASGI app: every route, every error, problem+json bodies."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

USERS = "/api/v1/users/"
PROBLEM = "application/problem+json"


def alice(**overrides: Any) -> dict[str, Any]:
    body = {
        "first_name": "Alice",
        "last_name": "Test",
        "email": "alice@test.com",
        "username": "alice",
    }
    return {**body, **overrides}


async def create(api: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await api.post(USERS, json=alice(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


async def test_seed_example_create_then_list(api: httpx.AsyncClient) -> None:
    created = await api.post(USERS, json=alice())
    assert created.status_code == 201
    user = created.json()
    assert created.headers["location"].endswith(f"/api/v1/users/{user['id']}")
    assert created.headers["etag"] == '"1"'
    assert user["version"] == 1
    assert user["is_active"] is True
    listed = await api.get(USERS)
    assert listed.status_code == 200
    assert [u["id"] for u in listed.json()["items"]] == [user["id"]]


async def test_get_returns_the_user_and_its_etag(api: httpx.AsyncClient) -> None:
    user = await create(api)
    response = await api.get(f"{USERS}{user['id']}")
    assert response.status_code == 200
    assert response.json() == user
    assert response.headers["etag"] == '"1"'


async def test_unknown_id_is_404_problem(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get(f"{USERS}{uuid.uuid4()}"), 404)
    assert_problem(await api.patch(f"{USERS}{uuid.uuid4()}", json={"first_name": "X"}), 404)
    assert_problem(await api.delete(f"{USERS}{uuid.uuid4()}"), 404)


@pytest.mark.parametrize(
    ("second", "field"),
    [
        ({"email": "ALICE@Test.com", "username": "alice2"}, "email"),
        ({"email": "other@test.com", "username": "ALICE"}, "username"),
    ],
)
async def test_duplicate_email_or_username_in_any_case_is_409_naming_the_field(
    api: httpx.AsyncClient, second: dict[str, str], field: str
) -> None:
    await create(api)
    body = assert_problem(await api.post(USERS, json=alice(**second)), 409)
    assert body["fields"] == [field]


async def test_resending_a_create_with_the_same_id_returns_the_existing_user(
    api: httpx.AsyncClient,
) -> None:
    user_id = str(uuid.uuid4())
    first = await api.post(USERS, json=alice(id=user_id))
    again = await api.post(USERS, json=alice(id=user_id))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert len((await api.get(USERS)).json()["items"]) == 1


async def test_the_same_id_with_different_data_is_409(api: httpx.AsyncClient) -> None:
    user_id = str(uuid.uuid4())
    await create(api, id=user_id)
    body = assert_problem(await api.post(USERS, json=alice(id=user_id, first_name="Mallory")), 409)
    assert body["fields"] == ["id"]


@pytest.mark.parametrize(
    "body",
    [
        alice(email="not-an-email"),
        alice(first_name=""),
        alice(first_name="   "),
        alice(last_name="x" * 101),
        alice(username="a b"),
        alice(username="x" * 51),
        alice(first_name="Nul\x00byte"),
        alice(nickname="unknown field"),
        alice(is_active="maybe"),
        alice(id="not-a-uuid"),
        {"first_name": "Alice"},
    ],
)
async def test_invalid_create_bodies_are_422_problems_listing_the_errors(
    api: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    problem = assert_problem(await api.post(USERS, json=body), 422)
    assert problem["errors"]
    assert (await api.get(USERS)).json()["items"] == []


async def test_a_body_that_is_not_json_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        USERS, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_bad_uuid_in_path_is_422(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get(f"{USERS}not-a-uuid"), 422)


async def test_patch_changes_fields_and_bumps_version_and_etag(api: httpx.AsyncClient) -> None:
    user = await create(api)
    response = await api.patch(
        f"{USERS}{user['id']}", json={"first_name": "Alicia"}, headers={"If-Match": '"1"'}
    )
    assert response.status_code == 200
    assert response.json()["first_name"] == "Alicia"
    assert response.json()["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert (await api.get(f"{USERS}{user['id']}")).json()["first_name"] == "Alicia"


async def test_patch_with_a_stale_version_is_409_and_changes_nothing(
    api: httpx.AsyncClient,
) -> None:
    user = await create(api)
    await api.patch(f"{USERS}{user['id']}", json={"first_name": "Alicia"})
    stale = await api.patch(
        f"{USERS}{user['id']}", json={"last_name": "Lost"}, headers={"If-Match": '"1"'}
    )
    body = assert_problem(stale, 409)
    assert body["current_version"] == 2
    in_body = await api.patch(f"{USERS}{user['id']}", json={"last_name": "Lost", "version": 1})
    assert_problem(in_body, 409)
    assert (await api.get(f"{USERS}{user['id']}")).json()["last_name"] == "Test"


@pytest.mark.parametrize(
    "body",
    [{"email": "bad"}, {"first_name": ""}, {"unknown": 1}, {"version": 0}, {"is_active": 1}],
)
async def test_invalid_patch_bodies_are_422(api: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user = await create(api)
    assert_problem(await api.patch(f"{USERS}{user['id']}", json=body), 422)


async def test_null_fields_in_a_patch_leave_them_unchanged(api: httpx.AsyncClient) -> None:
    user = await create(api)
    response = await api.patch(f"{USERS}{user['id']}", json={"first_name": None, "last_name": "X"})
    assert response.status_code == 200
    assert (response.json()["first_name"], response.json()["last_name"]) == ("Alice", "X")


async def test_malformed_if_match_is_422(api: httpx.AsyncClient) -> None:
    user = await create(api)
    response = await api.patch(
        f"{USERS}{user['id']}", json={"first_name": "A"}, headers={"If-Match": "garbage"}
    )
    assert_problem(response, 422)


async def test_patch_to_a_taken_email_is_409(api: httpx.AsyncClient) -> None:
    await create(api)
    bob = await create(api, email="bob@test.com", username="bob")
    body = assert_problem(
        await api.patch(f"{USERS}{bob['id']}", json={"email": "Alice@test.com"}), 409
    )
    assert body["fields"] == ["email"]


async def test_delete_is_204_then_404(api: httpx.AsyncClient) -> None:
    user = await create(api)
    assert_problem(await api.delete(f"{USERS}{user['id']}", headers={"If-Match": '"9"'}), 409)
    response = await api.delete(f"{USERS}{user['id']}", headers={"If-Match": '"1"'})
    assert response.status_code == 204
    assert_problem(await api.get(f"{USERS}{user['id']}"), 404)


async def test_list_pages_with_a_cursor_and_filters(api: httpx.AsyncClient) -> None:
    ids = [
        (await create(api, email=f"u{n}@test.com", username=f"user{n}", is_active=n % 2 == 0))["id"]
        for n in range(5)
    ]
    first = (await api.get(USERS, params={"limit": 2})).json()
    second = (await api.get(USERS, params={"limit": 2, "cursor": first["next_cursor"]})).json()
    third = (await api.get(USERS, params={"limit": 2, "cursor": second["next_cursor"]})).json()
    seen = [u["id"] for page in (first, second, third) for u in page["items"]]
    assert seen == list(reversed(ids))  # newest first
    assert third["next_cursor"] is None
    active = (await api.get(USERS, params={"is_active": "true"})).json()["items"]
    assert {u["id"] for u in active} == {ids[0], ids[2], ids[4]}
    by_email = (await api.get(USERS, params={"email": "U3@TEST.com"})).json()["items"]
    assert [u["id"] for u in by_email] == [ids[3]]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"cursor": "garbage"}])
async def test_bad_list_parameters_are_422(api: httpx.AsyncClient, params: dict[str, Any]) -> None:
    assert_problem(await api.get(USERS, params=params), 422)


async def test_unknown_route_and_method_are_problems(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/api/v1/nothing"), 404)
    assert_problem(await api.put(f"{USERS}{uuid.uuid4()}", json={}), 405)


async def test_health_live_and_ready(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health/live")).json() == {"status": "ok"}
    ready = await api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["databases"][0]["state"] == "up"


async def test_an_oversized_body_is_refused_with_413_before_parsing(api: httpx.AsyncClient) -> None:
    huge = alice(first_name="A", last_name="B" * 200_000)
    response = await api.post(USERS, json=huge)
    assert_problem(response, 413)


async def test_an_oversized_chunked_body_is_refused_with_413(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"first_name": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    response = await api.post(USERS, content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413)
